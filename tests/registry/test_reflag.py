"""A persisting flag updates its open case; after closing, a new case follows the old one."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig, Window
from analytics.delivery import store_cases
from registry.db import session_scope
from registry.models import Case, CaseEvent, CaseStatus, RiskTier
from tests.cases_common import two_communities

WINDOW = Window(dt.date(2026, 11, 21), 28)
T0 = dt.datetime(2026, 11, 22, 2, tzinfo=dt.UTC)


def _flags(ref: str, tier: str = "key", flag: str = "group_rental") -> pd.DataFrame:
    """The tiered estimate frame of one flagged unit, as flags.assign_tiers leaves it."""
    return pd.DataFrame([{
        "unit": ref, "registered": 1, "estimated": 6.0, "low": 4.0, "high": 8.0,
        "nights_observed": 26, "resident_devices": 7, "utility_people": None,
        "utility_ratio": None, "p_plus_two": 0.97, "p_plus_one": 0.99, "persistence": 1.0,
        "coverage": "unit_ap", "flag": flag, "tier": tier, "hazards": []}])


def _cases(factory: sessionmaker[Session]) -> list[tuple[int, str, int | None]]:
    """(id, status, previous case) of every case, oldest first."""
    with factory() as db:
        return [(c.id, c.status.value, c.previous_case_id)
                for c in db.scalars(select(Case).order_by(Case.id))]


def _set_status(factory: sessionmaker[Session], case_id: int, status: CaseStatus) -> None:
    """Move a case straight to a final state (the loop itself is tested elsewhere)."""
    with session_scope(factory) as db:
        db.get_one(Case, case_id).status = status


def test_reflag_after_closing_opens_a_linked_case(session_factory: sessionmaker[Session]
                                                  ) -> None:
    """Open: updated in place (any open state, parked too). Closed: a new case, linked."""
    places = two_communities(session_factory)
    config = AnalyticsConfig()
    store_cases(session_factory, _flags(places.ref_a), WINDOW, config, T0)
    [(first, _, _)] = _cases(session_factory)
    _set_status(session_factory, first, CaseStatus.PARKED)
    store_cases(session_factory, _flags(places.ref_a), WINDOW, config, T0)
    assert _cases(session_factory) == [(first, "parked", None)]
    _set_status(session_factory, first, CaseStatus.CLOSED)
    _records, report = store_cases(session_factory, _flags(places.ref_a), WINDOW, config, T0)
    assert report.cases_opened == 1
    [_, (second, status, previous)] = _cases(session_factory)
    assert (status, previous) == ("discovered", first)
    with session_factory() as db:
        note = db.scalars(select(CaseEvent.note).where(CaseEvent.case_id == second)).one()
    assert note.endswith(f"(follows case {first})")


def test_a_dismissed_finding_is_not_put_back_unless_it_got_worse(
        session_factory: sessionmaker[Session]) -> None:
    """The same flag after a person dismissed it is a note; a higher tier opens a new case."""
    places = two_communities(session_factory)
    config = AnalyticsConfig(deliver_attention=True)
    store_cases(session_factory, _flags(places.ref_a, "attention", "attention"), WINDOW, config,
                T0)
    [(first, _, _)] = _cases(session_factory)
    with session_scope(session_factory) as db:
        case = db.get_one(Case, first)
        case.status, case.tier = CaseStatus.DISMISSED, RiskTier.ATTENTION
    records, _ = store_cases(session_factory, _flags(places.ref_a, "attention", "attention"),
                             WINDOW, config, T0)
    assert _cases(session_factory) == [(first, "dismissed", None)]
    assert records[0].case_id == first
    with session_factory() as db:
        notes = db.scalars(select(CaseEvent.note).where(CaseEvent.case_id == first)
                           .order_by(CaseEvent.id)).all()
    assert notes[-1].startswith("flag persists after dismissal")
    store_cases(session_factory, _flags(places.ref_a, "key"), WINDOW, config, T0)
    assert _cases(session_factory)[1][1:] == ("discovered", first)
