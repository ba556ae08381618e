"""Retention per data class, against the real SQLite and PostgreSQL registries, InfluxDB and Redis.

Every class gets rows just inside and just outside its period; a run must take exactly the
outside ones, say so per class, and audit itself. The network log must outlive the old single
90-day setting (Cybersecurity Law art. 21: at least six months).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import PREFIX, Settings, SettingsError
from registry.db import make_engine, make_session_factory, session_scope, upgrade
from registry.models import (
    Alert,
    ApCommandRecord,
    AuditEntry,
    Building,
    Case,
    CaseEvent,
    CaseStatus,
    Community,
    Device,
    IdType,
    Resident,
    SignIn,
    Unit,
    Verification,
)
from registry.retention import run_retention
from timeseries import Point, TimeSeriesStore
from timeseries.influx_v1 import InfluxV1Store
from timeseries.schema import MEASUREMENT_DAILY, MEASUREMENT_DAILY_STATE, MEASUREMENT_PRESENCE
from wifi_census.cli import main

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ago(days: float) -> dt.datetime:
    """A moment this many days before NOW."""
    return NOW - dt.timedelta(days=days)


def resident(unit_id: int, tag: str, **values: object) -> Resident:
    """A resident row with a unique digest."""
    return Resident(unit_id=unit_id, name_encrypted=b"x", name_digest=f"name-{tag}",
                    id_type=IdType.PASSPORT,
                    id_number_encrypted=b"x", id_digest=f"digest-{tag}", id_last4="0000",
                    **values)


def signin(days: float, resident_id: int | None = None) -> SignIn:
    """A sign-in record (a network-log entry) made days ago."""
    return SignIn(at=ago(days), ap_id="ap-1", handshake="signed", method="sms",
                  outcome="registered", mac_pseudonym="0" * 16, resident_id=resident_id,
                  client_ip="10.1.15.23")


def fill(factory: sessionmaker[Session]) -> dict[str, int]:
    """Rows either side of every default period; returns the ids the test follows."""
    with session_scope(factory) as db:
        community = Community(code="C1", name="c")
        building = Building(community=community, code="B1")
        db.add_all([community, building])
        db.flush()
        unit = Unit(building_id=building.id, code="101", ref="C1/B1/101", floor=1, area_m2=50)
        db.add(unit)
        db.flush()
        staying = resident(unit.id, "staying")
        moved_long_ago = resident(unit.id, "gone", move_out=ago(181).date())
        moved_recently = resident(unit.id, "recent", move_out=ago(100).date())
        idle_declared = resident(unit.id, "idle", verification=Verification.SELF_DECLARED,
                                 created_at=ago(400))
        active_declared = resident(unit.id, "active", verification=Verification.SELF_DECLARED,
                                   created_at=ago(400))
        db.add_all([staying, moved_long_ago, moved_recently, idle_declared, active_declared])
        db.flush()
        db.add_all([
            Device(resident_id=staying.id, mac_pseudonym="d-revoked-old", mac_encrypted=b"x",
                   bound_at=ago(400), revoked_at=ago(181)),
            Device(resident_id=staying.id, mac_pseudonym="d-revoked-new", mac_encrypted=b"x",
                   bound_at=ago(400), revoked_at=ago(10)),
            Device(resident_id=staying.id, mac_pseudonym="d-unused", mac_encrypted=b"x",
                   bound_at=ago(400), last_seen_at=ago(181)),
            Device(resident_id=staying.id, mac_pseudonym="d-in-use", mac_encrypted=b"x",
                   bound_at=ago(400), last_seen_at=ago(1)),
        ])
        db.add_all([signin(days) for days in (1, 100, 179, 181, 400)])
        db.add(signin(10, active_declared.id))
        db.add_all([
            ApCommandRecord(nonce=f"{days:016d}", ap_id="ap-1", cmd="authorize",
                            issued_at=ago(days), state="done")
            for days in (179, 181)])
        db.add_all([AuditEntry(at=ago(days), actor="boss", action="view_resident")
                    for days in (1000, 1100)])
        db.add_all([
            Alert(kind="watchlist", at=ago(300), acknowledged_at=ago(181)),
            Alert(kind="watchlist", at=ago(300), acknowledged_at=ago(10)),
            Alert(kind="watchlist", at=ago(900)),  # never acknowledged: kept
        ])
        old_case = Case(unit_id=unit.id, kind="overcrowding", status=CaseStatus.CLOSED,
                        opened_at=ago(1300), closed_at=ago(1100))
        db.add_all([
            old_case,
            Case(unit_id=unit.id, kind="overcrowding", status=CaseStatus.CLOSED,
                 opened_at=ago(1300), closed_at=ago(10)),
            Case(unit_id=unit.id, kind="overcrowding", status=CaseStatus.HANDLING,
                 opened_at=ago(2000)),
        ])
        db.flush()
        db.add(CaseEvent(case_id=old_case.id, actor="analytics", to_status="closed"))
        return {"staying": staying.id, "recent": moved_recently.id,
                "active": active_declared.id, "old_case": old_case.id}


@pytest.fixture
def short_settings(settings: Settings) -> Settings:
    """The test's settings with raw presence kept 10 days and roll-ups 30 (inside the
    InfluxDB policy, which refuses writes older than itself)."""
    return Settings.load(environ={}, **{**settings.__dict__, "retention_days": 10,
                                        "retention_rollup_days": 30})


def presence_points() -> list[Point]:
    """Raw presence at 5 and 20 days, roll-ups and their state at 20 and 40 days."""
    def ns(moment: dt.datetime) -> int:
        return int(moment.timestamp()) * 1_000_000_000

    points = [Point(MEASUREMENT_PRESENCE, {"ap": "ap-1", "event": "snapshot"},
                    {"device": f"dev{days}"}, ns(ago(days))) for days in (5, 20)]
    points += [Point(MEASUREMENT_DAILY, {"ap": "ap-1"}, {"device": f"dev{days}", "bins": 3},
                     ns(ago(days))) for days in (20, 40)]
    points += [Point(MEASUREMENT_DAILY_STATE, {"scope": "_all"}, {"rows": 1, "raw_points": 9},
                     ns(ago(days))) for days in (20, 40)]
    return points


def test_each_class_keeps_exactly_its_period(
        session_factory: sessionmaker[Session], short_settings: Settings,
        influx: TimeSeriesStore, redis_client: redis.Redis) -> None:
    """A run deletes what is past each class's period and nothing younger; it says how much
    per class and leaves an audit entry."""
    ids = fill(session_factory)
    influx.write(presence_points())
    letters = f"{short_settings.redis_key_prefix}deadletter"
    for days in (20, 1):
        redis_client.xadd(letters, {"reason": "bad_json"},
                          id=f"{int(ago(days).timestamp() * 1000)}-0")
    report = run_retention(short_settings, session_factory, influx, redis_client, now=NOW)
    assert report.errors == {}
    assert report.deleted == {
        "cases": 1, "alerts": 1, "residents": 2, "devices": 2, "signins": 2, "ap_commands": 1,
        "audit": 1, "raw_presence": 1, "rollups": 2, "dead_letters": 1}
    with session_factory() as db:
        assert sorted(r.id for r in db.scalars(select(Resident))) == sorted(
            [ids["staying"], ids["recent"], ids["active"]])
        assert sorted(d.mac_pseudonym for d in db.scalars(select(Device))) == [
            "d-in-use", "d-revoked-new"]
        assert sorted(round((NOW - s.at).total_seconds() / 86400)
                      for s in db.scalars(select(SignIn))) == [1, 10, 100, 179]
        assert db.get(Case, ids["old_case"]) is None
        assert db.scalars(select(CaseEvent)).all() == []
        assert len(db.scalars(select(Alert)).all()) == 2
        run = db.scalars(select(AuditEntry).where(AuditEntry.action == "retention_run")).one()
        assert run.detail["signins"]["deleted"] == 2
        assert run.detail["signins"]["days_kept"] == 180
    raw = influx.query(f'SELECT device FROM "{MEASUREMENT_PRESENCE}"')
    assert list(raw["device"]) == ["dev5"]
    assert list(influx.query(f'SELECT device FROM "{MEASUREMENT_DAILY}"')["device"]) == ["dev20"]
    assert redis_client.xlen(letters) == 1


def test_network_log_outlives_the_old_ninety_days(
        session_factory: sessionmaker[Session], settings: Settings, influx: TimeSeriesStore,
        redis_client: redis.Redis) -> None:
    """Sign-ins and the AP command log (who was online, when, where) are kept six months:
    the old single 90-day purge deleted them after three."""
    fill(session_factory)
    run_retention(settings, session_factory, influx, redis_client, now=NOW)
    with session_factory() as db:
        assert any((NOW - s.at).days >= 100 for s in db.scalars(select(SignIn)))
        assert [r.nonce for r in db.scalars(select(ApCommandRecord))] == [f"{179:016d}"]


def test_network_log_period_below_six_months_is_refused(tmp_path: Path) -> None:
    """A setting the law does not allow stops the program, naming the variable."""
    with pytest.raises(SettingsError, match="WIFI_CENSUS_RETENTION_NETWORK_LOG_DAYS"):
        Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path),
                               "WIFI_CENSUS_RETENTION_NETWORK_LOG_DAYS": "90"})


def test_a_failing_class_does_not_stop_the_others(
        session_factory: sessionmaker[Session], settings: Settings,
        redis_client: redis.Redis) -> None:
    """InfluxDB unreachable: its classes are reported as not enforced, the registry's still are."""
    fill(session_factory)
    dead = InfluxV1Store(url="http://127.0.0.1:9", database="nowhere", timeout_s=1)
    report = run_retention(settings, session_factory, dead, redis_client, now=NOW)
    dead.close()
    assert set(report.errors) == {"raw_presence", "rollups"}
    assert report.deleted["signins"] == 2


@pytest.fixture
def cli_environment(settings: Settings, influx: TimeSeriesStore) -> Iterator[dict[str, str]]:
    """Environment variables that point the CLI at this test's registry, Redis and InfluxDB."""
    values = {
        "environment": "test", "var_dir": str(settings.var_dir),
        "database_url": settings.database_url, "redis_key_prefix": settings.redis_key_prefix,
        "influx_database": settings.influx_database, "secret_key": settings.secret_key,
        "pseudonym_key": settings.pseudonym_key, "identity_key": settings.identity_key,
        "command_key": settings.command_key, "digest_key": settings.digest_key,
    }
    yield {PREFIX + k.upper(): v for k, v in values.items()}


@pytest.mark.parametrize("command", [["retention", "run"], ["portal", "purge"]])
def test_command_and_its_old_alias_enforce_every_class(
        settings: Settings, cli_environment: dict[str, str], command: list[str]) -> None:
    """`wifi-census retention run` (and `portal purge`, kept for scripts) print per class."""
    engine: Engine = make_engine(settings.database_url)
    upgrade(engine)
    fill(make_session_factory(engine))
    engine.dispose()
    result = CliRunner().invoke(main, command, env=cli_environment)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "kept   180 days  deleted 2" in lines["signins"]
    assert "deleted 1" in lines["cases"] and "raw_presence" in lines
