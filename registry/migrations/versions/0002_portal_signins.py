"""portal sign-in records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('portal_signins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ap_id', sa.String(length=64), nullable=False),
    sa.Column('handshake', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('mac_pseudonym', sa.String(length=16), nullable=False),
    sa.Column('randomized', sa.Boolean(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id_type', sa.String(length=32), nullable=False),
    sa.Column('id_number_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('id_digest', sa.String(length=64), nullable=False),
    sa.Column('id_last4', sa.String(length=4), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('watchlist_hit', sa.Boolean(), nullable=False),
    sa.Column('consent_version', sa.String(length=32), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('device_label', sa.String(length=64), nullable=False),
    sa.Column('rebound_from_device_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_portal_signins_device_id_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rebound_from_device_id'], ['devices.id'], name=op.f('fk_portal_signins_rebound_from_device_id_devices'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_portal_signins_resident_id_residents'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_portal_signins_unit_id_units'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_signins'))
    )
    with op.batch_alter_table('portal_signins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_signins_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_signins_id_digest'), ['id_digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_signins_mac_pseudonym'), ['mac_pseudonym'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_signins_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_signins_resident_id'), ['resident_id'], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('portal_signins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_signins_resident_id'))
        batch_op.drop_index(batch_op.f('ix_portal_signins_outcome'))
        batch_op.drop_index(batch_op.f('ix_portal_signins_mac_pseudonym'))
        batch_op.drop_index(batch_op.f('ix_portal_signins_id_digest'))
        batch_op.drop_index(batch_op.f('ix_portal_signins_at'))

    op.drop_table('portal_signins')
