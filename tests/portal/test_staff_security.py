"""Attacks on the back office's sessions and login (issue 11, defects 5, 7 and 9).

Each test performs the attack against the real app, Redis and SQLite registry: a copied staff
cookie replayed after logout, after a password or role change, from another address or after
idling; password guessing that used to lock the administrator out; the back office on the
residents' listener.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings, generate_keys
from portal import create_app, staff_auth
from portal.services import PortalConfigError
from portal.staff_auth import SESSION_SEEN, SESSION_STARTED, LoginGuard, LoginPolicy
from registry.db import session_scope
from registry.models import Role, StaffUser
from registry.staff import upsert_staff
from tests.common import PASSWORD, Place, csrf, login, page, staff
from wifi_census.cli import main

COOKIE = "census_staff"


def signed_in(app: Flask, factory: sessionmaker[Session], username: str = "boss",
              address: str = "10.0.0.7") -> FlaskClient:
    """A client of a staff member signed in from address (their overview answers 200)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    staff(factory, username, "admin")
    assert login(client, username).status_code == 302
    assert client.get("/admin/").status_code == 200
    return client


def replay(app: Flask, victim: FlaskClient, address: str = "10.0.0.7",
           **headers: str) -> FlaskClient:
    """Another client holding a copy of the victim's staff cookie."""
    cookie = victim.get_cookie(COOKIE)
    assert cookie is not None
    thief = app.test_client()
    thief.environ_base["REMOTE_ADDR"] = address
    thief.environ_base.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    thief.set_cookie(COOKIE, cookie.value)
    return thief


def refused(client: FlaskClient) -> bool:
    """The overview sends this client to the login page."""
    response = client.get("/admin/")
    return response.status_code == 302 and "/admin/login" in response.headers["Location"]


# --- defect 5: sessions end server-side ---------------------------------------------------------


def test_cookie_copied_before_logout_is_refused_after_it(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Logging out ends the session on the server, not only in the browser that logged out."""
    victim = signed_in(app, sqlite_session_factory)
    thief = replay(app, victim)
    assert not refused(thief)  # the copy works while the session is open
    victim.post("/admin/logout", data={"csrf_token": csrf(page(victim.get("/admin/")))})
    assert refused(thief)


def test_logout_ends_the_users_other_sessions_too(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Signing out on one computer signs the same account out everywhere."""
    desk = signed_in(app, sqlite_session_factory)
    laptop = app.test_client()
    laptop.environ_base["REMOTE_ADDR"] = "10.0.0.8"
    assert login(laptop, "boss").status_code == 302
    desk.post("/admin/logout", data={"csrf_token": csrf(page(desk.get("/admin/")))})
    assert refused(laptop)


def test_password_change_ends_open_sessions(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """A new password (wifi-census db create-staff) throws out whoever held the old one."""
    victim = signed_in(app, sqlite_session_factory)
    with session_scope(sqlite_session_factory) as db:
        upsert_staff(db, "boss", "a brand new password", "admin")
    assert refused(victim)
    assert login(victim, "boss", "a brand new password").status_code == 302
    assert not refused(victim)


def test_role_change_ends_open_sessions(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Demoted staff do not keep an administrator's session, whatever code demoted them."""
    victim = signed_in(app, sqlite_session_factory)
    with session_scope(sqlite_session_factory) as db:
        user = db.scalars(select(StaffUser).where(StaffUser.username == "boss")).one()
        user.role = Role.GRID_WORKER
    assert refused(victim)


def test_deactivated_account_loses_its_sessions(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Staff who left lose their open sessions when their account is deactivated, and do not
    get them back by being reactivated."""
    victim = signed_in(app, sqlite_session_factory)
    for active in (False, True):
        with session_scope(sqlite_session_factory) as db:
            user = db.scalars(select(StaffUser).where(StaffUser.username == "boss")).one()
            user.active = active
    assert refused(victim)


def test_cookie_replayed_from_another_address_is_refused(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """A stolen cookie does not work from the thief's address, even claiming the victim's
    address in X-Forwarded-For (which flask-login's own check would have believed)."""
    victim = signed_in(app, sqlite_session_factory, address="10.0.0.7")
    assert refused(replay(app, victim, address="203.0.113.9",
                          x_forwarded_for="10.0.0.7"))
    assert not refused(victim)  # ... and the victim was not thrown out by the attempt


def test_idle_session_ends(app: Flask, settings: Settings,
                           sqlite_session_factory: sessionmaker[Session]) -> None:
    """A session unused for longer than the idle time is refused; a busy one goes on."""
    client = signed_in(app, sqlite_session_factory)
    idle = settings.portal_staff_idle_minutes * 60
    with client.session_transaction() as cookie_session:
        cookie_session[SESSION_SEEN] = int(time.time()) - idle + 60
    assert not refused(client)
    with client.session_transaction() as cookie_session:
        cookie_session[SESSION_SEEN] = int(time.time()) - idle - 5
    assert refused(client)


def test_session_ends_after_the_absolute_limit_even_when_busy(
        app: Flask, settings: Settings, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Keeping a stolen session busy does not keep it alive past its hours."""
    client = signed_in(app, sqlite_session_factory)
    with client.session_transaction() as cookie_session:
        cookie_session[SESSION_STARTED] = (int(time.time())
                                           - settings.portal_staff_session_hours * 3600 - 5)
    assert refused(client)


def test_staff_cookie_is_not_persistent(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """The cookie dies with the browser: no Expires, no Max-Age."""
    client = app.test_client()
    staff(sqlite_session_factory, "boss", "admin")
    cookie = login(client, "boss").headers["Set-Cookie"]
    assert cookie.startswith(COOKIE) and "Expires" not in cookie and "Max-Age" not in cookie


# --- defect 7: nobody can lock the administrator out ------------------------------------------


def attempt(app: Flask, address: str, username: str = "boss", password: str = "guess") -> int:
    """One login attempt from an address; its status (302 signed in, 200 wrong, 429 wait)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return int(login(client, username, password).status_code)


def test_guessing_from_one_address_does_not_lock_the_admin_out_elsewhere(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """An attacker's failures back off the attacker; the administrator signs in from the office."""
    staff(sqlite_session_factory, "boss", "admin")
    answers = [attempt(app, "198.51.100.66") for _ in range(12)]
    assert answers[:5] == [200] * 5 and set(answers[5:]) == {429}
    assert attempt(app, "10.0.0.7", password=PASSWORD) == 302


def test_a_successful_login_resets_the_back_off(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Typos followed by the right password never add up to a lock-out (successes don't count)."""
    staff(sqlite_session_factory, "boss", "admin")
    for _ in range(3):
        assert [attempt(app, "10.0.0.7") for _ in range(4)] == [200] * 4
        assert attempt(app, "10.0.0.7", password=PASSWORD) == 302


def test_distributed_guesser_is_stopped_by_the_global_per_name_limit(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """A guesser spread over many addresses meets the per-name limit; the administrator's usual
    address (a past success) still gets in."""
    staff(sqlite_session_factory, "boss", "admin")
    assert attempt(app, "10.0.0.7", password=PASSWORD) == 302
    limit = LoginPolicy().name_limit
    answers = [attempt(app, f"198.51.{i // 200}.{i % 200 + 1}") for i in range(limit)]
    assert answers == [200] * limit
    assert attempt(app, "198.51.100.250", password="another guess") == 429
    assert attempt(app, "198.51.100.251", password=PASSWORD) == 429  # new address: waits
    assert attempt(app, "10.0.0.7", password=PASSWORD) == 302


def test_one_address_spraying_many_names_is_stopped(
        app: Flask, sqlite_session_factory: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Trying one password against many user names from one address meets its own limit."""
    limit = LoginPolicy().address_limit
    # The limit counts per fixed window: the spray must not straddle a window's end, as a
    # slow run of 31 logins at the wrong moment would. The clock stands at a window's start.
    window_start = time.time() // LoginPolicy().address_window_s * LoginPolicy().address_window_s
    monkeypatch.setattr(staff_auth, "time", SimpleNamespace(time=lambda: window_start + 1.0))
    answers = [attempt(app, "198.51.100.66", username=f"user{i}") for i in range(limit + 1)]
    assert answers[:limit] == [200] * limit and answers[limit] == 429


def test_back_off_doubles_and_refused_attempts_do_not_extend_it(
        redis_client: redis.Redis, settings: Settings) -> None:
    """After the free failures a pair waits 30 s, then 60 s, ...; hammering while it waits
    changes nothing."""
    guard = LoginGuard(redis_client, settings.redis_key_prefix)
    start = 1_000_000.0
    for _ in range(5):
        assert guard.reserve("boss", "198.51.100.66", now=start).allowed
    assert guard.reserve("boss", "198.51.100.66", now=start + 1).wait == 29
    for second in range(2, 29):
        assert not guard.reserve("boss", "198.51.100.66", now=start + second).allowed
    assert guard.reserve("boss", "198.51.100.66", now=start + 30).allowed
    assert guard.reserve("boss", "198.51.100.66", now=start + 31).wait == 59
    assert guard.reserve("boss", "10.0.0.7", now=start + 31).allowed  # another address


# --- defect 9: the back office has its own listener --------------------------------------------


def production(settings: Settings, **values: Any) -> Settings:
    """These settings as production ones (an HTTP SMS gateway, as production requires)."""
    return Settings.load(environ={}, **{**settings.__dict__, "environment": "production",
                                        "portal_sms_sender": "http",
                                        "portal_sms_url": "http://127.0.0.1:9/", **values})


def test_production_captive_listener_does_not_serve_the_back_office(
        settings: Settings, place: Place, redis_client: redis.Redis) -> None:
    """On the residents' (public, plain HTTP) listener /admin does not exist in production."""
    app = create_app(production(settings))
    try:
        client = app.test_client()
        assert client.get("/admin/login").status_code == 404
        assert client.get("/api/health").status_code == 200
    finally:
        app.extensions["portal"].close()


def test_production_refuses_to_serve_both_on_one_listener(
        settings: Settings, place: Place, redis_client: redis.Redis) -> None:
    """`--role both` is for development; production must split the listeners."""
    with pytest.raises(PortalConfigError, match="--role admin"):
        create_app(production(settings), {"PORTAL_ROLE": "both"})


def test_admin_listener_serves_only_the_back_office(
        settings: Settings, place: Place, redis_client: redis.Redis) -> None:
    """The back office's own listener has no captive pages; its root leads to the overview."""
    app = create_app(production(settings), {"PORTAL_ROLE": "admin"})
    try:
        client = app.test_client()
        assert client.get("/admin/login").status_code == 200
        assert client.get("/signin").status_code == 404
        assert "/admin/" in client.get("/").headers["Location"]
    finally:
        app.extensions["portal"].close()


def test_serve_refuses_both_roles_in_production(tmp_path: Path) -> None:
    """`portal serve --role both` stops before listening, naming the way to split it."""
    environment = {f"WIFI_CENSUS_{k.upper()}": v for k, v in generate_keys().items()}
    environment.update({
        "WIFI_CENSUS_ENVIRONMENT": "production", "WIFI_CENSUS_VAR_DIR": str(tmp_path),
        "WIFI_CENSUS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        "WIFI_CENSUS_PORTAL_SMS_SENDER": "http", "WIFI_CENSUS_PORTAL_SMS_URL": "http://x/"})
    result = CliRunner().invoke(main, ["portal", "serve", "--role", "both"], env=environment)
    assert result.exit_code == 1 and "refused in production" in result.output
    assert not (tmp_path / "registry.sqlite3").exists()  # stopped before doing anything
