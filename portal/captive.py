"""The resident's sign-in pages: hand-over from the AP, identity form, SMS code, connected.

Pages are small, carry their state in a signed hidden field (no cookies needed), and every
mistake is a message on the same page, never an error page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from wtforms.fields.choices import SelectChoice

from census.handshake import (
    HANDSHAKE_SIGNED,
    MAX_FUTURE_SKEW_S,
    Handshake,
    HandshakeError,
    is_handshake,
    parse_fas,
    verify_signed_redirect,
)
from census.privacy import mask_name, mask_phone, pseudonymize_mac
from portal.const import CONSENT_VERSION
from portal.devices import known_device
from portal.flow import Flow, FlowError
from portal.forms import (
    UNIT_NOT_GIVEN,
    UNIT_VISITOR,
    CodeForm,
    FlowForm,
    OneTapForm,
    ResendForm,
    SignInForm,
    flow_csrf_token,
)
from portal.i18n import page_locale
from portal.identity import DeclaredIdentity, clean_id_number, clean_name, clean_phone
from portal.otp import IssueStatus, VerifyStatus
from portal.pages import PageCache
from portal.ratelimit import Decision
from portal.services import PortalServices
from portal.signin import (
    NotAuthorized,
    SignInResult,
    complete_one_tap,
    complete_sign_in,
    raise_sms_budget_alert,
)
from portal.sms import SmsError
from registry.models import Verification

LOGGER = logging.getLogger(__name__)
bp = Blueprint("captive", __name__)

PENDING_TTL_FACTOR = 3  # the typed identity waits three code lifetimes (resends included)


def _services() -> PortalServices:
    """This app's portal services."""
    services: PortalServices = current_app.extensions["portal"]
    return services


def _locale() -> str:
    """The page's locale as our code: zh_CN or en (Babel says zh_Hans_CN for zh_CN)."""
    return page_locale()


def _remote() -> str:
    """The requesting address (after ProxyFix when configured)."""
    return request.remote_addr or ""


def _client_ident(hs: Handshake | None) -> str:
    """Rate-limit identity, from what the sender cannot choose: the address the request came
    from and, behind an AP's NAT, the client IP the AP signed. A FAS hand-over's client IP is
    unsigned (anyone's claim), so it never splits a limit (issue #11 defect 4)."""
    if hs is not None and hs.kind == HANDSHAKE_SIGNED:
        return f"{_remote()}|{hs.ap_id}|{hs.client_ip}"
    if hs is not None:
        return f"{_remote()}|{hs.ap_id}"
    return _remote()


def _sending_client(hs: Handshake) -> str:
    """Who asks for a code, for the daily cap per client: the AP-signed client IP, or for an
    unsigned FAS hand-over the address the request came from."""
    if hs.kind == HANDSHAKE_SIGNED:
        return f"{hs.ap_id}:{hs.client_ip}"
    return f"{hs.ap_id}:from:{_remote()}"


def _message(title: str, text: str, status: int = 200, flow: Flow | None = None,
             retry_after: int = 0) -> Response:
    """A short page with one message (bad link, too many attempts, expired...)."""
    response = Response(render_template(
        "portal/message.html", title=title, text=text, flow_token=_token(flow) if flow else "",
        lang=_locale(),
    ), status=status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _token(flow: Flow) -> str:
    """The signed token of a flow."""
    return _services().flows.dump(flow)


def _limited(name: str, ident: str) -> Response | None:
    """A 429 page when the client went over a rate limit, else None."""
    decision = _services().limiter.hit(name, ident)
    if decision.allowed:
        return None
    return _limit_refused(name, ident, decision)


def _limit_refused(name: str, ident: str, decision: Decision) -> Response:
    """Log a refused hit and answer with the 429 page."""
    LOGGER.warning("rate limit %s exceeded by %s (%d/%d)", name, ident, decision.count,
                   decision.limit)
    return _too_many(decision)


def _too_many(decision: Decision) -> Response:
    """The 429 page."""
    return _message(_("Too many attempts"),
                    _("Please wait %(seconds)d seconds and try again.",
                      seconds=decision.retry_after),
                    status=429, retry_after=decision.retry_after)


_REFUSALS = {
    "replayed": 409,
    "expired": 400,
    "bad_signature": 403,
    "unknown_ap": 403,
    "bad_gateway": 403,
    "missing": 400,
    "malformed": 400,
}


def _refused(error: HandshakeError) -> Response:
    """The page for a redirect that was refused: what to do, not what went wrong inside."""
    LOGGER.warning("AP redirect refused (%s): %s", error.reason, error.detail)
    if error.reason in ("replayed", "expired"):
        text = _("This sign-in link has expired or was already used. Close this page and open "
                 "any web page: the Wi-Fi will show you a fresh sign-in page.")
    else:
        text = _("This sign-in link is not valid. Connect to the community Wi-Fi and open any "
                 "web page to get the sign-in page.")
    return _message(_("Please start again"), text, status=_REFUSALS.get(error.reason, 400))


_CHOICES: dict[tuple[str, str, int], tuple[tuple[SelectChoice, ...], frozenset[str]]] = {}


def _unit_choices(flow: Flow) -> tuple[tuple[SelectChoice, ...], frozenset[str]]:
    """Choices for "where do you live" (the AP's units, or a visitor) and their values, kept
    per AP, language and registry version: a building AP has a hundred units."""
    services = _services()
    ap_id = flow.handshake.ap_id
    key = (ap_id, _locale(), services.directory.version)
    cached = _CHOICES.get(key)
    if cached is None:
        units = services.directory.units_for(ap_id)
        if len(_CHOICES) > 10_000:
            _CHOICES.clear()
        choices = [SelectChoice(UNIT_NOT_GIVEN, _("Please choose"))] if len(units) != 1 else []
        choices += [SelectChoice(str(u.id), u.label) for u in units]
        choices.append(SelectChoice(UNIT_VISITOR, _("I am visiting")))
        cached = _CHOICES[key] = (tuple(choices), frozenset(c.value for c in choices))
    return cached


def _set_unit_choices(form: SignInForm, flow: Flow) -> None:
    """Give a posted identity form the AP's unit choices."""
    choices, values = _unit_choices(flow)
    form.unit.choices = list(choices)
    form.unit.allowed = values


_OPTIONS: dict[tuple[str, str, int], Markup] = {}


def _unit_options(flow: Flow, selected: str) -> Markup:
    """The unit <option>s, rendered once per AP, language and registry version.

    A building AP lists every unit of the building; rendering those options through
    WTForms/Jinja on every splash page was most of the page's time.
    """
    services = _services()
    ap_id = flow.handshake.ap_id
    key = (ap_id, _locale(), services.directory.version)
    html = _OPTIONS.get(key)
    if html is None:
        if len(_OPTIONS) > 10_000:
            _OPTIONS.clear()
        html = Markup("").join(
            Markup('<option value="{}">{}</option>').format(c.value, c.label)
            for c in _unit_choices(flow)[0])
        _OPTIONS[key] = html
    if selected:
        marker = str(Markup('value="{}"').format(selected))
        html = Markup(str(html).replace(marker, marker + " selected", 1))
    return html


def _one_tap_device(flow: Flow, known_hint: bool | None = None) -> tuple[int, str] | None:
    """(device id, masked name) when this address is a known device that may skip the code.

    known_hint False (Redis says the address was never bound) skips the registry query. Only an
    address the AP signed counts: a FAS hand-over's MAC is anyone's claim.
    """
    services = _services()
    settings = services.settings
    if (settings.portal_reverify_days <= 0 or known_hint is False
            or flow.handshake.kind != HANDSHAKE_SIGNED):
        return None
    pseudonym = pseudonymize_mac(flow.handshake.mac, settings.pseudonym_key)
    now = dt.datetime.now(dt.UTC)
    with services.session_factory() as session:
        device = known_device(session, pseudonym, now.astimezone(settings.tz).date())
        fresh = now - dt.timedelta(days=settings.portal_reverify_days)
        # Only a registry-verified resident's device: were a self-declared one offered too, the
        # next visit would tell whoever typed an identity whether it is in the registry (an
        # unknown one becomes self-declared and bound, a registered one a mismatch).
        if (device is None or device.bound_at < fresh
                or device.resident.verification is not Verification.REGISTERED):
            return None
        return device.id, mask_name(device.resident.name)


def _place(flow: Flow | None) -> str:
    """The community and building the AP is in, for the page header."""
    if flow is None:
        return ""
    info = _services().directory.get(flow.handshake.ap_id)
    return info.place if info else ""


def _render_form(flow: Flow, form: SignInForm | None = None, status: int = 200,
                 notice: str = "", full: bool = False, known_hint: bool | None = None
                 ) -> Response:
    """The identity form (or, for a known device, the one-tap page)."""
    token = _token(flow)
    if form is None and not full:
        known = _one_tap_device(flow, known_hint)
        if known is not None:
            tap = OneTapForm(meta={"csrf_context": flow.fid}, formdata=None,
                             data={"flow": token, "lang": _locale()})
            return Response(render_template(
                "portal/one_tap.html", form=tap, greeting=known[1], flow_token=token,
                place=_place(flow), lang=_locale(),
            ), status=status)
    if form is None:
        units = _services().directory.units_for(flow.handshake.ap_id)
        # A unit AP: its unit is the likely answer.
        selected = str(units[0].id) if len(units) == 1 else ""
        if not notice:
            html = _PAGES.fill(
                ("splash", flow.handshake.ap_id, _locale(), _services().directory.version,
                 selected),
                lambda markers: _splash_html(flow, markers["flow"], markers["csrf"], selected),
                text={}, url_safe={"flow": token, "csrf": flow_csrf_token(flow.fid)})
            if html is not None:
                return Response(html, status=status)
        form = SignInForm(meta={"csrf_context": flow.fid}, formdata=None,
                          data={"flow": token, "lang": _locale()})
        form.unit.data = selected or None
    else:
        form.flow.data = token
    return Response(render_template(
        "portal/splash.html", form=form, flow_token=token, place=_place(flow), notice=notice,
        lang=_locale(), unit_options=_unit_options(flow, str(form.unit.data or "")),
    ), status=status)


_PAGES = PageCache()


def _splash_html(flow: Flow, token: str, csrf_token: str, selected: str) -> str:
    """The empty identity form with the given tokens (markers, for the page cache)."""
    form = SignInForm(meta={"csrf_context": flow.fid}, formdata=None,
                      data={"flow": token, "lang": _locale()})
    form.csrf_token.current_token = csrf_token
    form.unit.data = selected or None
    return render_template(
        "portal/splash.html", form=form, flow_token=token, place=_place(flow), notice="",
        lang=_locale(), unit_options=_unit_options(flow, selected),
    )


def _code_html(flow: Flow, token: str, csrf_token: str, phone: str, wait: int) -> str:
    """The code page without a notice or error (markers, for the page cache)."""
    data = {"flow": token, "lang": _locale()}
    form = CodeForm(meta={"csrf_context": flow.fid}, formdata=None, data=data)
    resend = ResendForm(meta={"csrf_context": flow.fid}, formdata=None, data=data)
    form.csrf_token.current_token = resend.csrf_token.current_token = csrf_token
    return render_template(
        "portal/code.html", form=form, resend=resend, phone=phone,
        minutes=_services().otp.policy.ttl // 60, wait=wait, notice="", place=_place(flow),
        flow_token=token, lang=_locale(),
    )


def _render_code(flow: Flow, declared: DeclaredIdentity, form: CodeForm | None = None,
                 notice: str = "", status: int = 200, wait: int | None = None) -> Response:
    """The page asking for the SMS code (wait: cooldown seconds, when already known)."""
    token = _token(flow)
    services = _services()
    if form is None and not notice:
        left = services.otp.cooldown_left(declared.phone) if wait is None else wait
        html = _PAGES.fill(
            ("code", flow.handshake.ap_id, _locale(), services.directory.version,
             services.otp.policy.ttl, left),  # a number in the text (%d): part of the key
            lambda m: _code_html(flow, m["flow"], m["csrf"], m["phone"], left),
            text={"phone": mask_phone(declared.phone)},
            url_safe={"flow": token, "csrf": flow_csrf_token(flow.fid)})
        if html is not None:
            return Response(html, status=status)
    if form is None:
        form = CodeForm(meta={"csrf_context": flow.fid}, formdata=None,
                        data={"flow": token, "lang": _locale()})
    else:
        form.flow.data = token
        form.code.data = ""
    resend = ResendForm(meta={"csrf_context": flow.fid}, formdata=None,
                        data={"flow": token, "lang": _locale()})
    if wait is None:
        wait = services.otp.cooldown_left(declared.phone)
    return Response(render_template(
        "portal/code.html", form=form, resend=resend, phone=mask_phone(declared.phone),
        minutes=services.otp.policy.ttl // 60, wait=wait,
        notice=notice, place=_place(flow), flow_token=token, lang=_locale(),
    ), status=status)


def _render_done(flow: Flow, result: SignInResult) -> Response:
    """The page after a successful sign-in (for FAS, it sends the browser to the gateway)."""
    original = flow.handshake.original_url
    if urlsplit(original).scheme not in ("http", "https"):
        original = ""
    hours = result.session_seconds // 3600

    def done_html(markers: Mapping[str, str]) -> str:
        """The page with markers for the greeting and the link (for the page cache)."""
        shown = replace(result, greeting=markers["greeting"])
        return render_template(
            "portal/done.html", result=shown, fas_url=markers["link"] if result.fas_url else None,
            original_url=markers["link"] if original else "", hours=hours, place=_place(flow),
            lang=_locale(),
        )

    html = _PAGES.fill(
        ("done", flow.handshake.ap_id, _locale(), _services().directory.version, hours,
         bool(result.fas_url), bool(original), result.released_devices > 0),
        done_html, text={"greeting": result.greeting, "link": result.fas_url or original})
    assert html is not None  # no URL-safe values: always filled
    response = Response(html)
    if result.fas_url:
        # Following the gateway link is what lets the device through: allow it as a target.
        response.headers["Content-Security-Policy"] = (
            current_app.config.get("PORTAL_CSP_FAS")
            or "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http:; "
               "frame-ancestors 'none'; base-uri 'none'"
        )
    return response


def _flow_from(token: str | None) -> Flow | Response:
    """The flow from a posted or linked token, or the page that says to start again."""
    try:
        return _services().flows.load(token)
    except FlowError as error:
        LOGGER.info("flow token refused: %s", error.reason)
        return _message(_("Please start again"),
                        _("This page has expired. Close it and open any web page to sign in "
                          "again."), status=400)


def _landing_url() -> str:
    """Where openNDS sends the browser after letting it through."""
    base = _services().settings.portal_public_url.rstrip("/")
    return f"{base}{url_for('captive.welcome', lang=_locale())}"


@bp.get("/")
def splash() -> Response:
    """The page the AP redirects to: check the hand-over, then show the sign-in form."""
    args = {k: v for k, v in request.args.items()}
    if args.get("status") == "authenticated":
        return _message(_("You are online"),
                        _("This device is already signed in. You can use the Internet."))
    kind = is_handshake(args)
    if kind is None:
        return Response(render_template("portal/start.html", lang=_locale()))
    services = _services()
    ident = _client_ident(None)  # refused hand-overs count against the sending address
    try:
        if kind == HANDSHAKE_SIGNED:
            max_age = services.settings.portal_redirect_max_age
            hs = verify_signed_redirect(args, services.directory.key_for, max_age)
            # A nonce stays claimed for as long as its redirect could still be accepted.
            key = f"{services.settings.redis_key_prefix}portal:nonce:{hs.ap_id}:{hs.nonce}"
            pseudonym = pseudonymize_mac(hs.mac, services.settings.pseudonym_key)
            decision, fresh, known = services.limiter.hit_and_claim(
                "page", _client_ident(hs), key, max_age + MAX_FUTURE_SKEW_S,
                probe_key=services.client_sessions.known_key(pseudonym))
            if not decision.allowed:
                return _too_many(decision)
            if not fresh:
                raise HandshakeError("replayed", f"nonce {hs.nonce} of AP {hs.ap_id} was used")
        else:
            limited = _limited("page", ident)
            if limited is not None:
                return limited
            hs = parse_fas(args, services.directory.fas_gateway_for)
            known = None
    except HandshakeError as error:
        if error.reason != "replayed":
            limited = _limited("page", ident)  # forgeries count against the client too
            if limited is not None:
                return limited
        return _refused(error)
    return _render_form(services.flows.new(hs), known_hint=known)


@bp.get("/s")
def resume() -> Response:
    """The form again for an existing flow (language switch, "not me" on the one-tap page)."""
    flow = _flow_from(request.args.get("f"))
    if isinstance(flow, Response):
        return flow
    return _render_form(flow, full=request.args.get("full") == "1")


def _posted_flow() -> Flow | Response:
    """The flow of a posted form."""
    return _flow_from(request.form.get("flow"))


def _send_code(flow: Flow, declared: DeclaredIdentity, resend: bool,
               form: SignInForm | None = None, keep: bool = False) -> Response:
    """Issue a code within the limits, send it, and show the code page (or why not).

    keep: also store the identity as the flow's pending one, in the issue's round trip (only
    when the code goes out: a refused send leaves the flow's pending identity as it was).
    """
    services = _services()
    hs = flow.handshake
    client = _sending_client(hs)
    stash = None
    if keep:
        stash = (services.pending.key(flow.fid), services.pending.encode(declared),
                 services.otp.policy.ttl * PENDING_TTL_FACTOR)
    binding = services.otp.binding(*declared.binding_parts())
    result = services.otp.issue(flow.fid, declared.phone, client, ap=hs.ap_id, binding=binding,
                                stash=stash)
    problem = ""
    if result.status is IssueStatus.COOLDOWN:
        problem = _("A code was sent to this number a moment ago. Please wait %(seconds)d "
                    "seconds before asking for another.", seconds=result.retry_after)
    elif result.status is IssueStatus.CAP_PHONE:
        problem = _("This number has received the most codes allowed today. Please try again "
                    "tomorrow.")
    elif result.status is IssueStatus.CAP_CLIENT:
        problem = _("This device has asked for the most codes allowed today. Please try again "
                    "tomorrow.")
    elif result.status is IssueStatus.CAP_AP:
        if result.first_over_budget:
            raise_sms_budget_alert(services, hs.ap_id)
        problem = _("This Wi-Fi has sent the most codes allowed for now. Please try again in "
                    "an hour.")
    else:
        text = _("[Community Wi-Fi] Your verification code is %(code)s, valid for %(minutes)d "
                 "minutes. Never share it.", code=result.code,
                 minutes=services.otp.policy.ttl // 60)
        try:
            services.sms.send(declared.phone, text, result.code)
        except SmsError as error:
            LOGGER.error("SMS not sent: %s", error)
            services.otp.release(flow.fid, declared.phone, client, ap=hs.ap_id)
            problem = _("The SMS could not be sent just now. Please try again in a minute.")
    if problem:
        if resend:
            return _render_code(flow, declared, notice=problem)
        if form is None:
            form = SignInForm(meta={"csrf_context": flow.fid}, formdata=None)
            _set_unit_choices(form, flow)
        return _render_form(flow, form=form, notice=problem)
    notice = _("A new code is on its way.") if resend else ""
    # Just sent: the cooldown is the policy's, no need to ask Redis.
    return _render_code(flow, declared, notice=notice,
                        wait=int(services.otp.policy.resend_seconds))


@bp.post("/signin")
def signin() -> Response:
    """The identity form was sent: check it, keep it pending, send the code."""
    flow = _posted_step("signin")
    if isinstance(flow, Response):
        return flow
    form = SignInForm(meta={"csrf_context": flow.fid})
    _set_unit_choices(form, flow)
    if not form.validate():
        return _render_form(flow, form=form)
    services = _services()
    unit_id = int(form.unit.data) if (form.unit.data or "").isdigit() else None
    declared = DeclaredIdentity(
        name=clean_name(form.name.data or ""), id_type=form.id_type.data or "",
        id_number=clean_id_number(form.id_number.data or ""),
        phone=clean_phone(form.phone.data or "", services.settings.portal_sms_regions),
        unit_id=unit_id,
        consent_version=CONSENT_VERSION,
    )
    return _send_code(flow, declared, resend=False, form=form, keep=True)


def _pending(flow: Flow, declared: DeclaredIdentity | None) -> DeclaredIdentity | Response:
    """The identity waiting for this flow's code, or the page that says to start again."""
    if declared is None:
        return _message(_("Please start again"),
                        _("Your sign-in took too long and was cancelled. Please fill in the form "
                          "again."), flow=flow, status=400)
    return declared


def _posted_step(limit: str) -> Flow | Response:
    """The posted flow, once it has passed the client's rate limit for this step."""
    flow = _posted_flow()
    if isinstance(flow, Response):
        return flow
    limited = _limited(limit, _client_ident(flow.handshake))
    return flow if limited is None else limited


def _posted_pending_step(limit: str) -> tuple[Flow, DeclaredIdentity] | Response:
    """The posted, rate-limited flow and the identity waiting for its code (the count and
    the pending identity in one Redis round trip)."""
    flow = _posted_flow()
    if isinstance(flow, Response):
        return flow
    services = _services()
    decision, blob = services.limiter.hit_and_get(limit, _client_ident(flow.handshake),
                                                  services.pending.key(flow.fid))
    if not decision.allowed:
        return _limit_refused(limit, _client_ident(flow.handshake), decision)
    declared = _pending(flow, services.pending.decode(blob))
    if isinstance(declared, Response):
        return declared
    return flow, declared


@bp.post("/resend")
def resend() -> Response:
    """Send a new code (after the cooldown)."""
    step = _posted_pending_step("signin")
    if isinstance(step, Response):
        return step
    flow, declared = step
    form = ResendForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _render_code(flow, declared, notice=_first_error(form))
    return _send_code(flow, declared, resend=True)


def _first_error(form: FlowForm) -> str:
    """The first validation message of a form (CSRF included)."""
    for errors in form.errors.values():
        if errors:
            return str(errors[0])
    return ""


@bp.post("/verify")
def verify() -> Response:
    """Check the code; on success finish the sign-in and let the device through."""
    step = _posted_pending_step("verify")
    if isinstance(step, Response):
        return step
    flow, declared = step
    form = CodeForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _render_code(flow, declared, form=form)
    services = _services()
    # The code vouches only for what it was sent for: the identity signed in must be that one.
    checked = services.otp.verify(flow.fid, form.code.data or "",
                                  binding=services.otp.binding(*declared.binding_parts()))
    if checked.status is VerifyStatus.WRONG:
        form.code.errors = [_("That code is not right. %(left)d tries left.",
                              left=checked.tries_left)]
        return _render_code(flow, declared, form=form)
    if checked.status is VerifyStatus.LOCKED:
        form.code.errors = [_("Too many wrong codes. Please ask for a new code.")]
        return _render_code(flow, declared, form=form)
    if checked.status in (VerifyStatus.EXPIRED, VerifyStatus.UNBOUND):
        form.code.errors = [_("This code has expired. Please ask for a new code.")]
        return _render_code(flow, declared, form=form)
    try:
        result = complete_sign_in(services, flow, declared, request.user_agent.string,
                                  _remote(), _locale(), _landing_url())
    except NotAuthorized:
        return _not_authorized(flow)
    return _render_done(flow, result)


def _not_authorized(flow: Flow) -> Response:
    """The sign-in is recorded but the AP did not get the command: ask to retry."""
    return _message(_("Almost there"),
                    _("You are signed in, but the Wi-Fi access point did not answer. Open any "
                      "web page in a minute to connect with one tap."), status=503, flow=flow)


@bp.post("/one-tap")
def one_tap() -> Response:
    """A known device signs in without a new code."""
    flow = _posted_step("signin")
    if isinstance(flow, Response):
        return flow
    form = OneTapForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _message(_("Please start again"), _first_error(form), status=400)
    known = _one_tap_device(flow)
    if known is None:
        return _render_form(flow, full=True)
    try:
        result = complete_one_tap(_services(), flow, known[0], request.user_agent.string,
                                  _remote(), _locale(), _landing_url())
    except LookupError:
        return _render_form(flow, full=True)
    except NotAuthorized:
        return _not_authorized(flow)
    return _render_done(flow, result)


@bp.get("/welcome")
def welcome() -> Response:
    """Where openNDS sends the browser once the device is through."""
    return _message(_("You are online"), _("Welcome. You can use the Internet now."))


@bp.get("/terms")
def terms() -> str:
    """Terms of use."""
    return render_template("portal/terms.html", back=_back_link(), lang=_locale())


@bp.get("/privacy")
def privacy() -> str:
    """The privacy notice: what is collected, why, how long, and who sees it."""
    settings = _services().settings
    return render_template("portal/privacy.html", back=_back_link(), lang=_locale(),
                           retention_days=settings.retention_days,
                           session_hours=settings.portal_session_seconds // 3600)


@bp.get("/about")
def about() -> str:
    """Venue information (the RFC 8908 venue-info-url when none is configured)."""
    return render_template("portal/about.html", lang=_locale())


def _back_link() -> str:
    """A link back to the form when the page was opened from a flow."""
    token = request.args.get("f")
    if not token:
        return ""
    return url_for("captive.resume", f=token, lang=_locale())
