"""Integration: events through the real Mosquitto into the real InfluxDB and Redis."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
import redis

from census.events import PresenceEvent
from census.privacy import pseudonymize_mac
from census.settings import Settings
from collector.service import Collector, CollectorSummary
from registry.db import bump_registry_version, make_engine, make_session_factory, session_scope
from registry.models import AccessPoint, Building, Coverage
from tests.common import (
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
from wifi_census.local_servers import port_is_free


@dataclass(frozen=True)
class Ingested:
    """What one collector run stored for six events from three kinds of AP."""

    settings: Settings
    now: float
    fixed: str  # a device with its own MAC
    randomized: str  # a device with a locally administered (randomised) MAC
    gone: str  # a device that only disconnected
    frame: pd.DataFrame  # every stored presence point
    summary: CollectorSummary

    def rows(self, ap: str) -> pd.DataFrame:
        """The points of one AP."""
        return self.frame[self.frame["ap"] == ap]

    def pseudonym(self, mac: str) -> str:
        """A MAC as it is stored."""
        return pseudonymize_mac(mac, self.settings.pseudonym_key)


@pytest.fixture
def ingested(registry_settings: Settings, influx: TimeSeriesStore,
             publisher: Callable[[str, Any], None]) -> Ingested:
    """Every event type on a unit's AP, a probe on a corridor AP and a snapshot in a lobby."""
    settings = registry_settings
    now = round(time.time(), 3)
    randomized, fixed, gone = station(7, randomized=True), station(8), station(9)
    collector = Collector(settings, options_for(settings, "tags"))
    with running_collector(collector):
        publisher(AP_UNIT, [
            PresenceEvent("connect", fixed, now - 5, -50, "Census-Free"),
            PresenceEvent("snapshot", fixed, now - 2, -52, "Census-Free"),
            PresenceEvent("probe", randomized, now - 1, -80, ""),
            PresenceEvent("disconnect", gone, now - 3),
        ])
        publisher(AP_FLOOR, [PresenceEvent("probe", fixed, now, -70, "corp wifi, \"5G\"")])
        publisher(AP_LOBBY, [PresenceEvent("snapshot", randomized, now, -66)])
        wait_for(lambda: count_points(influx) == 6, what="6 points in InfluxDB")
    return Ingested(settings, now, fixed, randomized, gone,
                    influx.query("SELECT * FROM presence"), collector.summary)


def test_each_event_type_lands_once_tagged_with_the_units_place(ingested: Ingested) -> None:
    """A unit AP's four event types are four points, tagged with its community to floor."""
    assert len(ingested.frame) == 6
    unit_rows = ingested.rows(AP_UNIT)
    assert sorted(unit_rows["event"]) == ["connect", "disconnect", "probe", "snapshot"]
    assert set(unit_rows["community"]) == {"C1"} and set(unit_rows["building"]) == {"B1"}
    assert set(unit_rows["unit"]) == {UNIT_REF} and set(unit_rows["floor"]) == {"1"}


def test_corridor_and_lobby_points_carry_only_the_place_their_ap_covers(
    ingested: Ingested,
) -> None:
    """A corridor AP tags its floor but no unit; a lobby AP its building but no floor."""
    floor_row = ingested.rows(AP_FLOOR).iloc[0]
    assert floor_row["floor"] == "3" and pd.isna(floor_row["unit"])
    lobby_row = ingested.rows(AP_LOBBY).iloc[0]
    assert lobby_row["building"] == "B2" and pd.isna(lobby_row["floor"])


def test_fields_keep_rssi_probe_ssid_and_the_randomized_bit(ingested: Ingested) -> None:
    """RSSI when sent, the SSID of probes only (quotes and commas intact), randomised or not."""
    unit_rows = ingested.rows(AP_UNIT)
    probe = unit_rows[unit_rows["event"] == "probe"].iloc[0]
    assert probe["device"] == ingested.pseudonym(ingested.randomized)
    assert bool(probe["randomized"]) is True and probe["rssi"] == -80 and probe["ssid"] == ""
    snap = unit_rows[unit_rows["event"] == "snapshot"].iloc[0]
    assert bool(snap["randomized"]) is False and snap["rssi"] == -52
    assert pd.isna(snap["ssid"])  # the SSID is stored for probes only
    disconnect = unit_rows[unit_rows["event"] == "disconnect"].iloc[0]
    assert pd.isna(disconnect["rssi"])  # the event had no RSSI
    assert ingested.rows(AP_FLOOR).iloc[0]["ssid"] == 'corp wifi, "5G"'
    assert bool(ingested.rows(AP_LOBBY).iloc[0]["randomized"]) is True


def test_event_time_is_kept_to_the_millisecond(ingested: Ingested) -> None:
    """The sub-millisecond part of a point's time is the device offset, not the event's."""
    unit_rows = ingested.rows(AP_UNIT)
    snap = unit_rows[unit_rows["event"] == "snapshot"].iloc[0]
    assert abs(snap["time"].timestamp() - (ingested.now - 2)) < 0.001


def test_no_raw_mac_reaches_influxdb_or_redis(ingested: Ingested,
                                              redis_client: redis.Redis) -> None:
    """Only pseudonyms are stored: no MAC in any point, nor in any Redis value."""
    raw = json.dumps(ingested.frame.astype(str).to_dict("records"))
    for mac in (ingested.randomized, ingested.fixed, ingested.gone):
        assert mac not in raw
    keys = list(redis_client.scan_iter(match=f"{ingested.settings.redis_key_prefix}*"))
    assert keys  # the presence sets below exist, so the scan did look at something
    for redis_key in keys:
        dump = redis_client.dump(redis_key) or b""
        assert ingested.fixed.encode() not in dump and ingested.randomized.encode() not in dump


def test_here_now_lists_devices_per_ap_and_unit_by_last_seen(ingested: Ingested,
                                                             redis_client: redis.Redis) -> None:
    """Per AP and per unit, scored by the latest time seen, expiring after 900 s."""
    prefix = ingested.settings.redis_key_prefix
    fixed, randomized = ingested.pseudonym(ingested.fixed), ingested.pseudonym(ingested.randomized)
    ap_key = f"{prefix}here:ap:{AP_UNIT}"
    members = dict(redis_client.zrange(ap_key, 0, -1, withscores=True))
    assert {m.decode() for m in members} == {fixed, randomized}
    assert members[fixed.encode()] == ingested.now - 2  # latest of connect/snapshot
    assert 0 < redis_client.ttl(ap_key) <= 900
    assert redis_client.zcard(f"{prefix}here:unit:{UNIT_REF}") == 2
    assert redis_client.zrange(f"{prefix}here:ap:{AP_FLOOR}", 0, -1) == [fixed.encode()]
    assert not redis_client.exists(f"{prefix}here:unit:")  # no unit: no unit set


def test_the_summary_counts_every_event_written_and_none_dead(ingested: Ingested) -> None:
    """Six received, six written, nothing dead-lettered."""
    summary = ingested.summary
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
