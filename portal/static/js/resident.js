// The resident pages' only script (served from the portal, CSP script-src 'self'); every page
// works without it.
(function () {
  "use strict";
  // The code page: the resend button is off while the cooldown runs and the seconds count down;
  // at 0 the button comes back. The server keeps its own limits either way.
  var wait = document.getElementById("resend-wait");
  var button = document.querySelector("#resend-form input[type=submit]");
  if (wait && button) {
    var end = Date.now() + 1000 * parseInt(wait.getAttribute("data-wait"), 10);
    var text = wait.textContent;
    var tick = function () {
      var left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
      if (left > 0) {
        wait.textContent = text.replace(/\d+/, String(left));
        button.disabled = true;
        window.setTimeout(tick, 250);
      } else {
        wait.hidden = true;
        button.disabled = false;
      }
    };
    tick();
  }
  // The form page: the address becomes this flow's own page, so that a refresh (or reopening)
  // shows the form again instead of re-sending the AP's one-time link, which is refused.
  var form = document.getElementById("signin");
  if (form && form.getAttribute("data-resume") && window.history.replaceState) {
    window.history.replaceState(null, "", form.getAttribute("data-resume"));
  }
}());

// The form page: what is typed is sent to the portal (kept there encrypted, for this flow only)
// a moment after typing stops and when the page goes away, so that a refresh shows it again.
// Nothing is kept in the browser.
(function () {
  "use strict";
  var form = document.getElementById("signin");
  if (!form || !window.FormData) {
    return;
  }
  var url = form.getAttribute("data-draft");
  var timer = 0;
  var submitted = false;
  var save = function () {
    window.clearTimeout(timer);
    if (submitted) {
      return;  // the form itself carries what was typed
    }
    var data = new FormData(form);
    if (navigator.sendBeacon) {
      navigator.sendBeacon(url, data);
    } else {
      var request = new XMLHttpRequest();
      request.open("POST", url);
      request.send(data);
    }
  };
  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(save, 800);
  });
  form.addEventListener("change", save);
  form.addEventListener("submit", function () {
    submitted = true;
  });
  window.addEventListener("pagehide", save);
}());
