"""Cases in the back office: the list, one case with its evidence and history, the inbox, exports.

Every view checks the role (``roles_required``) and the community scope (a case outside the
person's communities is a 404, like one that does not exist). Actions go through
``registry.casework.apply``: the page offers only what ``case_flow.allowed`` allows this person,
and the server refuses anything else whatever is posted. Assignment and escalation notices go
out on MQTT and the webhook (``AlertDispatcher``) after the commit.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from typing import Any, cast
from urllib.parse import quote

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.wrappers import Response
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.access import ALL_ROLES, in_scope, roles_required, staff
from portal.audit import record
from portal.services import portal_services
from portal.units import hazard_catalogue
from registry.case_flow import (
    ASSIGNABLE,
    OPEN_STATUSES,
    TRANSITIONS,
    Action,
    Refusal,
    TransitionRefused,
    allowed,
    sla,
)
from registry.casework import Actor, DuePolicy, apply, case_figures
from registry.db import session_scope
from registry.models import (
    Building,
    Case,
    CaseEvent,
    CaseStatus,
    Community,
    Inspection,
    RiskTier,
    Role,
    StaffCommunity,
    StaffUser,
    Unit,
)

LOGGER = logging.getLogger(__name__)
bp = Blueprint("cases", __name__, url_prefix="/admin")
PAGE_SIZE = 50

STATUS_LABELS: dict[str, Any] = {
    "discovered": _l("Discovered, to review"), "reviewed": _l("Registered, to assign"),
    "assigned": _l("Assigned"), "handling": _l("Being handled"), "feedback": _l("Fed back"),
    "verified": _l("Re-checked"), "closed": _l("Closed"), "dismissed": _l("Dismissed"),
    "parked": _l("Parked"),
}
TIER_LABELS: dict[str, Any] = {"key": _l("Key unit"), "attention": _l("Attention unit"),
                               "normal": _l("Normal unit")}
ACTION_LABELS: dict[str, Any] = {
    "confirm": _l("Confirm the finding"), "dismiss": _l("Dismiss"), "assign": _l("Assign"),
    "reassign": _l("Reassign"), "start": _l("Start handling"), "feedback": _l("Give feedback"),
    "verify": _l("Re-check passed"), "rework": _l("Re-check failed: rework"),
    "close": _l("Close the case"), "request_return": _l("Ask to return the case"),
    "request_extension": _l("Ask for more time"), "request_park": _l("Ask to park the case"),
    "approve": _l("Approve the request"), "deny": _l("Deny the request"),
    "resume": _l("Resume handling"), "escalate": _l("Escalated: overdue"),
    "": _l("Note"),
}
REQUEST_LABELS: dict[str, Any] = {"return": _l("return"), "extend": _l("extension"),
                                  "park": _l("parking")}
SLA_LABELS: dict[str, Any] = {"none": "", "on_time": _l("On time"), "near": _l("Due soon"),
                              "overdue": _l("Overdue")}
KIND_LABELS: dict[str, Any] = {"overcrowding": _l("Suspected group rental"),
                               "watchlist": _l("Watchlist sign-in"),
                               "inspection": _l("Inspection finding")}
ROLE_LABELS: dict[str, Any] = {"admin": _l("Administrator"), "supervisor": _l("Supervisor"),
                               "hazard_team": _l("Hazard team"),
                               "grid_worker": _l("Grid worker"), "viewer": _l("Viewer")}
REFUSALS: dict[Refusal, Any] = {
    Refusal.ILLEGAL: _l("This step is not possible for the case as it stands now."),
    Refusal.ROLE: _l("Your role may not take this step."),
    Refusal.NOT_ASSIGNEE: _l("Only the person the case is assigned to may take this step."),
    Refusal.REASON: _l("Please say why (or what was done)."),
    Refusal.ASSIGNEE: _l("That person cannot take cases in this community."),
    Refusal.DAYS: _l("An extension is 1 to 15 days."),
}
# Actions that need a text, and the label of that text on the form.
REASON_LABELS: dict[str, Any] = {
    "dismiss": _l("Why is there nothing to act on?"), "feedback": _l("What was done?"),
    "rework": _l("What is still wrong?"), "request_return": _l("Why return it?"),
    "request_extension": _l("Why is more time needed?"),
    "request_park": _l("Why park it?"), "deny": _l("Why is the request denied?"),
}
EVIDENCE_LABELS: dict[str, Any] = {
    "estimated": _l("Estimated people living there"), "interval": _l("Interval (90 percent)"),
    "registered": _l("Registered occupants"), "confidence": _l(
        "Probability of at least two unregistered people"),
    "nights_observed": _l("Nights observed"), "resident_devices": _l("Resident devices"),
    "persistence": _l("Share of weeks showing the excess"), "coverage": _l("How it is seen"),
    "utility": _l("Utility signal"), "window": _l("Window"), "hazards": _l("Hazards found"),
    "reason": _l("Why the identity is watched"), "ap": _l("Access point"),
    "outcome": _l("Sign-in outcome"), "method": _l("Sign-in method"),
}
OUTCOME_LABELS: dict[str, Any] = {
    "registered": _l("registered resident"), "self_declared": _l("self-declared, unverified"),
    "mismatch": _l("identity does not match the registry"), "visitor": _l("visitor"),
    "sms": _l("SMS code"), "one_tap": _l("one tap on a known device"),
}
COVERAGE_LABELS: dict[str, Any] = {"unit_ap": _l("its own access point"),
                                   "zone": _l("a corridor access point shared on the floor"),
                                   "neighbour_ap": _l("a neighbour's access point, through "
                                                      "the wall"),
                                   "none": _l("no access point")}


class CaseActionForm(FlaskForm):
    """One action on a case: which, and what it needs (reason, assignee, days)."""

    action = StringField(validators=[InputRequired(), Length(max=32)])
    reason = TextAreaField(validators=[Optional(), Length(max=2000)])
    assignee = IntegerField(validators=[Optional()])
    days = IntegerField(validators=[Optional(), NumberRange(min=1, max=15)])


class ExportForm(FlaskForm):
    """Only a CSRF token: nothing else is posted."""


def _actor() -> Actor:
    """The signed-in person as a case actor."""
    person = staff()
    return Actor(person.id, person.username, Role(person.role))


def unit_url(ref: str) -> str:
    """The unit file's address (built by the units blueprint): /admin/units/<ref>."""
    return "/admin/units/" + quote(ref, safe="/")


@bp.app_template_filter("unit_url")
def _unit_url(ref: str) -> str:
    """Template filter: the unit file's address."""
    return unit_url(ref)


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    """Human labels for codes, for every staff template."""
    return {"status_labels": STATUS_LABELS, "tier_labels": TIER_LABELS,
            "action_labels": ACTION_LABELS, "sla_labels": SLA_LABELS,
            "kind_labels": KIND_LABELS, "role_labels": ROLE_LABELS,
            "request_labels": REQUEST_LABELS}


def _cases_query() -> Select[Any]:
    """Cases with their unit and community, limited to the signed-in person's communities."""
    return cast(Select[Any], select(Case, Unit.ref, Community.id, Community.name)
                .join(Unit, Case.unit_id == Unit.id)
                .join(Building, Unit.building_id == Building.id)
                .join(Community, Building.community_id == Community.id)
                .where(in_scope(Community.id)))


def _waiting_on_me() -> ColumnElement[bool]:
    """Cases whose next step is this person's: the states where their role may act.

    Reassigning is always possible for a dispatcher, so it does not make a case wait on them.
    """
    person = staff()
    role = Role(person.role)
    clauses = []
    for (status, pending, action), rule in TRANSITIONS.items():
        if role not in rule.roles or action is Action.REASSIGN:
            continue
        clause = and_(Case.status == status, Case.pending == pending)
        if rule.assignee_only:
            clause = and_(clause, Case.assigned_to_id == person.id)
        clauses.append(clause)
    return or_(*clauses) if clauses else false()


def _filters(statement: Select[Any], now: dt.datetime) -> tuple[Select[Any], dict[str, str]]:
    """Apply the list's filters from the query string; return them for the form."""
    args = {k: request.args.get(k, "").strip()[:32] for k in
            ("status", "tier", "community", "overdue", "mine")}
    if args["status"] == "open":
        statement = statement.where(Case.status.in_(list(OPEN_STATUSES)))
    elif args["status"] in STATUS_LABELS:
        statement = statement.where(Case.status == CaseStatus(args["status"]))
    else:
        args["status"] = ""
    if args["tier"] in TIER_LABELS:
        statement = statement.where(Case.tier == RiskTier(args["tier"]))
    else:
        args["tier"] = ""
    if args["community"].isdigit():
        statement = statement.where(Community.id == int(args["community"]))
    else:
        args["community"] = ""
    if args["overdue"] == "1":
        statement = statement.where(Case.status.in_(
            [CaseStatus.ASSIGNED, CaseStatus.HANDLING, CaseStatus.FEEDBACK,
             CaseStatus.VERIFIED]), Case.due_at < now)
    else:
        args["overdue"] = ""
    if args["mine"] == "1":
        statement = statement.where(Case.assigned_to_id == staff().id)
    else:
        args["mine"] = ""
    return statement, args


def _page() -> int:
    """The page number asked for (1-based)."""
    raw = request.args.get("page", "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


def _rows(db: Session, statement: Select[Any], page: int, now: dt.datetime
          ) -> tuple[list[dict[str, Any]], int]:
    """One page of case rows (with SLA state and assignee name) and the total count."""
    total = db.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    found = db.execute(statement.order_by(Case.opened_at.desc(), Case.id.desc())
                       .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    names = dict(db.execute(select(StaffUser.id, StaffUser.display_name).where(
        StaffUser.id.in_({c.assigned_to_id for c, *_ in found if c.assigned_to_id}))).all())
    rows = [{"case": case, "ref": ref, "community": name,
             "sla": sla(case.status, case.assigned_at, case.due_at, now).value,
             "assignee": names.get(case.assigned_to_id, "")}
            for case, ref, _community_id, name in found]
    return rows, total


def _communities(db: Session) -> list[tuple[int, str]]:
    """The communities the person may filter by."""
    return [(c.id, c.name or c.code) for c in db.scalars(
        select(Community).where(in_scope(Community.id)).order_by(Community.code))]


@bp.get("/cases")
@roles_required(*ALL_ROLES)
def case_list() -> str:
    """All cases in scope, filterable, a page at a time, with how many there are."""
    now = dt.datetime.now(dt.UTC)
    statement, args = _filters(_cases_query(), now)
    page = _page()
    with portal_services().session_factory() as db:
        rows, total = _rows(db, statement, page, now)
        communities = _communities(db)
        # The loop's figures over the person's whole scope (not the filtered page).
        figures = case_figures(db, _cases_query().with_only_columns(Case.id), now)
    return render_template("admin/cases.html", rows=rows, total=total, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), args=args,
                           communities=communities, inbox=False, export=ExportForm(),
                           figures=figures)


@bp.get("/inbox")
@roles_required(*ALL_ROLES)
def inbox() -> str:
    """The cases waiting on the signed-in person, most urgent first."""
    now = dt.datetime.now(dt.UTC)
    statement = _cases_query().where(_waiting_on_me())
    page = _page()
    with portal_services().session_factory() as db:
        total = db.scalar(select(func.count()).select_from(statement.subquery())) or 0
        found = db.execute(statement.order_by(Case.due_at.is_(None), Case.due_at,
                                              Case.opened_at).offset((page - 1) * PAGE_SIZE)
                           .limit(PAGE_SIZE)).all()
        rows = [{"case": case, "ref": ref, "community": name,
                 "sla": sla(case.status, case.assigned_at, case.due_at, now).value,
                 "assignee": ""} for case, ref, _cid, name in found]
    return render_template("admin/cases.html", rows=rows, total=total, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), args={}, communities=[],
                           inbox=True, export=ExportForm())


def _case_in_scope(db: Session, case_id: int) -> tuple[Case, str, int, str]:
    """The case with its unit ref and community, or 404 (missing and out of scope alike)."""
    row = db.execute(_cases_query().where(Case.id == case_id)).first()
    if row is None:
        abort(404)
    case, ref, community_id, community_name = row
    return case, ref, community_id, community_name


def _assignees(db: Session, community_id: int) -> list[tuple[int, str]]:
    """People a case of this community can be assigned to (active handlers in scope)."""
    in_community = select(StaffCommunity.staff_id).where(
        StaffCommunity.community_id == community_id)
    return [(u.id, f"{u.display_name or u.username} · {ROLE_LABELS[u.role.value]}")
            for u in db.scalars(select(StaffUser).where(
                StaffUser.active.is_(True), StaffUser.role.in_(list(ASSIGNABLE)),
                or_(StaffUser.district_wide.is_(True), StaffUser.id.in_(in_community)))
                .order_by(StaffUser.username))]


def evidence_items(evidence: dict[str, Any]) -> list[tuple[Any, str]]:
    """The stored evidence as (label, readable value) pairs, in a sensible order."""
    items: list[tuple[Any, str]] = []
    for key, label in EVIDENCE_LABELS.items():
        if key not in evidence or evidence[key] in (None, [], ""):
            continue
        value = evidence[key]
        if key == "interval":
            text = f"{value[0]:g} – {value[1]:g}"
        elif key in ("confidence", "persistence"):
            text = f"{float(value) * 100:.0f}%"
        elif key == "coverage":
            text = str(COVERAGE_LABELS.get(value, value))
        elif key == "utility":
            text = _("%(ratio).1f× similar units' use per registered person; about %(people)s "
                     "people", ratio=float(value.get("ratio") or 0),
                     people=value.get("estimated_people", "?"))
        elif key == "window":
            text = _("%(start)s to %(end)s (%(nights)s nights)", start=value.get("start"),
                     end=value.get("end"), nights=value.get("nights"))
        elif key in ("outcome", "method"):
            text = str(OUTCOME_LABELS.get(value, value))
        elif key == "hazards":
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        items.append((label, text))
    return items


@bp.get("/cases/<int:case_id>")
@roles_required(*ALL_ROLES)
def case_detail(case_id: int) -> str:
    """One case: what was found, its history, and the steps this person may take now."""
    now = dt.datetime.now(dt.UTC)
    person = staff()
    with portal_services().session_factory() as db:
        case, ref, community_id, community_name = _case_in_scope(db, case_id)
        events = list(db.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id)
                                 .order_by(CaseEvent.at, CaseEvent.id)))
        assignee = db.get(StaffUser, case.assigned_to_id) if case.assigned_to_id else None
        actions = allowed(case.status, case.pending, Role(person.role),
                          case.assigned_to_id == person.id)
        assignees = _assignees(db, community_id) if {Action.ASSIGN, Action.REASSIGN} & set(
            actions) else []
        followed_by = db.scalar(select(Case.id).where(Case.previous_case_id == case_id))
        # On-site inspections tied to the case (its feedback, or notes), photos included.
        inspections = list(db.scalars(select(Inspection).where(Inspection.case_id == case_id)
                                      .options(selectinload(Inspection.photos))
                                      .order_by(Inspection.at)))
    _audit("view_case", f"case:{case_id}")
    return render_template(
        "admin/case.html", case=case, ref=ref, community=community_name, events=events,
        assignee=assignee, actions=actions, assignees=assignees, form=CaseActionForm(),
        evidence=evidence_items(case.evidence or {}), reason_labels=REASON_LABELS,
        sla=sla(case.status, case.assigned_at, case.due_at, now).value,
        followed_by=followed_by, inspections=inspections, catalogue=hazard_catalogue(),
        show_photos=person.role != Role.VIEWER.value)  # photos may show people: not viewers


def _audit(action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
    """An audit entry in its own transaction."""
    with session_scope(portal_services().session_factory) as db:
        record(db, staff().username, action, subject, detail, request.remote_addr or "")


@bp.post("/cases/<int:case_id>/act")
@roles_required(*ALL_ROLES)
def case_act(case_id: int) -> Any:
    """Take one step on a case; the server checks state, role, assignee, scope and reason."""
    form = CaseActionForm()
    services = portal_services()
    if not form.validate_on_submit():
        flash(_("The form was not accepted (expired or incomplete). Please try again."), "error")
        return redirect(url_for("cases.case_detail", case_id=case_id), code=303)
    try:
        action = Action(form.action.data)
    except ValueError:
        abort(400)
    try:
        with session_scope(services.session_factory) as db:
            case, _ref, _cid, _name = _case_in_scope(db, case_id)
            notices = apply(db, case, _actor(), action, reason=form.reason.data or "",
                            assignee_id=form.assignee.data, days=form.days.data,
                            policy=DuePolicy.from_settings(services.settings))
            record(db, staff().username, f"case_{action.value}", f"case:{case_id}", {},
                   request.remote_addr or "")
    except TransitionRefused as refused:
        LOGGER.info("case %s: %s refused for %s: %s", case_id, action.value,
                    staff().username, refused)
        flash(str(REFUSALS[refused.why]), "error")
        status = 403 if refused.why in (Refusal.ROLE, Refusal.NOT_ASSIGNEE) else (
            422 if refused.why in (Refusal.REASON, Refusal.DAYS, Refusal.ASSIGNEE) else 409)
        return case_detail(case_id), status
    for item in notices:  # after the commit: never a notice for a change that did not happen
        services.alerts.dispatch(item["kind"], item)
    flash(_("Done: %(action)s.", action=ACTION_LABELS[action.value]), "info")
    return redirect(url_for("cases.case_detail", case_id=case_id), code=303)


EXPORT_COLUMNS = ("id", "kind", "status", "tier", "unit", "community", "opened_at",
                  "assigned_to", "assigned_at", "due_at", "sla", "closed_at", "pending",
                  "previous_case_id", "estimated", "registered")


def _export_rows(now: dt.datetime) -> list[dict[str, Any]]:
    """The filtered cases in scope, as flat records (no resident's personal data)."""
    statement, _args = _filters(_cases_query(), now)
    with portal_services().session_factory() as db:
        found = db.execute(statement.order_by(Case.id).limit(100_000)).all()
        users = dict(db.execute(select(StaffUser.id, StaffUser.username)).all())
        codes = dict(db.execute(select(Community.id, Community.code)).all())
    iso = (lambda t: t.astimezone(dt.UTC).isoformat() if t else "")  # noqa: E731
    return [{
        "id": c.id, "kind": c.kind, "status": c.status.value, "tier": c.tier.value,
        "unit": ref, "community": codes.get(cid, ""), "opened_at": iso(c.opened_at),
        "assigned_to": users.get(c.assigned_to_id, ""), "assigned_at": iso(c.assigned_at),
        "due_at": iso(c.due_at), "sla": sla(c.status, c.assigned_at, c.due_at, now).value,
        "closed_at": iso(c.closed_at), "pending": c.pending,
        "previous_case_id": c.previous_case_id or "",
        "estimated": (c.evidence or {}).get("estimated", ""),
        "registered": (c.evidence or {}).get("registered", ""),
        "updated_at": iso(c.updated_at),
    } for c, ref, cid, _name in found]


@bp.get("/cases.csv")
@roles_required(*ALL_ROLES)
def export_csv() -> Response:
    """The filtered cases as CSV (UTF-8 with a byte-order mark, so spreadsheets read Chinese)."""
    rows = _export_rows(dt.datetime.now(dt.UTC))
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _audit("export_cases", "", {"format": "csv", "rows": len(rows)})
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": "attachment; filename=cases.csv"})


# Open311 GeoReport v2 statuses are only "open" and "closed".
def open311(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    """One case as an Open311 GeoReport v2 service request (georeport.org, "GET requests")."""
    status_notes = str(STATUS_LABELS.get(row["status"], row["status"]))
    return {
        "service_request_id": str(row["id"]),
        "status": "closed" if row["status"] in ("closed", "dismissed") else "open",
        "status_notes": status_notes,
        "service_name": str(KIND_LABELS.get(row["kind"], row["kind"])),
        "service_code": row["kind"],
        "description": f"{row['unit']}: {TIER_LABELS.get(row['tier'], row['tier'])}",
        "agency_responsible": row["assigned_to"],
        "service_notice": row["sla"],
        "requested_datetime": row["opened_at"],
        "updated_datetime": row["updated_at"],
        "expected_datetime": row["due_at"] or None,
        "address": row["unit"],
        "address_id": row["unit"],
        "zipcode": None,
        "lat": None,  # the registry has no coordinates; units are addressed by reference
        "long": None,
        "media_url": None,
        "url": base_url.rstrip("/") + url_for("cases.case_detail", case_id=row["id"]),
    }


@bp.get("/cases.json")
@roles_required(*ALL_ROLES)
def export_open311() -> Response:
    """The filtered cases as a JSON array of Open311 GeoReport v2 service requests."""
    rows = _export_rows(dt.datetime.now(dt.UTC))
    base = portal_services().settings.portal_public_url
    body = [open311(row, base) for row in rows]
    _audit("export_cases", "", {"format": "open311", "rows": len(rows)})
    return Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")
