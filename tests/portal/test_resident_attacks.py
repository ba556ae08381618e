"""Attacks on the resident's sign-in (issue #11), each performed and shown to fail.

Every test here is written as the attacker would go about it, against the real Redis, broker and
registry; docs/threat-model.md lists them with the asset, the actor and the defence.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from portal.services import PortalServices
from portal.signin import confirm_phone
from registry.models import AuditEntry, Device, Resident, SignIn
from tests.portal.conftest import (
    LI_ID,
    WANG_ID,
    ZHANG_ID,
    Place,
    code_form,
    identity_form,
    last_code,
    page,
    sign_in,
    signed_query,
)

ATTACKER_PHONE = "13900139000"
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
