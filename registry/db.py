"""Engines, sessions and migrations for the registry database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from registry.models import RegistryVersion, utcnow

if TYPE_CHECKING:
    from census.privacy import IdentityCipher

LOGGER = logging.getLogger(__name__)
# Alembic 1.16+ logs each of its autogenerate plugins at INFO on every upgrade: noise in every
# command's output, nothing an operator acts on. Migrations themselves still log at INFO.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, sqlite_busy_timeout_s: float = 30.0) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, with the settings each needs.

    sqlite_busy_timeout_s: how long a SQLite statement waits for another connection's write
    lock before it fails with "database is locked".
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout_s})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            """Foreign keys on (SQLite leaves them off) and WAL for concurrent readers."""
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to engine (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(engine: Engine, cipher: IdentityCipher | None = None) -> Config:
    """Alembic configuration pointing at this package's migrations and the given engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    # Data migrations that encrypt (0009) use it; without one they read the environment's keys.
    config.attributes["identity_cipher"] = cipher
    return config


def upgrade(engine: Engine, revision: str = "head", cipher: IdentityCipher | None = None
            ) -> None:
    """Bring the schema up to revision (default: the newest)."""
    command.upgrade(alembic_config(engine, cipher), revision)


def downgrade(engine: Engine, revision: str, cipher: IdentityCipher | None = None) -> None:
    """Take the schema back to revision."""
    command.downgrade(alembic_config(engine, cipher), revision)


def bump_registry_version(session: Session) -> int:
    """Count a registry change, so caches of the registry know to reload."""
    row = session.scalar(select(RegistryVersion).where(RegistryVersion.id == 1))
    if row is None:
        row = RegistryVersion(id=1, version=0)
        session.add(row)
    row.version += 1
    row.changed_at = utcnow()
    return row.version


def registry_version(session: Session) -> int:
    """The current registry change count."""
    return session.scalar(select(RegistryVersion.version).where(RegistryVersion.id == 1)) or 0
