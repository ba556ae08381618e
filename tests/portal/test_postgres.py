"""The whole sign-in on the PostgreSQL registry (the other tests use SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from census.commands import NonceCache, verify_command
from census.privacy import IdentityCipher
from census.settings import Settings
from portal import create_app
from registry.db import make_engine, make_session_factory, upgrade
from registry.models import Device, SignIn
from tests.conftest import _drop_postgres_database, _postgres_database
from tests.portal.conftest import FLOOR_AP, FLOOR_AP_SECRET, Subscriber, fill_registry
from tests.portal.test_signin_flow import page, sign_in

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_settings(settings: Settings, test_id: str, running_postgres: Settings,
                service_settings: Settings) -> Iterator[Settings]:
    """This test's settings with a fresh, migrated PostgreSQL registry."""
    name = f"test_{test_id}"
    url = _postgres_database(service_settings, name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield Settings.load(environ={}, **{**settings.__dict__, "database_url": url})
    _drop_postgres_database(service_settings, name)


def test_sign_in_on_postgresql(pg_settings: Settings, redis_client: Any,
                               commands: Subscriber) -> None:
    """Registered resident, authorize command, sign-in record and device on PostgreSQL."""
    engine = make_engine(pg_settings.database_url)
    factory = make_session_factory(engine)
    fill_registry(factory, IdentityCipher.from_settings(pg_settings))
    app = create_app(pg_settings, {"TESTING": True})
    services = app.extensions["portal"]
    try:
        done = sign_in(app.test_client(), services)
        assert "连接成功" in page(done)
        _topic, payload = commands.get()
        assert verify_command(json.dumps(payload), FLOOR_AP_SECRET, FLOOR_AP, NonceCache())
        with factory() as db:
            assert db.scalars(select(SignIn.outcome)).all() == ["registered"]
            assert len(db.scalars(select(Device)).all()) == 1
    finally:
        services.close()
        engine.dispose()
