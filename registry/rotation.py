"""Re-encrypt every encrypted registry value under the primary identity key (key rotation).

``wifi-census keys rotate`` walks each encrypted column in id order, a batch per transaction.
A value already under the primary key is left alone, so an interrupted run simply starts again
and finds the finished batches current: it is resumable without a progress table, and it never
overwrites a value someone re-wrote meanwhile (the update is conditional on the old token).
Digests do not change: their key is separate (``WIFI_CENSUS_DIGEST_KEY``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from registry.db import session_scope
from registry.models import AccessPoint, AuditEntry, Device, OutboxCommand, Resident, SignIn

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
}


@dataclass
class RotationReport:
    """Per table: values re-encrypted, values already current, ids no configured key opens."""

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, list[int]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True when every value is under the primary key (previous keys may be dropped)."""
        return not any(self.unreadable.values())


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
