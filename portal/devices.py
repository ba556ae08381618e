"""Binding device addresses to residents: quota, re-binding of private addresses, move-out.

Phones use a private (randomized) address per network and may rotate it. A new private address
of a resident who already has a private address from the same kind of device (same label from
the user agent) is taken as that phone's new address: the old binding is revoked and the sign-in
record links the two, so analytics can count one phone, not two. Nobody is asked to turn the
privacy feature off.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from census.privacy import IdentityCipher
from registry.models import Device, Resident


@dataclass(frozen=True, slots=True)
class Revocation:
    """A device binding that ended and whose AP must cut the address off."""

    device_id: int
    ap_id: str
    mac: str
    reason: str  # quota, rebound, moved_out, other_resident


@dataclass
class BindResult:
    """The device now bound, and the bindings this ended."""

    device_id: int
    created: bool
    rebound_from_id: int | None = None
    revoked: list[Revocation] = field(default_factory=list)


def device_label(user_agent: str) -> str:
    """A coarse, non-identifying device kind from the user agent: 'iPhone', 'Android SM-G9910'."""
    ua = user_agent or ""
    if "iPhone" in ua:
        return "iPhone"
    if "iPad" in ua:
        return "iPad"
    android = re.search(r"Android [\d.]+; (?:[a-zA-Z-]+; )?([^;)]{1,40}?)(?: Build/|\))", ua)
    if android:
        return f"Android {android.group(1).strip()}"[:64]
    if "Android" in ua:
        return "Android"
    for word in ("Windows", "Macintosh", "Linux", "HarmonyOS"):
        if word in ua:
            return word
    return ""


def _revoke(device: Device, cipher: IdentityCipher, reason: str, now: dt.datetime) -> Revocation:
    """End one binding and say which AP to tell."""
    device.revoked_at = now
    return Revocation(device.id, device.ap_id, cipher.decrypt(device.mac_encrypted), reason)


# The sign-in's statements, built once (Core: a sign-in binds one device, and the ORM's unit of
# work cost more CPU than the statements themselves).
_DEVICES = Device.metadata.tables[Device.__tablename__]
_FIND = select(
    _DEVICES.c.id, _DEVICES.c.resident_id, _DEVICES.c.mac_pseudonym, _DEVICES.c.mac_encrypted,
    _DEVICES.c.randomized, _DEVICES.c.label, _DEVICES.c.ap_id, _DEVICES.c.bound_at,
    _DEVICES.c.last_seen_at, _DEVICES.c.revoked_at,
).where(or_(
    _DEVICES.c.resident_id == bindparam("resident"),
    and_(_DEVICES.c.mac_pseudonym == bindparam("pseudonym"), _DEVICES.c.revoked_at.is_(None)),
))
_INSERT = insert(_DEVICES).returning(_DEVICES.c.id)
_REBIND = update(_DEVICES).where(_DEVICES.c.id == bindparam("device")).values(
    revoked_at=None, ap_id=bindparam("ap"), label=bindparam("kind"), bound_at=bindparam("at"),
    last_seen_at=bindparam("at"))
_END = update(_DEVICES).where(_DEVICES.c.id == bindparam("device")).values(
    revoked_at=bindparam("at"))


def _last_used(device: dict[str, Any]) -> dt.datetime:
    """When a binding was last used (bound, if never seen since)."""
    return device["last_seen_at"] or device["bound_at"]


def _ended(device: dict[str, Any], cipher: IdentityCipher, reason: str,
           now: dt.datetime) -> Revocation:
    """Mark a found binding as ended and say which AP to tell."""
    device["revoked_at"] = now
    return Revocation(device["id"], device["ap_id"], cipher.decrypt(device["mac_encrypted"]),
                      reason)


def bind_device(connection: Connection, cipher: IdentityCipher, resident_id: int, mac: str,
                pseudonym: str, randomized: bool, label: str, ap_id: str, quota: int,
                now: dt.datetime) -> BindResult:
    """Bind a verified address to a resident, re-binding and enforcing the quota."""
    # One query for the resident's devices and any other active binding of this address.
    found = [dict(row._mapping) for row in connection.execute(
        _FIND, {"resident": resident_id, "pseudonym": pseudonym})]
    devices = [d for d in found if d["resident_id"] == resident_id]
    existing = next((d for d in devices if d["mac_pseudonym"] == pseudonym), None)
    revoked: list[Revocation] = []
    rebound_from = None
    if existing is not None:
        label = label or existing["label"]
        connection.execute(_REBIND, {"device": existing["id"], "ap": ap_id, "kind": label,
                                     "at": now})
        existing.update(revoked_at=None, bound_at=now, last_seen_at=now)
        device_id, created = existing["id"], False
    else:
        if randomized and label:
            same_kind = [d for d in devices if d["revoked_at"] is None and d["randomized"]
                         and d["label"] == label]
            if same_kind:
                old = max(same_kind, key=_last_used)
                rebound_from = old["id"]
                revoked.append(_ended(old, cipher, "rebound", now))
        device_id = connection.execute(_INSERT, {
            "resident_id": resident_id, "mac_pseudonym": pseudonym,
            "mac_encrypted": cipher.encrypt(mac), "randomized": randomized, "label": label,
            "ap_id": ap_id, "bound_at": now, "last_seen_at": now,
        }).scalar_one()
        devices.append({"id": device_id, "revoked_at": None, "bound_at": now,
                        "last_seen_at": now})
        created = True
    active = sorted((d for d in devices if d["revoked_at"] is None), key=_last_used)
    while len(active) > quota:
        revoked.append(_ended(active.pop(0), cipher, "quota", now))
    # One address belongs to one person at a time (a phone passed on, a shared tablet): other
    # bindings end, while the address itself stays authorized, for its new owner.
    ended = [r.device_id for r in revoked]
    ended += [d["id"] for d in found if d["resident_id"] != resident_id]
    if ended:
        connection.execute(_END, [{"device": device, "at": now} for device in ended])
    return BindResult(device_id=device_id, created=created, rebound_from_id=rebound_from,
                      revoked=revoked)


def revoke_all(session: Session, cipher: IdentityCipher, resident: Resident, reason: str,
               now: dt.datetime) -> list[Revocation]:
    """End every active binding of a resident (move-out); return what the APs must cut off."""
    return [
        _revoke(device, cipher, reason, now)
        for device in session.scalars(select(Device).where(
            Device.resident_id == resident.id, Device.revoked_at.is_(None)))
    ]


def known_device(session: Session, pseudonym: str, today: dt.date) -> Device | None:
    """The active binding of an address to a current resident, if any."""
    for device in session.scalars(
        select(Device).where(Device.mac_pseudonym == pseudonym, Device.revoked_at.is_(None))
        .order_by(Device.bound_at.desc())
    ):
        resident = device.resident
        if resident.move_out is None or resident.move_out > today:
            return device
    return None
