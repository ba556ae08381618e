"""End to end in headless Chromium: the overview's counts follow one case round the loop.

An administrator watches the overview (1366×900); the hazard team confirms a flagged unit's
case; the administrator assigns it; a grid worker scans the unit's QR code on a phone (390×844),
signs in, and the inspection with a photo is the case's feedback; a supervisor verifies and
closes it. After each step the overview is read again and its counts must have moved.
Screenshots go to tests/artifacts/portal/loop-*.png (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings
from portal import create_app
from registry.db import session_scope
from registry.models import Case, CaseEvent, CaseStatus, Inspection, RiskTier, Unit
from tests.cases_common import PASSWORD, make_case, make_staff
from tests.common import (
    BROWSER_MARKS,
    IPHONE_UA,
    Place,
    estimate,
    live_server,
    photo_bytes,
    save_screenshot,
)

pytestmark = BROWSER_MARKS
COUNTS = ("open-cases", "to-review", "to-dispatch", "in-handling", "to-verify", "closed-cases")


@dataclass
class Loop:
    """The live back office and what the test needs to find in it."""

    url: str
    case_id: int
    token: str
    factory: sessionmaker[Session]
    staff: dict[str, int]


@pytest.fixture
def loop(settings: Settings, place: Place, sqlite_session_factory: sessionmaker[Session],
         redis_client: Any) -> Iterator[Loop]:
    """A flagged unit (1502, key tier) with its case to review, four staff, the live server."""
    factory = sqlite_session_factory
    with session_scope(factory) as db:
        db.add(estimate(place.unit_1502, 3, 7.0, 4, flag="group_rental"))
        unit = db.get_one(Unit, place.unit_1502)
        unit.risk_tier = RiskTier.KEY
        token = unit.qr_token
        community = unit.building.community_id
    people = {"admin": make_staff(factory, "admin", "admin", district_wide=True),
              "hazard": make_staff(factory, "hazard", "hazard_team", [community]),
              "grid": make_staff(factory, "grid", "grid_worker", [community]),
              "supervisor": make_staff(factory, "supervisor", "supervisor", [community])}
    case_id = make_case(factory, place.unit_1502, CaseStatus.DISCOVERED)
    app: Flask = create_app(settings, {"TESTING": True, "PORTAL_RATE_LIMITS": {
        "staff_login": (1000, 900), "page": (1000, 60), "signin": (1000, 60),
        "verify": (1000, 60)}})
    try:
        with live_server(app) as url:
            yield Loop(url, case_id, token, factory, people)
    finally:
        app.extensions["portal"].close()


def _context(browser: Any, phone: bool = False) -> Any:
    """A Chinese browser page: a 1366×900 desk, or a 390×844 phone."""
    options: dict[str, Any] = {"locale": "zh-CN",
                               "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}
    if phone:
        options.update(viewport={"width": 390, "height": 844}, user_agent=IPHONE_UA,
                       is_mobile=True, has_touch=True, device_scale_factor=2)
    else:
        options.update(viewport={"width": 1366, "height": 900})
    return browser.new_context(**options).new_page()


def _sign_in(page: Any, username: str) -> None:
    """Fill the staff login form the page shows."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def _login(browser: Any, loop: Loop, username: str) -> Any:
    """A desk page signed in as a staff member."""
    page = _context(browser)
    page.goto(f"{loop.url}/admin/login")
    _sign_in(page, username)
    return page


def _counts(page: Any, loop: Loop, shot: str) -> dict[str, int]:
    """Open the overview, save a screenshot, read its loop counts."""
    page.goto(f"{loop.url}/admin/")
    save_screenshot(page, f"loop-{shot}")
    return {name: int(re.sub(r"\D", "", page.inner_text(f"#{name}")) or 0) for name in COUNTS}


def test_one_case_round_the_loop_moves_the_overview_counts(browser: Any, loop: Loop) -> None:
    """Hazard team → administrator → grid worker by QR on a phone → supervisor; the overview
    moves the case from column to column and finally counts it closed."""
    admin = _login(browser, loop, "admin")
    start = _counts(admin, loop, "1-overview-start")
    assert start == {"open-cases": 1, "to-review": 1, "to-dispatch": 0, "in-handling": 0,
                     "to-verify": 0, "closed-cases": 0}
    assert admin.inner_text("#closure-rate") == "0%"  # 0 of 1 case closed
    assert admin.inner_text("#on-time-rate") == "—"  # nothing closed yet
    assert admin.evaluate("document.documentElement.scrollWidth") <= 1366

    hazard = _login(browser, loop, "hazard")
    hazard.goto(f"{loop.url}/admin/cases/{loop.case_id}")
    assert "估计居住人数" in hazard.inner_text("#evidence")
    save_screenshot(hazard, "loop-2-hazard-review")
    hazard.click("#act-confirm button")
    assert "已立案，待派遣" in hazard.inner_text("#status")
    reviewed = _counts(admin, loop, "3-overview-reviewed")
    assert (reviewed["to-review"], reviewed["to-dispatch"]) == (0, 1)

    admin.goto(f"{loop.url}/admin/cases/{loop.case_id}")
    admin.select_option("#act-assign select[name=assignee]", str(loop.staff["grid"]))
    admin.click("#act-assign button")
    assert "已派遣" in admin.inner_text("#status")
    assigned = _counts(admin, loop, "4-overview-assigned")
    assert (assigned["to-dispatch"], assigned["in-handling"]) == (0, 1)

    # The grid worker scans the unit's QR code: signed out, so the login comes first and
    # leads straight back to the unit's inspection form.
    grid = _context(browser, phone=True)
    grid.goto(f"{loop.url}/q/{loop.token}")
    assert "/admin/login" in grid.url
    _sign_in(grid, "grid")
    assert grid.url == f"{loop.url}/q/{loop.token}"
    assert grid.is_checked(f"input[name=case][value='{loop.case_id}']")
    assert f"本次检查即为案件 #{loop.case_id} 的反馈" in grid.inner_text("#open-cases")
    grid.fill("input[name=people_found]", "4")
    grid.fill("input[name=people_unregistered]", "1")
    grid.click("summary >> nth=2")  # fire safety
    grid.check("input[name=hazard][value=FI04]")
    grid.fill("textarea[name=note]", "实住 4 人，1 人未登记，已责令补登；隔断已拆除")
    grid.set_input_files("input[name=photos]", files=[{
        "name": "IMG_0001.jpg", "mimeType": "image/jpeg", "buffer": photo_bytes("JPEG")}])
    save_screenshot(grid, "loop-5-grid-inspection-phone")
    assert grid.evaluate("document.documentElement.scrollWidth") <= 390
    grid.click("main form .big")  # (the nav's sign-out is a submit button too)
    grid.wait_for_load_state()
    assert "检查记录已保存" in grid.inner_text("body")
    save_screenshot(grid, "loop-6-grid-saved-phone")
    fed_back = _counts(admin, loop, "7-overview-fed-back")
    assert (fed_back["in-handling"], fed_back["to-verify"]) == (0, 1)

    boss = _login(browser, loop, "supervisor")
    boss.goto(f"{loop.url}/admin/cases/{loop.case_id}")
    assert "隔断已拆除" in boss.inner_text("#inspections")
    assert boss.locator("#inspections img").count() == 1
    assert boss.evaluate("document.querySelector('#inspections img').naturalWidth") > 0
    save_screenshot(boss, "loop-8-supervisor-checks-feedback")
    boss.click("#act-verify button")
    boss.click("#act-close button")
    assert "已结案" in boss.inner_text("#status")
    save_screenshot(boss, "loop-9-supervisor-closed")

    end = _counts(admin, loop, "10-overview-closed")
    assert end == {"open-cases": 0, "to-review": 0, "to-dispatch": 0, "in-handling": 0,
                   "to-verify": 0, "closed-cases": 1}
    assert "100%" in admin.inner_text("#closure-rate")
    with loop.factory() as db:
        assert [e.action for e in db.scalars(select(CaseEvent).where(
            CaseEvent.case_id == loop.case_id).order_by(CaseEvent.id))][1:] == [
            "confirm", "assign", "start", "feedback", "verify", "close"]
        assert db.scalars(select(Inspection.case_id)).one() == loop.case_id
        assert db.get_one(Case, loop.case_id).status is CaseStatus.CLOSED
