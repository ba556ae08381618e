"""one open case per unit and kind (a partial unique index); the AP command outbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 21:10:00

Duplicates already there (two analytics runs at once opened a unit's case twice) are resolved
before the index is built, deterministically and without deleting anything: of a unit's open
cases of one kind, the one a person has already moved on from "discovered" is kept (else the
oldest; ties by id); each other one is closed with a history entry naming the case kept, and
the kept case gets an entry naming it. Their evidence, history and alerts stay where they are.
The downgrade drops the index and the outbox table; the closed duplicates stay closed.

``ap_command_outbox`` holds AP commands written with the change that causes them until the
broker has them (``apcommands.outbox``); a downgrade drops the commands still in it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import registry.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGGER = logging.getLogger(__name__)
INDEX = "uq_cases_one_open_per_unit_kind"
# Frozen here, as a migration must be: the models' ONE_OPEN_CASE_WHERE of this revision.
WHERE = ("status NOT IN ('closed', 'dismissed') "
         "AND kind IN ('overcrowding', 'watchlist')")
ACTOR = "migration 0010"


def _close_duplicates() -> int:
    """Close all but one open case per unit and kind; return how many were closed."""
    bind = op.get_bind()
    cases = sa.table("cases", sa.column("id", sa.Integer), sa.column("unit_id", sa.Integer),
                     sa.column("kind", sa.String), sa.column("status", sa.String),
                     sa.column("opened_at", registry.models.UTCDateTime()),
                     sa.column("closed_at", registry.models.UTCDateTime()),
                     sa.column("updated_at", registry.models.UTCDateTime()))
    events = sa.table("case_events", sa.column("case_id", sa.Integer),
                      sa.column("at", registry.models.UTCDateTime()),
                      sa.column("actor", sa.String), sa.column("action", sa.String),
                      sa.column("from_status", sa.String), sa.column("to_status", sa.String),
                      sa.column("note", sa.String))
    rows = bind.execute(sa.select(cases.c.id, cases.c.unit_id, cases.c.kind, cases.c.status,
                                  cases.c.opened_at)
                        .where(sa.text(WHERE))).all()
    groups: dict[tuple[int, str], list[sa.Row]] = defaultdict(list)
    for row in rows:
        groups[(row.unit_id, row.kind)].append(row)
    now = dt.datetime.now(dt.UTC)
    closed = 0
    for (unit_id, kind), group in sorted(groups.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda r: (r.status == "discovered", r.opened_at, r.id))
        kept, extra = group[0], group[1:]
        for row in extra:
            bind.execute(cases.update().where(cases.c.id == row.id)
                         .values(status="closed", closed_at=now, updated_at=now))
            bind.execute(events.insert().values(
                case_id=row.id, at=now, actor=ACTOR, action="", from_status=row.status,
                to_status="closed",
                note=f"closed as a duplicate of case {kept.id}, the unit's open {kind} case "
                     "(one open case per unit and kind); this case's evidence and history stay "
                     "here"))
        bind.execute(events.insert().values(
            case_id=kept.id, at=now, actor=ACTOR, action="", from_status=kept.status,
            to_status=kept.status,
            note="duplicate open case(s) " + ", ".join(str(r.id) for r in extra)
                 + " closed into this one"))
        LOGGER.warning("0010: unit %s had %d open %s cases: kept %s, closed %s", unit_id,
                       len(group), kind, kept.id, [r.id for r in extra])
        closed += len(extra)
    return closed


def upgrade() -> None:
    """Apply this revision."""
    closed = _close_duplicates()
    if closed:
        LOGGER.warning("0010: %d duplicate open case(s) closed", closed)
    op.create_index(INDEX, "cases", ["unit_id", "kind"], unique=True,
                    postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))
    op.create_table(
        "ap_command_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", registry.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cmd", sa.String(length=16), nullable=False),
        sa.Column("ap_id", sa.String(length=64), nullable=False),
        sa.Column("mac_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("session_seconds", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", registry.models.UTCDateTime(timezone=True),
                  nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ap_command_outbox")),
    )
    op.create_index(op.f("ix_ap_command_outbox_next_attempt_at"), "ap_command_outbox",
                    ["next_attempt_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_ap_command_outbox_next_attempt_at"), table_name="ap_command_outbox")
    op.drop_table("ap_command_outbox")
    op.drop_index(INDEX, table_name="cases")
