"""Attacks on the resident's sign-in (issue #11), each performed and shown to fail.

Every test here is written as the attacker would go about it, against the real Redis, broker and
registry; docs/threat-model.md lists them with the asset, the actor and the defence.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from census.handshake import encode_fas_parameter, redirect_signature
from census.privacy import IdentityCipher
from census.settings import Settings
from portal import create_app
from portal.services import PortalServices
from portal.signin import confirm_phone
from portal.sms import ConsoleSmsSender
from registry.models import Alert, AuditEntry, Device, Resident, SignIn
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
)

ATTACKER_PHONE = "13900139000"
VICTIM_MAC = "a4:83:e7:12:9f:01"  # 张三's phone, as anyone near them can read off the air
FAS_GATEWAY = "192.168.8.1:2050"
VICTIM_PHONE = "13800138000"  # 张三's number in the registry


def test_a_code_sent_to_my_phone_does_not_sign_me_in_as_a_victim(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Defect 1: own code, then the victim's number refused by a cooldown, then /verify and
    the identity page (the victim's number posted along with it)."""
    # Another flow puts the victim's number in its resend cooldown (anyone can do this).
    other = page(client.get("/?" + signed_query(mac="02:00:00:00:00:77")))
    assert 'name="code"' in page(client.post("/signin", data=phone_form(other, VICTIM_PHONE)))
    # My flow: a code to my own number.
    mine = page(client.get("/?" + signed_query(mac="02:00:00:00:00:66")))
    sent = page(client.post("/signin", data=phone_form(mine, ATTACKER_PHONE)))
    my_code = last_code(services, ATTACKER_PHONE)
    # The same flow, the victim's number: the send is refused (cooldown).
    refused = page(client.post("/signin", data=phone_form(sent, VICTIM_PHONE)))
    assert "请等待" in refused
    # My code, on the code page of my flow; then my identity, with the victim's number posted.
    identity = page(client.post("/verify", data=code_form(sent, my_code)))
    client.post("/identity", data=identity_form(identity, name="王五", id_number=WANG_ID,
                                                phone=VICTIM_PHONE))
    with sqlite_session_factory() as db:
        as_victim = db.scalars(select(SignIn).where(SignIn.resident_id == place.zhang)).all()
        assert as_victim == []
        assert db.scalars(select(Device).where(Device.resident_id == place.zhang)).all() == []
        # What the code was sent for is what got signed in: my identity, my number.
        signin = db.scalars(select(SignIn)).one()
        assert (services.cipher.reveal(signin.name_encrypted),
                services.cipher.reveal(signin.phone_encrypted)) == ("王五", "+86" + ATTACKER_PHONE)


def test_a_resident_without_a_phone_cannot_be_claimed_with_name_and_id_alone(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Defect 3: 李四 has no phone on file; the claimant's verified phone proves nothing."""
    done = sign_in(client, services, phone=ATTACKER_PHONE, name="李四", id_number=LI_ID)
    assert "连接成功" in page(done)  # online, like any other outcome
    with sqlite_session_factory() as db:
        li = db.get(Resident, place.li)
        # the real 李四 is not locked out
        assert li is not None and (li.phone_encrypted, li.phone_digest) == (None, "")
        assert db.scalars(select(Device)).all() == []  # no one-tap as 李四 next time
        signin = db.scalars(select(SignIn)).one()
        assert (signin.outcome, signin.resident_id) == ("unconfirmed", place.li)


def test_staff_confirm_an_unconfirmed_phone_once(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """After seeing 李四 in person, staff make the verified number theirs; audited, once."""
    sign_in(client, services, name="李四", id_number=LI_ID, phone="13600136000")
    with sqlite_session_factory() as db:
        signin_id = db.scalars(select(SignIn.id)).one()
    assert confirm_phone(sqlite_session_factory, signin_id, "staff:wang") == place.li
    with sqlite_session_factory() as db:
        li = db.get(Resident, place.li)
        assert li is not None and services.cipher.reveal(li.phone_encrypted) == "+8613600136000"
        assert li.phone_digest == services.cipher.phone_digest("13600136000")
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "confirm_phone")).one()
        assert (entry.actor, entry.subject) == ("staff:wang", f"resident:{place.li}")
    with pytest.raises(LookupError, match="already has a phone"):
        confirm_phone(sqlite_session_factory, signin_id, "staff:wang")


def fas_query(ap: str = FLOOR_AP, mac: str = VICTIM_MAC, gateway: str = FAS_GATEWAY,
              ip: str = "192.168.8.23") -> str:
    """An openNDS FAS level-1 hand-over as anyone can write it (nothing in it is signed)."""
    hid = hashlib.sha256(f"token {mac} {ip}".encode()).hexdigest()
    return urlencode({"fas": encode_fas_parameter({
        "clientip": ip, "clientmac": mac, "gatewayname": ap, "hid": hid,
        "gatewayaddress": gateway, "authdir": "opennds_auth",
        "originurl": "http://example.com/"})})


def test_a_fas_hand_over_is_refused_from_an_ap_without_fas_like_an_unknown_ap(
        client: FlaskClient, services: PortalServices) -> None:
    """Defect 2 (and 9, AP ids by 403 vs 200): FAS is off unless enabled for the AP; a
    signed-only AP and a non-existent one answer the same."""
    signed_only = client.get("/?" + fas_query(ap=UNIT_AP))
    unknown = client.get("/?" + fas_query(ap="ap-not-registered"))
    assert signed_only.status_code == unknown.status_code == 403
    assert page(signed_only) == page(unknown) and 'name="flow"' not in page(signed_only)


def test_a_fas_hand_over_cannot_send_the_token_to_a_gateway_of_my_choosing(
        client: FlaskClient, services: PortalServices) -> None:
    """Defect 9: the tok goes only to the gateway address configured for the AP."""
    enable_fas(services, FLOOR_AP, FAS_GATEWAY)
    assert client.get("/?" + fas_query()).status_code == 200
    elsewhere = client.get("/?" + fas_query(gateway="203.0.113.9:80"))
    assert elsewhere.status_code == 403 and 'name="flow"' not in page(elsewhere)


def test_a_claimed_mac_in_a_fas_hand_over_gives_no_one_tap_and_moves_no_binding(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Defect 2: 张三's device is bound (signed AP); a FAS hand-over claiming its MAC neither
    shows 张三's masked name nor signs in as 张三, and a full sign-in as someone else leaves
    张三's binding where it is."""
    sign_in(client, services, signed_query(mac=VICTIM_MAC))
    enable_fas(services, FLOOR_AP, FAS_GATEWAY)
    splash = page(client.get("/?" + fas_query()))
    assert "张*" not in splash and 'name="phone"' in splash  # the full form, no greeting
    tap = client.post("/one-tap", data={"flow": hidden(splash, "flow"), "lang": "zh_CN",
                                        "csrf_token": hidden(splash, "csrf_token")})
    assert 'name="phone"' in page(tap)  # back to the full form, not signed in
    identity = prove_phone(client, services, splash, ATTACKER_PHONE)
    client.post("/identity", data=identity_form(
        identity, name="王五", id_number=WANG_ID, unit=str(place.unit_1501)))
    with sqlite_session_factory() as db:
        devices = db.scalars(select(Device)).all()
        assert [(d.resident_id, d.revoked_at) for d in devices] == [(place.zhang, None)]
        methods = [(s.method, s.resident_id == place.zhang) for s in db.scalars(select(SignIn))]
        assert methods == [("sms", True), ("sms", False)]


def sent_sms(services: PortalServices) -> int:
    """How many messages the console sender has sent."""
    sender = services.sms
    assert isinstance(sender, ConsoleSmsSender)
    return int(services.redis.llen(sender.outbox_key))  # type: ignore[arg-type]


def test_45_code_requests_from_one_address_with_spoofed_client_ips_are_limited(
        client: FlaskClient, services: PortalServices) -> None:
    """Defect 4: the FAS clientip is the sender's to write; limits key on what it is not."""
    enable_fas(services, FLOOR_AP, FAS_GATEWAY)
    for n in range(45):
        splash = page(client.get("/?" + fas_query(mac=f"02:00:00:00:01:{n:02x}",
                                                  ip=f"192.168.{n // 200}.{n % 200 + 2}")))
        if 'name="flow"' not in splash:
            continue  # the splash page itself was limited
        client.post("/signin", data=phone_form(splash, f"1380000{n:04d}"))
    # The sign-in form's limit (20 a minute) holds for one sending address, whatever it claims.
    assert sent_sms(services) == 20


@pytest.mark.parametrize("written", ["+0086 138 0013 8000", "+860 138 0013 8000",
                                     "0086-13800138000", "１３８００１３８０００"])
def test_another_way_of_writing_a_number_is_the_same_number(
        client: FlaskClient, services: PortalServices, written: str) -> None:
    """Defect 4: +0086 / +860 / 0086 / full-width forms share the number's cooldown."""
    first = page(client.get("/?" + signed_query(mac="02:00:00:00:00:31")))
    client.post("/signin", data=phone_form(first))
    again = page(client.get("/?" + signed_query(mac="02:00:00:00:00:32")))
    refused = page(client.post("/signin", data=phone_form(again, written)))
    assert "请等待" in refused and sent_sms(services) == 1


@pytest.mark.parametrize("written", ["١٣٨٠٠١٣٨٠٠٠", "१३८००१३८०००", "13800138000\u0663",
                                     "+44 7911 123456", "12345678901"])
def test_numbers_in_other_digits_or_outside_the_configured_regions_get_no_sms(
        client: FlaskClient, services: PortalServices, written: str) -> None:
    """Defect 4: ASCII digits only, mainland mobiles by their real ranges."""
    splash = page(client.get("/?" + signed_query()))
    refused = page(client.post("/signin", data=phone_form(splash, written)))
    assert "能接收短信的手机号码" in refused and sent_sms(services) == 0


def test_the_ap_budget_stops_pumping_and_raises_one_alert(
        settings: Settings, place: Place, redis_client: Any, alerts_topic: Subscriber,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Defect 4: past the AP's hourly budget no number gets a code, and the back office hears
    of it once (stored alert, MQTT alert topic)."""
    app = create_app(Settings.load(environ={}, **{**settings.__dict__,
                                                  "portal_otp_hourly_per_ap": 3}),
                     {"TESTING": True})
    services: PortalServices = app.extensions["portal"]
    client = app.test_client()
    pages = []
    for n in range(5):
        splash = page(client.get("/?" + signed_query(mac=f"02:00:00:00:02:{n:02x}",
                                                     ip=f"10.1.15.{n + 2}")))
        pages.append(page(client.post("/signin", data=phone_form(splash, f"1390000{n:04d}"))))
    assert sent_sms(services) == 3
    assert all("请一小时后再试" in p for p in pages[3:])
    topic, payload = alerts_topic.get()
    assert topic.endswith("/v1/alerts/sms_budget")
    assert (payload["kind"], payload["ap"], payload["limit"]) == ("sms_budget", FLOOR_AP, 3)
    assert alerts_topic.empty_for(0.3)  # one alert an hour, not one per refusal
    with sqlite_session_factory() as db:
        stored = db.scalars(select(Alert).where(Alert.kind == "sms_budget")).one()
        assert stored.payload["alert_id"] == stored.id
        assert "1390000" not in json.dumps(stored.payload)  # no numbers in the alert
        assert db.scalar(select(func.count()).select_from(Alert)) == 1
    services.close()


def test_a_signed_redirect_with_a_ts_hundreds_of_digits_long_is_a_clear_400(
        client: FlaskClient) -> None:
    """Defect 9: a correctly signed link (a broken or hostile AP) with a 300-digit ts used to
    overflow the clock comparison into a 500."""
    values = {"ap": FLOOR_AP, "mac": VICTIM_MAC, "ip": "10.1.15.23", "gw": "10.1.15.1:2050",
              "url": "http://example.com/", "ts": "9" * 300, "nonce": "0123456789abcdef"}
    values["sig"] = redirect_signature(FLOOR_AP_SECRET, values)
    response = client.get("/?" + urlencode(values))
    assert response.status_code == 400 and "无效" in page(response)


@pytest.mark.parametrize("name", ["\u3164", "\u3164\u3164", "张\u3164三", "\u115f\u1160",
                                  "\uffa0", "张三\u200d", "\u2800"])
def test_a_name_of_invisible_characters_is_refused(
        client: FlaskClient, services: PortalServices, name: str) -> None:
    """Defect 9: U+3164 (Hangul filler) is a letter to the regex but shows as nothing."""
    identity = prove_phone(client, services, page(client.get("/?" + signed_query())))
    refused = page(client.post("/identity", data=identity_form(identity, name=name)))
    assert "请按证件填写姓名" in refused and "连接成功" not in refused
    assert services.pending.get(services.flows.load(hidden(refused, "flow")).fid) is not None


def test_the_next_visit_does_not_tell_whether_a_typed_identity_is_registered(
        client: FlaskClient, services: PortalServices, place: Place) -> None:
    """Defect 8: an unknown identity (self-declared, bound) used to be offered one tap next
    time and a registered one (a mismatch with my phone) not: the splash page told them apart."""
    sign_in(client, services, signed_query(mac="02:00:00:00:03:01"), phone="13900139001",
            name="王五", id_number=WANG_ID, unit=str(place.unit_1501))
    sign_in(client, services, signed_query(mac="02:00:00:00:03:02"), phone="13900139002",
            name="张三", id_number=ZHANG_ID, unit=str(place.unit_1501))
    unknown = page(client.get("/?" + signed_query(mac="02:00:00:00:03:01")))
    registered = page(client.get("/?" + signed_query(mac="02:00:00:00:03:02")))
    assert 'name="phone"' in unknown  # the full form, not "welcome back, 王*"
    tokens = re.compile(r'(value="|f=)[^"&]*')  # flow tokens differ per page, nothing else
    assert tokens.sub("", unknown) == tokens.sub("", registered)


@pytest.fixture
def request_statements(services: PortalServices) -> Iterator[list[str]]:
    """SQL statements run by this (the request's) thread, as the registry receives them."""
    statements: list[str] = []
    me = threading.get_ident()

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        """Record a statement of the test's own thread (the alert thread runs apart)."""
        if threading.get_ident() == me:
            statements.append(statement.split()[0])

    event.listen(services.engine, "before_cursor_execute", note)
    yield statements
    event.remove(services.engine, "before_cursor_execute", note)


def test_a_watch_listed_sign_in_costs_the_request_no_more_than_any_other(
        client: FlaskClient, services: PortalServices, request_statements: list[str],
        alerts_topic: Subscriber) -> None:
    """Defect 8: the alert used to be written inside the request (two more statements, a
    measurably slower sign-in); now the request runs the same statements for every identity
    and the alert is stored and published by the alert thread."""
    counts = []
    for n, (name, number) in enumerate((("王五", WANG_ID), ("赵六", WATCHED_ID))):
        splash = page(client.get("/?" + signed_query(mac=f"02:00:00:00:04:0{n}")))
        phone = f"1390013901{n}"
        identity = prove_phone(client, services, splash, phone)
        request_statements.clear()
        assert "连接成功" in page(client.post("/identity", data=identity_form(
            identity, name=name, id_number=number, unit="visitor")))
        counts.append(list(request_statements))
    assert counts[0] == counts[1]
    _topic, payload = alerts_topic.get()  # the alert still goes out, with its stored id
    assert payload["kind"] == "watchlist" and payload["alert_id"] > 0


# The number comes first (issue #11, "phone + code first"): the seams of that order.

def _signins(factory: sessionmaker[Session], cipher: IdentityCipher
             ) -> list[tuple[str, str, int | None]]:
    """Every recorded sign-in as (name, phone, resident id), decrypted."""
    with factory() as db:
        return [(cipher.reveal(s.name_encrypted), cipher.reveal(s.phone_encrypted), s.resident_id)
                for s in db.scalars(select(SignIn).order_by(SignIn.id))]


def _tokens(html: str) -> dict[str, str]:
    """A page's flow, language and CSRF token."""
    return {k: hidden(html, k) for k in ("flow", "lang", "csrf_token")}


def test_the_identity_page_without_a_proven_number_signs_nobody_in(
        client: FlaskClient, services: PortalServices,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Posted straight from the first page (no code sent), or after the code was sent to the
    victim's number but never entered, with the victim's identity and number: refused."""
    splash = page(client.get("/?" + signed_query(mac="02:00:00:00:05:01")))
    never_sent = client.post("/identity", data=identity_form(splash, phone=VICTIM_PHONE))
    assert never_sent.status_code == 400 and "请重新开始" in page(never_sent)
    code_page = page(client.post("/signin", data=phone_form(splash, VICTIM_PHONE)))
    assert 'name="code"' in code_page
    unproven = client.post("/identity", data=identity_form(code_page, phone=VICTIM_PHONE))
    assert unproven.status_code == 400 and "请先用验证码确认手机号码" in page(unproven)
    assert "连接成功" not in page(unproven)
    assert _signins(sqlite_session_factory, services.cipher) == []


def test_another_flows_proven_number_cannot_be_used(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """My flow proved my number; the victim's flow (a code to the victim's number I never
    saw) stays unproven whichever flow token and CSRF token I mix."""
    mine = prove_phone(client, services, page(client.get(
        "/?" + signed_query(mac="02:00:00:00:05:02"))), ATTACKER_PHONE)
    theirs = page(client.get("/?" + signed_query(mac="02:00:00:00:05:03")))
    theirs = page(client.post("/signin", data=phone_form(theirs, VICTIM_PHONE)))
    victim = {"name": "张三", "id_number": ZHANG_ID, "phone": VICTIM_PHONE}
    for flow_of, csrf_of in ((theirs, mine), (mine, theirs), (theirs, theirs)):
        mixed = identity_form(theirs, **victim) | {
            "flow": hidden(flow_of, "flow"), "csrf_token": hidden(csrf_of, "csrf_token")}
        assert "连接成功" not in page(client.post("/identity", data=mixed))
    assert _signins(sqlite_session_factory, services.cipher) == []
    # My proven number signs in only in my flow, and only as my number.
    done = client.post("/identity", data=identity_form(mine, **victim))
    assert "连接成功" in page(done)
    assert _signins(sqlite_session_factory, services.cipher) == [
        ("张三", "+86" + ATTACKER_PHONE, place.zhang)]
    with sqlite_session_factory() as db:
        assert db.scalars(select(SignIn)).one().outcome == "mismatch"  # not 张三's number
        assert db.scalars(select(Device)).all() == []  # and no binding to 张三


def test_a_replayed_verify_or_identity_post_signs_in_no_one_again(
        client: FlaskClient, services: PortalServices,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """The right code, posted again after the sign-in, and the identity page posted again:
    one sign-in; the flow's number is forgotten with it."""
    splash = page(client.get("/?" + signed_query(mac="02:00:00:00:05:04")))
    sent = page(client.post("/signin", data=phone_form(splash, ATTACKER_PHONE)))
    verify_post = code_form(sent, last_code(services, ATTACKER_PHONE))
    identity = page(client.post("/verify", data=verify_post))
    identity_post = identity_form(identity, name="王五", id_number=WANG_ID)
    assert "连接成功" in page(client.post("/identity", data=identity_post))
    replayed = client.post("/verify", data=verify_post)
    assert replayed.status_code == 400 and 'name="id_number"' not in page(replayed)
    again = client.post("/identity", data=identity_post)
    assert again.status_code == 400 and "连接成功" not in page(again)
    assert len(_signins(sqlite_session_factory, services.cipher)) == 1
    flow = services.flows.load(hidden(sent, "flow"))
    assert services.pending.get(flow.fid) is None


def test_changing_the_number_after_proving_it_unproves_it(
        client: FlaskClient, services: PortalServices,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Proven, then "change mobile number" (or the first page posted again with the victim's
    number, refused by its cooldown): the identity page no longer signs in, and the old code
    proves nothing."""
    other = page(client.get("/?" + signed_query(mac="02:00:00:00:05:05")))
    client.post("/signin", data=phone_form(other, VICTIM_PHONE))  # the victim's cooldown
    splash = page(client.get("/?" + signed_query(mac="02:00:00:00:05:06")))
    sent = page(client.post("/signin", data=phone_form(splash, ATTACKER_PHONE)))
    verify_post = code_form(sent, last_code(services, ATTACKER_PHONE))
    identity = page(client.post("/verify", data=verify_post))
    changed = page(client.post("/change", data=_tokens(identity)))
    assert 'name="phone"' in changed and "请改正手机号码" in changed
    stale = client.post("/identity", data=identity_form(identity))
    assert stale.status_code == 400 and "连接成功" not in page(stale)
    assert "连接成功" not in page(client.post("/verify", data=verify_post))
    # Proven again, then the first page posted again (the back button) with another number.
    sent = page(client.post("/signin", data=phone_form(changed, "13900139005")))
    identity = page(client.post("/verify", data=code_form(sent, last_code(
        services, "13900139005"))))
    assert 'name="id_number"' in identity
    refused = page(client.post("/signin", data=phone_form(identity, VICTIM_PHONE)))
    assert "请等待" in refused
    stale = client.post("/identity", data=identity_form(identity, phone=VICTIM_PHONE))
    assert stale.status_code == 400 and "连接成功" not in page(stale)
    assert _signins(sqlite_session_factory, services.cipher) == []


def test_a_number_restored_after_a_change_proves_only_itself(
        client: FlaskClient, services: PortalServices,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """My code's number changed to the victim's (refused: their cooldown) or to another
    number (a new code) and then back: my old code proves no other number, the number back
    within its cooldown gets its pending code only in the flow it was sent in, and the sign-in
    carries the number that code went to."""
    other = page(client.get("/?" + signed_query(mac="02:00:00:00:05:07")))
    client.post("/signin", data=phone_form(other, VICTIM_PHONE))  # the victim's cooldown
    splash = page(client.get("/?" + signed_query(mac="02:00:00:00:05:08")))
    sent = page(client.post("/signin", data=phone_form(splash, ATTACKER_PHONE)))
    mine = last_code(services, ATTACKER_PHONE)
    changed = page(client.post("/change", data=_tokens(sent)))
    refused = page(client.post("/signin", data=phone_form(changed, VICTIM_PHONE)))
    assert "请等待" in refused and 'name="code"' not in refused
    stale = client.post("/verify", data=code_form(sent, mine))
    assert stale.status_code == 400 and 'name="id_number"' not in page(stale)
    # Another flow cannot pick up my pending code by sending my number in its cooldown.
    theirs = page(client.get("/?" + signed_query(mac="02:00:00:00:05:09")))
    elsewhere = page(client.post("/signin", data=phone_form(theirs, ATTACKER_PHONE)))
    assert "请等待" in elsewhere and 'name="code"' not in elsewhere
    borrowed = client.post("/verify", data=code_form(theirs, mine))
    assert borrowed.status_code == 400 and 'name="id_number"' not in page(borrowed)
    # A new number replaces my code; my number back in its cooldown has no code any more.
    page(client.post("/signin", data=phone_form(changed, "13900139007")))
    newer = last_code(services, "13900139007")
    changed = page(client.post("/change", data=_tokens(changed)))
    back = page(client.post("/signin", data=phone_form(changed, ATTACKER_PHONE)))
    assert "请等待" in back and 'name="code"' not in back
    assert client.post("/verify", data=code_form(sent, mine)).status_code == 400
    # The newer number back within its cooldown: its own code proves it, and it signs in.
    restored = page(client.post("/signin", data=phone_form(changed, "13900139007")))
    assert "仍然有效" in restored
    assert 'name="id_number"' not in page(client.post("/verify", data=code_form(restored, mine)))
    identity = page(client.post("/verify", data=code_form(restored, newer)))
    victim = {"name": "张三", "id_number": ZHANG_ID, "phone": VICTIM_PHONE}
    assert "连接成功" in page(client.post("/identity", data=identity_form(identity, **victim)))
    assert [(name, phone) for name, phone, _r in _signins(
        sqlite_session_factory, services.cipher)] == [("张三", "+8613900139007")]
    with sqlite_session_factory() as db:
        assert db.scalars(select(SignIn)).one().outcome == "mismatch"
