"""What a signed-in staff member may see: units of their community (all, when they have none).

Shared by the back office blueprints (units, heatmaps, inspections, overview): every query for
units goes through ``scoped_units`` so a grid worker of one community never reaches another's.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import abort, current_app, request
from flask_login import current_user
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from portal.audit import record
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import Building, Community, Role, Unit

S = TypeVar("S", bound=Select)  # any statement selecting from Unit

ALL_STAFF = (Role.ADMIN.value, Role.HAZARD_TEAM.value, Role.GRID_WORKER.value)
INSPECTORS = ALL_STAFF
QR_MANAGERS = (Role.ADMIN.value,)


def services() -> PortalServices:
    """This app's portal services."""
    return cast(PortalServices, current_app.extensions["portal"])


def staff() -> Any:
    """The signed-in staff member (portal.admin.StaffPrincipal)."""
    return current_user._get_current_object()  # noqa: SLF001


def scoped_units(statement: S) -> S:
    """Limit a statement over Unit to the staff member's community, when they have one."""
    community = staff().community_id
    joined = statement.join(Building, Unit.building_id == Building.id)
    if community is None:
        return cast(S, joined)
    return cast(S, joined.where(Building.community_id == community))


def unit_or_404(db: Session, ref: str) -> Unit:
    """The unit with this reference inside the staff member's scope, or a 404."""
    unit = db.scalar(scoped_units(select(Unit).where(Unit.ref == ref)))
    if unit is None:
        abort(404)
    return unit


def building_or_404(db: Session, building_id: int) -> tuple[Building, Community]:
    """A building in scope and its community, or a 404."""
    building = db.get(Building, building_id)
    community = staff().community_id
    if building is None or (community is not None and building.community_id != community):
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
