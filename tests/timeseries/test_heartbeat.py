"""The ap_heartbeat measurement: one point per AP report, and which APs reported when."""

from __future__ import annotations

import time

from collector.parser import ParsedEvent
from timeseries import Point, TimeSeriesStore
from timeseries.heartbeat import ap_reports
from timeseries.presence import LineBuilder, presence_points
from timeseries.schema import MEASUREMENT_HEARTBEAT, ApLocation

UNIT_AP = ApLocation("ap-1", "TEDA-017", "B03", "15", "TEDA-017/B03/1502")
LOBBY_AP = ApLocation("ap-2", "TEDA-017", "B04")
OTHER_AP = ApLocation("ap-3", "TEDA-020", "B01")
SILENT_AP = ApLocation("ap-4", "TEDA-017", "B03", "2")
DEVICE = "5f0c9a1be2d34470"
S = 1_000_000_000


def snapshot(ts: float, n: int) -> list[ParsedEvent]:
    """A snapshot report of n stations at one time."""
    return [ParsedEvent("snapshot", f"{i:016x}", False, ts, -50, None) for i in range(n)]


def test_an_empty_report_is_a_heartbeat_at_its_arrival_time() -> None:
    """An AP's empty keep-alive becomes one point with no events, timed when it arrived."""
    line = LineBuilder().heartbeat(UNIT_AP, [], 1764000000.2504)
    expected = Point(MEASUREMENT_HEARTBEAT, UNIT_AP.tags(), {"events": 0, "at_s": 1764000000},
                     1764000000250 * 1_000_000).to_line()
    assert line == expected
    assert line.startswith("ap_heartbeat,ap=ap-1,building=B03,community=TEDA-017,floor=15,")


def test_a_report_with_events_is_timed_by_its_latest_event() -> None:
    """A report's heartbeat takes its latest event time, so a redelivery lands on itself."""
    events = [ParsedEvent("connect", DEVICE, False, 1764000000.5, None, None),
              *snapshot(1764000003.0, 2)]
    builder = LineBuilder()
    line = builder.heartbeat(LOBBY_AP, events, received_s=1764009999.0)
    assert line == Point(MEASUREMENT_HEARTBEAT, LOBBY_AP.tags(), {"events": 3, "at_s": 1764000003},
                         1764000003 * S).to_line()
    assert builder.heartbeat(LOBBY_AP, events, received_s=1764010500.0) == line


def test_heartbeat_lines_are_not_counted_as_presence_points() -> None:
    """A batch's count of presence points leaves its heartbeat lines out."""
    builder = LineBuilder()
    events = snapshot(1764000000.0, 3)
    lines = [*builder.lines(UNIT_AP, events), builder.heartbeat(UNIT_AP, events, 0.0),
             builder.heartbeat(LOBBY_AP, [], 1764000001.0)]
    assert presence_points(lines) == 3


def test_which_aps_reported_in_a_range_and_how_often(influx: TimeSeriesStore) -> None:
    """Per AP: reports, events, first and last; a silent AP and reports outside are absent."""
    builder = LineBuilder()
    start = int(time.time()) - 3600
    lines = [
        builder.heartbeat(UNIT_AP, snapshot(start + 10, 2), start + 11),
        builder.heartbeat(UNIT_AP, [], start + 310.5),  # nobody home: still a report
        builder.heartbeat(UNIT_AP, snapshot(start + 610, 1), start + 611),
        builder.heartbeat(LOBBY_AP, [], start + 20),
        builder.heartbeat(OTHER_AP, snapshot(start + 30, 4), start + 31),
        builder.heartbeat(LOBBY_AP, [], start - 20),  # before the range
        builder.heartbeat(SILENT_AP, [], start + 1200),  # at the range's end: excluded
    ]
    influx.write_lines(lines)
    influx.write_lines(lines[:1])  # a redelivered report overwrites itself

    reports = ap_reports(influx, start * S, (start + 1200) * S)
    assert reports.to_dict("records") == [
        {"ap": "ap-1", "reports": 3, "events": 3, "first_s": start + 10, "last_s": start + 610},
        {"ap": "ap-2", "reports": 1, "events": 0, "first_s": start + 20, "last_s": start + 20},
        {"ap": "ap-3", "reports": 1, "events": 4, "first_s": start + 30, "last_s": start + 30},
    ]
    one_community = ap_reports(influx, start * S, (start + 1200) * S, community="TEDA-020")
    assert list(one_community["ap"]) == ["ap-3"]
    assert ap_reports(influx, (start + 2000) * S, (start + 3000) * S).empty
