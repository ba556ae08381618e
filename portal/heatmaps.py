"""Presence heatmaps in the back office: per building, floors x units, from analytics' estimates.

The page draws them in the browser with Apache ECharts served by the portal itself (no CDN:
the back office may sit on a closed network); the data comes as JSON from here, read from
``unit_estimates`` (written by every ``analytics run``), and as CSV for export. Floors are in
numeric order; a unit with no observed night is *no data*, drawn apart from *nobody* (0).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from analytics.heatmaps import natural_key
from portal.admin import roles_required
from portal.scope import EVERY_ROLE, audit, building_or_404, scoped_units, services
from registry.models import Building, Community, Unit, UnitEstimate

LOGGER = logging.getLogger(__name__)
bp = Blueprint("heatmaps", __name__, url_prefix="/admin/heatmaps")

STATE_DATA = "data"
STATE_NO_DATA = "no_data"


def building_grid(units: Sequence[Unit], estimates: dict[int, UnitEstimate]) -> dict[str, Any]:
    """Floors x positions of a building's units with each unit's estimate (pure).

    Floors ascend numerically (1, 2, ..., 10, 11; basements below); units on a floor are in
    natural order of their code. A unit without an estimate or without an observed night is
    *no data*.
    """
    floors = sorted({u.floor for u in units})
    by_floor: dict[int, list[Unit]] = {f: [] for f in floors}
    for unit in units:
        by_floor[unit.floor].append(unit)
    width = max((len(v) for v in by_floor.values()), default=0)
    cells: list[dict[str, Any]] = []
    for y, floor in enumerate(floors):
        for x, unit in enumerate(sorted(by_floor[floor], key=lambda u: natural_key(u.code))):
            estimate = estimates.get(unit.id)
            observed = estimate is not None and estimate.nights_observed > 0
            cell: dict[str, Any] = {
                "x": x, "y": y, "ref": unit.ref, "code": unit.code, "floor": unit.floor,
                "registered": unit.registered_occupants,
                "state": STATE_DATA if observed else STATE_NO_DATA,
                "tier": unit.risk_tier.value, "flag": "", "estimated": None, "low": None,
                "high": None, "excess": None, "nights_observed": 0,
            }
            if estimate is not None:
                cell.update(flag=estimate.flag, nights_observed=estimate.nights_observed,
                            low=estimate.low, high=estimate.high)
                if observed:
                    cell["estimated"] = estimate.estimated
                    cell["excess"] = round(estimate.estimated - unit.registered_occupants, 2)
            cells.append(cell)
    return {"floors": [str(f) for f in floors], "columns": [str(i + 1) for i in range(width)],
            "cells": cells}


def building_trend(units: Sequence[Unit], estimates: dict[int, UnitEstimate]
                   ) -> dict[str, Any]:
    """People-like devices present at night per window night, summed over the building."""
    rows = [estimates[u.id] for u in units if u.id in estimates]
    if not rows:
        return {"nights": [], "present": [], "registered": 0}
    latest = max(rows, key=lambda e: e.generated_at)
    current = [e for e in rows if e.window_end == latest.window_end
               and e.window_start == latest.window_start]
    n = max((len(e.nights) for e in current), default=0)
    present: list[float | None] = []
    for i in range(n):
        values = [e.nights[i] for e in current if i < len(e.nights) and e.nights[i] is not None]
        present.append(round(sum(values), 2) if values else None)
    nights = [(latest.window_start + dt.timedelta(days=i)).isoformat() for i in range(n)]
    return {"nights": nights, "present": present,
            "registered": sum(u.registered_occupants for u in units)}


def chart_labels() -> dict[str, str]:
    """Chart texts in the page's language (the script itself holds no words)."""
    return {
        "title": _("Estimated minus registered people, per unit"),
        "floor": _("Floor"), "position": _("Unit on the floor"),
        "registered": _("Registered"), "estimated": _("Estimated"),
        "interval": _("Likely range (90%)"), "nights": _("Nights observed"),
        "no_data": _("No data (no night observed)"), "flagged": _("Flagged"),
        "excess": _("People above registered"), "save": _("Save as PNG"),
        "trend": _("People-like devices at night, whole building"),
        "present": _("Present at night"), "unit": _("Unit"),
        "hour": _("Hour (from 06:00)"), "night": _("Night"),
        "unit_title": _("People-like devices by hour and night"),
        "unit_trend": _("People-like devices at night"),
        "nobody": _("Nobody"), "no_data_short": _("no data"),
    }


def _building_data(building_id: int) -> tuple[Building, Community, dict[str, Any]]:
    """The building, its community and its heatmap data (scope checked)."""
    with services().session_factory() as db:
        building, community = building_or_404(db, building_id)
        units = list(db.scalars(select(Unit).where(Unit.building_id == building.id)))
        estimates = {e.unit_id: e for e in db.scalars(select(UnitEstimate).where(
            UnitEstimate.unit_id.in_([u.id for u in units])))}
        data = building_grid(units, estimates)
        data["trend"] = building_trend(units, estimates)
        latest = max(estimates.values(), key=lambda e: e.generated_at, default=None)
        data["window"] = None if latest is None else {
            "start": latest.window_start.isoformat(), "end": latest.window_end.isoformat(),
            "generated_at": latest.generated_at.isoformat()}
        data["building"] = {"id": building.id, "code": building.code, "name": building.name,
                            "community": community.code}
        return building, community, data


@bp.get("/")
@roles_required(*EVERY_ROLE)
def index() -> str:
    """Buildings in scope, with their unit counts and flagged units."""
    with services().session_factory() as db:
        statement = scoped_units(
            select(Building.id, Building.code, Building.name, Community.code,
                   func.count(Unit.id), func.count(UnitEstimate.id).filter(
                       UnitEstimate.flag != ""))
            .select_from(Unit)
            .outerjoin(UnitEstimate, UnitEstimate.unit_id == Unit.id))
        statement = statement.join(Community, Building.community_id == Community.id).group_by(
            Building.id, Building.code, Building.name, Community.code)
        rows = sorted(db.execute(statement).all(),
                      key=lambda r: (natural_key(r[3]), natural_key(r[1])))
    return render_template("admin/heatmaps.html", buildings=rows)


@bp.get("/buildings/<int:building_id>")
@roles_required(*EVERY_ROLE)
def building(building_id: int) -> str:
    """A building's heatmap page (the chart is drawn by static/js/heatmap.js)."""
    found, community, data = _building_data(building_id)
    audit("view_building_heatmap", f"building:{community.code}/{found.code}")
    return render_template("admin/heatmap_building.html", building=found, community=community,
                           data=data)


@bp.get("/buildings/<int:building_id>.json")
@roles_required(*EVERY_ROLE)
def building_json(building_id: int) -> Response:
    """A building's heatmap data with links to each unit's file and the chart's labels."""
    _building, _community, data = _building_data(building_id)
    for cell in data["cells"]:
        cell["url"] = url_for("units.unit_file", ref=cell["ref"])
    data["labels"] = chart_labels()
    return jsonify(data)


def _csv_text(value: Any) -> str:
    """A cell for a spreadsheet: text that a spreadsheet would run as a formula is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/buildings/<int:building_id>.csv")
@roles_required(*EVERY_ROLE)
def building_csv(building_id: int) -> Response:
    """The building's heatmap as CSV: one row per unit; empty night cells are no data."""
    found, community, data = _building_data(building_id)
    nights = data["trend"]["nights"]
    with services().session_factory() as db:
        estimates = {e.unit.ref: e for e in db.scalars(
            select(UnitEstimate).join(Unit, UnitEstimate.unit_id == Unit.id)
            .where(Unit.building_id == found.id))}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["unit", "floor", "code", "registered", "estimated", "low", "high",
                     "nights_observed", "state", "flag", "tier", *nights])
    for cell in data["cells"]:
        estimate = estimates.get(cell["ref"])
        per_night = list(estimate.nights) if estimate is not None else []
        per_night += [None] * (len(nights) - len(per_night))
        writer.writerow([_csv_text(v) for v in (
            cell["ref"], cell["floor"], cell["code"], cell["registered"], cell["estimated"],
            cell["low"], cell["high"], cell["nights_observed"], cell["state"], cell["flag"],
            cell["tier"], *per_night[:len(nights)])])
    audit("export_heatmap_csv", f"building:{community.code}/{found.code}",
          {"rows": len(data["cells"])})
    name = f"heatmap_{community.code}_{found.code}.csv".replace("/", "_")
    return Response(out.getvalue().encode("utf-8-sig"), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


