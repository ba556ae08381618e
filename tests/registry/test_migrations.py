"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from registry.db import alembic_config, downgrade, upgrade
from registry.models import Base


def test_migrations_match_the_models(registry_engine: Engine) -> None:
    """After `upgrade head` there is nothing left for autogenerate to add or change."""
    with registry_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_there_is_one_head(registry_engine: Engine) -> None:
    """Migrations form one line (parallel branches must be merged)."""
    heads = ScriptDirectory.from_config(alembic_config(registry_engine)).get_heads()
    assert len(heads) == 1


def test_downgrade_to_base_and_back(registry_engine: Engine) -> None:
    """Every migration can be reverted and re-applied."""
    downgrade(registry_engine, "base")
    assert set(inspect(registry_engine).get_table_names()) <= {"alembic_version"}
    upgrade(registry_engine)
    assert "units" in inspect(registry_engine).get_table_names()
