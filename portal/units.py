"""One file per unit (一户一档) and the unit's QR code.

``/admin/units/<ref>`` gathers everything known about a unit: the unit, its registered residents
(masked), their devices, the latest estimate with its evidence, presence heatmaps, utility
readings, inspections and every case with its history. Opening it is audited. Each unit has a
QR code (printable sheets per building, a page per floor) whose URL carries the unit's
unguessable ``qr_token``; scanning it opens the unit's inspection page (portal.inspections).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
import time
from pathlib import Path
from typing import Any

import qrcode
from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as WerkzeugResponse

from analytics.config import DAY_START_HOUR, AnalyticsConfig
from analytics.flags import HazardCategory, load_hazards
from analytics.heatmaps import natural_key, unpack_hour_night
from census.channels import RedisKeys
from portal.access import DISPATCHERS
from portal.admin import roles_required
from portal.audit import record
from portal.heatmaps import chart_labels
from portal.scope import (
    ALL_STAFF,
    QR_MANAGERS,
    audit,
    building_or_404,
    services,
    staff,
    unit_or_404,
)
from registry.db import bump_registry_version, session_scope
from registry.models import (
    Case,
    Device,
    Inspection,
    Resident,
    StaffUser,
    Unit,
    UnitEstimate,
    UtilityReading,
    new_qr_token,
)

LOGGER = logging.getLogger(__name__)
bp = Blueprint("units", __name__, url_prefix="/admin")

PRESENCE_WINDOW_S = 900  # the collector's live-presence horizon (docs/contracts.md section 7)
READINGS_SHOWN = 24


def hazard_catalogue() -> dict[str, HazardCategory]:
    """The hazard catalogue analytics tiers by: the one WIFI_CENSUS_ANALYTICS_CONFIG names
    (its ``hazards_path``), else analytics/hazards.json, so both read the same list."""
    configured = services().settings.analytics_config
    config = (AnalyticsConfig.from_file(Path(configured)) if configured
              else AnalyticsConfig())
    return load_hazards(Path(config.hazards_path))


def present_now(unit_ref: str) -> int:
    """Devices the collector saw in the unit in the last 15 minutes (Redis live presence)."""
    settings = services().settings
    key = RedisKeys(settings.redis_key_prefix).here_unit(unit_ref)
    return int(services().redis.zcount(key, time.time() - PRESENCE_WINDOW_S, "+inf"))


def qr_url(token: str) -> str:
    """The URL a unit's QR code carries: the back office's address as staff phones reach it."""
    settings = services().settings
    base = (settings.portal_admin_public_url or settings.portal_public_url).rstrip("/")
    return f"{base}{url_for('inspections.scan', token=token)}"


@functools.lru_cache(maxsize=8192)
def qr_svg_data_uri(text: str) -> str:
    """A QR code as an SVG data URI (the page's CSP allows data: images; no files, no script).

    qrcode finds the version and the best mask (the slow part, ~40 ms a code here); the SVG is
    one path written here from its module matrix (the library's SVG writer cost 30 ms more).
    Codes are cached by URL: a building's sheet is drawn once until its tokens change.
    """
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()  # with the quiet zone (border)
    size = len(matrix)
    path = "".join(f"M{x} {y}h1v1h-1z" for y, row in enumerate(matrix)
                   for x, dark in enumerate(row) if dark)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
           f'shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/>'
           f'<path d="{path}" fill="#000"/></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("ascii")).decode("ascii")


@bp.get("/units/<path:ref>")
@roles_required(*ALL_STAFF)
def unit_file(ref: str) -> str:
    """Everything known about one unit; the opening is written to the audit log."""
    with services().session_factory() as db:
        unit = unit_or_404(db, ref)
        building, community = unit.building, unit.building.community
        residents = list(db.scalars(select(Resident).where(Resident.unit_id == unit.id)
                                    .order_by(Resident.move_out.is_not(None), Resident.id)))
        devices = list(db.scalars(select(Device).where(
            Device.resident_id.in_([r.id for r in residents])).order_by(Device.bound_at)))
        estimate = db.scalar(select(UnitEstimate).where(UnitEstimate.unit_id == unit.id))
        readings = list(db.scalars(select(UtilityReading).where(
            UtilityReading.unit_id == unit.id).order_by(UtilityReading.period_start.desc(),
                                                         UtilityReading.kind)
            .limit(READINGS_SHOWN)))
        inspections = list(db.scalars(select(Inspection).where(Inspection.unit_id == unit.id)
                                      .options(selectinload(Inspection.photos))
                                      .order_by(Inspection.at.desc())))
        cases = list(db.scalars(select(Case).where(Case.unit_id == unit.id)
                                .options(selectinload(Case.events))
                                .order_by(Case.opened_at.desc())))
        staff_ids = {i.inspector_id for i in inspections} | {c.assigned_to_id for c in cases}
        names: dict[int, str] = {user_id: name for user_id, name in db.execute(
            select(StaffUser.id, StaffUser.display_name).where(
                StaffUser.id.in_([i for i in staff_ids if i is not None])))}
    owners = {r.id: r for r in residents}
    audit("view_unit_file", f"unit:{unit.ref}",
          {"residents": len(residents), "cases": len(cases)})
    return render_template(
        "admin/unit.html", unit=unit, building=building, community=community,
        residents=residents, devices=devices, owners=owners, estimate=estimate,
        readings=readings, inspections=inspections, cases=cases, names=names,
        catalogue=hazard_catalogue(), present=present_now(unit.ref),
        can_manage_qr=staff().role in QR_MANAGERS, can_open_case=staff().role in DISPATCHERS)


@bp.get("/units/<path:ref>/presence.json")
@roles_required(*ALL_STAFF)
def unit_presence(ref: str) -> Response:
    """The unit's hour-of-day x night heatmap and nightly trend (null cells: no data)."""
    with services().session_factory() as db:
        unit = unit_or_404(db, ref)
        estimate = db.scalar(select(UnitEstimate).where(UnitEstimate.unit_id == unit.id))
    if estimate is None:
        return jsonify({"unit": unit.ref, "nights": [], "hours": [], "cells": [],
                        "trend": [], "registered": unit.registered_occupants,
                        "labels": chart_labels()})
    hour_night = unpack_hour_night(estimate.hour_night)
    nights = [(estimate.window_start + dt.timedelta(days=i)).isoformat()
              for i in range(max(len(hour_night), len(estimate.nights)))]
    # Hours of the census day, which starts at DAY_START_HOUR (06:00): nights stay in one piece.
    hours = [f"{(DAY_START_HOUR + h) % 24:02d}" for h in range(24)]
    cells: list[list[Any]] = []
    for y, night in enumerate(hour_night):
        for x in range(24):
            cells.append([x, y, None if night is None else night[x]])
    return jsonify({"unit": unit.ref, "nights": nights, "hours": hours, "cells": cells,
                    "trend": list(estimate.nights), "registered": unit.registered_occupants,
                    "labels": chart_labels()})


@bp.post("/units/<path:ref>/qr-token")
@roles_required(*QR_MANAGERS)
def regenerate_qr(ref: str) -> WerkzeugResponse:
    """Give a unit a new QR token: the old printed code stops working at once."""
    with session_scope(services().session_factory) as db:
        unit = unit_or_404(db, ref)
        unit.qr_token = new_qr_token()
        bump_registry_version(db)
        record(db, staff().username, "regenerate_qr_token", f"unit:{unit.ref}", {},
               request.remote_addr or "")
    flash(_("A new QR code was made for this unit; print it again, the old one no longer "
            "works."), "info")
    return redirect(url_for("units.unit_file", ref=ref))


@bp.get("/qr/buildings/<int:building_id>")
@roles_required(*QR_MANAGERS)
def qr_sheet(building_id: int) -> str:
    """Printable QR codes of a building's units: a page per floor, each code labelled."""
    with services().session_factory() as db:
        building, community = building_or_404(db, building_id)
        units = list(db.scalars(select(Unit).where(Unit.building_id == building.id)))
    floors: dict[int, list[dict[str, str]]] = {}
    for unit in sorted(units, key=lambda u: (u.floor, natural_key(u.code))):
        floors.setdefault(unit.floor, []).append(
            {"ref": unit.ref, "code": unit.code, "room": unit.room,
             "image": qr_svg_data_uri(qr_url(unit.qr_token))})
    audit("print_qr_sheet", f"building:{community.code}/{building.code}", {"units": len(units)})
    return render_template("admin/qr_sheet.html", building=building, community=community,
                           floors=floors)


