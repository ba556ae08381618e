"""Hypothesis fuzzing of the back office's forms and session checks: any input gets an answer,
never a server error (issue 11: every form fuzzed briefly in the tests)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from census.settings import Settings
from portal import create_app
from portal.staff_auth import SESSION_KEYS, session_problem
from tests.common import Place, csrf, login, page, staff

# Anything a form field may carry: any code point (NUL, surrogates excluded by HTTP encoding),
# long values, digits from other scripts, invisible characters.
FIELD = st.text(st.characters(codec="utf-8"), max_size=300)
ODD = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), FIELD,
                st.lists(st.integers(), max_size=3), st.dictionaries(FIELD, st.integers(),
                                                                     max_size=2))
FUZZ = settings(max_examples=100, deadline=None)
# Each login attempt costs a password hash (~0.1 s): fewer examples there.
FUZZ_LOGIN = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(values=st.dictionaries(st.sampled_from(SESSION_KEYS), ODD), generation=st.integers(),
       address=FIELD, now=st.floats(min_value=0, max_value=4e9))
@settings(max_examples=500, deadline=None)
def test_session_checks_never_raise(values: dict[str, Any], generation: int, address: str,
                                    now: float) -> None:
    """Whatever a session holds, the check answers with a reason or None."""
    problem = session_problem(dict(values), generation, address, idle_s=1800, max_age_s=28800,
                              now=now)
    assert problem is None or isinstance(problem, str)


@FUZZ_LOGIN
@given(username=FIELD, password=FIELD)
def test_login_form_answers_any_input(app: Flask, username: str, password: str) -> None:
    """Any user name and password: the form again (200/400) or a wait (429), never a 500."""
    client = app.test_client()
    form = page(client.get("/admin/login"))
    response = client.post("/admin/login", data={"username": username, "password": password,
                                                 "csrf_token": csrf(form)})
    assert response.status_code in (200, 400, 429), response.status_code


def signed_in_client(app: Flask, factory: sessionmaker[Session]) -> FlaskClient:
    """An administrator's client, signed in once for all of a test's examples."""
    staff(factory, "fuzz", "admin")
    client = app.test_client()
    login(client, "fuzz")
    return client


def test_resident_search_answers_any_input(
        settings: Settings, place: Place, redis_client: Any,
        sqlite_session_factory: sessionmaker[Session]) -> None:
    """Any search kind and text: a results page, never a 500."""
    # The fuzzer searches hundreds of times: the per-staff search limit (its own test in
    # test_admin.py) is lifted here.
    app = create_app(settings, {
        "TESTING": True, "PORTAL_RATE_LIMITS": {"staff_search": (10**9, 600)}})
    try:
        client = signed_in_client(app, sqlite_session_factory)
        token = csrf(page(client.get("/admin/residents")))

        @FUZZ
        @given(by=st.one_of(st.sampled_from(["name", "id", "phone", "unit"]), FIELD),
               query=FIELD)
        def search(by: str, query: str) -> None:
            """One search."""
            response = client.post("/admin/residents", data={"by": by, "q": query,
                                                             "csrf_token": token})
            assert response.status_code == 200

        search()
    finally:
        app.extensions["portal"].close()


def test_move_out_alert_and_audit_forms_answer_any_input(
        app: Flask, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Move-out dates, alert filters and audit filters of any shape never cause a 500."""
    client = signed_in_client(app, sqlite_session_factory)
    token = csrf(page(client.get("/admin/alerts")))

    @FUZZ
    @given(day=FIELD, kind=FIELD, actor=FIELD)
    def forms(day: str, kind: str, actor: str) -> None:
        """One of each."""
        assert client.post("/admin/residents/1/move-out",
                           data={"move_out": day, "csrf_token": token}).status_code in (302, 404)
        assert client.get("/admin/alerts", query_string={"kind": kind}).status_code == 200
        assert client.get("/admin/audit", query_string={"actor": actor}).status_code == 200

    forms()
