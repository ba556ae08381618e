"""The resident's sign-in pages: hand-over from the AP, mobile number, SMS code, identity,
connected.

The number comes first and the identity only once the code came back: the identity signed in
always carries the number this flow proved, whatever is posted (issue #11, defect 1).

Pages are small, carry their state in a signed hidden field (no cookies needed), and every
mistake is a message on the same page, never an error page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from markupsafe import Markup
from wtforms.fields.choices import SelectChoice

from census.channels import RedisKeys
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
from portal.flow import FLOW_MAX_AGE_S, Flow, FlowError, FlowStop, PhoneClaim
from portal.forms import (
    UNIT_NOT_GIVEN,
    UNIT_VISITOR,
    CodeForm,
    FlowForm,
    IdentityForm,
    OneTapForm,
    PhoneForm,
    ResendForm,
    flow_csrf_token,
)
from portal.i18n import page_locale
from portal.identity import DeclaredIdentity, clean_id_number, clean_name, clean_phone
from portal.otp import IssueStatus, VerifyStatus
from portal.pages import PageCache
from portal.ratelimit import Decision, RateLimited
from portal.services import portal_services
from portal.signin import (
    NotAuthorized,
    RegistryUnavailable,
    SignInResult,
    complete_one_tap,
    complete_sign_in,
    raise_sms_budget_alert,
)
from portal.sms import SmsError
from registry.models import Verification

LOGGER = logging.getLogger(__name__)
bp = Blueprint("captive", __name__)

PENDING_TTL_FACTOR = 3  # the number waits three code lifetimes for its code (resends included)


@dataclass
class _Caches:
    """Rendered pieces this app keeps between requests (owned by the app, not the module:
    two apps in one process, as in the tests, have their own registries and keys)."""

    pages: PageCache = field(default_factory=PageCache)
    choices: dict[tuple[str, str, int], tuple[tuple[SelectChoice, ...], frozenset[str]]] = (
        field(default_factory=dict))
    options: dict[tuple[str, str, int], Markup] = field(default_factory=dict)


@bp.record_once
def _own_caches(state: BlueprintSetupState) -> None:
    """Give the app that registers the blueprint its own caches."""
    state.app.extensions["captive_caches"] = _Caches()


@bp.context_processor
def _help_number() -> dict[str, str]:
    """Every resident page shows the help number (a way forward from any page)."""
    return {"help_phone": portal_services().settings.portal_help_phone}


# The resident pages' policy plus our own scripts (the code page's countdown, the form's
# refresh-safe address): from the portal itself only, never inline.
RESIDENT_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.after_request
def _resident_csp(response: Response) -> Response:
    """The resident pages' Content-Security-Policy (the FAS done page sets its own)."""
    response.headers.setdefault("Content-Security-Policy", RESIDENT_CSP)
    return response


def _caches() -> _Caches:
    """This app's caches."""
    caches: _Caches = current_app.extensions["captive_caches"]
    return caches


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
             retry_after: int = 0, forward: tuple[str, str] | None = None,
             restart_token: str = "", restart: bool = False) -> Response:
    """A short page with one message (bad link, too many attempts, expired...) and a way on:
    forward is (label, URL) of a button; restart_token offers a fresh flow for the device;
    restart a button to the configured address that makes the AP hand the device over again
    (for a page with no flow left to restart)."""
    restart_url = portal_services().settings.portal_restart_url if restart else ""
    response = Response(render_template(
        "portal/message.html", title=title, text=text, flow_token=_token(flow) if flow else "",
        lang=_locale(), forward=forward, restart_token=restart_token, restart_url=restart_url,
    ), status=status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _token(flow: Flow) -> str:
    """The signed token of a flow."""
    return portal_services().flows.dump(flow)


def _enforce(name: str, ident: str) -> None:
    """Count a hit; raise RateLimited when the client went over the limit."""
    _check(name, ident, portal_services().limiter.hit(name, ident))


def _check(name: str, ident: str, decision: Decision) -> None:
    """Log and raise a refused hit (the error handler answers with the 429 page)."""
    if not decision.allowed:
        LOGGER.warning("rate limit %s exceeded by %s (%d/%d)", name, ident, decision.count,
                       decision.limit)
        raise RateLimited(decision)


@bp.errorhandler(RateLimited)
def _too_many(error: RateLimited) -> Response:
    """The 429 page."""
    decision = error.decision
    return _message(_("Too many attempts"),
                    _("Please wait %(seconds)d seconds and try again.",
                      seconds=decision.retry_after),
                    status=429, retry_after=decision.retry_after, forward=_back_to_form())


def _back_to_form() -> tuple[str, str] | None:
    """A button back to the form of the request's flow, when it has a valid one."""
    token = request.values.get("flow") or request.values.get("f")
    try:
        portal_services().flows.load(token)
    except FlowError:
        return None
    return _("Back to the form"), url_for("captive.resume", f=token, lang=_locale())


_REFUSALS = {
    "replayed": 409,
    "expired": 400,
    "bad_signature": 403,
    "unknown_ap": 403,
    "bad_gateway": 403,
    "missing": 400,
    "malformed": 400,
}


@bp.errorhandler(HandshakeError)
def _refused(error: HandshakeError) -> Response:
    """The page for a redirect that was refused: what to do, not what went wrong inside."""
    LOGGER.warning("AP redirect refused (%s): %s", error.reason, error.detail)
    if error.reason in ("replayed", "expired"):
        text = _("This sign-in link has expired or was already used. Tap the button, or open "
                 "any web page: the Wi-Fi will show you a fresh sign-in page.")
        # Signed (the signature is checked before the nonce and the clock): the page the
        # resident was opening. Asking for it again, the AP answers with a fresh signed link.
        original = request.args.get("url", "")
        if urlsplit(original).scheme in ("http", "https"):
            return _message(_("Please start again"), text,
                            status=_REFUSALS.get(error.reason, 400),
                            forward=(_("Open the sign-in page again"), original))
    else:
        text = _("This sign-in link is not valid. Tap the button to get a fresh sign-in page. "
                 "If nothing opens, connect to the community Wi-Fi and open any web page.")
    return _message(_("Please start again"), text, status=_REFUSALS.get(error.reason, 400),
                    restart=True)


def _unit_choices(flow: Flow) -> tuple[tuple[SelectChoice, ...], frozenset[str]]:
    """Choices for "where do you live" (the AP's units, or a visitor) and their values, kept
    per AP, language and registry version: a building AP has a hundred units."""
    services = portal_services()
    ap_id = flow.handshake.ap_id
    key = (ap_id, _locale(), services.directory.version)
    cache = _caches().choices
    cached = cache.get(key)
    if cached is None:
        units = services.directory.units_for(ap_id)
        if len(cache) > 10_000:
            cache.clear()
        # Nothing is pre-selected, not even a unit AP's one unit: a visitor who left it would be
        # recorded as living there. There, "I live here" or "I am visiting" must be chosen.
        choices = [SelectChoice(UNIT_NOT_GIVEN, _("Please choose"))]
        choices += [SelectChoice(str(u.id), u.label) for u in units]
        choices.append(SelectChoice(UNIT_VISITOR, _("I am visiting")))
        values = frozenset(c.value for c in choices
                           if len(units) != 1 or c.value != UNIT_NOT_GIVEN)
        cached = cache[key] = (tuple(choices), values)
    return cached


def _set_unit_choices(form: IdentityForm, flow: Flow) -> None:
    """Give a posted identity form the AP's unit choices."""
    choices, values = _unit_choices(flow)
    form.unit.choices = list(choices)
    form.unit.allowed = values


def _unit_options(flow: Flow, selected: str) -> Markup:
    """The unit <option>s, rendered once per AP, language and registry version.

    A building AP lists every unit of the building; rendering those options through
    WTForms/Jinja on every splash page was most of the page's time.
    """
    services = portal_services()
    ap_id = flow.handshake.ap_id
    key = (ap_id, _locale(), services.directory.version)
    cache = _caches().options
    html = cache.get(key)
    if html is None:
        if len(cache) > 10_000:
            cache.clear()
        html = Markup("").join(
            Markup('<option value="{}">{}</option>').format(c.value, c.label)
            for c in _unit_choices(flow)[0])
        cache[key] = html
    if selected:
        marker = str(Markup('value="{}"').format(selected))
        html = Markup(str(html).replace(marker, marker + " selected", 1))
    return html


def _one_tap_device(flow: Flow, known_hint: bool | None = None) -> tuple[int, str] | None:
    """(device id, masked name) when this address is a known device that may skip the code.

    known_hint False (Redis says the address was never bound) skips the registry query. Only an
    address the AP signed counts: a FAS hand-over's MAC is anyone's claim.
    """
    services = portal_services()
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
        return device.id, mask_name(services.cipher.reveal(device.resident.name_encrypted))


def _place(flow: Flow | None) -> str:
    """The community and building the AP is in, for the page header."""
    if flow is None:
        return ""
    info = portal_services().directory.get(flow.handshake.ap_id)
    return info.place if info else ""


def _render_form(flow: Flow, form: PhoneForm | None = None, status: int = 200,
                 notice: str = "", full: bool = False, known_hint: bool | None = None
                 ) -> Response:
    """The first page, the mobile number (or, for a known device, the one-tap page)."""
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
        if not notice:
            html = _caches().pages.fill(
                ("splash", flow.handshake.ap_id, _locale(), portal_services().directory.version),
                lambda markers: _splash_html(flow, markers["flow"], markers["csrf"]),
                text={}, url_safe={"flow": token, "csrf": flow_csrf_token(flow.fid)})
            if html is not None:
                return Response(html, status=status)
        form = PhoneForm(meta={"csrf_context": flow.fid}, formdata=None,
                         data={"flow": token, "lang": _locale()})
    else:
        form.flow.data = token
        form.lang.data = _locale()  # after a language switch, the page's new language
    return Response(render_template(
        "portal/splash.html", form=form, flow_token=token, place=_place(flow), notice=notice,
        lang=_locale(),
    ), status=status)


def _splash_html(flow: Flow, token: str, csrf_token: str) -> str:
    """The empty first page with the given tokens (markers, for the page cache)."""
    form = PhoneForm(meta={"csrf_context": flow.fid}, formdata=None,
                     data={"flow": token, "lang": _locale()})
    form.csrf_token.current_token = csrf_token
    return render_template(
        "portal/splash.html", form=form, flow_token=token, place=_place(flow), notice="",
        lang=_locale(),
    )


def _render_identity(flow: Flow, claim: PhoneClaim, form: IdentityForm | None = None,
                     notice: str = "", status: int = 200) -> Response:
    """The last page, once the number is proven: who signs in, and where they live."""
    token = _token(flow)
    if form is None:
        form = IdentityForm(meta={"csrf_context": flow.fid}, formdata=None,
                            data={"flow": token, "lang": _locale()})
        _set_unit_choices(form, flow)
    else:
        form.flow.data = token
        form.lang.data = _locale()
    return Response(render_template(
        "portal/identity.html", form=form, flow_token=token, place=_place(flow),
        lang=_locale(), phone=mask_phone(claim.phone), notice=notice,
        unit_options=_unit_options(flow, str(form.unit.data or "")),
    ), status=status)


def _code_html(flow: Flow, token: str, csrf_token: str, phone: str, wait: int) -> str:
    """The code page without a notice or error (markers, for the page cache)."""
    data = {"flow": token, "lang": _locale()}
    form = CodeForm(meta={"csrf_context": flow.fid}, formdata=None, data=data)
    resend = ResendForm(meta={"csrf_context": flow.fid}, formdata=None, data=data)
    form.csrf_token.current_token = resend.csrf_token.current_token = csrf_token
    return render_template(
        "portal/code.html", form=form, resend=resend, phone=phone,
        minutes=portal_services().otp.policy.ttl // 60, wait=wait, notice="", place=_place(flow),
        flow_token=token, lang=_locale(),
    )


def _render_code(flow: Flow, declared: PhoneClaim, form: CodeForm | None = None,
                 notice: str = "", status: int = 200, wait: int | None = None) -> Response:
    """The page asking for the SMS code (wait: cooldown seconds, when already known)."""
    token = _token(flow)
    services = portal_services()
    if form is None and not notice:
        left = services.otp.cooldown_left(declared.phone) if wait is None else wait
        html = _caches().pages.fill(
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
        form.lang.data = _locale()
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

    html = _caches().pages.fill(
        ("done", flow.handshake.ap_id, _locale(), portal_services().directory.version, hours,
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


def _flow_from(token: str | None) -> Flow:
    """The flow from a posted or linked token (FlowError: the page that says to start again)."""
    return portal_services().flows.load(token)


@bp.errorhandler(FlowError)
def _expired(error: FlowError) -> Response:
    """A missing, forged or expired flow token: the page that says to start again."""
    LOGGER.info("flow token refused: %s", error.reason)
    token = request.values.get("flow") or request.values.get("f") or ""
    if error.reason == "expired" and portal_services().flows.restartable(token):
        return _message(_("Please start again"),
                        _("This page has expired. Tap the button to start again."), status=400,
                        restart_token=token)
    # Forged, missing or too old: nothing here names the device, so the way forward is the
    # AP's own: a configured plain-HTTP address it intercepts and answers with a fresh
    # hand-over (never a URL taken from the request: that would be an open redirect).
    return _message(_("Please start again"),
                    _("This page is no longer valid. Tap the button to start again. If nothing "
                      "opens, close this page and open any web page."), status=400,
                    restart=True)


@bp.errorhandler(FlowStop)
def _stopped(error: FlowStop) -> Response:
    """A step that cannot go on: the page saying what to do instead."""
    forward = None
    if error.flow is not None:
        forward = (_("Fill in the form again"),
                   url_for("captive.resume", f=_token(error.flow), full=1, lang=_locale()))
    return _message(error.title, error.text, status=error.status, flow=error.flow,
                    forward=forward, restart=forward is None)


def _landing_url() -> str:
    """Where openNDS sends the browser after letting it through."""
    base = portal_services().settings.portal_public_url.rstrip("/")
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
    services = portal_services()
    ident = _client_ident(None)  # refused hand-overs count against the sending address
    try:
        if kind == HANDSHAKE_SIGNED:
            max_age = services.settings.portal_redirect_max_age
            hs = verify_signed_redirect(args, services.directory.key_for, max_age)
            # A nonce stays claimed for as long as its redirect could still be accepted.
            key = RedisKeys(services.settings.redis_key_prefix).handshake_nonce(hs.ap_id, hs.nonce)
            pseudonym = pseudonymize_mac(hs.mac, services.settings.pseudonym_key)
            decision, fresh, known = services.limiter.hit_and_claim(
                "page", _client_ident(hs), key, max_age + MAX_FUTURE_SKEW_S,
                probe_key=services.client_sessions.known_key(pseudonym))
            if not decision.allowed:
                raise RateLimited(decision)
            if not fresh:
                raise HandshakeError("replayed", f"nonce {hs.nonce} of AP {hs.ap_id} was used")
        else:
            _enforce("page", ident)
            hs = parse_fas(args, services.directory.fas_gateway_for)
            known = None
    except HandshakeError as error:
        if error.reason != "replayed":
            _enforce("page", ident)  # forgeries count against the client too
        raise
    return _render_form(services.flows.new(hs), known_hint=known)


@bp.get("/s")
def resume() -> Response:
    """The page a flow is at (a refresh, "not me" on the one-tap page): the identity page once
    the number is proven, else the first page; with what was typed so far."""
    flow = _flow_from(request.args.get("f"))
    services = portal_services()
    claim = services.pending.get(flow.fid)
    draft = services.pending.get_draft(flow.fid)
    if claim is not None and claim.proven:
        form = IdentityForm(meta={"csrf_context": flow.fid}, formdata=None,
                            data={k: v for k, v in draft.items() if k in IDENTITY_FIELDS})
        _set_unit_choices(form, flow)
        return _render_identity(flow, claim, form=form)
    if draft.get("phone") or draft.get("consent"):
        form = PhoneForm(meta={"csrf_context": flow.fid}, formdata=None,
                         data={"phone": draft.get("phone", ""),
                               "consent": draft.get("consent") == "y"})
        return _render_form(flow, form=form)
    return _render_form(flow, full=request.args.get("full") == "1")


# What a draft keeps of the forms, each value cut to the longest the form accepts.
DRAFT_FIELDS = {"name": 60, "id_type": 24, "id_number": 24, "phone": 20, "unit": 12,
                "consent": 1}
IDENTITY_FIELDS = frozenset(("name", "id_type", "id_number", "unit"))


@bp.post("/draft")
def draft() -> Response:
    """Keep what was typed so far (sent by the page's script as the resident types and when
    the page goes away), so that a refresh shows it again. Each page posts its own fields:
    they are added to what the other page kept."""
    flow = _posted_step("page")
    form = ResendForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return Response(status=400)
    pending = portal_services().pending
    posted = {name: (request.form.get(name) or "")[:limit]
              for name, limit in DRAFT_FIELDS.items() if name in request.form}
    if "phone" in posted:
        posted.setdefault("consent", "")  # an unticked box is not posted at all
    pending.put_draft(flow.fid, {**pending.get_draft(flow.fid), **posted}, FLOW_MAX_AGE_S)
    return Response(status=204)


def _posted_flow() -> Flow:
    """The flow of a posted form."""
    return _flow_from(request.form.get("flow"))


def _send_code(flow: Flow, claim: PhoneClaim, resend: bool,
               form: PhoneForm | None = None) -> Response:
    """Issue a code within the limits, send it, and show the code page (or why not).

    The claim (the number, not yet proven) becomes the flow's in the same round trip, only
    when the code goes out: a refused send leaves the flow's claim as it was.
    """
    services = portal_services()
    hs = flow.handshake
    client = _sending_client(hs)
    stash = (services.pending.key(flow.fid), services.pending.encode(claim),
             services.otp.policy.ttl * PENDING_TTL_FACTOR)
    binding = services.otp.binding(*claim.binding_parts())
    result = services.otp.issue(flow.fid, claim.phone, client, ap=hs.ap_id, binding=binding,
                                stash=stash)
    problem = ""
    if result.status is IssueStatus.PENDING and not resend:
        # The number came back unchanged within its cooldown ("change number", then the same
        # number): the code already sent to it stands, and its countdown goes on.
        return _render_code(flow, claim, wait=result.retry_after,
                            notice=_("The code sent to this number a moment ago is still "
                                     "valid. Please enter it."))
    if result.status in (IssueStatus.COOLDOWN, IssueStatus.PENDING):
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
            services.sms.send(claim.phone, text, result.code)
        except SmsError as error:
            LOGGER.error("SMS not sent: %s", error)
            services.otp.release(flow.fid, claim.phone, client, ap=hs.ap_id)
            problem = _("The SMS could not be sent just now. Please try again in a minute.")
    if problem:
        if resend:
            return _render_code(flow, claim, notice=problem)
        return _render_form(flow, form=form, notice=problem)
    notice = _("A new code is on its way.") if resend else ""
    # Just sent: the cooldown is the policy's, no need to ask Redis.
    return _render_code(flow, claim, notice=notice,
                        wait=int(services.otp.policy.resend_seconds))


@bp.post("/signin")
def signin() -> Response:
    """The first page was sent: check the number, send the code (the number becomes the
    flow's claim, not yet proven)."""
    flow = _posted_step("signin")
    form = PhoneForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _render_form(flow, form=form)
    services = portal_services()
    current = services.pending.get(flow.fid)
    if current is not None and current.proven:
        # A number is being sent again after it was proven (the back button): whatever
        # happens to this send, the flow has no proven number any more.
        services.pending.drop(flow.fid)
    claim = PhoneClaim(
        phone=clean_phone(form.phone.data or "", services.settings.portal_sms_regions),
        consent_version=CONSENT_VERSION)
    return _send_code(flow, claim, resend=False, form=form)


def _pending(flow: Flow, claim: PhoneClaim | None) -> PhoneClaim:
    """The number this flow sent a code to (FlowStop: the page that says to start again)."""
    if claim is None:
        raise FlowStop(_("Please start again"),
                       _("Your sign-in took too long and was cancelled. Please fill in the form "
                         "again."), flow=flow)
    return claim


def _posted_step(limit: str) -> Flow:
    """The posted flow, once it has passed the client's rate limit for this step."""
    flow = _posted_flow()
    _enforce(limit, _client_ident(flow.handshake))
    return flow


def _posted_pending_step(limit: str) -> tuple[Flow, PhoneClaim, bytes]:
    """The posted, rate-limited flow, its phone claim and the claim as stored (the count and
    the claim in one Redis round trip)."""
    flow = _posted_flow()
    services = portal_services()
    decision, blob = services.limiter.hit_and_get(limit, _client_ident(flow.handshake),
                                                  services.pending.key(flow.fid))
    _check(limit, _client_ident(flow.handshake), decision)
    claim = _pending(flow, services.pending.decode(blob))
    assert blob is not None  # a claim was read from it
    return flow, claim, bytes(blob)


@bp.post("/again")
def again() -> Response:
    """Start a fresh flow for the device of an expired page (the "start again" button)."""
    _enforce("page", _client_ident(None))
    return _render_form(portal_services().flows.restart(request.form.get("flow")), full=True)


@bp.post("/lang")
def switch_language() -> Response:
    """The same page in the other language (?lang=), with what was typed so far: the switch
    posts the form instead of following a link, so nothing typed is lost."""
    flow = _posted_step("page")
    step = request.form.get("step")
    if step in ("code", "identity"):
        claim = _pending(flow, portal_services().pending.get(flow.fid))
        if step == "identity" and claim.proven:
            form = IdentityForm(meta={"csrf_context": flow.fid})
            _set_unit_choices(form, flow)
            return _render_identity(flow, claim, form=form)
        if not claim.proven:
            return _render_code(flow, claim)
    return _render_form(flow, form=PhoneForm(meta={"csrf_context": flow.fid}))


@bp.post("/change")
def change_phone() -> Response:
    """From the code page or the identity page back to the first page, filled in, to correct
    the mobile number: the flow's number is proven no longer."""
    flow, claim, _blob = _posted_pending_step("signin")
    if not ResendForm(meta={"csrf_context": flow.fid}).validate():
        raise FlowStop(_("Please start again"),
                       _("This page has expired. Please fill in the form again."), flow=flow)
    portal_services().pending.drop(flow.fid)
    form = PhoneForm(meta={"csrf_context": flow.fid}, formdata=None,
                     data={"phone": claim.phone, "consent": True})
    return _render_form(flow, form=form,
                        notice=_("Correct your mobile number, then ask for a new code."))


@bp.post("/resend")
def resend() -> Response:
    """Send a new code (after the cooldown)."""
    flow, claim, _blob = _posted_pending_step("signin")
    if claim.proven:
        return _render_identity(flow, claim)  # proven already: nothing to send
    form = ResendForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _render_code(flow, claim, notice=_first_error(form))
    return _send_code(flow, claim, resend=True)


def _first_error(form: FlowForm) -> str:
    """The first validation message of a form (CSRF included)."""
    for errors in form.errors.values():
        if errors:
            return str(errors[0])
    return ""


@bp.post("/verify")
def verify() -> Response:
    """Check the code; a correct one proves the flow's number, and the identity page follows."""
    flow, claim, blob = _posted_pending_step("verify")
    if claim.proven:
        return _render_identity(flow, claim)  # a second tap on "verify": already proven
    form = CodeForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        return _render_code(flow, claim, form=form)
    services = portal_services()
    proven = replace(claim, proven=True)
    # The code vouches only for the number it was sent to, and proves it only while the
    # flow's claim is still the one just read (not changed meanwhile).
    checked = services.otp.verify(
        flow.fid, form.code.data or "", binding=services.otp.binding(*claim.binding_parts()),
        prove=(services.pending.key(flow.fid), blob, services.pending.encode(proven),
               FLOW_MAX_AGE_S))
    if checked.status is VerifyStatus.WRONG:
        form.code.errors = [_("That code is not right. %(left)d tries left.",
                              left=checked.tries_left)]
        return _render_code(flow, claim, form=form)
    if checked.status is VerifyStatus.LOCKED:
        form.code.errors = [_("Too many wrong codes. Please ask for a new code.")]
        return _render_code(flow, claim, form=form)
    if checked.status in (VerifyStatus.EXPIRED, VerifyStatus.UNBOUND):
        form.code.errors = [_("This code has expired. Please ask for a new code.")]
        return _render_code(flow, claim, form=form)
    return _render_identity(flow, proven)


@bp.post("/identity")
def identity() -> Response:
    """The identity page was sent: sign in as that identity with the number this flow proved
    (never a posted one), once."""
    flow, claim, _blob = _posted_pending_step("signin")
    if not claim.proven:
        raise FlowStop(_("Please start again"),
                       _("Please confirm your mobile number with the code first."), flow=flow)
    form = IdentityForm(meta={"csrf_context": flow.fid})
    _set_unit_choices(form, flow)
    if not form.validate():
        return _render_identity(flow, claim, form=form)
    services = portal_services()
    # Read and forgotten in one step: two posts of this page cannot both sign in.
    taken = services.pending.take(flow.fid)
    if taken is None or not taken.proven or taken.phone != claim.phone:
        raise FlowStop(_("Please start again"),
                       _("Your sign-in took too long and was cancelled. Please fill in the form "
                         "again."), flow=flow)
    unit_id = int(form.unit.data) if (form.unit.data or "").isdigit() else None
    declared = DeclaredIdentity(
        name=clean_name(form.name.data or ""), id_type=form.id_type.data or "",
        id_number=clean_id_number(form.id_number.data or ""), phone=taken.phone,
        unit_id=unit_id, consent_version=taken.consent_version,
    )
    try:
        result = complete_sign_in(services, flow, declared, request.user_agent.string,
                                  _remote(), _locale(), _landing_url())
    except (RegistryUnavailable, NotAuthorized) as error:
        # Not finished: the number stays proven for this flow, so sending the same page again
        # works, records nothing twice (portal.signin's idempotency key) and sends the command
        # again.
        services.pending.put(flow.fid, taken, FLOW_MAX_AGE_S)
        if isinstance(error, NotAuthorized):
            notice = _("You are signed in, but the Wi-Fi access point did not answer. Please "
                       "send this page again in a minute to connect.")
        else:
            notice = _("Your sign-in could not be saved just now. Please send this page again "
                       "in a minute.")
        return _render_identity(flow, taken, form=form, notice=notice, status=503)
    return _render_done(flow, result)


def _not_authorized(flow: Flow) -> Response:
    """The sign-in is recorded but the AP did not get the command: ask to retry."""
    original = flow.handshake.original_url
    forward = ((_("Try again"), original) if urlsplit(original).scheme in ("http", "https")
               else None)
    return _message(_("Almost there"),
                    _("You are signed in, but the Wi-Fi access point did not answer. Open any "
                      "web page in a minute to connect with one tap."), status=503, flow=flow,
                    forward=forward)


@bp.post("/one-tap")
def one_tap() -> Response:
    """A known device signs in without a new code."""
    flow = _posted_step("signin")
    form = OneTapForm(meta={"csrf_context": flow.fid})
    if not form.validate():
        raise FlowStop(_("Please start again"), _first_error(form))
    known = _one_tap_device(flow)
    if known is None:
        return _render_form(flow, full=True)
    try:
        result = complete_one_tap(portal_services(), flow, known[0], request.user_agent.string,
                                  _remote(), _locale(), _landing_url())
    except LookupError:
        return _render_form(flow, full=True)
    except NotAuthorized:
        return _not_authorized(flow)
    except RegistryUnavailable:
        return _message(_("Please try again"),
                        _("Your sign-in could not be saved just now. Open any web page in a "
                          "minute to try again."), status=503)
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
    settings = portal_services().settings
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
