"""Attacks on the resident's sign-in (issue #11), each performed and shown to fail.

Every test here is written as the attacker would go about it, against the real Redis, broker and
registry; docs/threat-model.md lists them with the asset, the actor and the defence.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from portal.handshake import encode_fas_parameter
from portal.services import PortalServices
from portal.signin import confirm_phone
from registry.models import AuditEntry, Device, Resident, SignIn
from tests.portal.conftest import (
    FLOOR_AP,
    LI_ID,
    UNIT_AP,
    WANG_ID,
    ZHANG_ID,
    Place,
    code_form,
    enable_fas,
    hidden,
    identity_form,
    last_code,
    page,
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
    """Defect 1: own code, then the victim's identity refused by a cooldown, then /verify."""
    # Another flow puts the victim's number in its resend cooldown (anyone can do this).
    other = page(client.get("/?" + signed_query(mac="02:00:00:00:00:77")))
    assert 'name="code"' in page(client.post("/signin", data=identity_form(other)))
    # My flow: a code to my own number, for my own identity.
    mine = page(client.get("/?" + signed_query(mac="02:00:00:00:00:66")))
    sent = page(client.post("/signin", data=identity_form(
        mine, name="王五", id_number=WANG_ID, phone=ATTACKER_PHONE)))
    my_code = last_code(services, ATTACKER_PHONE)
    # The same flow, the victim's name, ID and number: the send is refused (cooldown).
    refused = page(client.post("/signin", data=identity_form(
        sent, name="张三", id_number=ZHANG_ID, phone=VICTIM_PHONE)))
    assert "请等待" in refused
    # My code, on the code page of my flow.
    client.post("/verify", data=code_form(sent, my_code))
    with sqlite_session_factory() as db:
        as_victim = db.scalars(select(SignIn).where(SignIn.resident_id == place.zhang)).all()
        assert as_victim == []
        assert db.scalars(select(Device).where(Device.resident_id == place.zhang)).all() == []
        # What the code was sent for is what got signed in: my identity, my number.
        signin = db.scalars(select(SignIn)).one()
        assert (signin.name, signin.phone) == ("王五", ATTACKER_PHONE)


def test_a_resident_without_a_phone_cannot_be_claimed_with_name_and_id_alone(
        client: FlaskClient, services: PortalServices, place: Place,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Defect 3: 李四 has no phone on file; the claimant's verified phone proves nothing."""
    done = sign_in(client, services, name="李四", id_number=LI_ID, phone=ATTACKER_PHONE)
    assert "连接成功" in page(done)  # online, like any other outcome
    with sqlite_session_factory() as db:
        li = db.get(Resident, place.li)
        assert li is not None and li.phone == ""  # the real 李四 is not locked out
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
        assert db.get(Resident, place.li).phone == "13600136000"  # type: ignore[union-attr]
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
    assert "张*" not in splash and 'name="id_number"' in splash  # the full form, no greeting
    tap = client.post("/one-tap", data={"flow": hidden(splash, "flow"), "lang": "zh_CN",
                                        "csrf_token": hidden(splash, "csrf_token")})
    assert 'name="id_number"' in page(tap)  # back to the full form, not signed in
    sent = page(client.post("/signin", data=identity_form(
        splash, name="王五", id_number=WANG_ID, phone=ATTACKER_PHONE, unit=str(place.unit_1501))))
    client.post("/verify", data=code_form(sent, last_code(services, ATTACKER_PHONE)))
    with sqlite_session_factory() as db:
        devices = db.scalars(select(Device)).all()
        assert [(d.resident_id, d.revoked_at) for d in devices] == [(place.zhang, None)]
        methods = [(s.method, s.resident_id == place.zhang) for s in db.scalars(select(SignIn))]
        assert methods == [("sms", True), ("sms", False)]
