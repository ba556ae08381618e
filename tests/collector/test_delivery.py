"""Integration: no loss and no duplicates across kills, InfluxDB outages and shared load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from census.channels import events_topic
from census.mqtt import MqttClient
from census.settings import Settings
from collector.service import Collector
from tests.common import (
    AP_FLOOR,
    AP_LOBBY,
    AP_UNIT,
    count_points,
    discard_session,
    options_for,
    running_collector,
    settings_environment,
    snapshot,
    wait_for,
)
from timeseries import TimeSeriesStore, open_store
from wifi_census import local_servers as local_services

BIN = Path(sys.executable).parent


def _publish_stream(settings: Settings, messages: int, per_message: int,
                    pause_s: float = 0.0) -> None:
    """Publish a stream of distinct snapshot batches over three APs, QoS 1, all acknowledged."""
    from census.events import encode_events

    client = MqttClient(settings, "")
    client.connect()
    base = time.time() - 600
    aps = (AP_UNIT, AP_FLOOR, AP_LOBBY)
    for index in range(messages):
        events = snapshot(per_message, base + index * 0.25, start=index * per_message)
        client.publish(events_topic(settings.mqtt_topic_prefix, aps[index % 3]),
                       encode_events(events), wait=False)
        if pause_s:
            time.sleep(pause_s)
    client.wait_until_published(timeout=60)
    client.disconnect()


def test_killed_collector_restarts_losing_nothing_and_duplicating_nothing(
    registry_settings: Settings, influx: TimeSeriesStore,
) -> None:
    """SIGKILL mid-stream, restart: the broker redelivers what was unacknowledged, once."""
    settings = registry_settings
    environment = settings_environment(settings)
    client_id = f"test-kill-{settings.mqtt_topic_prefix}"
    command = [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
               "--metrics-port", "0"]
    prepared = subprocess.run([str(BIN / "wifi-census"), "collector", "prepare",
                               "--client-id", client_id], env=environment, capture_output=True,
                              text=True, timeout=60, check=False)
    assert prepared.returncode == 0, prepared.stderr
    messages, per_message = 600, 50
    publisher = threading.Thread(target=_publish_stream,
                                 args=(settings, messages, per_message, 0.004))
    publisher.start()
    first = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # Kill once a few batches are in: later ones are in flight, parsed or not yet sent.
        wait_for(lambda: count_points(influx) >= 10_000, timeout=60, what="first run writing")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    written_before_kill = count_points(influx)
    assert written_before_kill < messages * per_message, "killed too late to test anything"
    publisher.join(120)
    second = subprocess.run([*command, "--exit-when-idle", "2", "--summary-json"],
                            env=environment, capture_output=True, text=True, timeout=180,
                            check=False)
    discard_session(settings, client_id)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["messages"] > 0 and summary["dead_lettered"] == {}
    assert 0 < summary["active_cpu_seconds"] <= summary["active_seconds"] * (os.cpu_count() or 1)
    # Exactly every event, once: duplicates would be extra points, losses missing ones.
    assert count_points(influx) == messages * per_message


def test_influxdb_outage_spools_and_drains_without_loss(
    registry_settings: Settings, private_influx: local_services.LocalService,
    publisher: Callable[[str, Any], None],
) -> None:
    """InfluxDB stops mid-ingest: events are spooled and acked, then drained when it returns."""
    url = f"http://127.0.0.1:{private_influx.port}"
    settings = Settings.load(environ={}, **{**registry_settings.__dict__, "influx_url": url})
    store = open_store(settings)
    collector = Collector(settings, options_for(settings, "outage"))
    now = time.time() - 60
    with running_collector(collector):
        for index in range(5):
            publisher(AP_UNIT, snapshot(200, now + index, start=index * 200))
        # Acknowledged too, not only visible: InfluxDB shows points before its write returns,
        # and a write still in flight when it stops answers 500 and is spooled (counted twice).
        wait_for(lambda: count_points(store) == 1000 and collector.is_idle(),
                 what="first part stored and acknowledged")

        local_services.stop(private_influx)
        for index in range(5, 10):
            publisher(AP_FLOOR, snapshot(200, now + index, start=index * 200))
        wait_for(lambda: collector.summary.spooled == 1000 and collector.is_idle(),
                 what="second part spooled and acknowledged")
        assert collector.metrics.spool_depth._value.get() == 1000  # noqa: SLF001

        local_services.start(private_influx)
        wait_for(lambda: collector._spool.depth == 0, timeout=30,  # noqa: SLF001
                 what="spool drained")
        for index in range(10, 15):
            publisher(AP_LOBBY, snapshot(200, now + index, start=index * 200))
        wait_for(lambda: count_points(store) == 3000, what="everything stored")
    assert collector.summary.written == 3000 and collector.summary.spooled == 1000
    assert not list((collector.options.spool_dir / "batches").glob("*.lp"))
    store.close()


def test_two_collectors_on_a_shared_subscription_store_each_event_once(
    registry_settings: Settings, influx: TimeSeriesStore,
) -> None:
    """$share/group: the broker splits the stream; every event is stored exactly once."""
    settings = registry_settings
    group = f"g{settings.mqtt_topic_prefix.replace('-', '')}"[:40]
    first = Collector(settings, options_for(settings, "share-a", share_group=group))
    second = Collector(settings, options_for(settings, "share-b", share_group=group))
    messages, per_message = 300, 20
    with running_collector(first), running_collector(second):
        assert first.subscription.startswith(f"$share/{group}/")
        _publish_stream(settings, messages, per_message)
        wait_for(lambda: first.summary.messages + second.summary.messages == messages,
                 what="all messages received")
        wait_for(lambda: count_points(influx) == messages * per_message and first.is_idle()
                 and second.is_idle(), what="all events stored")
    assert first.summary.messages > 0 and second.summary.messages > 0  # both took a share
    assert first.summary.written + second.summary.written == messages * per_message
    assert count_points(influx) == messages * per_message
