"""Identity-key rotation on the real SQLite and PostgreSQL registries: MultiFernet reads old
and new until `keys rotate` has re-encrypted everything; digests stay valid; resumable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import Settings, SettingsError, generate_digest_key, generate_keys
from registry.db import session_scope
from registry.models import (
    AccessPoint,
    AuditEntry,
    Building,
    Community,
    Coverage,
    Device,
    IdType,
    OutboxCommand,
    Resident,
    SignIn,
    Unit,
)
from registry.rotation import rotate_keys
from wifi_census.cli import main

OLD_KEY, NEW_KEY = generate_keys()["identity_key"], generate_keys()["identity_key"]
DIGEST_KEY = generate_digest_key()
NUMBERS = [f"E{index:07d}" for index in range(5)]
# One resident without a phone: a missing phone stays missing through the rotation.
PHONES = ["13800138000", "13900139001", "", "+86 137 0013 7003", "13600136004"]


def fill(factory: sessionmaker[Session], cipher: IdentityCipher) -> None:
    """Five residents, a device, a sign-in and an AP secret, encrypted under the old key."""
    with session_scope(factory) as db:
        building = Building(community=Community(code="C1"), code="B1")
        db.add(building)
        db.flush()
        unit = Unit(building_id=building.id, code="101", ref="C1/B1/101", floor=1, area_m2=50)
        db.add(unit)
        db.flush()
        residents = [Resident(unit_id=unit.id, id_type=IdType.PASSPORT,
                              id_number_encrypted=cipher.encrypt(number),
                              id_digest=cipher.digest(IdType.PASSPORT.value, number),
                              id_last4=number[-4:],
                              **cipher.person_columns(f"居民{index}", PHONES[index]))
                     for index, number in enumerate(NUMBERS)]
        db.add_all(residents)
        db.flush()
        db.add_all([
            Device(resident_id=residents[0].id, mac_pseudonym="p" * 16,
                   mac_encrypted=cipher.encrypt("a4:83:e7:12:9f:01")),
            OutboxCommand(cmd="deauthorize", ap_id="ap-1",
                          mac_encrypted=cipher.encrypt("a4:83:e7:12:9f:02")),
            SignIn(ap_id="ap-1", handshake="signed", method="sms", outcome="registered",
                   mac_pseudonym="p" * 16, id_number_encrypted=cipher.encrypt(NUMBERS[0]),
                   **cipher.person_columns("居民0", PHONES[0])),
            AccessPoint(ap_id="ap-1", building_id=building.id, coverage=Coverage.BUILDING,
                        secret_encrypted=cipher.encrypt("s" * 40),
                        broker_secret_encrypted=cipher.encrypt("b" * 32)),
        ])


def values(factory: sessionmaker[Session], cipher: IdentityCipher) -> list[str]:
    """Every encrypted value in the registry, decrypted with cipher."""
    with factory() as db:
        tokens = [*db.scalars(select(Resident.id_number_encrypted).order_by(Resident.id)),
                  *db.scalars(select(Resident.name_encrypted).order_by(Resident.id)),
                  *db.scalars(select(Resident.phone_encrypted).order_by(Resident.id)),
                  *db.scalars(select(SignIn.id_number_encrypted)),
                  *db.scalars(select(SignIn.name_encrypted)),
                  *db.scalars(select(SignIn.phone_encrypted)),
                  *db.scalars(select(Device.mac_encrypted)),
                  *db.scalars(select(OutboxCommand.mac_encrypted)),
                  *db.scalars(select(AccessPoint.secret_encrypted)),
                  *db.scalars(select(AccessPoint.broker_secret_encrypted))]
    return [cipher.decrypt(token) for token in tokens if token is not None]


def test_rotation_moves_every_value_to_the_new_key_and_keeps_digests(
        session_factory: sessionmaker[Session]) -> None:
    """Both keys read during the change; afterwards the new key alone reads everything, and
    residents are still found by the digests stored before."""
    old = IdentityCipher(OLD_KEY, digest_key=DIGEST_KEY)
    fill(session_factory, old)
    expected = values(session_factory, old)
    both = IdentityCipher(NEW_KEY, [OLD_KEY], DIGEST_KEY)
    assert values(session_factory, both) == expected  # old values readable before rotating
    report = rotate_keys(session_factory, both, batch_size=2)
    assert report.rotated == {"residents": 5, "resident_names": 5, "resident_phones": 4,
                              "portal_signins": 1, "signin_names": 1, "signin_phones": 1,
                              "devices": 1, "access_points": 1,
                              "access_point_broker_secrets": 1, "ap_command_outbox": 1,
                              "watchlist": 0}
    assert report.finished
    new_only = IdentityCipher(NEW_KEY, digest_key=DIGEST_KEY)
    assert values(session_factory, new_only) == expected
    with session_factory() as db:
        found = db.scalar(select(Resident.id).where(
            Resident.id_digest == new_only.digest(IdType.PASSPORT.value, NUMBERS[3])))
        assert found is not None
        # Names and phones: still found by the digests stored before, however typed.
        assert db.scalar(select(Resident.id).where(
            Resident.phone_digest == new_only.phone_digest("13700137003"))) == found
        assert db.scalar(select(Resident.id).where(
            Resident.name_digest == new_only.name_digest("居民3"))) == found
        assert db.scalars(select(AuditEntry.action)).all() == ["keys_rotate"]


def test_interrupted_rotation_resumes_where_it_stopped(
        session_factory: sessionmaker[Session]) -> None:
    """A run stopped after its first batch keeps that batch; the next run finishes the rest and
    counts the first batch as already current."""
    fill(session_factory, IdentityCipher(OLD_KEY, digest_key=DIGEST_KEY))
    both = IdentityCipher(NEW_KEY, [OLD_KEY], DIGEST_KEY)

    def stop(_table: str, _last_id: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotate_keys(session_factory, both, batch_size=2, after_batch=stop)
    report = rotate_keys(session_factory, both, batch_size=2)
    assert (report.current["residents"], report.rotated["residents"]) == (2, 3)
    assert len(values(session_factory, IdentityCipher(NEW_KEY, digest_key=DIGEST_KEY))) == 21


def test_a_value_under_an_unknown_key_is_reported_and_left_alone(
        session_factory: sessionmaker[Session]) -> None:
    """Nothing is lost: a value no configured key opens stays as it was, and the run says so."""
    stranger = IdentityCipher(generate_keys()["identity_key"], digest_key=DIGEST_KEY)
    fill(session_factory, IdentityCipher(OLD_KEY, digest_key=DIGEST_KEY))
    with session_scope(session_factory) as db:
        device = db.scalars(select(Device)).one()
        device.mac_encrypted = stranger.encrypt("a4:83:e7:12:9f:02")
        device_id, token = device.id, device.mac_encrypted
    report = rotate_keys(session_factory, IdentityCipher(NEW_KEY, [OLD_KEY], DIGEST_KEY))
    assert report.unreadable["devices"] == [device_id] and not report.finished
    with session_factory() as db:
        assert db.get(Device, device_id).mac_encrypted == token  # type: ignore[union-attr]


def test_previous_keys_need_a_pinned_digest_key(tmp_path: Path) -> None:
    """Rotating without a digest key of its own would orphan every digest: refused."""
    with pytest.raises(SettingsError, match="WIFI_CENSUS_DIGEST_KEY"):
        Settings.load(environ={"WIFI_CENSUS_VAR_DIR": str(tmp_path),
                               "WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS": OLD_KEY})
    with pytest.raises(ValueError, match="digest key"):
        IdentityCipher(NEW_KEY, [OLD_KEY])


def test_keys_digest_prints_the_key_a_legacy_deployment_uses(tmp_path: Path) -> None:
    """Pinning the printed key keeps every digest a deployment already stored."""
    environment = {"WIFI_CENSUS_VAR_DIR": str(tmp_path), "WIFI_CENSUS_IDENTITY_KEY": OLD_KEY}
    result = CliRunner().invoke(main, ["keys", "digest"], env=environment)
    assert result.exit_code == 0, result.output
    pinned = result.output.strip().split("=", 1)[1]
    legacy, after = IdentityCipher(OLD_KEY), IdentityCipher(NEW_KEY, [OLD_KEY], pinned)
    assert after.digest("passport", "E1234567") == legacy.digest("passport", "E1234567")


def test_keys_rotate_command(settings: Settings, sqlite_session_factory: sessionmaker[Session]
                             ) -> None:
    """`wifi-census keys rotate` re-encrypts and says the previous keys may go."""
    fill(sqlite_session_factory, IdentityCipher(OLD_KEY, digest_key=DIGEST_KEY))
    environment = {"WIFI_CENSUS_VAR_DIR": str(settings.var_dir),
                   "WIFI_CENSUS_DATABASE_URL": settings.database_url,
                   "WIFI_CENSUS_IDENTITY_KEY": NEW_KEY,
                   "WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS": OLD_KEY,
                   "WIFI_CENSUS_DIGEST_KEY": DIGEST_KEY}
    result = CliRunner().invoke(main, ["keys", "rotate", "--batch", "2"], env=environment)
    assert result.exit_code == 0, result.output
    assert "may now be emptied" in result.output
    assert len(values(sqlite_session_factory, IdentityCipher(NEW_KEY, digest_key=DIGEST_KEY))) == 21


def test_every_encrypted_column_is_rotated() -> None:
    """Each *_encrypted column of the registry is in the rotation's list (a new one must be)."""
    from registry.models import Base
    from registry.rotation import ENCRYPTED_COLUMNS

    rotated = {(model.__table__.name, column) for model, column in ENCRYPTED_COLUMNS.values()}
    encrypted = {(table.name, column.name) for table in Base.metadata.tables.values()
                 for column in table.columns if column.name.endswith("_encrypted")}
    assert encrypted == rotated
