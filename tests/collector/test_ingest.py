"""Integration: events through the real Mosquitto into the real InfluxDB and Redis."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pandas as pd
import redis

from census.events import PresenceEvent
from census.privacy import pseudonymize_mac
from census.services import port_is_free
from census.settings import Settings
from collector.service import Collector
from registry.db import bump_registry_version, make_engine, make_session_factory, session_scope
from registry.models import AccessPoint, Building, Coverage
from tests.collector.conftest import (
    AP_FLOOR,
    AP_LOBBY,
    AP_UNIT,
    UNIT_REF,
    count_points,
    options_for,
    running_collector,
    snapshot,
    station,
    wait_for,
)
from timeseries import TimeSeriesStore


def test_events_land_with_location_tags_pseudonyms_and_fields(
    registry_settings: Settings, influx: TimeSeriesStore, redis_client: redis.Redis,
    publisher: Callable[[str, Any], None],
) -> None:
    """Each event type lands once, tagged from the registry, with the MAC only as a pseudonym."""
    settings = registry_settings
    now = round(time.time(), 3)
    randomized = station(7, randomized=True)
    fixed = station(8)
    events = [
        PresenceEvent("connect", fixed, now - 5, -50, "Census-Free"),
        PresenceEvent("snapshot", fixed, now - 2, -52, "Census-Free"),
        PresenceEvent("probe", randomized, now - 1, -80, ""),
        PresenceEvent("disconnect", station(9), now - 3),
    ]
    collector = Collector(settings, options_for(settings, "tags"))
    with running_collector(collector):
        publisher(AP_UNIT, events)
        publisher(AP_FLOOR, [PresenceEvent("probe", fixed, now, -70, "corp wifi, \"5G\"")])
        publisher(AP_LOBBY, [PresenceEvent("snapshot", randomized, now, -66)])
        wait_for(lambda: count_points(influx) == 6, what="6 points in InfluxDB")

    frame = influx.query("SELECT * FROM presence")
    assert len(frame) == 6
    by_ap = frame.groupby("ap")
    unit_rows = by_ap.get_group(AP_UNIT)
    assert set(unit_rows["event"]) == {"connect", "snapshot", "probe", "disconnect"}
    assert set(unit_rows["community"]) == {"C1"} and set(unit_rows["building"]) == {"B1"}
    assert set(unit_rows["unit"]) == {UNIT_REF} and set(unit_rows["floor"]) == {"1"}
    floor_row = by_ap.get_group(AP_FLOOR).iloc[0]
    assert floor_row["floor"] == "3" and pd.isna(floor_row["unit"])
    assert floor_row["ssid"] == 'corp wifi, "5G"'
    lobby_row = by_ap.get_group(AP_LOBBY).iloc[0]
    assert lobby_row["building"] == "B2" and pd.isna(lobby_row["floor"])
    assert bool(lobby_row["randomized"]) is True

    key = settings.pseudonym_key
    probe = unit_rows[unit_rows["event"] == "probe"].iloc[0]
    assert probe["device"] == pseudonymize_mac(randomized, key)
    assert bool(probe["randomized"]) is True and probe["rssi"] == -80 and probe["ssid"] == ""
    snap = unit_rows[unit_rows["event"] == "snapshot"].iloc[0]
    assert bool(snap["randomized"]) is False and snap["rssi"] == -52
    assert pd.isna(snap["ssid"])  # the SSID is stored for probes only
    # Event time kept to the millisecond; the sub-millisecond part is the device offset.
    assert abs(snap["time"].timestamp() - (now - 2)) < 0.001
    disconnect = unit_rows[unit_rows["event"] == "disconnect"].iloc[0]
    assert pd.isna(disconnect["rssi"])  # the event had no RSSI

    # No raw MAC anywhere in InfluxDB or Redis.
    raw = json.dumps(frame.astype(str).to_dict("records"))
    for mac in (randomized, fixed, station(9)):
        assert mac not in raw
    for redis_key in redis_client.scan_iter(match=f"{settings.redis_key_prefix}*"):
        dump = redis_client.dump(redis_key) or b""
        assert fixed.encode() not in dump and randomized.encode() not in dump

    # Who is here now: per AP and per unit, scored by last-seen time, with a TTL.
    ap_key = f"{settings.redis_key_prefix}here:ap:{AP_UNIT}"
    members = dict(redis_client.zrange(ap_key, 0, -1, withscores=True))
    assert {m.decode() for m in members} == {
        pseudonymize_mac(fixed, key), pseudonymize_mac(randomized, key)
    }
    assert members[pseudonymize_mac(fixed, key).encode()] == now - 2  # latest of connect/snapshot
    assert 0 < redis_client.ttl(ap_key) <= 900
    unit_key = f"{settings.redis_key_prefix}here:unit:{UNIT_REF}"
    assert redis_client.zcard(unit_key) == 2
    floor_members = redis_client.zrange(f"{settings.redis_key_prefix}here:ap:{AP_FLOOR}", 0, -1)
    assert floor_members == [pseudonymize_mac(fixed, key).encode()]
    assert not redis_client.exists(f"{settings.redis_key_prefix}here:unit:")

    summary = collector.summary
    assert summary.events_received == 6 and summary.written == 6 and not summary.dead_lettered


def test_disconnect_removes_a_device_from_presence_unless_seen_after(
    registry_settings: Settings, influx: TimeSeriesStore, redis_client: redis.Redis,
    publisher: Callable[[str, Any], None],
) -> None:
    """A disconnect takes the device out of 'here now'; a stale disconnect does not."""
    settings = registry_settings
    now = time.time()
    leaving, returning = station(1), station(2)
    collector = Collector(settings, options_for(settings, "gone"))
    with running_collector(collector):
        publisher(AP_UNIT, [PresenceEvent("connect", leaving, now - 10),
                            PresenceEvent("connect", returning, now - 1)])
        wait_for(lambda: count_points(influx) == 2, what="connects stored")
        publisher(AP_UNIT, [PresenceEvent("disconnect", leaving, now - 5),
                            PresenceEvent("disconnect", returning, now - 3)])
        wait_for(lambda: count_points(influx) == 4, what="disconnects stored")
    members = redis_client.zrange(f"{settings.redis_key_prefix}here:ap:{AP_UNIT}", 0, -1)
    assert members == [pseudonymize_mac(returning, settings.pseudonym_key).encode()]


def test_redelivered_message_overwrites_itself(
    registry_settings: Settings, influx: TimeSeriesStore, publisher: Callable[[str, Any], None],
) -> None:
    """The same batch published twice (as a broker redelivery would) is stored once."""
    settings = registry_settings
    batch = snapshot(300, round(time.time() - 30, 3))
    collector = Collector(settings, options_for(settings, "dup"))
    with running_collector(collector):
        publisher(AP_UNIT, batch)
        publisher(AP_UNIT, batch)
        wait_for(lambda: collector.summary.events_received == 600, what="both copies received")
    assert collector.summary.written == 600
    assert count_points(influx) == 300


def test_registry_change_is_picked_up_without_restart(
    registry_settings: Settings, influx: TimeSeriesStore, publisher: Callable[[str, Any], None],
) -> None:
    """An AP added to the registry while the collector runs is accepted once it is imported."""
    settings = registry_settings
    now = time.time()
    collector = Collector(settings, options_for(settings, "reload"))
    with running_collector(collector):
        publisher("ap-new", snapshot(3, now))
        wait_for(lambda: collector.summary.dead_lettered["unknown_ap"] == 3, what="unknown_ap")
        engine = make_engine(settings.database_url)
        with session_scope(make_session_factory(engine)) as session:
            building = session.query(Building).filter_by(code="B2").one()
            session.add(AccessPoint(ap_id="ap-new", building=building,
                                    coverage=Coverage.FLOOR, floor=7))
            bump_registry_version(session)
        engine.dispose()
        time.sleep(5.2)  # past the unknown-AP recheck interval
        publisher("ap-new", snapshot(3, now))
        wait_for(lambda: count_points(influx) == 3, what="the new AP's events stored")
    frame = influx.query("SELECT * FROM presence")
    assert set(frame["ap"]) == {"ap-new"} and set(frame["floor"]) == {"7"}


def test_metrics_endpoint_reports_received_written_and_dead_letters(
    registry_settings: Settings, influx: TimeSeriesStore, publisher: Callable[[str, Any], None],
) -> None:
    """/metrics serves the counters Prometheus scrapes."""
    settings = registry_settings
    port = next(p for p in range(19200, 19300) if port_is_free("127.0.0.1", p))
    collector = Collector(settings, options_for(settings, "metrics", metrics_port=port))
    with running_collector(collector):
        publisher(AP_UNIT, snapshot(5, time.time()))
        publisher(AP_UNIT, b"{not json")
        wait_for(lambda: count_points(influx) == 5, what="points stored")
        wait_for(lambda: collector.summary.dead_lettered["bad_json"] == 1, what="bad_json")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return str(answer.read().decode())

        # The points are in InfluxDB a moment before the writer counts them: scrape until then.
        wait_for(lambda: "census_collector_events_written_total 5.0" in scrape(),
                 what="written counted")
        text = scrape()
    assert "census_collector_messages_received_total 2.0" in text
    assert "census_collector_events_written_total 5.0" in text
    assert 'census_collector_events_dead_lettered_total{reason="bad_json"} 1.0' in text
    assert "census_collector_spool_depth 0.0" in text
    assert "census_collector_batch_latency_seconds_count" in text
    assert port_is_free("127.0.0.1", port)  # the endpoint closes with the collector
