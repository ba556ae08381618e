"""The AP command outbox (issue 12): a command written with its sign-in survives the portal
worker's death while the broker is away; re-sends are harmless; stale authorizes are dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from apcommands.outbox import HOLD_S, CommandOutbox, enqueue
from census.privacy import IdentityCipher
from census.settings import Settings
from portal.services import PortalServices
from registry.db import make_engine, make_session_factory, session_scope
from registry.models import OutboxCommand, SignIn
from simulator.agents import SimulatedAgents
from tests.common import (
    FLOOR_AP,
    PrivateBroker,
    code_form,
    env_of,
    fill_registry,
    free_port,
    identity_form,
    last_code,
    phone_form,
    signed_query,
    wait_for,
)

MAC = "a4:83:e7:12:9f:01"  # signed_query's device
SIGNED_IN = "连接成功"


def outbox_rows(factory: sessionmaker[Session]) -> int:
    """Commands still in the outbox."""
    with factory() as db:
        return int(db.scalar(select(func.count()).select_from(OutboxCommand)) or 0)


def worker_pids(master: int) -> list[int]:
    """gunicorn's worker processes: the master's children."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


@pytest.fixture
def broker(settings: Settings, tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker of this test's own, not started yet (it is down when the sign-in happens)."""
    own = PrivateBroker(settings, tmp_path / "broker")
    yield own
    own.stop()


def test_a_sign_in_answered_while_the_broker_is_down_reaches_the_ap_after_the_worker_is_killed(
        settings: Settings, redis_client: Any, sqlite_session_factory: sessionmaker[Session],
        broker: PrivateBroker, tmp_path: Path) -> None:
    """As production runs: gunicorn, broker down. The resident signs in and gets the page saying
    the AP did not answer; the worker is SIGKILLed right after. The broker comes back, gunicorn
    starts a new worker, and the authorize written with the sign-in reaches the AP, once."""
    started = time.monotonic()
    own = broker.settings
    port = free_port()
    env = {**os.environ, **env_of(own), "WIFI_CENSUS_MQTT_PORT": str(own.mqtt_port)}
    log = (tmp_path / "portal.log").open("wb")
    portal = subprocess.Popen(
        [str(Path(sys.executable).with_name("wifi-census")), "portal", "serve", "--host",
         "127.0.0.1", "--port", str(port), "--workers", "1", "--threads", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=log)
    services = PortalServices.build(own)  # the test's view: SMS codes and the APs' keys
    agents = SimulatedAgents(own, services.directory.key_for)
    phone = requests.Session()
    base = f"http://127.0.0.1:{port}"
    try:
        # While gunicorn starts (most of this test's time); its worker reads it on first use.
        fill_registry(sqlite_session_factory, IdentityCipher.from_settings(settings))
        wait_for(lambda: len(worker_pids(portal.pid)) == 1, timeout=30, what="a portal worker")
        phone.headers.update({"User-Agent": "Mozilla/5.0 (iPhone) Mobile/15E148",
                              "Accept-Language": "zh-CN,zh;q=0.9"})
        wait_for(lambda: _answers(phone, base), timeout=30, what="the portal answering")
        splash = phone.get(f"{base}/?{signed_query(mac=MAC)}", timeout=10).text
        sent = phone.post(f"{base}/signin", data=phone_form(splash), timeout=10).text
        proven = phone.post(f"{base}/verify", data=code_form(
            sent, last_code(services, "13800138000")), timeout=10).text
        [worker] = worker_pids(portal.pid)
        done = phone.post(f"{base}/identity", data=identity_form(proven), timeout=30)
        os.kill(worker, signal.SIGKILL)  # right after it answered
        assert done.status_code == 503 and SIGNED_IN not in done.text
        with sqlite_session_factory() as db:
            assert db.scalar(select(func.count()).select_from(SignIn)) == 1
        assert outbox_rows(sqlite_session_factory) == 1  # the command outlived its worker
        broker.start()
        agents.start()
        wait_for(lambda: worker_pids(portal.pid) not in ([], [worker]), timeout=30,
                 what="gunicorn's new worker")
        assert agents.wait_for_answers(1, timeout=20), "the authorize never reached the AP"
        wait_for(lambda: outbox_rows(sqlite_session_factory) == 0, timeout=10,
                 what="the sent command deleted")
        time.sleep(0.5)  # a second copy, if one were sent, would have arrived by now
    finally:
        phone.close()
        portal.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown
        try:
            portal.wait(10)
        except subprocess.TimeoutExpired:
            portal.kill()
            portal.wait(10)
        log.close()
        agents.stop()
        services.close()
    print(f"worker killed after the sign-in, broker down: authorize received "
          f"{sum(agents.answers.values())}, applied {agents.answers['ok']}, "
          f"{time.monotonic() - started:.1f} s")
    assert dict(agents.answers) == {"ok": 1}
    assert MAC in agents.authorized[FLOOR_AP]
    session_left = agents.authorized[FLOOR_AP][MAC] - time.time()
    assert 0 < session_left <= own.portal_session_seconds  # never more than signed in for


def _answers(session: requests.Session, base: str) -> bool:
    """Whether the portal answers HTTP yet."""
    try:
        return session.get(f"{base}/api/ping", timeout=2).status_code < 500
    except requests.RequestException:
        return False


@pytest.fixture
def outbox_world(settings: Settings, sqlite_session_factory: sessionmaker[Session]
                 ) -> Iterator[tuple[PortalServices, SimulatedAgents]]:
    """The portal's services on the shared broker and the APs' agents listening."""
    fill_registry(sqlite_session_factory, IdentityCipher.from_settings(settings))
    services = PortalServices.build(settings)
    agents = SimulatedAgents(settings, services.directory.key_for)
    agents.start()
    yield services, agents
    agents.stop()
    services.close()


def _queue(services: PortalServices, cmd: str, seconds: int, age_s: float) -> OutboxCommand:
    """A command queued age_s ago and due now."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    with session_scope(services.session_factory) as db:
        row = enqueue(db, services.cipher, cmd, FLOOR_AP, MAC, seconds, now)
        db.execute(update(OutboxCommand).where(OutboxCommand.id == row.id)
                   .values(next_attempt_at=now))
    return row


def test_the_request_sends_its_command_when_the_registry_is_lost_after_the_commit(
        outbox_world: tuple[PortalServices, SimulatedAgents],
        caplog: pytest.LogCaptureFixture) -> None:
    """The sign-in committed, then the registry went away (a CI run saw PostgreSQL killed in
    that moment turn a recorded sign-in into a 500): the request still sends the command it
    wrote, from memory, and the AP applies it; the undone delete only means one re-send."""
    services, agents = outbox_world
    row = _queue(services, "authorize", 3600, 0)
    gone = make_session_factory(make_engine(f"postgresql://census@127.0.0.1:{free_port()}/gone"))
    cut_off = CommandOutbox(gone, services.cipher, services.control)
    caplog.set_level(logging.WARNING, logger="apcommands.outbox")
    command = cut_off.send(row)
    assert command.cmd == "authorize" and command.mac == MAC
    assert agents.wait_for_answers(1, timeout=10)
    assert dict(agents.answers) == {"ok": 1}
    assert f"row {row.id} sent but not deleted" in caplog.text
    assert outbox_rows(services.session_factory) == 1  # the drain sends it again, harmlessly


def test_a_command_sent_again_after_a_lost_delete_is_applied_again_harmlessly(
        outbox_world: tuple[PortalServices, SimulatedAgents],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker took it but the worker could not mark it: the drain sends it again, signed
    afresh, and the agent accepts both (a fresh nonce each; authorize is idempotent)."""
    services, agents = outbox_world
    row = _queue(services, "authorize", 3600, 0)
    lost = monkeypatch.context()
    with lost as patch:
        patch.setattr(CommandOutbox, "_delete", lambda self, row: None)
        first = services.outbox.send(row)
    # Its hold ended (the request did not delete it): due again.
    with session_scope(services.session_factory) as db:
        db.execute(update(OutboxCommand).values(next_attempt_at=dt.datetime.now(dt.UTC)))
    assert services.outbox.drain().sent == 1
    assert agents.wait_for_answers(2, timeout=10)
    assert dict(agents.answers) == {"ok": 2}
    assert outbox_rows(services.session_factory) == 0
    assert first is not None and first.session_seconds <= 3600


def test_an_authorize_whose_session_ended_is_dropped_and_a_deauthorize_is_never(
        outbox_world: tuple[PortalServices, SimulatedAgents],
        caplog: pytest.LogCaptureFixture) -> None:
    """Queued two hours ago: the one-hour authorize is dropped with a warning, never sent; the
    deauthorize (an erasure, a ban) goes out signed now, and the agent applies it."""
    services, agents = outbox_world
    _queue(services, "authorize", 3600, 7200)
    _queue(services, "deauthorize", 0, 7200)
    caplog.set_level(logging.WARNING, logger="apcommands.outbox")
    report = services.outbox.drain()
    assert (report.sent, report.dropped, report.failed) == (1, 1, 0)
    assert "dropped unsent: its session ended" in caplog.text
    assert agents.wait_for_answers(1, timeout=10)
    time.sleep(0.3)
    assert dict(agents.answers) == {"ok": 1}
    assert outbox_rows(services.session_factory) == 0


def test_a_due_command_is_claimed_by_one_sender_only(
        outbox_world: tuple[PortalServices, SimulatedAgents], settings: Settings) -> None:
    """Two portal workers draining at once: one claims the row, the other leaves it."""
    services, _agents = outbox_world
    row = _queue(services, "deauthorize", 0, 0)
    other = CommandOutbox(services.session_factory, services.cipher, services.control)
    now = dt.datetime.now(dt.UTC)
    assert services.outbox._claim(row, now) is True
    assert other._claim(row, now) is False
    with services.session_factory() as db:
        held = db.get_one(OutboxCommand, row.id).next_attempt_at
    assert held >= now + dt.timedelta(seconds=HOLD_S - 1)
