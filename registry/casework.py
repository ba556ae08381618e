"""Cases in the database: apply a transition, record it, start and stop the SLA clock, escalate.

``apply`` checks the transition against ``registry.case_flow`` (state, role, assignee, reason)
and refuses it otherwise; every transition writes a ``CaseEvent`` (who, when, what, why).
Assignments and escalations return *notice* records (docs/contracts.md §5: kinds
``case_assigned`` and ``case_escalated``) for the caller to send on MQTT and the webhook after
its commit: a notice never goes out for a change that did not happen.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.case_flow import (
    ASSIGNABLE,
    CLOCK_STATUSES,
    MAX_EXTENSION_DAYS,
    NONE,
    OPEN_STATUSES,
    Action,
    Refusal,
    TransitionRefused,
    check,
    due_days,
)
from registry.models import (
    ONE_OPEN_CASE_INDEX,
    Alert,
    Building,
    Case,
    CaseEvent,
    CaseRequest,
    CaseStatus,
    Community,
    Resident,
    RiskTier,
    Role,
    StaffUser,
    Unit,
)

LOGGER = logging.getLogger(__name__)
SYSTEM = "system"
NOTICE_ASSIGNED = "case_assigned"
NOTICE_ESCALATED = "case_escalated"
WATCHLIST = "watchlist"
# What a watchlist case keeps of its alert: identifiers and codes, never a name or a number.
WATCHLIST_EVIDENCE = ("alert_id", "signin_id", "ap", "outcome", "method", "reason")


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (id, user name, role)."""

    id: int
    username: str
    role: Role


@dataclass(frozen=True)
class DuePolicy:
    """Days from assignment to the due time, by tier (WIFI_CENSUS_CASE_DUE_DAYS_*)."""

    key: int = 3
    attention: int = 7
    normal: int = 15

    @classmethod
    def from_settings(cls, settings: Any) -> DuePolicy:
        """From the settings object."""
        return cls(settings.case_due_days_key, settings.case_due_days_attention,
                   settings.case_due_days_normal)

    def days(self, tier: RiskTier) -> int:
        """Days for a tier."""
        return due_days(tier, self.key, self.attention, self.normal)


def is_duplicate_open_case(error: IntegrityError) -> bool:
    """Whether an insert failed because the unit already has an open case of that kind."""
    text = str(error.orig)
    # PostgreSQL names the index; SQLite names the columns of a unique index it broke.
    return (ONE_OPEN_CASE_INDEX in text
            or "UNIQUE constraint failed: cases.unit_id, cases.kind" in text)


def community_of(session: Session, case: Case) -> Community:
    """The community a case's unit belongs to."""
    return session.scalars(select(Community).join(Building).join(Unit)
                           .where(Unit.id == case.unit_id)).one()


def staff_covers(staff: StaffUser, community_id: int) -> bool:
    """Whether a staff member's scope includes a community."""
    return staff.district_wide or any(c.id == community_id for c in staff.communities)


def notice(session: Session, kind: str, case: Case, now: dt.datetime) -> dict[str, Any]:
    """A notice record for a case (ids and codes only: no resident's data)."""
    unit = session.get(Unit, case.unit_id)
    community = community_of(session, case)
    assignee = session.get(StaffUser, case.assigned_to_id) if case.assigned_to_id else None
    return {
        "v": 1, "kind": kind, "case_id": case.id, "case_kind": case.kind,
        "unit": unit.ref if unit else "", "community": community.code,
        "tier": case.tier.value, "status": case.status.value,
        "assignee": assignee.username if assignee else "",
        "due_at": case.due_at.astimezone(dt.UTC).isoformat() if case.due_at else None,
        "generated_at": int(now.timestamp()),
    }


def apply(session: Session, case: Case, actor: Actor, action: Action, *, reason: str = "",
          assignee_id: int | None = None, days: int | None = None,
          now: dt.datetime | None = None, policy: DuePolicy | None = None,
          ) -> list[dict[str, Any]]:
    """Take an action on a case, or raise TransitionRefused; return the notices it causes."""
    now = now or dt.datetime.now(dt.UTC)
    policy = policy or DuePolicy()
    reason = reason.strip()
    before = case.status
    rule = check(case.status, case.pending, action, actor.role,
                 case.assigned_to_id is not None and case.assigned_to_id == actor.id, reason)
    notices: list[str] = []
    detail = reason
    if action in (Action.ASSIGN, Action.REASSIGN):
        assignee = _assignee(session, case, assignee_id)
        if action is Action.ASSIGN:
            case.assigned_at = now
            case.due_at = now + dt.timedelta(days=policy.days(case.tier))
            case.escalated_at = None
        case.assigned_to_id = assignee.id
        detail = f"→ {assignee.username}" + (f": {reason}" if reason else "")
        notices.append(NOTICE_ASSIGNED)
    elif rule.sets_request:
        if rule.sets_request == CaseRequest.EXTEND.value:
            if days is None or not 1 <= days <= MAX_EXTENSION_DAYS:
                raise TransitionRefused(Refusal.DAYS, f"{days}")
            case.pending_days = days
            detail = f"+{days} d: {reason}"
        case.pending = rule.sets_request
        case.pending_by = actor.username
        case.pending_reason = reason
    elif action is Action.APPROVE:
        detail = _approve(case, now, reason)
    elif action is Action.DENY:
        detail = f"{case.pending}: {reason}"
        _clear_request(case)
    elif action is Action.RESUME and case.parked_at is not None and case.due_at is not None:
        # Parking stopped the clock: the due time moves on by the time the case was parked.
        case.due_at += now - case.parked_at
        case.parked_at = None
    case.status = rule.to
    if rule.to is CaseStatus.CLOSED or rule.to is CaseStatus.DISMISSED:
        case.closed_at = now
    case.updated_at = now
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor.username, action=action.value,
                          from_status=before.value, to_status=rule.to.value, note=detail))
    session.flush()
    LOGGER.info("case %s: %s by %s (%s → %s)", case.id, action.value, actor.username,
                before.value, rule.to.value)
    return [notice(session, kind, case, now) for kind in notices]


def _assignee(session: Session, case: Case, assignee_id: int | None) -> StaffUser:
    """The staff member a case is assigned to, checked: active, a handler, in scope."""
    staff = session.get(StaffUser, assignee_id) if assignee_id is not None else None
    if (staff is None or not staff.active or staff.role not in ASSIGNABLE
            or not staff_covers(staff, community_of(session, case).id)):
        raise TransitionRefused(Refusal.ASSIGNEE, f"{assignee_id}")
    return staff


def _approve(case: Case, now: dt.datetime, reason: str) -> str:
    """Carry out the pending request; return the history note."""
    request = case.pending
    note = f"{request}: {case.pending_reason}" + (f" — {reason}" if reason else "")
    if request == CaseRequest.EXTEND.value and case.due_at is not None:
        case.due_at += dt.timedelta(days=case.pending_days or 0)
        case.escalated_at = None  # a new due time: a new escalation if it is missed again
        note = f"+{case.pending_days} d — " + note
    elif request == CaseRequest.RETURN.value:
        # Back for dispatch: the clock and the assignee go; the next assignment restarts them.
        case.assigned_to_id = None
        case.assigned_at = None
        case.due_at = None
        case.escalated_at = None
    elif request == CaseRequest.PARK.value:
        case.parked_at = now
    _clear_request(case)
    return note


def _clear_request(case: Case) -> None:
    """No request pending any more."""
    case.pending = NONE
    case.pending_by = ""
    case.pending_reason = ""
    case.pending_days = None


def escalate_overdue(session: Session, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Escalate every running case past its due time, once per due time; return the notices."""
    now = now or dt.datetime.now(dt.UTC)
    overdue = list(session.scalars(
        select(Case).where(Case.status.in_(list(CLOCK_STATUSES)), Case.due_at < now,
                           Case.escalated_at.is_(None)).order_by(Case.due_at)))
    notices = []
    for case in overdue:
        assert case.due_at is not None  # selected by due_at < now
        late = now - case.due_at
        case.escalated_at = now
        session.add(CaseEvent(case_id=case.id, at=now, actor=SYSTEM, action="escalate",
                              from_status=case.status.value, to_status=case.status.value,
                              note=f"overdue by {late.days} d {late.seconds // 3600} h"))
        session.flush()
        notices.append(notice(session, NOTICE_ESCALATED, case, now))
    if overdue:
        LOGGER.warning("escalated %d overdue case(s)", len(overdue))
    return notices


@dataclass(frozen=True)
class CaseFigures:
    """How the loop is doing (the district's measures: 结案率, 按期结案率, and rework)."""

    open_by_tier: dict[str, int]
    overdue: int
    closed: int
    closed_on_time: int
    finished_or_open: int  # every case but the dismissed ones
    fed_back: int  # cases that reached feedback at least once
    reworked: int  # of those, sent back at least once by a failed re-check

    @property
    def closure_rate(self) -> float | None:
        """Share of (not dismissed) cases closed."""
        return self.closed / self.finished_or_open if self.finished_or_open else None

    @property
    def on_time_rate(self) -> float | None:
        """Share of closed cases closed by their due time."""
        return self.closed_on_time / self.closed if self.closed else None

    @property
    def rework_rate(self) -> float | None:
        """Share of fed-back cases that failed a re-check at least once."""
        return self.reworked / self.fed_back if self.fed_back else None


def case_figures(session: Session, case_ids: Any, now: dt.datetime | None = None
                 ) -> CaseFigures:
    """The loop's figures over the cases whose ids ``case_ids`` (a subquery) selects."""
    now = now or dt.datetime.now(dt.UTC)
    mine = Case.id.in_(case_ids)
    open_by_tier = {tier.value: count for tier, count in session.execute(
        select(Case.tier, func.count()).where(mine, Case.status.in_(list(OPEN_STATUSES)))
        .group_by(Case.tier)).all()}
    overdue = session.scalar(select(func.count()).where(
        mine, Case.status.in_(list(CLOCK_STATUSES)), Case.due_at < now)) or 0
    closed = session.scalar(select(func.count()).where(
        mine, Case.status == CaseStatus.CLOSED)) or 0
    on_time = session.scalar(select(func.count()).where(
        mine, Case.status == CaseStatus.CLOSED, Case.due_at.is_not(None),
        Case.closed_at <= Case.due_at)) or 0
    counted = session.scalar(select(func.count()).where(
        mine, Case.status != CaseStatus.DISMISSED)) or 0
    events = and_(CaseEvent.case_id.in_(case_ids))
    fed_back = session.scalar(select(func.count(distinct(CaseEvent.case_id))).where(
        events, CaseEvent.action == Action.FEEDBACK.value)) or 0
    reworked = session.scalar(select(func.count(distinct(CaseEvent.case_id))).where(
        events, CaseEvent.action == Action.REWORK.value)) or 0
    return CaseFigures(open_by_tier, overdue, closed, on_time, counted, fed_back, reworked)


def open_watchlist_cases(session: Session, now: dt.datetime | None = None) -> int:
    """Put every watchlist alert into a case of its unit (the resident's, or the AP's unit).

    A unit with an open watchlist case gets the alert as a note on it rather than a second
    case. Alerts that name no unit and no resident (a visitor on a corridor AP) stay alerts:
    a case needs a place to send someone to. Returns the number of cases opened.
    """
    now = now or dt.datetime.now(dt.UTC)
    alerts = list(session.scalars(
        select(Alert).where(Alert.kind == WATCHLIST, Alert.case_id.is_(None),
                            (Alert.unit_id.is_not(None)) | (Alert.resident_id.is_not(None)))
        .order_by(Alert.at, Alert.id)))
    opened = 0
    for alert in alerts:
        unit_id = alert.unit_id
        if unit_id is None and alert.resident_id is not None:
            unit_id = session.scalar(select(Resident.unit_id).where(
                Resident.id == alert.resident_id))
        if unit_id is None:
            continue
        evidence = {k: alert.payload.get(k) for k in WATCHLIST_EVIDENCE if k in alert.payload}
        evidence["alert_id"] = alert.id
        case = session.scalar(select(Case).where(
            Case.unit_id == unit_id, Case.kind == WATCHLIST,
            Case.status.in_(list(OPEN_STATUSES))).order_by(Case.id))
        if case is None:
            case = Case(unit_id=unit_id, kind=WATCHLIST, status=CaseStatus.DISCOVERED,
                        tier=RiskTier.KEY, evidence=evidence, opened_at=alert.at,
                        updated_at=now)
            session.add(case)
            session.flush()
            session.add(CaseEvent(case_id=case.id, at=now, actor=SYSTEM, action="",
                                  from_status="", to_status=CaseStatus.DISCOVERED.value,
                                  note=f"opened: watchlist sign-in (alert {alert.id})"))
            opened += 1
        else:
            case.updated_at = now
            session.add(CaseEvent(case_id=case.id, at=now, actor=SYSTEM, action="",
                                  from_status=case.status.value, to_status=case.status.value,
                                  note=f"another watchlist sign-in (alert {alert.id})"))
        alert.case_id = case.id
        session.flush()
    if opened:
        LOGGER.info("opened %d watchlist case(s)", opened)
    return opened
