"""The server side of the resident pages' usability (issue #11): each behaviour the browser test
walks, checked on the pages themselves, and the limits that must not move with it."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from flask.testing import FlaskClient
from itsdangerous.timed import TimestampSigner

from census.channels import RedisKeys
from census.settings import Settings
from portal import create_app
from portal.flow import FLOW_MAX_AGE_S, FLOW_RESTART_MAX_AGE_S
from portal.services import PortalServices
from tests.common import (
    UNIT_AP,
    ZHANG_ID,
    Place,
    code_form,
    hidden,
    identity_form,
    last_code,
    page,
    phone_form,
    prove_phone,
    signed_query,
    tampered,
)


def _selected(html: str) -> list[str]:
    """The values of the selected unit options."""
    select = html[html.index('<select id="unit"'):]
    select = select[:select.index("</select>")]
    return re.findall(r'value="([^"]*)" selected', select)


def test_a_unit_ap_preselects_nothing_and_a_visitor_says_so(
        client: FlaskClient, services: PortalServices, settings: Settings, place: Place
) -> None:
    """Left as it is, the unit list is refused: "I live here" or "I am visiting" is chosen."""
    splash = page(client.get("/?" + signed_query(ap=UNIT_AP, key=settings.command_key)))
    identity = prove_phone(client, services, splash)
    assert _selected(identity) == [] and 'value="visitor"' in identity
    left = page(client.post("/identity", data=identity_form(identity, unit="")))
    assert "连接成功" not in left and "请从列表中选择" in left
    chosen = page(client.post("/identity", data=identity_form(left, unit="visitor")))
    assert "连接成功" in chosen


def test_every_page_shows_the_help_number(client: FlaskClient, settings: Settings) -> None:
    """The form, a refused link and the start page all carry the configured number."""
    query = signed_query()
    pages = [client.get("/?" + query), client.get("/?" + query), client.get("/"),
             client.get("/privacy")]
    assert [r.status_code for r in pages] == [200, 409, 200, 200]
    for response in pages:
        assert f'href="tel:{settings.portal_help_phone}"' in page(response)


def test_the_language_switch_keeps_what_was_typed(client: FlaskClient,
                                                  services: PortalServices) -> None:
    """Posting a page to /lang gives it back in the other language, filled, without errors:
    the first page (the number) and the identity page after it."""
    splash = page(client.get("/?" + signed_query()))
    english = page(client.post("/lang?lang=en", data=phone_form(splash, phone="139")))
    assert "Sign in to use the free Wi-Fi" in english
    assert 'value="139"' in english and 'class="err"' not in english
    assert hidden(english, "lang") == "en"  # the next post stays in English
    identity = prove_phone(client, services, english)
    assert "Who is signing in?" in identity
    typed = identity_form(identity, name="张三", id_number="1201011990") | {"step": "identity"}
    chinese = page(client.post("/lang?lang=zh_CN", data=typed))
    assert "谁在登录" in chinese and 'name="code"' not in chinese
    assert 'value="张三"' in chinese and 'value="1201011990"' in chinese
    assert 'class="err"' not in chinese and hidden(chinese, "lang") == "zh_CN"


def test_a_draft_comes_back_on_refresh_and_is_kept_encrypted(
        client: FlaskClient, services: PortalServices, settings: Settings) -> None:
    """What the page's script sends comes back on /s; Redis holds it encrypted, for the flow's
    lifetime; a post without the flow's CSRF token keeps nothing."""
    splash = page(client.get("/?" + signed_query()))
    flow = services.flows.load(hidden(splash, "flow"))
    forged = phone_form(splash, phone="1380013", csrf_token="x")
    assert client.post("/draft", data=forged).status_code == 400
    assert services.pending.get_draft(flow.fid) == {}
    assert client.post("/draft", data=phone_form(splash, phone="1380013")).status_code == 204
    again = page(client.get(f"/s?f={hidden(splash, 'flow')}"))
    assert 'value="1380013"' in again and "checked" in again and 'class="err"' not in again
    # The identity page, after the code: its draft comes back on the identity page.
    identity = prove_phone(client, services, again)
    draft = identity_form(identity, name="李四", id_number=ZHANG_ID)
    assert client.post("/draft", data=draft).status_code == 204
    raw = services.redis.get(services.pending.draft_key(flow.fid))
    assert raw is not None and "李四".encode() not in raw and ZHANG_ID.encode() not in raw
    assert 0 < services.redis.ttl(services.pending.draft_key(flow.fid)) <= FLOW_MAX_AGE_S
    refreshed = page(client.get(f"/s?f={hidden(splash, 'flow')}"))
    assert 'value="李四"' in refreshed and f'value="{ZHANG_ID}"' in refreshed
    assert 'name="phone"' not in refreshed and 'class="err"' not in refreshed
    # Signed in: the draft is gone with the flow's number.
    done = client.post("/identity", data=identity_form(refreshed))
    assert done.status_code == 200 and "连接成功" in page(done)
    assert services.redis.exists(services.pending.draft_key(flow.fid)) == 0
    assert services.redis.exists(services.pending.key(flow.fid)) == 0


def test_the_phone_can_be_changed_from_the_code_page(client: FlaskClient) -> None:
    """The code page's "change" button gives the form back filled in, to fix the number."""
    splash = page(client.get("/?" + signed_query()))
    code = page(client.post("/signin", data=phone_form(splash, phone="13900139001")))
    form = {k: hidden(code, k) for k in ("flow", "lang", "csrf_token")}
    back = page(client.post("/change", data=form))
    assert 'value="+8613900139001"' in back and "请改正手机号码" in back and "checked" in back
    assert page(client.post("/change", data=form | {"csrf_token": "x"})).count("请重新开始") == 1


def test_the_same_number_back_within_its_cooldown_keeps_its_code(
        client: FlaskClient, services: PortalServices) -> None:
    """"Change number", then the same number again: the code page with the code already sent
    (no new SMS, the countdown goes on), and that code proves the number."""
    splash = page(client.get("/?" + signed_query()))
    sent = page(client.post("/signin", data=phone_form(splash, phone="13900139001")))
    outbox = services.redis.llen(RedisKeys(services.settings.redis_key_prefix).sms_outbox())
    first_wait = int(re.findall(r'data-wait="(\d+)"', sent)[0])
    form = {k: hidden(sent, k) for k in ("flow", "lang", "csrf_token")}
    back = page(client.post("/change", data=form))
    again = page(client.post("/signin", data=phone_form(back, phone="13900139001")))
    assert 'name="code"' in again and "刚才发送到该号码的验证码仍然有效" in again
    assert "139****9001" in again
    assert 0 < int(re.findall(r'data-wait="(\d+)"', again)[0]) <= first_wait
    assert services.redis.llen(
        RedisKeys(services.settings.redis_key_prefix).sms_outbox()) == outbox  # no new SMS
    proven = page(client.post("/verify", data=code_form(again, last_code(services,
                                                                          "13900139001"))))
    assert 'name="id_number"' in proven and "139****9001" in proven


def test_the_resend_cooldown_still_holds_on_the_server(client: FlaskClient) -> None:
    """The button's countdown is the page's; a resend posted early is still refused."""
    splash = page(client.get("/?" + signed_query()))
    code = page(client.post("/signin", data=phone_form(splash)))
    assert 'id="resend-wait" data-wait="' in code
    form = {k: hidden(code, k) for k in ("flow", "lang", "csrf_token")}
    early = page(client.post("/resend", data=form))
    assert "刚刚已向该号码发送过验证码" in early and "新的验证码已发送" not in early


def _aged_splash(client: FlaskClient, monkeypatch: pytest.MonkeyPatch, age: int) -> str:
    """A form page whose flow token was signed age seconds ago."""
    now = int(time.time())
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda _self: now - age)
        return page(client.get("/?" + signed_query()))


def test_an_expired_page_restarts_for_its_device_within_limits(
        client: FlaskClient, services: PortalServices, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired: a "start again" button giving a fresh flow (new id) for the same hand-over, the
    form and never one tap; forged or older than the restart limit: no button."""
    splash = _aged_splash(client, monkeypatch, FLOW_MAX_AGE_S + 60)
    token = hidden(splash, "flow")
    expired = page(client.post("/signin", data=phone_form(splash)))
    assert 'id="again"' in expired and "请重新开始" in expired
    fresh = page(client.post("/again", data={"flow": token}))
    assert 'name="phone"' in fresh  # the form, not one tap
    new = services.flows.load(hidden(fresh, "flow"))
    old = services.flows.restart(token)  # the hand-over inside the expired token
    assert new.handshake == old.handshake and hidden(fresh, "flow") != token
    forged = client.post("/again", data={"flow": tampered(token)})
    assert forged.status_code == 400 and 'id="again"' not in page(forged)

    too_old = _aged_splash(client, monkeypatch, FLOW_RESTART_MAX_AGE_S + 60)
    refused = page(client.post("/signin", data=phone_form(too_old)))
    assert 'id="again"' not in refused and "请重新开始" in refused
    assert client.post("/again", data={"flow": hidden(too_old, "flow")}).status_code == 400


def test_the_too_many_attempts_page_leads_back_to_the_form(
        settings: Settings, place: Place, redis_client: object) -> None:
    """Over the limit: the wait, and a button back to the flow's form (with its draft)."""
    limits = {"page": (100, 60), "signin": (1, 60), "verify": (30, 60)}
    app = create_app(settings, {"TESTING": True, "PORTAL_RATE_LIMITS": limits})
    try:
        client = app.test_client()
        splash = page(client.get("/?" + signed_query()))
        client.post("/draft", data=phone_form(splash, phone="1380013"))
        assert client.post("/signin", data=phone_form(splash, phone="1")).status_code == 200
        limited = client.post("/signin", data=phone_form(splash, phone="2"))
        assert limited.status_code == 429
        back = re.search(r'<a class="button" href="([^"]+)">返回填写</a>', page(limited))
        assert back is not None
        assert 'value="1380013"' in page(client.get(back.group(1).replace("&amp;", "&")))
    finally:
        app.extensions["portal"].close()


def test_a_forged_or_missing_flow_token_offers_the_configured_restart(
        settings: Settings, place: Place, redis_client: object) -> None:
    """No flow left to restart (forged, missing, a bad link): a "start again" button to the
    configured address the AP intercepts, whatever the request names as a target."""
    restart = "http://login.census/login"
    app = create_app(dataclasses.replace(settings, portal_restart_url=restart))
    client = app.test_client()
    splash = page(client.get("/?" + signed_query()))
    forged = phone_form(splash) | {"flow": tampered(hidden(splash, "flow")),
                                   "url": "http://evil.example/", "next": "http://evil.example/"}
    bad_link = "/?" + signed_query(key="x" * 64, url="http://evil.example/")  # not the AP's key
    for response in (client.post("/signin?url=http://evil.example/", data=forged),
                     client.post("/verify", data={"code": "123456"}),
                     client.get("/s?f=&next=http://evil.example/"),
                     client.get(bad_link)):
        html = page(response)
        assert response.status_code in (400, 403) and "请重新开始" in html
        assert f'id="restart" class="button" href="{restart}"' in html
        assert "evil.example" not in html
        assert f'href="tel:{settings.portal_help_phone}"' in html
    english = page(client.get("/s?f=x&lang=en"))
    assert f'href="{restart}">Start again</a>' in english
