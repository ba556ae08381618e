"""The case state machine, as data: which action moves a case from which state, and who may.

Pure: no database, no clock. ``registry.casework`` applies a transition to a stored case and
records it; the portal shows only the actions ``allowed`` offers and the server refuses the rest.

The district's loop (数字城管): 受理 discovered → 立案 reviewed (a person confirms or dismisses the
automated finding before anyone is sent: PIPL art. 24) → 派遣 assigned (the SLA clock starts) →
处置 handling → 反馈 feedback → 核查 verified (a failed re-check goes back to handling as rework)
→ 结案 closed. 回退 return, 延期 extension and 挂账 park are *requests* by the assignee that a
supervisor approves or denies; while one waits, nothing else moves the case.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from registry.models import CaseRequest, CaseStatus, RiskTier, Role


class Action(enum.StrEnum):
    """Everything a person can do to a case."""

    CONFIRM = "confirm"  # 立案: the finding is real
    DISMISS = "dismiss"  # the finding is not (reason required)
    ASSIGN = "assign"  # 派遣: to a person, with a due date by tier
    REASSIGN = "reassign"  # to another person; the due date stays
    START = "start"  # the assignee takes it on
    FEEDBACK = "feedback"  # 反馈: what was done
    VERIFY = "verify"  # 核查 passed
    REWORK = "rework"  # 核查 failed: back to handling (reason required)
    CLOSE = "close"  # 结案
    REQUEST_RETURN = "request_return"  # 回退
    REQUEST_EXTENSION = "request_extension"  # 延期
    REQUEST_PARK = "request_park"  # 挂账
    APPROVE = "approve"  # a supervisor grants the pending request
    DENY = "deny"  # a supervisor refuses it (reason required)
    RESUME = "resume"  # a parked case goes back to handling


# Who may do what. Dispatch, approval and verification are the supervisors' (and the
# administrators'); handling is the assignee's own; reviewing is also the hazard team's.
DISPATCHERS = frozenset({Role.ADMIN, Role.SUPERVISOR})
REVIEWERS = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.HAZARD_TEAM})
HANDLERS = frozenset({Role.HAZARD_TEAM, Role.GRID_WORKER})
# Who a case can be assigned to.
ASSIGNABLE = HANDLERS
# States in which a person still has to act (the others are final).
OPEN_STATUSES = frozenset(CaseStatus) - {CaseStatus.CLOSED, CaseStatus.DISMISSED}
# States in which the SLA clock runs (parking stops it).
CLOCK_STATUSES = frozenset({CaseStatus.ASSIGNED, CaseStatus.HANDLING, CaseStatus.FEEDBACK,
                            CaseStatus.VERIFIED})
NEAR_DUE_SHARE = 0.8  # a case is "near due" once 80% of its time is used
MAX_EXTENSION_DAYS = 15  # 延期: at most 15 days at a time, with approval

S = CaseStatus
A = Action
NONE = ""  # no request pending


@dataclass(frozen=True)
class Rule:
    """One allowed transition: where it leads, who may take it, what it needs."""

    to: CaseStatus
    roles: frozenset[Role]
    assignee_only: bool = False  # only the person the case is assigned to
    reason: bool = False  # a reason (or, for feedback, what was done) is required
    sets_request: str = NONE  # the request this action files


def _request(status: CaseStatus, kind: CaseRequest) -> Rule:
    """The assignee files a request; the case stays where it is until it is decided."""
    return Rule(status, HANDLERS, assignee_only=True, reason=True, sets_request=kind.value)


# (state, pending request, action) → rule. Every pair not listed is refused.
TRANSITIONS: dict[tuple[CaseStatus, str, Action], Rule] = {
    (S.DISCOVERED, NONE, A.CONFIRM): Rule(S.REVIEWED, REVIEWERS),
    (S.DISCOVERED, NONE, A.DISMISS): Rule(S.DISMISSED, REVIEWERS, reason=True),
    (S.REVIEWED, NONE, A.ASSIGN): Rule(S.ASSIGNED, DISPATCHERS),
    (S.REVIEWED, NONE, A.DISMISS): Rule(S.DISMISSED, DISPATCHERS, reason=True),
    (S.ASSIGNED, NONE, A.REASSIGN): Rule(S.ASSIGNED, DISPATCHERS),
    (S.ASSIGNED, NONE, A.START): Rule(S.HANDLING, HANDLERS, assignee_only=True),
    (S.ASSIGNED, NONE, A.REQUEST_RETURN): _request(S.ASSIGNED, CaseRequest.RETURN),
    (S.ASSIGNED, NONE, A.REQUEST_EXTENSION): _request(S.ASSIGNED, CaseRequest.EXTEND),
    (S.HANDLING, NONE, A.REASSIGN): Rule(S.ASSIGNED, DISPATCHERS),
    (S.HANDLING, NONE, A.FEEDBACK): Rule(S.FEEDBACK, HANDLERS, assignee_only=True,
                                          reason=True),
    (S.HANDLING, NONE, A.REQUEST_RETURN): _request(S.HANDLING, CaseRequest.RETURN),
    (S.HANDLING, NONE, A.REQUEST_EXTENSION): _request(S.HANDLING, CaseRequest.EXTEND),
    (S.HANDLING, NONE, A.REQUEST_PARK): _request(S.HANDLING, CaseRequest.PARK),
    (S.FEEDBACK, NONE, A.VERIFY): Rule(S.VERIFIED, DISPATCHERS),
    (S.FEEDBACK, NONE, A.REWORK): Rule(S.HANDLING, DISPATCHERS, reason=True),
    (S.VERIFIED, NONE, A.CLOSE): Rule(S.CLOSED, DISPATCHERS),
    (S.PARKED, NONE, A.RESUME): Rule(S.HANDLING, DISPATCHERS),
    # Decisions on requests. Approving a return sends the case back for dispatch; approving
    # an extension moves the due date; approving parking stops the clock.
    (S.ASSIGNED, CaseRequest.RETURN.value, A.APPROVE): Rule(S.REVIEWED, DISPATCHERS),
    (S.ASSIGNED, CaseRequest.RETURN.value, A.DENY): Rule(S.ASSIGNED, DISPATCHERS, reason=True),
    (S.ASSIGNED, CaseRequest.EXTEND.value, A.APPROVE): Rule(S.ASSIGNED, DISPATCHERS),
    (S.ASSIGNED, CaseRequest.EXTEND.value, A.DENY): Rule(S.ASSIGNED, DISPATCHERS, reason=True),
    (S.HANDLING, CaseRequest.RETURN.value, A.APPROVE): Rule(S.REVIEWED, DISPATCHERS),
    (S.HANDLING, CaseRequest.RETURN.value, A.DENY): Rule(S.HANDLING, DISPATCHERS, reason=True),
    (S.HANDLING, CaseRequest.EXTEND.value, A.APPROVE): Rule(S.HANDLING, DISPATCHERS),
    (S.HANDLING, CaseRequest.EXTEND.value, A.DENY): Rule(S.HANDLING, DISPATCHERS, reason=True),
    (S.HANDLING, CaseRequest.PARK.value, A.APPROVE): Rule(S.PARKED, DISPATCHERS),
    (S.HANDLING, CaseRequest.PARK.value, A.DENY): Rule(S.HANDLING, DISPATCHERS, reason=True),
}


class Refusal(enum.StrEnum):
    """Why a transition is refused."""

    ILLEGAL = "illegal"  # not possible from this state
    ROLE = "role"  # this role may not
    NOT_ASSIGNEE = "not_assignee"  # only the assignee may
    REASON = "reason"  # a reason is required
    ASSIGNEE = "assignee"  # that person cannot take this case (role, scope, inactive)
    DAYS = "days"  # an extension needs 1 to MAX_EXTENSION_DAYS days


class TransitionRefused(Exception):
    """The server refuses a transition; ``why`` says which check failed."""

    def __init__(self, why: Refusal, detail: str = "") -> None:
        super().__init__(f"{why.value}: {detail}" if detail else why.value)
        self.why = why


def rule_for(status: CaseStatus, pending: str, action: Action) -> Rule | None:
    """The rule for an action in a state, or None when the state machine has no such edge."""
    return TRANSITIONS.get((status, pending, action))


def check(status: CaseStatus, pending: str, action: Action, role: Role, is_assignee: bool,
          reason: str = "") -> Rule:
    """The rule that lets this actor take this action, or raise TransitionRefused."""
    rule = rule_for(status, pending, action)
    if rule is None:
        raise TransitionRefused(Refusal.ILLEGAL, f"{action.value} from {status.value}"
                                + (f" with {pending} pending" if pending else ""))
    if role not in rule.roles:
        raise TransitionRefused(Refusal.ROLE, f"{role.value} may not {action.value}")
    if rule.assignee_only and not is_assignee:
        raise TransitionRefused(Refusal.NOT_ASSIGNEE, action.value)
    if rule.reason and not reason.strip():
        raise TransitionRefused(Refusal.REASON, action.value)
    return rule


def allowed(status: CaseStatus, pending: str, role: Role, is_assignee: bool) -> list[Action]:
    """The actions this actor may take on a case in this state (what the page offers)."""
    return [action for (state, waiting, action), rule in TRANSITIONS.items()
            if state == status and waiting == pending and role in rule.roles
            and (is_assignee or not rule.assignee_only)]


def due_days(tier: RiskTier, key: int, attention: int, normal: int) -> int:
    """Days a case of this tier has from assignment (settings WIFI_CENSUS_CASE_DUE_DAYS_*)."""
    return {RiskTier.KEY: key, RiskTier.ATTENTION: attention, RiskTier.NORMAL: normal}[tier]


class Sla(enum.StrEnum):
    """Where a case stands against its due time."""

    NONE = "none"  # no clock: not yet assigned, parked or finished
    ON_TIME = "on_time"
    NEAR = "near"  # 80% of the time used
    OVERDUE = "overdue"


def sla(status: CaseStatus, assigned_at: dt.datetime | None, due_at: dt.datetime | None,
        now: dt.datetime) -> Sla:
    """The case's SLA state at ``now``."""
    if status not in CLOCK_STATUSES or assigned_at is None or due_at is None:
        return Sla.NONE
    if now > due_at:
        return Sla.OVERDUE
    total = (due_at - assigned_at).total_seconds()
    used = (now - assigned_at).total_seconds()
    if total <= 0 or used >= NEAR_DUE_SHARE * total:
        return Sla.NEAR
    return Sla.ON_TIME
