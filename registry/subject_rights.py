"""One resident's rights over their data (PIPL arts. 45-47): a copy of everything held, and
erasure of what the law lets go.

``export_resident`` gathers the resident's identity (decrypted: the copy is for the person),
units, devices (as stored: pseudonyms, never the MAC), sign-ins, consents, and until when each
is kept. ``erase_resident`` deletes the resident and their device bindings and the sign-ins the
network log no longer needs; it keeps, and says why, what a law requires: the sign-ins of the
last six months (Cybersecurity Law art. 21), the audit log (PIPL art. 56) and the AP command
log (pseudonyms only). Callers audit every use (portal/residents.py, portal/cli.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from census.privacy import IdentityCipher
from census.settings import Settings
from registry.db import bump_registry_version
from registry.models import AuditEntry, Building, Community, Device, Resident, SignIn, Unit

LOGGER = logging.getLogger(__name__)

EXPORT_VERSION = 1
# The Cybersecurity Law's floor for the network log (art. 21: at least six months): what an
# erasure must keep, whatever longer period the retention setting allows.
NETWORK_LOG_FLOOR_DAYS = 180


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    """A date or time as ISO 8601 (None stays None)."""
    return value.isoformat() if value is not None else None


def _until(start: dt.datetime | dt.date | None, days: int) -> str | None:
    """The date a record kept for days from start is deleted by the retention run."""
    if start is None:
        return None
    day = start.date() if isinstance(start, dt.datetime) else start
    return (day + dt.timedelta(days=days)).isoformat()


def _unit_place(session: Session, unit_id: int | None) -> dict[str, Any] | None:
    """A unit's reference and where it is, or None."""
    if unit_id is None:
        return None
    row = session.execute(
        select(Unit.ref, Unit.floor, Unit.room, Community.code, Community.name, Building.code)
        .join(Building, Unit.building_id == Building.id)
        .join(Community, Building.community_id == Community.id)
        .where(Unit.id == unit_id)).one_or_none()
    if row is None:
        return None
    return {"ref": row[0], "floor": row[1], "room": row[2], "community": row[3],
            "community_name": row[4], "building": row[5]}


def resident_community(session: Session, resident_id: int) -> int | None:
    """The community of a resident's unit (None: no such resident)."""
    return session.scalar(
        select(Building.community_id).join(Unit, Unit.building_id == Building.id)
        .join(Resident, Resident.unit_id == Unit.id).where(Resident.id == resident_id))


def export_resident(session: Session, cipher: IdentityCipher, settings: Settings,
                    resident_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the registry holds on one resident, as a JSON-ready document."""
    moment = now or dt.datetime.now(dt.UTC)
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise LookupError(f"no resident {resident_id}")
    devices = list(session.scalars(select(Device).where(Device.resident_id == resident_id)
                                   .order_by(Device.bound_at)))
    signins = list(session.scalars(select(SignIn).where(SignIn.resident_id == resident_id)
                                   .order_by(SignIn.at)))
    accesses = session.execute(
        select(AuditEntry.at, AuditEntry.action).where(
            AuditEntry.subject == f"resident:{resident_id}").order_by(AuditEntry.at)).all()
    unit_ids = [resident.unit_id, *(s.unit_id for s in signins if s.unit_id is not None)]
    places = {u: _unit_place(session, u) for u in dict.fromkeys(unit_ids)}
    units = [place for place in places.values() if place is not None]
    resident_until = (_until(resident.move_out, settings.retention_residents_days)
                      if resident.move_out else None)
    return {
        "version": EXPORT_VERSION,
        "generated_at": moment.isoformat(),
        "resident_id": resident.id,
        "identity": {
            "name": cipher.reveal(resident.name_encrypted),
            "id_type": resident.id_type.value,
            "id_number": cipher.reveal(resident.id_number_encrypted),
            "phone": cipher.reveal(resident.phone_encrypted),
            "verification": resident.verification.value,
            "registered_at": _iso(resident.created_at),
            "move_in": _iso(resident.move_in),
            "move_out": _iso(resident.move_out),
            "kept_until": resident_until,
        },
        "units": [{**place, "registered": index == 0} for index, place in enumerate(units)],
        "devices": [{
            "pseudonym": d.mac_pseudonym, "randomized_address": d.randomized,
            "label": d.label, "last_ap": d.ap_id, "bound_at": _iso(d.bound_at),
            "last_seen_at": _iso(d.last_seen_at), "revoked_at": _iso(d.revoked_at),
            "kept_until": _until(d.revoked_at or d.last_seen_at or d.bound_at,
                                 settings.retention_devices_days),
        } for d in devices],
        "signins": [{
            "at": _iso(s.at), "ap": s.ap_id, "method": s.method, "outcome": s.outcome,
            "unit": (places.get(s.unit_id) or {}).get("ref") if s.unit_id else None,
            "name": cipher.reveal(s.name_encrypted), "id_type": s.id_type,
            "id_number": cipher.reveal(s.id_number_encrypted),
            "phone": cipher.reveal(s.phone_encrypted), "device_pseudonym": s.mac_pseudonym,
            "device": s.device_label, "client_address": s.client_ip, "language": s.locale,
            "kept_until": _until(s.at, settings.retention_network_log_days),
        } for s in signins],
        "consents": [{"version": s.consent_version, "at": _iso(s.at), "ap": s.ap_id}
                     for s in signins if s.consent_version],
        "accesses": [{"at": _iso(at), "action": action} for at, action in accesses],
        "retention_days": {
            "signins": settings.retention_network_log_days,
            "devices": settings.retention_devices_days,
            "residents_after_move_out": settings.retention_residents_days,
            "audit": settings.retention_audit_days,
        },
    }


@dataclass
class ErasureReport:
    """What an erasure deleted, and what it kept with the legal reason."""

    resident_id: int
    deleted: dict[str, int] = field(default_factory=dict)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: list[tuple[int, str, str]] = field(default_factory=list)  # device id, MAC, AP

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the audit entry, the CLI)."""
        return {"resident_id": self.resident_id, "deleted": self.deleted, "kept": self.kept}


def erase_resident(session: Session, cipher: IdentityCipher, resident_id: int,
                   now: dt.datetime | None = None) -> ErasureReport:
    """Erase a resident in the session's transaction: identity and bindings go, the network
    log's last six months stay (their link to the resident cut), the audit log stays."""
    moment = now or dt.datetime.now(dt.UTC)
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise LookupError(f"no resident {resident_id}")
    report = ErasureReport(resident_id)
    devices = list(session.scalars(select(Device).where(Device.resident_id == resident_id)))
    for device in devices:
        if device.revoked_at is None and device.ap_id:
            # Deauthorized on its AP by the caller after commit: a binding that is gone must
            # not keep the device online.
            try:
                report.revoked.append((device.id, cipher.decrypt(device.mac_encrypted),
                                       device.ap_id))
            except ValueError:
                LOGGER.error("device %d: MAC unreadable, not deauthorized", device.id)
    floor = moment - dt.timedelta(days=NETWORK_LOG_FLOOR_DAYS)
    old = session.execute(delete(SignIn).where(SignIn.resident_id == resident_id,
                                               SignIn.at < floor))
    kept_signins = session.execute(
        select(func.count(), func.max(SignIn.at)).where(SignIn.resident_id == resident_id)).one()
    report.deleted = {"resident": 1, "devices": len(devices),
                      "signins": int(getattr(old, "rowcount", 0) or 0)}
    session.execute(delete(Device).where(Device.resident_id == resident_id))
    # Core, not the ORM: the database's ON DELETE rules cut the kept sign-ins' and alerts'
    # link (SET NULL) instead of the ORM loading and rewriting them.
    session.execute(delete(Resident).where(Resident.id == resident_id))
    bump_registry_version(session)
    if kept_signins[0]:
        last = kept_signins[1]
        if last.tzinfo is None:  # SQLite returns aggregates without the column's type
            last = last.replace(tzinfo=dt.UTC)
        report.kept["signins"] = {
            "count": int(kept_signins[0]),
            "until": _until(last, NETWORK_LOG_FLOOR_DAYS),
            "reason": "Cybersecurity Law art. 21: the network log is kept at least six months",
        }
    report.kept["audit_log"] = {
        "reason": "PIPL art. 56: records of processing are kept at least three years "
                  "(they name the resident by id only)"}
    report.kept["ap_command_log"] = {
        "reason": "Cybersecurity Law art. 21: when devices were let on and off (pseudonyms "
                  "only)"}
    return report
