"""Cases in the registry: the whole loop, requests, refusals, escalation (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.case_flow import Action, Refusal, TransitionRefused
from registry.casework import Actor, DuePolicy, apply, escalate_overdue
from registry.db import session_scope
from registry.models import Case, CaseEvent, CaseRequest, CaseStatus, RiskTier, Role
from tests.cases_common import make_case, make_staff, two_communities
from tests.common import expected_transitions

T0 = dt.datetime(2026, 11, 2, 1, tzinfo=dt.UTC)


def _act(factory: sessionmaker[Session], case_id: int, actor: Actor, action: Action,
         now: dt.datetime = T0, **kwargs: object) -> list[dict]:
    """Apply one action in its own transaction."""
    with session_scope(factory) as db:
        return apply(db, db.get_one(Case, case_id), actor, action, now=now,
                     policy=DuePolicy(3, 7, 15), **kwargs)  # type: ignore[arg-type]


def _case(factory: sessionmaker[Session], case_id: int) -> Case:
    """A case as stored."""
    with factory() as db:
        return db.get_one(Case, case_id)


def test_a_case_goes_round_the_whole_loop_with_rework(
        session_factory: sessionmaker[Session]) -> None:
    """Review, dispatch (clock by tier), handle, feed back, failed re-check, verify, close."""
    places = two_communities(session_factory)
    boss = Actor(make_staff(session_factory, "boss", "supervisor", [places.community_a]),
                 "boss", Role.SUPERVISOR)
    worker_id = make_staff(session_factory, "grid", "grid_worker", [places.community_a])
    worker = Actor(worker_id, "grid", Role.GRID_WORKER)
    case_id = make_case(session_factory, places.unit_a, CaseStatus.DISCOVERED,
                        tier=RiskTier.ATTENTION)
    assert _act(session_factory, case_id, boss, Action.CONFIRM) == []
    notices = _act(session_factory, case_id, boss, Action.ASSIGN, assignee_id=worker_id)
    stored = _case(session_factory, case_id)
    assert stored.status is CaseStatus.ASSIGNED and stored.assigned_at == T0
    assert stored.due_at == T0 + dt.timedelta(days=7)  # attention: 7 days
    assert [(n["kind"], n["assignee"], n["unit"], n["community"]) for n in notices] == [
        ("case_assigned", "grid", places.ref_a, "TEDA-001")]
    _act(session_factory, case_id, worker, Action.START)
    _act(session_factory, case_id, worker, Action.FEEDBACK, reason="4 people moved out")
    _act(session_factory, case_id, boss, Action.REWORK, reason="bunk beds still there")
    assert _case(session_factory, case_id).status is CaseStatus.HANDLING
    _act(session_factory, case_id, worker, Action.FEEDBACK, reason="beds removed")
    _act(session_factory, case_id, boss, Action.VERIFY)
    _act(session_factory, case_id, boss, Action.CLOSE)
    stored = _case(session_factory, case_id)
    assert stored.status is CaseStatus.CLOSED and stored.closed_at == T0
    with session_factory() as db:
        history = [(e.actor, e.action, e.from_status, e.to_status, e.note) for e in db.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))][1:]
    assert history == [
        ("boss", "confirm", "discovered", "reviewed", ""),
        ("boss", "assign", "reviewed", "assigned", "→ grid"),
        ("grid", "start", "assigned", "handling", ""),
        ("grid", "feedback", "handling", "feedback", "4 people moved out"),
        ("boss", "rework", "feedback", "handling", "bunk beds still there"),
        ("grid", "feedback", "handling", "feedback", "beds removed"),
        ("boss", "verify", "feedback", "verified", ""),
        ("boss", "close", "verified", "closed", ""),
    ]


# Requests only ever wait on running cases; other combinations cannot be stored.
STORABLE = [(s, p, a) for s, p, a in itertools.product(CaseStatus, ["", *CaseRequest], Action)
            if not p or s in (CaseStatus.ASSIGNED, CaseStatus.HANDLING)]


def test_the_server_refuses_every_illegal_transition(
        session_factory: sessionmaker[Session]) -> None:
    """Through the database, every storable (state, request, action): the allowed ones succeed
    for a fit actor (an administrator or the assignee); no other does, and changes nothing."""
    places = two_communities(session_factory)
    admin = Actor(make_staff(session_factory, "admin", "admin", district_wide=True),
                  "admin", Role.ADMIN)
    worker_id = make_staff(session_factory, "grid", "grid_worker", [places.community_a])
    other_id = make_staff(session_factory, "grid2", "grid_worker", [places.community_a])
    worker = Actor(worker_id, "grid", Role.GRID_WORKER)
    wrong = []
    for status, pending, action in STORABLE:
        case_id = make_case(session_factory, places.unit_a, status, pending, assignee=worker_id,
                            kind="inspection")
        expected = expected_transitions().get((status.value, pending, action.value))
        results: list[str] = []
        for actor in (admin, worker):
            try:
                _act(session_factory, case_id, actor, action, reason="because", days=2,
                     assignee_id=other_id)
            except TransitionRefused as refused:
                results.append(refused.why.value)
            else:
                results.append(_case(session_factory, case_id).status.value)
                break
        if expected is None:
            stored = _case(session_factory, case_id)
            if results != ["illegal", "illegal"] or (stored.status, stored.pending) != (
                    status, pending):
                wrong.append((status.value, pending, action.value, results))
        elif results[-1] != expected:
            wrong.append((status.value, pending, action.value, results))
    assert len(STORABLE) == 9 * 15 + 2 * 3 * 15 and wrong == []


def test_requests_wait_for_a_supervisor(session_factory: sessionmaker[Session]) -> None:
    """Extension moves the due time; parking stops the clock; return sends it back."""
    places = two_communities(session_factory)
    boss = Actor(make_staff(session_factory, "boss", "supervisor", [places.community_a]),
                 "boss", Role.SUPERVISOR)
    worker_id = make_staff(session_factory, "team", "hazard_team", [places.community_a])
    worker = Actor(worker_id, "team", Role.HAZARD_TEAM)
    case_id = make_case(session_factory, places.unit_a, CaseStatus.HANDLING,
                        assignee=worker_id, now=T0)
    due = _case(session_factory, case_id).due_at
    assert due is not None
    with pytest.raises(TransitionRefused) as refused:
        _act(session_factory, case_id, worker, Action.REQUEST_EXTENSION, reason="away", days=30)
    assert refused.value.why is Refusal.DAYS
    _act(session_factory, case_id, worker, Action.REQUEST_EXTENSION, reason="landlord away",
         days=4)
    with pytest.raises(TransitionRefused):  # nothing else moves it while the request waits
        _act(session_factory, case_id, worker, Action.FEEDBACK, reason="done")
    with pytest.raises(TransitionRefused) as refused:  # the assignee cannot approve
        _act(session_factory, case_id, worker, Action.APPROVE)
    assert refused.value.why is Refusal.ROLE
    _act(session_factory, case_id, boss, Action.APPROVE)
    stored = _case(session_factory, case_id)
    assert stored.due_at == due + dt.timedelta(days=4) and stored.pending == ""

    _act(session_factory, case_id, worker, Action.REQUEST_PARK, reason="owner abroad")
    _act(session_factory, case_id, boss, Action.DENY, reason="call the owner")
    assert _case(session_factory, case_id).status is CaseStatus.HANDLING
    _act(session_factory, case_id, worker, Action.REQUEST_PARK, reason="owner abroad")
    _act(session_factory, case_id, boss, Action.APPROVE, now=T0 + dt.timedelta(days=1))
    assert _case(session_factory, case_id).status is CaseStatus.PARKED
    _act(session_factory, case_id, boss, Action.RESUME, now=T0 + dt.timedelta(days=3))
    stored = _case(session_factory, case_id)
    assert stored.status is CaseStatus.HANDLING
    assert stored.due_at == due + dt.timedelta(days=4 + 2)  # two days parked

    _act(session_factory, case_id, worker, Action.REQUEST_RETURN, reason="not our area")
    _act(session_factory, case_id, boss, Action.APPROVE)
    stored = _case(session_factory, case_id)
    assert stored.status is CaseStatus.REVIEWED
    assert (stored.assigned_to_id, stored.due_at) == (None, None)


def test_a_case_is_assigned_only_to_a_handler_in_its_community(
        session_factory: sessionmaker[Session]) -> None:
    """Out-of-scope, inactive, viewer and unknown assignees are refused."""
    places = two_communities(session_factory)
    admin = Actor(make_staff(session_factory, "admin", "admin", district_wide=True),
                  "admin", Role.ADMIN)
    elsewhere = make_staff(session_factory, "b-grid", "grid_worker", [places.community_b])
    viewer = make_staff(session_factory, "viewer", "viewer", [places.community_a])
    everywhere = make_staff(session_factory, "d-team", "hazard_team", district_wide=True)
    case_id = make_case(session_factory, places.unit_a, CaseStatus.REVIEWED)
    for bad in (elsewhere, viewer, 999_999):
        with pytest.raises(TransitionRefused) as refused:
            _act(session_factory, case_id, admin, Action.ASSIGN, assignee_id=bad)
        assert refused.value.why is Refusal.ASSIGNEE
    assert _case(session_factory, case_id).status is CaseStatus.REVIEWED
    _act(session_factory, case_id, admin, Action.ASSIGN, assignee_id=everywhere)
    assert _case(session_factory, case_id).assigned_to_id == everywhere


def test_overdue_cases_are_escalated_once_per_due_time(
        session_factory: sessionmaker[Session]) -> None:
    """Past due: one escalation notice and event; an approved extension re-arms it."""
    places = two_communities(session_factory)
    boss = Actor(make_staff(session_factory, "boss", "supervisor", [places.community_a]),
                 "boss", Role.SUPERVISOR)
    worker_id = make_staff(session_factory, "grid", "grid_worker", [places.community_a])
    late = make_case(session_factory, places.unit_a, CaseStatus.HANDLING, assignee=worker_id,
                     now=T0)
    make_case(session_factory, places.unit_a, CaseStatus.HANDLING, assignee=worker_id, now=T0,
              due_days=10, kind="inspection")
    make_case(session_factory, places.unit_b, CaseStatus.PARKED, assignee=worker_id, now=T0)
    later = T0 + dt.timedelta(days=4)
    with session_scope(session_factory) as db:
        notices = escalate_overdue(db, later)
    assert [(n["kind"], n["case_id"], n["assignee"]) for n in notices] == [
        ("case_escalated", late, "grid")]
    with session_scope(session_factory) as db:
        assert escalate_overdue(db, later + dt.timedelta(hours=1)) == []
        events = db.scalars(select(CaseEvent.note).where(CaseEvent.case_id == late,
                                                         CaseEvent.action == "escalate")).all()
    assert events == ["overdue by 1 d 0 h"]
    _act(session_factory, late, Actor(worker_id, "grid", Role.GRID_WORKER),
         Action.REQUEST_EXTENSION, reason="more time", days=3, now=later)
    _act(session_factory, late, boss, Action.APPROVE, now=later)
    with session_scope(session_factory) as db:
        assert escalate_overdue(db, later + dt.timedelta(hours=1)) == []  # due moved on
        assert len(escalate_overdue(db, later + dt.timedelta(days=3))) == 1


def test_the_loops_figures_count_closure_on_time_and_rework(
        session_factory: sessionmaker[Session]) -> None:
    """结案率, 按期结案率 and rework over the cases asked about (another community's left out)."""
    from registry.casework import case_figures

    places = two_communities(session_factory)
    boss = Actor(make_staff(session_factory, "boss", "supervisor", [places.community_a]),
                 "boss", Role.SUPERVISOR)
    worker_id = make_staff(session_factory, "grid", "grid_worker", [places.community_a])
    worker = Actor(worker_id, "grid", Role.GRID_WORKER)
    on_time = make_case(session_factory, places.unit_a, CaseStatus.HANDLING, assignee=worker_id,
                        now=T0)
    late = make_case(session_factory, places.unit_a, CaseStatus.HANDLING, assignee=worker_id,
                     now=T0, kind="inspection")
    for case_id, finish in ((on_time, T0 + dt.timedelta(days=1)),
                            (late, T0 + dt.timedelta(days=5))):
        _act(session_factory, case_id, worker, Action.FEEDBACK, reason="done", now=finish)
        if case_id == late:
            _act(session_factory, case_id, boss, Action.REWORK, reason="not done", now=finish)
            _act(session_factory, case_id, worker, Action.FEEDBACK, reason="done", now=finish)
        _act(session_factory, case_id, boss, Action.VERIFY, now=finish)
        _act(session_factory, case_id, boss, Action.CLOSE, now=finish)
    make_case(session_factory, places.unit_a, CaseStatus.DISMISSED)
    make_case(session_factory, places.unit_a, CaseStatus.DISCOVERED, tier=RiskTier.NORMAL,
              kind="inspection")
    make_case(session_factory, places.unit_a, CaseStatus.HANDLING, assignee=worker_id, now=T0,
              kind="watchlist")
    make_case(session_factory, places.unit_b, CaseStatus.HANDLING, assignee=worker_id, now=T0)
    in_a = select(Case.id).join(Case.unit).where(Case.unit_id == places.unit_a)
    with session_factory() as db:
        figures = case_figures(db, in_a, T0 + dt.timedelta(days=10))
    assert figures.open_by_tier == {"key": 1, "normal": 1}
    assert figures.overdue == 1 and (figures.closed, figures.closed_on_time) == (2, 1)
    assert figures.closure_rate == 2 / 4 and figures.on_time_rate == 0.5
    assert (figures.fed_back, figures.reworked, figures.rework_rate) == (2, 1, 0.5)


def test_watchlist_alerts_become_cases_to_review(session_factory: sessionmaker[Session]) -> None:
    """One case per unit (later alerts join it), the resident's unit when the AP names none;
    a visitor with neither stays an alert. Evidence keeps ids and codes only."""
    from registry.casework import open_watchlist_cases
    from registry.models import Alert, IdType, Resident

    places = two_communities(session_factory)
    with session_scope(session_factory) as db:
        resident = Resident(unit_id=places.unit_b, name_encrypted=b"x", name_digest="n",
                            id_type=IdType.PASSPORT,
                            id_number_encrypted=b"x", id_digest="d" * 64, id_last4="1234")
        db.add(resident)
        db.flush()
        payload = {"v": 1, "kind": "watchlist", "ap": "ap-1", "outcome": "self_declared",
                   "method": "sms", "reason": "case 17", "signin_id": 5}
        alerts = [Alert(kind="watchlist", at=T0, unit_id=places.unit_a, payload=payload),
                  Alert(kind="watchlist", at=T0, unit_id=places.unit_a, payload=payload),
                  Alert(kind="watchlist", at=T0, resident_id=resident.id, payload=payload),
                  Alert(kind="watchlist", at=T0, payload=payload)]
        db.add_all(alerts)
        db.flush()
        ids = [a.id for a in alerts]
    with session_scope(session_factory) as db:
        assert open_watchlist_cases(db, T0) == 2
    with session_scope(session_factory) as db:
        assert open_watchlist_cases(db, T0) == 0  # each alert once
        cases = {c.unit_id: c for c in db.scalars(select(Case).where(Case.kind == "watchlist"))}
        assert set(cases) == {places.unit_a, places.unit_b}
        case_a = cases[places.unit_a]
        assert (case_a.status, case_a.tier) == (CaseStatus.DISCOVERED, RiskTier.KEY)
        assert case_a.evidence == {"alert_id": ids[0], "signin_id": 5, "ap": "ap-1",
                                   "outcome": "self_declared", "method": "sms",
                                   "reason": "case 17"}
        linked = dict(db.execute(select(Alert.id, Alert.case_id)).all())
        assert linked == {ids[0]: case_a.id, ids[1]: case_a.id,
                          ids[2]: cases[places.unit_b].id, ids[3]: None}
        notes = db.scalars(select(CaseEvent.note).where(CaseEvent.case_id == case_a.id)
                           .order_by(CaseEvent.id)).all()
        assert notes == [f"opened: watchlist sign-in (alert {ids[0]})",
                         f"another watchlist sign-in (alert {ids[1]})"]
