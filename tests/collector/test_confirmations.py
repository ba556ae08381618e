"""End-to-end acknowledgement (contracts 2a): the collector confirms only what is durable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from census.events import encode_events
from census.settings import Settings
from collector.service import Collector
from simulator.publisher import ConfirmedPublisher
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


class GatedStore:
    """The real store, whose writes wait until the test opens the gate (a slow InfluxDB)."""

    def __init__(self, inner: TimeSeriesStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def write_lines(self, lines: list[str]) -> None:
        """Hold the write until the gate opens, then write for real."""
        self.waiting.set()
        self.gate.wait(30)
        self.inner.write_lines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_message_is_confirmed_only_after_its_points_are_written(
    registry_settings: Settings, influx: TimeSeriesStore,
    publisher: Callable[[str, Any], None],
) -> None:
    """While InfluxDB has not answered nothing is confirmed; then both envelopes are, the one
    with a dead-lettered event too, and a bare message is stored as before, never confirmed."""
    store = GatedStore(influx)
    collector = Collector(registry_settings, options_for(registry_settings, "confirm"),
                          store=store)  # type: ignore[arg-type]
    sender = ConfirmedPublisher(registry_settings, resend_s=3600.0)
    now = time.time() - 60
    good = encode_events(snapshot(5, now))
    mixed = json.dumps([*json.loads(encode_events(snapshot(3, now, start=10))),
                        {"v": 1, "type": "snapshot", "mac": "a4:83:e7:12:9f:01", "ts": now,
                         "rssi": "loud"}]).encode()
    with running_collector(collector):
        sender.connect()
        try:
            sender.publish(AP_UNIT, good)
            sender.publish(AP_FLOOR, mixed)
            publisher(AP_UNIT, snapshot(2, now, start=20))  # bare: stored, never confirmed
            wait_for(store.waiting.is_set, what="the write to start")
            time.sleep(1.0)  # a confirmation sent before the write returned would be here now
            assert sender.unconfirmed == 2
            store.gate.set()
            wait_for(lambda: sender.unconfirmed == 0, what="both envelopes confirmed")
        finally:
            store.gate.set()
            sender.disconnect()
    assert count_points(influx) == 5 + 3 + 2
    assert collector.summary.dead_lettered["bad_field"] == 1
    assert collector.metrics.confirmations._value.get() >= 2  # noqa: SLF001
