"""The resident's way through the pages in headless Chromium at 390x844, in both languages.

The order is the number, its code, then the identity. Each step of issue #11's usability list is
walked as a resident would: the help number on every page; typed input kept across a language
switch and a refresh on the first page and on the identity page; nothing pre-selected for
"where do you live"; the code page's countdown disabling, then re-enabling the resend button;
the phone changed from the code page; a button on every "please start again" page. Screenshots
go to tests/artifacts/portal/ux-<lang>-*.png.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from census.settings import Settings
from portal.services import PortalServices
from tests.common import BROWSER_MARKS, IPHONE_UA, Place, last_code, save_screenshot, signed_query

pytestmark = BROWSER_MARKS

RESEND_SECONDS = 4

CASES = {
    "zh_CN": {"locale": "zh-CN", "accept": "zh-CN,zh;q=0.9", "other": "English",
              "back": "中文", "title": "登录使用免费 Wi-Fi", "other_title":
              "Sign in to use the free Wi-Fi", "code_title": "输入验证码",
              "other_code_title": "Enter the verification code", "done": "连接成功",
              "identity_title": "谁在登录？", "other_identity_title": "Who is signing in?",
              "help": "需要帮助？请致电", "start_again": "请重新开始", "restart": "重新开始",
              "reopen": "重新打开登录页面", "mac": "a4:83:e7:12:9f:21"},
    "en": {"locale": "en-US", "accept": "en-US,en;q=0.9", "other": "中文", "back": "English",
           "title": "Sign in to use the free Wi-Fi", "other_title": "登录使用免费 Wi-Fi",
           "code_title": "Enter the verification code", "other_code_title": "输入验证码",
           "identity_title": "Who is signing in?", "other_identity_title": "谁在登录？",
           "done": "You are connected", "help": "Need help? Call",
           "start_again": "Please start again", "restart": "Start again",
           "reopen": "Open the sign-in page again", "mac": "3a:10:4f:00:be:21"},
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short resend cooldown, so that the countdown can be watched to its end."""
    return dataclasses.replace(settings, portal_otp_resend_seconds=RESEND_SECONDS)


def _phone(browser: Any, case: dict[str, str]) -> tuple[Any, Any]:
    """A phone-sized browser context and page in the case's language."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        has_touch=True, user_agent=IPHONE_UA, locale=case["locale"],
        extra_http_headers={"Accept-Language": case["accept"]})
    return context, context.new_page()


def _typed(page: Any) -> tuple[str, str]:
    """Name and ID number as the identity page shows them."""
    return page.locator("#name").input_value(), page.locator("#id_number").input_value()


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_resident_walks_every_usability_step(browser: Any, live_portal: str,
                                             services: PortalServices, place: Place,
                                             lang: str) -> None:
    """Number first (language switch and refresh keep it), countdown, change phone, code,
    then the identity (language switch and refresh keep it, nothing pre-selected), done."""
    case = CASES[lang]
    context, page = _phone(browser, case)
    query = signed_query(mac=case["mac"])
    page.goto(f"{live_portal}/?{query}")
    assert page.locator("h2").inner_text() == case["title"]
    assert case["help"] in page.locator("footer").inner_text()
    assert page.locator('footer a[href="tel:12345"]').count() == 1
    assert page.locator("#name").count() == 0  # the number first, nothing else
    # The one-time AP link is out of the address bar: a refresh would replay it.
    assert "/s?f=" in page.url
    save_screenshot(page, f"ux-{lang}-1-phone")

    mistyped = "13900139001"
    page.fill("#phone", mistyped)
    page.check("#consent")
    page.click(f"header button:has-text('{case['other']}')")
    assert page.locator("h2").inner_text() == case["other_title"]
    assert page.locator("#phone").input_value() == mistyped and page.is_checked("#consent")
    save_screenshot(page, f"ux-{lang}-2-switched-language")
    page.click(f"header button:has-text('{case['back']}')")
    assert page.locator("h2").inner_text() == case["title"]
    assert page.locator("#phone").input_value() == mistyped

    page.reload()
    assert page.locator("h2").inner_text() == case["title"]
    assert page.locator("#phone").input_value() == mistyped
    save_screenshot(page, f"ux-{lang}-3-after-refresh")

    if not page.is_checked("#consent"):
        page.check("#consent")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["code_title"]
    resend = page.locator("#resend-form input[type=submit]")
    wait = page.locator("#resend-wait")
    assert resend.is_disabled()
    first = wait.inner_text()
    save_screenshot(page, f"ux-{lang}-4-code-countdown")
    time.sleep(1.6)
    assert wait.inner_text() != first  # the seconds count down
    page.wait_for_function(
        "() => !document.querySelector('#resend-form input[type=submit]').disabled",
        timeout=(RESEND_SECONDS + 5) * 1000)
    assert wait.is_hidden()
    save_screenshot(page, f"ux-{lang}-5-resend-enabled")

    # Back from the code page: the first page, as it was typed; sending it again works.
    page.go_back()
    assert page.locator("h2").inner_text() == case["title"]
    assert page.locator("#phone").input_value() == mistyped
    if not page.is_checked("#consent"):
        page.check("#consent")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["code_title"]

    # The number was wrong: change it from the code page.
    page.click("#change")
    assert page.locator("h2").inner_text() == case["title"]
    assert page.locator("#phone").input_value() == "+86" + mistyped
    save_screenshot(page, f"ux-{lang}-6-change-phone")
    page.fill("#phone", "13800138000")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["code_title"]
    assert "138****8000" in page.locator("p.lead").inner_text()

    # The language of the code page changes too, and the code still works after it.
    page.click(f"header button:has-text('{case['other']}')")
    assert page.locator("h2").inner_text() == case["other_code_title"]
    save_screenshot(page, f"ux-{lang}-7-code-other-language")
    page.click(f"header button:has-text('{case['back']}')")
    assert page.locator("h2").inner_text() == case["code_title"]
    page.fill("#code", last_code(services, "+8613800138000"))
    page.click("#submit")

    # The number is proven: the identity, nothing chosen for where one lives.
    assert page.locator("h2").inner_text() == case["identity_title"]
    assert "138****8000" in page.locator("p.lead").inner_text()
    assert page.locator("#unit").input_value() == ""
    assert page.locator('#unit option[value="visitor"]').count() == 1
    assert "/s?f=" in page.url
    save_screenshot(page, f"ux-{lang}-8-identity")
    typed = ("张三", "120101199003071235")
    page.fill("#name", typed[0])
    page.fill("#id_number", typed[1])
    page.click(f"header button:has-text('{case['other']}')")
    assert page.locator("h2").inner_text() == case["other_identity_title"]
    assert _typed(page) == typed
    save_screenshot(page, f"ux-{lang}-9-identity-other-language")
    page.click(f"header button:has-text('{case['back']}')")
    assert page.locator("h2").inner_text() == case["identity_title"] and _typed(page) == typed
    page.reload()
    assert page.locator("h2").inner_text() == case["identity_title"]
    assert _typed(page) == typed
    save_screenshot(page, f"ux-{lang}-10-identity-after-refresh")
    page.select_option("#unit", "visitor")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["done"]
    save_screenshot(page, f"ux-{lang}-11-done")

    # Reopening the AP's spent link: a button that asks the AP for a fresh one.
    page.goto(f"{live_portal}/?{query}&lang={lang}")
    assert page.locator("h2").inner_text() == case["start_again"]
    button = page.locator(f"a.button:has-text('{case['reopen']}')")
    assert button.get_attribute("href") == "http://example.com/"
    assert case["help"] in page.locator("footer").inner_text()
    save_screenshot(page, f"ux-{lang}-12-spent-link")
    context.close()


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_an_expired_page_starts_again_for_the_same_device(
        browser: Any, live_portal: str, services: PortalServices, place: Place,
        monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    """Left open past the flow's lifetime: "start again" opens a fresh form for the device."""
    case = CASES[lang]
    context, page = _phone(browser, case)
    page.goto(f"{live_portal}/?{signed_query(mac=case['mac'])}")
    old_flow = page.locator("#flow").input_value()
    monkeypatch.setattr(services.flows, "_max_age", 1)  # provoke the expiry without waiting
    time.sleep(2.1)
    page.fill("#phone", "13800138000")
    page.click("#submit")
    assert page.locator("h2").inner_text() == case["start_again"]
    save_screenshot(page, f"ux-{lang}-13-expired")
    monkeypatch.undo()
    page.click("#again")
    assert page.locator("h2").inner_text() == case["title"]
    new_token = page.locator("#flow").input_value()
    assert new_token != old_flow
    new_flow = services.flows.load(new_token)  # a fresh flow, not expired
    assert new_flow.handshake.mac == case["mac"]  # for the same device
    save_screenshot(page, f"ux-{lang}-14-started-again")
    context.close()


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_a_forged_link_or_token_offers_start_again_inside_the_sheet(
        browser: Any, live_portal: str, services: PortalServices, place: Place,
        lang: str) -> None:
    """No flow to restart (a forged flow token, a link the AP did not sign): a "start again"
    button to the configured address the AP answers with a fresh hand-over (the captive sheet
    has no address bar), visible without scrolling, beside the help number."""
    case = CASES[lang]
    context, page = _phone(browser, case)
    restart = services.settings.portal_restart_url
    page.goto(f"{live_portal}/?{signed_query(mac=case['mac'])}")
    page.evaluate("document.querySelector('#flow').value = 'forged'")
    page.fill("#phone", "13800138000")
    page.check("#consent")
    page.click("#submit")
    for shot, opened in (("15-forged-token", None),
                         ("16-link-not-signed-by-the-ap",
                          f"{live_portal}/?{signed_query(mac=case['mac'], key='x' * 64)}")):
        if opened is not None:
            page.goto(opened)
        assert page.locator("h2").inner_text() == case["start_again"]
        button = page.locator("#restart")
        assert button.inner_text() == case["restart"]
        assert button.get_attribute("href") == restart
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert box["y"] + box["height"] <= 844  # in the first screen, no scrolling
        assert case["help"] in page.locator("footer").inner_text()
        save_screenshot(page, f"ux-{lang}-{shot}")
    context.close()
