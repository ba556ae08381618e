"""One-time codes by SMS, kept in Redis: hashed, short-lived, few tries, cooldown and daily caps.

A code belongs to one sign-in flow (``fid``) and to one *binding*: a keyed digest of exactly
what it was sent for (the number it went to). Verifying compares the binding of the flow's
claim with the stored one, so a code can never vouch for anything it was not delivered for, and
a correct code marks the claim proven in the same script (only if the claim is still the one
the code was checked for). Only a keyed hash of the code is stored. Issuing checks
and books the resend cooldown, both daily caps (per phone number, per client) and the AP's
hourly budget in one Lua script, so that concurrent requests cannot slip past a limit; the
flow's phone claim is written in the same script and only when the code is issued (a
refused send changes nothing).
When the SMS then cannot be sent the booking is given back. Phone numbers appear in keys only
as keyed digests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

import redis

from census.channels import RedisKeys

CODE_DIGITS = 6

# KEYS: otp hash, cooldown, phone-day counter, client-day counter, AP-hour counter,
#       AP-hour alerted flag[, stash key]
# ARGV: code hash, ttl seconds, cooldown milliseconds, phone cap, client cap, binding, AP cap
#       [, stash value, stash ttl seconds]
# The stash (the flow's phone claim) is written only with the code it belongs to: a refused
# send must leave the flow exactly as it was (issue #11, defect 1). One exception: in the
# number's cooldown, when this flow's live code was sent for exactly this binding (the number
# came back unchanged after "change number"), the claim is put back for that code ('pending':
# no new code, no new cooldown). The code still proves only what it was sent for. The AP's
# hourly budget answers 'cap_ap' with 1 the first time in the hour (the caller raises one
# alert), else 0.
_ISSUE = """
local cooldown = redis.call('PTTL', KEYS[2])
if cooldown > 0 then
  if KEYS[7] and redis.call('HGET', KEYS[1], 'b') == ARGV[6] then
    redis.call('SET', KEYS[7], ARGV[8], 'EX', ARGV[9])
    return {'pending', cooldown}
  end
  return {'cooldown', cooldown}
end
local phone_count = tonumber(redis.call('GET', KEYS[3]) or '0')
if phone_count >= tonumber(ARGV[4]) then return {'cap_phone', 0} end
local client_count = tonumber(redis.call('GET', KEYS[4]) or '0')
if client_count >= tonumber(ARGV[5]) then return {'cap_client', 0} end
local ap_count = tonumber(redis.call('GET', KEYS[5]) or '0')
if ap_count >= tonumber(ARGV[7]) then
  if redis.call('SET', KEYS[6], '1', 'NX', 'EX', 7200) then return {'cap_ap', 1} end
  return {'cap_ap', 0}
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 172800)
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 172800)
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], 7200)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'tries', 0, 'b', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[7] then redis.call('SET', KEYS[7], ARGV[8], 'EX', ARGV[9]) end
return {'ok', 0}
"""

# KEYS: otp hash[, claim key]. ARGV: candidate hash, max tries, binding of what the code is
# about to vouch for[, the claim as read, the claim proven, its ttl seconds].
# A binding that differs means the code was sent for something else: it is spent, not tried.
# A claim that changed since it was read (the number was changed meanwhile) is not proven.
_VERIFY = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return {'expired', 0} end
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[4] then return {'unbound', 0} end
if redis.call('HGET', KEYS[1], 'b') ~= ARGV[3] then
  redis.call('DEL', KEYS[1])
  return {'unbound', 0}
end
local max = tonumber(ARGV[2])
local tries = tonumber(redis.call('HGET', KEYS[1], 'tries') or '0')
if tries >= max then return {'locked', 0} end
if h == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[2] then redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[6]) end
  return {'ok', 0}
end
tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= max then return {'locked', 0} end
return {'wrong', max - tries}
"""


# Give back a booking whose SMS could not be sent. KEYS as _ISSUE minus nothing.
_RELEASE = """
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
if tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then redis.call('DECR', KEYS[4]) end
if tonumber(redis.call('GET', KEYS[5]) or '0') > 0 then redis.call('DECR', KEYS[5]) end
return 1
"""


class IssueStatus(StrEnum):
    """Why a code was or was not issued."""

    OK = "ok"
    PENDING = "pending"  # this flow's live code was sent for the same number: use it
    COOLDOWN = "cooldown"
    CAP_PHONE = "cap_phone"
    CAP_CLIENT = "cap_client"
    CAP_AP = "cap_ap"  # the AP's hourly budget, all numbers together


class VerifyStatus(StrEnum):
    """The result of checking an entered code."""

    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # too many wrong entries: ask for a new code
    EXPIRED = "expired"  # no live code for this flow
    UNBOUND = "unbound"  # the code was sent for another identity or number: spent


@dataclass(frozen=True, slots=True)
class IssueResult:
    """An issue attempt: status, the code when issued, seconds to wait on cooldown, and
    whether this refusal is the first of the hour at the AP's budget (raise one alert)."""

    status: IssueStatus
    code: str = ""
    retry_after: int = 0
    first_over_budget: bool = False


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """A verification: status and the tries left for a wrong code."""

    status: VerifyStatus
    tries_left: int = 0


@dataclass(frozen=True, slots=True)
class OtpPolicy:
    """The limits, from settings."""

    ttl: int
    max_tries: int
    resend_seconds: float
    daily_per_phone: int
    daily_per_client: int
    hourly_per_ap: int = 100


class OtpService:
    """Issues and checks one-time codes in Redis."""

    def __init__(self, client: redis.Redis, key_prefix: str, secret: str, policy: OtpPolicy,
                 timezone: str) -> None:
        self._redis = client
        self._key_names = RedisKeys(key_prefix)
        self._secret = hashlib.sha256(b"wifi-census otp\x00" + secret.encode()).digest()
        self._policy = policy
        self._tz = ZoneInfo(timezone)
        self._issue = client.register_script(_ISSUE)
        self._verify = client.register_script(_VERIFY)
        self._release = client.register_script(_RELEASE)

    @property
    def policy(self) -> OtpPolicy:
        """The limits in force."""
        return self._policy

    def phone_digest(self, phone: str) -> str:
        """A keyed digest of a phone number, for Redis keys."""
        digest = hmac.new(self._secret, b"phone\x00" + phone.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def binding(self, *parts: str) -> str:
        """A keyed digest of what a code is sent for (identity fields and number, in order)."""
        message = "\x00".join(("binding", *parts)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _code_hash(self, fid: str, code: str) -> str:
        """The stored form of a code: keyed to this flow, so a hash is useless elsewhere."""
        return hmac.new(self._secret, f"{fid}\x00{code}".encode(), hashlib.sha256).hexdigest()

    def _keys(self, fid: str, phone: str, client: str, ap: str, now: dt.datetime
              ) -> list[str]:
        """The Redis keys an issue touches; daily counters follow the site's local day."""
        local = now.astimezone(self._tz)
        day, hour = local.strftime("%Y%m%d"), local.strftime("%Y%m%d%H")
        digest = self.phone_digest(phone)
        return [
            self._key_names.otp(fid),
            self._key_names.otp_cooldown(digest),
            self._key_names.otp_day_phone(digest, day),
            self._key_names.otp_day_client(client, day),
            self._key_names.otp_hour_ap(ap, hour),
            self._key_names.otp_hour_ap_alerted(ap, hour),
        ]

    def issue(self, fid: str, phone: str, client: str, *, ap: str, binding: str,
              now: dt.datetime | None = None, stash: tuple[str, bytes, int] | None = None
              ) -> IssueResult:
        """Book limits and make a new code for this flow (replacing an older one).

        client: who asks, as nobody can choose it (see portal.captive); ap: the AP whose hourly
        budget pays; binding: from binding(), what the code vouches for (verify() must be
        given the same).
        stash: (key, value, ttl seconds) stored in the same round trip, only when the code is
        issued (the flow's phone claim), or when the number is in its cooldown and this flow's
        live code was sent for the same binding (PENDING: that code stands, nothing is sent).
        """
        moment = now or dt.datetime.now(dt.UTC)
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        p = self._policy
        keys = self._keys(fid, phone, client, ap, moment)
        args: list[str | bytes | int] = [
            self._code_hash(fid, code), p.ttl, max(1, int(p.resend_seconds * 1000)),
            p.daily_per_phone, p.daily_per_client, binding, p.hourly_per_ap]
        if stash is not None:
            keys.append(stash[0])
            args += [stash[1], stash[2]]
        status, extra = self._issue(keys=keys, args=args)
        word = IssueStatus(status.decode() if isinstance(status, bytes) else status)
        if word is IssueStatus.OK:
            return IssueResult(word, code=code)
        waiting = word in (IssueStatus.COOLDOWN, IssueStatus.PENDING)
        retry = -(-int(extra) // 1000) if waiting else 0
        return IssueResult(word, retry_after=retry,
                           first_over_budget=word is IssueStatus.CAP_AP and int(extra) == 1)

    def release(self, fid: str, phone: str, client: str, *, ap: str,
                now: dt.datetime | None = None) -> None:
        """Undo an issue whose SMS could not be sent (the resident did not get a code)."""
        keys = self._keys(fid, phone, client, ap, now or dt.datetime.now(dt.UTC))
        self._release(keys=keys[:5])

    def verify(self, fid: str, code: str, *, binding: str,
               prove: tuple[str, bytes, bytes, int] | None = None) -> VerifyResult:
        """Check an entered code for what it is about to vouch for; a correct one is used up.

        prove: (claim key, the claim as read, the claim marked proven, ttl seconds): a correct
        code replaces the claim with its proven form in the same script, only while the key
        still holds what was read.
        """
        cleaned = "".join(ch for ch in code if ch in "0123456789")
        keys = [self._key_names.otp(fid)]
        args: list[str | bytes | int] = [self._code_hash(fid, cleaned), self._policy.max_tries,
                                         binding]
        if prove is not None:
            keys.append(prove[0])
            args += [prove[1], prove[2], prove[3]]
        status, left = self._verify(keys=keys, args=args)
        word = VerifyStatus(status.decode() if isinstance(status, bytes) else status)
        return VerifyResult(word, tries_left=int(left))

    def cooldown_left(self, phone: str) -> int:
        """Seconds before another code may be sent to this number."""
        ttl = self._redis.pttl(self._key_names.otp_cooldown(self.phone_digest(phone)))
        return max(0, -(-int(ttl) // 1000)) if isinstance(ttl, int) and ttl > 0 else 0
