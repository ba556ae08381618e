"""Fixtures for the collector tests: a registry with APs, a publisher, a collector in a thread."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from census.channels import events_topic
from census.events import encode_events
from census.mqtt import MqttClient
from census.settings import Settings
from tests.common import PrivateBroker, add_aps, free_influx_port
from wifi_census import local_servers as local_services


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


@pytest.fixture
def private_influx(tmp_path: Any) -> Iterator[local_services.LocalService]:
    """A private InfluxDB (its own folder and port) that a test may stop and start."""
    private = Settings.load(environ={}, environment="test", var_dir=tmp_path / "private",
                            influx_url=f"http://127.0.0.1:{free_influx_port()}")
    service = next(s for s in local_services.build_services(private) if s.name == "influxdb")
    local_services.start(service)
    yield service
    local_services.stop(service)


@pytest.fixture
def private_broker(registry_settings: Settings, tmp_path: Any) -> Iterator[PrivateBroker]:
    """A private Mosquitto started with the project's configuration; settings point at it."""
    broker = PrivateBroker(registry_settings, tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


