"""The overview per district, community or building: people, tiers, the case loop, freshness.

The back office's one start page (``/admin/``; the old counts page ``/admin/overview/``
redirects here, filters kept). Registered people are the registry's active residents (not
today's sign-ins); estimated people come from analytics' latest estimates; live presence and
silent APs from the collector's Redis sets; the last analytics run from ``unit_estimates``;
the case loop's stages and rates from ``registry.casework.case_figures``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, cast

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import func, select, true
from werkzeug.wrappers import Response

from analytics.heatmaps import natural_key
from census.channels import RedisKeys
from portal.access import OPERATORS, in_scope
from portal.admin import alerts_in_scope, roles_required
from portal.scope import EVERY_ROLE, S, audit, services, staff
from registry.case_flow import OPEN_STATUSES
from registry.casework import case_figures
from registry.models import (
    AccessPoint,
    Alert,
    Building,
    Case,
    CaseStatus,
    Community,
    Resident,
    RiskTier,
    SignIn,
    Unit,
    UnitEstimate,
)

LOGGER = logging.getLogger(__name__)
bp = Blueprint("overview", __name__, url_prefix="/admin")

PRESENCE_WINDOW_S = 900
AGE_BUCKETS = ((7, "under_7"), (30, "7_30"), (None, "over_30"))  # days open
# Where the open cases stand in the loop: the overview's columns, by case state.
STAGES: dict[str, tuple[CaseStatus, ...]] = {
    "to_review": (CaseStatus.DISCOVERED,),
    "to_dispatch": (CaseStatus.REVIEWED,),
    "in_handling": (CaseStatus.ASSIGNED, CaseStatus.HANDLING),
    # Parked cases are approved to wait (their SLA clock stops): not counted as being handled.
    "parked": (CaseStatus.PARKED,),
    "to_verify": (CaseStatus.FEEDBACK, CaseStatus.VERIFIED),
}


def _age_bucket(opened: dt.datetime, now: dt.datetime) -> str:
    """The age bucket of a case opened at ``opened``."""
    days = (now - opened).days
    for limit, name in AGE_BUCKETS:
        if limit is None or days < limit:
            return name
    return AGE_BUCKETS[-1][1]


def _filtered(statement: S, community_id: int | None, building_id: int | None) -> S:
    """A statement over Unit (joined to Building) limited to a community and/or building."""
    joined = statement.join(Building, Unit.building_id == Building.id).where(
        in_scope(Building.community_id))  # never past the person's communities
    if community_id is not None:
        joined = joined.where(Building.community_id == community_id)
    if building_id is not None:
        joined = joined.where(Building.id == building_id)
    return cast(S, joined)


@bp.get("/overview/")
@roles_required(*EVERY_ROLE)
def old_counts() -> Response:
    """The counts page's old address: the overview, with the same filters."""
    kept: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("community", "building")}
    return redirect(url_for("overview.index", **kept), code=301)


@bp.get("/")
@roles_required(*EVERY_ROLE)
def index() -> str:
    """Counts for the district, a community (``?community=``) or a building (``?building=``)."""
    person = staff()
    services_ = services()
    now = dt.datetime.now(dt.UTC)
    with services_.session_factory() as db:
        communities = [c for c in db.scalars(select(Community).order_by(Community.code))
                       if person.covers(c.id)]
        requested = request.args.get("community", type=int)
        community_id = requested if requested in {c.id for c in communities} else None
        if community_id is None and len(communities) == 1 and not person.district_wide:
            community_id = communities[0].id
        buildings = [] if community_id is None else sorted(
            db.scalars(select(Building).where(Building.community_id == community_id)),
            key=lambda b: natural_key(b.code))
        building_id = request.args.get("building", type=int)
        if building_id not in {b.id for b in buildings}:
            building_id = None
        scope = (community_id, building_id)
        units = db.scalar(_filtered(select(func.count(Unit.id)), *scope)) or 0
        registered = db.scalar(_filtered(select(func.count(Resident.id)).select_from(Resident)
                                         .join(Unit, Resident.unit_id == Unit.id), *scope)
                               .where(Resident.move_out.is_(None))) or 0
        registered_declared = db.scalar(_filtered(
            select(func.coalesce(func.sum(Unit.registered_occupants), 0)), *scope)) or 0
        estimated, last_run, analysed = db.execute(_filtered(
            select(func.coalesce(func.sum(UnitEstimate.estimated), 0.0),
                   func.max(UnitEstimate.generated_at), func.count(UnitEstimate.id))
            .select_from(UnitEstimate).join(Unit, UnitEstimate.unit_id == Unit.id),
            *scope)).one()
        tiers = {RiskTier(t).value: n for t, n in db.execute(_filtered(
            select(Unit.risk_tier, func.count(Unit.id)), *scope).group_by(Unit.risk_tier))}
        open_cases = db.execute(_filtered(
            select(Case.tier, Case.opened_at).select_from(Case)
            .join(Unit, Case.unit_id == Unit.id), *scope)
            .where(Case.status.in_(list(OPEN_STATUSES)))).all()
        by_status = {CaseStatus(s).value: n for s, n in db.execute(_filtered(
            select(Case.status, func.count(Case.id)).select_from(Case)
            .join(Unit, Case.unit_id == Unit.id), *scope).group_by(Case.status))}
        figures = case_figures(db, _filtered(select(Case.id).select_from(Case).join(
            Unit, Case.unit_id == Unit.id), *scope), now)
        signins, open_alerts = _today(db, scope)
        aps = list(db.scalars(select(AccessPoint.ap_id).join(
            Building, AccessPoint.building_id == Building.id).where(
            in_scope(Building.community_id),
            *([Building.community_id == community_id] if community_id is not None else []),
            *([Building.id == building_id] if building_id is not None else []))))
    cases: dict[str, dict[str, int]] = {t.value: {name: 0 for _, name in AGE_BUCKETS}
                                        for t in RiskTier}
    for tier, opened in open_cases:
        cases[RiskTier(tier).value][_age_bucket(opened, now)] += 1
    present, silent = _live(aps)
    stages = {name: sum(by_status.get(s.value, 0) for s in states)
              for name, states in STAGES.items()}
    audit("view_overview", f"community:{community_id or 'all'}",
          {"building": building_id})
    return render_template(
        "admin/overview.html", communities=communities, buildings=buildings,
        community_id=community_id, building_id=building_id, units=units,
        registered=registered, registered_declared=registered_declared,
        estimated=float(estimated or 0.0), analysed=analysed, last_run=last_run,
        tiers=tiers, cases=cases, open_total=len(open_cases), present=present,
        aps=len(aps), silent=silent, age_buckets=[name for _, name in AGE_BUCKETS],
        can_choose_community=len(communities) > 1, stages=stages, figures=figures,
        closed=by_status.get(CaseStatus.CLOSED.value, 0), signins=signins,
        open_alerts=open_alerts, operator=person.role in OPERATORS)


def _today(db: Any, scope: tuple[int | None, int | None]) -> tuple[dict[str, int], int]:
    """Today's sign-ins by outcome and the alerts not yet acknowledged, in the filter's units.

    Sign-ins and alerts that name no unit (visitors on a corridor AP) count for district-wide
    staff on the district's page only, as on the lists.
    """
    start = dt.datetime.now(services().settings.tz).replace(hour=0, minute=0, second=0,
                                                             microsecond=0)
    everything = staff().district_wide and scope == (None, None)
    units = _filtered(select(Unit.id), *scope)
    in_signins = true() if everything else SignIn.unit_id.in_(units)
    by_outcome = {str(o): int(n) for o, n in db.execute(
        select(SignIn.outcome, func.count()).where(SignIn.at >= start, in_signins)
        .group_by(SignIn.outcome)).all()}
    in_alerts = alerts_in_scope() if everything else Alert.unit_id.in_(units)
    open_alerts = db.scalar(select(func.count()).select_from(Alert).where(
        Alert.acknowledged_at.is_(None), in_alerts)) or 0
    return by_outcome, int(open_alerts)


def _live(aps: list[str]) -> tuple[int, int]:
    """Devices seen in the last 15 minutes over these APs, and APs that saw none."""
    if not aps:
        return 0, 0
    keys = RedisKeys(services().settings.redis_key_prefix)
    since = time.time() - PRESENCE_WINDOW_S
    pipe = services().redis.pipeline(transaction=False)
    for ap in aps:
        pipe.zcount(keys.here_ap(ap), since, "+inf")
    counts = [int(n) for n in pipe.execute()]
    return sum(counts), sum(1 for n in counts if n == 0)
