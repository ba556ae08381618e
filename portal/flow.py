"""Sign-in flow state without cookies: a signed token in the page, pending data in Redis.

Captive mini-browsers (iOS's Captive Network Assistant, Android's captive portal login) may
drop cookies between pages, so each page carries the flow in a hidden field: the checked
hand-over and a random flow id, signed with the secret key and time-limited. The number the
code went to waits in Redis under the flow id, encrypted; the code coming back marks it proven,
and only a proven number is ever signed in (the identity is asked for after it).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

import redis
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from census.channels import RedisKeys
from census.handshake import Handshake
from census.privacy import IdentityCipher

FLOW_MAX_AGE_S = 30 * 60
# An expired page may start a fresh flow for its device (same AP-signed hand-over, new flow
# id, the full form: never one-tap) for this long: a phone left on the page over lunch.
FLOW_RESTART_MAX_AGE_S = 6 * 3600


class FlowError(ValueError):
    """A flow token is missing, forged or too old; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FlowStop(Exception):
    """A step of the flow cannot go on; the portal shows this message page instead."""

    def __init__(self, title: str, text: str, status: int = 400, flow: Flow | None = None
                 ) -> None:
        super().__init__(title)
        self.title = title
        self.text = text
        self.status = status
        self.flow = flow


@dataclass(frozen=True, slots=True)
class Flow:
    """One resident's way through the sign-in pages."""

    fid: str
    handshake: Handshake
    started: float


@dataclass(frozen=True, slots=True)
class PhoneClaim:
    """The number a flow's code was sent to, and whether the code came back (proven)."""

    phone: str
    consent_version: str
    proven: bool = False

    def binding_parts(self) -> tuple[str, ...]:
        """What the flow's one-time code is bound to: this number and the accepted terms."""
        return ("phone", self.phone, self.consent_version)


class FlowCodec:
    """Signs flow state into a URL-safe token and reads it back."""

    def __init__(self, secret_key: str, max_age: int = FLOW_MAX_AGE_S) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="census-portal-flow")
        self._max_age = max_age

    def new(self, handshake: Handshake) -> Flow:
        """A fresh flow for a checked hand-over."""
        return Flow(fid=secrets.token_hex(12), handshake=handshake, started=time.time())

    def dump(self, flow: Flow) -> str:
        """The token for the page."""
        hs = asdict(flow.handshake)
        return self._serializer.dumps({"f": flow.fid, "h": hs, "s": int(flow.started)})

    def load(self, token: str | None) -> Flow:
        """The flow from a token; raise FlowError when missing, forged or expired."""
        if not token:
            raise FlowError("missing")
        try:
            data = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise FlowError("expired") from None
        except BadSignature:
            raise FlowError("forged") from None
        return Flow(fid=data["f"], handshake=Handshake(**data["h"]), started=float(data["s"]))


    def restartable(self, token: str) -> bool:
        """Whether an expired token may still start a fresh flow for its device."""
        try:
            self.restart(token)
        except FlowError:
            return False
        return True

    def restart(self, token: str | None) -> Flow:
        """A fresh flow (new id) for the hand-over of a token that is genuine and at most
        FLOW_RESTART_MAX_AGE_S old; raise FlowError otherwise."""
        if not token:
            raise FlowError("missing")
        try:
            data = self._serializer.loads(token, max_age=FLOW_RESTART_MAX_AGE_S)
        except SignatureExpired:
            raise FlowError("expired") from None
        except BadSignature:
            raise FlowError("forged") from None
        return self.new(Handshake(**data["h"]))


class PendingStore:
    """A flow's phone claim (encrypted in Redis) and the draft of what was typed."""

    def __init__(self, client: redis.Redis, key_prefix: str, cipher: IdentityCipher) -> None:
        self._redis = client
        self._key_names = RedisKeys(key_prefix)
        self._cipher = cipher

    def key(self, fid: str) -> str:
        """The Redis key of a flow's phone claim."""
        return self._key_names.flow(fid)

    def put(self, fid: str, claim: PhoneClaim, ttl: int) -> None:
        """Keep the claim for ttl seconds."""
        self._redis.set(self.key(fid), self.encode(claim), ex=ttl)

    def encode(self, claim: PhoneClaim) -> bytes:
        """The stored (encrypted) form of a claim."""
        return self._cipher.encrypt(json.dumps(asdict(claim), ensure_ascii=False))

    def get(self, fid: str) -> PhoneClaim | None:
        """The flow's claim, or None when there is none (never sent, expired, or changed)."""
        return self.decode(self._redis.get(self.key(fid)))  # type: ignore[arg-type]

    def decode(self, blob: bytes | None) -> PhoneClaim | None:
        """A claim read from its key (None stays None)."""
        if blob is None:
            return None
        return PhoneClaim(**json.loads(self._cipher.decrypt(bytes(blob))))

    def take(self, fid: str) -> PhoneClaim | None:
        """Read and forget the claim in one step: a proven number signs in once."""
        return self.decode(self._redis.getdel(self.key(fid)))  # type: ignore[arg-type]

    def drop(self, fid: str) -> None:
        """Forget the claim (the number is being changed: it is proven no longer)."""
        self._redis.delete(self.key(fid))

    def delete(self, fid: str) -> None:
        """Forget the claim (after sign-in) and any draft of the form."""
        self._redis.delete(self.key(fid), self.draft_key(fid))

    def draft_key(self, fid: str) -> str:
        """The Redis key of a flow's unsent form (what was typed so far)."""
        return self._key_names.flow_draft(fid)

    def put_draft(self, fid: str, fields: dict[str, str], ttl: int) -> None:
        """Keep what was typed, encrypted like a pending identity, for ttl seconds: a refresh
        of the page shows it again without the browser storing anything."""
        blob = self._cipher.encrypt(json.dumps(fields, ensure_ascii=False))
        self._redis.set(self.draft_key(fid), blob, ex=ttl)

    def get_draft(self, fid: str) -> dict[str, str]:
        """What was typed in a flow's form ({} when nothing was kept)."""
        blob = self._redis.get(self.draft_key(fid))
        if blob is None:
            return {}
        data = json.loads(self._cipher.decrypt(bytes(blob)))  # type: ignore[arg-type]
        return {str(k): str(v) for k, v in data.items()}
