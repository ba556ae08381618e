"""A resident's export and erasure on SQLite and PostgreSQL: what the document holds, what the
erasure deletes and what it keeps, with the dates."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import Settings
from registry.db import session_scope
from registry.models import (
    Alert,
    AuditEntry,
    Building,
    Community,
    Device,
    IdType,
    Resident,
    SignIn,
    Unit,
)
from registry.subject_rights import erase_resident, export_resident

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
MAC = "a4:83:e7:12:9f:01"


def _fill(factory: sessionmaker[Session], cipher: IdentityCipher) -> int:
    """A resident with a device, a sign-in now and one a year ago, an alert and an audit entry;
    the resident's id."""
    with session_scope(factory) as db:
        unit = Unit(building=Building(community=Community(code="C1", name="一区"), code="B1"),
                    code="101", ref="C1/B1/101", floor=1, area_m2=50)
        db.add(unit)
        db.flush()
        resident = Resident(unit_id=unit.id, id_type=IdType.PASSPORT,
                            id_number_encrypted=cipher.encrypt("E1234567"),
                            id_digest=cipher.digest("passport", "E1234567"), id_last4="4567",
                            move_in=dt.date(2025, 1, 1),
                            **cipher.person_columns("John Smith", "+447700900123"))
        db.add(resident)
        db.flush()
        device = Device(resident_id=resident.id, mac_pseudonym="p" * 16,
                        mac_encrypted=cipher.encrypt(MAC), ap_id="ap-1", bound_at=NOW)
        db.add(device)
        db.flush()
        for days in (0, 365):
            db.add(SignIn(at=NOW - dt.timedelta(days=days), ap_id="ap-1", handshake="signed",
                          method="sms", outcome="registered", mac_pseudonym="p" * 16,
                          resident_id=resident.id, device_id=device.id, unit_id=unit.id,
                          id_type="passport", id_number_encrypted=cipher.encrypt("E1234567"),
                          consent_version="2026-11", client_ip="10.1.15.23",
                          **cipher.person_columns("John Smith", "+447700900123")))
        db.add(Alert(kind="watchlist", at=NOW, resident_id=resident.id))
        db.add(AuditEntry(at=NOW, actor="boss", action="view_resident",
                          subject=f"resident:{resident.id}"))
        return resident.id


def test_the_export_holds_everything_with_its_retention_dates(
        session_factory: sessionmaker[Session], cipher: IdentityCipher, settings: Settings
        ) -> None:
    """Identity in clear, the unit, the device as its pseudonym, both sign-ins with the identity
    as declared, consents, who looked (by action, not name), and when each goes."""
    resident_id = _fill(session_factory, cipher)
    with session_factory() as db:
        document = export_resident(db, cipher, settings, resident_id, now=NOW)
    assert document["identity"]["name"] == "John Smith"
    assert document["identity"]["id_number"] == "E1234567"
    assert document["identity"]["phone"] == "+447700900123"
    assert document["units"] == [{"ref": "C1/B1/101", "floor": 1, "room": "", "community": "C1",
                                  "community_name": "一区", "building": "B1",
                                  "registered": True}]
    assert [d["pseudonym"] for d in document["devices"]] == ["p" * 16]
    assert MAC not in str(document)
    assert [s["kept_until"] for s in document["signins"]] == ["2026-05-28", "2027-05-28"]
    assert document["consents"][0]["version"] == "2026-11"
    assert document["accesses"] == [{"at": NOW.isoformat(), "action": "view_resident"}]
    assert "boss" not in str(document)
    with session_factory() as db, pytest.raises(LookupError):
        export_resident(db, cipher, settings, 999_999, now=NOW)


def test_erasure_keeps_the_network_log_of_six_months_and_cuts_its_link(
        session_factory: sessionmaker[Session], cipher: IdentityCipher) -> None:
    """The resident, their device and the year-old sign-in go; this month's sign-in and the
    alert stay without the resident; the report says what was kept, until when, and why."""
    resident_id = _fill(session_factory, cipher)
    with session_scope(session_factory) as db:
        report = erase_resident(db, cipher, resident_id, now=NOW)
    assert report.deleted == {"resident": 1, "devices": 1, "signins": 1}
    assert report.revoked == [(report.revoked[0][0], MAC, "ap-1")]
    assert report.kept["signins"]["count"] == 1
    assert report.kept["signins"]["until"] == "2027-05-28"
    assert "art. 21" in report.kept["signins"]["reason"]
    with session_factory() as db:
        assert db.get(Resident, resident_id) is None
        assert db.scalars(select(Device)).all() == []
        kept = db.scalars(select(SignIn)).one()
        assert kept.at == NOW and kept.resident_id is None
        assert db.scalars(select(Alert)).one().resident_id is None
        assert db.scalars(select(AuditEntry)).one().subject == f"resident:{resident_id}"
