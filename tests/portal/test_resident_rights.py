"""One resident's export and erasure (PIPL arts. 45-47) and the phone confirmation, from the
back office and the CLI: what they hold, what they keep, who may, and the attacks that fail."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings, environment_of
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import AuditEntry, Community, Device, Resident, SignIn
from tests.common import LI_ID, ZHANG_ID, Place, Subscriber, csrf, login, page, sign_in, staff
from wifi_census.cli import main

MAC = "a4:83:e7:12:9f:01"


def _bound_zhang(client: FlaskClient, services: PortalServices) -> None:
    """张三 signs in on a phone: a device bound, a sign-in and a consent recorded."""
    assert "连接成功" in page(sign_in(client, services))


def _old_signin(factory: sessionmaker[Session], resident_id: int, days: int) -> int:
    """A sign-in of the resident made days ago; its id."""
    with session_scope(factory) as db:
        signin = SignIn(at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days), ap_id="ap-1",
                        handshake="signed", method="one_tap", outcome="registered",
                        mac_pseudonym="0" * 16, resident_id=resident_id)
        db.add(signin)
        db.flush()
        return signin.id


def _audits(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    """The audit entries of one action."""
    with factory() as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_an_administrator_exports_everything_held(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """JSON and the bilingual page: identity in clear (it is the person's copy), units,
    devices as pseudonyms (never the MAC), sign-ins, consents, retention dates; audited."""
    _bound_zhang(client, services)
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    response = client.get(f"/admin/residents/{place.zhang}/export.json")
    assert response.status_code == 200 and "attachment" in response.headers[
        "Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.data)
    identity = document["identity"]
    assert (identity["name"], identity["id_number"], identity["phone"], identity["id_type"]) == (
        "张三", ZHANG_ID, "+8613800138000", "resident_id_card")
    assert [u["ref"] for u in document["units"]] == ["TEDA-017/B03/1502"]
    assert len(document["devices"]) == 1 and len(document["devices"][0]["pseudonym"]) == 16
    assert MAC not in response.text and MAC.replace(":", "") not in response.text
    signin = document["signins"][0]
    assert (signin["name"], signin["phone"], signin["outcome"]) == (
        "张三", "+8613800138000", "registered")
    assert signin["kept_until"] == (dt.datetime.fromisoformat(signin["at"]).date()
                                    + dt.timedelta(days=180)).isoformat()
    assert document["consents"] and document["consents"][0]["version"]
    readable = page(client.get(f"/admin/residents/{place.zhang}/export"))
    for text in ("姓名", "Name", "张三", ZHANG_ID, "保存至", "Kept until", "TEDA-017/B03/1502"):
        assert text in readable, text
    assert [(e.actor, e.subject, e.detail) for e in _audits(
        sqlite_session_factory, "export_resident")] == [
        ("boss", f"resident:{place.zhang}", {"format": "json"}),
        ("boss", f"resident:{place.zhang}", {"format": "html"})]


@pytest.mark.parametrize("role", ["supervisor", "hazard_team", "grid_worker", "viewer"])
def test_only_administrators_export_or_erase(
        role: str, client: FlaskClient, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Every other role is refused every rights page, and the resident stays."""
    staff(sqlite_session_factory, "someone", role)
    login(client, "someone")
    for path in ("privacy", "export", "export.json"):
        assert client.get(f"/admin/residents/{place.zhang}/{path}").status_code == 403, path
    token = csrf(page(client.get("/admin/login")))
    refused = client.post(f"/admin/residents/{place.zhang}/erase",
                          data={"csrf_token": token, "confirm": "y", "reason": "x" * 20})
    assert refused.status_code == 403
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.zhang) is not None
    assert _audits(sqlite_session_factory, "export_resident") == []


def test_an_administrator_of_another_community_sees_no_such_resident(
        client: FlaskClient, place: Place, sqlite_session_factory: sessionmaker[Session]
        ) -> None:
    """A resident id of another community answers as one that does not exist: 404."""
    with session_scope(sqlite_session_factory) as db:
        db.add(Community(code="OTHER", name="other"))
    staff(sqlite_session_factory, "other-boss", "admin", community="OTHER")
    login(client, "other-boss")
    for resident_id in (place.zhang, 999_999):
        for path in ("privacy", "export", "export.json"):
            assert client.get(f"/admin/residents/{resident_id}/{path}").status_code == 404
    token = csrf(page(client.get("/admin/login")))
    erased = client.post(f"/admin/residents/{place.zhang}/erase",
                         data={"csrf_token": token, "confirm": "y", "reason": "x" * 20})
    assert erased.status_code == 404
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.zhang) is not None
    assert _audits(sqlite_session_factory, "export_resident") == []


def test_erasure_needs_the_token_the_confirmation_and_a_reason(
        client: FlaskClient, place: Place, sqlite_session_factory: sessionmaker[Session]
        ) -> None:
    """A cross-site POST (no CSRF token), an unticked box or a missing reason erase nothing."""
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    url = f"/admin/residents/{place.zhang}/erase"
    assert client.post(url, data={"confirm": "y", "reason": "x" * 20}).status_code == 400
    token = csrf(page(client.get(f"/admin/residents/{place.zhang}/privacy")))
    for data in ({"reason": "asked in person 2026-11-29"}, {"confirm": "y", "reason": "short"},
                 {"confirm": "y"}):
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 302 and response.headers["Location"].endswith(
            f"/admin/residents/{place.zhang}/privacy")
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.zhang) is not None
    assert _audits(sqlite_session_factory, "erase_resident") == []


def test_erasure_deletes_what_the_law_lets_go_and_keeps_the_network_log(
        client: FlaskClient, services: PortalServices, commands: Subscriber, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Identity and bindings go (the device is disconnected), a year-old sign-in goes, the last
    six months of sign-ins stay without their link; the reason is in the audit log."""
    _bound_zhang(client, services)
    assert commands.get()[1]["cmd"] == "authorize"
    old = _old_signin(sqlite_session_factory, place.zhang, days=365)
    staff(sqlite_session_factory, "boss", "admin")
    login(client, "boss")
    form = page(client.get(f"/admin/residents/{place.zhang}/privacy"))
    assert "删除" in form and "《网络安全法》第二十一条" in form
    reason = "本人 2026-11-29 书面申请删除"
    done = client.post(f"/admin/residents/{place.zhang}/erase",
                       data={"csrf_token": csrf(form), "confirm": "y", "reason": reason})
    assert done.status_code == 302
    assert "依法保留" in page(client.get(done.headers["Location"]))
    topic, command = commands.get()
    assert command["cmd"] == "deauthorize" and topic.endswith("/cmd")
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.zhang) is None
        assert db.scalars(select(Device)).all() == []
        assert db.get(SignIn, old) is None
        kept = db.scalars(select(SignIn)).all()
        assert len(kept) == 1 and kept[0].resident_id is None
        assert kept[0].name_encrypted is not None  # the network log's who, still encrypted
    entry = _audits(sqlite_session_factory, "erase_resident")[0]
    assert (entry.actor, entry.subject, entry.detail["reason"]) == (
        "boss", f"resident:{place.zhang}", reason)
    assert entry.detail["deleted"] == {"resident": 1, "devices": 1, "signins": 1}
    assert entry.detail["kept"]["signins"]["count"] == 1


def _cli_environment(settings: Settings) -> dict[str, str]:
    """The test's settings as the CLI reads them."""
    return environment_of(settings)


def test_cli_export_and_erase(tmp_path: Path, settings: Settings, place: Place,
                              sqlite_session_factory: sessionmaker[Session]) -> None:
    """`portal resident export` (JSON, and the page into an owner-only file) and `erase`
    (a dry run without --yes), each audited with who asked."""
    runner, environment = CliRunner(), _cli_environment(settings)
    result = runner.invoke(main, ["portal", "resident", "export", str(place.li),
                                  "--staff", "wang"], env=environment)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["identity"]["name"], document["identity"]["id_number"]) == ("李四", LI_ID)
    out = tmp_path / "li.html"
    result = runner.invoke(main, ["portal", "resident", "export", str(place.li), "--staff",
                                  "wang", "--format", "html", "--out", str(out)],
                           env=environment)
    assert result.exit_code == 0, result.output
    assert "李四" in out.read_text(encoding="utf-8") and out.stat().st_mode & 0o077 == 0
    missing = runner.invoke(main, ["portal", "resident", "export", "999999", "--staff", "w"],
                            env=environment)
    assert missing.exit_code == 1 and "no resident 999999" in missing.output
    dry = runner.invoke(main, ["portal", "resident", "erase", str(place.li), "--staff", "wang",
                               "--reason", "本人 2026-11-29 书面申请"], env=environment)
    assert dry.exit_code == 0 and "--yes" in dry.output
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.li) is not None
    erased = runner.invoke(main, ["portal", "resident", "erase", str(place.li), "--staff",
                                  "wang", "--reason", "本人 2026-11-29 书面申请", "--yes"],
                           env=environment)
    assert erased.exit_code == 0, erased.output
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.li) is None
    assert [(e.actor, e.action) for e in _audits(sqlite_session_factory, "export_resident")
            + _audits(sqlite_session_factory, "erase_resident")] == [
        ("cli:wang", "export_resident"), ("cli:wang", "export_resident"),
        ("cli:wang", "erase_resident")]


def _unconfirmed_li(client: FlaskClient, services: PortalServices,
                    factory: sessionmaker[Session]) -> int:
    """李四 (no phone on file) signs in with a verified phone: an unconfirmed sign-in."""
    sign_in(client, services, name="李四", id_number=LI_ID, phone="13600136000")
    with factory() as db:
        return db.scalars(select(SignIn.id).where(SignIn.outcome == "unconfirmed")).one()


def test_the_back_office_confirms_a_phone_once_and_audits_it(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The button on the unconfirmed sign-in makes the number 李四's; a second press is
    refused; a POST without the token does nothing."""
    signin_id = _unconfirmed_li(client, services, sqlite_session_factory)
    staff(sqlite_session_factory, "grid", "grid_worker", community="TEDA-017")
    login(client, "grid")
    listing = page(client.get("/admin/signins?outcome=unconfirmed"))
    assert f"/admin/signins/{signin_id}/confirm-phone" in listing
    url = f"/admin/signins/{signin_id}/confirm-phone"
    assert client.post(url).status_code == 400  # no CSRF token
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.li).phone_digest == ""  # type: ignore[union-attr]
    done = client.post(url, data={"csrf_token": csrf(listing)})
    assert done.status_code == 302 and done.headers["Location"].endswith(
        f"/admin/residents/{place.li}")
    with sqlite_session_factory() as db:
        li = db.get(Resident, place.li)
        assert li is not None and services.cipher.reveal(li.phone_encrypted) == "+8613600136000"
    again = client.post(url, data={"csrf_token": csrf(listing)})
    assert "无法确认此手机号" in page(client.get(again.headers["Location"]))
    assert [(e.actor, e.subject) for e in _audits(sqlite_session_factory, "confirm_phone")] == [
        ("grid", f"resident:{place.li}")]


@pytest.mark.parametrize(("role", "community", "status"), [
    ("viewer", None, 403), ("hazard_team", None, 403), ("supervisor", None, 403),
    ("grid_worker", "OTHER", 404), ("admin", "OTHER", 404)])
def test_who_may_not_confirm_a_phone(
        role: str, community: str | None, status: int, client: FlaskClient,
        services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Roles that do not meet residents, and staff of another community, change nothing."""
    signin_id = _unconfirmed_li(client, services, sqlite_session_factory)
    with session_scope(sqlite_session_factory) as db:
        db.add(Community(code="OTHER", name="other"))
    staff(sqlite_session_factory, "someone", role, community=community)
    login(client, "someone")
    token = csrf(page(client.get("/admin/login")))
    response = client.post(f"/admin/signins/{signin_id}/confirm-phone",
                           data={"csrf_token": token})
    assert response.status_code == status
    with sqlite_session_factory() as db:
        assert db.get(Resident, place.li).phone_digest == ""  # type: ignore[union-attr]
