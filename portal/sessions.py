"""Which clients are online (RFC 8908 seconds-remaining), and which addresses are bound.

The "known device" hint lets the splash page skip the registry query for the many addresses
that were never bound (checked in the same Redis round trip as the rate limit); the registry
stays the authority whenever the hint says an address is known.
"""

from __future__ import annotations

import redis

from census.channels import RedisKeys


class ClientSessions:
    """Online clients by (AP, client IP) and by device pseudonym, expiring with the session."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._redis = client
        self._keys = RedisKeys(key_prefix)

    def _by_ip(self, ap_id: str, client_ip: str) -> str:
        """Key of a client's session by AP and IP."""
        return self._keys.portal_client(ap_id, client_ip)

    def _by_device(self, pseudonym: str) -> str:
        """Key pointing from a device pseudonym to its session key."""
        return self._keys.portal_device(pseudonym)

    def start(self, ap_id: str, client_ip: str, pseudonym: str, seconds: int,
              known_for: int = 0, forget: tuple[str, ...] = ()) -> None:
        """Record a client as online for seconds; in the same round trip mark the device as
        known for known_for seconds (0: leave as is) and delete the keys in forget."""
        key = self._by_ip(ap_id, client_ip)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, pseudonym, ex=seconds)
        pipe.set(self._by_device(pseudonym), key, ex=seconds)
        if known_for > 0:
            pipe.set(self.known_key(pseudonym), "1", ex=known_for)
        if forget:
            pipe.delete(*forget)
        pipe.execute()

    def remaining(self, ap_id: str, client_ip: str) -> int:
        """Seconds left in a client's session (0: not online)."""
        ttl = self._redis.ttl(self._by_ip(ap_id, client_ip))
        return int(ttl) if isinstance(ttl, int) and ttl > 0 else 0

    def known_key(self, pseudonym: str) -> str:
        """Key of the hint that a device pseudonym is bound to a resident."""
        return self._keys.portal_known(pseudonym)

    def forget_known(self, pseudonym: str) -> None:
        """The address is no longer bound."""
        self._redis.delete(self.known_key(pseudonym))

    def end(self, pseudonym: str) -> None:
        """Forget a device's session (deauthorized)."""
        key = self._redis.get(self._by_device(pseudonym))
        if key is not None:
            self._redis.delete(bytes(key).decode(), self._by_device(pseudonym))  # type: ignore[arg-type]
