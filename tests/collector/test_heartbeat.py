"""Integration: every AP report, an empty keep-alive included, leaves one ap_heartbeat point."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from census.events import PresenceEvent
from census.settings import Settings
from collector.service import Collector
from tests.common import (
    AP_LOBBY,
    AP_UNIT,
    count_points,
    options_for,
    running_collector,
    station,
    wait_for,
)
from timeseries import TimeSeriesStore
from timeseries.heartbeat import ap_reports


def test_an_empty_report_is_stored_as_a_heartbeat_without_presence(
    registry_settings: Settings, influx: TimeSeriesStore, publisher: Callable[[str, Any], None],
) -> None:
    """`[]` from an AP says "alive, nobody here": a heartbeat, no presence, nothing rejected."""
    settings = registry_settings
    now = round(time.time(), 3)
    collector = Collector(settings, options_for(settings, "heartbeat"))
    with running_collector(collector):
        publisher(AP_UNIT, [])
        publisher(AP_UNIT, [])
        publisher(AP_LOBBY, [PresenceEvent("snapshot", station(3), now, -60)])
        publisher("ap-not-in-the-registry", [PresenceEvent("snapshot", station(4), now, -60)])
        wait_for(lambda: collector.summary.messages == 4 and collector.is_idle(),
                 what="every report acknowledged")

    start_ns = int((now - 60) * 1e9)
    reports = ap_reports(influx, start_ns, start_ns + 120 * 10**9)
    by_ap = reports.set_index("ap")
    assert list(by_ap.index) == [AP_UNIT, AP_LOBBY]  # the unknown AP is dead-lettered
    assert by_ap.loc[AP_LOBBY, "events"] == 1 and by_ap.loc[AP_LOBBY, "reports"] == 1
    assert by_ap.loc[AP_UNIT, "events"] == 0 and by_ap.loc[AP_UNIT, "reports"] >= 1
    assert count_points(influx) == 1 and collector.summary.written == 1
    assert dict(collector.summary.dead_lettered) == {"unknown_ap": 1}
