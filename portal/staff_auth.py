"""Staff authentication guards: password-guessing back-off and server-side session checks.

Login attempts are limited three ways (``LoginGuard``): per (user name, address) with an
exponential back-off that a successful login resets, per address across all names, and a
slower global limit per user name that stops a guesser spread over many addresses. An address
from which the user signed in before is exempt from the global per-name limit, so an attacker
who trips it does not lock the administrator out of their usual desk.

A staff session (Flask's signed cookie) carries the user's session generation, the address it
was opened from, its start and its last use (``begin_session``); ``session_problem`` refuses
it when the registry's generation moved on (logout, password, role or community change), the
address changed, it sat idle too long, or it is older than the absolute limit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import redis

from census.channels import RedisKeys

LOGGER = logging.getLogger(__name__)

SESSION_GENERATION = "staff_gen"
SESSION_ADDRESS = "staff_addr"
SESSION_STARTED = "staff_started"
SESSION_SEEN = "staff_seen"
SESSION_KEYS = (SESSION_GENERATION, SESSION_ADDRESS, SESSION_STARTED, SESSION_SEEN)
# The last-use stamp is rewritten at most this often (each rewrite is a new Set-Cookie).
SEEN_RESOLUTION_S = 30


@dataclass(frozen=True)
class LoginPolicy:
    """How many password attempts are allowed, from where, and how long to back off."""

    pair_free: int = 5  # failures for one name from one address before backing off
    pair_base_s: int = 30  # first wait after those; doubles with each further failure
    pair_max_s: int = 900  # longest wait between attempts of one (name, address)
    pair_memory_s: int = 86400  # a pair's failures are forgotten after a day without one
    name_limit: int = 30  # failures for one name from all addresses per window
    name_window_s: int = 3600
    address_limit: int = 30  # failures from one address, all names together, per window
    address_window_s: int = 900
    known_days: int = 30  # an address a user signed in from is known this long


@dataclass(frozen=True)
class Attempt:
    """A reserved login attempt: allowed (wait 0) or refused for wait seconds."""

    wait: int
    pair_key: str
    name_key: str
    address_key: str
    known_key: str

    @property
    def allowed(self) -> bool:
        """True when the password may be checked."""
        return self.wait == 0


def _digest(*parts: str) -> str:
    """A short stable key part for user names and addresses (bounded length, no separators)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:24]


class LoginGuard:
    """Counts staff password attempts in Redis, shared by every portal worker.

    Each attempt is counted before the password is checked (so parallel guesses see each
    other), refused attempts are uncounted again (hammering a locked pair does not extend its
    wait), and a success uncounts itself and clears its pair's back-off.
    """

    def __init__(self, client: redis.Redis, key_prefix: str,
                 policy: LoginPolicy | None = None) -> None:
        self._redis = client
        self._keys = RedisKeys(key_prefix)
        self.policy = policy or LoginPolicy()

    def reserve(self, username: str, address: str, now: float | None = None) -> Attempt:
        """Count an attempt for (username, address); say whether it may go on."""
        p = self.policy
        moment = time.time() if now is None else now
        name = username.strip().lower()[:64]
        pair = _digest(name, address)
        attempt = Attempt(
            wait=0,
            pair_key=self._keys.staff_failures(pair),
            name_key=self._keys.staff_name(_digest(name), int(moment // p.name_window_s)),
            address_key=self._keys.staff_address(_digest(address),
                                              int(moment // p.address_window_s)),
            known_key=self._keys.staff_known(pair),
        )
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(attempt.pair_key, "n", 1)
        pipe.hget(attempt.pair_key, "last")
        pipe.expire(attempt.pair_key, p.pair_memory_s)
        pipe.incr(attempt.name_key)
        pipe.expire(attempt.name_key, p.name_window_s + 1)
        pipe.incr(attempt.address_key)
        pipe.expire(attempt.address_key, p.address_window_s + 1)
        pipe.exists(attempt.known_key)
        count, last, _, by_name, _, by_address, _, known = pipe.execute()
        wait = self._wait(int(count) - 1, float(last or 0), moment)
        if int(by_address) > p.address_limit:
            wait = max(wait, int(p.address_window_s - moment % p.address_window_s) + 1)
        if int(by_name) > p.name_limit and not known:
            wait = max(wait, int(p.name_window_s - moment % p.name_window_s) + 1)
        if wait:
            self._uncount(attempt)
            LOGGER.warning("staff login for %r from %s refused for %d s", name, address, wait)
            return Attempt(wait, attempt.pair_key, attempt.name_key, attempt.address_key,
                           attempt.known_key)
        self._redis.hset(attempt.pair_key, "last", repr(moment))
        return attempt

    def _wait(self, failures: int, last: float, now: float) -> int:
        """Seconds a pair with this many earlier failures must still wait (0: none)."""
        p = self.policy
        if failures < p.pair_free:
            return 0
        backoff = min(p.pair_base_s * 2 ** min(failures - p.pair_free, 20), p.pair_max_s)
        return max(0, int(last + backoff - now + 0.999))

    def _uncount(self, attempt: Attempt) -> None:
        """Take an attempt back out of every count."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(attempt.pair_key, "n", -1)
        pipe.decr(attempt.name_key)
        pipe.decr(attempt.address_key)
        pipe.execute()

    def succeeded(self, attempt: Attempt) -> None:
        """A right password: the attempt was no failure, the pair's back-off starts over, and
        the address becomes one this user is known to sign in from."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(attempt.pair_key)
        pipe.decr(attempt.name_key)
        pipe.decr(attempt.address_key)
        pipe.set(attempt.known_key, "1", ex=self.policy.known_days * 86400)
        pipe.execute()


def address_tag(address: str) -> str:
    """What a session remembers of the address it was opened from."""
    return _digest("address", address)[:16]


def begin_session(session: MutableMapping[str, Any], generation: int, address: str,
                  now: float | None = None) -> None:
    """Stamp a freshly signed-in session with what later requests are checked against."""
    moment = int(time.time() if now is None else now)
    session[SESSION_GENERATION] = generation
    session[SESSION_ADDRESS] = address_tag(address)
    session[SESSION_STARTED] = moment
    session[SESSION_SEEN] = moment


def session_problem(session: MutableMapping[str, Any], generation: int, address: str,
                    idle_s: int, max_age_s: int, now: float | None = None) -> str | None:
    """Why this session may not be used any more (None: it may, and its last use is noted)."""
    moment = time.time() if now is None else now
    try:
        stamped = int(session[SESSION_GENERATION])
        started = float(session[SESSION_STARTED])
        seen = float(session[SESSION_SEEN])
        tag = str(session[SESSION_ADDRESS])
    except (KeyError, TypeError, ValueError, OverflowError):
        return "not stamped"  # a cookie from before these checks
    if not (math.isfinite(started) and math.isfinite(seen)):
        return "not stamped"  # NaN would compare false with every limit and never expire
    if stamped != generation:
        return "ended"  # logout, password, role or community change
    if tag != address_tag(address):
        return "address changed"
    if moment - seen > idle_s:
        return "idle"
    if moment - started > max_age_s:
        return "too old"
    if moment - seen >= SEEN_RESOLUTION_S:
        session[SESSION_SEEN] = int(moment)
    return None
