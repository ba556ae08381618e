"""Unit tests of presence coalescing: folding updates keeps what Redis would keep."""

from __future__ import annotations

from collector.parser import ParsedEvent
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


def test_adding_a_messages_events_at_once_equals_adding_them_one_by_one() -> None:
    """add_events (the hot path) keeps what per-event add keeps, at every key, skipping old ones."""
    events = [
        ParsedEvent("snapshot", "dev-a", False, 100.0, -40, None),
        ParsedEvent("snapshot", "dev-b", True, 100.0, -41, None),
        ParsedEvent("connect", "dev-a", False, 105.0, None, None),
        ParsedEvent("disconnect", "dev-b", True, 103.0, None, None),
        ParsedEvent("disconnect", "dev-b", True, 101.0, None, None),
        ParsedEvent("probe", "dev-old", True, 10.0, -80, "x"),
    ]
    keys = ("ap:1", "unit:7")
    one_by_one = PresenceUpdate()
    one_by_one.add("ap:1", "dev-z", 200.0, disconnect=False)  # already there from a message before
    at_once = PresenceUpdate()
    at_once.add("ap:1", "dev-z", 200.0, disconnect=False)
    for event in events:
        if event.ts >= 50.0:
            for key in keys:
                one_by_one.add(key, event.device, event.ts, event.type == "disconnect")
    at_once.add_events(keys, events, not_before=50.0)
    assert at_once == one_by_one
    assert at_once.seen["unit:7"] == {"dev-a": 105.0, "dev-b": 100.0}
    assert at_once.gone == {"ap:1": {"dev-b": 103.0}, "unit:7": {"dev-b": 103.0}}
    at_once.seen["ap:1"]["dev-a"] = 0.0
    assert at_once.seen["unit:7"]["dev-a"] == 105.0  # each key holds its own members
