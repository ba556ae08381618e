"""Operations: SIGTERM flushes, JSON logs, the AP map on SQLite and PostgreSQL, CLI commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from census.channels import RedisKeys, events_topic
from census.events import encode_events
from census.mqtt import MqttClient
from census.settings import Settings
from collector.apmap import RegistryApMap
from collector.cli import collector
from collector.parser import ApLocation
from registry.db import bump_registry_version, session_scope
from registry.models import AccessPoint, Building, Community, Coverage, Unit
from tests.common import (
    AP_UNIT,
    count_points,
    discard_session,
    settings_environment,
    snapshot,
    wait_for,
)
from timeseries import TimeSeriesStore
from wifi_census.local_servers import port_is_free

BIN = Path(sys.executable).parent


def _metric(port: int, name: str) -> float:
    """One sample value from a /metrics endpoint (0 when absent or unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_sigterm_flushes_the_open_batch_and_prints_the_summary(
    registry_settings: Settings, influx: TimeSeriesStore,
) -> None:
    """With a 60 s flush interval, only the graceful stop can have written the events."""
    settings = registry_settings
    environment = settings_environment(settings)
    environment["WIFI_CENSUS_COLLECTOR_FLUSH_MS"] = "60000"
    port = next(p for p in range(19300, 19400) if port_is_free("127.0.0.1", p))
    client_id = f"test-term-{settings.mqtt_topic_prefix}"
    # The session and its subscription exist before the collector starts, so the messages
    # below are queued for it even if they beat its subscribe (a busy machine makes that race).
    prepared = subprocess.run([str(BIN / "wifi-census"), "collector", "prepare",
                               "--client-id", client_id], env=environment, capture_output=True,
                              text=True, timeout=60, check=False)
    assert prepared.returncode == 0, prepared.stderr
    process = subprocess.Popen(
        [str(BIN / "wifi-census"), "collector", "run", "--client-id", client_id,
         "--metrics-port", str(port), "--log-format", "json"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: _metric(port, "census_collector_known_aps") == 3, timeout=30,
                 what="collector up")
        publisher = MqttClient(settings, "")
        publisher.connect()
        for index in range(4):
            publisher.publish(events_topic(settings.mqtt_topic_prefix, AP_UNIT),
                              encode_events(snapshot(25, time.time(), start=index * 25)))
        publisher.disconnect()
        wait_for(lambda: _metric(port, "census_collector_messages_received_total") == 4,
                 what="messages received")
        assert count_points(influx) == 0  # still held in the open batch
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        discard_session(settings, client_id)
    assert process.returncode == 0, stderr[-2000:]
    assert count_points(influx) == 100
    assert "received: 4 messages, 100 events" in stdout
    assert "written to InfluxDB: 100 points" in stdout and "dead-lettered: 0 (none)" in stdout
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert records and {"time", "level", "logger", "message"} <= set(records[0])
    assert any("collector stopped" in record["message"] for record in records)


def _add_registry(factory: sessionmaker[Session]) -> None:
    """Two APs of different coverage in one building."""
    with session_scope(factory) as session:
        community = Community(code="TEDA-017")
        building = Building(community=community, code="B03")
        unit = Unit(building=building, code="1502", ref="TEDA-017/B03/1502", floor=15,
                    area_m2=80.0)
        session.add_all([
            AccessPoint(ap_id="ap-unit", building=building, coverage=Coverage.UNIT, unit=unit),
            AccessPoint(ap_id="ap-hall", building=building, coverage=Coverage.FLOOR, floor=-1),
        ])
        bump_registry_version(session)


def test_ap_map_reads_the_registry_and_reloads_on_version_change(
    session_factory: sessionmaker[Session],
) -> None:
    """Location tags per coverage; a registry change is seen at the next poll, not before."""
    _add_registry(session_factory)
    clock = [0.0]
    ap_map = RegistryApMap(session_factory, poll_s=10, clock=lambda: clock[0])
    assert ap_map.refresh(force_check=True) and ap_map.size == 2
    assert ap_map.get("ap-unit") == ApLocation("ap-unit", "TEDA-017", "B03", "15",
                                               "TEDA-017/B03/1502")
    assert ap_map.get("ap-hall") == ApLocation("ap-hall", "TEDA-017", "B03", "-1", "")
    with session_scope(session_factory) as session:
        session.query(AccessPoint).filter_by(ap_id="ap-hall").one().floor = 2
        bump_registry_version(session)
    clock[0] = 5.0
    assert not ap_map.refresh()  # the poll is not due yet
    clock[0] = 10.5
    assert ap_map.refresh() and ap_map.get("ap-hall").floor == "2"  # type: ignore[union-attr]
    clock[0] = 21.0
    assert not ap_map.refresh()  # due, but nothing changed: no reload
    assert ap_map.reloads == 2


def test_prepare_deadletters_and_spool_commands(
    registry_settings: Settings, redis_client: redis.Redis,
) -> None:
    """The small operations commands run against the real services and say what they found."""
    environment = settings_environment(registry_settings)
    runner = CliRunner()
    prepared = runner.invoke(collector, ["prepare", "--client-id", "test-prep-x",
                                         "--share-group", "grp"], env=environment)
    assert prepared.exit_code == 0, prepared.output
    assert "$share/grp/" in prepared.output
    discard_session(registry_settings, "test-prep-x")
    redis_client.xadd(RedisKeys(registry_settings.redis_key_prefix).deadletter(),
                      {"reason": "bad_json", "detail": "not UTF-8 JSON", "topic": "t",
                       "payload": b"{oops", "at": "1"})
    shown = runner.invoke(collector, ["deadletters", "--limit", "5"], env=environment)
    assert shown.exit_code == 0 and "bad_json" in shown.output and "{oops" in shown.output
    spool = runner.invoke(collector, ["spool"], env=environment)
    assert spool.exit_code == 0 and "0 points in 0 files" in spool.output


def test_run_refuses_a_bad_share_group_and_an_unreachable_broker(settings: Settings) -> None:
    """Start-up problems are one clear line, not a traceback."""
    environment = settings_environment(settings)
    runner = CliRunner()
    bad_group = runner.invoke(collector, ["run", "--share-group", "a/b"], env=environment)
    assert bad_group.exit_code == 2 and "--share-group" in bad_group.output
    environment["WIFI_CENSUS_MQTT_PORT"] = "1"
    unreachable = runner.invoke(collector, ["run", "--metrics-port", "0"], env=environment)
    assert unreachable.exit_code == 1
    assert "collector cannot start: cannot reach MQTT broker 127.0.0.1:1" in unreachable.output


def test_a_busy_metrics_port_is_a_clear_start_up_error(registry_settings: Settings) -> None:
    """Another program on the metrics port: one line naming the port and the setting."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        environment = settings_environment(registry_settings)
        result = CliRunner().invoke(collector, ["run", "--metrics-port", str(port)],
                                    env=environment)
    assert result.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
