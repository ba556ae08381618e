"""The staff back office: login, roles, masked lookup with audit, alerts, move-out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings
from portal import create_app
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import Alert, AuditEntry, Community, Device
from tests.common import (
    PASSWORD,
    WATCHED_ID,
    ZHANG_ID,
    Place,
    Subscriber,
    csrf,
    login,
    page,
    sign_in,
    staff,
)


def search(client: FlaskClient, by: str, q: str) -> str:
    """POST a resident search and return the page."""
    form = page(client.get("/admin/residents"))
    return page(client.post("/admin/residents", data={"by": by, "q": q,
                                                      "csrf_token": csrf(form)}))


def audit_actions(factory: sessionmaker[Session], actor: str) -> list[tuple[str, str]]:
    """(action, subject) of an actor's audit entries, oldest first."""
    with factory() as db:
        return [(e.action, e.subject) for e in db.scalars(
            select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.id))]


def test_pages_need_a_login(client: FlaskClient) -> None:
    """Anonymous visitors are sent to the login page."""
    response = client.get("/admin/residents")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]


def test_wrong_password_and_unknown_user_get_the_same_answer(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session]) -> None:
    """No user enumeration on the staff login; both attempts are audited."""
    staff(sqlite_session_factory, "wang", "admin")
    wrong = page(login(client, "wang", "not the password"))
    unknown = page(login(client, "nobody", "not the password"))
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", wrong) == strip.sub("", unknown) and "用户名或密码不正确" in wrong
    assert audit_actions(sqlite_session_factory, "wang") == [("staff_login_failed", "")]


def test_staff_login_is_rate_limited(app: Flask, client: FlaskClient,
                                     sqlite_session_factory: sessionmaker[Session]) -> None:
    """Five wrong passwords for a user name from one address and even the right one waits."""
    staff(sqlite_session_factory, "wang", "admin")
    for _ in range(5):
        login(client, "wang", "guess")
    response = login(client, "wang")
    assert response.status_code == 429 and "尝试次数过多" in page(response)


def test_session_cookie_is_http_only_and_same_site(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session]) -> None:
    """The staff cookie cannot be read by scripts or sent cross-site."""
    staff(sqlite_session_factory, "wang", "admin")
    cookie = login(client, "wang").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure(settings: Settings, place: Place,
                                       redis_client: Any) -> None:
    """In production the cookies need HTTPS."""
    app = create_app(Settings.load(environ={}, **{**settings.__dict__,
                                                  "environment": "production",
                                                  "portal_sms_sender": "http",
                                                  "portal_sms_url": "http://127.0.0.1:9/"}))
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    app.extensions["portal"].close()


def test_console_sms_is_refused_in_production(settings: Settings) -> None:
    """Logging codes is for development; production must name a gateway."""
    import pytest

    from portal.services import PortalConfigError

    with pytest.raises(PortalConfigError, match="WIFI_CENSUS_PORTAL_SMS_SENDER"):
        create_app(Settings.load(environ={}, **{**settings.__dict__,
                                                "environment": "production"}))


def test_lookup_by_id_number_is_masked_and_audited(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """Found by keyed digest; the page never shows the full number, name or phone."""
    staff(sqlite_session_factory, "wang", "grid_worker")
    login(client, "wang")
    results = search(client, "id", ZHANG_ID)
    assert "张*" in results and ZHANG_ID not in results and "13800138000" not in results
    assert "*" * 14 + ZHANG_ID[-4:] in results and "138****8000" in results
    detail = page(client.get(f"/admin/residents/{place.zhang}"))
    assert ZHANG_ID not in detail and "张三" not in detail and "TEDA-017/B03/1502" in detail
    assert audit_actions(sqlite_session_factory, "wang") == [
        ("staff_login", ""), ("search_residents", ""), ("view_resident", f"resident:{place.zhang}")]
    with sqlite_session_factory() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "search_residents")).one()
        assert ZHANG_ID not in str(entry.detail)  # the query itself is not logged


def test_search_by_name_phone_and_unit(client: FlaskClient,
                                       sqlite_session_factory: sessionmaker[Session]) -> None:
    """Each way of searching finds the resident."""
    staff(sqlite_session_factory, "wang", "admin")
    login(client, "wang")
    # Names and phones are found by keyed digest: whole, however spaced or written.
    for by, q in (("name", "张三"), ("name", " 张 三 "), ("phone", "13800138000"),
                  ("phone", "+86 138-0013-8000"), ("unit", "TEDA-017/B03/1502")):
        assert "张*" in search(client, by, q), by
    assert "未找到" in search(client, "name", "钱")
    assert "未找到" in search(client, "name", "张")  # a prefix is not a name


def test_search_by_part_of_a_name_decrypts_only_the_staff_members_communities(
        app: Flask, client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session], monkeypatch: Any) -> None:
    """A surname or a given name finds the resident within the staff member's communities
    (the names decrypted there and counted in the audit entry); another community's staff find
    nobody and decrypt nothing; past the configured bound the search is refused, audited."""
    with session_scope(sqlite_session_factory) as db:
        db.add(Community(code="OTHER", name="other"))
    staff(sqlite_session_factory, "wang", "admin")
    staff(sqlite_session_factory, "li", "grid_worker", community="OTHER")
    login(client, "wang")
    for part in ("张", "三", " 张 三 "):
        assert "张*" in search(client, "name_part", part), part
    assert "李*" in search(client, "name_part", "李") and "张*" not in search(client, "name_part",
                                                                             "李")
    assert "未找到" in search(client, "name_part", "钱")
    with sqlite_session_factory() as db:
        details = [e.detail for e in db.scalars(select(AuditEntry).where(
            AuditEntry.actor == "wang", AuditEntry.action == "search_residents"))]
    assert details[0] == {"by": "name_part", "decrypted": 2, "results": 1, "page": 1}
    monkeypatch.setattr(services, "settings", dataclasses.replace(
        services.settings, portal_name_search_max=1))
    refused = search(client, "name_part", "张")
    assert "张*" not in refused and "按姓名的一部分查找" in refused
    with sqlite_session_factory() as db:
        last = db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.detail["refused"] == 2
    other = app.test_client()
    login(other, "li")
    assert "未找到" in search(other, "name_part", "张")
    with sqlite_session_factory() as db:
        last = db.scalars(select(AuditEntry).where(AuditEntry.action == "search_residents")
                          .order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.actor == "li" and last.detail["decrypted"] == 0


def test_resident_searches_are_limited_per_staff_member(
        settings: Settings, place: Place, redis_client: Any,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """A script walking the alphabet through the search (each page shows masked identities, a
    search by part of a name decrypts every name in scope) is stopped after the limit, per
    staff member, with a page saying when to try again; the refusal is audited."""
    application = create_app(settings, {"TESTING": True,
                                        "PORTAL_RATE_LIMITS": {"staff_search": (3, 600)}})
    try:
        staff(sqlite_session_factory, "wang", "admin")
        staff(sqlite_session_factory, "zhao", "admin")
        harvester, colleague = application.test_client(), application.test_client()
        login(harvester, "wang")
        login(colleague, "zhao")
        for part in ("张", "李", "王"):
            assert "短时间内查询次数过多" not in search(harvester, "name_part", part)
        form = page(harvester.get("/admin/residents"))
        refused = harvester.post("/admin/residents", data={"by": "name_part", "q": "三",
                                                           "csrf_token": csrf(form)})
        assert refused.status_code == 429
        text = page(refused)
        # The wait is what is left of the limit's fixed 10-minute window: 1 to 10 minutes.
        wait = re.search(r"请 (\d+) 分钟后再试", text)
        assert "短时间内查询次数过多" in text and wait and 1 <= int(wait.group(1)) <= 10
        assert "张*" not in text
        assert "张*" in search(colleague, "name_part", "张")  # another staff member's own limit
        with sqlite_session_factory() as db:
            last = db.scalars(select(AuditEntry).where(AuditEntry.actor == "wang")
                              .order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.detail == {"by": "name_part", "refused": "rate"}
    finally:
        application.extensions["portal"].close()


def test_staff_of_another_community_see_nobody(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """A grid worker limited to another community cannot find or open these residents."""
    with session_scope(sqlite_session_factory) as db:
        db.add(Community(code="OTHER", name="other"))
    staff(sqlite_session_factory, "li", "grid_worker", community="OTHER")
    login(client, "li")
    assert "未找到" in search(client, "name", "张三")
    assert client.get(f"/admin/residents/{place.zhang}").status_code == 404


def test_audit_log_is_for_administrators_only(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Grid workers get 403; admins see the entries."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "grid")
    assert client.get("/admin/audit").status_code == 403
    client.post("/admin/logout", data={"csrf_token": csrf(page(client.get("/admin/")))})
    login(client, "boss")
    assert "staff_login" in page(client.get("/admin/audit"))


def test_staff_forms_need_csrf(client: FlaskClient,
                               sqlite_session_factory: sessionmaker[Session]) -> None:
    """A POST without the token is refused (Flask-WTF's CSRFProtect)."""
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    assert client.post("/admin/alerts/1/ack").status_code == 400
    assert client.post("/admin/login", data={"username": "boss",
                                             "password": PASSWORD}).status_code == 400


def test_watchlist_alert_is_listed_and_acknowledged(
        client: FlaskClient, services: PortalServices, place: Place, alerts_topic: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The alert shows in the back office and can be acknowledged (audited)."""
    sign_in(client, services, name="赵六", id_number=WATCHED_ID, phone="13500135000",
            unit=str(place.unit_1502))
    alerts_topic.get()
    staff(sqlite_session_factory, "boss", "hazard_team")
    login(client, "boss")
    listing = page(client.get("/admin/alerts?kind=watchlist"))
    assert "test watchlist entry" in listing and "TEDA-017/B03/1502" in listing
    with sqlite_session_factory() as db:
        alert_id = db.scalars(select(Alert.id)).one()
    client.post(f"/admin/alerts/{alert_id}/ack", data={"csrf_token": csrf(listing)})
    with sqlite_session_factory() as db:
        alert = db.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_by == "boss"
    assert ("acknowledge_alert", f"alert:{alert_id}") in audit_actions(
        sqlite_session_factory, "boss")
    overview = page(client.get("/admin/"))
    assert "未确认的告警" in overview


def test_an_ap_refusing_commands_is_shown_with_its_reason(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session]) -> None:
    """The command log's alert reads as the AP, how many commands and why, in Chinese."""
    from apcommands.log import CommandLog, SeenAck, SeenCommand
    from census.commands import CommandAck, build_command

    log = CommandLog(sqlite_session_factory, "p" * 40)
    now = dt.datetime.now(dt.UTC)
    for index in range(3):
        command = build_command("k" * 32, "authorize", "ap-7", "a4:83:e7:12:9f:01", 60,
                                nonce=f"{index:016x}")
        log.record([SeenCommand("ap-7", command),
                    SeenAck("ap-7", CommandAck(command.nonce, False, "bad_signature"), now)])
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    listing = page(client.get("/admin/alerts?kind=ap_command_refused"))
    assert "接入点 ap-7 已拒绝 3 条指令：签名错误（密钥不符）" in listing
    assert "接入点拒绝指令" in listing  # the filter's option


def test_move_out_from_the_back_office_deauthorizes(
        client: FlaskClient, services: PortalServices, place: Place, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The move-out button revokes the devices and sends deauthorize commands."""
    sign_in(client, services)
    commands.get()
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    detail = page(client.get(f"/admin/residents/{place.zhang}"))
    response = client.post(f"/admin/residents/{place.zhang}/move-out", data={
        "csrf_token": csrf(detail), "move_out": dt.date.today().isoformat()})
    assert response.status_code == 302
    _topic, payload = commands.get()
    assert (payload["cmd"], payload["mac"]) == ("deauthorize", "a4:83:e7:12:9f:01")
    with sqlite_session_factory() as db:
        assert all(d.revoked_at for d in db.scalars(select(Device)))
    assert "已断开 1 台设备" in page(client.get(f"/admin/residents/{place.zhang}"))


def test_hazard_team_cannot_record_move_outs(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """Role check on the action, not only on the button."""
    staff(sqlite_session_factory, "hz", "hazard_team")
    login(client, "hz")
    detail = page(client.get(f"/admin/residents/{place.zhang}"))
    assert "登记迁出并注销设备" not in detail
    response = client.post(f"/admin/residents/{place.zhang}/move-out", data={
        "csrf_token": csrf(detail), "move_out": dt.date.today().isoformat()})
    assert response.status_code == 403


def test_signins_list_shows_unverified_sign_ins(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Self-declared residents are visible to administrators."""
    from tests.common import WANG_ID

    sign_in(client, services, name="王五", id_number=WANG_ID, phone="13900139000",
            unit=str(place.unit_1501))
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    listing = page(client.get("/admin/signins?outcome=self_declared"))
    assert "王*" in listing and "self_declared" in listing and WANG_ID not in listing
