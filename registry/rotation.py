"""Re-encrypt every encrypted registry value under the primary identity key (key rotation).

``wifi-census keys rotate`` walks each encrypted column in id order, a batch per transaction.
A value already under the primary key is left alone, so an interrupted run simply starts again
and finds the finished batches current: it is resumable without a progress table, and it never
overwrites a value someone re-wrote meanwhile (the update is conditional on the old token).
Digests do not change in it: their key is separate (``WIFI_CENSUS_DIGEST_KEY``).

``wifi-census keys rotate --digest`` (``rotate_digests``) moves the lookup digests of residents,
sign-ins and the watchlist to a new digest key the same way: recomputed from the decrypted
values, written only where they differ, in batches, resumable; lookups match the earlier keys
(``WIFI_CENSUS_DIGEST_KEYS_PREVIOUS``) until it has finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from registry.db import session_scope
from registry.models import (
    AccessPoint,
    AuditEntry,
    Device,
    OutboxCommand,
    Resident,
    SignIn,
    WatchlistEntry,
)

LOGGER = logging.getLogger(__name__)

# Every column the identity cipher encrypts: a name for reports -> (model, column name).
ENCRYPTED_COLUMNS: dict[str, tuple[Any, str]] = {
    "residents": (Resident, "id_number_encrypted"),
    "resident_names": (Resident, "name_encrypted"),
    "resident_phones": (Resident, "phone_encrypted"),
    "portal_signins": (SignIn, "id_number_encrypted"),
    "signin_names": (SignIn, "name_encrypted"),
    "signin_phones": (SignIn, "phone_encrypted"),
    "devices": (Device, "mac_encrypted"),
    "access_points": (AccessPoint, "secret_encrypted"),
    "access_point_broker_secrets": (AccessPoint, "broker_secret_encrypted"),
    "ap_command_outbox": (OutboxCommand, "mac_encrypted"),
    "watchlist": (WatchlistEntry, "id_number_encrypted"),
}


@dataclass
class RotationReport:
    """Per table: values re-encrypted, values already current, ids no configured key opens."""

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, list[int]] = field(default_factory=dict)
    # Digest rotation only: ids whose new digest another row holds already (the same identity
    # twice, one under each key); they keep the old digest until the two rows are merged.
    conflicts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True when every value is under the primary key (previous keys may be dropped)."""
        return not any(self.unreadable.values()) and not any(self.conflicts.values())


def rotate_keys(factory: sessionmaker[Session], cipher: IdentityCipher, batch_size: int = 500,
                after_batch: Callable[[str, int], None] | None = None,
                actor: str = "cli") -> RotationReport:
    """Re-encrypt, batch by batch, every value not yet under the primary key."""
    report = RotationReport()
    for table, (model, column_name) in ENCRYPTED_COLUMNS.items():
        column = getattr(model, column_name)
        rotated = current = 0
        unreadable: list[int] = []
        last_id = 0
        while True:
            with session_scope(factory) as session:
                rows = session.execute(
                    select(model.id, column).where(model.id > last_id, column.is_not(None))
                    .order_by(model.id).limit(batch_size)).all()
                if not rows:
                    break
                for row_id, token in rows:
                    if cipher.is_current(token):
                        current += 1
                        continue
                    try:
                        fresh = cipher.rotate(token)
                    except ValueError:
                        unreadable.append(row_id)
                        LOGGER.error("%s %d: no configured key opens its value", table, row_id)
                        continue
                    session.execute(update(model).where(model.id == row_id, column == token)
                                    .values({column_name: fresh}))
                    rotated += 1
                last_id = rows[-1][0]
            LOGGER.info("keys rotate %s: up to id %d (%d re-encrypted so far)", table, last_id,
                        rotated)
            if after_batch is not None:
                after_batch(table, last_id)
        report.rotated[table], report.current[table] = rotated, current
        report.unreadable[table] = unreadable
    with session_scope(factory) as session:
        session.add(AuditEntry(actor=actor, action="keys_rotate", subject="", detail={
            "rotated": report.rotated, "current": report.current,
            "unreadable": {t: len(ids) for t, ids in report.unreadable.items()}}))
    return report


class DigestRotationRefused(RuntimeError):
    """The digest key cannot be rotated yet (watchlist entries held as digests only)."""


def _resident_digests(cipher: IdentityCipher, row: Any) -> dict[str, str]:
    """A resident's three lookup digests under the primary digest key, from its values."""
    phone = cipher.decrypt(row.phone_encrypted) if row.phone_encrypted else ""
    return {"id_digest": cipher.digest(str(row.id_type), cipher.decrypt(row.id_number_encrypted)),
            "name_digest": cipher.name_digest(cipher.decrypt(row.name_encrypted)),
            "phone_digest": cipher.phone_digest(phone)}


def _signin_digests(cipher: IdentityCipher, row: Any) -> dict[str, str]:
    """A sign-in's lookup digests under the primary key ("" where it holds no value: one tap,
    or an erased resident's name)."""
    number = cipher.decrypt(row.id_number_encrypted) if row.id_number_encrypted else ""
    name = cipher.decrypt(row.name_encrypted) if row.name_encrypted else ""
    phone = cipher.decrypt(row.phone_encrypted) if row.phone_encrypted else ""
    return {"id_digest": cipher.digest(row.id_type, number) if number else "",
            "name_digest": cipher.name_digest(name) if name else "",
            "phone_digest": cipher.phone_digest(phone)}


def _watchlist_digests(cipher: IdentityCipher, row: Any) -> dict[str, str]:
    """A watchlist entry's digest under the primary key."""
    return {"id_digest": cipher.digest(row.id_type, cipher.decrypt(row.id_number_encrypted))}


_PERSON_DIGESTS = ("id_digest", "name_digest", "phone_digest")
_PERSON_VALUES = ("id_type", "id_number_encrypted", "name_encrypted", "phone_encrypted")
# Every table whose rows are found by digests: name -> (model, the digest columns, the columns
# they are computed from, how).
DIGESTED_TABLES: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...],
                                 Callable[[IdentityCipher, Any], dict[str, str]]]] = {
    "residents": (Resident, _PERSON_DIGESTS, _PERSON_VALUES, _resident_digests),
    "portal_signins": (SignIn, _PERSON_DIGESTS, _PERSON_VALUES, _signin_digests),
    "watchlist": (WatchlistEntry, ("id_digest",), ("id_type", "id_number_encrypted"),
                  _watchlist_digests),
}


def digest_only_watchlist_entries(factory: sessionmaker[Session]) -> int:
    """Watchlist entries held as a digest only (imported before the number was kept)."""
    with factory() as session:
        return len(session.scalars(select(WatchlistEntry.id).where(
            WatchlistEntry.id_number_encrypted.is_(None))).all())


def rotate_digests(factory: sessionmaker[Session], cipher: IdentityCipher,
                   batch_size: int = 500, after_batch: Callable[[str, int], None] | None = None,
                   actor: str = "cli") -> RotationReport:
    """Re-digest, batch by batch, every row whose digests are not the primary digest key's.

    The cipher must still match the earlier digest keys (WIFI_CENSUS_DIGEST_KEYS_PREVIOUS) so
    that lookups find every row while this runs. Resumable: a row's digests are recomputed from
    its decrypted values and written only when they differ, conditional on the digest read.
    Refused (DigestRotationRefused) while a watchlist entry holds a digest only: it could never
    be matched again under the new key.
    """
    legacy = digest_only_watchlist_entries(factory)
    if legacy:
        raise DigestRotationRefused(
            f"{legacy} watchlist entries are held as digests only: import the watchlist again "
            "(wifi-census portal watchlist-import) before rotating the digest key")
    report = RotationReport()
    for table, (model, digest_columns, sources, digests_of) in DIGESTED_TABLES.items():
        rotated = current = 0
        unreadable: list[int] = []
        conflicts: list[int] = []
        last_id = 0
        while True:
            with session_scope(factory) as session:
                columns = (*digest_columns, *(c for c in sources if c not in digest_columns))
                rows = session.execute(
                    select(model.id, *(getattr(model, c) for c in columns))
                    .where(model.id > last_id).order_by(model.id).limit(batch_size)).all()
                if not rows:
                    break
                for row in rows:
                    try:
                        fresh = digests_of(cipher, row)
                    except ValueError:
                        unreadable.append(row.id)
                        LOGGER.error("%s %d: no configured key opens its values", table, row.id)
                        continue
                    if all(getattr(row, c) == fresh[c] for c in digest_columns):
                        current += 1
                        continue
                    # Conditional on the digest read: a row re-written meanwhile (by an import
                    # or a sign-in, under the primary key already) is left as it is.
                    try:
                        with session.begin_nested():
                            session.execute(update(model).where(model.id == row.id,
                                                                model.id_digest == row.id_digest)
                                            .values(fresh))
                    except IntegrityError:
                        # Another row holds this identity under the new key already (written
                        # by something that did not look under the old key). Failing here
                        # would stop the rotation at this batch on every run; this row keeps
                        # its old digest, still matched while the previous key is configured.
                        conflicts.append(row.id)
                        LOGGER.error("%s %d: its identity is held by another row under the new "
                                     "digest key already; merge the two", table, row.id)
                        continue
                    rotated += 1
                last_id = rows[-1].id
            LOGGER.info("keys rotate --digest %s: up to id %d (%d re-digested so far)", table,
                        last_id, rotated)
            if after_batch is not None:
                after_batch(table, last_id)
        report.rotated[table], report.current[table] = rotated, current
        report.unreadable[table], report.conflicts[table] = unreadable, conflicts
    with session_scope(factory) as session:
        session.add(AuditEntry(actor=actor, action="keys_rotate_digest", subject="", detail={
            "rotated": report.rotated, "current": report.current,
            "unreadable": {t: len(ids) for t, ids in report.unreadable.items()},
            "conflicts": {t: ids for t, ids in report.conflicts.items()}}))
    return report
