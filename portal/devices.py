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

from sqlalchemy import and_, or_, select
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

    device: Device
    created: bool
    rebound_from: Device | None = None
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


def bind_device(session: Session, cipher: IdentityCipher, resident: Resident, mac: str,
                pseudonym: str, randomized: bool, label: str, ap_id: str, quota: int,
                now: dt.datetime) -> BindResult:
    """Bind a verified address to a resident, re-binding and enforcing the quota."""
    # One query for the resident's devices and any other active binding of this address.
    found = list(session.scalars(select(Device).where(or_(
        Device.resident_id == resident.id,
        and_(Device.mac_pseudonym == pseudonym, Device.revoked_at.is_(None))))))
    devices = [d for d in found if d.resident_id == resident.id]
    result: BindResult
    existing = next((d for d in devices if d.mac_pseudonym == pseudonym), None)
    revoked: list[Revocation] = []
    rebound_from = None
    if existing is not None:
        existing.revoked_at = None
        existing.ap_id = ap_id
        existing.label = label or existing.label
        existing.bound_at = now
        existing.last_seen_at = now
        device, created = existing, False
    else:
        if randomized and label:
            same_kind = [d for d in devices if d.revoked_at is None and d.randomized
                         and d.label == label]
            if same_kind:
                rebound_from = max(same_kind, key=lambda d: d.last_seen_at or d.bound_at)
                revoked.append(_revoke(rebound_from, cipher, "rebound", now))
        device = Device(resident_id=resident.id, mac_pseudonym=pseudonym,
                        mac_encrypted=cipher.encrypt(mac), randomized=randomized, label=label,
                        ap_id=ap_id, bound_at=now, last_seen_at=now)
        session.add(device)
        session.flush()
        devices.append(device)
        created = True
    active = sorted((d for d in devices if d.revoked_at is None),
                    key=lambda d: d.last_seen_at or d.bound_at)
    while len(active) > quota:
        oldest = active.pop(0)
        revoked.append(_revoke(oldest, cipher, "quota", now))
    # One address belongs to one person at a time (a phone passed on, a shared tablet).
    for other in found:
        if other.resident_id != resident.id:
            other.revoked_at = now  # the address itself stays authorized, for its new owner
    result = BindResult(device=device, created=created, rebound_from=rebound_from,
                        revoked=revoked)
    return result


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
