"""AP command log: each signed command sent to an AP agent and its acknowledgement

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 02:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('ap_commands',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=16), nullable=False),
    sa.Column('ap_id', sa.String(length=64), nullable=False),
    sa.Column('cmd', sa.String(length=16), nullable=False),
    sa.Column('mac_pseudonym', sa.String(length=16), nullable=False),
    sa.Column('issued_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('error', sa.String(length=32), nullable=False),
    sa.Column('settled_at', registry.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ap_commands')),
    sa.UniqueConstraint('nonce', name=op.f('uq_ap_commands_nonce'))
    )
    with op.batch_alter_table('ap_commands', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ap_commands_ap_id'), ['ap_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ap_commands_mac_pseudonym'), ['mac_pseudonym'], unique=False)
        batch_op.create_index(batch_op.f('ix_ap_commands_state'), ['state'], unique=False)



def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('ap_commands', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ap_commands_state'))
        batch_op.drop_index(batch_op.f('ix_ap_commands_mac_pseudonym'))
        batch_op.drop_index(batch_op.f('ix_ap_commands_ap_id'))

    op.drop_table('ap_commands')
