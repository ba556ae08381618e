"""One-time codes and rate limits against the real Redis: tries, expiry, cooldown, daily caps."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from census.channels import RedisKeys
from census.settings import Settings
from portal.otp import IssueStatus, OtpPolicy, OtpService, VerifyStatus
from portal.ratelimit import RateLimiter

PHONE = "13800138000"
B = "binding"  # what a code is sent for (OtpService.binding of the identity and number)
K: dict[str, Any] = {"ap": "ap-1", "binding": B}  # the AP whose budget pays, and the binding


def otp(settings: Settings, redis_client: Any, **policy: Any) -> OtpService:
    """An OTP service with a policy that keeps the test fast."""
    values: dict[str, Any] = {"ttl": 60, "max_tries": 3, "resend_seconds": 0.05,
                              "daily_per_phone": 3, "daily_per_client": 5}
    values.update(policy)
    return OtpService(redis_client, settings.redis_key_prefix, settings.secret_key,
                      OtpPolicy(**values), settings.timezone)


def test_a_code_is_six_digits_stored_only_hashed(settings: Settings, redis_client: Any) -> None:
    """Nothing in Redis contains the code or the phone number."""
    service = otp(settings, redis_client)
    issued = service.issue("flow1", PHONE, "ap:10.0.0.2", **K)
    assert issued.status is IssueStatus.OK and len(issued.code) == 6 and issued.code.isdigit()
    for key in redis_client.scan_iter(match=f"{settings.redis_key_prefix}*"):
        assert PHONE.encode() not in key
        dumped = redis_client.dump(key)
        assert issued.code.encode() not in dumped and PHONE.encode() not in dumped


def test_right_code_works_once(settings: Settings, redis_client: Any) -> None:
    """A verified code is used up."""
    service = otp(settings, redis_client)
    code = service.issue("flow1", PHONE, "c", **K).code
    assert service.verify("flow1", code, binding=B).status is VerifyStatus.OK
    assert service.verify("flow1", code, binding=B).status is VerifyStatus.EXPIRED


def test_a_code_belongs_to_its_flow(settings: Settings, redis_client: Any) -> None:
    """Another flow cannot use it."""
    service = otp(settings, redis_client)
    code = service.issue("flow1", PHONE, "c", **K).code
    assert service.verify("flow2", code, binding=B).status is VerifyStatus.EXPIRED


def test_wrong_codes_count_down_then_lock_even_the_right_one(settings: Settings,
                                                             redis_client: Any) -> None:
    """max_tries wrong entries and the code is dead."""
    service = otp(settings, redis_client, max_tries=3)
    code = service.issue("flow1", PHONE, "c", **K).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert service.verify("flow1", wrong, binding=B).tries_left == 2
    assert service.verify("flow1", wrong, binding=B).tries_left == 1
    assert service.verify("flow1", wrong, binding=B).status is VerifyStatus.LOCKED
    assert service.verify("flow1", code, binding=B).status is VerifyStatus.LOCKED


def test_codes_expire(settings: Settings, redis_client: Any) -> None:
    """After ttl the code is gone."""
    service = otp(settings, redis_client, ttl=1)
    code = service.issue("flow1", PHONE, "c", **K).code
    time.sleep(1.1)
    assert service.verify("flow1", code, binding=B).status is VerifyStatus.EXPIRED


def test_resend_cooldown_per_number(settings: Settings, redis_client: Any) -> None:
    """A second code to the same number waits; another number does not."""
    service = otp(settings, redis_client, resend_seconds=30)
    assert service.issue("flow1", PHONE, "c", **K).status is IssueStatus.OK
    again = service.issue("flow2", PHONE, "c2", **K)
    assert again.status is IssueStatus.COOLDOWN and 29 <= again.retry_after <= 30
    assert service.cooldown_left(PHONE) in (29, 30)
    assert service.issue("flow3", "13900139000", "c", **K).status is IssueStatus.OK


def test_daily_cap_per_number(settings: Settings, redis_client: Any) -> None:
    """The fourth code of the day to one number is refused, whatever the client."""
    service = otp(settings, redis_client, daily_per_phone=3)
    for n in range(3):
        assert service.issue(f"f{n}", PHONE, f"client{n}", **K).status is IssueStatus.OK
        time.sleep(0.06)
    assert service.issue("f9", PHONE, "client9", **K).status is IssueStatus.CAP_PHONE


def test_daily_cap_per_client(settings: Settings, redis_client: Any) -> None:
    """One client asking codes for many numbers is stopped."""
    service = otp(settings, redis_client, daily_per_client=2)
    assert service.issue("f1", "13800000001", "ap:10.0.0.9", **K).status is IssueStatus.OK
    assert service.issue("f2", "13800000002", "ap:10.0.0.9", **K).status is IssueStatus.OK
    third = service.issue("f3", "13800000003", "ap:10.0.0.9", **K)
    assert third.status is IssueStatus.CAP_CLIENT
    assert service.issue("f4", "13800000003", "ap:10.0.0.10", **K).status is IssueStatus.OK


def test_daily_caps_follow_the_local_day(settings: Settings, redis_client: Any) -> None:
    """17:00 UTC is already the next day in Asia/Shanghai: a fresh count."""
    service = otp(settings, redis_client, daily_per_phone=1)
    evening = dt.datetime(2026, 1, 1, 15, 0, tzinfo=dt.UTC)  # 23:00 local
    assert service.issue("f1", PHONE, "c", **K, now=evening).status is IssueStatus.OK
    time.sleep(0.06)
    same_day = dt.datetime(2026, 1, 1, 15, 50, tzinfo=dt.UTC)  # 23:50 local
    assert service.issue("f2", PHONE, "c", **K, now=same_day).status is IssueStatus.CAP_PHONE
    next_day = dt.datetime(2026, 1, 1, 16, 10, tzinfo=dt.UTC)  # 00:10 local, next day
    assert service.issue("f3", PHONE, "c", **K, now=next_day).status is IssueStatus.OK


def test_release_gives_back_a_booking_whose_sms_failed(settings: Settings,
                                                       redis_client: Any) -> None:
    """No cooldown, no count, no code after a failed send."""
    service = otp(settings, redis_client, daily_per_phone=1, resend_seconds=60)
    first = service.issue("f1", PHONE, "c", **K)
    service.release("f1", PHONE, "c", ap="ap-1")
    assert service.verify("f1", first.code, binding=B).status is VerifyStatus.EXPIRED
    assert service.issue("f2", PHONE, "c", **K).status is IssueStatus.OK


def test_concurrent_issues_cannot_pass_the_cap(settings: Settings, redis_client: Any) -> None:
    """The Lua script books atomically: 20 parallel requests, cap 5, exactly 5 codes."""
    from concurrent.futures import ThreadPoolExecutor

    service = otp(settings, redis_client, daily_per_client=5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda n: service.issue(f"f{n}", f"1380000{n:04d}", "same", **K), range(20)))
    assert sum(r.status is IssueStatus.OK for r in results) == 5


def test_the_ap_budget_stops_every_number_and_alerts_once(settings: Settings,
                                                         redis_client: Any) -> None:
    """Defect 4: many numbers, many clients, one AP: the hourly budget holds, and only the
    first refusal of the hour asks for an alert; another AP is not affected."""
    service = otp(settings, redis_client, hourly_per_ap=3)
    issued = [service.issue(f"f{n}", f"1380000{n:04d}", f"client{n}", ap="ap-1", binding=B)
              for n in range(6)]
    assert [r.status for r in issued] == [IssueStatus.OK] * 3 + [IssueStatus.CAP_AP] * 3
    assert [r.first_over_budget for r in issued] == [False] * 3 + [True, False, False]
    other = service.issue("g1", "13900000001", "client9", ap="ap-2", binding=B)
    assert other.status is IssueStatus.OK


def test_rate_limiter_window(settings: Settings, redis_client: Any) -> None:
    """limit hits pass, the next is refused with a wait; other clients are not affected."""
    limiter = RateLimiter(redis_client, settings.redis_key_prefix, {"x": (3, 60)})
    now = 1_764_000_000.0
    assert [limiter.hit("x", "a", now).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.hit("x", "a", now)
    assert not refused.allowed and refused.retry_after == 61
    assert limiter.hit("x", "b", now).allowed
    assert limiter.hit("x", "a", now + 60).allowed  # next window
    limiter.reset("x", "a", now)
    assert limiter.hit("x", "a", now).allowed


def test_a_refused_issue_changes_nothing(settings: Settings, redis_client: Any) -> None:
    """A send refused by the cooldown leaves the flow's code and pending identity as they were
    (issue #11 defect 1: the refused identity used to replace the pending one)."""
    service = otp(settings, redis_client, resend_seconds=60)
    key = f"{settings.redis_key_prefix}stash"
    own = service.issue("f1", "13900139000", "c", ap="ap-1", binding="own",
                        stash=(key, b"own", 30))
    assert service.issue("f9", PHONE, "c", ap="ap-1", binding="x").status is IssueStatus.OK
    refused = service.issue("f1", PHONE, "c", ap="ap-1", binding="victim",
                            stash=(key, b"victim", 30))
    assert refused.status is IssueStatus.COOLDOWN
    assert redis_client.get(key) == b"own" and 0 < redis_client.ttl(key) <= 30
    assert service.verify("f1", own.code, binding="own").status is VerifyStatus.OK


def test_a_code_verifies_only_what_it_was_sent_for(settings: Settings,
                                                   redis_client: Any) -> None:
    """The right code offered for another binding is refused and spent."""
    service = otp(settings, redis_client)
    code = service.issue("f1", PHONE, "c", ap="ap-1", binding="sent-for").code
    assert service.verify("f1", code, binding="other").status is VerifyStatus.UNBOUND
    assert service.verify("f1", code, binding="sent-for").status is VerifyStatus.EXPIRED


def test_a_right_code_proves_the_claim_only_while_it_is_unchanged(
        settings: Settings, redis_client: Any) -> None:
    """The claim the code was checked against is replaced by its proven form in the same
    script; when the claim changed meanwhile (the number was changed), nothing is proven and
    the code is not spent."""
    service = otp(settings, redis_client)
    key = f"{settings.redis_key_prefix}claim"
    code = service.issue("f1", PHONE, "c", **K, stash=(key, b"unproven", 30)).code
    redis_client.set(key, b"changed")  # a concurrent "change mobile number"
    raced = service.verify("f1", code, binding=B, prove=(key, b"unproven", b"proven", 60))
    assert raced.status is VerifyStatus.UNBOUND and redis_client.get(key) == b"changed"
    redis_client.set(key, b"unproven")
    done = service.verify("f1", code, binding=B, prove=(key, b"unproven", b"proven", 60))
    assert done.status is VerifyStatus.OK and redis_client.get(key) == b"proven"
    assert 0 < redis_client.ttl(key) <= 60
    again = service.verify("f1", code, binding=B, prove=(key, b"proven", b"proven", 60))
    assert again.status is VerifyStatus.EXPIRED  # used up: a replay proves nothing


def test_rate_limiter_hit_and_get(settings: Settings, redis_client: Any) -> None:
    """A counted hit and a key's value in one round trip; the key is only read."""
    limiter = RateLimiter(redis_client, settings.redis_key_prefix, {"x": (1, 60)})
    key = f"{settings.redis_key_prefix}pending"
    redis_client.set(key, b"blob")
    now = 1_764_000_000.0
    first, value = limiter.hit_and_get("x", "a", key, now)
    second, again = limiter.hit_and_get("x", "a", key, now)
    assert (first.allowed, value) == (True, b"blob")
    assert (second.allowed, second.retry_after, again) == (False, 61, b"blob")
    assert limiter.hit_and_get("x", "b", f"{key}:none", now)[1] is None


@pytest.mark.parametrize(("header", "locale"), [
    ("zh-CN,zh;q=0.9", "zh_CN"), ("en-US,en;q=0.9", "en"), ("zh-Hans-CN,en;q=0.5", "zh_CN"),
    ("en-GB,zh-CN;q=0.8", "en"), ("fr-FR", "zh_CN"), ("fr-FR,en;q=0.5", "en"),
    ("zh-TW", "zh_CN"), ("", "zh_CN"), ("en;q=0,zh;q=0.1", "zh_CN"),
])
def test_locale_from_accept_language(header: str, locale: str) -> None:
    """Chinese by default; English for browsers that prefer it."""
    from werkzeug.datastructures import LanguageAccept
    from werkzeug.http import parse_accept_header

    from portal.i18n import best_locale

    assert best_locale(parse_accept_header(header, LanguageAccept)) == locale


def test_the_same_number_back_in_its_cooldown_keeps_its_code(settings: Settings,
                                                              redis_client: Any) -> None:
    """Within the cooldown, the flow whose live code was sent for exactly this binding gets its
    claim back for that code (no new code, no new cooldown); another binding or another flow
    gets the cooldown and its stash is not written."""
    service = otp(settings, redis_client, resend_seconds=60)
    key, other_key = f"{settings.redis_key_prefix}claim", f"{settings.redis_key_prefix}other"
    sent = service.issue("f1", PHONE, "c", **K, stash=(key, b"claim", 30))
    redis_client.delete(key)  # "change number"
    cooldown = RedisKeys(settings.redis_key_prefix).otp_cooldown(service.phone_digest(PHONE))
    cooldown_before = redis_client.pttl(cooldown)
    back = service.issue("f1", PHONE, "c", **K, stash=(key, b"claim again", 30))
    assert back.status is IssueStatus.PENDING and not back.code
    assert 0 < back.retry_after <= 60 and redis_client.get(key) == b"claim again"
    assert redis_client.pttl(cooldown) <= cooldown_before  # not booked again
    redis_client.delete(key)
    other = service.issue("f1", PHONE, "c", ap="ap-1", binding="another number",
                          stash=(key, b"x", 30))
    assert other.status is IssueStatus.COOLDOWN and redis_client.get(key) is None
    elsewhere = service.issue("f2", PHONE, "c", **K, stash=(other_key, b"x", 30))
    assert elsewhere.status is IssueStatus.COOLDOWN and redis_client.get(other_key) is None
    assert service.verify("f2", sent.code, binding=B).status is VerifyStatus.EXPIRED
    assert service.verify("f1", sent.code, binding=B).status is VerifyStatus.OK
