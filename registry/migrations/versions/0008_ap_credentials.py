"""AP broker credentials: each AP's MQTT password, encrypted, and when it was issued

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('access_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('broker_secret_encrypted', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('broker_secret_issued_at',
                                      registry.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('access_points', schema=None) as batch_op:
        batch_op.drop_column('broker_secret_issued_at')
        batch_op.drop_column('broker_secret_encrypted')
