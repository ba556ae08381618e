"""The RFC 8908 Captive Portal API and the portal's small JSON endpoints.

A client learns the API's URI from DHCP option 114 / RA option (RFC 8910; the AP's config sets
it to ``{public_url}/api/captive?ap={ap_id}``) and asks it whether it is captive. The client is
recognised by the AP in the URI and its own address as the AP reports it (the AP forwards
client traffic without NAT to the portal, or sets ``X-Forwarded-For`` through a proxy hop).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request, url_for
from sqlalchemy import text

from census.channels import is_ap_id
from portal.const import CAPTIVE_JSON
from portal.services import portal_services

bp = Blueprint("api", __name__, url_prefix="/api")


def _json(body: dict[str, Any], status: int = 200, media_type: str = "application/json"
          ) -> Response:
    """A JSON response with an exact media type."""
    response = Response(json.dumps(body, separators=(",", ":")), status=status)
    response.headers["Content-Type"] = media_type
    return response


@bp.get("/captive")
def captive() -> Response:
    """RFC 8908 section 5: captive state, portal URL, seconds remaining, venue info."""
    services = portal_services()
    settings = services.settings
    ap_id = request.args.get("ap", "")
    base = settings.portal_public_url.rstrip("/")
    body: dict[str, Any] = {"captive": True}
    remaining = 0
    if is_ap_id(ap_id) and services.directory.get(ap_id) is not None:
        remaining = services.client_sessions.remaining(ap_id, request.remote_addr or "")
    if remaining > 0:
        body["captive"] = False
        body["seconds-remaining"] = remaining
        body["can-extend-session"] = True
    body["user-portal-url"] = f"{base}{url_for('captive.splash')}"
    body["venue-info-url"] = settings.portal_venue_info_url or f"{base}{url_for('captive.about')}"
    response = _json(body, media_type=CAPTIVE_JSON)
    # RFC 8908 section 4.1: the state is per client and changes; never cache it in between.
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/ping")
def ping() -> Response:
    """A static answer with no work behind it (liveness, and the benchmark's baseline)."""
    return Response("ok\n", mimetype="text/plain")


@bp.get("/health")
def health() -> Response:
    """Whether Redis and the registry answer (for the demo and the orchestrator)."""
    services = portal_services()
    checks: dict[str, str] = {}
    try:
        services.redis.ping()
        checks["redis"] = "ok"
    except Exception as error:  # any failure means "not healthy"; the type is the message
        checks["redis"] = error.__class__.__name__
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["registry"] = "ok"
    except Exception as error:  # as above
        checks["registry"] = error.__class__.__name__
    healthy = all(value == "ok" for value in checks.values())
    return _json({"ok": healthy, **checks}, status=200 if healthy else 503)
