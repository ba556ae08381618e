"""Registry CSV upload in the back office: dry run, commit, all or nothing, and the attacks."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from census.settings import Settings
from portal.imports import ROW_PROBLEMS
from registry.importers import PROBLEMS
from registry.models import AuditEntry, Community, Resident, Unit
from tests.common import Place, csrf, login, make_id, page, staff

UNITS_HEADER = ("community,community_name,building,building_name,unit,floor,room,area_m2,"
                "registered_occupants,rented,meter_group\n")
RESIDENTS_HEADER = "community,building,unit,name,id_type,id_number,phone,move_in,move_out\n"
GOOD_ID = make_id("12010119770707123")
OTHER_ID = make_id("12010119880808456")


def upload(client: FlaskClient, kind: str, content: bytes | str, name: str = "f.csv",
           token: str | None = None) -> Any:
    """POST a file to the check step."""
    if token is None:
        token = csrf(page(client.get("/admin/imports/")))
    data = content.encode("utf-8") if isinstance(content, str) else content
    # Encoded in memory: the test client would spool a large body to a file it never closes.
    boundary, body = encode_multipart(MultiDict({
        "csrf_token": token, "kind": kind, "file": FileStorage(io.BytesIO(data), filename=name)}))
    return client.post("/admin/imports/", data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")


def count(factory: sessionmaker[Session], model: Any) -> int:
    """Rows of a table."""
    with factory() as db:
        return db.scalar(select(func.count()).select_from(model)) or 0


def test_every_importer_problem_has_a_translation() -> None:
    """The back office can say each of the CLI's reasons in the reader's language."""
    assert set(ROW_PROBLEMS) == set(PROBLEMS)


def test_a_file_with_bad_lines_is_listed_by_line_in_both_languages_and_nothing_is_written(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """Two good lines and two bad ones: every bad line named, no import button, no resident."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    before = count(sqlite_session_factory, Resident)
    text = RESIDENTS_HEADER + (
        f"TEDA-017,B03,1501,赵六,resident_id_card,{GOOD_ID},13800138001,2025-01-01,\n"
        "TEDA-017,B03,1501,钱七,resident_id_card,120101197707071230,,2025-01-01,\n"
        f"TEDA-017,B03,9999,孙八,resident_id_card,{OTHER_ID},,2025-01-01,\n"
        "TEDA-017,B03,1502,Li Ming,passport,E7654321,+447700900123,2025-02-01,\n")
    response = upload(client, "residents", text, "residents.csv")
    html = page(response)
    assert response.status_code == 422
    assert "<td>3</td><td>id_number 不是有效的公民身份号码（校验码不符，GB 11643）</td>" in html
    assert "<td>4</td><td>房屋 TEDA-017/B03/9999 不在登记库中（请先导入房屋）</td>" in html
    assert 'id="commit"' not in html
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    english = page(upload(client, "residents", text, "residents.csv"))
    assert "<td>3</td><td>id_number is not a valid resident ID number" in english
    assert "<td>4</td><td>unit TEDA-017/B03/9999 is not in the registry" in english
    assert count(sqlite_session_factory, Resident) == before
    # Nothing waits to be committed: a forged commit finds nothing.
    token = csrf(english)
    assert client.post("/admin/imports/commit", data={"csrf_token": token}).status_code == 409
    assert count(sqlite_session_factory, Resident) == before
    with sqlite_session_factory() as db:
        entries = list(db.scalars(select(AuditEntry).where(
            AuditEntry.action == "import_residents")))
    assert len(entries) == 2 and all(e.detail["dry_run"] for e in entries)
    assert all(e.detail["rejected"] == 2 and e.subject == "residents.csv" for e in entries)


def test_a_clean_file_is_checked_then_committed_once(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        settings: Settings, place: Place) -> None:
    """The check writes nothing; the commit writes every line and deletes the waiting file."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    text = UNITS_HEADER + ("TEDA-017,泰达第十七社区,B03,3号楼,1601,16,1601,60,2,1,\n"
                           "TEDA-017,泰达第十七社区,B03,3号楼,1602,16,1602,75,0,0,\n")
    html = page(upload(client, "units", text, "units.csv"))
    assert "2 行：新增 2，修改 0，未变 0，有误 0。" in html and 'id="commit"' in html
    assert count(sqlite_session_factory, Unit) == 2
    waiting = list((settings.var_dir / "uploads").glob("*.csv"))
    assert len(waiting) == 1 and waiting[0].stat().st_mode & 0o777 == 0o600
    response = client.post("/admin/imports/commit", data={"csrf_token": csrf(html)})
    assert response.status_code == 303
    assert "已导入 units.csv：新增 2" in page(client.get(response.headers["Location"]))
    with sqlite_session_factory() as db:
        assert {u.ref for u in db.scalars(select(Unit))} >= {"TEDA-017/B03/1601",
                                                             "TEDA-017/B03/1602"}
        committed = db.scalars(select(AuditEntry).where(
            AuditEntry.action == "import_units").order_by(AuditEntry.id.desc())).first()
        assert committed is not None and committed.detail["committed"] is True
        assert committed.actor == "ada"
    assert not list((settings.var_dir / "uploads").glob("*.csv"))
    # Committing again finds nothing waiting: no second import.
    assert client.post("/admin/imports/commit",
                       data={"csrf_token": csrf(html)}).status_code == 409


def test_a_community_admin_cannot_import_into_another_community(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """Rows of another community (existing or new) are refused; the own ones are not written
    either, because the file is all or nothing."""
    from registry.db import session_scope

    with session_scope(sqlite_session_factory) as db:
        db.add(Community(code="TEDA-099", name="其他社区"))
    staff(sqlite_session_factory, "ann", "admin", community="TEDA-017")
    login(client, "ann")
    text = UNITS_HEADER + ("TEDA-017,,B03,,1701,17,1701,60,1,0,\n"
                           "TEDA-099,,B01,,0101,1,101,40,1,0,\n"
                           "TEDA-NEW,,B01,,0101,1,101,40,1,0,\n")
    html = page(upload(client, "units", text))
    assert "<td>3</td><td>社区 TEDA-099 不在您负责的社区之内</td>" in html
    assert "<td>4</td><td>社区 TEDA-NEW 不在您负责的社区之内</td>" in html
    with sqlite_session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Unit).where(
            Unit.ref.in_(["TEDA-017/B03/1701", "TEDA-099/B01/0101"]))) == 0
        assert db.scalar(select(Community).where(Community.code == "TEDA-NEW")) is None


@pytest.mark.parametrize("role", ["viewer", "grid_worker", "supervisor", "hazard_team"])
def test_only_administrators_may_upload(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], place: Place,
        role: str) -> None:
    """Everyone else gets a 403 for the page, the check and the commit; nothing is read."""
    staff(sqlite_session_factory, "eve", role)
    login(client, "eve")
    assert client.get("/admin/imports/").status_code == 403
    token = csrf(page(client.get("/admin/cases")))
    text = UNITS_HEADER + "TEDA-017,,B03,,1801,18,1801,60,1,0,\n"
    assert upload(client, "units", text, token=token).status_code == 403
    assert client.post("/admin/imports/commit", data={"csrf_token": token}).status_code == 403
    assert count(sqlite_session_factory, Unit) == 2


def test_oversize_binary_and_forged_uploads_are_refused(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        settings: Settings, place: Place) -> None:
    """Over 8 MB: a message, not a crash; a PNG renamed .csv: not text; no CSRF token: 400."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    big = UNITS_HEADER + "TEDA-017,,B03,,1901,19,1901,60,1,0,\n" * 250_000
    response = upload(client, "units", big)
    assert response.status_code == 413 and "大于 8 MB" in page(response)
    binary = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    response = upload(client, "units", binary, "photo.csv")
    assert response.status_code == 422 and "不是 UTF-8 编码的 CSV 文本文件" in page(response)
    response = upload(client, "units", UNITS_HEADER + "TEDA-017,,B03,,1901,19,1901,60,1,0,\n",
                      token="forged")
    assert response.status_code == 400
    assert count(sqlite_session_factory, Unit) == 2
    uploads = settings.var_dir / "uploads"
    assert not uploads.exists() or not list(uploads.glob("*.csv"))


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1",
                                  "-2+3", "@SUM(A1)", "\t=1"])
def test_formula_cells_are_refused(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session], place: Place,
        cell: str) -> None:
    """A cell a spreadsheet would run (CSV injection) is a bad line, by the CLI's rules too."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    quoted = '"' + cell.replace('"', '""') + '"'
    text = UNITS_HEADER + f"TEDA-017,,B03,{quoted},2001,20,2001,60,1,0,\n"
    html = page(upload(client, "units", text))
    assert "电子表格会把它当作公式执行" in html
    assert count(sqlite_session_factory, Unit) == 2


def test_cell_text_in_an_error_is_escaped(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """A hostile value echoed in a reason is shown as text, never as markup."""
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    text = UNITS_HEADER + "TEDA-017,,B03,,<script>alert(1)</script>,1,1,60,1,0,\n"
    html = page(upload(client, "units", text))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
