"""Shared helpers for case and staff tests: two communities, staff in every role, cases."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from unittest import mock

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import generate_password_hash

from registry.db import session_scope
from registry.models import (
    Building,
    Case,
    CaseEvent,
    CaseStatus,
    Community,
    RiskTier,
    StaffUser,
    Unit,
)
from registry.staff import upsert_staff as _upsert_staff

PASSWORD = "correct horse battery"
EVIDENCE = {"v": 1, "kind": "overcrowding", "unit": "", "registered": 1, "estimated": 6.0,
            "interval": [4.0, 8.0], "nights_observed": 26, "resident_devices": 7,
            "utility": {"ratio": 3.1, "estimated_people": 5}, "confidence": 0.97,
            "confidence_plus_one": 0.99, "persistence": 1.0, "coverage": "unit_ap",
            "flag": "group_rental", "hazards": [], "tier": "key",
            "window": {"start": "2026-10-25", "end": "2026-11-22", "nights": 28,
                       "timezone": "Asia/Shanghai"}}


@functools.cache
def _password_hash(password: str) -> str:
    """Werkzeug's scrypt hash of a password, computed once per run."""
    return generate_password_hash(password)


def upsert_staff(session: Session, username: str, password: str, role: str) -> bool:
    """registry.staff.upsert_staff for a test account: each account gets a real scrypt hash of
    its password, the same one for every account with that password (one hash costs 0.1-0.4 s
    here and set-ups make ~150 accounts; logins still check it at full cost)."""
    with mock.patch("registry.staff.generate_password_hash", _password_hash):
        return _upsert_staff(session, username, password, role)


@dataclass
class Places:
    """Ids of two communities, one unit in each."""

    community_a: int
    community_b: int
    unit_a: int
    unit_b: int
    ref_a: str
    ref_b: str


def two_communities(factory: sessionmaker[Session]) -> Places:
    """Community A (TEDA-001) and B (TEDA-002), a building and a unit each."""
    with session_scope(factory) as db:
        ids = []
        for code, name in (("TEDA-001", "泰达第一社区"), ("TEDA-002", "泰达第二社区")):
            community = Community(code=code, name=name)
            building = Building(community=community, code="B01", name="1号楼")
            unit = Unit(building=building, code="0302", ref=f"{code}/B01/0302", floor=3,
                        room="302", area_m2=62, registered_occupants=1, is_rented=True)
            db.add_all([community, building, unit])
            db.flush()
            ids.append((community.id, unit.id, unit.ref))
    return Places(ids[0][0], ids[1][0], ids[0][1], ids[1][1], ids[0][2], ids[1][2])


def make_staff(factory: sessionmaker[Session], username: str, role: str,
               communities: list[int] | None = None, district_wide: bool = False) -> int:
    """A staff account in some communities (or district-wide); its id."""
    with session_scope(factory) as db:
        upsert_staff(db, username, PASSWORD, role)
        user = db.scalars(select(StaffUser).where(StaffUser.username == username)).one()
        user.district_wide = district_wide
        user.communities = [db.get_one(Community, c) for c in communities or []]
        db.flush()
        return user.id


def make_case(factory: sessionmaker[Session], unit_id: int, status: CaseStatus,
              pending: str = "", assignee: int | None = None,
              tier: RiskTier = RiskTier.KEY, now: dt.datetime | None = None,
              due_days: float = 3, kind: str = "overcrowding") -> int:
    """A case put straight into a state (for tests of what may happen from there).

    A unit holds one open overcrowding case at most (the database's index); tests that need
    several open cases on one unit make the others inspection cases, which the loop treats alike.
    """
    now = now or dt.datetime.now(dt.UTC)
    clock = status in (CaseStatus.ASSIGNED, CaseStatus.HANDLING, CaseStatus.FEEDBACK,
                       CaseStatus.VERIFIED, CaseStatus.PARKED)
    with session_scope(factory) as db:
        ref = db.get_one(Unit, unit_id).ref
        case = Case(unit_id=unit_id, kind=kind, status=status, tier=tier,
                    evidence={**EVIDENCE, "unit": ref}, opened_at=now, updated_at=now,
                    assigned_to_id=assignee if clock else None,
                    assigned_at=now if clock else None,
                    due_at=now + dt.timedelta(days=due_days) if clock else None,
                    parked_at=now if status is CaseStatus.PARKED else None,
                    pending=pending, pending_by="someone" if pending else "",
                    pending_reason="a reason" if pending else "",
                    pending_days=2 if pending == "extend" else None,
                    closed_at=now if status in (CaseStatus.CLOSED, CaseStatus.DISMISSED)
                    else None)
        db.add(case)
        db.flush()
        db.add(CaseEvent(case_id=case.id, at=now, actor="analytics", from_status="",
                         to_status=CaseStatus.DISCOVERED.value, note="opened: group rental"))
        return case.id


def flagged_units(factory: sessionmaker[Session], count: int, community: str) -> list[str]:
    """A community of ``count`` one-person units, for runs that flag them all; their refs."""
    refs = [f"{community}/B1/{i:04d}" for i in range(count)]
    with session_scope(factory) as session:
        place = Community(code=community, name="")
        building = Building(community=place, code="B1")
        session.add_all([place, building])
        session.flush()
        session.add_all([Unit(building_id=building.id, code=ref[-4:], ref=ref, floor=1,
                              area_m2=50.0, registered_occupants=1) for ref in refs])
    return refs


def flagged_frame(refs: list[str]) -> pd.DataFrame:
    """The tiered estimate frame of flagged units, as flags.assign_tiers leaves it."""
    return pd.DataFrame([{
        "unit": ref, "registered": 1, "estimated": 6.0, "low": 4.0, "high": 8.0,
        "nights_observed": 26, "resident_devices": 7, "utility_people": None,
        "utility_ratio": None, "p_plus_two": 0.97, "p_plus_one": 0.99, "persistence": 1.0,
        "coverage": "unit_ap", "flag": "group_rental", "tier": "key", "hazards": []}
        for ref in refs])
