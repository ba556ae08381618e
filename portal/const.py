"""Constants of the captive portal: locales, handshake kinds, outcomes, limits, media types."""

from __future__ import annotations

# Locales: zh-CN is the default; English for everyone else who asks for it.
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"

# Version of the terms and privacy notice a resident consents to; bump when the text changes
# so that sign-in records say which text was accepted.
CONSENT_VERSION = "2026-11"

METHOD_SMS = "sms"
METHOD_ONE_TAP = "one_tap"

# Sign-in outcomes (portal_signins.outcome).
OUTCOME_REGISTERED = "registered"  # matched the registry: identity, name and phone agree
OUTCOME_SELF_DECLARED = "self_declared"  # not in the registry; recorded as unverified
OUTCOME_MISMATCH = "mismatch"  # identity known, but name or phone differ: not bound to it
# Identity and name of a current resident who has no phone on file: not bound, phone not
# written; staff may confirm the number after seeing the person (portal confirm-phone).
OUTCOME_UNCONFIRMED = "unconfirmed"
OUTCOME_VISITOR = "visitor"  # not in the registry and no unit given

# The one media type RFC 8908 defines for the Captive Portal API.
CAPTIVE_JSON = "application/captive+json"

# Rate limits: (requests, window seconds), applied per client (see portal/ratelimit.py).
RATE_LIMITS: dict[str, tuple[int, int]] = {
    "page": (120, 60),  # splash / start pages
    "signin": (20, 60),  # identity form submissions, code resends
    "verify": (30, 60),  # code entries (each code also has its own tries)
    # Resident searches per staff member: each shows masked identities, and a search by part of
    # a name decrypts every name in scope; a desk that looks people up case by case stays far
    # below it, a script walking the alphabet to copy the register does not.
    "staff_search": (60, 600),
}
# Staff password attempts are limited by portal.staff_auth.LoginPolicy (per name and address,
# per address, per name), staff sessions by WIFI_CENSUS_PORTAL_STAFF_IDLE_MINUTES/_SESSION_HOURS.

# What one portal process serves: the residents' side (captive pages and the RFC 8908 API),
# the staff back office, or both (development; refused in production, see create_app).
ROLE_CAPTIVE = "captive"
ROLE_ADMIN = "admin"
ROLE_BOTH = "both"
ROLES = (ROLE_CAPTIVE, ROLE_ADMIN, ROLE_BOTH)
