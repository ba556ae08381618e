"""End to end in headless Chromium: a building heatmap at 1366x900, a unit's QR link on a phone.

Debian's chromium driven by Playwright against the portal over real HTTP (Werkzeug in a thread)
with the real Redis and registry behind it. Screenshots go to tests/artifacts/portal/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.db import session_scope
from registry.models import Building, Inspection, InspectionPhoto, RiskTier, Unit
from tests.common import (
    ARTIFACTS,
    BROWSER_MARKS,
    IPHONE_UA,
    NIGHTS,
    PASSWORD,
    Place,
    estimate,
    staff,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def tower(sqlite_session_factory: sessionmaker[Session], place: Place) -> int:
    """Building B03 with 12 floors of 4 units; estimates: some flagged, some without data."""
    with session_scope(sqlite_session_factory) as db:
        b03 = db.scalars(select(Building).where(Building.code == "B03")).one()
        db.get(Unit, place.unit_1502).risk_tier = RiskTier.KEY  # type: ignore[union-attr]
        db.add_all([estimate(place.unit_1502, 3, 7.0, NIGHTS, flag="group_rental"),
                    estimate(place.unit_1501, 2, 2.0, NIGHTS)])
        for floor in range(1, 13):
            for room in range(1, 5):
                code = f"{floor}{room:02d}"
                unit = Unit(building_id=b03.id, code=code, ref=f"TEDA-017/B03/{code}",
                            floor=floor, room=code, area_m2=60, registered_occupants=2)
                db.add(unit)
                db.flush()
                if (floor + room) % 7 == 0:
                    continue  # never observed: no data
                people = 0.0 if (floor * room) % 11 == 0 else float(2 + (floor * room) % 3)
                flag = "group_rental" if (floor, room) in ((3, 2), (10, 4)) else ""
                row = estimate(unit.id, 2, 6.0 if flag else people, NIGHTS, flag=flag)
                if (floor, room) == (3, 2):  # a corridor's group rental, placed by the meters
                    row.coverage, row.zone, row.zone_units = "zone", "ap-teda017-b03-f03", 4
                    row.confidence = 0.78
                db.add(row)
        return b03.id


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def watch(page: Any) -> list[str]:
    """Collect console errors and page errors (a CSP refusal shows here)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    # Failed loads are judged by their URL (the browser's own favicon request may 404).
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)
    return problems


def test_admin_opens_a_building_heatmap_and_a_units_file(
        browser: Any, live_portal: str, sqlite_session_factory: sessionmaker[Session],
        tower: int) -> None:
    """At 1366x900: the chart draws (no CSP error), a click opens the flagged unit's file."""
    staff(sqlite_session_factory, "ada", "admin")
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN",
                                  extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live_portal}/admin/login")
    page.fill("#username", "ada")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.goto(f"{live_portal}/admin/heatmaps/buildings/{tower}")
    page.wait_for_selector("#building-heatmap[data-ready='1'] canvas", timeout=15000)
    page.wait_for_selector("#building-trend[data-ready='1'] canvas", timeout=15000)
    shot(page, "units-1-building-heatmap")
    assert problems == []
    page.goto(f"{live_portal}/admin/units/TEDA-017/B03/1502")
    page.wait_for_selector("#unit-heatmap[data-ready='1'] canvas", timeout=15000)
    page.wait_for_selector("#unit-trend[data-ready='1'] canvas", timeout=15000)
    assert "群租" in page.inner_text("main")
    shot(page, "units-2-unit-file")
    page.goto(f"{live_portal}/admin/units/TEDA-017/B03/302")
    page.wait_for_selector("#unit-heatmap[data-ready='1'] canvas", timeout=15000)
    main = page.inner_text("main")
    assert "楼道接入点（ap-teda017-b03-f03），4 户共用" in main and "一并核查" in main
    shot(page, "units-2b-corridor-unit-file")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US",
                                extra_http_headers={"Accept-Language": "en"})
    phone.add_cookies(context.cookies())
    english = phone.new_page()
    english.goto(f"{live_portal}/admin/units/TEDA-017/B03/302")
    english.wait_for_selector("#unit-heatmap[data-ready='1'] canvas", timeout=15000)
    assert "Check the other flats it serves on the same visit." in english.inner_text("main")
    # A grid worker on a phone reads the whole file by scrolling down only: wide tables
    # scroll inside their own box.
    assert english.evaluate("document.documentElement.scrollWidth") <= 390
    assert english.evaluate("[...document.querySelectorAll('main table')]"
                            ".every(t => t.closest('.scroll') || t.scrollWidth <= 390)")
    shot(english, "units-2c-corridor-unit-file-en-phone")
    phone.close()
    page.goto(f"{live_portal}/admin/")
    assert page.inner_text("#registered") == "2"
    shot(page, "units-6-overview")
    assert problems == []
    context.close()


def test_grid_worker_scans_a_qr_code_and_records_an_inspection_with_a_photo(
        browser: Any, live_portal: str, sqlite_session_factory: sessionmaker[Session],
        place: Place, tmp_path: Path) -> None:
    """At 390x844: the QR link asks for a login, comes back to the unit, saves with a photo."""
    staff(sqlite_session_factory, "grid", "grid_worker")
    with sqlite_session_factory() as db:
        token = db.get(Unit, place.unit_1502).qr_token  # type: ignore[union-attr]
    photo = tmp_path / "IMG_2041.jpg"
    Image.new("RGB", (1600, 1200), (180, 120, 60)).save(photo, "JPEG")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        has_touch=True, user_agent=IPHONE_UA, locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{live_portal}/q/{token}")
    assert "/admin/login" in page.url
    shot(page, "units-3-qr-login")
    page.fill("#username", "grid")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(f"{live_portal}/q/{token}")
    assert "TEDA-017/B03/1502" in page.inner_text("h1")
    page.fill("#people_found", "9")
    page.fill("#people_unregistered", "6")
    page.click("summary:has-text('消防安全')")
    page.check("input[value='FI03']")
    page.check("input[value='FI04']")
    page.fill("#note", "发现上下铺 4 张，楼道内充电。")
    page.set_input_files("#photos", str(photo))
    page.check("#open_case")
    shot(page, "units-4-inspection-form")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the form is {width}px wide on a 390px screen"
    page.click("#submit")
    page.wait_for_selector(".flash.info")
    assert "检查记录已保存" in page.inner_text(".flash.info")
    shot(page, "units-5-inspection-saved")
    assert problems == []
    with sqlite_session_factory() as db:
        inspection = db.scalars(select(Inspection)).one()
        assert inspection.hazards == ["FI03", "FI04"] and inspection.case_id is not None
        stored = db.scalars(select(InspectionPhoto)).one()
    assert stored.size < photo.stat().st_size * 2
    context.close()


