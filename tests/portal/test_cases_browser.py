"""End to end in headless Chromium: an administrator reviews and assigns a flagged case, a grid
worker handles it on a phone (390×844), a supervisor verifies and closes it.

Screenshots go to tests/artifacts/portal/cases-*.png (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cases_common import PASSWORD
from tests.common import (
    BROWSER_MARKS,
    IPHONE_UA,
    World,
    live_server,
    save_screenshot,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def live(world: World) -> Iterator[str]:  # noqa: F811
    """The back office over real HTTP on a free loopback port."""
    with live_server(world.app) as url:
        yield url


def _shot(page: Any, name: str) -> None:
    """Save a full-page screenshot."""
    save_screenshot(page, f"cases-{name}")


def _login(browser: Any, live: str, username: str, phone: bool = False) -> Any:  # noqa: F811
    """A page signed in as a staff member (a phone's viewport for grid workers)."""
    options: dict[str, Any] = {"locale": "zh-CN",
                               "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"}}
    if phone:
        options.update(viewport={"width": 390, "height": 844}, user_agent=IPHONE_UA,
                       is_mobile=True, has_touch=True, device_scale_factor=2)
    else:
        options.update(viewport={"width": 1280, "height": 900})
    page = browser.new_context(**options).new_page()
    page.goto(f"{live}/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()
    return page


def test_a_flagged_case_is_reviewed_assigned_handled_verified_and_closed(
        browser: Any, live: str, world: World) -> None:  # noqa: F811
    """The whole loop through the pages as three people use them."""
    case_url = f"{live}/admin/cases/{world.case_a}"
    admin = _login(browser, live, "admin")
    admin.goto(f"{live}/admin/inbox")
    assert "2 个案件等待您处理" in admin.inner_text("#count")
    admin.click(f"text=#{world.case_a}")
    assert admin.url == case_url
    assert "估计居住人数" in admin.inner_text("#evidence")
    _shot(admin, "1-admin-review")
    admin.click("#act-confirm button")
    assert "已立案，待派遣" in admin.inner_text("#status")
    admin.select_option("#act-assign select[name=assignee]", str(world.staff["grid"]))
    admin.click("#act-assign button")
    assert "已派遣" in admin.inner_text("#status")
    _shot(admin, "2-admin-assigned")

    grid = _login(browser, live, "grid", phone=True)
    grid.goto(f"{live}/admin/inbox")
    _shot(grid, "3-grid-inbox-phone")
    width = grid.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the inbox is {width}px wide on a 390px phone"
    grid.click(f"text=#{world.case_a}")
    grid.click("#act-start button")
    grid.fill("#act-feedback textarea", "现场核查：实住 6 人，已责令房东整改，3 人已搬离")
    _shot(grid, "4-grid-feedback-phone")
    assert grid.evaluate("document.documentElement.scrollWidth") <= 390
    grid.click("#act-feedback button")
    assert "已反馈，待核查" in grid.inner_text("#status")

    boss = _login(browser, live, "supervisor")
    boss.goto(case_url)
    boss.click("#act-verify button")
    boss.click("#act-close button")
    assert "已结案" in boss.inner_text("#status")
    history = boss.inner_text("#history")
    for step in ("确认属实", "派遣", "开始处置", "提交处置反馈", "核查通过", "结案"):
        assert step in history
    _shot(boss, "5-supervisor-closed")
