"""The demo runs the whole system end to end and leaves the portal answering."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from census.settings import Settings
from tests.common import free_port
from wifi_census import local_servers


@pytest.mark.slow
def test_demo_flows_to_flags_and_leaves_the_portal_serving(
    settings: Settings, tmp_path: Path
) -> None:
    """A small community goes simulator → broker → collector → InfluxDB → analytics → portal,
    and residents sign in on that portal."""
    portal_port = free_port()
    env = {
        **os.environ,
        "WIFI_CENSUS_VAR_DIR": str(settings.var_dir),
        "WIFI_CENSUS_MQTT_TOPIC_PREFIX": settings.mqtt_topic_prefix,
        "WIFI_CENSUS_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "WIFI_CENSUS_INFLUX_DATABASE": settings.influx_database,
        "WIFI_CENSUS_COLLECTOR_CLIENT_ID": f"demo-{settings.influx_database}",
        "WIFI_CENSUS_COMMAND_LOG_CLIENT_ID": f"demo-log-{settings.influx_database}",
        "WIFI_CENSUS_PORTAL_PORT": str(portal_port),
        "WIFI_CENSUS_PORTAL_PUBLIC_URL": f"http://127.0.0.1:{portal_port}",
        "WIFI_CENSUS_METRICS_PORT": "0",
    }
    demo_settings = Settings.load(environ=env)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "wifi_census.cli", "demo", "--units", "60", "--days", "4",
             "--seed", "11"],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        out = result.stdout
        assert "wifi-census demo: summary" in out
        assert "units       60 analysed" in out
        assert f"http://127.0.0.1:{portal_port}/" in out
        for step in range(1, 10):
            assert f"[{step}/9]" in result.stderr
        assert " 0 dead-lettered" in result.stderr
        # Real sign-ins over HTTP, each authorize command applied and answered by an AP agent
        # stand-in and recorded by the AP command log.
        assert "20 of 20 signed in; AP command log: done 20 " in result.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{portal_port}/api/captive", timeout=5) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/captive+json")
    finally:
        for service in local_servers.demo_services(demo_settings, sys.executable):
            local_servers.stop(service)
        from census.mqtt import MqttClient

        ending = MqttClient(demo_settings, f"{demo_settings.command_log_client_id}-demo")
        ending.connect()  # a clean start ends the demo command log's persistent session
        ending.disconnect()
        from timeseries import open_store

        open_store(demo_settings).drop_database()
