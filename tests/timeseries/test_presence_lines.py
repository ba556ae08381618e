"""Unit tests of line building: contract section 6 tags, fields and idempotent timestamps."""

from __future__ import annotations

from collector.parser import ParsedEvent
from timeseries import Point
from timeseries.presence import LineBuilder, series_prefix
from timeseries.schema import ApLocation, base_time_ns, device_offset

UNIT_AP = ApLocation("ap-1", "TEDA-017", "B03", "15", "TEDA-017/B03/1502")
LOBBY_AP = ApLocation("ap 2,x=y", "C1", "B1")
DEVICE_A = "5f0c9a1be2d34470"
DEVICE_B = "0000000000000001"


def test_lines_match_the_shared_point_encoder() -> None:
    """The fast formatter writes exactly what timeseries.Point would."""
    events = [
        ParsedEvent("probe", DEVICE_A, True, 1764000000.123, -80, 'say "hi"\\ there'),
        ParsedEvent("disconnect", DEVICE_B, False, 1764000000.5, None, None),
    ]
    lines = LineBuilder().lines(UNIT_AP, events)
    expected = [
        Point("presence",
              {"ap": "ap-1", "event": "probe", "community": "TEDA-017", "building": "B03",
               "floor": "15", "unit": "TEDA-017/B03/1502"},
              {"device": DEVICE_A, "randomized": True, "rssi": -80,
               "ssid": 'say "hi"\\ there'},
              1764000000123 * 1_000_000 + device_offset(DEVICE_A)).to_line(),
        Point("presence",
              {"ap": "ap-1", "event": "disconnect", "community": "TEDA-017", "building": "B03",
               "floor": "15", "unit": "TEDA-017/B03/1502"},
              {"device": DEVICE_B, "randomized": False},
              1764000000500 * 1_000_000 + device_offset(DEVICE_B)).to_line(),
    ]
    assert lines == expected


def test_absent_location_tags_are_left_out_and_special_characters_escaped() -> None:
    """No empty tags (line protocol has none); spaces, commas and = escaped in tag values."""
    prefix = series_prefix(LOBBY_AP, "snapshot")
    assert prefix == r"presence,ap=ap\ 2\,x\=y,building=B1,community=C1,event=snapshot"


def test_ssid_is_stored_for_probes_only() -> None:
    """A snapshot's SSID is not a field (contract section 6)."""
    line = LineBuilder().lines(UNIT_AP, [ParsedEvent("snapshot", DEVICE_A, False, 1.0, -5, "x")])
    assert "ssid" not in line[0]


def test_timestamps_truncate_to_the_millisecond_robustly() -> None:
    """Decimal milliseconds survive float representation; sub-millisecond digits are dropped."""
    assert base_time_ns(1764000000.123) == 1764000000123 * 1_000_000
    assert base_time_ns(1764000000.1239) == 1764000000123 * 1_000_000
    assert base_time_ns(1764000000) == 1764000000000 * 1_000_000
    assert 0 <= device_offset("ffffffffffffffff") < 1_000_000


def test_same_event_twice_gets_the_same_timestamp() -> None:
    """A redelivered message produces identical lines (so InfluxDB overwrites)."""
    events = [ParsedEvent("snapshot", f"{i:016x}", False, 1764000000.0, -50, None)
              for i in range(200)]
    assert LineBuilder().lines(UNIT_AP, events) == LineBuilder().lines(UNIT_AP, events)


def test_colliding_devices_in_one_message_are_probed_apart() -> None:
    """Two devices whose offsets collide at the same millisecond get distinct timestamps."""
    # Pseudonyms whose first 8 hex digits are equal modulo 1e6 collide by construction.
    first = "000f4240" + "0" * 8  # 1,000,000 -> offset 0
    second = "00000000" + "1" * 8  # 0 -> offset 0
    events = [ParsedEvent("snapshot", first, False, 5.0, -50, None),
              ParsedEvent("snapshot", second, False, 5.0, -50, None),
              ParsedEvent("snapshot", first, False, 5.0, -50, None)]  # the same event again
    lines = LineBuilder().lines(UNIT_AP, events)
    times = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert times[0] == 5000 * 1_000_000 and times[1] == times[0] + 1
    assert times[2] == times[0]  # a repeat of the same device's event keeps its slot


def test_same_time_different_event_types_do_not_probe() -> None:
    """Different event types are different series: no probing needed between them."""
    events = [ParsedEvent("connect", DEVICE_A, False, 5.0, None, None),
              ParsedEvent("snapshot", DEVICE_A, False, 5.0, -40, None)]
    times = {int(line.rsplit(" ", 1)[1]) for line in LineBuilder().lines(UNIT_AP, events)}
    assert len(times) == 1
