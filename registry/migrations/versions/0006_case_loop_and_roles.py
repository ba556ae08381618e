"""Case loop and roles: the district's case states, SLA clock and requests; five roles scoped
to several communities each

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:40:00

Old case states map onto the new loop: handed_over → assigned, fed_back → feedback,
supervised → verified. Staff with a community keep it (now a row of staff_communities); staff
without one were district-wide and stay so.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("discovered", "handed_over", "handling", "fed_back", "supervised", "closed")
NEW_STATUSES = ("discovered", "reviewed", "assigned", "handling", "feedback", "verified",
                "closed", "dismissed", "parked")
# Old → new on upgrade; new → old on downgrade (states the old loop lacks fold into a neighbour).
UP = {"handed_over": "assigned", "fed_back": "feedback", "supervised": "verified"}
DOWN = {"reviewed": "discovered", "assigned": "handed_over", "feedback": "fed_back",
        "verified": "supervised", "dismissed": "closed", "parked": "handling"}
OLD_ROLES = ("admin", "hazard_team", "grid_worker")
NEW_ROLES = ("admin", "supervisor", "hazard_team", "grid_worker", "viewer")


def _status_type(values: Sequence[str]) -> sa.Enum:
    """The case status column type with these values (VARCHAR + CHECK, as the models make)."""
    return sa.Enum(*values, name="case_status", native_enum=False, create_constraint=True,
                   length=32)


def _role_type(values: Sequence[str]) -> sa.Enum:
    """The staff role column type with these values."""
    return sa.Enum(*values, name="role", native_enum=False, create_constraint=True, length=32)


def _remap(table: str, column: str, mapping: dict[str, str]) -> None:
    """Rewrite old values to new ones."""
    for old, new in mapping.items():
        op.execute(sa.text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old")
                   .bindparams(new=new, old=old))


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "staff_communities",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["community_id"], ["communities.id"],
                                name=op.f("fk_staff_communities_community_id_communities"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_users.id"],
                                name=op.f("fk_staff_communities_staff_id_staff_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("staff_id", "community_id", name=op.f("pk_staff_communities")),
    )
    with op.batch_alter_table("staff_communities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_staff_communities_community_id"), ["community_id"],
                              unique=False)
    op.execute("INSERT INTO staff_communities (staff_id, community_id) "
               "SELECT id, community_id FROM staff_users WHERE community_id IS NOT NULL")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("district_wide", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.alter_column("role", existing_type=_role_type(OLD_ROLES),
                              type_=_role_type(NEW_ROLES), existing_nullable=False)
    op.execute("UPDATE staff_users SET district_wide = "
               "CASE WHEN community_id IS NULL THEN 1 = 1 ELSE 1 = 0 END")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_staff_users_community_id_communities", type_="foreignkey")
        batch_op.drop_column("community_id")
        batch_op.alter_column("district_wide", server_default=None)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=_status_type(OLD_STATUSES),
                              type_=_status_type(OLD_STATUSES + NEW_STATUSES),
                              existing_nullable=False)
    _remap("cases", "status", UP)
    _remap("case_events", "from_status", UP)
    _remap("case_events", "to_status", UP)
    utc = registry.models.UTCDateTime(timezone=True)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=_status_type(OLD_STATUSES + NEW_STATUSES),
                              type_=_status_type(NEW_STATUSES), existing_nullable=False)
        batch_op.add_column(sa.Column("assigned_at", utc, nullable=True))
        batch_op.add_column(sa.Column("due_at", utc, nullable=True))
        batch_op.add_column(sa.Column("parked_at", utc, nullable=True))
        batch_op.add_column(sa.Column("escalated_at", utc, nullable=True))
        for name, length in (("pending", 16), ("pending_by", 64)):
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=False,
                                          server_default=""))
        batch_op.add_column(sa.Column("pending_reason", sa.Text(), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("pending_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("previous_case_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_cases_previous_case_id_cases"), "cases",
                                    ["previous_case_id"], ["id"], ondelete="SET NULL")
        batch_op.create_index(batch_op.f("ix_cases_assigned_to_id"), ["assigned_to_id"],
                              unique=False)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        for name in ("pending", "pending_by", "pending_reason"):
            batch_op.alter_column(name, server_default=None)
    # Cases handed over before this revision had no clock: it starts now, from their update.
    op.execute("UPDATE cases SET assigned_at = updated_at "
               "WHERE status IN ('assigned', 'handling', 'feedback', 'verified')")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_alerts_case_id_cases"), "cases",
                                    ["case_id"], ["id"], ondelete="SET NULL")
        batch_op.create_index(batch_op.f("ix_alerts_case_id"), ["case_id"], unique=False)
    # Overcrowding alerts already name their case in the payload; older watchlist alerts are
    # left without one (the case sweep opens cases for them).
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.String(length=32), nullable=False,
                                      server_default=""))
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.alter_column("action", server_default=None)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_column("action")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_case_id"))
        batch_op.drop_constraint(batch_op.f("fk_alerts_case_id_cases"), type_="foreignkey")
        batch_op.drop_column("case_id")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_assigned_to_id"))
        batch_op.drop_constraint(batch_op.f("fk_cases_previous_case_id_cases"),
                                 type_="foreignkey")
        for name in ("previous_case_id", "pending_days", "pending_reason", "pending_by",
                     "pending", "escalated_at", "parked_at", "due_at", "assigned_at"):
            batch_op.drop_column(name)
        batch_op.alter_column("status", existing_type=_status_type(NEW_STATUSES),
                              type_=_status_type(OLD_STATUSES + NEW_STATUSES),
                              existing_nullable=False)
    _remap("cases", "status", DOWN)
    _remap("case_events", "from_status", DOWN)
    _remap("case_events", "to_status", DOWN)
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=_status_type(OLD_STATUSES + NEW_STATUSES),
                              type_=_status_type(OLD_STATUSES), existing_nullable=False)

    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("community_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_staff_users_community_id_communities", "communities",
                                    ["community_id"], ["id"], ondelete="SET NULL")
    # One community survives per person (the old model had one); supervisors and viewers fold
    # into the hazard team, the nearest old role that can read cases.
    op.execute("UPDATE staff_users SET community_id = (SELECT MIN(community_id) "
               "FROM staff_communities WHERE staff_communities.staff_id = staff_users.id)")
    _remap("staff_users", "role", {"supervisor": "hazard_team", "viewer": "hazard_team"})
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.alter_column("role", existing_type=_role_type(NEW_ROLES),
                              type_=_role_type(OLD_ROLES), existing_nullable=False)
        batch_op.drop_column("district_wide")
    with op.batch_alter_table("staff_communities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_communities_community_id"))
    op.drop_table("staff_communities")
