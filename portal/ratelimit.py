"""Fixed-window rate limits in Redis, shared by every portal worker."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from portal.const import RATE_LIMITS


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go on, and how long to wait when it may not."""

    allowed: bool
    count: int
    limit: int
    retry_after: int


class RateLimiter:
    """Counts hits per (limit name, client) in windows of fixed length."""

    def __init__(self, client: redis.Redis, key_prefix: str,
                 limits: dict[str, tuple[int, int]] | None = None) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._limits = dict(RATE_LIMITS if limits is None else limits)

    def hit(self, name: str, ident: str, now: float | None = None) -> Decision:
        """Count one hit; not allowed once the window's count passes the limit."""
        return self.hit_and_claim(name, ident, None, 0, now)[0]

    def hit_and_claim(self, name: str, ident: str, claim_key: str | None, claim_ttl: int,
                      now: float | None = None, probe_key: str | None = None
                      ) -> tuple[Decision, bool, bool]:
        """Count a hit and, in the same round trip, claim a one-time key (SET NX EX) and
        check whether probe_key exists.

        The splash page needs all three (its rate limit, the redirect's nonce, the known-device
        hint); one round trip to Redis instead of three is a good part of the page's time.
        """
        limit, window = self._limits[name]
        moment = time.time() if now is None else now
        slot = int(moment // window)
        key = f"{self._prefix}portal:rl:{name}:{ident}:{slot}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        if claim_key is not None:
            pipe.set(claim_key, "1", nx=True, ex=claim_ttl)
        if probe_key is not None:
            pipe.exists(probe_key)
        results = pipe.execute()
        count = int(results[0])
        claimed = bool(results[2]) if claim_key is not None else False
        exists = bool(results[-1]) if probe_key is not None else False
        retry = int(window - moment % window) + 1
        decision = Decision(count <= limit, count, limit, 0 if count <= limit else retry)
        return decision, claimed, exists

    def reset(self, name: str, ident: str, now: float | None = None) -> None:
        """Forget a client's hits in the current window (after a successful staff login)."""
        _limit, window = self._limits[name]
        moment = time.time() if now is None else now
        self._redis.delete(f"{self._prefix}portal:rl:{name}:{ident}:{int(moment // window)}")
