"""Names and phone numbers at rest: encrypted in every row, found by keyed digests, converted
in place by migration 0009 and back, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import generate_digest_key, generate_keys
from portal.identity import DeclaredIdentity, match_identity
from registry.db import downgrade, session_scope, upgrade
from registry.importers import import_csv
from registry.models import Building, Community, Resident, SignIn, Unit

RESIDENTS_CSV = """community,building,unit,name,id_type,id_number,phone,move_in,move_out
C1,B1,101,张伟,resident_id_card,11010519491231002X,138 1234 5678,2024-03-01,
C1,B1,101,阿卜杜拉·买买提,passport,E7654321,,2024-03-01,
C1,B1,101,John Smith,passport,E1234567,+447700900123,2025-01-10,
"""
# Every way the clear values could show up in a row: as typed, in E.164, national, UTF-8.
CLEAR = ("张伟", "阿卜杜拉", "买买提", "John Smith", "JOHN", "13812345678", "+8613812345678",
         "447700900123")


def _unit(factory: sessionmaker[Session]) -> int:
    """One unit C1/B1/101; its id."""
    with session_scope(factory) as db:
        unit = Unit(building=Building(community=Community(code="C1"), code="B1"), code="101",
                    ref="C1/B1/101", floor=1, area_m2=50)
        db.add(unit)
        db.flush()
        return unit.id


def _raw_cells(engine: Engine, table: str) -> list[Any]:
    """Every cell of every row of a table, read with plain SQL (no model, no cipher)."""
    with engine.connect() as connection:
        return [cell for row in connection.execute(text(f"SELECT * FROM {table}"))
                for cell in row]


def _assert_no_clear_text(engine: Engine, table: str) -> None:
    """No cell of the table holds a name or phone in clear, as text or as bytes."""
    for cell in _raw_cells(engine, table):
        if isinstance(cell, memoryview):
            cell = cell.tobytes()
        for clear in CLEAR:
            if isinstance(cell, bytes):
                assert clear.encode() not in cell and clear.lower().encode() not in cell
            elif isinstance(cell, str):
                assert clear.casefold() not in cell.casefold(), (table, cell)


def test_rows_hold_no_name_or_phone_in_clear(
        tmp_path: Path, registry_engine: Engine, session_factory: sessionmaker[Session],
        cipher: IdentityCipher) -> None:
    """Imported residents and a sign-in: raw SQL finds no name or phone; the cipher reads
    them back, phones in E.164."""
    _unit(session_factory)
    path = tmp_path / "residents.csv"
    path.write_text(RESIDENTS_CSV, encoding="utf-8")
    report = import_csv("residents", path, session_factory, cipher)
    assert (report.created, report.errors) == (3, [])
    with session_scope(session_factory) as db:
        db.add(SignIn(ap_id="ap-1", handshake="signed", method="sms", outcome="registered",
                      mac_pseudonym="p" * 16, **cipher.person_columns("张伟", "13812345678")))
    _assert_no_clear_text(registry_engine, "residents")
    _assert_no_clear_text(registry_engine, "portal_signins")
    with session_factory() as db:
        people = {cipher.decrypt(r.name_encrypted): cipher.reveal(r.phone_encrypted)
                  for r in db.scalars(select(Resident))}
        signin = db.scalars(select(SignIn)).one()
    assert people == {"张伟": "+8613812345678", "阿卜杜拉·买买提": "",
                      "John Smith": "+447700900123"}
    assert cipher.decrypt(signin.phone_encrypted or b"") == "+8613812345678"
    # Importing the same file again changes nothing (digests compared, nothing re-encrypted).
    again = import_csv("residents", path, session_factory, cipher)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_lookup_by_phone_and_name_and_sign_in_matching(
        tmp_path: Path, session_factory: sessionmaker[Session], cipher: IdentityCipher) -> None:
    """A phone is found however it is written; a sign-in's name and phone match by digest."""
    unit_id = _unit(session_factory)
    path = tmp_path / "residents.csv"
    path.write_text(RESIDENTS_CSV, encoding="utf-8")
    import_csv("residents", path, session_factory, cipher)
    with session_factory() as db:
        for typed in ("13812345678", "+86 138-1234-5678", "008613812345678",
                      "１３８１２３４５６７８"):
            found = db.scalars(select(Resident).where(
                Resident.phone_digest == cipher.phone_digest(typed))).all()
            assert [cipher.decrypt(r.name_encrypted) for r in found] == ["张伟"], typed
        assert db.scalar(select(Resident.id).where(
            Resident.phone_digest == cipher.phone_digest("13812345679"))) is None
        assert db.scalar(select(Resident.id).where(
            Resident.name_digest == cipher.name_digest("阿卜杜拉 买买提"))) is not None
        today = dt.date(2026, 11, 29)

        def match(name: str, phone: str, number: str = "11010519491231002X") -> Any:
            """What the registry says about a declared identity."""
            return match_identity(db, cipher, DeclaredIdentity(
                name, "resident_id_card", number, phone, unit_id, "v1"), today)

        assert match("张伟", "+8613812345678").registered
        assert not match("张伟", "+8613812345679").registered  # another phone
        wrong_name = match("张三", "+8613812345678")
        assert wrong_name.resident is not None and not wrong_name.name_ok
    # Under another digest key nothing matches: the digests are keyed, not plain hashes.
    other = IdentityCipher(generate_keys()["identity_key"], digest_key=generate_digest_key())
    with session_factory() as db:
        assert db.scalar(select(Resident.id).where(
            Resident.phone_digest == other.phone_digest("13812345678"))) is None


def _seed_at_0008(engine: Engine) -> None:
    """Rows as the 0008 schema held them: names and phones in clear."""
    downgrade(engine, "0008")
    with engine.begin() as db:
        db.execute(text("INSERT INTO communities (id, code, name) VALUES (1, 'C1', '')"))
        db.execute(text("INSERT INTO buildings (id, community_id, code, name) "
                        "VALUES (1, 1, 'B1', '')"))
        db.execute(text(
            "INSERT INTO units (id, building_id, code, ref, floor, room, area_m2, "
            "registered_occupants, is_rented, meter_group, qr_token, risk_tier, updated_at) "
            "VALUES (1, 1, '101', 'C1/B1/101', 1, '101', 50, 1, false, '', 'tok', 'normal', "
            "'2026-11-01 00:00:00')"))
        for number, (name, phone) in enumerate(
                (("张伟", "13812345678"), ("John Smith", ""), ("李四", "+8613900139000")),
                start=1):
            db.execute(text(
                "INSERT INTO residents (id, unit_id, name, id_type, id_number_encrypted, "
                "id_digest, id_last4, phone, verification, created_at) VALUES (:id, 1, :name, "
                "'passport', :token, :digest, '0000', :phone, 'registered', "
                "'2026-11-01 00:00:00')"),
                {"id": number, "name": name, "token": b"t", "digest": f"d{number}",
                 "phone": phone})
        db.execute(text(
            "INSERT INTO portal_signins (id, at, ap_id, handshake, method, outcome, "
            "mac_pseudonym, randomized, resident_id, name, id_type, id_digest, id_last4, phone, "
            "watchlist_hit, consent_version, locale, client_ip, device_label) VALUES "
            "(1, '2026-11-02 00:00:00', 'ap-1', 'signed', 'sms', 'registered', 'pppp', false, "
            "1, '张伟', 'passport', 'd1', '0000', '+8613812345678', false, 'v1', 'zh', '', ''),"
            "(2, '2026-11-02 00:00:00', 'ap-1', 'signed', 'one_tap', 'registered', 'pppp', "
            "false, 1, '', '', '', '', '', false, '', 'zh', '', '')"))


def test_migration_0009_converts_populated_rows_and_back(
        registry_engine: Engine, cipher: IdentityCipher) -> None:
    """Up: clear names and phones become tokens and digests in place, the clear columns go.
    Down: they come back decrypted (phones in E.164)."""
    _seed_at_0008(registry_engine)
    upgrade(registry_engine, cipher=cipher)
    _assert_no_clear_text(registry_engine, "residents")
    _assert_no_clear_text(registry_engine, "portal_signins")
    with registry_engine.connect() as db:
        columns = set(db.execute(text("SELECT * FROM residents LIMIT 0")).keys())
        assert "name" not in columns and "phone" not in columns
        rows = db.execute(text("SELECT id, name_encrypted, name_digest, phone_encrypted, "
                               "phone_digest FROM residents ORDER BY id")).all()
        signins = db.execute(text("SELECT id, name_encrypted, phone_encrypted, phone_digest "
                                  "FROM portal_signins ORDER BY id")).all()

    def clear(token: Any) -> str:
        """A raw cell decrypted."""
        return cipher.decrypt(bytes(token)) if token is not None else ""

    assert [(clear(r.name_encrypted), clear(r.phone_encrypted)) for r in rows] == [
        ("张伟", "+8613812345678"), ("John Smith", ""), ("李四", "+8613900139000")]
    assert rows[0].phone_digest == cipher.phone_digest("138 1234 5678")
    assert rows[1].phone_digest == "" and rows[2].name_digest == cipher.name_digest("李四")
    assert [(clear(s.name_encrypted), clear(s.phone_encrypted)) for s in signins] == [
        ("张伟", "+8613812345678"), ("", "")]
    assert signins[0].phone_digest == rows[0].phone_digest
    downgrade(registry_engine, "0008", cipher=cipher)
    with registry_engine.connect() as db:
        assert db.execute(text("SELECT name, phone FROM residents ORDER BY id")).all() == [
            ("张伟", "+8613812345678"), ("John Smith", ""), ("李四", "+8613900139000")]
        assert db.execute(text("SELECT name, phone FROM portal_signins ORDER BY id")).all() == [
            ("张伟", "+8613812345678"), ("", "")]
    upgrade(registry_engine, cipher=cipher)  # and up again, over the downgraded rows
    _assert_no_clear_text(registry_engine, "residents")
