"""Signed access-point commands (docs/contracts.md, section 4): build, sign, parse and verify.

The portal signs ``authorize`` / ``deauthorize`` commands; the agent on the AP (and the tests)
verify them with the same code or its shell equivalent. The signature covers a fixed line order,
not canonical JSON, so that the agent can rebuild it with ``jsonfilter`` and ``printf`` and check
it with ``openssl dgst -sha256 -hmac``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from census.channels import is_ap_id
from census.privacy import InvalidMacError, normalize_mac

__all__ = ["ApCommand", "CommandAck", "CommandError", "NonceCache", "build_command",
           "encode_ack", "parse_ack", "parse_command", "signature",
           "verify_command"]

COMMAND_VERSION = 1
COMMANDS = ("authorize", "deauthorize")
DEFAULT_COMMAND_TTL_S = 300
MAX_SESSION_SECONDS = 30 * 86400
# issued and expires are Unix seconds that a 32-bit unsigned time (the AP's date) can hold: the
# command log turns them into timestamps, which a number of a thousand digits would crash.
MAX_UNIX_SECONDS = 2**32 - 1
# \A and \Z, not ^ and $: "$" also matches before a final newline, and a nonce with one
# passed for 16 hex characters (found by bench/command_fuzz.py).
_NONCE = re.compile(r"\A[0-9a-f]{16}\Z")
_SIG = re.compile(r"\A[0-9a-f]{64}\Z")
_ERROR_WORD = re.compile(r"\A[a-z_]{0,32}\Z")


class CommandError(ValueError):
    """A command payload is malformed, mis-signed, expired or replayed; ``reason`` says which."""

    def __init__(self, reason: str, detail: str) -> None:
        # A refusal quotes what it refused; a hostile payload must not fill the logs.
        super().__init__(f"{reason}: {detail[:200]}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApCommand:
    """One command to an access point's agent, as on the wire."""

    cmd: str
    ap: str
    mac: str
    session_seconds: int
    issued: int
    expires: int
    nonce: str
    sig: str = ""
    v: int = COMMAND_VERSION

    def signing_string(self) -> str:
        """The exact text the signature covers (fields joined by newlines, no trailing one)."""
        return "\n".join((
            f"v{self.v}", self.cmd, self.ap, self.mac, str(self.session_seconds),
            str(self.issued), str(self.expires), self.nonce,
        ))

    def to_json(self) -> bytes:
        """The command as its JSON payload."""
        wire = asdict(self)
        order = ("v", "cmd", "ap", "mac", "session_seconds", "issued", "expires", "nonce", "sig")
        return json.dumps({k: wire[k] for k in order}, separators=(",", ":")).encode("utf-8")


def signature(key: str, command: ApCommand) -> str:
    """Lowercase hex HMAC-SHA256 of the command's signing string."""
    return hmac.new(key.encode("utf-8"), command.signing_string().encode("utf-8"),
                    hashlib.sha256).hexdigest()


def build_command(key: str, cmd: str, ap: str, mac: str, session_seconds: int = 0,
                  now: float | None = None, ttl: int = DEFAULT_COMMAND_TTL_S,
                  nonce: str | None = None) -> ApCommand:
    """A signed command; raise CommandError for a bad command name, AP id, MAC or length."""
    if cmd not in COMMANDS:
        raise CommandError("bad_field", f"cmd must be one of {', '.join(COMMANDS)}, not {cmd!r}")
    if not is_ap_id(ap):
        raise CommandError("bad_field", f"ap {ap!r} is not an AP id")
    try:
        mac = normalize_mac(mac)
    except InvalidMacError as error:
        raise CommandError("bad_field", str(error)) from None
    if cmd == "deauthorize":
        session_seconds = 0
    elif not 1 <= session_seconds <= MAX_SESSION_SECONDS:
        raise CommandError("bad_field", f"session_seconds must be 1-{MAX_SESSION_SECONDS}")
    issued = int(time.time() if now is None else now)
    unsigned = ApCommand(cmd=cmd, ap=ap, mac=mac, session_seconds=session_seconds,
                         issued=issued, expires=issued + ttl, nonce=nonce or secrets.token_hex(8))
    return ApCommand(**{**asdict(unsigned), "sig": signature(key, unsigned)})


def _versioned_object(payload: bytes | str) -> dict[str, Any]:
    """A command or ack payload as a JSON object of this contract version, or CommandError."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad JSON and bad UTF-8, and also an integer of more than 4,300
        # digits; RecursionError, arrays nested thousands deep. Any publisher on a command or
        # answer topic can send those, and the command log must refuse them, not crash on them.
        raise CommandError("bad_json", str(error)[:200]) from None
    if not isinstance(data, dict):
        raise CommandError("bad_json", "payload must be a JSON object")
    version = data.get("v")
    if type(version) is not int or version != COMMAND_VERSION:  # true and 1.0 are not 1
        raise CommandError("bad_version", f"v must be {COMMAND_VERSION}, got {version!r}"[:200])
    return data


def parse_command(payload: bytes | str) -> ApCommand:
    """Parse a command payload and check every field's type and form (not the signature)."""
    data = _versioned_object(payload)
    for name in ("cmd", "ap", "mac", "nonce", "sig"):
        if not isinstance(data.get(name), str):
            raise CommandError("bad_field", f"{name} must be a string")
    for name in ("session_seconds", "issued", "expires"):
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise CommandError("bad_field", f"{name} must be an integer")
        highest = MAX_SESSION_SECONDS if name == "session_seconds" else MAX_UNIX_SECONDS
        if not 0 <= value <= highest:
            raise CommandError("bad_field", f"{name} must be 0-{highest}")
    if data["cmd"] not in COMMANDS:
        raise CommandError("bad_field", f"unknown cmd {data['cmd']!r}")
    if not is_ap_id(data["ap"]):
        raise CommandError("bad_field", f"ap {data['ap']!r} is not an AP id")
    if not _NONCE.match(data["nonce"]):
        raise CommandError("bad_field", "nonce must be 16 lowercase hex characters")
    if not _SIG.match(data["sig"]):
        raise CommandError("bad_field", "sig must be 64 lowercase hex characters")
    try:
        if normalize_mac(data["mac"]) != data["mac"]:
            raise CommandError("bad_field", "mac must be lowercase and colon separated")
    except InvalidMacError as error:
        raise CommandError("bad_field", str(error)) from None
    return ApCommand(cmd=data["cmd"], ap=data["ap"], mac=data["mac"],
                     session_seconds=data["session_seconds"], issued=data["issued"],
                     expires=data["expires"], nonce=data["nonce"], sig=data["sig"])


class NonceCache:
    """Nonces seen, each remembered until its command expires (what an agent keeps in memory)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str, expires: int, now: float) -> bool:
        """Remember a nonce; False when it was already seen and has not expired."""
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {n: e for n, e in self._seen.items() if e >= now}
            previous = self._seen.get(nonce)
            if previous is not None and previous >= now:
                return False
            self._seen[nonce] = expires
            return True


def verify_command(payload: bytes | str, key: str, ap_id: str, nonces: NonceCache,
                   now: float | None = None, max_skew: int = 60) -> ApCommand:
    """The command if it is well formed, for this AP, correctly signed, current and new."""
    command = parse_command(payload)
    moment = time.time() if now is None else now
    if command.ap != ap_id:
        raise CommandError("wrong_ap", f"command is for {command.ap}, this is {ap_id}")
    if not hmac.compare_digest(signature(key, command), command.sig):
        raise CommandError("bad_signature", "signature does not match")
    if command.issued > moment + max_skew:
        raise CommandError("not_yet_valid", "issued in the future (clock skew?)")
    if command.expires < moment:
        raise CommandError("expired", f"expired {int(moment - command.expires)} s ago")
    if not nonces.check_and_add(command.nonce, command.expires, moment):
        raise CommandError("replayed", f"nonce {command.nonce} was already used")
    return command


def encode_ack(nonce: str, ok: bool, error: str = "") -> bytes:
    """An agent's acknowledgement payload."""
    return json.dumps({"v": COMMAND_VERSION, "nonce": nonce, "ok": ok, "error": error},
                      separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class CommandAck:
    """An agent's answer to one command: done, or refused with a reason word."""

    nonce: str
    ok: bool
    error: str = ""


def parse_ack(payload: bytes | str) -> CommandAck:
    """Parse an acknowledgement; raise CommandError (bad_json, bad_version, bad_field)."""
    data = _versioned_object(payload)
    nonce, ok, reason = data.get("nonce"), data.get("ok"), data.get("error", "")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise CommandError("bad_field", "nonce must be 16 lowercase hex characters")
    if not isinstance(ok, bool):
        raise CommandError("bad_field", "ok must be true or false")
    if not isinstance(reason, str) or not _ERROR_WORD.match(reason):
        raise CommandError("bad_field", "error must be a word of at most 32 letters and _")
    if ok and reason:
        raise CommandError("bad_field", "an ok ack carries no error")
    return CommandAck(nonce=nonce, ok=ok, error=reason)
