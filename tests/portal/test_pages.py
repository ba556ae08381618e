"""Pages filled in from the page cache are the pages Jinja renders, value for value."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import Flask
from flask.testing import FlaskClient

from portal import captive
from portal.flow import Flow
from portal.pages import PageCache
from portal.services import PortalServices
from tests.common import (
    hidden,
    identity_form,
    page,
    phone_form,
    prove_phone,
    signed_query,
)

HEADERS = {"Accept-Language": "zh-CN,zh;q=0.9"}


def _flow(services: PortalServices, html: str) -> Flow:
    """The flow a page carries."""
    return services.flows.load(hidden(html, "flow"))


def test_cached_sign_in_pages_equal_full_renders(app: Flask, client: FlaskClient,
                                                 services: PortalServices) -> None:
    """Splash and code pages from the cache are byte for byte what the templates give."""
    for n, lang in enumerate(("zh_CN", "en")):
        for mac in (f"a4:83:e7:12:9f:{n}1", f"a4:83:e7:12:9f:{n}2"):  # the second: cached
            phone = "138001380" + mac[-2:]
            splash = page(client.get(f"/?{signed_query(mac=mac)}&lang={lang}"))
            flow = _flow(services, splash)
            with app.test_request_context(f"/?lang={lang}", headers=HEADERS):
                full = captive._splash_html(
                    flow, hidden(splash, "flow"), hidden(splash, "csrf_token"))
                assert splash == full
            code = page(client.post("/signin", data=phone_form(splash, phone)))
            with app.test_request_context("/signin", method="POST", data={"lang": lang}):
                full = captive._code_html(
                    flow, hidden(code, "flow"), hidden(code, "csrf_token"),
                    "138****80" + mac[-2:], int(services.otp.policy.resend_seconds))
                assert code == full


def test_the_last_page_greets_by_masked_name_from_the_cache(
        client: FlaskClient, services: PortalServices) -> None:
    """Two residents in a row: each sees their own masked name and link."""
    for name, phone in (("张三", "13800138000"), ("王五", "13900139000")):
        splash = page(client.get("/?" + signed_query(mac=f"a4:83:e7:12:9f:{phone[-2:]}")))
        identity = prove_phone(client, services, splash, phone)
        done = page(client.post("/identity", data=identity_form(
            identity, name=name, id_type="passport", id_number="E" + phone[3:])))
        assert f"{name[0]}*" in done and 'href="http://example.com/"' in done


def test_values_are_escaped_and_unsafe_url_values_refused() -> None:
    """Text values are HTML-escaped; a URL value that is not URL-safe means a full render."""
    cache = PageCache()

    def render(markers: Mapping[str, str]) -> str:
        """A page with a text value and a link value."""
        return f'<p>{markers["name"]}</p><a href="/s?f={markers["token"]}">x</a>'

    assert cache.fill("k", render, {"name": '<b>"&'}, {"token": "abc.DEF_-1"}) == (
        '<p>&lt;b&gt;&#34;&amp;</p><a href="/s?f=abc.DEF_-1">x</a>')
    assert cache.fill("k", render, {"name": "a"}, {"token": "a&b"}) is None


def test_a_full_cache_lets_the_least_recently_used_page_go() -> None:
    """Past the limit the page used longest ago is rendered again; a busy one is not."""
    renders: list[str] = []

    def render_for(key: str) -> Callable[[Mapping[str, str]], str]:
        def render(markers: Mapping[str, str]) -> str:
            renders.append(key)
            return f"<p>{key}: {markers['name']}</p>"
        return render

    cache = PageCache(limit=2)
    for key in ("busy", "quiet", "busy", "new", "busy", "quiet"):
        assert cache.fill(key, render_for(key), text={"name": "张*"}) == f"<p>{key}: 张*</p>"
    # "quiet" made way for "new" (busy had been used since); it came back rendered again.
    assert renders == ["busy", "quiet", "new", "quiet"]
