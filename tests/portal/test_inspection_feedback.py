"""An on-site inspection joins the case loop: feedback on the unit's open case, or a new case."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.models import (
    AuditEntry,
    Case,
    CaseEvent,
    CaseStatus,
    Community,
    Inspection,
    InspectionPhoto,
    StaffUser,
)
from tests.cases_common import make_case
from tests.common import Place, csrf, inspect, login, page, photo_bytes, staff, token_of


def _staff_id(factory: sessionmaker[Session], username: str) -> int:
    """A staff member's id."""
    with factory() as db:
        return db.scalars(select(StaffUser.id).where(StaffUser.username == username)).one()


def _events(factory: sessionmaker[Session], case_id: int) -> list[tuple[str, str, str, str]]:
    """(actor, action, from, to) of a case's history, oldest first."""
    with factory() as db:
        return [(e.actor, e.action, e.from_status, e.to_status) for e in db.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))]


def test_an_inspection_is_the_feedback_on_the_case_assigned_to_the_inspector(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """Assigned, not yet started: the visit starts it and feeds back, with the photo on the case."""
    factory = sqlite_session_factory
    staff(factory, "grid", "grid_worker")
    case_id = make_case(factory, place.unit_1502, CaseStatus.ASSIGNED,
                        assignee=_staff_id(factory, "grid"))
    login(client, "grid")
    token = token_of(factory, place.unit_1502)
    form = page(client.get(f"/q/{token}"))
    assert f"本次检查即为案件 #{case_id} 的反馈" in form
    assert f'name="case" value="{case_id}" checked' in form
    response = inspect(client, token, photos=[(photo_bytes("JPEG"), "a.jpg")],
                       people_found="3", people_unregistered="0", note="多余床位已拆除",
                       hazard=["FI04"], case=str(case_id))
    assert response.status_code == 302
    assert _events(factory, case_id)[1:] == [
        ("grid", "start", "assigned", "handling"), ("grid", "feedback", "handling", "feedback")]
    with factory() as db:
        inspection = db.scalars(select(Inspection)).one()
        assert inspection.case_id == case_id
        assert db.get_one(Case, case_id).status is CaseStatus.FEEDBACK
        photo = db.scalars(select(InspectionPhoto)).one()
        feedback = db.scalars(select(CaseEvent).where(CaseEvent.action == "feedback")).one()
        assert f"inspection {inspection.id}:" in feedback.note and "多余床位已拆除" in feedback.note
        audit = db.scalars(select(AuditEntry).where(
            AuditEntry.action == "record_inspection")).one()
        assert audit.detail["feedback"] is True and audit.detail["case_id"] == case_id
    case_page = page(client.get(f"/admin/cases/{case_id}"))
    assert f"/admin/photos/{photo.id}" in case_page and "多余床位已拆除" in case_page
    assert "现场检查" in case_page
    # Fed back, the case waits for verification: the next visit's form no longer offers it
    # by default (it would be added to the case without anyone choosing so).
    again = page(client.get(f"/q/{token}"))
    assert f'name="case" value="{case_id}" checked' not in again
    assert 'name="case" value="0" checked' in again
    # The hazard reads as its name in the page's language, not as a bare catalogue code.
    assert "FI04 室内为电动自行车或电池充电" in case_page


def test_an_inspection_of_a_case_waiting_on_someone_else_is_added_to_its_history(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """A case still to be reviewed does not move; the inspection is a note on it."""
    factory = sqlite_session_factory
    staff(factory, "grid", "grid_worker")
    case_id = make_case(factory, place.unit_1502, CaseStatus.DISCOVERED)
    login(client, "grid")
    token = token_of(factory, place.unit_1502)
    assert f"将本次检查加入案件 #{case_id}" in page(client.get(f"/q/{token}"))
    assert inspect(client, token, people_found="5", case=str(case_id)).status_code == 302
    assert _events(factory, case_id)[1:] == [("grid", "", "discovered", "discovered")]
    with factory() as db:
        assert db.get_one(Case, case_id).status is CaseStatus.DISCOVERED
        assert db.scalars(select(Inspection)).one().case_id == case_id


def test_a_posted_case_of_another_unit_is_refused_and_nothing_is_saved(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """The case id comes from the form, so the server checks it belongs to this unit and is
    open: another unit's case, or a closed one, is refused whatever is posted."""
    factory = sqlite_session_factory
    staff(factory, "grid", "grid_worker")
    grid = _staff_id(factory, "grid")
    other = make_case(factory, place.unit_1501, CaseStatus.ASSIGNED, assignee=grid)
    closed = make_case(factory, place.unit_1502, CaseStatus.CLOSED)
    login(client, "grid")
    token = token_of(factory, place.unit_1502)
    for case_id in (other, closed, 999_999):
        html = page(inspect(client, token, people_found="2", case=str(case_id)))
        assert "该案件已不再是本户的待办案件" in html
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(Inspection)) == 0
        assert db.get_one(Case, other).status is CaseStatus.ASSIGNED
    assert len(_events(factory, other)) == 1


def test_a_standalone_inspection_can_be_turned_into_a_case_by_a_supervisor_only(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """No open case and no box ticked: it stays alone, and a supervisor opens a case from it
    once; a grid worker, a forged form and another community's supervisor cannot."""
    factory = sqlite_session_factory
    staff(factory, "grid", "grid_worker")
    staff(factory, "sup", "supervisor", community="TEDA-017")
    login(client, "grid")
    token = token_of(factory, place.unit_1502)
    form = page(client.get(f"/q/{token}"))
    assert 'name="open_case"' in form and 'name="case" value="0"' in form
    assert inspect(client, token, people_found="7", people_unregistered="4",
                   hazard=["FI03"]).status_code == 302
    with factory() as db:
        inspection = db.scalars(select(Inspection)).one()
        assert inspection.case_id is None
    url = f"/admin/inspections/{inspection.id}/open-case"
    token_html = page(client.get("/admin/cases"))
    assert client.post(url, data={"csrf_token": csrf(token_html)}).status_code == 403
    client.post("/admin/logout", data={"csrf_token": csrf(token_html)})
    login(client, "sup")
    unit_file = page(client.get("/admin/units/TEDA-017/B03/1502"))
    assert url in unit_file
    assert client.post(url, data={}).status_code == 400  # no CSRF token
    first = client.post(url, data={"csrf_token": csrf(unit_file)})
    second = client.post(url, data={"csrf_token": csrf(unit_file)})
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    with factory() as db:
        case = db.scalars(select(Case)).one()
        assert (case.kind, case.status, case.tier.value) == ("inspection",
                                                             CaseStatus.DISCOVERED, "key")
        assert db.get_one(Inspection, inspection.id).case_id == case.id
        assert case.evidence["people_unregistered"] == 4


def test_another_communitys_supervisor_cannot_open_a_case_from_an_inspection(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """Out of scope looks like not found."""
    factory = sqlite_session_factory
    staff(factory, "grid", "grid_worker")
    login(client, "grid")
    assert inspect(client, token_of(factory, place.unit_1502),
                   people_found="2").status_code == 302
    with factory() as db:
        inspection_id = db.scalars(select(Inspection.id)).one()
        db.add(Community(code="TEDA-099", name="其他社区"))
        db.commit()
    staff(factory, "far", "supervisor", community="TEDA-099")
    html = page(client.get("/admin/cases"))
    client.post("/admin/logout", data={"csrf_token": csrf(html)})
    login(client, "far")
    response = client.post(f"/admin/inspections/{inspection_id}/open-case",
                           data={"csrf_token": csrf(page(client.get("/admin/cases")))})
    assert response.status_code == 404
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(Case)) == 0
