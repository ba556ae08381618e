"""resident flow: openNDS FAS enabled per AP (its gateway address)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision (existing APs: FAS off until an administrator enables it)."""
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fas_gateway", sa.String(length=100), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("access_points", schema=None) as batch_op:
        batch_op.drop_column("fas_gateway")
