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
from tests.common import (
    FLOOR_AP,
    FLOOR_AP_SECRET,
    Subscriber,
    drop_postgres_database,
    fill_registry,
    page,
    postgres_database,
    sign_in,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_settings(settings: Settings, test_id: str, running_postgres: Settings,
                service_settings: Settings) -> Iterator[Settings]:
    """This test's settings with a fresh, migrated PostgreSQL registry."""
    name = f"test_{test_id}"
    url = postgres_database(service_settings, name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield Settings.load(environ={}, **{**settings.__dict__, "database_url": url})
    drop_postgres_database(service_settings, name)


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


def test_back_office_views_on_postgresql(pg_settings: Settings, redis_client: Any) -> None:
    """Unit file, building heatmap JSON and CSV, counts, QR sheet and an inspection on PG."""
    import datetime as dt
    import re

    from registry.db import session_scope
    from registry.models import Case, CaseStatus, Inspection, Unit
    from tests.common import csrf, estimate, login, staff

    engine = make_engine(pg_settings.database_url)
    factory = make_session_factory(engine)
    place = fill_registry(factory, IdentityCipher(pg_settings.identity_key))
    with session_scope(factory) as db:
        db.add(estimate(place.unit_1502, 3, 7.0, 4, flag="group_rental"))
        db.add(Case(unit_id=place.unit_1502, kind="overcrowding", status=CaseStatus.DISCOVERED,
                    opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3)))
        building_id = db.get(Unit, place.unit_1502).building_id  # type: ignore[union-attr]
        token = db.get(Unit, place.unit_1502).qr_token  # type: ignore[union-attr]
    app = create_app(pg_settings, {"TESTING": True})
    services = app.extensions["portal"]
    try:
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
        staff(factory, "ada", "admin")
        login(client, "ada")
        assert "90% 区间 6–9" in page(client.get("/admin/units/TEDA-017/B03/1502"))
        data = client.get(f"/admin/heatmaps/buildings/{building_id}.json").get_json()
        assert data["floors"] == ["15"] and len(data["cells"]) == 2
        assert client.get(f"/admin/heatmaps/buildings/{building_id}.csv").status_code == 200
        assert "TEDA-017" in page(client.get("/admin/heatmaps/"))
        counts = page(client.get("/admin/"))
        assert re.search(r'id="registered">2<', counts) and re.search(r'id="estimated">7<', counts)
        assert page(client.get(f"/admin/qr/buildings/{building_id}")).count("data:image/svg") == 2
        form = page(client.get(f"/q/{token}"))
        client.post(f"/q/{token}", data={"csrf_token": csrf(form), "people_found": "5",
                                         "hazard": ["FI03"], "open_case": "y"})
        with factory() as db:
            inspection = db.scalars(select(Inspection)).one()
            assert inspection.hazards == ["FI03"] and inspection.case_id is not None
    finally:
        services.close()
        engine.dispose()
