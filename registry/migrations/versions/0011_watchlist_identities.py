"""the watchlist keeps each identity encrypted beside its digest (digest-key rotation)

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-29 21:10:00

Until now the watchlist held digests only, so the digest key could never change. Each entry
now keeps its document type and number encrypted, like residents and sign-ins. Entries already
there are filled in from the registry without any key: where a resident or a sign-in has the
same identity digest, its document type and encrypted number are copied. An entry nobody signed
in with stays digest-only until the list is imported again (`wifi-census keys rotate --digest`
refuses to start while any does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
# Another branch adds 0010 today; the lead chains 0011 after it at the merge.
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGGER = logging.getLogger(__name__)


def upgrade() -> None:
    """Add the encrypted identity columns and copy what the registry holds for each digest."""
    with op.batch_alter_table("watchlist", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_type", sa.String(length=32), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("id_number_encrypted", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    # Ciphertext is copied as it is (no key needed); `keys rotate` re-encrypts it like any other.
    for source in ("residents", "portal_signins"):
        match = (f"FROM {source} s WHERE s.id_digest = watchlist.id_digest "
                 "AND s.id_number_encrypted IS NOT NULL ORDER BY s.id DESC LIMIT 1")
        filled = bind.execute(sa.text(
            f"UPDATE watchlist SET id_type = (SELECT s.id_type {match}), "
            f"id_number_encrypted = (SELECT s.id_number_encrypted {match}) "
            f"WHERE id_number_encrypted IS NULL AND EXISTS (SELECT 1 {match})")).rowcount
        LOGGER.info("0011: %s watchlist entries filled in from %s", filled, source)
    with op.batch_alter_table("watchlist", schema=None) as batch_op:
        batch_op.alter_column("id_type", existing_type=sa.String(length=32),
                              server_default=None)


def downgrade() -> None:
    """Back to digests only."""
    with op.batch_alter_table("watchlist", schema=None) as batch_op:
        batch_op.drop_column("id_number_encrypted")
        batch_op.drop_column("id_type")
