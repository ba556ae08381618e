"""events.jsonl: one MQTT message per line, payloads encoded exactly as census.events does."""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from census.channels import is_ap_id
from census.events import (
    EVENT_TYPES,
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    PresenceEvent,
    encode_events,
)
from census.privacy import normalize_mac
from simulator import SimulationResult
from simulator.stream import seconds_json


def split_line(raw: bytes) -> tuple[str, bytes]:
    """The AP id and the raw payload bytes of a line, by the documented fixed layout."""
    head = b'{"ap":"'
    assert raw.startswith(head) and raw.endswith(b"}\n")
    ap_end = raw.index(b'"', len(head))
    rest = raw[ap_end:]
    assert rest.startswith(b'","payload":')
    return raw[len(head):ap_end].decode("ascii"), rest[len(b'","payload":'):-2]


@settings(max_examples=300, deadline=None)
@given(ms=st.integers(min_value=0, max_value=4_102_444_800_000))
def test_millisecond_times_are_written_as_json_writes_floats(ms: int) -> None:
    """The fast formatter agrees with json.dumps for every millisecond time."""
    assert seconds_json(ms) == json.dumps(ms / 1000)


def test_every_payload_is_byte_identical_to_census_events_encoding(
        small_run: SimulationResult) -> None:
    """Re-encoding each payload through PresenceEvent/encode_events gives the same bytes."""
    checked = 0
    with small_run.events_path.open("rb") as handle:
        for raw in handle:
            _ap, payload = split_line(raw)
            events = [PresenceEvent(type=e["type"], mac=e["mac"], ts=e["ts"], rssi=e.get("rssi"),
                                    ssid=e.get("ssid")) for e in json.loads(payload)]
            assert encode_events(events) == payload
            checked += 1
    assert checked == small_run.messages


def test_messages_follow_the_contract(small_run: SimulationResult) -> None:
    """Valid fields and ranges, known APs, batch limits, snapshot batching rules."""
    with small_run.aps_csv.open(encoding="utf-8") as handle:
        known_aps = {row["ap_id"] for row in csv.DictReader(handle)}
    types: Counter[str] = Counter()
    empty_snapshots = 0
    last_ts: float | None = None
    with small_run.events_path.open("rb") as handle:
        for raw in handle:
            record = json.loads(raw)
            assert set(record) == {"ap", "payload"}
            ap, payload = record["ap"], record["payload"]
            assert is_ap_id(ap) and ap in known_aps
            assert isinstance(payload, list) and len(payload) <= MAX_BATCH_EVENTS
            assert len(split_line(raw)[1]) <= MAX_PAYLOAD_BYTES
            if not payload:
                empty_snapshots += 1
                continue
            kinds = {event["type"] for event in payload}
            assert len(kinds) == 1
            kind = kinds.pop()
            assert kind in EVENT_TYPES
            types[kind] += len(payload)
            for event in payload:
                _check_event(event)
            if kind in ("connect", "disconnect"):
                assert len(payload) == 1  # hostapd reports these one at a time
            if kind == "snapshot":
                assert len({e["ts"] for e in payload}) == 1  # one snapshot, one time
                assert len({e["mac"] for e in payload}) == len(payload)
            ts = payload[0]["ts"]
            assert last_ts is None or ts >= last_ts  # the file is in time order
            last_ts = ts
    assert empty_snapshots > 0  # vacant flats and empty daytime homes report []
    assert types == small_run.events
    assert set(types) == set(EVENT_TYPES)


def _check_event(event: dict[str, Any]) -> None:
    """One wire event against contracts section 2."""
    assert event["v"] == 1
    assert normalize_mac(event["mac"]) == event["mac"]
    assert isinstance(event["ts"], int | float)
    if event["type"] in ("snapshot", "probe"):
        assert isinstance(event["rssi"], int) and -120 <= event["rssi"] <= 0
    if "ssid" in event:
        assert len(event["ssid"].encode("utf-8")) <= 32
    if event["type"] == "disconnect":
        assert set(event) == {"v", "type", "mac", "ts"}


def test_snapshots_follow_each_aps_interval(small_run: SimulationResult,
                                            small_truth: dict[str, Any]) -> None:
    """Each AP reports every 300 s at its own phase, except while it is down."""
    interval = small_truth["config"]["snapshot_interval"]
    phases = {ap["ap"]: ap["phase"] for ap in small_truth["aps"]}
    outages = {ap["ap"]: ap["outages"] for ap in small_truth["aps"]}
    start, end = small_truth["period"]["start"], small_truth["period"]["end"]
    seen: dict[str, list[int]] = {}
    times: dict[str, int] = {}
    with small_run.events_path.open("rb") as handle:
        for raw in handle:
            record = json.loads(raw)
            if record["payload"] and record["payload"][0]["type"] != "snapshot":
                continue
            ap = record["ap"]
            if record["payload"]:
                times[ap] = record["payload"][0]["ts"]
            seen.setdefault(ap, []).append(0)
    for ap, phase in phases.items():
        expected = [t for t in range(start + phase, end, interval)
                    if not any(a <= t < b for a, b in outages[ap])]
        assert len(seen.get(ap, [])) == len(expected), ap
        if ap in times:
            assert (times[ap] - start - phase) % interval == 0
