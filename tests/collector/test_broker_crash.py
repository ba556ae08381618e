"""Integration: what the broker acknowledged survives kill -9 of the broker (issue 12)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from collector.service import Collector
from tests.common import (
    PrivateBroker,
    count_points,
    options_for,
    prepare_session,
    publish_acknowledged,
    running_collector,
    wait_for,
)
from timeseries import TimeSeriesStore


def saves_stopped(database: Path, quiet_s: float = 0.5) -> Callable[[], bool]:
    """A predicate: the broker's database file has not changed for quiet_s seconds."""
    seen: int | None = None
    since = time.monotonic()

    def check() -> bool:
        """True once the file's modification time stayed the same for quiet_s."""
        nonlocal seen, since
        mtime = database.stat().st_mtime_ns if database.exists() else None
        if mtime != seen:
            seen, since = mtime, time.monotonic()
        return time.monotonic() - since >= quiet_s

    return check


def test_events_the_broker_acknowledged_survive_kill_9_of_the_broker(
    private_broker: PrivateBroker, influx: TimeSeriesStore,
) -> None:
    """20,000 events in 2,000 PUBACKed messages, broker SIGKILLed, restarted: all stored, once."""
    settings = private_broker.settings
    client_id = f"test-col-crash-{uuid.uuid4().hex[:6]}"
    prepare_session(settings, client_id)
    publish_acknowledged(settings, messages=2000, per_message=10)
    # The broker saves after each loop pass that queued a message, a moment after that pass's
    # PUBACKs (docs/collector.md, "Broker crashes"): once it has not saved for half a second, it
    # has saved everything it acknowledged. The old 60 s timer had saved nothing by then.
    wait_for(saves_stopped(private_broker.database), timeout=10.0,
             what="the broker's saves to stop")
    private_broker.kill()
    private_broker.start()
    collector = Collector(settings, options_for(settings, "crash", client_id=client_id))
    started = time.monotonic()
    with running_collector(collector):
        wait_for(lambda: count_points(influx) >= 20_000 and collector.is_idle(), timeout=120,
                 what="20,000 points stored after the broker's restart")
    # 20,000 distinct points: none lost (a redelivered event overwrites its own point, so the
    # count cannot show doubles; the point per event is what the contract promises).
    assert count_points(influx) == 20_000
    assert collector.summary.written >= 20_000
    assert time.monotonic() - started < 120
