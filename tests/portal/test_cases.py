"""The case pages and staff management: every route, every role, in and out of scope."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from census.channels import alert_topic
from census.settings import Settings
from registry.db import session_scope
from registry.models import Alert, Case, CaseEvent, CaseStatus, StaffUser
from tests.cases_common import PASSWORD, make_case
from tests.common import Subscriber, World

ROLES = ("admin", "admin_a", "supervisor", "hazard", "grid", "viewer")


def _csrf(html: str) -> str:
    """A staff form's CSRF token."""
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert match, "no csrf token"
    return match.group(1)


def signed_in(world: World, username: str, language: str = "zh-CN") -> FlaskClient:
    """A client signed in as this staff member."""
    client = world.app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    form = client.get("/admin/login").get_data(as_text=True)
    response = client.post("/admin/login", data={"username": username, "password": PASSWORD,
                                                 "csrf_token": _csrf(form)})
    assert response.status_code == 302, username
    return client


def _token(client: FlaskClient) -> str:
    """A CSRF token of this client's session."""
    return _csrf(client.get("/admin/cases").get_data(as_text=True))


OK, NO, GONE = 200, 403, 404
# Route → expected status per role (admin, admin_a, supervisor, hazard, grid, viewer).
# "{a}" is a case in the people's community A, "{b}" one in community B (only the district-wide
# admin's). Every GET page and export; the POSTs are below.
TABLE = {
    "/admin/": (OK, OK, OK, OK, OK, OK),
    "/admin/cases": (OK, OK, OK, OK, OK, OK),
    "/admin/inbox": (OK, OK, OK, OK, OK, OK),
    "/admin/cases/{a}": (OK, OK, OK, OK, OK, OK),
    "/admin/cases/{b}": (OK, GONE, GONE, GONE, GONE, GONE),
    "/admin/cases.csv": (OK, OK, OK, OK, OK, OK),
    "/admin/cases.json": (OK, OK, OK, OK, OK, OK),
    "/admin/residents": (OK, OK, OK, OK, OK, NO),
    "/admin/signins": (OK, OK, OK, OK, OK, NO),
    "/admin/alerts": (OK, OK, OK, OK, OK, NO),
    "/admin/audit": (OK, NO, NO, NO, NO, NO),
    "/admin/staff/": (OK, NO, NO, NO, NO, NO),
    "/admin/staff/new": (OK, NO, NO, NO, NO, NO),
    "/admin/staff/{grid_id}": (OK, NO, NO, NO, NO, NO),
}


def test_every_page_checks_role_and_scope(world: World) -> None:
    """Route by route, role by role: the expected status, and anonymous visitors sent to log in."""
    ids = {"a": world.case_a, "b": world.case_b, "grid_id": world.staff["grid"]}
    wrong = []
    for role_index, username in enumerate(ROLES):
        client = signed_in(world, username)
        for route, expected in TABLE.items():
            status = client.get(route.format(**ids)).status_code
            if status != expected[role_index]:
                wrong.append((username, route, status, expected[role_index]))
    anonymous = world.app.test_client()
    for route in TABLE:
        response = anonymous.get(route.format(**ids))
        if response.status_code != 302 or "/admin/login" not in response.headers["Location"]:
            wrong.append(("anonymous", route, response.status_code, 302))
    assert wrong == []


def test_actions_check_role_scope_and_state_on_the_server(world: World) -> None:
    """Posting an action the page does not offer is refused, whoever crafts the request."""
    expectations = [  # (user, case, action, status, case status after)
        ("viewer", "a", "confirm", 403, "discovered"),
        ("grid", "a", "confirm", 403, "discovered"),
        ("supervisor", "b", "confirm", 404, "discovered"),  # another community's case
        ("admin_a", "b", "dismiss", 404, "discovered"),
        ("hazard", "a", "close", 409, "discovered"),  # not from discovered
        ("hazard", "a", "dismiss", 422, "discovered"),  # no reason given
        ("hazard", "a", "confirm", 303, "reviewed"),
        ("supervisor", "a", "assign", 422, "reviewed"),  # nobody named
    ]
    cases = {"a": world.case_a, "b": world.case_b}
    for user, which, action, status, after in expectations:
        client = signed_in(world, user)
        response = client.post(f"/admin/cases/{cases[which]}/act",
                               data={"action": action, "csrf_token": _token(client)})
        assert response.status_code == status, (user, which, action)
        with world.factory() as db:
            assert db.get_one(Case, cases[which]).status.value == after, (user, action)
    client = signed_in(world, "admin_a")
    response = client.post(f"/admin/alerts/{world.alert_b}/ack",
                           data={"csrf_token": _token(client)})
    assert response.status_code == 404
    with world.factory() as db:
        assert db.get_one(Alert, world.alert_b).acknowledged_at is None


def test_a_case_goes_round_the_loop_in_the_browser_forms(world: World, settings: Settings
                                                         ) -> None:
    """Review, assign (a notice on MQTT), handle, feed back, verify, close; the inbox follows."""
    alerts = Subscriber(settings, alert_topic(settings.mqtt_topic_prefix, "+"),
                        alert_topic(settings.mqtt_topic_prefix, "probe"))
    try:
        supervisor = signed_in(world, "supervisor")
        grid = signed_in(world, "grid", "en")
        url = f"/admin/cases/{world.case_a}"
        inbox = supervisor.get("/admin/inbox").get_data(as_text=True)
        assert f">#{world.case_a}<" in inbox and f">#{world.case_b}<" not in inbox
        assert "1 个案件等待您处理" in inbox
        detail = supervisor.get(url).get_data(as_text=True)
        assert "确认属实" in detail and "估计居住人数" in detail and '"estimated"' not in detail
        assert f'href="/admin/units/{world.places.ref_a}"' in detail
        token = _csrf(detail)
        assert supervisor.post(url + "/act", data={"action": "confirm",
                                                   "csrf_token": token}).status_code == 303
        assert supervisor.post(url + "/act", data={
            "action": "assign", "assignee": world.staff["grid"], "csrf_token": token,
        }).status_code == 303
        topic, notice = alerts.get()
        assert topic.endswith("/v1/alerts/case_assigned")
        assert (notice["case_id"], notice["assignee"], notice["tier"]) == (world.case_a, "grid",
                                                                          "key")
        mine = grid.get("/admin/inbox").get_data(as_text=True)
        assert f">#{world.case_a}<" in mine and "Cases waiting on you: 1." in mine
        token = _csrf(grid.get(url).get_data(as_text=True))
        grid.post(url + "/act", data={"action": "start", "csrf_token": token})
        assert grid.post(url + "/act", data={"action": "feedback", "reason": "3 moved out",
                                             "csrf_token": token}).status_code == 303
        assert f">#{world.case_a}<" not in grid.get("/admin/inbox").get_data(as_text=True)
        token = _csrf(supervisor.get(url).get_data(as_text=True))
        supervisor.post(url + "/act", data={"action": "verify", "csrf_token": token})
        supervisor.post(url + "/act", data={"action": "close", "csrf_token": token})
        page = supervisor.get(url).get_data(as_text=True)
        assert "已结案" in page and "3 moved out" in page and "What you can do" not in page
        with world.factory() as db:
            assert [e.action for e in db.scalars(select(CaseEvent).where(
                CaseEvent.case_id == world.case_a).order_by(CaseEvent.id))][1:] == [
                "confirm", "assign", "start", "feedback", "verify", "close"]
    finally:
        alerts.close()


def test_case_list_filters_counts_and_pages(world: World) -> None:
    """Filters by status and tier; the page says how many there are and pages by 50."""
    for _ in range(55):
        make_case(world.factory, world.places.unit_a, CaseStatus.HANDLING,
                  assignee=world.staff["grid"], due_days=-1, kind="inspection")
    client = signed_in(world, "supervisor")
    first = client.get("/admin/cases").get_data(as_text=True)
    assert "找到 56 个案件。" in first and "第 1 / 2 页" in first
    assert first.count('class="case-row') == 50
    figures = re.search(r'<a href="/admin/cases\?overdue=1">(\d+)</a>', first)
    assert figures is not None and figures.group(1) == "55"
    overdue = client.get("/admin/cases?overdue=1").get_data(as_text=True)
    assert "找到 55 个案件。" in overdue and "超期" in overdue
    english = signed_in(world, "grid", "en")
    mine = english.get("/admin/cases?mine=1&status=handling").get_data(as_text=True)
    assert "Cases found: 55." in mine and "Being handled" in mine
    assert "handling</span>" not in mine  # labels, not codes


def test_exports_are_csv_and_open311(world: World) -> None:
    """CSV with a header and one row per case in scope; JSON as GeoReport v2 requests."""
    client = signed_in(world, "supervisor")
    body = client.get("/admin/cases.csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["id"] for r in rows] == [str(world.case_a)]  # not community B's
    assert rows[0]["unit"] == world.places.ref_a and rows[0]["status"] == "discovered"
    requests = json.loads(client.get("/admin/cases.json").get_data(as_text=True))
    assert [r["service_request_id"] for r in requests] == [str(world.case_a)]
    request = requests[0]
    assert request["status"] == "open" and request["service_code"] == "overcrowding"
    assert request["requested_datetime"].endswith("+00:00")
    assert set(request) >= {"service_request_id", "status", "service_name", "service_code",
                            "description", "agency_responsible", "requested_datetime",
                            "updated_datetime", "expected_datetime", "address", "lat", "long"}


def test_administrators_manage_staff_in_the_browser(world: World) -> None:
    """Create an account with a scope, change its role, reset its password, deactivate it."""
    admin = signed_in(world, "admin")
    form = admin.get("/admin/staff/new").get_data(as_text=True)
    response = admin.post("/admin/staff/new", data={
        "csrf_token": _csrf(form), "username": "zhao", "display_name": "赵六",
        "role": "grid_worker", "communities": [str(world.places.community_b)],
        "active": "y", "password": "a long enough password"})
    assert response.status_code == 303
    with world.factory() as db:
        zhao = db.scalars(select(StaffUser).where(StaffUser.username == "zhao")).one()
        assert [c.id for c in zhao.communities] == [world.places.community_b]
        assert not zhao.district_wide and zhao.role.value == "grid_worker"
        zhao_id = zhao.id
    client = world.app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    client.post("/admin/login", data={"username": "zhao", "password": "a long enough password",
                                      "csrf_token": _csrf(login)})
    assert client.get(f"/admin/cases/{world.case_b}").status_code == 200
    assert client.get(f"/admin/cases/{world.case_a}").status_code == 404
    edit = admin.get(f"/admin/staff/{zhao_id}").get_data(as_text=True)
    admin.post(f"/admin/staff/{zhao_id}", data={
        "csrf_token": _csrf(edit), "username": "zhao", "display_name": "赵六",
        "role": "viewer", "communities": [str(world.places.community_b)]})  # not active
    assert client.get("/admin/cases").status_code == 302  # deactivated: signed out at once
    short = admin.post(f"/admin/staff/{zhao_id}/password",
                       data={"csrf_token": _csrf(edit), "password": "short"})
    assert short.status_code == 303
    with world.factory() as db:
        zhao = db.get_one(StaffUser, zhao_id)
        assert zhao.role.value == "viewer" and not zhao.active
    own = admin.post(f"/admin/staff/{world.staff['admin']}", data={
        "csrf_token": _csrf(edit), "username": "admin", "role": "viewer", "active": "y",
        "district_wide": "y"})
    assert "不能取消自己的管理员权限" in own.get_data(as_text=True)


@pytest.mark.parametrize(("language", "texts"), [
    ("zh-CN", ("页面不存在", "返回首页")), ("en", ("Page not found", "Back to the start"))])
def test_error_pages_are_styled_in_the_page_language(world: World, language: str,
                                                     texts: tuple[str, str]) -> None:
    """404 and 403 are the project's pages, not Werkzeug's, in the reader's language."""
    client = signed_in(world, "viewer", language)
    missing = client.get("/admin/cases/999999")
    assert missing.status_code == 404
    html = missing.get_data(as_text=True)
    assert all(t in html for t in texts) and "<style>" in html
    assert client.get("/admin/audit").status_code == 403


def test_overdue_cases_are_escalated_with_a_notice(world: World, settings: Settings) -> None:
    """`wifi-census portal case-sweep`: a case event and a case_escalated notice on MQTT, once."""
    from click.testing import CliRunner

    from tests.common import env_of
    from wifi_census.cli import main

    late = make_case(world.factory, world.places.unit_a, CaseStatus.HANDLING,
                     assignee=world.staff["grid"], due_days=-0.5, kind="inspection")
    make_case(world.factory, world.places.unit_a, CaseStatus.HANDLING,
              assignee=world.staff["grid"], due_days=2, kind="inspection")
    with session_scope(world.factory) as db:
        watched = Alert(kind="watchlist", unit_id=world.places.unit_a, payload={
            "kind": "watchlist", "ap": "ap-7", "outcome": "self_declared", "method": "sms",
            "reason": "wanted in case 17", "signin_id": 3})
        db.add(watched)
        db.flush()
        watched_id = watched.id
    alerts = Subscriber(settings, alert_topic(settings.mqtt_topic_prefix, "+"),
                        alert_topic(settings.mqtt_topic_prefix, "probe"))
    try:
        result = CliRunner().invoke(main, ["portal", "case-sweep"], env=env_of(settings))
        assert result.exit_code == 0, result.output
        assert "opened 1 watchlist case(s); escalated 1 overdue case(s)" in result.output
        topic, notice = alerts.get()
        assert topic.endswith("/v1/alerts/case_escalated")
        assert (notice["case_id"], notice["assignee"], notice["community"]) == (
            late, "grid", "TEDA-001")
        again = CliRunner().invoke(main, ["portal", "case-sweep"], env=env_of(settings))
        assert "escalated 0 overdue case(s)" in again.output and alerts.empty_for(0.5)
    finally:
        alerts.close()
    client = signed_in(world, "supervisor")
    page = client.get(f"/admin/cases/{late}").get_data(as_text=True)
    assert "超期督办" in page and "超期</span>" in page
    with world.factory() as db:
        watch_case = db.get_one(Alert, watched_id).case_id
    page = client.get(f"/admin/cases/{watch_case}").get_data(as_text=True)
    assert "重点人员登录" in page and "自主申报，未核实" in page
    assert "关注原因" in page and "wanted in case 17" in page and "短信验证码" in page


def test_alerts_overview_and_staff_pages_keep_to_the_persons_communities(world: World) -> None:
    """Issue 11 defect 6: another community's alert is neither listed nor counted nor
    acknowledgeable; staff pages refuse POSTs from anyone but a district-wide administrator."""
    everywhere = signed_in(world, "admin")
    scoped = signed_in(world, "admin_a")
    listed = everywhere.get("/admin/alerts").get_data(as_text=True)
    assert world.places.ref_b in listed
    assert f'href="/admin/units/{world.places.ref_b}"' in listed
    assert world.places.ref_b not in scoped.get("/admin/alerts").get_data(as_text=True)
    count = re.compile(r'<div class="num"><a href="/admin/alerts">(\d+)</a>')
    overview = count.search(everywhere.get("/admin/").get_data(as_text=True))
    assert overview is not None and overview.group(1) == "1"
    overview = count.search(scoped.get("/admin/").get_data(as_text=True))
    assert overview is not None and overview.group(1) == "0"
    for user in ("admin_a", "supervisor", "hazard"):
        client = signed_in(world, user)
        token = _token(client)
        response = client.post("/admin/staff/new", data={
            "csrf_token": token, "username": "mallory", "role": "admin",
            "district_wide": "y", "active": "y", "password": "a long enough password"})
        assert response.status_code == 403, user
        response = client.post(f"/admin/staff/{world.staff[user]}", data={
            "csrf_token": token, "username": user, "role": "admin", "district_wide": "y",
            "active": "y"})
        assert response.status_code == 403, user
    with world.factory() as db:
        assert db.scalar(select(StaffUser).where(StaffUser.username == "mallory")) is None
        assert not db.get_one(StaffUser, world.staff["admin_a"]).district_wide


def test_a_server_error_is_a_styled_page_and_json_under_the_api(world: World) -> None:
    """500: the project's page in the reader's language; the API answers JSON."""
    app = world.app
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def boom() -> str:
        """A view that fails."""
        raise RuntimeError("boom")

    app.add_url_rule("/admin/boom", view_func=boom)
    app.add_url_rule("/api/boom", view_func=boom, endpoint="api_boom")
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    response = client.get("/admin/boom")
    assert response.status_code == 500 and "Something went wrong" in response.get_data(
        as_text=True) and "boom" not in response.get_data(as_text=True)
    api = client.get("/api/boom")
    assert api.status_code == 500 and api.get_json() == {"error": 500,
                                                         "message": "Something went wrong"}
