"""Unit file and inspections: latest estimates per unit, inspection photos, found people, case link

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('unit_estimates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('generated_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_start', sa.Date(), nullable=False),
    sa.Column('window_end', sa.Date(), nullable=False),
    sa.Column('registered', sa.Integer(), nullable=False),
    sa.Column('estimated', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('confidence_plus_one', sa.Float(), nullable=False),
    sa.Column('persistence', sa.Float(), nullable=False),
    sa.Column('nights_observed', sa.Integer(), nullable=False),
    sa.Column('resident_devices', sa.Integer(), nullable=False),
    sa.Column('people_detected', sa.Integer(), nullable=False),
    sa.Column('coverage', sa.String(length=16), nullable=False),
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('zone_units', sa.Integer(), nullable=False),
    sa.Column('utility_ratio', sa.Float(), nullable=True),
    sa.Column('utility_people', sa.Float(), nullable=True),
    sa.Column('flag', sa.String(length=32), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('nights', sa.JSON(), nullable=False),
    sa.Column('hours', sa.JSON(), nullable=False),
    sa.Column('hour_night', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_unit_estimates_unit_id_units'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_estimates')),
    sa.UniqueConstraint('unit_id', name=op.f('uq_unit_estimates_unit_id'))
    )
    with op.batch_alter_table('unit_estimates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unit_estimates_generated_at'), ['generated_at'], unique=False)

    op.create_table('inspection_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('inspection_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', registry.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inspection_id'], ['inspections.id'], name=op.f('fk_inspection_photos_inspection_id_inspections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inspection_photos'))
    )
    with op.batch_alter_table('inspection_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inspection_photos_inspection_id'), ['inspection_id'], unique=False)

    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('people_unregistered', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('case_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_inspections_case_id_cases'), 'cases', ['case_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('inspections', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_inspections_case_id_cases'), type_='foreignkey')
        batch_op.drop_column('case_id')
        batch_op.drop_column('people_unregistered')

    with op.batch_alter_table('inspection_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inspection_photos_inspection_id'))

    op.drop_table('inspection_photos')
    with op.batch_alter_table('unit_estimates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unit_estimates_generated_at'))

    op.drop_table('unit_estimates')
