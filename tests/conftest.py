"""Shared fixtures: the real local services, isolated settings per test, registry databases.

Tests run against the real Mosquitto, Redis, InfluxDB and SQL servers that
`wifi-census services up` starts on loopback (started here if they are not running). Each
test gets its own MQTT topic prefix, Redis key prefix, InfluxDB database and SQLite file (or
PostgreSQL database), so tests never see each other's data and can run while a demo runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from census.settings import Settings, generate_keys
from registry.db import make_engine, make_session_factory, upgrade
from tests.common import copy_sqlite, drop_postgres_database, postgres_database
from timeseries import TimeSeriesStore, open_store
from wifi_census import local_servers as local_services


@pytest.fixture(scope="session")
def service_settings() -> Settings:
    """Settings of the shared local servers (the project's var/ folder)."""
    return Settings.load(environ={})


@pytest.fixture(scope="session")
def running_services(service_settings: Settings) -> Settings:
    """Mosquitto, Redis and InfluxDB are up (started if needed; left running for reuse)."""
    local_services.up(service_settings)
    return service_settings


@pytest.fixture(scope="session")
def running_postgres(service_settings: Settings) -> Settings:
    """The project's PostgreSQL cluster is up."""
    local_services.up(service_settings, include_postgres=True)
    return service_settings


@pytest.fixture
def test_id() -> str:
    """A short unique id for this test's names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(tmp_path: Path, test_id: str, running_services: Settings) -> Settings:
    """Settings isolated to this test, pointing at the shared local servers."""
    keys = generate_keys()
    return Settings.load(
        environ={},
        environment="test",
        var_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        mqtt_topic_prefix=f"test-{test_id}",
        redis_key_prefix=f"test-{test_id}:",
        influx_database=f"test_{test_id}",
        **keys,
    )


@pytest.fixture
def cipher(settings: Settings) -> IdentityCipher:
    """The identity cipher for this test's keys."""
    return IdentityCipher.from_settings(settings)


@pytest.fixture
def influx(settings: Settings) -> Iterator[TimeSeriesStore]:
    """This test's own InfluxDB database, dropped afterwards."""
    store = open_store(settings)
    store.ensure_database(settings.retention_days)
    yield store
    store.drop_database()
    store.close()


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client; this test's keys (by prefix) are deleted afterwards."""
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry migrated to head once per run: each test's registry starts as a copy
    of it (running the migrations costs ~1 s a test, the copy ~1 ms)."""
    path = tmp_path_factory.mktemp("migrated") / "registry.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection's close checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(scope="session")
def migrated_postgres(running_postgres: Settings) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per run, the template of each test's own
    (create + migrate costs ~1.6 s a test, CREATE DATABASE ... TEMPLATE ~0.3 s)."""
    name = f"test_template_{uuid.uuid4().hex[:10]}"
    engine = make_engine(postgres_database(running_postgres, name))
    upgrade(engine)
    engine.dispose()  # a template must have no connections when it is copied
    yield name
    drop_postgres_database(running_postgres, name)


def _migrated_sqlite_engine(request: pytest.FixtureRequest, url: str) -> Engine:
    """An engine on url, a copy of the migrated registry (migrated in place if it exists)."""
    if not Path(url.split("///", 1)[-1]).exists():
        copy_sqlite(request.getfixturevalue("migrated_sqlite"), url)
        return make_engine(url)
    engine = make_engine(url)
    upgrade(engine)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_engine(
    request: pytest.FixtureRequest, tmp_path: Path, test_id: str, service_settings: Settings
) -> Iterator[Engine]:
    """A migrated registry on SQLite and, as a second run, on PostgreSQL."""
    if request.param == "sqlite":
        engine = _migrated_sqlite_engine(request, f"sqlite:///{tmp_path / 'registry.sqlite3'}")
        yield engine
        engine.dispose()
        return
    template = request.getfixturevalue("migrated_postgres")
    name = f"test_{test_id}"
    engine = make_engine(postgres_database(service_settings, name, template))
    yield engine
    engine.dispose()
    drop_postgres_database(service_settings, name)


@pytest.fixture
def session_factory(registry_engine: Engine) -> sessionmaker[Session]:
    """Sessions on the parametrized registry."""
    return make_session_factory(registry_engine)


@pytest.fixture
def sqlite_session_factory(request: pytest.FixtureRequest, settings: Settings
                           ) -> sessionmaker[Session]:
    """Sessions on this test's migrated SQLite registry (settings.database_url)."""
    return make_session_factory(_migrated_sqlite_engine(request, settings.database_url))
