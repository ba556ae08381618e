"""Helpers shared by tests (imported as `tests.common`, never from conftest or other tests).

In order: ports and waits; the headless browser; analytics' small registry and synthetic
presence; the collector's small registry, events and running collector; private servers; the
portal's registry, identities, forms and staff; the back office's estimates; case-flow
expectations; the simulator's small runs. Fixtures stay in the conftest.py files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.serving import make_server
from werkzeug.test import TestResponse, encode_multipart

from analytics.config import Window
from analytics.heatmaps import pack_hour_night
from analytics.loaders import RegistryFrames
from analytics.rollup import pack_mask
from census.channels import events_subscription, events_topic
from census.events import PresenceEvent, encode_events
from census.handshake import sign_redirect
from census.mqtt import MqttClient, ReceivedMessage
from census.privacy import IdentityCipher, resident_id_check_character
from census.settings import PREFIX, Settings, environment_of
from collector.service import Collector, CollectorOptions, CollectorSummary
from portal.services import PortalServices
from portal.sms import ConsoleSmsSender
from registry.db import (
    bump_registry_version,
    make_engine,
    make_session_factory,
    session_scope,
)
from registry.db import upgrade as upgrade_registry
from registry.importers import import_csv
from registry.models import (
    AccessPoint,
    Building,
    Community,
    Coverage,
    IdType,
    Resident,
    StaffUser,
    Unit,
    UnitEstimate,
    Verification,
    WatchlistEntry,
)
from simulator import SimulationConfig, SimulationResult, simulate
from tests.cases_common import PASSWORD, Places, upsert_staff
from timeseries import Point, TimeSeriesStore
from timeseries.schema import MEASUREMENT_PRESENCE
from wifi_census import local_servers as local_services


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_influx_port() -> int:
    """A loopback port p with p and p+2 free (InfluxDB also binds p+2 for its RPC)."""
    for _ in range(50):
        port = free_port()
        if port < 65000 and local_services.port_is_free("127.0.0.1", port + 2):
            return port
    raise RuntimeError("no free port pair")


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0,
             what: str = "condition") -> None:
    """Poll predicate until it holds; fail the test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- headless Chromium (Debian's, driven by Playwright) and a live server for it ------------

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "portal"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148")
# pytestmark of every browser module: marked, and skipped where Debian's chromium is missing.
BROWSER_MARKS = [pytest.mark.browser, pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
    reason="Debian's chromium is not installed")]


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium, headless (`playwright install` cannot download a browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """A WSGI app over real HTTP on a free loopback port (Werkzeug in a thread); its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def save_screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot to tests/artifacts/portal/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


UNITS_HEADER = ("community,community_name,building,building_name,unit,floor,room,area_m2,"
                "registered_occupants,rented,meter_group\n")


UNITS_CSV = UNITS_HEADER + """C1,,B1,,0101,1,101,60,2,0,
C1,,B1,,0102,1,102,60,1,1,
C1,,B1,,0103,1,103,60,2,0,
C1,,B1,,0104,1,104,60,1,1,
C1,,B2,,0201,2,201,50,2,0,
C1,,B2,,0202,2,202,50,1,1,
"""


APS_CSV = """ap_id,community,building,floor,unit,coverage,ssid
ap-0101,C1,B1,1,0101,unit,Census-Free
ap-0102,C1,B1,1,0102,unit,Census-Free
ap-0103,C1,B1,1,0103,unit,Census-Free
ap-0104,C1,B1,1,0104,unit,Census-Free
ap-lobby,C1,B1,1,,building,Census-Free
ap-b2-f2,C1,B2,2,,floor,Census-Free
"""


def recent_last_night() -> dt.date:
    """A last night a few days back, inside InfluxDB's retention and already over."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()


def pseudonym(name: str) -> str:
    """A stable 16-hex pseudonym for a test device name."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass
class Routine:
    """A device's days: home from ``home`` (local hour, may pass midnight) to ``leave``."""

    name: str
    ap: str
    home: float = 19.0
    leave: float = 8.0
    rssi: int = -50
    jitter_min: int = 40
    days: set[int] | None = None  # day indices present; None: every day
    always: bool = False
    randomized: bool = False
    addresses: list[tuple[int, str]] = field(default_factory=list)  # (from day, device name)
    companion_of: Routine | None = None  # arrives and leaves with this one

    def device_on(self, day: int) -> str:
        """The pseudonym the device uses on a day (rotating addresses)."""
        name = self.name
        for start, other in self.addresses:
            if day >= start:
                name = other
        return pseudonym(name)


def _stays(routine: Routine, window: Window, rng: random.Random,
           cache: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The (start, end) Unix times a routine is present over the window."""
    if routine.companion_of is not None:
        return cache[routine.companion_of.name]
    if routine.always:
        stays = [(window.start.timestamp(), window.end.timestamp() - 1)]
        cache[routine.name] = stays
        return stays
    stays = []
    tz = window.tz
    for index, day in enumerate(window.days):
        if routine.days is not None and index not in routine.days:
            continue
        home = dt.datetime.combine(day, dt.time(0), tzinfo=tz) + dt.timedelta(hours=routine.home)
        home += dt.timedelta(minutes=rng.randint(-routine.jitter_min, routine.jitter_min))
        leave_day = day + dt.timedelta(days=1) if routine.leave < routine.home else day
        leave = dt.datetime.combine(leave_day, dt.time(0), tzinfo=tz) + dt.timedelta(
            hours=routine.leave, minutes=rng.randint(-routine.jitter_min, routine.jitter_min))
        stays.append((max(home.timestamp(), window.start.timestamp()),
                      min(leave.timestamp(), window.end.timestamp() - 1)))
    cache[routine.name] = stays
    return stays


def make_events(routines: Iterable[Routine], window: Window, seed: int = 1,
                interval: int = 300) -> pd.DataFrame:
    """Raw events (ts, ap, event, device, rssi, randomized) for the routines over the window."""
    rng = random.Random(seed)
    cache: dict[str, list[tuple[float, float]]] = {}
    rows = []
    start_day = window.start.timestamp()
    for routine in sorted(routines, key=lambda r: r.companion_of is not None):
        for start, end in _stays(routine, window, rng, cache):
            first = start_day + ((start - start_day) // interval + 1) * interval
            t = first
            while t <= end:
                day = int((t - start_day) // 86400)
                rows.append((t, routine.ap, "snapshot", routine.device_on(day),
                             float(routine.rssi), routine.randomized))
                t += interval
    frame = pd.DataFrame(rows, columns=["ts", "ap", "event", "device", "rssi", "randomized"])
    return frame.sort_values("ts", ignore_index=True)


def write_raw(store: TimeSeriesStore, events: pd.DataFrame, aps: pd.DataFrame) -> None:
    """Write events as the collector does (contracts section 6 tags and fields)."""
    tags_of = {row.ap: row for row in aps.itertuples(index=False)}
    points = []
    for row in events.itertuples(index=False):
        ap = tags_of[row.ap]
        tags = {"ap": row.ap, "event": row.event, "community": ap.community,
                "building": ap.building,
                "floor": "" if pd.isna(ap.floor) else str(int(ap.floor)),
                "unit": ap.unit if ap.coverage == "unit" else ""}
        fields: dict[str, str | int | float | bool] = {"device": row.device,
                                                       "randomized": bool(row.randomized)}
        if not pd.isna(row.rssi):
            fields["rssi"] = int(row.rssi)
        offset = int(row.device[:8], 16) % 1_000_000
        points.append(Point(MEASUREMENT_PRESENCE, tags, fields,
                            int(row.ts * 1000) * 1_000_000 + offset))
    for i in range(0, len(points), 5000):
        store.write(points[i:i + 5000])


def import_registry(factory: sessionmaker[Session], cipher: IdentityCipher, folder: Path,
                    units_csv: str = UNITS_CSV, aps_csv: str = APS_CSV,
                    residents_csv: str | None = None, utilities_csv: str | None = None) -> None:
    """Import the tiny registry through the real CSV importer."""
    files = {"units": units_csv, "aps": aps_csv}
    if residents_csv:
        files["residents"] = residents_csv
    if utilities_csv:
        files["utilities"] = utilities_csv
    for kind, text in files.items():
        path = folder / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        report = import_csv(kind, path, factory, cipher, actor="test")
        assert not report.errors, report.errors


def household(ap: str, people: int, prefix: str, **overrides: object) -> list[Routine]:
    """``people`` day workers at one AP, each with a phone, with different rhythms."""
    routines = []
    for i in range(people):
        home = 18.0 + (i % 4) * 0.75
        leave = 7.0 + (i % 3) * 0.5
        routines.append(Routine(f"{prefix}-p{i}", ap, home=home, leave=leave,
                                **overrides))  # type: ignore[arg-type]
    return routines


AP_UNIT = "ap-c1-b1-101"  # covers unit C1/B1/101 (floor 1)
AP_FLOOR = "ap-c1-b1-f3"  # corridor AP on floor 3
AP_LOBBY = "ap-c1-b2-lobby"  # building B2's lobby: no floor, no unit
UNIT_REF = "C1/B1/101"


def add_aps(settings: Settings) -> None:
    """A small registry: community C1, buildings B1 and B2, one unit, three APs."""
    engine = make_engine(settings.database_url)
    upgrade_registry(engine)
    with session_scope(make_session_factory(engine)) as session:
        community = Community(code="C1", name="Community one")
        b1 = Building(community=community, code="B1")
        b2 = Building(community=community, code="B2")
        unit = Unit(building=b1, code="101", ref=UNIT_REF, floor=1, area_m2=60.0,
                    registered_occupants=2)
        session.add_all([community, b1, b2, unit])
        session.flush()
        session.add_all([
            AccessPoint(ap_id=AP_UNIT, building=b1, coverage=Coverage.UNIT, unit=unit),
            AccessPoint(ap_id=AP_FLOOR, building=b1, coverage=Coverage.FLOOR, floor=3),
            AccessPoint(ap_id=AP_LOBBY, building=b2, coverage=Coverage.BUILDING),
        ])
        bump_registry_version(session)
    engine.dispose()


def station(index: int, randomized: bool = False) -> str:
    """A deterministic station MAC; randomized ones have the locally-administered bit."""
    first = 0x02 if randomized else 0x00
    octets = (first, 0x16, 0x3E, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
    return ":".join(f"{octet:02x}" for octet in octets)


def snapshot(count: int, ts: float, start: int = 0, rssi: int = -60) -> list[PresenceEvent]:
    """A station snapshot of count stations, all at ts."""
    return [PresenceEvent("snapshot", station(start + i), ts, rssi, "Census-Free")
            for i in range(count)]


def count_points(store: TimeSeriesStore, where: str = "") -> int:
    """How many presence points the database holds."""
    frame = store.query(f"SELECT count(device) AS n FROM presence {where}")
    return 0 if frame.empty else int(frame["n"].sum())


def discard_session(settings: Settings, client_id: str) -> None:
    """End a test collector's persistent session on the shared broker (clean start, expiry 0)."""
    client = MqttClient(settings, client_id)
    client.connect()
    client.disconnect()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The WIFI_CENSUS_* variables that reproduce these settings in a child process."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(PREFIX)}
    environment.update(environment_of(settings))
    return environment


def options_for(settings: Settings, tmp_name: str, **overrides: Any) -> CollectorOptions:
    """Collector options for a test: own client id and spool, short flush interval."""
    base = CollectorOptions.from_settings(
        settings, client_id=f"test-col-{tmp_name}-{uuid.uuid4().hex[:6]}",
        spool_dir=settings.var_dir / "spool" / tmp_name, metrics_port=0,
    )
    return replace(base, flush_interval_s=0.05, store_retry_s=0.5, **overrides)


@contextmanager
def running_collector(collector: Collector) -> Iterator[Collector]:
    """Run a collector in a thread; stop it gracefully (flushing) when the block ends."""
    result: dict[str, CollectorSummary | BaseException] = {}

    def target() -> None:
        """Run and keep the outcome."""
        try:
            result["summary"] = collector.run()
        except BaseException as error:  # reported by the main thread below
            result["error"] = error

    started = threading.Event()
    original_start = collector.start

    def start_and_signal() -> None:
        """Start, then let the test go on (the subscription is in place)."""
        try:
            original_start()
        except BaseException as error:
            result["error"] = error
            raise
        finally:
            started.set()

    collector.start = start_and_signal  # type: ignore[method-assign]
    thread = threading.Thread(target=target, name="test-collector", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in result:
        thread.join(10)
        raise result["error"]  # type: ignore[misc]
    try:
        yield collector
    finally:
        collector.request_stop()
        thread.join(60)
        assert not thread.is_alive(), "collector did not stop within 60 s"
        discard_session(collector.settings, collector.options.client_id)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]


def kill_service(service: local_services.LocalService) -> None:
    """SIGKILL a local server this test started; wait until its port is free again."""
    pid = service.read_pid()
    assert pid is not None, f"the private {service.name} is not running"
    os.kill(pid, signal.SIGKILL)
    # The process leaves /proc a moment before the kernel closes its listening socket.
    deadline = time.monotonic() + 20
    while not local_services.port_is_free(service.host, service.port):
        assert time.monotonic() < deadline, f"killed {service.name} still holds its port"
        time.sleep(0.05)


class PrivateBroker:
    """A Mosquitto of the test's own (the project's configuration, a free port) it may kill."""

    def __init__(self, settings: Settings, folder: Any) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        # Saving on every change, as production does: these tests kill it and count.
        own = Settings.load(environ={}, environment="test", var_dir=folder, mqtt_port=port,
                            local_broker_durable=True)
        self.service = next(s for s in local_services.build_services(own)
                            if s.name == "mosquitto")
        self.settings = Settings.load(environ={}, **{**settings.__dict__, "mqtt_port": port})
        self.database = self.service.directory / "data" / "mosquitto.db"

    def start(self) -> None:
        """Start (or restart on the same data) and wait until it answers."""
        local_services.start(self.service)

    def kill(self) -> None:
        """SIGKILL: no chance to save anything; wait until its port is free again."""
        kill_service(self.service)

    def stop(self) -> None:
        """Stop it if it runs."""
        local_services.stop(self.service)


def prepare_session(settings: Settings, client_id: str) -> None:
    """Create a collector's persistent session and subscription, as `collector prepare` does."""
    client = MqttClient(settings, client_id, persistent_session=True, manual_ack=True)
    client.connect()
    client.subscribe(events_subscription(settings.mqtt_topic_prefix), qos=1)
    client.disconnect()


def publish_acknowledged(settings: Settings, messages: int, per_message: int) -> float:
    """Publish distinct snapshot batches to AP_UNIT, QoS 1; return when the last PUBACK came."""
    client = MqttClient(settings, "")
    client.connect()
    base = time.time() - 600
    topic = events_topic(settings.mqtt_topic_prefix, AP_UNIT)
    try:
        for index in range(messages):
            events = snapshot(per_message, base + index * 0.01, start=index * per_message)
            client.publish(topic, encode_events(events), wait=False)
        client.wait_until_published(timeout=120)
        return time.time()
    finally:
        client.disconnect()


def postgres_database(service_settings: Settings, name: str, template: str | None = None
                      ) -> str:
    """Create a fresh PostgreSQL database (a copy of template, if given) and return its URL."""
    return local_services.create_database(service_settings, name, template)


def copy_sqlite(template: Path, url: str) -> None:
    """Start the SQLite database at url as a copy of template (a closed, checkpointed file)."""
    shutil.copyfile(template, url.split("///", 1)[-1])


def drop_postgres_database(service_settings: Settings, name: str) -> None:
    """Drop a test database."""
    local_services.drop_database(service_settings, name)


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
            id_type=IdType.RESIDENT_ID_CARD.value, id_number_encrypted=cipher.encrypt(WATCHED_ID),
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
    return Resident(unit_id=unit_id, id_type=IdType.RESIDENT_ID_CARD,
                    id_number_encrypted=cipher.encrypt(number),
                    id_digest=cipher.digest(IdType.RESIDENT_ID_CARD.value, number),
                    id_last4=number[-4:], **cipher.person_columns(name, phone),
                    move_in=dt.date(2024, 3, 1),
                    verification=Verification.REGISTERED)


def signed_query(ap: str = FLOOR_AP, mac: str = "a4:83:e7:12:9f:01", ip: str = "10.1.15.23",
                 key: str = FLOOR_AP_SECRET, **kwargs: Any) -> str:
    """A signed redirect query string as the AP's agent builds it."""
    values = sign_redirect(key, ap, mac, ip, kwargs.pop("gw", "10.1.15.1:2050"),
                           kwargs.pop("url", "http://example.com/"), **kwargs)
    return urlencode(values)


def tampered(token: str) -> str:
    """The token with one character near its middle changed to another: a forgery that always
    differs in its bytes (changing the last characters can touch only base64's unused bits)."""
    index = next(i for i in range(len(token) // 2, len(token)) if token[i].isalnum())
    return token[:index] + ("B" if token[index] == "A" else "A") + token[index + 1:]


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




def staff(factory: sessionmaker[Session], username: str, role: str,
          community: str | None = None) -> None:
    """Create a staff account, district-wide or limited to one community."""
    with session_scope(factory) as db:
        upsert_staff(db, username, PASSWORD, role)
        user = db.scalars(select(StaffUser).where(StaffUser.username == username)).one()
        user.district_wide = community is None
        if community is not None:
            user.communities = [db.scalars(select(Community).where(
                Community.code == community)).one()]


def csrf(html: str) -> str:
    """The staff form's CSRF token."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf token"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    """Sign a staff member in."""
    form = page(client.get("/admin/login"))
    return client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": csrf(form)})


@dataclass
class World:
    """The app, its registry, the staff (by name → id) and cases in community A and B."""

    app: Flask
    factory: sessionmaker[Session]
    places: Places
    staff: dict[str, int]
    case_a: int
    case_b: int
    alert_b: int


WINDOW_START = dt.date(2026, 11, 1)
NIGHTS = 4


def estimate(unit_id: int, registered: int, estimated: float, observed: int,
             flag: str = "") -> UnitEstimate:
    """A stored analytics estimate; nights without observation are None (no data)."""
    nights: list[float | None] = [estimated if observed else None] * NIGHTS
    hour_night: list[list[float] | None] = [
        [estimated if 15 <= h <= 23 else 0.0 for h in range(24)] if observed else None
        for _ in range(NIGHTS)]
    return UnitEstimate(
        unit_id=unit_id, generated_at=dt.datetime(2026, 11, 5, 1, tzinfo=dt.UTC),
        window_start=WINDOW_START, window_end=WINDOW_START + dt.timedelta(days=NIGHTS - 1),
        registered=registered, estimated=estimated, low=max(0.0, estimated - 1),
        high=estimated + 2, confidence=0.97 if flag else 0.05, confidence_plus_one=0.99,
        persistence=1.0, nights_observed=observed, resident_devices=int(estimated),
        people_detected=int(estimated), coverage="unit_ap" if observed else "none",
        utility_ratio=2.4 if flag else None, utility_people=6.5 if flag else None, flag=flag,
        tier="key" if flag else "normal", nights=nights, hours=[0.0] * 24,
        hour_night=pack_hour_night(hour_night))


def env_of(settings: Settings) -> dict[str, str]:
    """Environment variables that make the CLI use this test's settings."""
    values = {
        "environment": "test", "var_dir": str(settings.var_dir),
        "database_url": settings.database_url, "mqtt_topic_prefix": settings.mqtt_topic_prefix,
        "redis_key_prefix": settings.redis_key_prefix, "secret_key": settings.secret_key,
        "pseudonym_key": settings.pseudonym_key, "identity_key": settings.identity_key,
        "command_key": settings.command_key, "digest_key": settings.digest_key,
    }
    return {PREFIX + k.upper(): v for k, v in values.items()}


# The loop as the district runs it, written out independently of the module's table:
# "state[+pending request] action -> new state".
EXPECTED = """
discovered confirm -> reviewed
discovered dismiss -> dismissed
reviewed assign -> assigned
reviewed dismiss -> dismissed
assigned reassign -> assigned
assigned start -> handling
assigned request_return -> assigned
assigned request_extension -> assigned
assigned+return approve -> reviewed
assigned+return deny -> assigned
assigned+extend approve -> assigned
assigned+extend deny -> assigned
handling reassign -> assigned
handling feedback -> feedback
handling request_return -> handling
handling request_extension -> handling
handling request_park -> handling
handling+return approve -> reviewed
handling+return deny -> handling
handling+extend approve -> handling
handling+extend deny -> handling
handling+park approve -> parked
handling+park deny -> handling
feedback verify -> verified
feedback rework -> handling
verified close -> closed
parked resume -> handling
"""


def expected_transitions() -> dict[tuple[str, str, str], str]:
    """The table above as {(state, pending, action): new state}."""
    table = {}
    for line in EXPECTED.strip().splitlines():
        left, to = line.split(" -> ")
        state, action = left.split()
        status, _, pending = state.partition("+")
        table[(status, pending, action)] = to
    return table


# A fixed end keeps runs reproducible (and inside the heating season, so heat rows appear).
SIM_END = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)


def simulate_into(out: Path, **overrides: Any) -> SimulationResult:
    """Simulate into ``out`` with small defaults and the fixed end."""
    values: dict[str, Any] = {"units": 40, "days": 2, "seed": 11, "end": SIM_END}
    values.update(overrides)
    return simulate(SimulationConfig(out=out, **values))


def token_of(factory: sessionmaker[Session], unit_id: int) -> str:
    """A unit's current QR token."""
    with factory() as db:
        return db.get(Unit, unit_id).qr_token  # type: ignore[union-attr]


def photo_bytes(kind: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A real small image."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, kind)
    return out.getvalue()


def inspect(client: FlaskClient, token: str, photos: list[tuple[bytes, str]] | None = None,
            **fields: Any) -> Any:
    """POST the inspection form of a unit."""
    form = page(client.get(f"/q/{token}"))
    data = MultiDict({"csrf_token": csrf(form)})
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            data.add(key, item)
    for content, name in photos or []:
        data.add("photos", FileStorage(io.BytesIO(content), filename=name))
    # Encoded in memory: the test client would spool a large body to a file it never closes.
    boundary, body = encode_multipart(data)
    return client.post(f"/q/{token}", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def registry_frames(units: pd.DataFrame, aps: pd.DataFrame) -> RegistryFrames:
    """Registry frames of units and APs alone: no bindings, meter readings or inspections."""
    return RegistryFrames(
        units=units, aps=aps,
        bindings=pd.DataFrame(columns=["device", "unit", "resident_id", "randomized",
                                       "bound_at", "revoked_at"]),
        utilities=pd.DataFrame(columns=["unit", "kind", "period_start", "period_end", "amount"]),
        inspections=pd.DataFrame(columns=["unit", "at", "hazards", "people_found"]))


# --- AP command fuzzing: tests/census/test_command_fuzz.py briefly, bench/command_fuzz.py long.

FUZZ_COMMAND_KEY = "agent-key-" + "0" * 30
FUZZ_COMMAND_AP = "ap-1"
FUZZ_NOW = 1_764_000_000
COMMAND_FIELDS = ("v", "cmd", "ap", "mac", "session_seconds", "issued", "expires", "nonce",
                  "sig")
ACK_FIELDS = ("v", "nonce", "ok", "error")
# Values that broke verifiers elsewhere: a trailing newline ("$" matches before it), other
# scripts' digits and letters, huge and nested numbers, surrogates, control characters.
_FUZZ_NASTY: tuple[object, ...] = (
    "", " ", "\n", "\x00", "\ud800", "０１２３４５６７８９ａｂｃｄｅｆ", "ap-１", "AP-1", "ap-1\n",
    "a4:83:e7:12:9f:01\n", "A4:83:E7:12:9F:01", "a4-83-e7-12-9f-01", "ａ4:83:e7:12:9f:01",
    "authorize\n", "Authorize", "authorize\u200b", True, False, None, 1.0, 1e309, -1, 0,
    2**32, 2**63, 10**400, -(10**30), [], {}, [[[[[]]]]], "9" * 5000,
)
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _near(value: object) -> st.SearchStrategy[object]:
    """Values close to a valid one: one character more, less or changed, another type."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return st.sampled_from(_FUZZ_NASTY)
    if isinstance(value, int):
        return st.one_of(st.integers(value - 3, value + 3), st.just(str(value)),
                         st.just(float(value)), st.just(value + 2**32), st.just(-value))
    text = value
    return st.one_of(
        st.sampled_from([text + "\n", " " + text, text.upper(), text[:-1], text + "0",
                         text.replace("a", "\u0430"),  # Cyrillic a
                         "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)]),
        st.integers(0, max(len(text) - 1, 0)).flatmap(
            lambda i: st.characters().map(lambda c: text[:i] + c + text[i + 1:])))


def _spoilt(original: dict[str, object],
            fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, object]]:
    """The original object with up to three fields changed, left out, or an extra one added."""
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, object]:
        data = dict(original)
        for name in draw(st.sets(st.sampled_from(fields), max_size=3)):
            choice = draw(st.integers(0, 3))
            if choice == 0:
                data.pop(name, None)
            elif choice == 1:
                data[name] = draw(_JSON)
            else:
                data[name] = draw(_near(original[name]))
        if draw(st.booleans()) and draw(st.booleans()):
            data[draw(st.text(max_size=8))] = draw(_JSON)
        return data

    return build()


def _encoded(data: object) -> bytes:
    """JSON bytes, with numbers Python's json would not write (10**400) written out anyway."""
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8",
                                                                       "surrogatepass")


def _payloads(original: dict[str, object],
              fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Hostile payloads around a valid one: spoilt fields, any JSON, any bytes, cut or deep."""
    good = _encoded(original)
    return st.one_of(
        _spoilt(original, fields).map(_encoded),
        _spoilt(original, fields).map(_encoded),
        _JSON.map(_encoded),
        st.binary(max_size=300),
        st.integers(0, len(good)).map(lambda n: good[:n]),
        st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(4000, 6000).map(lambda digits: b'{"v":' + b"7" * digits + b"}"),
    )


def fuzz_command() -> dict[str, object]:
    """The one validly signed command the fuzzers spoil."""
    from census.commands import build_command

    command = build_command(FUZZ_COMMAND_KEY, "authorize", FUZZ_COMMAND_AP, "a4:83:e7:12:9f:01",
                            86400, now=FUZZ_NOW, nonce="9c1d4e0b7a2f6e31")
    data: dict[str, object] = json.loads(command.to_json())
    return data


def command_payloads() -> st.SearchStrategy[bytes]:
    """Hostile AP command payloads (contracts §4)."""
    return _payloads(fuzz_command(), COMMAND_FIELDS)


def ack_payloads() -> st.SearchStrategy[bytes]:
    """Hostile acknowledgement payloads."""
    return _payloads({"v": 1, "nonce": "9c1d4e0b7a2f6e31", "ok": False, "error": "expired"},
                     ACK_FIELDS)


def check_command(payload: bytes) -> str:
    """verify_command's verdict on one payload: 'ok' or the refusal word.

    AssertionError when the verifier breaks its contract: anything raised but CommandError,
    or a payload accepted whose fields (with their JSON types) are not the signed original's.
    """
    from census.commands import CommandError, NonceCache, verify_command

    try:
        verify_command(payload, FUZZ_COMMAND_KEY, FUZZ_COMMAND_AP, NonceCache(), now=FUZZ_NOW + 1)
    except CommandError as error:
        return error.reason
    sent = json.loads(payload)
    original = fuzz_command()
    assert {name: (type(sent[name]), sent[name]) for name in COMMAND_FIELDS} == {
        name: (type(original[name]), original[name]) for name in COMMAND_FIELDS}, payload[:300]
    return "ok"


ACK_NONCE = re.compile(r"[0-9a-f]{16}")
ACK_ERROR = re.compile(r"[a-z_]{0,32}")


def check_ack(topic: str, payload: bytes) -> str:
    """The command log's reading of one message on an AP's ack topic: 'ok' or the refusal.

    AssertionError when anything but CommandError is raised, or an accepted answer's fields
    are not what the contract allows (nonce 16 hex, error a short word, none when ok).
    """
    from apcommands.log import SeenAck, TopicReader
    from census.commands import CommandError

    try:
        seen = TopicReader("census").read(topic, payload, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except CommandError as error:
        return error.reason
    if isinstance(seen, SeenAck):
        ack = seen.ack
        assert ACK_NONCE.fullmatch(ack.nonce) and ACK_ERROR.fullmatch(ack.error), payload[:300]
        assert not (ack.ok and ack.error), payload[:300]
    return "ok"


def rollup_row(window: Window, device: str, day: int, ap: str = "ap1",
               bins: Iterable[int] = range(150, 280), rssi: float = -50.0,
               randomized: bool = True, first: float | None = None,
               last: float | None = None) -> dict[str, object]:
    """One roll-up row: ``device`` at ``ap`` in the 5-minute ``bins`` of census day ``day``
    of ``window``, in unit C1/B1/0101 (first and last seen: the bins' edges unless given)."""
    chosen = sorted(bins)
    present = np.zeros(288, dtype=bool)
    present[chosen] = True
    day_start = window.start.timestamp() + day * 86400
    return {"day": window.days[day], "ap": ap, "device": device, "randomized": randomized,
            "mask": pack_mask(present), "bins": len(chosen), "samples": len(chosen),
            "rssi_mean": rssi, "rssi_max": rssi + 5.0,
            "first_s": int(first if first is not None else day_start + chosen[0] * 300),
            "last_s": int(last if last is not None else day_start + chosen[-1] * 300),
            "community": "C1", "building": "B1", "floor": "1", "unit": "C1/B1/0101"}
