"""Unit tests of presence coalescing: folding updates keeps what Redis would keep."""

from __future__ import annotations

from collector.redis_state import PresenceBuffer, PresenceUpdate


def test_merging_keeps_the_latest_time_per_device_and_place() -> None:
    """Later and earlier sightings fold into the newest; other places are carried over."""
    first = PresenceUpdate()
    first.add("ap:1", "dev-a", 10.0, disconnect=False)
    first.add("ap:1", "dev-b", 30.0, disconnect=False)
    second = PresenceUpdate()
    second.add("ap:1", "dev-a", 20.0, disconnect=False)
    second.add("ap:1", "dev-b", 25.0, disconnect=False)
    second.add("ap:2", "dev-c", 5.0, disconnect=False)
    second.add("ap:1", "dev-a", 21.0, disconnect=True)
    first.merge(second)
    assert first.seen == {"ap:1": {"dev-a": 20.0, "dev-b": 30.0}, "ap:2": {"dev-c": 5.0}}
    assert first.gone == {"ap:1": {"dev-a": 21.0}}


def test_buffer_hands_over_everything_once() -> None:
    """take() returns all that was put since the last take, then nothing."""
    buffer = PresenceBuffer()
    assert buffer.take(timeout=0.01) is None
    for ts in (1.0, 2.0, 3.0):
        update = PresenceUpdate()
        update.add("ap:1", "dev", ts, disconnect=False)
        buffer.put(update)
    buffer.put(PresenceUpdate())  # empty updates are ignored
    taken = buffer.take(timeout=0.01)
    assert taken is not None and taken.seen == {"ap:1": {"dev": 3.0}}
    assert buffer.take(timeout=0.01) is None
