"""The AP hand-over: signed redirects (forged, expired, malformed) and openNDS FAS level 1."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from census.handshake import (
    HANDSHAKE_FAS,
    HANDSHAKE_SIGNED,
    Handshake,
    HandshakeError,
    encode_fas_parameter,
    fas_auth_url,
    fas_return_token,
    is_handshake,
    parse_fas,
    redirect_signing_string,
    sign_redirect,
    verify_signed_redirect,
)

KEY = "k" * 40
NOW = 1_764_000_000.0
HID = hashlib.sha256(b"client-token-770bfe05").hexdigest()


def keys(ap_id: str) -> str | None:
    """Only ap-1 is in the registry."""
    return KEY if ap_id == "ap-1" else None


def signed(**changes: str) -> dict[str, str]:
    """A valid signed redirect, then changed fields (without re-signing)."""
    values = sign_redirect(KEY, "ap-1", "A4:83:E7:12:9F:01", "10.0.0.23", "10.0.0.1:2050",
                           "http://example.com/a?b=c", now=NOW, nonce="0123456789abcdef")
    values.update(changes)
    return values


def test_signing_string_is_the_documented_line_order() -> None:
    """The AP's shell agent rebuilds exactly this text; a change here breaks every AP."""
    values = signed()
    assert redirect_signing_string(values) == (
        "census-redirect-v1\nap-1\nA4:83:E7:12:9F:01\n10.0.0.23\n10.0.0.1:2050\n"
        "http://example.com/a?b=c\n1764000000\n0123456789abcdef"
    )


def test_a_correctly_signed_redirect_is_accepted_and_normalised() -> None:
    """Fields come back checked; the MAC in canonical form."""
    hs = verify_signed_redirect(signed(), keys, max_age=300, now=NOW + 5)
    assert hs == Handshake(kind=HANDSHAKE_SIGNED, ap_id="ap-1", mac="a4:83:e7:12:9f:01",
                           client_ip="10.0.0.23", gateway="10.0.0.1:2050",
                           original_url="http://example.com/a?b=c", nonce="0123456789abcdef")


@pytest.mark.parametrize(("change", "reason"), [
    ({"mac": "a4:83:e7:12:9f:02"}, "bad_signature"),  # another device's address
    ({"ip": "10.0.0.24"}, "bad_signature"),
    ({"url": "http://evil.example/"}, "bad_signature"),
    ({"ts": str(int(NOW) + 100)}, "bad_signature"),  # pushing the clock forward
    ({"sig": "0" * 64}, "bad_signature"),
    ({"ap": "ap-2"}, "unknown_ap"),
    ({"mac": "not-a-mac"}, "malformed"),
    ({"ip": "10.0.0.300"}, "malformed"),
    ({"nonce": "xyz"}, "malformed"),
    ({"sig": "ABC"}, "malformed"),
    ({"ts": "yesterday"}, "malformed"),
    ({"url": "http://a/\nforged-line"}, "malformed"),
    ({"gw": "10.0.0.1/evil"}, "malformed"),
])
def test_forged_or_malformed_redirects_are_refused(change: dict[str, str], reason: str) -> None:
    """Any change after signing, or a bad field, is refused with the reason."""
    with pytest.raises(HandshakeError) as caught:
        verify_signed_redirect(signed(**change), keys, max_age=300, now=NOW)
    assert caught.value.reason == reason


def test_a_redirect_signed_with_another_key_is_forged() -> None:
    """Knowing the format is not enough: the AP's own key is."""
    values = sign_redirect("x" * 40, "ap-1", "a4:83:e7:12:9f:01", "10.0.0.23", now=NOW)
    with pytest.raises(HandshakeError, match="bad_signature"):
        verify_signed_redirect(values, keys, max_age=300, now=NOW)


@pytest.mark.parametrize(("age", "accepted"), [
    (0, True), (299, True), (300, True), (301, False), (-59, True), (-61, False),
])
def test_redirects_expire_after_max_age_and_may_not_come_from_the_future(
        age: float, accepted: bool) -> None:
    """The validity window is max_age back and one minute of clock skew forward."""
    if accepted:
        verify_signed_redirect(signed(), keys, max_age=300, now=NOW + age)
        return
    with pytest.raises(HandshakeError) as caught:
        verify_signed_redirect(signed(), keys, max_age=300, now=NOW + age)
    assert caught.value.reason == "expired"


def test_missing_fields_are_named() -> None:
    """The refusal says which fields are missing."""
    values = signed()
    del values["nonce"], values["ts"]
    with pytest.raises(HandshakeError, match="missing ts, nonce"):
        verify_signed_redirect(values, keys, max_age=300, now=NOW)


FAS_FIELDS = {
    "clientip": "192.168.8.23", "clientmac": "04:15:52:6A:E4:AD", "gatewayname": "ap-1",
    "gatewayurl": "http%3A%2F%2Fstatus.client%2F", "version": "10.2.0", "hid": HID,
    "client_type": "cpd_can", "gatewayaddress": "192.168.8.1:2050",
    "gatewaymac": "00:11:22:33:44:55", "authdir": "opennds_auth",
    "originurl": "http%3A%2F%2Fconnectivitycheck.gstatic.com%2Fgenerate_204",
    "clientif": "br-lan", "admin_email": "none", "location": "none",
}


FAS_GATEWAYS = {"ap-1": "192.168.8.1:2050"}  # APs with FAS enabled, and their gateways


def test_opennds_fas_parameter_is_decoded() -> None:
    """openNDS 9+ sends base64 of 'name=value, ...'; the hand-over is read from it."""
    hs = parse_fas({"fas": encode_fas_parameter(FAS_FIELDS)}, FAS_GATEWAYS.get)
    assert hs.kind == HANDSHAKE_FAS
    assert (hs.ap_id, hs.mac, hs.client_ip, hs.gateway, hs.hid, hs.authdir) == (
        "ap-1", "04:15:52:6a:e4:ad", "192.168.8.23", "192.168.8.1:2050", HID, "opennds_auth")


def test_legacy_plain_fas_query_is_accepted() -> None:
    """Older openNDS sends the same names as plain parameters."""
    args = {k: FAS_FIELDS[k] for k in ("clientip", "clientmac", "gatewayname", "hid",
                                       "gatewayaddress")} | {"redir": "http://example.com/"}
    hs = parse_fas(args, FAS_GATEWAYS.get)
    assert hs.authdir == "opennds_auth" and hs.original_url == "http://example.com/"


@pytest.mark.parametrize(("change", "reason"), [
    ({"gatewayname": "ap-unknown"}, "unknown_ap"),
    ({"gatewayaddress": "203.0.113.9:80"}, "bad_gateway"),  # the token would go elsewhere
    ({"hid": "abc"}, "malformed"),
    ({"hid": ""}, "missing"),
    ({"tok": "770bfe05"}, "malformed"),  # level 0: token in clear
    ({"clientmac": "zz"}, "malformed"),
    ({"authdir": "../etc"}, "malformed"),
])
def test_bad_fas_hand_overs_are_refused(change: dict[str, str], reason: str) -> None:
    """Unknown or FAS-less APs, other gateways, malformed hids, level 0 and bad fields are
    refused."""
    with pytest.raises(HandshakeError) as caught:
        parse_fas({"fas": encode_fas_parameter(FAS_FIELDS | change)}, FAS_GATEWAYS.get)
    assert caught.value.reason == reason


def test_fas_return_token_is_sha256_of_hid_and_faskey() -> None:
    """What openNDS computes on its side (fas-hid.php: hash('sha256', $hid.$key))."""
    assert fas_return_token(HID, KEY) == hashlib.sha256((HID + KEY).encode()).hexdigest()


def test_fas_auth_url_points_at_the_gateway_auth_directory() -> None:
    """http://{gatewayaddress}/{authdir}/?tok=...&redir=..."""
    hs = parse_fas({"fas": encode_fas_parameter(FAS_FIELDS)}, FAS_GATEWAYS.get)
    url = urlsplit(fas_auth_url(hs, KEY, "http://portal/welcome"))
    assert (url.scheme, url.netloc, url.path) == ("http", "192.168.8.1:2050", "/opennds_auth/")
    assert parse_qs(url.query) == {"tok": [fas_return_token(HID, KEY)],
                                   "redir": ["http://portal/welcome"]}


@pytest.mark.parametrize(("args", "kind"), [
    ({"sig": "x"}, HANDSHAKE_SIGNED), ({"fas": "x"}, HANDSHAKE_FAS), ({"hid": "x"}, HANDSHAKE_FAS),
    ({}, None), ({"lang": "en"}, None),
])
def test_hand_over_kind_is_told_from_the_query(args: dict[str, str], kind: str | None) -> None:
    """Which parser a query goes to."""
    assert is_handshake(args) == kind
