"""Fixtures for the collector tests: a registry with APs, a publisher, a collector in a thread."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from census import services as local_services
from census.events import PresenceEvent, encode_events, events_subscription, events_topic
from census.mqtt import MqttClient
from census.settings import PREFIX, Settings, environment_of
from collector.service import Collector, CollectorOptions, CollectorSummary
from registry.db import bump_registry_version, make_engine, make_session_factory, session_scope
from registry.db import upgrade as upgrade_registry
from registry.models import AccessPoint, Building, Community, Coverage, Unit
from timeseries import TimeSeriesStore

AP_UNIT = "ap-c1-b1-101"  # covers unit C1/B1/101 (floor 1)
AP_FLOOR = "ap-c1-b1-f3"  # corridor AP on floor 3
AP_LOBBY = "ap-c1-b2-lobby"  # building B2's lobby: no floor, no unit
UNIT_REF = "C1/B1/101"


def add_aps(settings: Settings) -> None:
    """A small registry: community C1, buildings B1 and B2, one unit, three APs."""
    engine = make_engine(settings.database_url)
    upgrade_registry(engine)
    with session_scope(make_session_factory(engine)) as session:
        community = Community(code="C1", name="Community one")
        b1 = Building(community=community, code="B1")
        b2 = Building(community=community, code="B2")
        unit = Unit(building=b1, code="101", ref=UNIT_REF, floor=1, area_m2=60.0,
                    registered_occupants=2)
        session.add_all([community, b1, b2, unit])
        session.flush()
        session.add_all([
            AccessPoint(ap_id=AP_UNIT, building=b1, coverage=Coverage.UNIT, unit=unit),
            AccessPoint(ap_id=AP_FLOOR, building=b1, coverage=Coverage.FLOOR, floor=3),
            AccessPoint(ap_id=AP_LOBBY, building=b2, coverage=Coverage.BUILDING),
        ])
        bump_registry_version(session)
    engine.dispose()


def station(index: int, randomized: bool = False) -> str:
    """A deterministic station MAC; randomized ones have the locally-administered bit."""
    first = 0x02 if randomized else 0x00
    octets = (first, 0x16, 0x3E, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
    return ":".join(f"{octet:02x}" for octet in octets)


def snapshot(count: int, ts: float, start: int = 0, rssi: int = -60) -> list[PresenceEvent]:
    """A station snapshot of count stations, all at ts."""
    return [PresenceEvent("snapshot", station(start + i), ts, rssi, "Census-Free")
            for i in range(count)]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll until predicate() is true; fail the test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def count_points(store: TimeSeriesStore, where: str = "") -> int:
    """How many presence points the database holds."""
    frame = store.query(f"SELECT count(device) AS n FROM presence {where}")
    return 0 if frame.empty else int(frame["n"].sum())


@pytest.fixture
def registry_settings(settings: Settings) -> Settings:
    """This test's settings with the small registry in place."""
    add_aps(settings)
    return settings


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Callable[[str, Any], None]]:
    """publish(ap_id, events or raw bytes) on this test's topic prefix, QoS 1, acknowledged."""
    client = MqttClient(settings, f"test-pub-{uuid.uuid4().hex[:8]}")
    client.connect()

    def publish(ap_id: str, payload: Any, topic: str | None = None) -> None:
        """Publish events (a list of PresenceEvent) or raw bytes."""
        body = payload if isinstance(payload, bytes) else encode_events(payload)
        client.publish(topic or events_topic(settings.mqtt_topic_prefix, ap_id), body, wait=True)

    yield publish
    client.disconnect()


def discard_session(settings: Settings, client_id: str) -> None:
    """End a test collector's persistent session on the shared broker (clean start, expiry 0)."""
    client = MqttClient(settings, client_id)
    client.connect()
    client.disconnect()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The WIFI_CENSUS_* variables that reproduce these settings in a child process."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(PREFIX)}
    environment.update(environment_of(settings))
    return environment


def options_for(settings: Settings, tmp_name: str, **overrides: Any) -> CollectorOptions:
    """Collector options for a test: own client id and spool, short flush interval."""
    base = CollectorOptions.from_settings(
        settings, client_id=f"test-col-{tmp_name}-{uuid.uuid4().hex[:6]}",
        spool_dir=settings.var_dir / "spool" / tmp_name, metrics_port=0,
    )
    return replace(base, flush_interval_s=0.05, store_retry_s=0.5, **overrides)


@contextmanager
def running_collector(collector: Collector) -> Iterator[Collector]:
    """Run a collector in a thread; stop it gracefully (flushing) when the block ends."""
    result: dict[str, CollectorSummary | BaseException] = {}

    def target() -> None:
        """Run and keep the outcome."""
        try:
            result["summary"] = collector.run()
        except BaseException as error:  # reported by the main thread below
            result["error"] = error

    started = threading.Event()
    original_start = collector.start

    def start_and_signal() -> None:
        """Start, then let the test go on (the subscription is in place)."""
        try:
            original_start()
        except BaseException as error:
            result["error"] = error
            raise
        finally:
            started.set()

    collector.start = start_and_signal  # type: ignore[method-assign]
    thread = threading.Thread(target=target, name="test-collector", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in result:
        thread.join(10)
        raise result["error"]  # type: ignore[misc]
    try:
        yield collector
    finally:
        collector.request_stop()
        thread.join(60)
        assert not thread.is_alive(), "collector did not stop within 60 s"
        discard_session(collector.settings, collector.options.client_id)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]


def _free_port_pair() -> int:
    """A loopback port p with p and p+2 free (InfluxDB also binds p+2 for its RPC)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < 65000 and local_services.port_is_free("127.0.0.1", port + 2):
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture
def private_influx(tmp_path: Any) -> Iterator[local_services.LocalService]:
    """A private InfluxDB (its own folder and port) that a test may stop and start."""
    private = Settings.load(environ={}, environment="test", var_dir=tmp_path / "private",
                            influx_url=f"http://127.0.0.1:{_free_port_pair()}")
    service = next(s for s in local_services.build_services(private) if s.name == "influxdb")
    local_services.start(service)
    yield service
    local_services.stop(service)


def kill_service(service: local_services.LocalService) -> None:
    """SIGKILL a local server this test started; wait until its port is free again."""
    pid = service.read_pid()
    assert pid is not None, f"the private {service.name} is not running"
    os.kill(pid, signal.SIGKILL)
    # The process leaves /proc a moment before the kernel closes its listening socket.
    deadline = time.monotonic() + 20
    while not local_services.port_is_free(service.host, service.port):
        assert time.monotonic() < deadline, f"killed {service.name} still holds its port"
        time.sleep(0.05)


class PrivateBroker:
    """A Mosquitto of the test's own (the project's configuration, a free port) it may kill."""

    def __init__(self, settings: Settings, folder: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        # Saving on every change, as production does: these tests kill it and count.
        own = Settings.load(environ={}, environment="test", var_dir=folder, mqtt_port=port,
                            local_broker_durable=True)
        self.service = next(s for s in local_services.build_services(own)
                            if s.name == "mosquitto")
        self.settings = Settings.load(environ={}, **{**settings.__dict__, "mqtt_port": port})
        self.database = self.service.directory / "data" / "mosquitto.db"

    def start(self) -> None:
        """Start (or restart on the same data) and wait until it answers."""
        local_services.start(self.service)

    def kill(self) -> None:
        """SIGKILL: no chance to save anything; wait until its port is free again."""
        kill_service(self.service)

    def stop(self) -> None:
        """Stop it if it runs."""
        local_services.stop(self.service)


@pytest.fixture
def private_broker(registry_settings: Settings, tmp_path: Any) -> Iterator[PrivateBroker]:
    """A private Mosquitto started with the project's configuration; settings point at it."""
    broker = PrivateBroker(registry_settings, tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def prepare_session(settings: Settings, client_id: str) -> None:
    """Create a collector's persistent session and subscription, as `collector prepare` does."""
    client = MqttClient(settings, client_id, persistent_session=True, manual_ack=True)
    client.connect()
    client.subscribe(events_subscription(settings.mqtt_topic_prefix), qos=1)
    client.disconnect()


def publish_acknowledged(settings: Settings, messages: int, per_message: int) -> float:
    """Publish distinct snapshot batches to AP_UNIT, QoS 1; return when the last PUBACK came."""
    client = MqttClient(settings, "")
    client.connect()
    base = time.time() - 600
    topic = events_topic(settings.mqtt_topic_prefix, AP_UNIT)
    try:
        for index in range(messages):
            events = snapshot(per_message, base + index * 0.01, start=index * per_message)
            client.publish(topic, encode_events(events), wait=False)
        client.wait_until_published(timeout=120)
        return time.time()
    finally:
        client.disconnect()
