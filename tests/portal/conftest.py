"""Portal fixtures: a small registry, the app on the real Redis/broker, helpers for the flow.

The registry is one community with a corridor AP (floor 15, its own secret) and a unit AP that
signs with the global command key; residents are created with real encrypted identities.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from census.mqtt import MqttClient, ReceivedMessage
from census.privacy import IdentityCipher, resident_id_check_character
from census.settings import Settings
from portal import create_app
from portal.handshake import sign_redirect
from portal.services import PortalServices
from portal.sms import ConsoleSmsSender
from registry.db import bump_registry_version, session_scope
from registry.models import (
    AccessPoint,
    Building,
    Community,
    Coverage,
    IdType,
    Resident,
    Unit,
    Verification,
    WatchlistEntry,
)
from tests.common import headless_chromium, live_server

FLOOR_AP = "ap-b03-15"
UNIT_AP = "ap-b03-1502"
FLOOR_AP_SECRET = "f" * 8 + "0123456789abcdef" * 3 + "floor-ap-secret"


def make_id(first17: str) -> str:
    """A resident ID number with its correct GB 11643 check character."""
    return first17 + resident_id_check_character(first17)


ZHANG_ID = make_id("12010119900307123")  # registered in 1502, phone 13800138000
LI_ID = make_id("12010119851111456")  # registered in 1501 without a phone
WANG_ID = make_id("37020219921212789")  # not in the registry
WATCHED_ID = make_id("41010119800101001")  # not registered, on the watchlist


@dataclass
class Place:
    """Ids of the test registry's rows."""

    unit_1501: int
    unit_1502: int
    zhang: int
    li: int


@pytest.fixture
def place(settings: Settings, sqlite_session_factory: sessionmaker[Session],
          cipher: IdentityCipher) -> Place:
    """The test registry: community, building, two units, two APs, residents, a watchlist."""
    return fill_registry(sqlite_session_factory, cipher)


def fill_registry(factory: sessionmaker[Session], cipher: IdentityCipher) -> Place:
    """Write the test registry into a migrated database."""
    with session_scope(factory) as session:
        community = Community(code="TEDA-017", name="泰达第十七社区")
        building = Building(community=community, code="B03", name="3号楼")
        session.add_all([community, building])
        session.flush()
        u1501 = Unit(building_id=building.id, code="1501", ref="TEDA-017/B03/1501", floor=15,
                     room="1501", area_m2=60, registered_occupants=2, is_rented=True)
        u1502 = Unit(building_id=building.id, code="1502", ref="TEDA-017/B03/1502", floor=15,
                     room="1502", area_m2=75, registered_occupants=3, is_rented=True)
        session.add_all([u1501, u1502])
        session.flush()
        session.add_all([
            AccessPoint(ap_id=FLOOR_AP, building_id=building.id, coverage=Coverage.FLOOR,
                        floor=15, secret_encrypted=cipher.encrypt(FLOOR_AP_SECRET)),
            AccessPoint(ap_id=UNIT_AP, building_id=building.id, coverage=Coverage.UNIT,
                        floor=15, unit_id=u1502.id),
        ])
        zhang = _resident(cipher, u1502.id, "张三", ZHANG_ID, "13800138000")
        li = _resident(cipher, u1501.id, "李四", LI_ID, "")
        session.add_all([zhang, li, WatchlistEntry(
            id_digest=cipher.digest(IdType.RESIDENT_ID_CARD.value, WATCHED_ID),
            reason="test watchlist entry")])
        bump_registry_version(session)
        session.flush()
        return Place(u1501.id, u1502.id, zhang.id, li.id)


def enable_fas(services: PortalServices, ap_id: str, gateway: str) -> None:
    """Let an AP hand over by openNDS FAS at this gateway address (as `portal ap-fas` does)."""
    with session_scope(services.session_factory) as session:
        ap = session.scalars(select(AccessPoint).where(AccessPoint.ap_id == ap_id)).one()
        ap.fas_gateway = gateway
        bump_registry_version(session)
    services.directory.invalidate()


def _resident(cipher: IdentityCipher, unit_id: int, name: str, number: str, phone: str
              ) -> Resident:
    """A registered resident with an encrypted identity."""
    return Resident(unit_id=unit_id, name=name, id_type=IdType.RESIDENT_ID_CARD,
                    id_number_encrypted=cipher.encrypt(number),
                    id_digest=cipher.digest(IdType.RESIDENT_ID_CARD.value, number),
                    id_last4=number[-4:], phone=phone, move_in=dt.date(2024, 3, 1),
                    verification=Verification.REGISTERED)


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


def signed_query(ap: str = FLOOR_AP, mac: str = "a4:83:e7:12:9f:01", ip: str = "10.1.15.23",
                 key: str = FLOOR_AP_SECRET, **kwargs: Any) -> str:
    """A signed redirect query string as the AP's agent builds it."""
    values = sign_redirect(key, ap, mac, ip, kwargs.pop("gw", "10.1.15.1:2050"),
                           kwargs.pop("url", "http://example.com/"), **kwargs)
    return urlencode(values)


def hidden(html: str, name: str) -> str:
    """The value of a hidden input in a page."""
    match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html) or re.search(
        rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', html)
    if match is None:
        raise AssertionError(f"no hidden field {name} in page")
    return match.group(1).replace("&amp;", "&")


def phone_form(html: str, phone: str = "13800138000", **fields: str) -> dict[str, str]:
    """The first page's fields (the number and consent), filled in."""
    data = {"flow": hidden(html, "flow"), "lang": hidden(html, "lang"),
            "csrf_token": hidden(html, "csrf_token"), "phone": phone, "consent": "y"}
    data.update(fields)
    return data


def identity_form(html: str, **fields: str) -> dict[str, str]:
    """The identity page's fields, filled in (defaults: 张三's registered identity)."""
    data = {
        "flow": hidden(html, "flow"), "lang": hidden(html, "lang"),
        "csrf_token": hidden(html, "csrf_token"), "name": "张三", "id_type": "resident_id_card",
        "id_number": ZHANG_ID, "unit": "",
    }
    data.update(fields)
    return data


def page(response: TestResponse) -> str:
    """A response's HTML."""
    return response.get_data(as_text=True)


def code_form(html: str, code: str) -> dict[str, str]:
    """The code page's form, filled in."""
    return {"flow": hidden(html, "flow"), "lang": hidden(html, "lang"),
            "csrf_token": hidden(html, "csrf_token"), "code": code}


def prove_phone(client: FlaskClient, services: PortalServices, html: str,
                phone: str = "13800138000") -> str:
    """From the first page: the number, then its code; the identity page's HTML."""
    sent = client.post("/signin", data=phone_form(html, phone))
    assert sent.status_code == 200 and 'name="code"' in page(sent), page(sent)
    proven = client.post("/verify", data=code_form(page(sent), last_code(services, phone)))
    assert proven.status_code == 200 and 'name="id_number"' in page(proven), page(proven)
    return page(proven)


def sign_in(client: FlaskClient, services: PortalServices, query: str | None = None,
            phone: str = "13800138000", **fields: str) -> TestResponse:
    """Redirect, number, code, identity: the whole way, returning the last response."""
    splash = client.get("/?" + (query or signed_query()))
    assert splash.status_code == 200, page(splash)
    identity = prove_phone(client, services, page(splash), phone)
    return client.post("/identity", data=identity_form(identity, **fields))


def last_code(services: PortalServices, phone: str) -> str:
    """The newest code the console sender 'sent' to a number."""
    sender = services.sms
    assert isinstance(sender, ConsoleSmsSender)
    code = sender.last_code(phone)
    assert code is not None, f"no SMS to {phone}"
    return code


class Subscriber:
    """A real MQTT subscriber on the test's topic prefix, collecting messages."""

    def __init__(self, settings: Settings, topic: str, probe_topic: str) -> None:
        self.messages: queue.Queue[ReceivedMessage] = queue.Queue()
        self._client = MqttClient(settings, client_id="", on_message=self.messages.put)
        self._client.connect()
        self._client.subscribe(topic, qos=1)
        # SUBSCRIBE is asynchronous: a probe that comes back proves the subscription is live.
        self._client.publish(probe_topic, b'{"probe":true}', qos=1)
        while json.loads(self.messages.get(timeout=5).payload) != {"probe": True}:
            pass

    def get(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        """The next message's topic and JSON payload."""
        message = self.messages.get(timeout=timeout)
        return message.topic, json.loads(message.payload)

    def empty_for(self, seconds: float) -> bool:
        """True when nothing arrives within seconds."""
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()


@pytest.fixture
def commands(settings: Settings) -> Iterator[Subscriber]:
    """Everything published on any AP's command topic."""
    subscriber = Subscriber(settings, settings.topic("v1", "ap", "+", "cmd"),
                            settings.topic("v1", "ap", "probe", "cmd"))
    yield subscriber
    subscriber.close()


@pytest.fixture
def alerts_topic(settings: Settings) -> Iterator[Subscriber]:
    """Everything published on the alert topics."""
    subscriber = Subscriber(settings, settings.topic("v1", "alerts", "+"),
                            settings.topic("v1", "alerts", "probe"))
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
