"""Digest-key rotation on the real SQLite and PostgreSQL registries: lookups match the old and
the new digest key while `keys rotate --digest` runs (interrupted and resumed), and afterwards
nothing is found by the old key alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import Settings, generate_digest_key, generate_keys
from portal.identity import DeclaredIdentity, match_identity
from portal.watchlist import import_watchlist
from registry.db import downgrade, make_engine, make_session_factory, session_scope, upgrade
from registry.models import (
    AuditEntry,
    Building,
    Community,
    IdType,
    Resident,
    SignIn,
    Unit,
    WatchlistEntry,
)
from registry.rotation import DigestRotationRefused, rotate_digests
from wifi_census.cli import main

KEY = generate_keys()["identity_key"]
OLD_DIGEST, NEW_DIGEST = generate_digest_key(), generate_digest_key()
NUMBERS = [f"E{index:07d}" for index in range(4)]
PHONES = ["13800138000", "13900139001", "", "13600136004"]
WATCHED = ("E7777777", NUMBERS[1])  # a stranger, and a resident
TODAY = dt.date(2026, 11, 29)


def fill(factory: sessionmaker[Session], cipher: IdentityCipher) -> None:
    """Four residents, a sign-in of each and two watchlist entries, under cipher's digest key."""
    with session_scope(factory) as db:
        building = Building(community=Community(code="C1"), code="B1")
        db.add(building)
        db.flush()
        unit = Unit(building_id=building.id, code="101", ref="C1/B1/101", floor=1, area_m2=50)
        db.add(unit)
        db.flush()
        for index, number in enumerate(NUMBERS):
            columns = cipher.person_columns(f"居民{index}", PHONES[index])
            db.add(Resident(unit_id=unit.id, id_type=IdType.PASSPORT,
                            id_number_encrypted=cipher.encrypt(number),
                            id_digest=cipher.digest(IdType.PASSPORT.value, number),
                            id_last4=number[-4:], **columns))
            db.add(SignIn(ap_id="ap-1", handshake="signed", method="sms", outcome="registered",
                          mac_pseudonym="p" * 16, id_type=IdType.PASSPORT.value,
                          id_number_encrypted=cipher.encrypt(number),
                          id_digest=cipher.digest(IdType.PASSPORT.value, number), **columns))
        db.add(SignIn(ap_id="ap-1", handshake="signed", method="one_tap", outcome="registered",
                      mac_pseudonym="q" * 16))  # one tap: no identity, no digests
        db.add_all(WatchlistEntry(id_digest=cipher.digest(IdType.PASSPORT.value, number),
                                  id_type=IdType.PASSPORT.value,
                                  id_number_encrypted=cipher.encrypt(number), reason="test")
                   for number in WATCHED)


def matches(factory: sessionmaker[Session], cipher: IdentityCipher
            ) -> list[tuple[bool, bool]]:
    """For each resident and the stranger: (registered with name and phone, watch-listed)."""
    found = []
    with factory() as db:
        for index, number in enumerate([*NUMBERS, WATCHED[0]]):
            declared = DeclaredIdentity(f"居民{index}", IdType.PASSPORT.value, number,
                                        PHONES[index] if index < len(PHONES) else "", None, "1")
            match = match_identity(db, cipher, declared, TODAY)
            found.append((match.registered or match.unconfirmed, match.watchlist is not None))
    return found


def stored_digests(factory: sessionmaker[Session]) -> set[str]:
    """Every digest the registry holds."""
    with factory() as db:
        rows = [*db.execute(select(Resident.id_digest, Resident.name_digest,
                                   Resident.phone_digest)),
                *db.execute(select(SignIn.id_digest, SignIn.name_digest, SignIn.phone_digest)),
                *db.execute(select(WatchlistEntry.id_digest))]
    return {digest for row in rows for digest in row if digest}


def all_digests(cipher: IdentityCipher) -> set[str]:
    """Every digest of the test's identities, names and phones under cipher's key."""
    values = {cipher.digest(IdType.PASSPORT.value, n) for n in (*NUMBERS, WATCHED[0])}
    values |= {cipher.name_digest(f"居民{index}") for index in range(len(NUMBERS))}
    return values | {cipher.phone_digest(phone) for phone in PHONES if phone}


EXPECTED = [(True, False), (True, True), (True, False), (True, False), (False, True)]


def test_an_interrupted_digest_rotation_keeps_matching_and_ends_the_old_key(
        session_factory: sessionmaker[Session]) -> None:
    """Stopped mid-way (residents half done, then the watchlist half done), every sign-in
    match and watchlist hit still works; resumed, it finishes; then the new key alone finds
    everything and the old key alone nothing."""
    old = IdentityCipher(KEY, digest_key=OLD_DIGEST)
    both = IdentityCipher(KEY, digest_key=NEW_DIGEST, previous_digest_keys=[OLD_DIGEST])
    new = IdentityCipher(KEY, digest_key=NEW_DIGEST)
    fill(session_factory, old)
    assert matches(session_factory, old) == EXPECTED

    def stop_in(table: str) -> object:
        """An after_batch that interrupts the run after the first batch of table."""
        def stop(at: str, _last_id: int) -> None:
            if at == table:
                raise KeyboardInterrupt
        return stop

    with pytest.raises(KeyboardInterrupt):
        rotate_digests(session_factory, both, batch_size=2, after_batch=stop_in("residents"))
    held = stored_digests(session_factory)
    assert held & all_digests(new) and held & all_digests(old)  # half and half
    assert matches(session_factory, both) == EXPECTED
    with pytest.raises(KeyboardInterrupt):
        rotate_digests(session_factory, both, batch_size=1, after_batch=stop_in("watchlist"))
    with session_factory() as db:
        watch = list(db.scalars(select(WatchlistEntry.id_digest).order_by(WatchlistEntry.id)))
    assert watch == [new.digest(IdType.PASSPORT.value, WATCHED[0]),
                     old.digest(IdType.PASSPORT.value, WATCHED[1])]
    assert matches(session_factory, both) == EXPECTED

    report = rotate_digests(session_factory, both, batch_size=2)
    assert report.finished
    assert report.rotated == {"residents": 0, "portal_signins": 0, "watchlist": 1}
    assert report.current == {"residents": 4, "portal_signins": 5, "watchlist": 1}
    assert matches(session_factory, new) == EXPECTED
    assert matches(session_factory, old) == [(False, False)] * 5  # the old key finds nothing
    assert not stored_digests(session_factory) & all_digests(old)
    with session_factory() as db:
        assert db.scalars(select(AuditEntry.action)).all() == ["keys_rotate_digest"]


def test_digest_only_watchlist_entries_stop_the_rotation_until_imported_again(
        tmp_path: Path, sqlite_session_factory: sessionmaker[Session]) -> None:
    """An entry held as a digest only could never match under a new key: the rotation refuses
    to start and changes nothing; importing the list again gives it its number."""
    old = IdentityCipher(KEY, digest_key=OLD_DIGEST)
    both = IdentityCipher(KEY, digest_key=NEW_DIGEST, previous_digest_keys=[OLD_DIGEST])
    fill(sqlite_session_factory, old)
    with session_scope(sqlite_session_factory) as db:
        for entry in db.scalars(select(WatchlistEntry)):
            entry.id_type, entry.id_number_encrypted = "", None
    before = stored_digests(sqlite_session_factory)
    with pytest.raises(DigestRotationRefused, match="2 watchlist entries"):
        rotate_digests(sqlite_session_factory, both)
    assert stored_digests(sqlite_session_factory) == before
    listing = tmp_path / "watchlist.csv"
    listing.write_text("id_type,id_number,reason\n"
                       + "".join(f"passport,{n},test\n" for n in WATCHED), encoding="utf-8")
    report = import_watchlist(listing, sqlite_session_factory, both)
    assert (report.created, report.updated) == (0, 2)  # found by the old key, moved to the new
    assert rotate_digests(sqlite_session_factory, both).finished
    assert matches(sqlite_session_factory, IdentityCipher(KEY, digest_key=NEW_DIGEST)) == EXPECTED


def test_migration_0011_gives_watchlist_entries_the_registrys_encrypted_number(
        tmp_path: Path) -> None:
    """Entries of a list imported before: the number comes from a resident or a sign-in with
    the same digest (no key needed); an entry nobody signed in with stays digest-only."""
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    upgrade(engine)
    cipher = IdentityCipher(KEY, digest_key=OLD_DIGEST)
    factory = make_session_factory(engine)
    fill(factory, cipher)
    downgrade(engine, "0010")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO watchlist (id_digest, reason, added_at) "
                                 "VALUES (:d, 'nobody', CURRENT_TIMESTAMP)"),
                           {"d": cipher.digest("passport", "E0000099")})
    upgrade(engine)
    with factory() as db:
        entries = {e.reason: e for e in db.scalars(select(WatchlistEntry))}
        stranger, resident = (db.scalars(select(WatchlistEntry).order_by(WatchlistEntry.id))
                              .all()[:2])
    assert stranger.id_number_encrypted is None  # in neither table: only an import gives it
    assert resident.id_type == "passport"
    assert cipher.decrypt(resident.id_number_encrypted or b"") == WATCHED[1]
    assert entries["nobody"].id_number_encrypted is None
    engine.dispose()


def test_keys_rotate_digest_command(settings: Settings,
                                    sqlite_session_factory: sessionmaker[Session]) -> None:
    """`wifi-census keys rotate --digest` re-digests and says the previous keys may go."""
    fill(sqlite_session_factory, IdentityCipher(KEY, digest_key=OLD_DIGEST))
    environment = {"WIFI_CENSUS_VAR_DIR": str(settings.var_dir),
                   "WIFI_CENSUS_DATABASE_URL": settings.database_url,
                   "WIFI_CENSUS_IDENTITY_KEY": KEY, "WIFI_CENSUS_DIGEST_KEY": NEW_DIGEST,
                   "WIFI_CENSUS_DIGEST_KEYS_PREVIOUS": OLD_DIGEST}
    result = CliRunner().invoke(main, ["keys", "rotate", "--digest", "--batch", "3"],
                                env=environment)
    assert result.exit_code == 0, result.output
    assert "WIFI_CENSUS_DIGEST_KEYS_PREVIOUS may now be emptied" in result.output
    assert matches(sqlite_session_factory,
                   IdentityCipher(KEY, digest_key=NEW_DIGEST)) == EXPECTED


def test_an_identity_held_under_both_keys_is_reported_and_the_rest_rotates(
        settings: Settings, registry_engine: Engine,
        session_factory: sessionmaker[Session]) -> None:
    """A resident re-digested onto a digest another row holds already (the same identity written
    under the new key by something that did not look under the old one): the unique index
    refused it and stopped the rotation at that batch, every run. Now that row keeps its old
    digest, is named, every other row moves, and the command says to merge and keep the key."""
    old = IdentityCipher(KEY, digest_key=OLD_DIGEST)
    both = IdentityCipher(KEY, digest_key=NEW_DIGEST, previous_digest_keys=[OLD_DIGEST])
    new = IdentityCipher(KEY, digest_key=NEW_DIGEST)
    fill(session_factory, old)
    with session_scope(session_factory) as db:
        twin = db.scalars(select(Resident).order_by(Resident.id)).first()
        assert twin is not None
        first_id = twin.id
        db.add(Resident(unit_id=twin.unit_id, id_type=IdType.PASSPORT,
                        id_number_encrypted=new.encrypt(NUMBERS[0]),
                        id_digest=new.digest(IdType.PASSPORT.value, NUMBERS[0]),
                        id_last4=NUMBERS[0][-4:], **new.person_columns("居民0", PHONES[0])))
    report = rotate_digests(session_factory, both, batch_size=2)
    assert report.conflicts["residents"] == [first_id] and not report.finished
    assert report.rotated == {"residents": 3, "portal_signins": 4, "watchlist": 2}
    with session_factory() as db:
        held = db.scalar(select(Resident.id_digest).where(Resident.id == first_id))
        audit = db.scalars(select(AuditEntry.detail)).one()
    assert held == old.digest(IdType.PASSPORT.value, NUMBERS[0])  # kept, still matched
    assert matches(session_factory, both) == EXPECTED
    assert audit["conflicts"]["residents"] == [first_id]

    url = registry_engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["keys", "rotate", "--digest"], env={
        "WIFI_CENSUS_VAR_DIR": str(settings.var_dir), "WIFI_CENSUS_DATABASE_URL": url,
        "WIFI_CENSUS_IDENTITY_KEY": KEY, "WIFI_CENSUS_DIGEST_KEY": NEW_DIGEST,
        "WIFI_CENSUS_DIGEST_KEYS_PREVIOUS": OLD_DIGEST})
    assert result.exit_code == 1, result.output
    assert f"held twice (ids {first_id})" in result.output and "merge those rows" in result.output
