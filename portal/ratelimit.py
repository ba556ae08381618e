"""Fixed-window rate limits in Redis, shared by every portal worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from census.channels import RedisKeys
from portal.const import RATE_LIMITS


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go on, and how long to wait when it may not."""

    allowed: bool
    count: int
    limit: int
    retry_after: int


class RateLimited(Exception):
    """A client went over a limit; the portal answers with a 429 page saying how long to wait."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"over the limit of {decision.limit}, retry after {decision.retry_after}s")
        self.decision = decision


class RateLimiter:
    """Counts hits per (limit name, client) in windows of fixed length."""

    def __init__(self, client: redis.Redis, key_prefix: str,
                 limits: dict[str, tuple[int, int]] | None = None) -> None:
        self._redis = client
        self._keys = RedisKeys(key_prefix)
        # Limits given override the defaults of the same name; the others keep theirs.
        self._limits = {**RATE_LIMITS, **(limits or {})}

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
        pipe = self._redis.pipeline(transaction=False)
        decide = self._queue_hit(pipe, name, ident, now)
        if claim_key is not None:
            pipe.set(claim_key, "1", nx=True, ex=claim_ttl)
        if probe_key is not None:
            pipe.exists(probe_key)
        results = pipe.execute()
        claimed = bool(results[2]) if claim_key is not None else False
        exists = bool(results[-1]) if probe_key is not None else False
        return decide(results[0]), claimed, exists

    def hit_and_get(self, name: str, ident: str, key: str, now: float | None = None
                    ) -> tuple[Decision, bytes | None]:
        """Count a hit and, in the same round trip, read a key (the pending identity of a
        posted step; read-only, so reading it for a refused request changes nothing)."""
        pipe = self._redis.pipeline(transaction=False)
        decide = self._queue_hit(pipe, name, ident, now)
        pipe.get(key)
        results = pipe.execute()
        return decide(results[0]), results[2]

    def _queue_hit(self, pipe: Any, name: str, ident: str, now: float | None
                   ) -> Callable[[Any], Decision]:
        """Queue the hit's commands; return what turns the count into a Decision."""
        limit, window = self._limits[name]
        moment = time.time() if now is None else now
        key = self._keys.rate_limit(name, ident, int(moment // window))
        pipe.incr(key)
        pipe.expire(key, window + 1)

        def decide(count: Any) -> Decision:
            """Allowed up to the limit; after it, wait for the next window."""
            hits = int(count)
            retry = int(window - moment % window) + 1
            return Decision(hits <= limit, hits, limit, 0 if hits <= limit else retry)

        return decide

    def reset(self, name: str, ident: str, now: float | None = None) -> None:
        """Forget a client's hits in the current window (after a successful staff login)."""
        _limit, window = self._limits[name]
        moment = time.time() if now is None else now
        self._redis.delete(self._keys.rate_limit(name, ident, int(moment // window)))
