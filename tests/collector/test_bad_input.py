"""Integration: every bad-input class is counted and dead-lettered; good events still land."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from census.events import PresenceEvent, encode_event
from census.privacy import pseudonymize_mac
from census.settings import Settings
from collector.redis_state import DeadLetter, RedisState
from collector.service import Collector
from tests.common import (
    AP_FLOOR,
    AP_UNIT,
    count_points,
    options_for,
    running_collector,
    snapshot,
    wait_for,
)
from timeseries import TimeSeriesStore

SECRET_MAC = "a4:83:e7:12:9f:01"


def test_bad_input_is_counted_by_reason_and_dead_lettered_while_good_events_land(
    registry_settings: Settings, influx: TimeSeriesStore, redis_client: redis.Redis,
    publisher: Callable[[str, Any], None],
) -> None:
    """Each class of bad input: counted by reason, sampled, raw MAC redacted, no stall."""
    settings = registry_settings
    now = time.time()
    good = {"v": 1, "type": "snapshot", "mac": SECRET_MAC, "ts": now, "rssi": -50}
    bad_messages: list[tuple[str, bytes, str, int]] = [
        (AP_UNIT, b'{"v":1,"type":"snapshot","mac":"' + SECRET_MAC.encode() + b'",', "bad_json",
         1),
        (AP_UNIT, b"\xc3\x28 not utf-8", "bad_json", 1),
        (AP_UNIT, json.dumps([good] * 2).encode() + b" " * (1024 * 1024), "oversized", 1),
        (AP_UNIT, json.dumps([good] * 5001).encode(), "oversized", 5001),
        (AP_UNIT, json.dumps(dict(good, rssi="strong")).encode(), "bad_field", 1),
        (AP_UNIT, json.dumps(dict(good, v=9)).encode(), "bad_version", 1),
        ("ap-not-registered", json.dumps([good, good]).encode(), "unknown_ap", 2),
        (AP_UNIT, json.dumps(dict(good, ts=now + 3600)).encode(), "bad_timestamp", 1),
        (AP_UNIT, json.dumps(dict(good, ts=now - 400 * 86400)).encode(), "bad_timestamp", 1),
        (AP_UNIT, json.dumps(dict(good, ap=AP_FLOOR)).encode(), "ap_mismatch", 1),
    ]
    collector = Collector(settings, options_for(settings, "bad"))
    with running_collector(collector):
        good_sent = 0
        for index, (ap_id, payload, _reason, _count) in enumerate(bad_messages):
            # Good events before and after every bad one, in the same stream.
            publisher(AP_UNIT, snapshot(3, now - index, start=index * 10))
            good_sent += 3
            publisher(ap_id, payload)
        # A batch mixing good and bad events: the good ones land.
        mixed = [dict(good, mac="00:00:00:00:00:aa"), dict(good, type="teleport"),
                 dict(good, mac="00:00:00:00:00:bb")]
        publisher(AP_UNIT, json.dumps(mixed).encode())
        good_sent += 2
        wait_for(lambda: count_points(influx) == good_sent, what=f"{good_sent} good points")
        wait_for(lambda: collector.is_idle(), what="every message acknowledged")

    expected: dict[str, int] = {}
    for _ap, _payload, reason, count in bad_messages:
        expected[reason] = expected.get(reason, 0) + count
    expected["bad_field"] += 1  # the teleport in the mixed batch
    assert dict(collector.summary.dead_lettered) == expected
    assert collector.summary.written == good_sent

    key = f"{settings.redis_key_prefix}deadletter"
    entries = redis_client.xrange(key)
    by_reason: dict[str, list[dict[bytes, bytes]]] = {}
    for _id, fields in entries:
        by_reason.setdefault(fields[b"reason"].decode(), []).append(fields)
    assert set(by_reason) == set(expected)
    for samples in by_reason.values():
        for fields in samples:
            assert set(fields) == {b"reason", b"detail", b"topic", b"payload", b"at"}
            assert len(fields[b"payload"]) <= 4096
            assert SECRET_MAC.encode() not in fields[b"payload"]  # redacted, even in bad JSON
    pseudonym = pseudonymize_mac(SECRET_MAC, settings.pseudonym_key).encode()
    assert b"mac~" + pseudonym in by_reason["bad_json"][0][b"payload"]
    assert by_reason["unknown_ap"][0][b"topic"].endswith(b"/ap-not-registered/events")


def test_dead_letters_fall_back_to_a_file_when_redis_is_down(tmp_path: Any) -> None:
    """With Redis unreachable, samples go to the JSON-lines file and nothing raises."""
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    fallback = tmp_path / "deadletter.jsonl"
    state = RedisState(unreachable, "t:", 90, fallback)
    letter = DeadLetter("bad_json", "not JSON", "p/v1/ap/a/events", b"\xff{", time.time())
    assert state.write_deadletters([letter]) is False
    record = json.loads(fallback.read_text().splitlines()[0])
    assert record["reason"] == "bad_json" and record["payload"] == "\\xff{"


def test_presence_survives_redis_outage_without_stalling(
    registry_settings: Settings, influx: TimeSeriesStore, publisher: Callable[[str, Any], None],
) -> None:
    """Redis down: events are still stored and acknowledged; the failure is counted."""
    settings = registry_settings
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    collector = Collector(settings, options_for(settings, "noredis"), redis_client=unreachable)
    with running_collector(collector):
        publisher(AP_UNIT, [PresenceEvent("snapshot", "00:00:00:00:00:01", time.time(), -40)])
        publisher(AP_UNIT, b"garbage")
        wait_for(lambda: count_points(influx) == 1 and collector.is_idle(), what="stored")
    assert collector.summary.redis_errors >= 2
    assert (collector.options.spool_dir / "deadletter.jsonl").exists()


@pytest.mark.parametrize("poison", [
    b'{"v":1,"type":"snapshot","mac":"00:16:3e:00:00:ff","rssi":-50,"ts":1' + b"0" * 400 + b"}",
    b'{"v":1,"type":"snapshot","mac":"00:16:3e:00:00:ff","rssi":-50,"ts":1,"x":'
    + b"[" * 100_000 + b"]" * 100_000 + b"}",
], ids=["ts 10**400", "nested 100,000 deep"])
def test_one_poisoned_event_takes_no_good_event_with_it(
    registry_settings: Settings, influx: TimeSeriesStore, redis_client: redis.Redis,
    publisher: Callable[[str, Any], None], poison: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    """10 good + 1 poisoned in one message: 10 stored, 1 dead-lettered by reason, no traceback."""
    settings = registry_settings
    good = [encode_event(event) for event in snapshot(10, time.time())]
    body = b"[" + b",".join(good[:5] + [poison] + good[5:]) + b"]"
    collector = Collector(settings, options_for(settings, "poison"))
    with caplog.at_level(logging.INFO), running_collector(collector):
        publisher(AP_UNIT, body)
        wait_for(lambda: collector.is_idle() and collector.summary.messages == 1,
                 what="the message acknowledged")
    assert count_points(influx) == 10 and collector.summary.written == 10
    assert dict(collector.summary.dead_lettered) == {"bad_field": 1}
    entries = redis_client.xrange(f"{settings.redis_key_prefix}deadletter")
    assert [fields[b"reason"] for _id, fields in entries] == [b"bad_field"]
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info] == []
