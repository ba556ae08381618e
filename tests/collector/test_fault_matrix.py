"""The start of the fault matrix: kill -9 of each part during a steady ingest (issue 12).

Each case runs a steady stream of 1,000 QoS 1 messages (10,000 events, every station once)
through a private broker with the project's configuration and a real collector process, kills
one part with SIGKILL part-way (the collector, the broker, InfluxDB, Redis), brings it back,
and counts per event: acknowledged to the publisher (PUBACK), stored in InfluxDB, stored twice,
lost. Each case is bounded in time. The SQL database (during sign-ins and an analytics run)
and the broker during sign-ins are in tests/test_fault_matrix_sql.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from census.channels import events_topic
from census.events import encode_events
from census.mqtt import MqttClient, MqttError
from census.privacy import pseudonymize_mac
from census.settings import Settings
from simulator.publisher import ConfirmedPublisher
from tests.common import (
    AP_UNIT,
    UNIT_REF,
    PrivateBroker,
    count_points,
    free_port,
    kill_service,
    prepare_session,
    settings_environment,
    snapshot,
    wait_for,
)
from timeseries import TimeSeriesStore, open_store
from wifi_census import local_servers as local_services

BIN = Path(sys.executable).parent
MESSAGES = 1000
PER_MESSAGE = 10
KILL_AFTER = 300  # messages acknowledged before the fault
CASE_TIMEOUT_S = 120.0


@dataclass
class SteadyPublisher:
    """An AP-like publisher: one message at a time, re-sent until the broker acknowledges it.

    With ``confirmed`` it keeps every message until the collector confirms it stored
    (end-to-end acknowledgement, contracts section 2a), as census-publisher does; ``resend``
    sends the unconfirmed again once the collector has drained what the broker kept.
    """

    settings: Settings
    confirmed: bool = False
    acked_at: dict[int, float] = field(default_factory=dict)  # message index -> PUBACK time
    devices: dict[int, list[str]] = field(default_factory=dict)  # message index -> pseudonyms
    message_of: dict[str, int] = field(default_factory=dict)  # message id -> index
    sender: ConfirmedPublisher | None = None

    def run(self, pace_s: float = 0.01) -> None:
        """Publish every message; an unacknowledged one is sent again after a pause."""
        client_id = f"test-ap-{uuid.uuid4().hex[:6]}"
        client = MqttClient(self.settings, client_id)
        if self.confirmed:
            # Re-sent only by ``resend``: a timer would also re-send what waits in the broker
            # for the collector to come back (harmless, but it grows the queue being saved).
            self.sender = ConfirmedPublisher(self.settings, client_id, resend_s=3600.0)
            self.sender.connect()
        else:
            client.connect()
        topic = events_topic(self.settings.mqtt_topic_prefix, AP_UNIT)
        base = time.time() - 600
        try:
            for index in range(MESSAGES):
                events = snapshot(PER_MESSAGE, base + index * 0.01, start=index * PER_MESSAGE)
                self.devices[index] = [pseudonymize_mac(e.mac, self.settings.pseudonym_key)
                                       for e in events]
                body = encode_events(events)
                while True:
                    if self.sender is not None:
                        # Kept until confirmed, PUBACKed in time or not (paho sends it again on
                        # reconnection): the publisher goes on.
                        message_id, _ = self.sender.publish(AP_UNIT, body, timeout=2.0)
                        self.message_of[message_id] = index
                        break
                    try:
                        client.publish(topic, body, wait=True, timeout=2.0)
                        break
                    except MqttError:
                        time.sleep(0.2)  # the broker is away: keep the message, try again
                self.acked_at[index] = time.time()
                time.sleep(pace_s)
        finally:
            if self.sender is None:
                client.disconnect()

    def unconfirmed(self) -> set[int]:
        """The messages the collector has not confirmed."""
        sender = self.sender
        return set() if sender is None else {self.message_of[i] for i in sender.unconfirmed_ids()}

    def resend(self, store: TimeSeriesStore, timeout: float) -> None:
        """Once the collector has drained what the broker kept, send every unconfirmed message
        again (those the broker lost, and any whose confirmation was lost in the kill) and wait
        for their confirmations; then disconnect."""
        sender = self.sender
        if sender is None:
            return
        try:
            last = [-1, time.monotonic()]

            def drained() -> bool:
                """Nothing more stored for 3 s: the collector has what the broker kept."""
                count = count_points(store)
                if count != last[0]:
                    last[0], last[1] = count, time.monotonic()
                return count > 0 and time.monotonic() - last[1] >= 3.0

            wait_for(drained, timeout=timeout, what="the collector drained the broker")
            sender.resend_due(everything=True)
            assert sender.wait_confirmed(timeout=timeout), "a re-sent message was not confirmed"
        finally:
            sender.disconnect()


def collector_process(settings: Settings, client_id: str) -> subprocess.Popen[str]:
    """A real collector process on the private broker, started and subscribed."""
    log = settings.var_dir / f"collector-{uuid.uuid4().hex[:6]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        process = subprocess.Popen(
            [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
             "--metrics-port", "0"],
            env=settings_environment(settings), stdout=subprocess.DEVNULL, stderr=handle,
            text=True)
    # Starting takes seconds here: publishing before it subscribed would make no steady ingest.
    wait_for(lambda: " subscribed to " in log.read_text() or process.poll() is not None,
             timeout=60, what="the collector subscribed")
    assert process.poll() is None, log.read_text()[-2000:]
    return process


def settled(store: TimeSeriesStore, total: int) -> Callable[[], bool]:
    """A predicate: every event stored, or the count has not moved for 8 s (some are lost)."""
    last = [-1, time.monotonic()]

    def check() -> bool:
        """True once the stored count reached total or stopped growing."""
        stored = count_points(store)
        if stored >= total:
            return True
        if stored != last[0]:
            last[0], last[1] = stored, time.monotonic()
        return time.monotonic() - last[1] > 8.0

    return check


def stored_devices(store: TimeSeriesStore) -> Counter[str]:
    """How many points each device has (each device is in exactly one event of the stream)."""
    frame = store.query("SELECT device FROM presence")
    return Counter() if frame.empty else Counter(frame["device"])


Fault = Callable[[list[subprocess.Popen[str]], str, "SteadyPublisher"], tuple[str, float]]


def run_case(settings: Settings, store: TimeSeriesStore, fault: Fault,
             window_s: float = 0.0, confirmed: bool = False) -> str:
    """Steady ingest, the fault part-way, recovery; assert the row and return it as text.

    ``fault(processes, client_id, publisher)`` kills one part, brings it back (a new collector
    process goes on the end of ``processes``) and returns the row's name and the time of the
    kill that matters.
    """
    client_id = f"test-col-matrix-{uuid.uuid4().hex[:6]}"
    prepare_session(settings, client_id)
    store.ensure_database(settings.retention_days)
    started = time.monotonic()
    processes = [collector_process(settings, client_id)]
    publisher = SteadyPublisher(settings, confirmed=confirmed)
    thread = threading.Thread(target=publisher.run, daemon=True)
    try:
        thread.start()
        wait_for(lambda: len(publisher.acked_at) >= KILL_AFTER and count_points(store) > 0,
                 timeout=60, what=f"{KILL_AFTER} messages acknowledged and some stored")
        assert len(publisher.acked_at) < MESSAGES * 0.6, "the stream ended before the fault"
        fault_name, killed_at = fault(processes, client_id, publisher)
        thread.join(CASE_TIMEOUT_S)
        assert not thread.is_alive(), "the publisher did not finish"
        publisher.resend(store, timeout=max(1.0, CASE_TIMEOUT_S - (time.monotonic() - started)))
        total = MESSAGES * PER_MESSAGE
        remaining = max(1.0, CASE_TIMEOUT_S - (time.monotonic() - started))
        try:
            wait_for(settled(store, total), timeout=remaining,
                     what="every acknowledged event stored, or no progress for 8 s")
        except AssertionError:
            pass  # counted below: the row says what is missing
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            process.communicate()
    stored = stored_devices(store)
    acknowledged = list(publisher.acked_at)
    lost = [index for index in acknowledged
            if any(device not in stored for device in publisher.devices[index])]
    duplicated = sum(count - 1 for count in stored.values() if count > 1)
    if publisher.sender is not None:
        fault_name += f", end-to-end ack ({publisher.sender.resent} re-sent)"
    row = (f"{fault_name}: acknowledged {len(acknowledged) * PER_MESSAGE}, stored "
           f"{sum(stored.values())}, duplicated {duplicated}, lost {len(lost) * PER_MESSAGE}, "
           f"{time.monotonic() - started:.1f} s")
    print(row)
    assert len(acknowledged) == MESSAGES, row
    assert duplicated == 0, row
    late = [index for index in lost if publisher.acked_at[index] < killed_at - window_s]
    assert late == [], f"{row}; acknowledged more than {window_s} s before the kill: {late[:5]}"
    if window_s == 0.0:
        assert lost == [] and sum(stored.values()) == MESSAGES * PER_MESSAGE, row
    assert time.monotonic() - started < CASE_TIMEOUT_S + 40, row
    return row


def test_kill_9_of_the_collector_during_ingest_loses_and_doubles_nothing(
    private_broker: PrivateBroker, influx: TimeSeriesStore,
) -> None:
    """The collector SIGKILLed mid-stream and started again on its session: all stored, once."""
    settings = private_broker.settings

    def fault(processes: list[subprocess.Popen[str]], client_id: str,
              publisher: SteadyPublisher) -> tuple[str, float]:
        """Kill the collector, start a new one on the same session."""
        killed_at = time.time()
        processes[-1].send_signal(signal.SIGKILL)
        processes[-1].wait(10)
        processes.append(collector_process(settings, client_id))
        return "kill -9 collector", killed_at

    run_case(settings, influx, fault)


def test_kill_9_of_the_broker_during_ingest_loses_and_doubles_nothing_with_e2e_ack(
    private_broker: PrivateBroker, influx: TimeSeriesStore,
) -> None:
    """Collector down, 2,000 events queued, broker SIGKILLed and restarted: all stored, once."""

    def fault(processes: list[subprocess.Popen[str]], client_id: str,
              publisher: SteadyPublisher) -> tuple[str, float]:
        """With the collector down and 2,000 events queued for it, kill the broker."""
        processes[-1].send_signal(signal.SIGKILL)  # the session stays: the broker queues
        processes[-1].wait(10)
        target = len(publisher.acked_at) + 200
        wait_for(lambda: len(publisher.acked_at) >= target, timeout=60,
                 what="200 more messages queued in the broker")
        killed_at = time.time()
        private_broker.kill()
        private_broker.start()
        processes.append(collector_process(private_broker.settings, client_id))
        return "kill -9 broker (collector down, 2,000 events queued)", killed_at

    # Mosquitto sends PUBACKs before the save of the same loop pass (docs/collector.md, "Broker
    # crashes"): what it acknowledged in that last moment may be lost by the broker. The
    # publisher keeps each message until the collector confirms it stored and re-sends the
    # rest, so the row allows no loss at all.
    run_case(private_broker.settings, influx, fault, confirmed=True)


def restarting(service: local_services.LocalService, label: str) -> Fault:
    """A fault that kills a server with -9, keeps it down a moment (ingest goes on), and starts
    it again."""

    def fault(processes: list[subprocess.Popen[str]], client_id: str,
              publisher: SteadyPublisher) -> tuple[str, float]:
        """Kill, wait, restart; say what and when."""
        killed_at = time.time()
        kill_service(service)
        time.sleep(2.0)
        local_services.start(service)
        return label, killed_at

    return fault


def test_kill_9_of_influxdb_during_ingest_loses_and_doubles_nothing(
    private_broker: PrivateBroker, private_influx: local_services.LocalService,
) -> None:
    """InfluxDB SIGKILLed mid-stream: the collector spools, then drains when it is back."""
    settings = Settings.load(environ={}, **{
        **private_broker.settings.__dict__,
        "influx_url": f"http://127.0.0.1:{private_influx.port}"})
    store = open_store(settings)

    try:
        run_case(settings, store, restarting(private_influx, "kill -9 InfluxDB"))
    finally:
        store.close()


def test_kill_9_of_redis_during_ingest_stores_every_event(
    private_broker: PrivateBroker, influx: TimeSeriesStore, tmp_path: Path,
) -> None:
    """Redis SIGKILLed mid-stream: events are stored regardless; presence refills after."""
    own = Settings.load(environ={}, environment="test", var_dir=tmp_path / "redis",
                        redis_url=f"redis://127.0.0.1:{free_port()}/0")
    service = next(s for s in local_services.build_services(own) if s.name == "redis")
    local_services.start(service)
    settings = Settings.load(environ={}, **{**private_broker.settings.__dict__,
                                            "redis_url": own.redis_url})

    try:
        # Redis keeps nothing on disk (live state only): it comes back empty.
        run_case(settings, influx, restarting(service, "kill -9 Redis"))
        # Live presence is rebuilt by the events after the restart (contract section 7).
        client = redis.Redis.from_url(own.redis_url)
        try:
            assert client.zcard(f"{settings.redis_key_prefix}here:unit:{UNIT_REF}") > 0
        finally:
            client.close()
    finally:
        local_services.stop(service)
