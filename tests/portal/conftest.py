"""Portal fixtures: a small registry, the app on the real Redis/broker, helpers for the flow.

The registry is one community with a corridor AP (floor 15, its own secret) and a unit AP that
signs with the global command key; residents are created with real encrypted identities.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from census.channels import alert_topic, command_topic
from census.privacy import IdentityCipher
from census.settings import Settings
from portal import create_app
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import Alert, CaseStatus
from tests.cases_common import make_case, make_staff, two_communities
from tests.common import Place, Subscriber, World, fill_registry, headless_chromium, live_server


@pytest.fixture
def place(settings: Settings, sqlite_session_factory: sessionmaker[Session],
          cipher: IdentityCipher) -> Place:
    """The test registry: community, building, two units, two APs, residents, a watchlist."""
    return fill_registry(sqlite_session_factory, cipher)


@pytest.fixture
def app(settings: Settings, place: Place, redis_client: Any) -> Iterator[Flask]:
    """The portal on this test's registry, Redis prefix and topic prefix."""
    application = create_app(settings, {"TESTING": True})
    yield application
    application.extensions["portal"].close()


@pytest.fixture
def services(app: Flask) -> PortalServices:
    """The app's services."""
    services: PortalServices = app.extensions["portal"]
    return services


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client with a phone's user agent and Chinese as its language."""
    test_client = app.test_client()
    test_client.environ_base.update({
        "HTTP_USER_AGENT": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
                           "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        "HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9",
    })
    return test_client


@pytest.fixture
def commands(settings: Settings) -> Iterator[Subscriber]:
    """Everything published on any AP's command topic."""
    subscriber = Subscriber(settings, command_topic(settings.mqtt_topic_prefix, "+"),
                            command_topic(settings.mqtt_topic_prefix, "probe"))
    yield subscriber
    subscriber.close()


@pytest.fixture
def alerts_topic(settings: Settings) -> Iterator[Subscriber]:
    """Everything published on the alert topics."""
    subscriber = Subscriber(settings, alert_topic(settings.mqtt_topic_prefix, "+"),
                            alert_topic(settings.mqtt_topic_prefix, "probe"))
    yield subscriber
    subscriber.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per browser test module (Debian's, see tests.common)."""
    with headless_chromium() as chromium:
        yield chromium


@pytest.fixture
def live_portal(app: Flask) -> Iterator[str]:
    """The portal over real HTTP on a free loopback port."""
    with live_server(app) as url:
        yield url


@pytest.fixture
def world(settings: Settings, place: Place, sqlite_session_factory: sessionmaker[Session],
          redis_client: Any) -> Iterator[World]:
    """Two communities, staff in every role (all but one admin limited to community A)."""
    factory = sqlite_session_factory
    places = two_communities(factory)
    a = [places.community_a]
    people = {
        "admin": make_staff(factory, "admin", "admin", district_wide=True),
        "admin_a": make_staff(factory, "admin_a", "admin", a),
        "supervisor": make_staff(factory, "supervisor", "supervisor", a),
        "hazard": make_staff(factory, "hazard", "hazard_team", a),
        "grid": make_staff(factory, "grid", "grid_worker", a),
        "viewer": make_staff(factory, "viewer", "viewer", a),
    }
    case_a = make_case(factory, places.unit_a, CaseStatus.DISCOVERED)
    case_b = make_case(factory, places.unit_b, CaseStatus.DISCOVERED)
    with session_scope(factory) as db:
        alert = Alert(kind="overcrowding", unit_id=places.unit_b, payload={"estimated": 6,
                                                                          "registered": 1})
        db.add(alert)
        db.flush()
        alert_b = alert.id
    app = create_app(settings, {"TESTING": True,
                                "PORTAL_RATE_LIMITS": {"staff_login": (1000, 900),
                                                       "page": (1000, 60),
                                                       "signin": (1000, 60),
                                                       "verify": (1000, 60)}})
    yield World(app, factory, places, people, case_a, case_b, alert_b)
    app.extensions["portal"].close()
