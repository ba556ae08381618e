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
        limit, window = self._limits[name]
        moment = time.time() if now is None else now
        slot = int(moment // window)
        key = f"{self._prefix}portal:rl:{name}:{ident}:{slot}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count = int(pipe.execute()[0])
        retry = int(window - moment % window) + 1
        return Decision(count <= limit, count, limit, 0 if count <= limit else retry)

    def reset(self, name: str, ident: str, now: float | None = None) -> None:
        """Forget a client's hits in the current window (after a successful staff login)."""
        _limit, window = self._limits[name]
        moment = time.time() if now is None else now
        self._redis.delete(f"{self._prefix}portal:rl:{name}:{ident}:{int(moment // window)}")
