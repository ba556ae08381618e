"""What a signed-in staff member may see: units of the communities in their scope.

Shared by the back office blueprints (units, heatmaps, inspections, overview): every query for
units goes through ``scoped_units`` so a grid worker of one community never reaches another's.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import abort, current_app, request
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from portal.access import ALL_ROLES, OPERATORS, in_scope, staff
from portal.audit import record
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import Building, Community, Role, Unit

S = TypeVar("S", bound=Select)  # any statement selecting from Unit

# Pages with residents' data (unit files, inspections): not for viewers (PIPL: fewest people).
ALL_STAFF = OPERATORS
# Counts and heatmaps show no one's identity: every role.
EVERY_ROLE = ALL_ROLES
INSPECTORS = OPERATORS
QR_MANAGERS = (Role.ADMIN.value,)


def services() -> PortalServices:
    """This app's portal services."""
    return cast(PortalServices, current_app.extensions["portal"])


def scoped_units(statement: S) -> S:
    """Limit a statement over Unit to the communities in the staff member's scope."""
    joined = statement.join(Building, Unit.building_id == Building.id)
    return cast(S, joined.where(in_scope(Building.community_id)))


def unit_or_404(db: Session, ref: str) -> Unit:
    """The unit with this reference inside the staff member's scope, or a 404."""
    unit = db.scalar(scoped_units(select(Unit).where(Unit.ref == ref)))
    if unit is None:
        abort(404)
    return unit


def building_or_404(db: Session, building_id: int) -> tuple[Building, Community]:
    """A building in scope and its community, or a 404."""
    building = db.get(Building, building_id)
    if building is None or not staff().covers(building.community_id):
        abort(404)
    return building, building.community


def audit(action: str, subject: str = "", detail: dict[str, Any] | None = None) -> None:
    """An audit entry in its own transaction, for views that change nothing."""
    with session_scope(services().session_factory) as db:
        record(db, staff().username, action, subject, detail, request.remote_addr or "")


def safe_next(target: str | None) -> str | None:
    """A local path to return to after login, or None when it could lead off-site.

    Only absolute paths on this host: no scheme, no host, no '//' or '/\\' (browsers read both
    as another host), no control characters or backslashes anywhere.
    """
    if not target or len(target) > 512 or not target.startswith("/"):
        return None
    if target.startswith(("//", "/\\")) or "\\" in target:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
