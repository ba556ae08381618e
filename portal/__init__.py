"""The captive portal: residents' real-name sign-in, the Captive Portal API and the back office.

``create_app`` is the application factory (flaskr style): defaults, then the settings, then test
overrides; one blueprint per concern (``captive``, ``api``, ``admin``). ``PORTAL_ROLE`` says
which a process serves: in production the residents' listener and the back office are separate
processes (``portal serve --role captive|admin``), so the back office is never reachable on the
public captive network.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, request, url_for
from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from census.settings import Settings
from portal.const import DEFAULT_LOCALE, ROLE_ADMIN, ROLE_BOTH, ROLE_CAPTIVE, ROLES
from portal.i18n import page_locale, select_locale
from portal.services import PortalConfigError, PortalServices

LOGGER = logging.getLogger(__name__)
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

babel = Babel()
csrf = CSRFProtect()
login_manager = LoginManager()

# No external assets, no scripts: inline styles only. Forms may post to the portal itself and,
# for openNDS FAS, the browser follows a link to the gateway (http).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The back office draws charts: scripts from the portal itself only (ECharts, served from
# portal/static, and our own files: never inline), and JSON fetched from the portal.
BACK_OFFICE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data: blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
BACK_OFFICE_BLUEPRINTS = frozenset({"admin", "units", "heatmaps", "inspections", "overview",
                                    "imports"})


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None
               ) -> Flask:
    """Build the portal application."""
    settings = settings or Settings.load()
    # Templates ship inside the package (portal/templates), found the way flaskr finds its own.
    app = Flask(__name__, template_folder="templates", static_folder="static",
                static_url_path="/static")
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="census_staff",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.environment == "production",
        # Staff cookies are browser-session cookies (never permanent: flask-login's strong
        # protection skips permanent sessions); this is the longest a signed one is accepted.
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.portal_staff_session_hours),
        REMEMBER_COOKIE_SECURE=settings.environment == "production",
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=3600,
        # Every message comes from our own catalogs; WTForms' would be loaded per request.
        WTF_I18N_ENABLED=False,
        BABEL_DEFAULT_LOCALE=DEFAULT_LOCALE,
        BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS),
        MAX_CONTENT_LENGTH=64 * 1024,
        PORTAL_PROXY_HOPS=0,  # reverse proxies in front whose X-Forwarded-* headers count
        PORTAL_RATE_LIMITS=None,  # None: portal.const.RATE_LIMITS
        PORTAL_SMS=None,  # an SmsSender to use instead of the configured one
        PORTAL_STAFF_LOGIN=None,  # a portal.staff_auth.LoginPolicy (None: the defaults)
        # captive, admin or both; None: both, except in production where it is captive
        PORTAL_ROLE=None,
        # Send what the AP command outbox holds from a thread of this process (None: unless
        # TESTING; tests that count commands start it themselves).
        PORTAL_OUTBOX_DRAIN=None,
    )
    if test_config:
        app.config.update(test_config)
    role = serving_role(settings, app.config["PORTAL_ROLE"])
    app.config["PORTAL_ROLE"] = role
    services = PortalServices.build(settings, sms=app.config["PORTAL_SMS"],
                                    rate_limits=app.config["PORTAL_RATE_LIMITS"],
                                    login_policy=app.config["PORTAL_STAFF_LOGIN"])
    app.extensions["portal"] = services
    drain = app.config["PORTAL_OUTBOX_DRAIN"]
    if drain or (drain is None and not app.config.get("TESTING")):
        # gunicorn builds the app in each worker after the fork: each worker drains, and a
        # worker that replaces a killed one sends what it left behind first thing.
        services.outbox.start()
    if app.config["PORTAL_PROXY_HOPS"]:
        hops = int(app.config["PORTAL_PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    babel.init_app(app, locale_selector=select_locale)
    csrf.init_app(app)
    login_manager.init_app(app)
    # The session's address is checked by portal.staff_auth against request.remote_addr;
    # flask-login's own check reads X-Forwarded-For, which any client can write.
    login_manager.session_protection = None
    app.jinja_env.globals["page_locale"] = page_locale

    from portal import (
        admin,
        api,
        captive,
        cases,
        errors,
        heatmaps,
        imports,
        inspections,
        labels,
        overview,
        residents,
        staff,
        units,
    )

    app.register_blueprint(api.bp)
    if role in (ROLE_CAPTIVE, ROLE_BOTH):
        app.register_blueprint(captive.bp)
        # Residents' forms carry a CSRF token bound to their flow (portal.forms.FlowCSRF),
        # checked by the forms themselves; the session-based check would fail without cookies.
        csrf.exempt(captive.bp)
    if role in (ROLE_ADMIN, ROLE_BOTH):
        app.register_blueprint(admin.bp)
        app.register_blueprint(cases.bp)
        app.register_blueprint(staff.bp)
        app.register_blueprint(units.bp)
        app.register_blueprint(heatmaps.bp)
        app.register_blueprint(inspections.bp)
        app.register_blueprint(overview.bp)
        app.register_blueprint(imports.bp)
        app.register_blueprint(residents.bp)
        # The inspection form carries photos: its size limit is raised inside the view, which
        # the global check (reading the form before any view) would not allow. Its FlaskForm
        # still checks the session-bound CSRF token itself.
        csrf.exempt(inspections.bp)
        csrf.exempt(imports.bp)  # registry uploads, the same way (portal/imports.py)
        admin.init_login(login_manager)
    if role == ROLE_ADMIN:
        app.add_url_rule("/", "root", lambda: redirect(url_for("overview.index")))
    app.register_blueprint(errors.bp)
    app.register_blueprint(labels.bp)  # no routes: template filters for the back office

    @app.after_request
    def security_headers(response: Response) -> Response:
        """Headers every page gets: no caching of personal data, no framing, no sniffing."""
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        back_office = request.blueprint in BACK_OFFICE_BLUEPRINTS
        response.headers.setdefault(
            "Content-Security-Policy", BACK_OFFICE_CSP if back_office else CONTENT_SECURITY_POLICY)
        return response

    return app


def serving_role(settings: Settings, asked: str | None) -> str:
    """What this process serves; the back office shares no listener with residents in
    production (their network is the public one, and it is plain HTTP up to the AP)."""
    production = settings.environment == "production"
    role = asked or (ROLE_CAPTIVE if production else ROLE_BOTH)
    if role not in ROLES:
        raise PortalConfigError(f"portal role {role!r}: must be one of {', '.join(ROLES)}")
    if production and role == ROLE_BOTH:
        raise PortalConfigError(
            "portal role 'both' is refused in production: serve the back office on its own "
            "listener (`portal serve --role admin`, WIFI_CENSUS_PORTAL_ADMIN_HOST/_PORT) "
            "behind HTTPS, and residents with `--role captive`")
    return role
