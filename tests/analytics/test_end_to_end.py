"""Simulator -> broker -> collector -> InfluxDB -> analytics -> cases and alerts, all real."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig
from analytics.pipeline import run_analysis
from census.channels import alert_topic
from census.mqtt import MqttClient, ReceivedMessage
from census.privacy import IdentityCipher
from census.settings import Settings
from collector.service import Collector, CollectorOptions
from registry.db import session_scope
from registry.importers import import_csv
from registry.models import Case
from simulator import SimulationConfig, publish, simulate
from timeseries import TimeSeriesStore
from wifi_census.accuracy import read_truth, window_for_period


@pytest.fixture
def alerts(settings: Settings) -> Iterator[list[dict[str, Any]]]:
    """Alerts arriving on this test's overcrowding topic."""
    received: list[dict[str, Any]] = []

    def keep(message: ReceivedMessage) -> None:
        """Collect one alert."""
        received.append(json.loads(message.payload))

    client = MqttClient(settings, on_message=keep)
    client.connect()
    client.subscribe(alert_topic(settings.mqtt_topic_prefix, "overcrowding"))
    time.sleep(0.3)
    yield received
    client.disconnect()


def run_collector_until_idle(settings: Settings, tmp_path: Path, publish_stream: Any) -> Any:
    """Start the real collector, publish, and let it drain and stop when idle."""
    options = replace(CollectorOptions.from_settings(
        settings, client_id=f"test-ana-e2e-{uuid.uuid4().hex[:6]}",
        spool_dir=tmp_path / "spool", metrics_port=0), exit_when_idle_s=3.0,
        flush_interval_s=0.05)
    collector = Collector(settings, options)
    subscribed = threading.Event()
    outcome: dict[str, Any] = {}
    original_start = collector.start

    def start() -> None:
        """Subscribe, then let the publisher go."""
        try:
            original_start()
        finally:
            subscribed.set()

    collector.start = start  # type: ignore[method-assign]

    def work() -> None:
        """Run to idle."""
        try:
            outcome["summary"] = collector.run(progress_every_s=5.0)
        except BaseException as error:  # re-raised in the test thread
            outcome["error"] = error

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert subscribed.wait(30), "collector did not subscribe"
    publish_stream()
    thread.join(240)
    assert not thread.is_alive(), "collector did not drain and stop"
    if "error" in outcome:
        raise outcome["error"]
    end_session = MqttClient(settings, options.client_id)
    end_session.connect()
    end_session.disconnect()
    return outcome["summary"]


@pytest.mark.slow
def test_simulated_group_rentals_become_cases_and_alerts_through_the_real_path(
        settings: Settings, influx: TimeSeriesStore, sqlite_session_factory: sessionmaker[Session],
        redis_client: redis.Redis, alerts: list[dict[str, Any]], tmp_path: Path) -> None:
    """Every key flag is a true group rental, most group rentals are flagged, cases and alerts
    carry them, and the estimator only saw what went through the broker."""
    folder = tmp_path / "sim"
    sim = simulate(SimulationConfig(out=folder, units=30, days=8, seed=5, rented_share=0.3,
                                    group_rental_share=0.6))
    cipher = IdentityCipher.from_settings(settings)
    for kind in ("units", "aps", "residents", "utilities"):
        assert not import_csv(kind, folder / f"{kind}.csv", sqlite_session_factory,
                              cipher).errors
    summary = run_collector_until_idle(
        settings, tmp_path, lambda: publish(settings, sim.events_path))
    assert summary.written > 0
    assert sum(summary.dead_lettered.values()) == 0

    window = window_for_period(sim.period_start, sim.period_end, settings.timezone)
    result = run_analysis(settings, AnalyticsConfig(), window=window,
                          factory=sqlite_session_factory, store=influx, out_dir=tmp_path / "out")

    truth = read_truth(sim.truth_path).set_index("unit")
    group_rentals = set(truth.index[truth["group_rental"]])
    assert len(group_rentals) >= 3
    key_units = {f.unit for f in result.flags if f.tier == "key"}
    assert key_units <= group_rentals
    assert len(key_units) >= len(group_rentals) - 1
    with session_scope(sqlite_session_factory) as session:
        cases = {c.unit.ref: c.id for c in session.scalars(
            select(Case).where(Case.kind == "overcrowding"))}
    assert key_units <= set(cases)
    deadline = time.monotonic() + 10
    while {a["unit"] for a in alerts} != {f.unit for f in result.flags}:
        assert time.monotonic() < deadline, "alerts did not all arrive"
        time.sleep(0.05)
    for alert in alerts:
        assert alert["case_id"] == cases[alert["unit"]]
        assert alert["window"]["nights"] == window.nights
