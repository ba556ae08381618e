"""Signed AP commands (contracts §4): sign, verify, refuse, and the shell agent's openssl check."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from census.commands import (
    CommandError,
    NonceCache,
    build_command,
    encode_ack,
    parse_command,
    verify_command,
)

KEY = "agent-key-" + "0" * 30
NOW = 1_764_000_000


def command(**kwargs: object) -> bytes:
    """A signed authorize command payload."""
    options: dict[str, object] = {"session_seconds": 86400, "now": NOW,
                                  "nonce": "9c1d4e0b7a2f6e31"}
    options.update(kwargs)
    return build_command(KEY, "authorize", "ap-1", "A4-83-E7-12-9F-01", **options).to_json()  # type: ignore[arg-type]


def test_payload_has_the_contract_fields_and_order() -> None:
    """v, cmd, ap, mac (normalised), session_seconds, issued, expires, nonce, sig."""
    data = json.loads(command())
    assert list(data) == ["v", "cmd", "ap", "mac", "session_seconds", "issued", "expires",
                          "nonce", "sig"]
    assert data["mac"] == "a4:83:e7:12:9f:01" and data["expires"] == NOW + 300


def test_a_good_command_verifies_once_then_is_a_replay() -> None:
    """Same nonce twice before expiry: the second is refused."""
    nonces = NonceCache()
    assert verify_command(command(), KEY, "ap-1", nonces, now=NOW + 1).cmd == "authorize"
    with pytest.raises(CommandError, match="replayed"):
        verify_command(command(), KEY, "ap-1", nonces, now=NOW + 2)


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d: d.update(mac="a4:83:e7:12:9f:02"), "bad_signature"),
    (lambda d: d.update(session_seconds=999999), "bad_signature"),
    (lambda d: d.update(expires=NOW + 99999), "bad_signature"),
    (lambda d: d.update(cmd="deauthorize"), "bad_signature"),
    (lambda d: d.update(ap="ap-2"), "wrong_ap"),
    (lambda d: d.update(v=2), "bad_version"),
    (lambda d: d.update(session_seconds="86400"), "bad_field"),
    (lambda d: d.update(mac="A4:83:E7:12:9F:01"), "bad_field"),
    (lambda d: d.pop("nonce"), "bad_field"),
])
def test_tampered_commands_are_refused(mutate: object, reason: str) -> None:
    """A changed field breaks the signature; a wrong shape is named."""
    data = json.loads(command())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(CommandError) as caught:
        verify_command(json.dumps(data), KEY, "ap-1", NonceCache(), now=NOW + 1)
    assert caught.value.reason == reason


def test_expired_and_future_commands_are_refused() -> None:
    """Delivered too late, or issued by a clock far ahead."""
    with pytest.raises(CommandError, match="expired"):
        verify_command(command(), KEY, "ap-1", NonceCache(), now=NOW + 301)
    with pytest.raises(CommandError, match="not_yet_valid"):
        verify_command(command(), KEY, "ap-1", NonceCache(), now=NOW - 61)


def test_a_command_signed_with_another_key_is_refused() -> None:
    """The AP's own secret is what makes a command authentic."""
    with pytest.raises(CommandError, match="bad_signature"):
        verify_command(command(), "another-key" + "1" * 30, "ap-1", NonceCache(), now=NOW)


def test_deauthorize_always_has_zero_session() -> None:
    """session_seconds is 0 for deauthorize whatever the caller passed."""
    cmd = build_command(KEY, "deauthorize", "ap-1", "a4:83:e7:12:9f:01", 500, now=NOW)
    assert cmd.session_seconds == 0
    assert parse_command(cmd.to_json()) == cmd


@pytest.mark.parametrize(("cmd", "mac", "seconds"), [
    ("reboot", "a4:83:e7:12:9f:01", 10), ("authorize", "nope", 10),
    ("authorize", "a4:83:e7:12:9f:01", 0),
])
def test_bad_commands_cannot_be_built(cmd: str, mac: str, seconds: int) -> None:
    """Unknown commands, bad MACs and empty sessions are refused at the source."""
    with pytest.raises(CommandError):
        build_command(KEY, cmd, "ap-1", mac, seconds)


def test_ack_payload() -> None:
    """The agent's acknowledgement."""
    assert json.loads(encode_ack("9c1d4e0b7a2f6e31", False, "expired")) == {
        "v": 1, "nonce": "9c1d4e0b7a2f6e31", "ok": False, "error": "expired"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_the_shell_agent_can_check_the_signature_with_openssl() -> None:
    """printf the signing string | openssl dgst -sha256 -hmac KEY gives the same hex."""
    cmd = parse_command(command())
    script = ('printf "%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s\\n%s" v1 "$1" "$2" "$3" "$4" "$5" "$6" "$7"'
              ' | openssl dgst -sha256 -hmac "$8" | sed "s/^.*= //"')
    result = subprocess.run(
        ["sh", "-c", script, "sh", cmd.cmd, cmd.ap, cmd.mac, str(cmd.session_seconds),
         str(cmd.issued), str(cmd.expires), cmd.nonce, KEY],
        capture_output=True, text=True, check=True)
    assert result.stdout.strip() == cmd.sig
