"""A whole run against the real InfluxDB, registry, Mosquitto and a local webhook."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig, Window
from analytics.delivery import DeliveryReport, post_webhook
from analytics.flags import FlagRecord, flag_record
from analytics.loaders import load_registry
from analytics.pipeline import run_analysis
from census.channels import alert_topic
from census.mqtt import MqttClient, ReceivedMessage
from census.privacy import IdentityCipher
from census.settings import Settings
from registry.db import session_scope
from registry.models import Alert, Case, CaseEvent, RiskTier, Unit
from tests.common import Routine, household, import_registry, make_events, wait_for, write_raw
from timeseries import TimeSeriesStore

CONFIG = AnalyticsConfig()


def routines() -> list[Routine]:
    """The tiny community's devices (see each unit's comment)."""
    devices: list[Routine] = []
    devices += household("ap-0101", 2, "u101")  # registered 2, two live there
    devices += household("ap-0102", 7, "u102")  # registered 1, seven live there
    devices += household("ap-0103", 2, "u103")  # registered 2
    devices += household("ap-0104", 1, "u104")  # registered 1, a smart plug and a visitor
    devices.append(Routine("u104-plug", "ap-0104", always=True))
    devices.append(Routine("u104-visitor", "ap-0104", home=19.0, leave=21.5))
    devices += household("ap-b2-f2", 3, "f2", rssi=-65)  # corridor: registered 2 + 1
    devices.append(Routine("u101-p0-watch", "ap-0101", companion_of=devices[0]))
    return devices


@pytest.fixture
def world(settings: Settings, influx: TimeSeriesStore,
          sqlite_session_factory: sessionmaker[Session], window: Window,
          tmp_path: Path) -> sessionmaker[Session]:
    """The registry imported, raw presence written to this test's InfluxDB database."""
    import_registry(sqlite_session_factory, IdentityCipher.from_settings(settings), tmp_path)
    with session_scope(sqlite_session_factory) as session:
        aps = load_registry(session).aps
    write_raw(influx, make_events(routines(), window), aps)
    return sqlite_session_factory


@pytest.fixture
def alerts(settings: Settings) -> Iterator[list[dict[str, Any]]]:
    """Alerts received on this test's overcrowding topic."""
    received: list[dict[str, Any]] = []

    def on_message(message: ReceivedMessage) -> None:
        """Keep each alert."""
        received.append(json.loads(message.payload))

    client = MqttClient(settings, on_message=on_message)
    client.connect()
    client.subscribe(alert_topic(settings.mqtt_topic_prefix, "overcrowding"), qos=1)
    time.sleep(0.3)
    yield received
    client.disconnect()


class _Webhook(BaseHTTPRequestHandler):
    """Records JSON bodies; answers with the next status of the server's script."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        """Receive one alert."""
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.bodies.append(json.loads(body))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def webhook() -> Iterator[Any]:
    """A local HTTP server on loopback recording what is POSTed to it."""
    server: Any = HTTPServer(("127.0.0.1", 0), _Webhook)
    server.bodies = []
    server.statuses = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    yield server
    server.shutdown()
    server.server_close()


def test_a_run_flags_the_group_rental_opens_a_case_and_alerts(
        settings: Settings, influx: TimeSeriesStore, world: sessionmaker[Session], window: Window,
        alerts: list[dict[str, Any]], webhook: Any, tmp_path: Path) -> None:
    """Flags, cases, tiers, MQTT alerts, webhook, heatmaps; a second run updates the case."""
    settings = dataclasses.replace(settings, alert_webhook_url=webhook.url)
    result = run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                          out_dir=tmp_path / "out")
    units = result.units.set_index("unit")
    assert units.at["C1/B1/0102", "flag"] == "group_rental"
    assert 5 <= units.at["C1/B1/0102", "estimated"] <= 9
    for ref in ("C1/B1/0101", "C1/B1/0103", "C1/B1/0104", "C1/B2/0201", "C1/B2/0202"):
        assert units.at[ref, "flag"] != "group_rental", ref
        assert abs(units.at[ref, "estimated"] - units.at[ref, "registered"]) <= 1, ref
    assert units.at["C1/B1/0104", "estimated"] == 1  # the plug and the visitor are no one
    assert units.at["C1/B1/0101", "estimated"] == 2  # the watch is its owner's
    assert units.at["C1/B2/0201", "coverage"] == "zone"
    key_flags = [f for f in result.flags if f.tier == "key"]
    assert [f.unit for f in key_flags] == ["C1/B1/0102"]
    assert result.rollup.days_rolled == window.nights

    with session_scope(world) as session:
        cases = session.scalars(select(Case).where(Case.kind == "overcrowding")).all()
        group_case = next(c for c in cases if c.unit.ref == "C1/B1/0102")
        assert group_case.tier == RiskTier.KEY
        assert group_case.evidence["case_id"] == group_case.id
        assert group_case.evidence["registered"] == 1
        case_id = group_case.id
        unit = session.scalar(select(Unit).where(Unit.ref == "C1/B1/0102"))
        assert unit is not None and unit.risk_tier == RiskTier.KEY
        assert session.scalar(select(func.count(Alert.id))) == len(result.flags)
    wait_for(lambda: any(a["unit"] == "C1/B1/0102" for a in alerts))
    alert = next(a for a in alerts if a["unit"] == "C1/B1/0102")
    assert alert["case_id"] == case_id and alert["tier"] == "key"
    assert alert["confidence"] >= CONFIG.flag_confidence
    assert {b["unit"] for b in webhook.bodies} == {f.unit for f in result.flags}

    heatmaps = Path(result.heatmaps_dir)
    for name in ("unit_by_hour", "floor_by_night", "building_by_hour"):
        # One picture per building (buildings: in parts), never one picture for the district.
        assert (heatmaps / f"{name}.csv").exists() and any((heatmaps / name).glob("*.png"))
    assert {p.name for p in (heatmaps / "unit_by_hour").glob("*.png")} == {
        "C1_B1.png", "C1_B2.png"}
    by_hour = pd.read_csv(heatmaps / "unit_by_hour.csv", index_col=0)
    assert by_hour.loc["C1/B1/0102", "2"] > by_hour.loc["C1/B1/0101", "2"]
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    assert report["units_analysed"] == 6 and report["tiers"]["key"] == 1

    again = run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                         out_dir=tmp_path / "out")
    assert again.delivery is not None
    assert again.delivery.cases_opened == 0
    assert again.delivery.cases_updated == len(again.flags)
    assert again.rollup.days_rolled == 0
    with session_scope(world) as session:
        group_cases = session.scalars(select(Case).join(Unit).where(
            Unit.ref == "C1/B1/0102", Case.kind == "overcrowding")).all()
        assert [c.id for c in group_cases] == [case_id]
        notes = session.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case_id)
                                .order_by(CaseEvent.id)).all()
        assert notes[0].startswith("opened: group rental")
        assert notes[1].startswith("flag persists: group rental")


def test_a_broker_that_is_down_loses_no_flag(
        settings: Settings, influx: TimeSeriesStore, world: sessionmaker[Session],
        window: Window, tmp_path: Path) -> None:
    """MQTT unreachable: the cases are stored and the failed sends are reported."""
    def refusing(_settings: Settings) -> Any:
        """A client factory for a broker that is not there."""
        return MqttClient(dataclasses.replace(_settings, mqtt_port=1))

    result = run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                          out_dir=tmp_path / "out", mqtt_factory=refusing)
    assert result.delivery is not None
    assert result.delivery.mqtt_published == 0
    assert result.delivery.mqtt_failed == len(result.flags) > 0
    assert "MQTT alerts not sent" in result.delivery.errors[0]
    with session_scope(world) as session:
        assert session.scalar(select(func.count(Case.id))) == len(result.flags)


def test_without_delivery_nothing_is_written_to_the_registry(
        settings: Settings, influx: TimeSeriesStore, world: sessionmaker[Session],
        window: Window, tmp_path: Path) -> None:
    """--no-deliver estimates and reports only."""
    result = run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                          out_dir=tmp_path / "out", deliver=False)
    assert result.delivery is None and result.flags
    with session_scope(world) as session:
        assert session.scalar(select(func.count(Case.id))) == 0


def test_the_webhook_is_retried_on_server_errors_and_not_on_refusals(webhook: Any) -> None:
    """HTTP 503 then 200: sent on the second try; HTTP 400: given up at once."""
    report = DeliveryReport()
    config = AnalyticsConfig(webhook_retries=3)
    webhook.statuses = [503, 200, 400]
    post_webhook(webhook.url, [_flag("a"), _flag("b")], report, config)
    assert [b["unit"] for b in webhook.bodies] == ["a", "a", "b"]
    assert (report.webhook_sent, report.webhook_failed) == (1, 1)
    assert "webhook for b failed: HTTP 400" in report.errors


def _flag(unit: str) -> FlagRecord:
    """A key flag record for one unit (what the webhook is sent)."""
    return flag_record({"unit": unit, "registered": 1, "estimated": 6.0, "low": 4.0,
                        "high": 8.0, "nights_observed": 14, "resident_devices": 6,
                        "p_plus_two": 0.99, "p_plus_one": 1.0, "persistence": 1.0,
                        "coverage": "unit_ap", "flag": "group_rental", "tier": "key"},
                       Window(last_night=dt.date(2026, 11, 19), nights=14,
                              timezone="Asia/Shanghai"),
                       dt.datetime(2026, 11, 20, tzinfo=dt.UTC))


def test_an_unreachable_webhook_is_reported_not_raised() -> None:
    """Connection refused on every try: counted as failed."""
    report = DeliveryReport()
    post_webhook("http://127.0.0.1:1/alerts", [_flag("a")], report,
                 AnalyticsConfig(webhook_retries=2, webhook_timeout_s=1.0))
    assert report.webhook_failed == 1 and "ConnectionError" in report.errors[0]


def test_a_run_keeps_each_units_estimate_and_heatmaps_for_the_back_office(
        settings: Settings, influx: TimeSeriesStore, world: sessionmaker[Session], window: Window,
        tmp_path: Path) -> None:
    """One unit_estimates row per unit: interval, nights, hour x night; no data is None."""
    from analytics.heatmaps import unpack_hour_night
    from registry.models import UnitEstimate

    run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                 out_dir=tmp_path / "out")
    run_analysis(settings, CONFIG, window=window, factory=world, store=influx,
                 out_dir=tmp_path / "out")  # replaced, not added
    with world() as db:
        rows = {e.unit.ref: e for e in db.scalars(select(UnitEstimate))}
        assert db.scalar(select(func.count()).select_from(Unit)) == len(rows)
    group = rows["C1/B1/0102"]
    assert group.flag == "group_rental" and group.low <= group.estimated <= group.high
    assert group.nights_observed == len(window.days) and len(group.nights) == len(window.days)
    hour_night = unpack_hour_night(group.hour_night)
    assert len(hour_night) == len(window.days)
    assert all(night is not None and len(night) == 24 for night in hour_night)
    # Seven people at home at 03:00 local: census-day hour 21 (days start at 06:00).
    assert max(night[21] for night in hour_night if night is not None) >= 5
    # The corridor AP's units share its count; units with no AP have no data at all.
    assert rows["C1/B2/0201"].coverage == "zone"
    nodata = [e for e in rows.values() if e.coverage == "none"]
    for estimate in nodata:
        assert all(v is None for v in estimate.nights)
        assert all(night is None for night in unpack_hour_night(estimate.hour_night))
