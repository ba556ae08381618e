"""The case state machine: every (state, request, action) triple, every role, the SLA clock."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from registry.case_flow import (
    TRANSITIONS,
    Action,
    Refusal,
    Sla,
    TransitionRefused,
    allowed,
    check,
    sla,
)
from registry.models import CaseRequest, CaseStatus, Role
from tests.common import expected_transitions

ALL_TRIPLES = list(itertools.product(CaseStatus, ["", *CaseRequest], Action))
EVERYONE = [(role, assignee) for role in Role for assignee in (False, True)]


@pytest.mark.parametrize(("status", "pending", "action"), ALL_TRIPLES,
                         ids=[f"{s.value}+{p or '-'}:{a.value}" for s, p, a in ALL_TRIPLES])
def test_exactly_the_district_loop_is_allowed(status: CaseStatus, pending: str,
                                              action: Action) -> None:
    """Allowed triples succeed for someone and lead where the loop says; all others refused."""
    expected = expected_transitions().get((status.value, pending, action.value))
    outcomes = []
    for role, assignee in EVERYONE:
        try:
            outcomes.append(check(status, pending, action, role, assignee, "a reason").to.value)
        except TransitionRefused as refused:
            outcomes.append(refused.why)
    if expected is None:
        assert set(outcomes) == {Refusal.ILLEGAL}
    else:
        assert expected in outcomes and Refusal.ILLEGAL not in outcomes


def test_the_module_table_is_the_expected_table() -> None:
    """Nothing allowed that the district's loop does not have (and nothing missing)."""
    assert {(s.value, p, a.value): r.to.value for (s, p, a), r in TRANSITIONS.items()
            } == expected_transitions()


# Who may take each action (an allowed triple), and whether they must be the assignee.
WHO = {
    "confirm": ({Role.ADMIN, Role.SUPERVISOR, Role.HAZARD_TEAM}, False),
    "dismiss": None,  # depends on the state: see test below
    "assign": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "reassign": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "start": ({Role.HAZARD_TEAM, Role.GRID_WORKER}, True),
    "feedback": ({Role.HAZARD_TEAM, Role.GRID_WORKER}, True),
    "request_return": ({Role.HAZARD_TEAM, Role.GRID_WORKER}, True),
    "request_extension": ({Role.HAZARD_TEAM, Role.GRID_WORKER}, True),
    "request_park": ({Role.HAZARD_TEAM, Role.GRID_WORKER}, True),
    "approve": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "deny": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "verify": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "rework": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "close": ({Role.ADMIN, Role.SUPERVISOR}, False),
    "resume": ({Role.ADMIN, Role.SUPERVISOR}, False),
}


@pytest.mark.parametrize("triple", sorted(expected_transitions()), ids="+".join)
def test_each_transition_checks_role_and_assignee(triple: tuple[str, str, str]) -> None:
    """Only the roles named may act; handler actions only by the case's own assignee."""
    status, pending, action = CaseStatus(triple[0]), triple[1], Action(triple[2])
    if action is Action.DISMISS:
        roles = ({Role.ADMIN, Role.SUPERVISOR, Role.HAZARD_TEAM}
                 if status is CaseStatus.DISCOVERED else {Role.ADMIN, Role.SUPERVISOR})
        must_be_assignee = False
    else:
        roles, must_be_assignee = WHO[action.value]  # type: ignore[misc]
    for role, assignee in EVERYONE:
        ok = role in roles and (assignee or not must_be_assignee)
        try:
            check(status, pending, action, role, assignee, "a reason")
        except TransitionRefused as refused:
            assert not ok, f"{role} (assignee={assignee}) refused: {refused}"
            assert refused.why in (Refusal.ROLE, Refusal.NOT_ASSIGNEE)
        else:
            assert ok, f"{role} (assignee={assignee}) was let through"
        assert (action in allowed(status, pending, role, assignee)) is ok


def test_viewers_can_do_nothing() -> None:
    """A viewer reads only: no state offers a viewer any action."""
    assert not any(allowed(s, p, Role.VIEWER, a) for s, p, _ in ALL_TRIPLES for a in (0, 1))


@pytest.mark.parametrize("triple", sorted(t for t, r in ((k, v) for k, v in TRANSITIONS.items())
                                          if r.reason), ids=lambda t: f"{t[0]}+{t[1]}:{t[2]}")
def test_reasons_are_required_where_the_loop_asks_why(triple: tuple) -> None:
    """Dismissal, rework, denial, feedback and every request need words, not blanks."""
    status, pending, action = triple
    role = Role.GRID_WORKER if TRANSITIONS[triple].assignee_only else Role.ADMIN
    with pytest.raises(TransitionRefused) as refused:
        check(status, pending, action, role, True, "   ")
    assert refused.value.why is Refusal.REASON


def test_a_case_cannot_close_without_feedback_and_verification() -> None:
    """The only way into closed is from verified, and into verified from feedback."""
    into = {(s, a) for (s, _p, a), r in TRANSITIONS.items() if r.to is CaseStatus.CLOSED}
    assert into == {(CaseStatus.VERIFIED, Action.CLOSE)}
    into = {(s, a) for (s, _p, a), r in TRANSITIONS.items() if r.to is CaseStatus.VERIFIED}
    assert into == {(CaseStatus.FEEDBACK, Action.VERIFY)}


T0 = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)


@pytest.mark.parametrize(("status", "hours", "expected"), [
    (CaseStatus.ASSIGNED, 0, Sla.ON_TIME),
    (CaseStatus.HANDLING, 57.5, Sla.ON_TIME),  # 79.9% of 72 h
    (CaseStatus.HANDLING, 57.6, Sla.NEAR),  # 80%
    (CaseStatus.FEEDBACK, 72, Sla.NEAR),
    (CaseStatus.VERIFIED, 72.01, Sla.OVERDUE),
    (CaseStatus.PARKED, 100, Sla.NONE),  # the clock stops while parked
    (CaseStatus.CLOSED, 100, Sla.NONE),
    (CaseStatus.REVIEWED, 100, Sla.NONE),
])
def test_sla_is_near_at_80_percent_and_overdue_past_due(status: CaseStatus, hours: float,
                                                        expected: Sla) -> None:
    """A 3-day case: near after 57.6 h, overdue after 72 h; no clock outside the loop."""
    due = T0 + dt.timedelta(days=3)
    assert sla(status, T0, due, T0 + dt.timedelta(hours=hours)) is expected
