"""The resident's sign-in through the app, against the real Redis, broker and registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from census.commands import NonceCache, verify_command
from census.handshake import encode_fas_parameter, fas_return_token
from census.privacy import pseudonymize_mac
from census.settings import Settings
from portal import create_app
from portal.const import CAPTIVE_JSON
from portal.services import PortalServices
from portal.sms import HttpSmsSender
from registry.db import session_scope
from registry.models import Alert, AuditEntry, Device, Resident, SignIn, Verification
from tests.common import (
    FLOOR_AP,
    FLOOR_AP_SECRET,
    LI_ID,
    UNIT_AP,
    WANG_ID,
    WATCHED_ID,
    ZHANG_ID,
    Place,
    Subscriber,
    code_form,
    enable_fas,
    hidden,
    identity_form,
    last_code,
    page,
    phone_form,
    prove_phone,
    sign_in,
    signed_query,
    tampered,
)

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Mobile/15E148")
PIXEL = ("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005) AppleWebKit/537.36 "
         "(KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36")


def test_registered_resident_signs_in_and_the_ap_gets_a_signed_authorize(
        client: FlaskClient, services: PortalServices, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """The full path ends with a verifiable authorize command on the AP's topic."""
    done = sign_in(client, services)
    assert done.status_code == 200 and "连接成功" in page(done)
    topic, payload = commands.get()
    assert topic.endswith(f"/v1/ap/{FLOOR_AP}/cmd")
    verified = verify_command(json.dumps(payload), FLOOR_AP_SECRET, FLOOR_AP, NonceCache())
    assert (verified.cmd, verified.mac, verified.session_seconds) == (
        "authorize", "a4:83:e7:12:9f:01", 86400)
    with sqlite_session_factory() as db:
        signin = db.scalars(select(SignIn)).one()
        assert (signin.outcome, signin.method, signin.resident_id) == (
            "registered", "sms", place.zhang)
        device = db.scalars(select(Device)).one()
        assert device.resident_id == place.zhang and device.label == "iPhone"
        assert device.mac_pseudonym == pseudonymize_mac("a4:83:e7:12:9f:01",
                                                        services.settings.pseudonym_key)
        assert b"a4:83" not in device.mac_encrypted  # encrypted, not in clear
        assert signin.id_number_encrypted and ZHANG_ID.encode() not in signin.id_number_encrypted
        assert db.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "sign_in")) == 1


def test_unit_ap_without_own_secret_signs_with_the_global_command_key(
        client: FlaskClient, services: PortalServices, commands: Subscriber,
        settings: Settings, place: Place) -> None:
    """An AP with no secret of its own uses WIFI_CENSUS_COMMAND_KEY both ways."""
    query = signed_query(ap=UNIT_AP, key=settings.command_key)
    sign_in(client, services, query, unit=str(place.unit_1502))
    _topic, payload = commands.get()
    assert verify_command(json.dumps(payload), settings.command_key, UNIT_AP, NonceCache())


def test_pages_are_chinese_by_default_and_english_when_the_browser_asks(
        client: FlaskClient) -> None:
    """Accept-Language picks the language; ?lang= overrides it."""
    assert "登录使用免费 Wi-Fi" in page(client.get("/?" + signed_query()))
    english = client.get("/?" + signed_query(), headers={"Accept-Language": "en-US,en;q=0.8"})
    assert "Sign in to use the free Wi-Fi" in page(english)
    assert '<html lang="en">' in page(english)
    flow = hidden(page(english), "flow")
    assert "登录使用免费 Wi-Fi" in page(client.get(f"/s?f={flow}&lang=zh_CN"))


def test_pages_are_small_and_self_contained(client: FlaskClient) -> None:
    """No external assets, one script of our own (never inline), a few kilobytes, a strict
    CSP, nothing cached."""
    response = client.get("/?" + signed_query())
    html = page(response)
    assert len(response.get_data()) < 12_000
    assert html.count("<script") == html.count("src=") == 1 and "<link" not in html
    assert '<script src="/static/js/resident.js" defer></script>' in html
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(("number", "message"), [
    ("110105194912310021", "身份证号码校验位不正确"),
    ("11010519491231002", "居民身份证号码应为 18 位"),
    ("110105194913310028", "出生日期不正确"),
])
def test_a_bad_id_number_is_a_clear_message_on_the_same_form(
        client: FlaskClient, services: PortalServices, number: str, message: str,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """No error page, nothing signed in; what was typed stays in the form, and the proven
    number stays proven (the corrected form signs in)."""
    identity = prove_phone(client, services, page(client.get("/?" + signed_query())))
    response = client.post("/identity", data=identity_form(identity, id_number=number))
    assert response.status_code == 200
    assert message in page(response) and 'value="张三"' in page(response)
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(SignIn)) == 0
    fixed = client.post("/identity", data=identity_form(page(response)))
    assert "连接成功" in page(fixed)


@pytest.mark.parametrize("unit", ["999999", "not-a-unit"])
def test_a_unit_not_offered_by_the_ap_is_refused(client: FlaskClient, services: PortalServices,
                                                 place: Place, unit: str) -> None:
    """Only the AP's own units (or visiting) may be chosen; the form says so."""
    splash = client.get("/?" + signed_query())
    identity = prove_phone(client, services, page(splash))
    sent = client.post("/identity", data=identity_form(identity, unit=unit))
    assert sent.status_code == 200 and "请从列表中选择" in page(sent)
    offered = identity_form(page(sent), unit=str(place.unit_1501))
    assert "连接成功" in page(client.post("/identity", data=offered))


def test_missing_consent_is_refused(client: FlaskClient) -> None:
    """The terms and privacy notice must be accepted."""
    splash = page(client.get("/?" + signed_query()))
    data = phone_form(splash)
    del data["consent"]
    assert "请阅读并同意" in page(client.post("/signin", data=data))


@pytest.mark.parametrize(("query", "status", "text"), [
    (signed_query(mac="a4:83:e7:12:9f:02").replace("a4%3A83%3Ae7%3A12%3A9f%3A02",
                                                   "a4%3A83%3Ae7%3A12%3A9f%3A03"), 403, "无效"),
    (signed_query(key="wrong-key-" + "0" * 30), 403, "无效"),
    (signed_query(now=1_000_000_000), 400, "已过期"),
    (signed_query(ap="ap-not-registered"), 403, "无效"),
    ("ap=x&sig=" + "0" * 64, 400, "无效"),
])
def test_forged_expired_and_unknown_redirects_are_refused(
        client: FlaskClient, query: str, status: int, text: str) -> None:
    """A refused hand-over is a short page saying what to do, with the right status."""
    response = client.get("/?" + query)
    assert response.status_code == status and text in page(response)
    assert 'name="flow"' not in page(response)


def test_a_replayed_redirect_is_refused(client: FlaskClient) -> None:
    """The same signed link works once."""
    query = signed_query()
    assert client.get("/?" + query).status_code == 200
    again = client.get("/?" + query)
    assert again.status_code == 409 and "已被使用" in page(again)


def test_forms_without_a_valid_csrf_token_do_nothing(client: FlaskClient,
                                                     services: PortalServices) -> None:
    """CSRF is checked on the form; a token from another flow does not fit."""
    first = page(client.get("/?" + signed_query()))
    other = page(client.get("/?" + signed_query(mac="a4:83:e7:12:9f:09")))
    # "0.\x9bT" was a 500 (compare_digest refuses non-ASCII text; bench/form_fuzz.py found it);
    # "²" passes str.isdigit() but not int().
    for token in ("", "123.abc", hidden(other, "csrf_token"), "0.\x9bT", "²." + "a" * 64,
                  "١٧٦٤." + "a" * 64):
        response = client.post("/signin", data=phone_form(first, csrf_token=token))
        assert "本页面已过期" in page(response)
    assert services.sms.last_code("13800138000") is None  # type: ignore[attr-defined]


def test_a_forged_flow_token_is_refused(client: FlaskClient) -> None:
    """The flow token is signed: changing it is caught."""
    splash = page(client.get("/?" + signed_query()))
    data = phone_form(splash)
    data["flow"] = tampered(data["flow"])
    response = client.post("/signin", data=data)
    assert response.status_code == 400 and "请重新开始" in page(response)


def test_wrong_codes_then_lock(client: FlaskClient, services: PortalServices,
                               commands: Subscriber) -> None:
    """Tries left are shown; after the last, even the right code is refused."""
    splash = page(client.get("/?" + signed_query()))
    sent = page(client.post("/signin", data=phone_form(splash)))
    code = last_code(services, "13800138000")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    html = sent
    for left in (4, 3, 2, 1):
        html = page(client.post("/verify", data=code_form(html, wrong)))
        assert f"还可尝试 {left} 次" in html
    html = page(client.post("/verify", data=code_form(html, wrong)))
    assert "错误次数过多" in html
    assert "错误次数过多" in page(client.post("/verify", data=code_form(html, code)))
    assert commands.empty_for(0.3)


def test_resend_respects_the_cooldown(client: FlaskClient, services: PortalServices) -> None:
    """Right after a code, a new one is refused with the wait shown."""
    splash = page(client.get("/?" + signed_query()))
    sent = page(client.post("/signin", data=phone_form(splash)))
    response = page(client.post("/resend", data={
        "flow": hidden(sent, "flow"), "lang": "zh_CN", "csrf_token": hidden(sent, "csrf_token")}))
    assert re.search(r"请等待 \d+ 秒后再获取", response)


def test_the_page_is_the_same_whether_or_not_the_identity_is_registered(
        client: FlaskClient, services: PortalServices) -> None:
    """No user enumeration: the pages after the code and after the identity differ only in
    the tokens (and the masked number)."""
    def pages(mac: str, phone: str, **fields: str) -> tuple[str, str]:
        splash = page(client.get("/?" + signed_query(mac=mac)))
        identity = prove_phone(client, services, splash, phone)
        done = page(client.post("/identity", data=identity_form(identity, **fields)))
        tokens = re.compile(r'(value="|f=)[^"&]*')  # flow tokens differ per page
        return tokens.sub("", identity), tokens.sub("", done)

    registered = pages("02:00:00:00:00:01", "13800138000")
    unknown = pages("02:00:00:00:00:02", "13800138001", name="王五", id_number=WANG_ID)
    watched = pages("02:00:00:00:00:03", "13800138002", name="赵六", id_number=WATCHED_ID)
    mask = re.compile(r"138\*\*\*\*\d{4}|[张王赵]\*")
    for n in (0, 1):
        assert mask.sub("", registered[n]) == mask.sub("", unknown[n]) == mask.sub(
            "", watched[n])


def test_unknown_identity_with_a_unit_is_self_declared_and_unverified(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Not in the registry, lives in 1501: recorded as self-declared, device bound."""
    done = sign_in(client, services, name="王五", id_number=WANG_ID, phone="13900139000",
                   unit=str(place.unit_1501))
    assert "连接成功" in page(done)
    with sqlite_session_factory() as db:
        resident = db.scalars(select(Resident).where(
            Resident.name_digest == services.cipher.name_digest("王五"))).one()
        assert resident.verification is Verification.SELF_DECLARED
        assert resident.unit_id == place.unit_1501
        assert db.scalars(select(SignIn)).one().outcome == "self_declared"
        assert db.scalars(select(Device)).one().resident_id == resident.id


def test_a_visitor_is_recorded_but_not_made_a_resident(
        client: FlaskClient, services: PortalServices,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """'I am visiting': a sign-in record with the declared identity, no resident, no device."""
    sign_in(client, services, name="王五", id_number=WANG_ID, phone="13900139000",
            unit="visitor")
    with sqlite_session_factory() as db:
        signin = db.scalars(select(SignIn)).one()
        assert signin.outcome == "visitor" and signin.resident_id is None
        assert db.scalar(select(func.count()).select_from(Device)) == 0
        assert db.scalar(select(func.count()).select_from(Resident)) == 2


def test_a_registered_identity_with_another_phone_is_a_mismatch(
        client: FlaskClient, services: PortalServices, commands: Subscriber, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Someone knowing 张三's ID number gets online but is not bound to 张三."""
    done = sign_in(client, services, phone="13700137000")
    assert "连接成功" in page(done)
    assert commands.get()[1]["cmd"] == "authorize"
    with sqlite_session_factory() as db:
        signin = db.scalars(select(SignIn)).one()
        assert (signin.outcome, signin.resident_id, signin.device_id) == (
            "mismatch", place.zhang, None)
        assert db.scalar(select(func.count()).select_from(Device)) == 0


def test_watchlist_identity_raises_an_alert_without_the_user_noticing(
        client: FlaskClient, services: PortalServices, alerts_topic: Subscriber,
        place: Place, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Stored, published on MQTT, and the resident sees the usual page."""
    done = sign_in(client, services, name="赵六", id_number=WATCHED_ID, phone="13500135000",
                   unit=str(place.unit_1502))
    assert "连接成功" in page(done) and "watch" not in page(done).lower()
    topic, payload = alerts_topic.get()
    assert topic.endswith("/v1/alerts/watchlist")
    assert payload["kind"] == "watchlist" and payload["ap"] == FLOOR_AP
    assert payload["unit"] == "TEDA-017/B03/1502" and payload["reason"] == "test watchlist entry"
    assert WATCHED_ID not in json.dumps(payload) and "赵六" not in json.dumps(payload)
    with sqlite_session_factory() as db:
        alert = db.scalars(select(Alert)).one()
        assert alert.kind == "watchlist" and alert.payload["alert_id"] == alert.id
        assert db.scalars(select(SignIn)).one().watchlist_hit


def test_a_known_device_signs_in_with_one_tap(
        client: FlaskClient, services: PortalServices, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The next redirect of a bound device offers a one-tap sign-in, no code needed."""
    sign_in(client, services)
    commands.get()
    splash = page(client.get("/?" + signed_query()))
    assert "欢迎回来，张*" in splash and 'name="phone"' not in splash
    done = client.post("/one-tap", data={"flow": hidden(splash, "flow"), "lang": "zh_CN",
                                         "csrf_token": hidden(splash, "csrf_token")})
    assert "连接成功" in page(done)
    assert commands.get()[1]["cmd"] == "authorize"
    with sqlite_session_factory() as db:
        methods = [s.method for s in db.scalars(select(SignIn).order_by(SignIn.id))]
        assert methods == ["sms", "one_tap"]


def test_one_tap_with_the_registry_away_is_a_retry_page_and_records_nothing(
        client: FlaskClient, services: PortalServices, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry unreachable for longer than the retries: a 503 page saying to try again in a
    minute, no sign-in recorded and no command sent; the next one tap works."""
    from sqlalchemy.exc import OperationalError

    from portal import signin

    sign_in(client, services)
    commands.get()
    original = signin._record_one_tap

    def unreachable(*_args: Any) -> Any:
        """The database refuses the connection."""
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(signin, "REGISTRY_RETRY_S", 0.0)
    monkeypatch.setattr(signin, "_record_one_tap", unreachable)
    splash = page(client.get("/?" + signed_query()))
    form = {"flow": hidden(splash, "flow"), "lang": "zh_CN",
            "csrf_token": hidden(splash, "csrf_token")}
    refused = client.post("/one-tap", data=form)
    assert refused.status_code == 503 and "请重试" in page(refused)
    assert commands.empty_for(0.5)
    monkeypatch.setattr(signin, "_record_one_tap", original)
    assert "连接成功" in page(client.post("/one-tap", data=form))
    with sqlite_session_factory() as db:
        methods = [s.method for s in db.scalars(select(SignIn).order_by(SignIn.id))]
        assert methods == ["sms", "one_tap"]


def test_not_me_shows_the_full_form(client: FlaskClient, services: PortalServices) -> None:
    """Someone else on a known device can sign in as themselves."""
    sign_in(client, services)
    splash = page(client.get("/?" + signed_query()))
    flow = hidden(splash, "flow")
    assert 'name="phone"' in page(client.get(f"/s?f={flow}&full=1"))


def test_a_new_private_address_of_the_same_phone_is_rebound(
        client: FlaskClient, services: PortalServices, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """A rotated randomized MAC replaces the old binding; the old MAC is deauthorized."""
    old, new = "0a:11:22:33:44:55", "1e:66:77:88:99:aa"
    sign_in(client, services, signed_query(mac=old))
    commands.get()
    services.redis.delete(*services.redis.keys(f"{services.settings.redis_key_prefix}portal:otp:cool:*"))
    sign_in(client, services, signed_query(mac=new))
    received = {p["cmd"]: p["mac"] for _t, p in (commands.get(), commands.get())}
    assert received == {"deauthorize": old, "authorize": new}
    with sqlite_session_factory() as db:
        devices = {d.mac_pseudonym: d for d in db.scalars(select(Device))}
        key = services.settings.pseudonym_key
        assert devices[pseudonymize_mac(old, key)].revoked_at is not None
        assert devices[pseudonymize_mac(new, key)].revoked_at is None
        last = db.scalars(select(SignIn).order_by(SignIn.id.desc())).first()
        assert last is not None
        assert last.rebound_from_device_id == devices[pseudonymize_mac(old, key)].id


def test_an_address_passed_on_to_another_resident_is_bound_to_them_only(
        client: FlaskClient, services: PortalServices, commands: Subscriber, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The same MAC signed in by a second resident, with a code to the phone the registry has
    for them, ends the first one's binding, without a deauthorize (the address stays online,
    for its new owner)."""
    mac = "a4:83:e7:12:9f:01"
    with session_scope(sqlite_session_factory) as db:
        li = db.get(Resident, place.li)
        assert li is not None
        phone = services.cipher.person_columns("李四", "13700137000")
        li.phone_encrypted, li.phone_digest = phone["phone_encrypted"], phone["phone_digest"]
    sign_in(client, services, signed_query(mac=mac))
    sign_in(client, services, signed_query(mac=mac), name="李四", id_number=LI_ID,
            phone="13700137000")
    assert [commands.get()[1]["cmd"] for _ in range(2)] == ["authorize", "authorize"]
    with sqlite_session_factory() as db:
        bound = {d.resident_id: d.revoked_at for d in db.scalars(select(Device))}
        assert bound[place.li] is None and bound[place.zhang] is not None


def test_the_device_quota_releases_the_least_recently_used(
        settings: Settings, place: Place, redis_client: Any, commands: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """With a quota of 2, the third device signs the first one out."""
    app = create_app(Settings.load(environ={}, **{**settings.__dict__,
                                                  "portal_device_quota": 2,
                                                  "portal_otp_resend_seconds": 10}),
                     {"TESTING": True})
    services: PortalServices = app.extensions["portal"]
    client = app.test_client()
    macs = ["00:1a:2b:00:00:01", "00:1a:2b:00:00:02", "00:1a:2b:00:00:03"]
    for mac in macs:
        redis_client.delete(*redis_client.keys(f"{settings.redis_key_prefix}portal:otp:cool:*")
                            or ["none"])
        done = sign_in(client, services, signed_query(mac=mac))
        assert "连接成功" in page(done)
    assert "最久未使用的设备已下线" in page(done)
    seen = [commands.get()[1] for _ in range(4)]
    assert {"cmd": "deauthorize", "mac": macs[0]} in [{"cmd": p["cmd"], "mac": p["mac"]}
                                                      for p in seen]
    with sqlite_session_factory() as db:
        active = db.scalar(select(func.count()).select_from(Device).where(
            Device.revoked_at.is_(None)))
        assert active == 2
    services.close()


def test_move_out_revokes_every_device(
        client: FlaskClient, services: PortalServices, commands: Subscriber, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Deauthorize commands for each device, bindings ended, one-tap gone."""
    from portal.signin import move_out

    sign_in(client, services)
    services.redis.delete(*services.redis.keys(f"{services.settings.redis_key_prefix}portal:otp:cool:*"))
    sign_in(client, services, signed_query(mac="00:1a:2b:00:00:09"))
    commands.get(), commands.get()
    sent = move_out(services, place.zhang, dt.date.today(), "tester")
    assert sent == 2
    deauthorized = {commands.get()[1]["mac"] for _ in range(2)}
    assert deauthorized == {"a4:83:e7:12:9f:01", "00:1a:2b:00:00:09"}
    with sqlite_session_factory() as db:
        assert all(d.revoked_at is not None for d in db.scalars(select(Device)))
        assert db.get(Resident, place.zhang).move_out == dt.date.today()  # type: ignore[union-attr]
    assert 'name="phone"' in page(client.get("/?" + signed_query()))


def test_opennds_fas_sign_in_returns_to_the_gateway_with_the_hashed_token(
        client: FlaskClient, services: PortalServices, commands: Subscriber) -> None:
    """FAS level 1: done page links to http://gw/opennds_auth/?tok=sha256(hid+faskey)."""
    enable_fas(services, FLOOR_AP, "192.168.8.1:2050")
    hid = hashlib.sha256(b"client token").hexdigest()
    fas = encode_fas_parameter({
        "clientip": "192.168.8.23", "clientmac": "04:15:52:6a:e4:ad", "gatewayname": FLOOR_AP,
        "hid": hid, "gatewayaddress": "192.168.8.1:2050", "authdir": "opennds_auth",
        "originurl": "http://example.com/"})
    done = page(sign_in(client, services, urlencode({"fas": fas})))
    token = fas_return_token(hid, FLOOR_AP_SECRET)
    assert f'href="http://192.168.8.1:2050/opennds_auth/?tok={token}&amp;redir=' in done
    assert commands.empty_for(0.3)  # level 1 carries no signature: no MQTT authorize


def test_captive_portal_api_before_and_after_sign_in(client: FlaskClient,
                                                     services: PortalServices) -> None:
    """RFC 8908: exact media type, captive true, then false with seconds-remaining."""
    environ = {"REMOTE_ADDR": "10.1.15.23"}
    before = client.get(f"/api/captive?ap={FLOOR_AP}", environ_base=environ)
    assert before.status_code == 200
    assert before.headers["Content-Type"] == CAPTIVE_JSON
    assert before.headers["Cache-Control"] == "private, no-store"
    body = json.loads(before.data)
    assert body == {"captive": True, "user-portal-url": "http://127.0.0.1:18080/",
                    "venue-info-url": "http://127.0.0.1:18080/about"}
    sign_in(client, services)
    after = json.loads(client.get(f"/api/captive?ap={FLOOR_AP}", environ_base=environ).data)
    assert after["captive"] is False and 86390 <= after["seconds-remaining"] <= 86400
    assert set(after) == {"captive", "user-portal-url", "venue-info-url", "seconds-remaining",
                          "can-extend-session"}
    other = json.loads(client.get(f"/api/captive?ap={FLOOR_AP}",
                                  environ_base={"REMOTE_ADDR": "10.1.15.99"}).data)
    assert other["captive"] is True


def test_ap_unreachable_means_a_retry_page_not_a_crash(
        settings: Settings, place: Place, redis_client: Any,
        sqlite_session_factory: sessionmaker[Session], commands: Subscriber) -> None:
    """Broker down: the sign-in is recorded and the identity page asks to be sent again (the
    number stays proven); with the broker back, sending it connects, publishes the command and
    records nothing more."""
    broken = Settings.load(environ={}, **{**settings.__dict__, "mqtt_port": 1})
    app = create_app(broken, {"TESTING": True})
    services: PortalServices = app.extensions["portal"]
    client = app.test_client()
    response = sign_in(client, services)
    assert response.status_code == 503 and "没有响应" in page(response)
    assert 'name="id_number"' in page(response) and 'name="code"' not in page(response)
    services.close()
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(SignIn)) == 1

    working = create_app(settings, {"TESTING": True})  # the same keys, Redis and registry
    again = working.test_client().post("/identity", data=identity_form(page(response)))
    working.extensions["portal"].close()
    assert again.status_code == 200 and "连接成功" in page(again), page(again)
    _topic, payload = commands.get()
    assert payload["cmd"] == "authorize" and payload["ap"] == FLOOR_AP
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(SignIn)) == 1


class _Gateway(BaseHTTPRequestHandler):
    """A local SMS gateway: records requests, answers with the class's status."""

    status = 200
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """Record the JSON body and the auth header."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"body": body, "auth": self.headers.get("Authorization")})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[_Gateway]]]:
    """A real HTTP server standing in for the SMS provider."""
    handler = type("Gateway", (_Gateway,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/sms", handler
    server.shutdown()
    server.server_close()


def test_http_sms_sender_posts_the_code(settings: Settings, place: Place, redis_client: Any,
                                        gateway: tuple[str, type[_Gateway]]) -> None:
    """The gateway adapter POSTs JSON with a bearer token; a 500 is retried by the user."""
    url, handler = gateway
    app = create_app(settings, {"TESTING": True, "PORTAL_SMS": HttpSmsSender(url, "tok3n")})
    client = app.test_client()
    handler.status = 500
    splash = page(client.get("/?" + signed_query()))
    failed = page(client.post("/signin", data=phone_form(splash)))
    assert "短信暂时无法发送" in failed
    handler.status = 200
    sent = page(client.post("/signin", data=phone_form(failed)))  # no cooldown was kept
    assert 'name="code"' in sent
    last = handler.received[-1]
    assert last["auth"] == "Bearer tok3n" and last["body"]["to"] == "+8613800138000"
    assert last["body"]["code"] in last["body"]["text"]
    app.extensions["portal"].close()


def test_rate_limit_on_sign_in_posts(settings: Settings, place: Place,
                                     redis_client: Any) -> None:
    """Past the limit the client gets 429 with Retry-After."""
    app = create_app(settings, {"TESTING": True,
                                "PORTAL_RATE_LIMITS": {"page": (100, 60), "signin": (2, 60),
                                                       "verify": (5, 60),
                                                       "staff_login": (5, 60)}})
    client = app.test_client()
    splash = page(client.get("/?" + signed_query()))
    data = phone_form(splash, phone="1")
    statuses = [client.post("/signin", data=data).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = client.post("/signin", data=data)
    assert int(refused.headers["Retry-After"]) > 0 and "尝试次数过多" in page(refused)
    app.extensions["portal"].close()


def test_start_page_and_status_page(client: FlaskClient) -> None:
    """Without a hand-over: how to get to the sign-in; openNDS status: already online."""
    assert "打开任意网页" in page(client.get("/"))
    assert "已登录" in page(client.get("/?status=authenticated"))
    assert "Privacy notice" in page(client.get("/privacy?lang=en"))
