"""The InfluxDB adapter against the real InfluxDB (1.6 here): writes, bound queries, errors."""

from __future__ import annotations

import time

import pytest

from timeseries import PermanentStoreError, Point, TransientStoreError
from timeseries.influx_v1 import InfluxV1Store


def now_ns() -> int:
    """The current time in nanoseconds, whole seconds."""
    return int(time.time()) * 1_000_000_000


def test_points_round_trip_with_tags_fields_and_types(influx: InfluxV1Store) -> None:
    """What is written comes back with the same tags, field values and types."""
    base = now_ns()
    influx.write(
        [
            Point(
                "presence",
                {"ap": "ap-1", "event": "snapshot", "unit": "C/B/101"},
                {"device": "5f0c9a1be2d34470", "rssi": -48, "randomized": False},
                base,
            ),
            Point(
                "presence",
                {"ap": "ap-1", "event": "probe", "unit": ""},
                {
                    "device": "0123456789abcdef",
                    "rssi": -80,
                    "randomized": True,
                    "ssid": 'cafe "free", wifi',
                },
                base + 1,
            ),
        ]
    )
    frame = influx.query(
        "SELECT device, rssi, randomized, ssid, unit FROM presence WHERE ap = $ap ORDER BY time",
        {"ap": "ap-1"},
    )
    assert list(frame["device"]) == ["5f0c9a1be2d34470", "0123456789abcdef"]
    assert list(frame["rssi"]) == [-48, -80]
    assert list(frame["randomized"]) == [False, True]
    assert frame["ssid"].iloc[1] == 'cafe "free", wifi'
    assert frame["unit"].iloc[0] == "C/B/101" and frame["unit"].isna().iloc[1]
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["time"].iloc[0].value == base


def test_rewriting_the_same_series_and_timestamp_overwrites(influx: InfluxV1Store) -> None:
    """Idempotence the collector relies on: same series + time is one point."""
    point = Point(
        "presence", {"ap": "ap-2", "event": "connect"}, {"device": "aa", "rssi": -60}, now_ns()
    )
    influx.write([point])
    influx.write([point])
    assert len(influx.query("SELECT device FROM presence WHERE ap = $ap", {"ap": "ap-2"})) == 1


def test_bound_parameters_are_data_not_code(influx: InfluxV1Store) -> None:
    """An injection attempt in a parameter matches nothing and breaks nothing."""
    influx.write(
        [Point("presence", {"ap": "ap-3", "event": "connect"}, {"device": "bb"}, now_ns())]
    )
    hostile = "x' OR ap = 'ap-3"
    assert influx.query("SELECT device FROM presence WHERE ap = $ap", {"ap": hostile}).empty
    assert len(influx.query("SELECT device FROM presence WHERE ap = $ap", {"ap": "ap-3"})) == 1


def test_chunked_reads_yield_every_row_in_bounded_pieces(influx: InfluxV1Store) -> None:
    """query_chunks streams a large result in chunks of the requested size."""
    base = now_ns()
    influx.write(
        [
            Point(
                "presence", {"ap": "ap-4", "event": "snapshot"}, {"device": f"{i:016x}"}, base + i
            )
            for i in range(2500)
        ]
    )
    sizes = [
        len(chunk)
        for chunk in influx.query_chunks(
            "SELECT device FROM presence WHERE ap = $ap", {"ap": "ap-4"}, chunk_size=1000
        )
    ]
    assert sum(sizes) == 2500 and max(sizes) <= 1000


def test_rejected_data_is_a_permanent_error(influx: InfluxV1Store) -> None:
    """A field type conflict is refused by the server: retrying would not help."""
    influx.write([Point("presence", {"ap": "ap-5", "event": "x"}, {"rssi": -50}, now_ns())])
    with pytest.raises(PermanentStoreError, match="HTTP 400"):
        influx.write(
            [Point("presence", {"ap": "ap-5", "event": "x"}, {"rssi": "loud"}, now_ns() + 1)]
        )


def test_a_bad_query_is_a_permanent_error(influx: InfluxV1Store) -> None:
    """InfluxQL errors are reported with the server's words."""
    with pytest.raises(PermanentStoreError, match="error"):
        influx.query("SELEKT nonsense")


def test_an_unreachable_server_is_a_transient_error() -> None:
    """Nothing listening: the caller may retry or spool."""
    store = InfluxV1Store("http://127.0.0.1:9", "census", timeout_s=2)
    assert store.ping() is False
    with pytest.raises(TransientStoreError):
        store.write([Point("presence", {"ap": "a"}, {"device": "d"}, now_ns())])


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (
            Point("presence", {"ap": "a b", "unit": "C,1=2"}, {"device": "x"}, 5),
            'presence,ap=a\\ b,unit=C\\,1\\=2 device="x" 5',
        ),
        (
            Point("presence", {"ap": "a", "unit": ""}, {"rssi": -5, "ok": True, "f": 0.5}, 7),
            "presence,ap=a rssi=-5i,ok=true,f=0.5 7",
        ),
        (Point("m", {}, {"s": 'say "hi"\\'}, 1), 'm s="say \\"hi\\"\\\\" 1'),
    ],
)
def test_line_protocol_escaping(point: Point, line: str) -> None:
    """Spaces, commas, equals, quotes and backslashes are escaped as InfluxDB expects."""
    assert point.to_line() == line
