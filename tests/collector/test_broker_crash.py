"""Integration: what the broker acknowledged survives kill -9 of the broker (issue 12).

Mosquitto sends PUBACKs before it saves (docs/collector.md, "Broker crashes"), so a broker
killed at once after the last PUBACK loses what it acknowledged in its last loop pass. With
end-to-end acknowledgement (contracts section 2a) the publishers keep every message until the
collector confirms it stored and re-send the rest: nothing is lost, nothing doubled.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from census.events import encode_events
from census.privacy import pseudonymize_mac
from collector.service import Collector
from simulator.publisher import ConfirmedPublisher
from tests.common import (
    AP_FLOOR,
    AP_LOBBY,
    AP_UNIT,
    PrivateBroker,
    options_for,
    prepare_session,
    running_collector,
    snapshot,
    wait_for,
)
from timeseries import TimeSeriesStore

CONNECTIONS = 20
# 20,000 events, the broker-crash case, in 400 messages: a durable broker saves once
# per packet the collector sends while it drains (each PUBACK), so fewer messages drain faster.
MESSAGES = 400
PER_MESSAGE = 50
APS = (AP_UNIT, AP_FLOOR, AP_LOBBY)


class ShiftedClock:
    """time.monotonic plus a shift the test moves: "the resend timeout has passed" at once."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        """Now, shifted."""
        return time.monotonic() + self.shift


def stored_devices(store: TimeSeriesStore) -> Counter[str]:
    """How many points each device has (each device is in exactly one event of the stream)."""
    frame = store.query("SELECT device FROM presence")
    return Counter() if frame.empty else Counter(frame["device"])


def test_events_acknowledged_just_before_kill_9_of_the_broker_are_stored_once_with_e2e_ack(
    private_broker: PrivateBroker, influx: TimeSeriesStore,
) -> None:
    """20 AP connections, 400 PUBACKed messages (20,000 events) for a stopped collector's
    session, broker SIGKILLed at once after the last PUBACK, restarted, drained by the real
    collector; the publishers re-send what was never confirmed: 20,000 of 20,000, each once."""
    settings = private_broker.settings
    client_id = f"test-col-crash-{uuid.uuid4().hex[:6]}"
    prepare_session(settings, client_id)
    clock = ShiftedClock()
    # A resend timeout longer than the test: only the clock's shift below makes anything due,
    # so what the broker saved is seen stored and confirmed before anything is re-sent.
    publishers = [ConfirmedPublisher(settings, resend_s=3600.0, clock=clock)
                  for _ in range(CONNECTIONS)]
    devices: dict[int, set[str]] = {}
    bodies: list[bytes] = []
    base = time.time() - 600
    for index in range(MESSAGES):
        events = snapshot(PER_MESSAGE, base + index * 0.01, start=index * PER_MESSAGE)
        devices[index] = {pseudonymize_mac(e.mac, settings.pseudonym_key) for e in events}
        bodies.append(encode_events(events))
    message_of: dict[str, int] = {}  # message id -> index

    def send(number: int) -> None:
        """One AP's share, one message at a time, each waiting for its PUBACK (as an AP does)."""
        for index in range(number, MESSAGES, CONNECTIONS):
            message_id, acknowledged = publishers[number].publish(APS[number % len(APS)],
                                                                  bodies[index])
            assert acknowledged
            message_of[message_id] = index

    def unconfirmed() -> set[int]:
        """The messages not confirmed yet."""
        return {message_of[i] for p in publishers for i in p.unconfirmed_ids()}

    def saved_confirmed() -> bool:
        """Every message the collector stored is confirmed; the rest are not stored."""
        stored = set(stored_devices(influx))
        return all(devices[index].isdisjoint(stored) for index in unconfirmed())

    try:
        for publisher in publishers:
            publisher.connect()
        threads = [threading.Thread(target=send, args=(number,)) for number in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(unconfirmed()) == MESSAGES  # every one PUBACKed, none confirmed yet
        private_broker.kill()  # at once: the last pass's PUBACKs went out before its save
        private_broker.start()
        # The publishers' confirmation subscriptions are not persistent: back before the collector.
        wait_for(lambda: all(p.is_connected() for p in publishers), timeout=30,
                 what="the publishers reconnected")
        time.sleep(0.2)  # their re-subscriptions go out with the reconnection
        collector = Collector(settings, options_for(settings, "crash", client_id=client_id))
        with running_collector(collector):
            seen = {"messages": -1, "at": time.monotonic()}

            def drained() -> bool:
                """The saved queue is in: nothing new for a second, all of it written, and every
                stored message confirmed (the first message alone proves nothing yet)."""
                summary = collector.summary
                if summary.messages != seen["messages"]:
                    seen.update(messages=summary.messages, at=time.monotonic())
                    return False
                return (summary.messages > 0 and time.monotonic() - seen["at"] >= 1.0
                        and summary.written == summary.events_received and saved_confirmed())

            wait_for(drained, timeout=60, what="what the broker had saved stored and confirmed")
            lost_by_broker = len(unconfirmed())
            clock.shift = 7200.0  # the resend timeout has passed: re-send the unconfirmed
            for publisher in publishers:
                assert publisher.wait_confirmed(timeout=30), "a message was never confirmed"
        stored = stored_devices(influx)
    finally:
        for publisher in publishers:
            publisher.disconnect()
    resent = sum(p.resent for p in publishers)
    print(f"kill -9 at once after the last PUBACK: the broker lost {lost_by_broker} of "
          f"{MESSAGES} acknowledged messages; {resent} re-sent; {sum(stored.values())} points "
          f"stored for {MESSAGES * PER_MESSAGE} events")
    assert resent == lost_by_broker
    assert set(stored) == set().union(*devices.values())  # none lost
    assert max(stored.values()) == 1  # none doubled
