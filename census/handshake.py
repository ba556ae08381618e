"""The hand-over from the AP to the portal: this project's signed redirect and openNDS FAS.

Two forms are accepted (docs/portal.md explains both, with the AP side):

* **signed** — the AP's census agent redirects the client to
  ``/?ap=..&mac=..&ip=..&gw=..&url=..&ts=..&nonce=..&sig=..`` where ``sig`` is the lowercase hex
  HMAC-SHA256, keyed with the AP's secret, of the *redirect signing string*::

      census-redirect-v1\\n{ap}\\n{mac}\\n{ip}\\n{gw}\\n{url}\\n{ts}\\n{nonce}

  (the values exactly as sent, no trailing newline). The first line keeps a redirect signature
  from ever being valid as an AP command signature (those start ``v1\\n{cmd}``) under the same
  key. A redirect is refused when a field is missing or malformed, the AP is unknown, the
  signature does not match, ``ts`` is outside the validity window, or the nonce was used before.

* **fas** — a stock openNDS with ``fas_secure_enabled '1'`` and ``faskey`` set sends
  ``?fas=<base64 of "clientip=.., clientmac=.., gatewayname=.., hid=.., gatewayaddress=.., ...">``
  (openNDS 9 and later) or the same names as plain query parameters (earlier releases).
  ``hid`` is sha256 of the client's secret token; after sign-in the portal sends the client to
  ``http://{gatewayaddress}/{authdir}/?tok=sha256(hid + faskey)``, which only the real gateway,
  knowing the token, accepts. Level 1 carries no signature: the portal cannot tell a forged
  ``clientmac`` from a real one (levels 2 and 3 encrypt with AES-CBC but do not authenticate),
  so a FAS hand-over is accepted only from an AP where an administrator enabled it, only with
  that AP's own gateway address (the one that receives ``tok``), and its MAC is never trusted:
  no MQTT authorize command, no one-tap sign-in, no device binding (issue #11 defect 2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from census.channels import is_ap_id
from census.privacy import InvalidMacError, normalize_mac

# How the AP handed the client over.
HANDSHAKE_SIGNED = "signed"  # this project's HMAC-signed redirect (AP runs the census agent)
HANDSHAKE_FAS = "fas"  # stock openNDS forwarding authentication, fas_secure_enabled=1 (hid)
# openNDS's default virtual authentication directory.
OPENNDS_AUTHDIR = "opennds_auth"
REDIRECT_PREFIX = "census-redirect-v1"
REDIRECT_FIELDS = ("ap", "mac", "ip", "gw", "url", "ts", "nonce")
MAX_FUTURE_SKEW_S = 60
MAX_URL_LENGTH = 2048

_NONCE = re.compile(r"\A[0-9a-f]{16,64}\Z")
_SIG = re.compile(r"\A[0-9a-f]{64}\Z")
_HID = re.compile(r"\A[0-9a-f]{64}\Z")
_TS = re.compile(r"\A[0-9]{1,12}\Z")
_GATEWAY = re.compile(r"\A[A-Za-z0-9.\-\[\]:]{1,100}\Z")
_AUTHDIR = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


class HandshakeError(ValueError):
    """A redirect from an AP is refused; ``reason`` is a short machine word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the AP told the portal about the client, after it was checked."""

    kind: str
    ap_id: str
    mac: str
    client_ip: str
    gateway: str
    original_url: str
    hid: str = ""
    authdir: str = ""
    nonce: str = ""


def redirect_signing_string(values: Mapping[str, str]) -> str:
    """The text a signed redirect's HMAC covers."""
    return "\n".join((REDIRECT_PREFIX, *(values[name] for name in REDIRECT_FIELDS)))


def redirect_signature(key: str, values: Mapping[str, str]) -> str:
    """Lowercase hex HMAC-SHA256 of the redirect signing string."""
    message = redirect_signing_string(values).encode("utf-8")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_redirect(key: str, ap: str, mac: str, ip: str, gw: str = "", url: str = "",
                  now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """Query parameters of a signed redirect, as the AP's agent builds them."""
    values = {
        "ap": ap, "mac": mac, "ip": ip, "gw": gw, "url": url,
        "ts": str(int(time.time() if now is None else now)),
        "nonce": nonce or secrets.token_hex(8),
    }
    values["sig"] = redirect_signature(key, values)
    return values


def valid_gateway(value: str) -> bool:
    """Whether a text can be a gateway's host[:port] (the AP setting and the hand-over)."""
    return bool(_GATEWAY.match(value))


def _check_ip(raw: str, name: str) -> str:
    """A client IP address, or HandshakeError."""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise HandshakeError("malformed", f"{name} {raw[:60]!r} is not an IP address") from None


def _check_mac(raw: str, name: str) -> str:
    """A normalised MAC address, or HandshakeError."""
    try:
        return normalize_mac(raw)
    except InvalidMacError:
        raise HandshakeError("malformed", f"{name} {raw[:40]!r} is not a MAC address") from None


def _check_text(values: Mapping[str, str], name: str) -> None:
    """Refuse control characters (they would let one field spill into the next signed line)."""
    value = values[name]
    if any(ord(c) < 32 for c in value) or len(value) > MAX_URL_LENGTH:
        raise HandshakeError("malformed", f"{name} has control characters or is too long")


def verify_signed_redirect(args: Mapping[str, str], key_for: Callable[[str], str | None],
                           max_age: int, now: float | None = None) -> Handshake:
    """Check a signed redirect's fields, AP, signature and age (the nonce is claimed apart)."""
    missing = [name for name in (*REDIRECT_FIELDS, "sig") if name not in args]
    if missing:
        raise HandshakeError("missing", f"missing {', '.join(missing)}")
    values = {name: args[name] for name in REDIRECT_FIELDS}
    for name in REDIRECT_FIELDS:
        _check_text(values, name)
    if not is_ap_id(values["ap"]):
        raise HandshakeError("malformed", "ap is not an AP id")
    if not _NONCE.match(values["nonce"]):
        raise HandshakeError("malformed", "nonce must be 16-64 lowercase hex characters")
    if not _SIG.match(args["sig"]):
        raise HandshakeError("malformed", "sig must be 64 lowercase hex characters")
    if values["gw"] and not _GATEWAY.match(values["gw"]):
        raise HandshakeError("malformed", "gw must be host[:port]")
    # At most 12 ASCII digits: hundreds of digits would overflow the clock comparison (a 500).
    if not _TS.match(values["ts"]):
        raise HandshakeError("malformed", "ts must be Unix seconds")
    mac = _check_mac(values["mac"], "mac")
    client_ip = _check_ip(values["ip"], "ip")
    key = key_for(values["ap"])
    if key is None:
        raise HandshakeError("unknown_ap", f"AP {values['ap']} is not in the registry")
    # The signature is checked before the clock so that a forged link says "forged", and before
    # the nonce is claimed so that forgeries cannot use up a real AP's nonces.
    if not hmac.compare_digest(redirect_signature(key, values), args["sig"]):
        raise HandshakeError("bad_signature", f"signature does not match for AP {values['ap']}")
    moment = time.time() if now is None else now
    ts = int(values["ts"])
    if ts > moment + MAX_FUTURE_SKEW_S:
        raise HandshakeError("expired", f"ts is {int(ts - moment)} s in the future (AP clock?)")
    if moment - ts > max_age:
        raise HandshakeError("expired", f"redirect is {int(moment - ts)} s old (limit {max_age})")
    return Handshake(kind=HANDSHAKE_SIGNED, ap_id=values["ap"], mac=mac, client_ip=client_ip,
                     gateway=values["gw"], original_url=values["url"], nonce=values["nonce"])


def decode_fas_parameter(fas: str) -> dict[str, str]:
    """openNDS 9+'s ``fas`` parameter: base64 of ``name=value, name=value, ...``."""
    try:
        padded = fas + "=" * (-len(fas) % 4)
        text = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        decoded = text.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HandshakeError("malformed", "fas is not base64 of a UTF-8 string") from None
    fields: dict[str, str] = {}
    for part in decoded.split(", "):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def encode_fas_parameter(fields: Mapping[str, str]) -> str:
    """Build a ``fas`` parameter the way openNDS does (for tests, the simulator and docs)."""
    text = ", ".join(f"{name}={value}" for name, value in fields.items())
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def parse_fas(args: Mapping[str, str], fas_gateway_for: Callable[[str], str | None]
              ) -> Handshake:
    """Check an openNDS FAS level-1 (hid) hand-over.

    fas_gateway_for: the gateway address of an AP with FAS enabled, None for any other AP
    (unknown or signed-only: refused alike, so that the answer does not tell them apart).
    """
    fields = decode_fas_parameter(args["fas"]) if "fas" in args else dict(args)
    missing = [n for n in ("hid", "gatewayname", "gatewayaddress", "clientip", "clientmac")
               if not fields.get(n)]
    if missing:
        raise HandshakeError("missing", f"openNDS hand-over without {', '.join(missing)}")
    if fields.get("tok"):
        # Level 0 sends the client token in clear; anyone who sees the URL can log in as them.
        raise HandshakeError("malformed", "fas_secure_enabled 0 is refused: set level 1 (hid)")
    hid = fields["hid"].lower()
    if not _HID.match(hid):
        raise HandshakeError("malformed", "hid must be 64 hex characters (sha256)")
    ap_id = fields["gatewayname"]
    expected = fas_gateway_for(ap_id) if is_ap_id(ap_id) else None
    if expected is None:
        raise HandshakeError("unknown_ap",
                             f"gateway {ap_id[:64]!r} is not an AP with FAS enabled")
    gateway = fields["gatewayaddress"]
    # The sign-in token goes to this address: only the AP's own gateway may receive it.
    if gateway != expected:
        raise HandshakeError("bad_gateway",
                             f"gatewayaddress {gateway[:100]!r} is not {ap_id}'s gateway")
    authdir = fields.get("authdir") or OPENNDS_AUTHDIR
    if not _AUTHDIR.match(authdir):
        raise HandshakeError("malformed", "authdir must be a single path segment")
    original = fields.get("originurl") or fields.get("redir") or ""
    if len(original) > MAX_URL_LENGTH:
        raise HandshakeError("malformed", "originurl is too long")
    return Handshake(
        kind=HANDSHAKE_FAS, ap_id=ap_id, mac=_check_mac(fields["clientmac"], "clientmac"),
        client_ip=_check_ip(fields["clientip"], "clientip"), gateway=gateway,
        original_url=original, hid=hid, authdir=authdir,
    )


def fas_return_token(hid: str, faskey: str) -> str:
    """What openNDS expects back as ``tok``: sha256 of hid followed by faskey, in hex."""
    return hashlib.sha256((hid + faskey).encode("utf-8")).hexdigest()


def fas_auth_url(handshake: Handshake, faskey: str, landing_url: str) -> str:
    """openNDS's authentication URL on the gateway for a signed-in FAS client."""
    query = urlencode({"tok": fas_return_token(handshake.hid, faskey), "redir": landing_url})
    return f"http://{handshake.gateway}/{handshake.authdir}/?{query}"


def is_handshake(args: Mapping[str, str]) -> str | None:
    """Which hand-over a query string looks like: signed, fas, or None."""
    if "sig" in args:
        return HANDSHAKE_SIGNED
    if "fas" in args or "hid" in args:
        return HANDSHAKE_FAS
    return None
