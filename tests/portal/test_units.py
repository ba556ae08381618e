"""Unit file, building heatmaps, QR codes and on-site inspections in the back office."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings
from portal import create_app
from portal.services import PortalServices
from registry.db import session_scope
from registry.models import (
    AuditEntry,
    Building,
    Case,
    CaseEvent,
    CaseStatus,
    Community,
    Inspection,
    InspectionPhoto,
    Unit,
    UnitEstimate,
)
from tests.common import (
    NIGHTS,
    WINDOW_START,
    Place,
    csrf,
    estimate,
    inspect,
    login,
    page,
    photo_bytes,
    staff,
    token_of,
)


@pytest.fixture
def building(sqlite_session_factory: sessionmaker[Session], place: Place) -> dict[str, Any]:
    """The test building with floors 2, 10, 11 and 15; estimates: a flagged unit, a unit with
    no data (never observed), an empty unit (observed: nobody); a second community."""
    with session_scope(sqlite_session_factory) as db:
        b03 = db.scalars(select(Building).where(Building.code == "B03")).one()
        extra = {}
        for code, floor in (("1001", 10), ("201", 2), ("1101", 11), ("202", 2)):
            unit = Unit(building_id=b03.id, code=code, ref=f"TEDA-017/B03/{code}", floor=floor,
                        room=code, area_m2=50, registered_occupants=1)
            db.add(unit)
            db.flush()
            extra[code] = unit.id
        db.add_all([estimate(place.unit_1502, 3, 7.0, NIGHTS, flag="group_rental"),
                    estimate(place.unit_1501, 2, 2.0, NIGHTS),
                    estimate(extra["1001"], 1, 0.0, NIGHTS),  # observed, nobody there
                    estimate(extra["201"], 1, 1.0, 0)])  # never observed: no data
        other = Community(code="TEDA-099", name="其他社区")
        other_building = Building(community=other, code="B01")
        db.add_all([other, other_building])
        db.flush()
        far = Unit(building_id=other_building.id, code="0101", ref="TEDA-099/B01/0101",
                   floor=1, area_m2=40, registered_occupants=1)
        db.add(far)
        db.flush()
        return {"building_id": b03.id, "far_unit": far.id, "far_token": far.qr_token, **extra}




# --- building heatmap --------------------------------------------------------------------------

def test_building_heatmap_has_floors_in_numeric_order_and_no_data_apart_from_nobody(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """Floors 2, 10, 11, 15 (not 10, 11, 15, 2); never-observed units are no data, empty ones 0."""
    staff(sqlite_session_factory, "ada", "hazard_team")
    login(client, "ada")
    data = client.get(f"/admin/heatmaps/buildings/{building['building_id']}.json").get_json()
    assert data["floors"] == ["2", "10", "11", "15"]
    cells = {c["ref"]: c for c in data["cells"]}
    assert cells["TEDA-017/B03/201"]["state"] == "no_data"
    assert cells["TEDA-017/B03/201"]["estimated"] is None
    assert cells["TEDA-017/B03/202"]["state"] == "no_data"  # no estimate at all
    nobody = cells["TEDA-017/B03/1001"]
    assert nobody["state"] == "data" and nobody["estimated"] == 0.0 and nobody["excess"] == -1
    flagged = cells["TEDA-017/B03/1502"]
    assert flagged["flag"] == "group_rental" and flagged["excess"] == 4.0
    assert flagged["url"] == "/admin/units/TEDA-017/B03/1502"
    # Units on a floor in natural order; each cell on its floor's row.
    assert (cells["TEDA-017/B03/201"]["x"], cells["TEDA-017/B03/202"]["x"]) == (0, 1)
    assert cells["TEDA-017/B03/1502"]["y"] == data["floors"].index("15")
    assert data["labels"]["floor"] == "楼层"
    # The building's nightly trend leaves a night without any data as null.
    assert data["trend"]["present"] == [9.0] * NIGHTS


def test_building_heatmap_page_loads_echarts_from_the_portal_under_a_script_policy(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """Scripts from the portal itself only, none inline; residents' pages stay script-free."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    response = client.get(f"/admin/heatmaps/buildings/{building['building_id']}")
    html = page(response)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/vendor/echarts/echarts.min.js" defer>',
        '<script src="/static/js/heatmap.js" defer>']
    assert "<script>" not in html
    echarts = client.get("/static/vendor/echarts/echarts.min.js")
    assert echarts.status_code == 200 and b"echarts" in echarts.data[:2000]
    echarts.close()
    resident_page = client.get("/about")
    # Residents' pages run only the portal's own small script, never the chart library.
    resident_policy = resident_page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in resident_policy and "unsafe" not in resident_policy.split(
        "style-src")[0]
    assert "echarts" not in resident_page.get_data(as_text=True)


def test_building_heatmap_exports_csv_with_empty_cells_for_no_data(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """One row per unit, nights as columns; no data is an empty cell, nobody is 0.0."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    response = client.get(f"/admin/heatmaps/buildings/{building['building_id']}.csv")
    assert response.mimetype == "text/csv" and "attachment" in response.headers[
        "Content-Disposition"]
    rows = response.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert rows[0].startswith("unit,floor,code,registered,estimated")
    by_unit = {r.split(",")[0]: r.split(",") for r in rows[1:]}
    assert by_unit["TEDA-017/B03/201"][-NIGHTS:] == [""] * NIGHTS
    assert by_unit["TEDA-017/B03/1001"][-NIGHTS:] == ["0.0"] * NIGHTS
    assert [r.split(",")[1] for r in rows[1:]] == sorted(
        [r.split(",")[1] for r in rows[1:]], key=int)


def test_heatmaps_stay_inside_the_staff_members_community(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """A grid worker of another community gets a 404 for this building and its units."""
    staff(sqlite_session_factory, "far", "grid_worker", community="TEDA-099")
    login(client, "far")
    assert client.get(f"/admin/heatmaps/buildings/{building['building_id']}.json"
                      ).status_code == 404
    assert client.get("/admin/units/TEDA-017/B03/1502").status_code == 404
    assert client.get("/admin/units/TEDA-099/B01/0101").status_code == 200
    listing = page(client.get("/admin/heatmaps/"))
    assert "TEDA-099" in listing and "TEDA-017" not in listing


# --- the unit file -----------------------------------------------------------------------------

def test_opening_a_unit_file_shows_its_evidence_masked_and_is_audited(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place) -> None:
    """Residents masked, the estimate with interval and confidence, cases with history."""
    with session_scope(sqlite_session_factory) as db:
        case = Case(unit_id=place.unit_1502, kind="overcrowding", status=CaseStatus.DISCOVERED)
        db.add(case)
        db.flush()
        db.add(CaseEvent(case_id=case.id, actor="analytics", to_status="discovered",
                         note="opened: group rental"))
    staff(sqlite_session_factory, "ada", "hazard_team")
    login(client, "ada")
    html = page(client.get("/admin/units/TEDA-017/B03/1502"))
    assert "张*" in html and "张三" not in html and "138****8000" in html
    assert "90% 区间 6–9" in html and "97%" in html  # estimate 7, interval 6-9, P(>=5)
    assert "系统分析立项：疑似群租" in html and "opened: group rental" not in html
    assert 'data-url="/admin/units/TEDA-017/B03/1502/presence.json"' in html
    with sqlite_session_factory() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.actor == "ada")
                           .order_by(AuditEntry.id.desc())).first()
        assert entry is not None
        assert (entry.action, entry.subject) == ("view_unit_file", "unit:TEDA-017/B03/1502")


def test_the_unit_file_says_how_a_corridor_or_a_wall_sees_the_flat(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place) -> None:
    """A group rental placed on a corridor's flat by its meters tells the visit to check the
    corridor's other flats; a flat heard through a neighbour's wall says so (it read "no
    access point" before)."""
    with session_scope(sqlite_session_factory) as db:
        zoned = db.scalars(select(UnitEstimate).where(
            UnitEstimate.unit_id == place.unit_1502)).one()
        zoned.coverage, zoned.zone, zoned.zone_units = "zone", "ap-b03-f15", 3
        walled = estimate(building["1101"], 1, 2.0, NIGHTS)
        walled.coverage, walled.zone = "neighbour_ap", "ap-b03-1102~wall"
        db.add(walled)
    staff(sqlite_session_factory, "ada", "hazard_team")
    login(client, "ada")
    html = page(client.get("/admin/units/TEDA-017/B03/1502"))
    assert "楼道接入点（ap-b03-f15），3 户共用" in html
    assert "该接入点只能看到 3 户的总人数" in html and "一并核查" in html
    html = page(client.get("/admin/units/TEDA-017/B03/1101"))
    assert "隔墙的邻户接入点（ap-b03-1102~wall）" in html and "无接入点" not in html
    assert "一并核查" not in html  # not flagged
    english = page(client.get("/admin/units/TEDA-017/B03/1502",
                              headers={"Accept-Language": "en"}))
    assert "Check the other flats it serves on the same visit." in english


def test_unit_presence_json_has_hours_by_night_with_no_data_as_null(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """24 hours from 06:00 per night; a never-observed unit's cells are all null."""
    staff(sqlite_session_factory, "ada", "grid_worker")
    login(client, "ada")
    data = client.get("/admin/units/TEDA-017/B03/1502/presence.json").get_json()
    assert data["hours"][:2] == ["06", "07"] and len(data["cells"]) == 24 * NIGHTS
    assert data["nights"][0] == WINDOW_START.isoformat()
    assert {c[2] for c in data["cells"]} == {0.0, 7.0}
    empty = client.get("/admin/units/TEDA-017/B03/201/presence.json").get_json()
    assert {c[2] for c in empty["cells"]} == {None} and empty["trend"] == [None] * NIGHTS


def test_unit_codes_in_the_back_office_link_to_the_unit_file(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """A resident search lists the unit as a link to its file."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    form = page(client.get("/admin/residents"))
    html = page(client.post("/admin/residents", data={"by": "unit", "q": "TEDA-017",
                                                      "csrf_token": csrf(form)}))
    assert '<a class="unit-link" href="/admin/units/TEDA-017/B03/1502">' in html
    detail = page(client.get(f"/admin/residents/{place.zhang}"))
    assert 'href="/admin/units/TEDA-017/B03/1502"' in detail
    client.get("/admin/units/TEDA-017/B03/1501")
    audit_log = page(client.get("/admin/audit"))
    assert 'unit:<a class="unit-link" href="/admin/units/TEDA-017/B03/1501">' in audit_log


# --- QR codes and the login round trip ----------------------------------------------------------

def test_qr_sheet_is_a_page_per_floor_for_administrators_only(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place) -> None:
    """Floors in numeric order, each unit's code an SVG image of its /q/ URL."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    assert client.get(f"/admin/qr/buildings/{building['building_id']}").status_code == 403
    client.post("/admin/logout", data={"csrf_token": csrf(page(client.get("/admin/")))})
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    html = page(client.get(f"/admin/qr/buildings/{building['building_id']}"))
    floors = re.findall(r"第 ?(\d+) ?层", html)
    assert floors == ["2", "10", "11", "15"]
    assert html.count('<section class="page">') == 4
    assert html.count("data:image/svg+xml;base64,") == 6


def test_a_signed_out_phone_logs_in_and_lands_back_on_the_unit(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """/q/<token> -> login?next=/q/<token> -> the form of that unit."""
    token = token_of(sqlite_session_factory, place.unit_1501)
    first = client.get(f"/q/{token}")
    assert first.status_code == 302
    login_url = first.headers["Location"]
    assert login_url.startswith("/admin/login?next=")
    staff(sqlite_session_factory, "grid", "grid_worker")
    form = page(client.get(login_url))
    assert f'action="/admin/login?next=/q/{token}"' in form
    response = client.post(login_url, data={"username": "grid", "password": "correct horse battery",
                                            "csrf_token": csrf(form)})
    assert response.headers["Location"] == f"/q/{token}"
    assert "TEDA-017/B03/1501" in page(client.get(f"/q/{token}"))


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/q/x", "/\\evil.example", "\\\\evil.example",
    "/\\/evil.example", "javascript:alert(1)", "http:/evil.example", "/q/x\r\nLocation: //e",
    "evil.example", "%2F%2Fevil.example",
])
def test_the_login_never_redirects_off_site(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], target: str) -> None:
    """An attacker's next= ends on the back office's own overview instead."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    form = page(client.get("/admin/login", query_string={"next": target}))
    response = client.post("/admin/login", query_string={"next": target},
                           data={"username": "grid", "password": "correct horse battery",
                                 "csrf_token": csrf(form)})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_a_qr_token_opens_only_its_own_unit(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place) -> None:
    """No field moves an inspection to another unit; a regenerated token retires the old one;
    guessed tokens and another community's tokens are 404."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    token = token_of(sqlite_session_factory, place.unit_1501)
    form = page(client.get(f"/q/{token}"))
    response = client.post(f"/q/{token}", data={
        "csrf_token": csrf(form), "people_found": "2", "unit_id": str(place.unit_1502),
        "unit": "TEDA-017/B03/1502", "token": token_of(sqlite_session_factory, place.unit_1502)})
    assert response.status_code == 302
    with sqlite_session_factory() as db:
        assert [i.unit_id for i in db.scalars(select(Inspection))] == [place.unit_1501]
    # One character changed (a token ending in "x" must not be "changed" to itself).
    guessed = token[:-1] + ("y" if token.endswith("x") else "x")
    assert client.get(f"/q/{guessed}").status_code == 404
    assert client.get("/q/" + "A" * 24).status_code == 404
    assert client.get(f"/q/{building['far_token']}").status_code == 200  # no community limit
    client.post("/admin/logout", data={"csrf_token": csrf(page(client.get("/admin/")))})
    staff(sqlite_session_factory, "near", "grid_worker", community="TEDA-017")
    login(client, "near")
    assert client.get(f"/q/{building['far_token']}").status_code == 404
    # Only administrators make a new code; the old one stops working at once.
    unit_page = page(client.get("/admin/units/TEDA-017/B03/1501"))
    assert client.post("/admin/units/TEDA-017/B03/1501/qr-token",
                       data={"csrf_token": csrf(unit_page)}).status_code == 403
    client.post("/admin/logout", data={"csrf_token": csrf(page(client.get("/admin/")))})
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    unit_page = page(client.get("/admin/units/TEDA-017/B03/1501"))
    client.post("/admin/units/TEDA-017/B03/1501/qr-token", data={"csrf_token": csrf(unit_page)})
    new_token = token_of(sqlite_session_factory, place.unit_1501)
    assert new_token != token and len(new_token) >= 24
    assert client.get(f"/q/{token}").status_code == 404
    assert client.get(f"/q/{new_token}").status_code == 200


# --- inspections and photos --------------------------------------------------------------------


def test_an_inspection_with_hazards_and_a_photo_opens_a_case(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        services: PortalServices, place: Place) -> None:
    """People, hazards from the catalogue (unknown codes dropped), a photo re-encoded and
    stored under var/photos, served to staff only; the case is an inspection, discovered."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    token = token_of(sqlite_session_factory, place.unit_1502)
    html = page(client.get(f"/q/{token}"))
    assert html.count('name="hazard"') == 46 and "使用易燃板材隔断房间" in html
    response = inspect(client, token, photos=[(photo_bytes("PNG"), "IMG_0001.png")],
                       people_found="9", people_unregistered="6", note="上下铺 4 张",
                       hazard=["FI03", "FI04", "XX99"], open_case="y")
    assert response.status_code == 302
    with sqlite_session_factory() as db:
        inspection = db.scalars(select(Inspection)).one()
        assert (inspection.people_found, inspection.people_unregistered) == (9, 6)
        assert inspection.hazards == ["FI03", "FI04"] and inspection.case_id is not None
        case = db.get(Case, inspection.case_id)
        assert case is not None and (case.kind, case.status, case.tier.value) == (
            "inspection", CaseStatus.DISCOVERED, "key")
        assert [(e.actor, e.to_status) for e in case.events] == [("grid", "discovered")]
        photo = db.scalars(select(InspectionPhoto)).one()
    stored = services.settings.var_dir / "photos" / photo.path
    assert stored.read_bytes()[:3] == b"\xff\xd8\xff"  # re-encoded as JPEG
    served = client.get(f"/admin/photos/{photo.id}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert "no-store" in served.headers["Cache-Control"]
    served.close()
    unit_file = page(client.get("/admin/units/TEDA-017/B03/1502"))
    assert f"/admin/photos/{photo.id}" in unit_file and "上下铺 4 张" in unit_file
    client.post("/admin/logout", data={"csrf_token": csrf(page(client.get("/admin/")))})
    assert client.get(f"/admin/photos/{photo.id}").status_code == 302  # to the login


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"MZ\x90\x00" + b"\x00" * 4000, "photo.jpg", "不是 JPEG、PNG 或 WebP 照片"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "p.png",
     "不是 JPEG、PNG 或 WebP 照片"),
    (photo_bytes("JPEG")[:200], "truncated.jpg", "不是 JPEG、PNG 或 WebP 照片"),
    (photo_bytes("JPEG") + b"\x00" * (8 * 1024 * 1024), "big.jpg", "大于 8 MB"),
])
def test_a_photo_that_is_not_an_image_or_too_large_is_refused_and_nothing_is_saved(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        services: PortalServices, place: Place, content: bytes, name: str,
        message: str) -> None:
    """Checked by content, not by name; the form comes back with a message, nothing stored."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    token = token_of(sqlite_session_factory, place.unit_1502)
    response = inspect(client, token, photos=[(content, name)], people_found="3",
                       hazard=["FI04"])
    html = page(response)
    assert response.status_code == 200 and message in html
    assert 'value="FI04" checked' in html  # what was typed is kept
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Inspection)) == 0
    assert not (services.settings.var_dir / "photos").exists() or not any(
        (services.settings.var_dir / "photos").rglob("*.jpg"))


def test_more_found_unregistered_than_found_is_refused(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """Findings that do not add up get a message; nothing is saved."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    token = token_of(sqlite_session_factory, place.unit_1502)
    html = page(inspect(client, token, people_found="2", people_unregistered="5"))
    assert "未登记人数不能多于" in html
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Inspection)) == 0


# --- overview -----------------------------------------------------------------------------------

def test_overview_counts_residents_estimates_tiers_and_cases(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        services: PortalServices, building: dict[str, Any], place: Place) -> None:
    """Registered residents (not sign-ins), estimated people, open cases by age, live presence."""
    import time

    with session_scope(sqlite_session_factory) as db:
        db.add(Case(unit_id=place.unit_1502, kind="overcrowding", status=CaseStatus.DISCOVERED,
                    opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=10)))
        db.add(Case(unit_id=place.unit_1501, kind="overcrowding", status=CaseStatus.PARKED,
                    opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)))
    services.redis.zadd(f"{services.settings.redis_key_prefix}here:ap:ap-b03-1502",
                        {"dev1": time.time(), "dev2": time.time()})
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    html = page(client.get("/admin/"))
    assert re.search(r'id="registered">2<', html)  # 张三 and 李四
    assert re.search(r'id="estimated">10<', html)  # 7 + 2 + 0 + 1
    assert "1 / 2" in html  # one AP of two saw nobody in 15 minutes
    # attention cases by age: the discovered one is 7-30 days, the parked one over 30
    assert re.search(r"<td>0</td><td>1</td><td>1</td>", html)
    assert re.search(r'id="to-review"><a [^>]+>1<', html)
    # A parked case waits with its clock stopped: its own column, not "being handled".
    assert re.search(r'id="parked"><a [^>]+status=parked[^>]*>1<', html)
    assert re.search(r'id="in-handling">0<', html)


def test_the_old_counts_page_leads_to_the_one_overview_with_its_filters(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place) -> None:
    """/admin/overview/?community=N answers with a permanent redirect to /admin/?community=N;
    a dismissed case is not counted as open."""
    with session_scope(sqlite_session_factory) as db:
        community = db.scalars(select(Community.id).where(Community.code == "TEDA-017")).one()
        db.add(Case(unit_id=place.unit_1502, kind="overcrowding", status=CaseStatus.DISMISSED))
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    response = client.get(f"/admin/overview/?community={community}")
    assert response.status_code == 301
    assert response.headers["Location"] == f"/admin/?community={community}"
    html = page(client.get(response.headers["Location"]))
    assert "3号楼" in html  # the community's buildings offered: the filter was kept
    assert re.search(r'id="open-cases"><a [^>]+>0<', html)


def test_the_inspection_form_still_needs_its_csrf_token(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """A cross-site POST (no token from the signed-in session) records nothing."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    login(client, "grid")
    token = token_of(sqlite_session_factory, place.unit_1502)
    response = client.post(f"/q/{token}", data={"people_found": "4", "csrf_token": "forged"})
    assert response.status_code == 200
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Inspection)) == 0


# --- every view by role and scope ---------------------------------------------------------------

ROLE_CASES = {  # who -> expected status per view (None: sent to the login page)
    "anonymous": (None, None, None, None, None, None, None, None),
    "admin": (200, 200, 200, 200, 200, 200, 200, 200),
    "hazard_team": (200, 200, 200, 200, 200, 200, 403, 200),
    "grid_worker": (200, 200, 200, 200, 200, 200, 403, 200),
    "grid_worker_elsewhere": (404, 404, 200, 404, 404, 404, 403, 404),
}


@pytest.mark.parametrize("who", list(ROLE_CASES))
def test_each_view_answers_by_role_and_community(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any], place: Place, who: str) -> None:
    """Unit file, presence, heatmap list, building JSON and CSV, overview, QR sheet, QR page."""
    token = token_of(sqlite_session_factory, place.unit_1502)
    views = ["/admin/units/TEDA-017/B03/1502", "/admin/units/TEDA-017/B03/1502/presence.json",
             "/admin/heatmaps/", f"/admin/heatmaps/buildings/{building['building_id']}.json",
             f"/admin/heatmaps/buildings/{building['building_id']}.csv",
             f"/admin/heatmaps/buildings/{building['building_id']}",
             f"/admin/qr/buildings/{building['building_id']}", f"/q/{token}"]
    if who != "anonymous":
        role = who.removesuffix("_elsewhere")
        staff(sqlite_session_factory, who, role,
              community="TEDA-099" if who.endswith("_elsewhere") else None)
        login(client, who)
    for view, expected in zip(views, ROLE_CASES[who], strict=True):
        response = client.get(view)
        if expected is None:
            assert response.status_code == 302, view
            assert response.headers["Location"].startswith("/admin/login?next="), view
        else:
            assert response.status_code == expected, (view, response.status_code)
        response.close()
    overview = client.get("/admin/")
    assert overview.status_code == (302 if who == "anonymous" else 200)
    if who == "grid_worker_elsewhere":
        assert "泰达第十七社区" not in page(overview)


def test_the_inspection_form_reads_the_catalogue_analytics_is_configured_with(
        sqlite_session_factory: sessionmaker[Session], place: Place, settings: Any,
        redis_client: Any, tmp_path: Any) -> None:
    """A district's own catalogue (WIFI_CENSUS_ANALYTICS_CONFIG -> hazards_path) is the form's."""
    import dataclasses
    import json

    from portal import create_app

    catalogue = tmp_path / "hazards.json"
    catalogue.write_text(json.dumps({"categories": [
        {"code": "ZZ01", "group": "fire", "name": "Local rule", "name_zh": "本地规则",
         "tier": "key"}]}), encoding="utf-8")
    config = tmp_path / "analytics.json"
    config.write_text(json.dumps({"hazards_path": str(catalogue)}), encoding="utf-8")
    app = create_app(dataclasses.replace(settings, analytics_config=str(config)),
                     {"TESTING": True})
    try:
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
        staff(sqlite_session_factory, "grid", "grid_worker")
        login(client, "grid")
        html = page(client.get(f"/q/{token_of(sqlite_session_factory, place.unit_1501)}"))
        assert html.count('name="hazard"') == 1 and "本地规则" in html
    finally:
        app.extensions["portal"].close()


def test_heatmap_labels_and_unit_file_follow_the_browsers_language(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        building: dict[str, Any]) -> None:
    """English browsers get English chart labels and pages; Chinese ones Chinese."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    url = f"/admin/heatmaps/buildings/{building['building_id']}.json"
    english = client.get(url, headers={"Accept-Language": "en-US,en;q=0.9"}).get_json()
    assert english["labels"]["floor"] == "Floor" and english["labels"]["no_data_short"] == "no data"
    assert client.get(url).get_json()["labels"]["no_data_short"] == "无数据"
    html = page(client.get("/admin/units/TEDA-017/B03/1502",
                           headers={"Accept-Language": "en-US,en;q=0.9"}))
    assert "Likely range" not in html and "90% interval 6–9" in html and "group rental" in html


def test_qr_codes_lead_to_the_back_office_address(
        settings: Settings, sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """With the back office on its own listener, a unit's QR code carries its address, not the
    residents' captive portal (which serves no /q/ pages there)."""
    from portal.units import qr_url

    office = dataclasses.replace(settings, portal_admin_public_url="https://office.example.org")
    for configured, expected in ((settings, settings.portal_public_url.rstrip("/")),
                                 (office, "https://office.example.org")):
        application = create_app(configured, {"TESTING": True})
        try:
            with application.test_request_context():
                assert qr_url("tok") == f"{expected}/q/tok"
        finally:
            application.extensions["portal"].close()
