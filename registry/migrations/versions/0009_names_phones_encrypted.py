"""names and phone numbers encrypted at rest, found by keyed digests (residents, sign-ins)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 18:20:00

Existing rows are converted in place, in batches: each name and phone is encrypted under the
primary identity key and digested with the digest key, then the clear columns are dropped. The
downgrade decrypts them back. The keys come from the cipher the caller hands over
(``registry.db.upgrade(engine, cipher=...)``), else from the settings of the environment the
command runs in (production: the same variables the services read). An empty registry needs no
key at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGGER = logging.getLogger(__name__)
BATCH = 1000
TABLES = ("residents", "portal_signins")


def _cipher() -> Any:
    """The identity cipher: handed over by the caller, else from the environment's settings."""
    given = op.get_context().config.attributes.get("identity_cipher") if (
        op.get_context().config is not None) else None
    if given is not None:
        return given
    from census.privacy import IdentityCipher
    from census.settings import Settings

    LOGGER.info("0009: keys from the environment's settings")
    return IdentityCipher.from_settings(Settings.load())


def _has_rows(table: str) -> bool:
    """Whether a table holds any row (an empty registry converts without keys)."""
    return op.get_bind().execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None


def _convert(table: str, read: tuple[str, ...], write: Any) -> int:
    """Rewrite every row of a table in id batches; write(row) -> the new column values."""
    bind = op.get_bind()
    columns = ", ".join(("id", *read))
    last, done = 0, 0
    while True:
        rows = bind.execute(sa.text(f"SELECT {columns} FROM {table} WHERE id > :last "
                                    "ORDER BY id LIMIT :n"), {"last": last, "n": BATCH}).all()
        if not rows:
            return done
        # One executemany per batch: every row sets the same columns.
        values = [{**write(row), "id": row.id} for row in rows]
        assignments = ", ".join(f"{name} = :{name}" for name in values[0] if name != "id")
        bind.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE id = :id"), values)
        done += len(rows)
        last = rows[-1].id
        LOGGER.info("0009 %s: %d rows converted", table, done)


def upgrade() -> None:
    """Add the encrypted columns, encrypt every row's name and phone, drop the clear ones."""
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name_encrypted", sa.LargeBinary(), nullable=True))
            batch_op.add_column(sa.Column("name_digest", sa.String(length=64),
                                          nullable=False, server_default=""))
            batch_op.add_column(sa.Column("phone_encrypted", sa.LargeBinary(), nullable=True))
            batch_op.add_column(sa.Column("phone_digest", sa.String(length=64),
                                          nullable=False, server_default=""))
    if any(_has_rows(table) for table in TABLES):
        cipher = _cipher()
        for table in TABLES:
            _convert(table, ("name", "phone"),
                     lambda row: cipher.person_columns(row.name or "", row.phone or ""))
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.drop_column("phone")
        batch_op.drop_column("name")
        batch_op.alter_column("name_encrypted", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column("name_digest", existing_type=sa.String(length=64),
                              server_default=None)
        batch_op.alter_column("phone_digest", existing_type=sa.String(length=64),
                              server_default=None)
        batch_op.create_index(batch_op.f("ix_residents_name_digest"), ["name_digest"])
        batch_op.create_index(batch_op.f("ix_residents_phone_digest"), ["phone_digest"])
    with op.batch_alter_table("portal_signins", schema=None) as batch_op:
        batch_op.drop_column("phone")
        batch_op.drop_column("name")
        batch_op.alter_column("name_digest", existing_type=sa.String(length=64),
                              server_default=None)
        batch_op.alter_column("phone_digest", existing_type=sa.String(length=64),
                              server_default=None)


def downgrade() -> None:
    """Decrypt names and phones back into clear columns and drop the encrypted ones."""
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=False,
                                          server_default=""))
            batch_op.add_column(sa.Column("phone", sa.String(length=32), nullable=False,
                                          server_default=""))
    if any(_has_rows(table) for table in TABLES):
        cipher = _cipher()

        def clear(row: Any) -> dict[str, str]:
            """A row's name and phone decrypted."""
            return {"name": cipher.decrypt(row.name_encrypted) if row.name_encrypted else "",
                    "phone": cipher.decrypt(row.phone_encrypted) if row.phone_encrypted else ""}

        for table in TABLES:
            _convert(table, ("name_encrypted", "phone_encrypted"), clear)
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_residents_phone_digest"))
        batch_op.drop_index(batch_op.f("ix_residents_name_digest"))
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("phone_digest")
            batch_op.drop_column("phone_encrypted")
            batch_op.drop_column("name_digest")
            batch_op.drop_column("name_encrypted")
            batch_op.alter_column("name", existing_type=sa.String(length=200),
                                  server_default=None)
            batch_op.alter_column("phone", existing_type=sa.String(length=32),
                                  server_default=None)
