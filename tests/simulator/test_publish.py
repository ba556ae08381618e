"""Publishing a recorded stream to the real Mosquitto, exactly as recorded, on contract topics."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from census.channels import events_subscription, events_topic
from census.mqtt import MqttClient, ReceivedMessage
from census.settings import Settings
from simulator import SimulationResult, publish
from simulator.publisher import StreamLineError, parse_line
from tests.common import simulate_into


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """A 25-unit, 1-day run: a few thousand messages."""
    return simulate_into(tmp_path_factory.mktemp("tiny_run"), units=25, days=1, seed=3)


class Collector:
    """Subscribes to every AP's events under the test's prefix and keeps what arrives."""

    def __init__(self, settings: Settings) -> None:
        self.messages: list[ReceivedMessage] = []
        self.lock = threading.Lock()
        self.client = MqttClient(settings, f"sim-test-{settings.mqtt_topic_prefix}",
                                 on_message=self.receive)
        self.client.connect()
        self.client.subscribe(events_subscription(settings.mqtt_topic_prefix), qos=1)
        time.sleep(0.2)  # let the SUBACK land before anything is published

    def receive(self, message: ReceivedMessage) -> None:
        """Keep a message."""
        with self.lock:
            self.messages.append(message)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[ReceivedMessage]:
        """Wait until ``count`` messages arrived (or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond count would be a bug: give it a moment to show
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()


def recorded(path: Path) -> list[tuple[str, bytes]]:
    """(AP id, payload) of every line of an events file."""
    result = []
    with path.open("rb") as handle:
        for raw in handle:
            ap_id, payload, _ts = parse_line(raw)
            result.append((ap_id, payload))
    return result


def test_publish_sends_every_message_exactly_as_recorded(settings: Settings,
                                                         tiny_run: SimulationResult) -> None:
    """Every line arrives once, QoS 1, not retained, on its AP's topic, bytes unchanged."""
    collector = Collector(settings)
    try:
        sent = publish(settings, tiny_run.events_path)
        received = collector.wait_for(sent)
    finally:
        collector.close()
    lines = recorded(tiny_run.events_path)
    assert sent == len(lines) == tiny_run.messages
    assert len(received) == sent
    assert all(m.qos == 1 and not m.retain for m in received)
    by_topic: dict[str, list[bytes]] = {}
    for message in received:
        by_topic.setdefault(message.topic, []).append(message.payload)
    expected: dict[str, list[bytes]] = {}
    for ap_id, payload in lines:
        expected.setdefault(events_topic(settings.mqtt_topic_prefix, ap_id), []).append(payload)
    assert by_topic == expected  # per AP, in the recorded order


def test_bad_lines_are_skipped_with_their_line_number(settings: Settings, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Malformed lines are logged by number and skipped; the good ones around them go out."""
    path = tmp_path / "events.jsonl"
    good = b'{"ap":"ap-x-1","payload":[{"v":1,"type":"snapshot","mac":"02:00:00:00:00:01",' \
           b'"ts":1741500000,"rssi":-50,"ssid":"Census-Free"}]}\n'
    spaced = b'{"payload": {"v": 1, "type": "probe", "mac": "02:00:00:00:00:02", ' \
             b'"ts": 1741500001.5, "rssi": -70}, "ap": "ap-x-2"}\n'
    path.write_bytes(good + b"not json\n" + b'{"ap":"bad id!","payload":[]}\n' + spaced
                     + b'{"ap":"ap-x-3"}\n' + good)
    collector = Collector(settings)
    try:
        with caplog.at_level(logging.ERROR, logger="simulator.publisher"):
            sent = publish(settings, path)
        received = collector.wait_for(3)
    finally:
        collector.close()
    assert sent == 3 and len(received) == 3
    assert received[1].topic.endswith("/v1/ap/ap-x-2/events")
    assert received[1].payload == (b'{"v":1,"type":"probe","mac":"02:00:00:00:00:02",'
                                   b'"ts":1741500001.5,"rssi":-70}')
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "line 2 skipped: not JSON" in logged
    assert "line 3 skipped: ap 'bad id!'" in logged
    assert 'line 5 skipped: must be an object with exactly the keys "ap" and "payload"' in logged


@pytest.mark.parametrize(("raw", "problem"), [
    (b"[1, 2]", "exactly the keys"),
    (b'{"ap":"a","payload":"x"}', "payload must be"),
    (b'{"ap":"a","payload":[' + b",".join([b"{}"] * 5001) + b"]}", "over 5000"),
    (b'{"ap":"a","payload":["' + b"x" * (1024 * 1024) + b'"]}', "over 1048576"),
    (b"\xff\xfe", "not JSON"),
])
def test_parse_line_names_the_problem(raw: bytes, problem: str) -> None:
    """Each kind of bad line gets a reason that says what is wrong."""
    with pytest.raises(StreamLineError, match=problem):
        parse_line(raw)


def test_rate_paces_by_simulated_time(settings: Settings, tiny_run: SimulationResult) -> None:
    """At rate R the sender waits (span of the stream) / R in total, on its own clock."""
    fake_now = [1000.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        """Advance the fake clock instead of sleeping."""
        waited.append(seconds)
        fake_now[0] += seconds

    sent = publish(settings, tiny_run.events_path, rate=3600.0, clock=lambda: fake_now[0],
                   sleep=sleep)
    first, last = _span(tiny_run.events_path)
    assert sent == tiny_run.messages
    assert sum(waited) == pytest.approx((last - first) / 3600.0, rel=1e-6)


def test_live_waits_for_each_timestamp(settings: Settings, tiny_run: SimulationResult) -> None:
    """Live mode sends nothing before its time: the clock reaches each message's timestamp."""
    first, last = _span(tiny_run.events_path)
    fake_now = [first - 10.0]

    def sleep(seconds: float) -> None:
        """Advance the fake clock."""
        fake_now[0] += seconds

    publish(settings, tiny_run.events_path, live=True, clock=lambda: fake_now[0], sleep=sleep)
    assert fake_now[0] == pytest.approx(last)


def test_negative_rate_is_refused(settings: Settings, tiny_run: SimulationResult) -> None:
    """A negative speed-up is a caller's mistake, named before connecting."""
    with pytest.raises(ValueError, match="rate -1"):
        publish(settings, tiny_run.events_path, rate=-1)


def _span(path: Path) -> tuple[float, float]:
    """First and last event time of a stream."""
    times = [ts for _n, _a, _p, ts in _read(path) if ts is not None]
    return times[0], times[-1]


def _read(path: Path) -> list[tuple[int, str, bytes, float | None]]:
    """All parsed lines."""
    from simulator.publisher import read_stream

    return list(read_stream(path))
