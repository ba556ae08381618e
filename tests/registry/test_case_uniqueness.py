"""One open case per unit and kind, held by the database (issue 12): concurrent analytics runs,
the partial unique index itself, and migration 0010 over a registry that already has duplicates.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from analytics import delivery
from analytics.config import AnalyticsConfig, Window
from analytics.delivery import DeliveryReport, store_cases
from registry.case_flow import OPEN_STATUSES
from registry.casework import is_duplicate_open_case
from registry.db import MIGRATIONS_DIR, downgrade, make_session_factory, session_scope, upgrade
from registry.models import (
    ONE_OPEN_CASE_INDEX,
    ONE_OPEN_CASE_WHERE,
    Case,
    CaseEvent,
    CaseStatus,
    Unit,
)
from tests.cases_common import flagged_frame, flagged_units

WINDOW = Window(dt.date(2026, 11, 1), 28)
T0 = dt.datetime(2026, 11, 29, 2, tzinfo=dt.UTC)
UNITS = 60


def open_cases_per_unit(factory: sessionmaker[Session]) -> Counter[int]:
    """How many open cases each unit has."""
    with factory() as db:
        return Counter(db.scalars(select(Case.unit_id).where(
            Case.status.in_(list(OPEN_STATUSES)))).all())


def test_two_analytics_runs_at_once_open_each_units_case_once(
        session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two runs both read "no open case" before either writes (held at a barrier there, so the
    race happens every time): the loser trips the index, reads again and updates instead."""
    refs = flagged_units(session_factory, UNITS, "U-1")
    units = flagged_frame(refs)
    barrier = threading.Barrier(2, timeout=20)
    first_reads = threading.local()
    original = delivery._last_final_cases

    def after_reading_open_cases(session: Session, unit_ids: list[int]) -> Any:
        """Each run's first read of open cases waits for the other's (later tries do not)."""
        if not getattr(first_reads, "done", False):
            first_reads.done = True
            barrier.wait()
        return original(session, unit_ids)

    monkeypatch.setattr(delivery, "_last_final_cases", after_reading_open_cases)
    reports: list[DeliveryReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        """One analytics run's case step."""
        try:
            reports.append(store_cases(session_factory, units, WINDOW, AnalyticsConfig(),
                                       T0)[1])
        except BaseException as error:  # counted below
            errors.append(error)

    caplog.set_level(logging.INFO, logger="analytics.delivery")
    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    per_unit = open_cases_per_unit(session_factory)
    print(f"two runs at once on {UNITS} units: opened "
          f"{[r.cases_opened for r in reports]}, updated {[r.cases_updated for r in reports]}, "
          f"{time.monotonic() - started:.1f} s")
    assert len(per_unit) == UNITS and set(per_unit.values()) == {1}
    assert sorted(r.cases_opened for r in reports) == [0, UNITS]
    assert sorted(r.cases_updated for r in reports) == [0, UNITS]
    assert "another run opened a case meanwhile" in caplog.text  # the race did happen


def test_the_database_refuses_a_second_open_case_of_a_unit(
        session_factory: sessionmaker[Session]) -> None:
    """Written past the application (as a racing run would): refused. A closed case, another
    kind, or a second inspection case of the unit are not."""
    [ref] = flagged_units(session_factory, 1, "U-1")
    with session_scope(session_factory) as db:
        unit_id = db.scalars(select(Unit.id).where(Unit.ref == ref)).one()
        db.add_all([Case(unit_id=unit_id, kind="overcrowding", status=CaseStatus.CLOSED),
                    Case(unit_id=unit_id, kind="overcrowding", status=CaseStatus.PARKED),
                    Case(unit_id=unit_id, kind="watchlist", status=CaseStatus.DISCOVERED),
                    Case(unit_id=unit_id, kind="inspection", status=CaseStatus.DISCOVERED),
                    Case(unit_id=unit_id, kind="inspection", status=CaseStatus.HANDLING)])
    for status in (CaseStatus.DISCOVERED, CaseStatus.VERIFIED):
        with pytest.raises(IntegrityError) as refused, session_scope(session_factory) as db:
            db.add(Case(unit_id=unit_id, kind="overcrowding", status=status))
        assert is_duplicate_open_case(refused.value)


def test_migration_0010_closes_duplicates_already_there_into_one_case(
        registry_engine: Engine) -> None:
    """Upgrade over duplicates: per unit and kind the case a person moved on (else the oldest)
    stays open, the others are closed with a history entry each way; the downgrade drops the
    index and lets duplicates in again."""
    factory = make_session_factory(registry_engine)
    downgrade(registry_engine, "0009")
    refs = flagged_units(factory, 2, "U-1")
    with session_scope(factory) as db:
        first, second = db.scalars(select(Unit.id).where(Unit.ref.in_(refs)).order_by(Unit.id))
        made = [  # (unit, kind, status, hours after T0)
            (first, "overcrowding", CaseStatus.DISCOVERED, 0),
            (first, "overcrowding", CaseStatus.DISCOVERED, 1),
            (first, "overcrowding", CaseStatus.ASSIGNED, 2),  # worked on: kept
            (first, "overcrowding", CaseStatus.CLOSED, 3),
            (second, "overcrowding", CaseStatus.DISCOVERED, 1),
            (second, "overcrowding", CaseStatus.DISCOVERED, 0),  # the oldest: kept
            (second, "inspection", CaseStatus.DISCOVERED, 0),
            (second, "inspection", CaseStatus.DISCOVERED, 1),  # one per inspection: both stay
        ]
        cases = [Case(unit_id=unit, kind=kind, status=status, evidence={"n": n},
                      opened_at=T0 + dt.timedelta(hours=hours))
                 for n, (unit, kind, status, hours) in enumerate(made)]
        db.add_all(cases)
        db.flush()
        ids = [c.id for c in cases]
    upgrade(registry_engine)
    with factory() as db:
        status = {c.id: c.status for c in db.scalars(select(Case))}
        notes = {(e.case_id, e.note.split(" ", 2)[0]) for e in db.scalars(select(CaseEvent))}
        evidence = {c.id: c.evidence for c in db.scalars(select(Case))}
    assert [status[i] for i in ids] == [
        CaseStatus.CLOSED, CaseStatus.CLOSED, CaseStatus.ASSIGNED, CaseStatus.CLOSED,
        CaseStatus.CLOSED, CaseStatus.DISCOVERED, CaseStatus.DISCOVERED, CaseStatus.DISCOVERED]
    assert notes == {(ids[0], "closed"), (ids[1], "closed"), (ids[2], "duplicate"),
                     (ids[4], "closed"), (ids[5], "duplicate")}
    assert [evidence[i] for i in ids] == [{"n": n} for n in range(len(ids))]  # nothing lost
    assert open_cases_per_unit(factory) == {first: 1, second: 3}
    downgrade(registry_engine, "0009")
    assert ONE_OPEN_CASE_INDEX not in {i["name"] for i in inspect(registry_engine)
                                       .get_indexes("cases")}
    with session_scope(factory) as db:  # no index: the old behaviour is back
        db.add(Case(unit_id=first, kind="overcrowding", status=CaseStatus.DISCOVERED))
    upgrade(registry_engine)  # and the upgrade settles them again
    assert open_cases_per_unit(factory)[first] == 1


def test_the_migration_freezes_the_models_index_condition() -> None:
    """Migration 0010 copies the models' condition; they must say the same."""
    path = MIGRATIONS_DIR / "versions" / "0010_one_open_case_and_command_outbox.py"
    spec = importlib.util.spec_from_file_location("migration_0010", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.WHERE == ONE_OPEN_CASE_WHERE
    assert migration.INDEX == ONE_OPEN_CASE_INDEX
