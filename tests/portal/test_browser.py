"""End to end in headless Chromium at a phone's size: a resident signs in, in both languages.

Debian's chromium, driven by Playwright, against the portal served over real HTTP (Werkzeug in a
thread), with the real Redis, broker and registry behind it. Screenshots go to
tests/artifacts/portal/ (git-ignored). Cookies are cleared before every step: the captive
mini-browsers may not keep them, and the flow must not need them.
"""

from __future__ import annotations

from typing import Any

import pytest

from portal.services import PortalServices
from tests.common import (
    BROWSER_MARKS,
    FLOOR_AP,
    IPHONE_UA,
    Place,
    Subscriber,
    last_code,
    save_screenshot,
    signed_query,
)

pytestmark = BROWSER_MARKS


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot."""
    save_screenshot(page, name)


CASES = {
    "zh_CN": {
        "locale": "zh-CN", "accept": "zh-CN,zh;q=0.9", "title": "登录使用免费 Wi-Fi",
        "bad_message": "身份证号码校验位不正确", "name": "张三", "id_type": "resident_id_card",
        "id_number": "120101199003071235", "phone": "13800138000", "unit": None,
        "code_title": "输入验证码", "done": "连接成功", "mac": "a4:83:e7:12:9f:01",
        "identity_title": "谁在登录？",
    },
    "en": {
        "locale": "en-US", "accept": "en-US,en;q=0.9", "title": "Sign in to use the free Wi-Fi",
        "bad_message": "its last character does not match", "name": "John Smith",
        "id_type": "passport", "id_number": "E12345678", "phone": "+86 139 0013 9000",
        "unit": "1501", "code_title": "Enter the verification code", "done": "You are connected",
        "identity_title": "Who is signing in?",
        "mac": "3a:10:4f:00:be:ef",
    },
}


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_resident_signs_in_on_a_phone(browser: Any, live_portal: str, services: PortalServices,
                                      commands: Subscriber, place: Place, lang: str) -> None:
    """The number, its code, the identity with a bad ID number (clear message), connected:
    at 390x844."""
    case = CASES[lang]
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        has_touch=True, user_agent=IPHONE_UA, locale=case["locale"],
        extra_http_headers={"Accept-Language": case["accept"]})
    page = context.new_page()
    page.goto(f"{live_portal}/?{signed_query(mac=case['mac'])}")
    assert page.locator("h2").inner_text() == case["title"]
    shot(page, f"{lang}-1-form")

    context.clear_cookies()
    page.fill("#phone", case["phone"])
    page.check("#consent")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["code_title"]
    shot(page, f"{lang}-2-code")

    context.clear_cookies()
    page.fill("#code", last_code(services, case["phone"]))
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["identity_title"]

    # A resident ID number with a wrong check digit: a message beside the field, not an error.
    context.clear_cookies()
    page.fill("#name", case["name"])
    page.select_option("#id_type", "resident_id_card")
    page.fill("#id_number", "110105194912310021")
    page.click("#submit")
    error = page.locator("p.err")
    assert case["bad_message"] in error.inner_text()
    assert page.locator("#name").input_value() == case["name"]
    shot(page, f"{lang}-3-identity-bad-id")

    context.clear_cookies()
    page.select_option("#id_type", case["id_type"])
    page.fill("#id_number", case["id_number"])
    if case["unit"]:
        page.select_option("#unit", label=case["unit"])
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["done"]
    shot(page, f"{lang}-4-connected")

    _topic, payload = commands.get()
    assert (payload["cmd"], payload["ap"], payload["mac"]) == ("authorize", FLOOR_AP,
                                                               case["mac"])
    assert context.cookies() == []  # the portal never needed one
    context.close()
