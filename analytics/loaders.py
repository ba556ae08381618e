"""Registry -> DataFrames: units, access points, device bindings, utilities, inspections.

Loaders only read and reshape; every decision is made in the pure steps that take these frames.
Presence (InfluxDB) is loaded by ``analytics.rollup.RollupStore``. Nothing here reads personal
identity data: residents are counted per unit, and bindings carry the device pseudonym only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.models import (
    AccessPoint,
    Building,
    Community,
    Device,
    Inspection,
    Resident,
    Unit,
    UtilityReading,
)

UNIT_COLUMNS = ["unit_id", "unit", "community", "building", "floor", "area_m2", "registered",
                "rented", "meter_group", "residents"]
AP_COLUMNS = ["ap", "coverage", "community", "building", "floor", "unit"]
BINDING_COLUMNS = ["device", "unit", "resident_id", "randomized", "bound_at", "revoked_at"]
UTILITY_COLUMNS = ["unit", "kind", "period_start", "period_end", "amount"]
INSPECTION_COLUMNS = ["unit", "at", "hazards", "people_found"]


@dataclass
class RegistryFrames:
    """Everything analytics needs from the registry, as DataFrames."""

    units: pd.DataFrame
    aps: pd.DataFrame
    bindings: pd.DataFrame
    utilities: pd.DataFrame
    inspections: pd.DataFrame


def load_registry(session: Session, community: str | None = None,
                  utilities_from: dt.date | None = None, utilities_to: dt.date | None = None,
                  inspections_since: dt.datetime | None = None) -> RegistryFrames:
    """Load the registry frames, optionally for one community."""
    return RegistryFrames(
        units=load_units(session, community),
        aps=load_aps(session, community),
        bindings=load_bindings(session, community),
        utilities=load_utilities(session, community, utilities_from, utilities_to),
        inspections=load_inspections(session, community, inspections_since),
    )


def _community_filter(statement: Any, community: str | None) -> Any:
    """Restrict a statement joined to Community to one community code."""
    return statement if community is None else statement.where(Community.code == community)


def load_units(session: Session, community: str | None = None) -> pd.DataFrame:
    """One row per unit: reference, place, area, registered occupants, rented, meter group."""
    residents = (select(Resident.unit_id, func.count(Resident.id).label("n"))
                 .where(Resident.move_out.is_(None)).group_by(Resident.unit_id).subquery())
    statement = (
        select(Unit.id, Unit.ref, Community.code, Building.code, Unit.floor, Unit.area_m2,
               Unit.registered_occupants, Unit.is_rented, Unit.meter_group,
               func.coalesce(residents.c.n, 0))
        .join(Building, Unit.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .outerjoin(residents, residents.c.unit_id == Unit.id)
        .order_by(Unit.ref)
    )
    rows = session.execute(_community_filter(statement, community)).all()
    frame = pd.DataFrame(rows, columns=UNIT_COLUMNS)
    return frame.astype({"unit_id": "int64", "floor": "int64", "area_m2": "float64",
                         "registered": "int64", "rented": bool, "residents": "int64"})


def load_aps(session: Session, community: str | None = None) -> pd.DataFrame:
    """One row per access point: coverage (unit, floor, building), place, covered unit."""
    statement = (
        select(AccessPoint.ap_id, AccessPoint.coverage, Community.code, Building.code,
               AccessPoint.floor, Unit.ref)
        .join(Building, AccessPoint.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .outerjoin(Unit, AccessPoint.unit_id == Unit.id)
        .order_by(AccessPoint.ap_id)
    )
    rows = session.execute(_community_filter(statement, community)).all()
    frame = pd.DataFrame(rows, columns=AP_COLUMNS)
    frame["coverage"] = frame["coverage"].map(lambda c: getattr(c, "value", c)).astype(str)
    frame["floor"] = frame["floor"].astype("Int64")
    frame["unit"] = frame["unit"].fillna("").astype(str)
    return frame


def load_bindings(session: Session, community: str | None = None) -> pd.DataFrame:
    """Device pseudonyms bound to residents by a portal sign-in, with the resident's unit."""
    statement = (
        select(Device.mac_pseudonym, Unit.ref, Device.resident_id, Device.randomized,
               Device.bound_at, Device.revoked_at)
        .join(Resident, Device.resident_id == Resident.id)
        .join(Unit, Resident.unit_id == Unit.id)
        .join(Building, Unit.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .order_by(Device.bound_at)
    )
    rows = session.execute(_community_filter(statement, community)).all()
    return pd.DataFrame(rows, columns=BINDING_COLUMNS)


def load_utilities(session: Session, community: str | None = None,
                   start: dt.date | None = None, end: dt.date | None = None) -> pd.DataFrame:
    """Utility readings overlapping [start, end)."""
    statement = (
        select(Unit.ref, UtilityReading.kind, UtilityReading.period_start,
               UtilityReading.period_end, UtilityReading.amount)
        .join(Unit, UtilityReading.unit_id == Unit.id)
        .join(Building, Unit.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
    )
    if start is not None:
        statement = statement.where(UtilityReading.period_end > start)
    if end is not None:
        statement = statement.where(UtilityReading.period_start < end)
    rows = session.execute(_community_filter(statement, community)).all()
    frame = pd.DataFrame(rows, columns=UTILITY_COLUMNS)
    frame["kind"] = frame["kind"].map(lambda k: getattr(k, "value", k)).astype(str)
    frame["amount"] = frame["amount"].astype("float64")
    return frame


def load_inspections(session: Session, community: str | None = None,
                     since: dt.datetime | None = None) -> pd.DataFrame:
    """Inspections (hazard categories found on site), newest first."""
    statement = (
        select(Unit.ref, Inspection.at, Inspection.hazards, Inspection.people_found)
        .join(Unit, Inspection.unit_id == Unit.id)
        .join(Building, Unit.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .order_by(Inspection.at.desc())
    )
    if since is not None:
        statement = statement.where(Inspection.at >= since)
    rows = session.execute(_community_filter(statement, community)).all()
    return pd.DataFrame(rows, columns=INSPECTION_COLUMNS)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as plain dicts (column name -> Python value)."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))
