"""Alerts, sign-ins and resident searches come a page at a time and say how many there are."""

from __future__ import annotations

import datetime as dt
import re

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher
from registry.db import session_scope
from registry.models import Alert, IdType, Resident, SignIn, Verification
from tests.common import Place, csrf, login, page, staff


def _alerts(factory: sessionmaker[Session], unit_id: int, kind: str, n: int) -> None:
    """n alerts of a kind about a unit, a minute apart."""
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with session_scope(factory) as db:
        db.add_all(Alert(kind=kind, unit_id=unit_id, at=start + dt.timedelta(minutes=i),
                         payload={"estimated": i, "registered": 1}) for i in range(n))


def _count(html: str) -> str:
    """The list's count line."""
    found = re.search(r'id="count">([^<]+)<', html)
    assert found, "no count"
    return found.group(1)


def test_alerts_are_paged_with_the_total_and_the_filter_kept(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """1,234 overcrowding alerts and 7 others: filtered pages say 第 51–100 条，共 1,234 条."""
    _alerts(sqlite_session_factory, place.unit_1502, "overcrowding", 1234)
    _alerts(sqlite_session_factory, place.unit_1501, "sms_budget", 7)
    staff(sqlite_session_factory, "ada", "hazard_team")
    login(client, "ada")
    first = page(client.get("/admin/alerts?kind=overcrowding"))
    assert _count(first) == "第 1–50 条，共 1,234 条"
    assert first.count('class="alert-row"') == 50
    assert 'href="/admin/alerts?page=2&amp;kind=overcrowding"' in first
    second = page(client.get("/admin/alerts?page=2&kind=overcrowding"))
    assert _count(second) == "第 51–100 条，共 1,234 条"
    assert second.count("短信额度已用完") == 1  # only the filter's option, no such row
    assert 'href="/admin/alerts?page=1&amp;kind=overcrowding"' in second
    last = page(client.get("/admin/alerts?page=999&kind=overcrowding"))
    assert _count(last) == "第 1,201–1,234 条，共 1,234 条"  # past the end: the last page
    assert last.count('class="alert-row"') == 34
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert _count(page(client.get("/admin/alerts"))) == "1–50 of 1,241"
    # Acknowledging on page 2 of a filtered list comes back to that page of that list.
    form = page(client.get("/admin/alerts?page=2&kind=overcrowding"))
    action = re.search(r'action="(/admin/alerts/\d+/ack[^"]*)"', form)
    assert action is not None
    response = client.post(action.group(1).replace("&amp;", "&"), data={"csrf_token": csrf(form)})
    assert response.headers["Location"] in ("/admin/alerts?kind=overcrowding&page=2",
                                            "/admin/alerts?page=2&kind=overcrowding")


def test_signins_are_paged_with_the_outcome_filter_kept(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """60 visitor sign-ins and 3 registered: the visitor pages count 60."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with session_scope(sqlite_session_factory) as db:
        for i in range(63):
            db.add(SignIn(at=start + dt.timedelta(seconds=i), ap_id="ap-b03-1502",
                          handshake="signed", method="sms",
                          outcome="visitor" if i < 60 else "registered",
                          mac_pseudonym=f"{i:016x}", unit_id=place.unit_1502))
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    html = page(client.get("/admin/signins?outcome=visitor"))
    assert _count(html) == "第 1–50 条，共 60 条"
    assert 'href="/admin/signins?page=2&amp;outcome=visitor"' in html
    assert _count(page(client.get("/admin/signins?outcome=visitor&page=2"))) == \
        "第 51–60 条，共 60 条"


def test_a_resident_search_is_paged_by_post_and_keeps_its_query(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        cipher: IdentityCipher, place: Place) -> None:
    """A unit search with 70 residents: page 2 is asked by POST with the same query."""
    with session_scope(sqlite_session_factory) as db:
        for i in range(68):
            number = f"E{i:07d}"
            db.add(Resident(unit_id=place.unit_1501, **cipher.person_columns(f"测试{i}", None),
                            id_type=IdType.PASSPORT,
                            id_number_encrypted=cipher.encrypt(number),
                            id_digest=cipher.digest(IdType.PASSPORT.value, number),
                            id_last4=number[-4:], verification=Verification.REGISTERED))
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    form = page(client.get("/admin/residents"))
    first = page(client.post("/admin/residents", data={
        "by": "unit", "q": "TEDA-017/B03", "csrf_token": csrf(form)}))
    assert _count(first) == "第 1–50 条，共 70 条"  # 68 + 张三 + 李四
    assert '<input type="hidden" name="q" value="TEDA-017/B03">' in first
    assert 'name="page" value="2"' in first
    second = page(client.post("/admin/residents", data={
        "by": "unit", "q": "TEDA-017/B03", "page": "2", "csrf_token": csrf(first)}))
    assert _count(second) == "第 51–70 条，共 70 条"
    assert second.count('href="/admin/residents/') == 20
