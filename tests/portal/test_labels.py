"""Case history notes and alert codes read as words in both languages; unknown ones never crash."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import Window
from analytics.delivery import _note
from analytics.flags import FlagRecord, UtilitySignal
from portal.inspections import inspection_note
from portal.labels import note_text
from registry.casework import escalate_overdue
from registry.db import session_scope
from registry.models import Alert, CaseEvent, CaseStatus, Inspection
from tests.cases_common import make_case
from tests.common import Place, login, page, staff

# The flag record analytics writes the note from (the evidence's window: 28 nights to 2026-11-22).
RECORD = FlagRecord(
    unit="TEDA-017/B03/1501", registered=1, estimated=6.0, interval=(4.0, 8.0),
    nights_observed=26, resident_devices=7, utility=UtilitySignal(3.1, 5), confidence=0.97,
    confidence_plus_one=0.99, persistence=1.0, coverage="unit_ap", flag="group_rental",
    tier="key", hazards=(), window=Window(last_night=dt.date(2026, 11, 21), nights=28,
                                          timezone="Asia/Shanghai"),
    generated_at=dt.datetime(2026, 11, 22, 7, 0, tzinfo=dt.UTC))


@pytest.mark.parametrize(("note", "zh", "en"), [
    ("opened: " + _note(RECORD),
     "系统分析立项：疑似群租：估计实住约 6 人（90% 区间 4–8），登记 1 人；"
     "至少多出两人的概率 97%；观测 26 夜，2026-10-25 至 2026-11-22",
     "Opened by analytics: suspected group rental: about 6 people living there (90% interval "
     "4–8) against 1 registered; 97% likely at least two more; 26 nights observed, 2026-10-25 "
     "to 2026-11-22"),
    ("flag persists: " + _note(RECORD), "预警持续：疑似群租", "The flag persists: suspected"),
    ("opened: group rental", "系统分析立项：疑似群租", "Opened by analytics: suspected group"),
    ("opened: watchlist sign-in (alert 12)", "重点人员登录立项（告警 #12）", "alert #12"),
    ("opened by inspection 3", "据现场检查 #3 立项", "Opened from on-site inspection #3"),
    ("+5 d: 房东外出", "申请延期 5 天：房东外出", "5 more days asked: 房东外出"),
    ("something new from a later version", "something new from a later version",
     "something new from a later version"),
    ("inspection x: people=?", "inspection x: people=?", "inspection x: people=?"),
])
def test_notes_are_said_in_the_readers_language(app: Flask, note: str, zh: str, en: str
                                                ) -> None:
    """Each shape the writers use, rendered; an unknown one is shown as written."""
    for language, expected in (("zh-CN", zh), ("en", en)):
        with app.test_request_context(headers={"Accept-Language": language}):
            assert expected in note_text(note), (language, note_text(note))


def test_the_writers_notes_are_all_known(
        app: Flask, sqlite_session_factory: sessionmaker[Session], place: Place) -> None:
    """The escalation and inspection notes as the code writes them are rendered, not raw."""
    now = dt.datetime.now(dt.UTC)
    case_id = make_case(sqlite_session_factory, place.unit_1502, CaseStatus.HANDLING,
                        due_days=-1.5)
    with session_scope(sqlite_session_factory) as db:
        escalate_overdue(db, now)
        escalation = db.query(CaseEvent).filter_by(case_id=case_id, action="escalate").one()
        inspection = Inspection(id=7, unit_id=place.unit_1502, people_found=4,
                                people_unregistered=1, hazards=["FI04"], note="已整改")
        written = [escalation.note, inspection_note(inspection, 2)]
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        rendered = [note_text(n) for n in written]
    assert rendered[0].startswith("已超期 1 天")
    assert rendered[1] == "现场检查 #7 · 现场 4 人 · 1 人未登记 · 1 项隐患 · 2 张照片: 已整改"


def test_case_and_alert_pages_show_words_not_codes(
        client: FlaskClient, sqlite_session_factory: sessionmaker[Session],
        place: Place) -> None:
    """The case history and the alert list in Chinese; an unknown alert kind readable."""
    case_id = make_case(sqlite_session_factory, place.unit_1502, CaseStatus.DISCOVERED)
    with session_scope(sqlite_session_factory) as db:
        db.add_all([Alert(kind="overcrowding", unit_id=place.unit_1502,
                          payload={"estimated": 6, "registered": 1}),
                    Alert(kind="ap_command_refused", payload={"ap": "ap-7", "count": 3,
                                                              "reason": "bad_signature"}),
                    Alert(kind="brand_new_kind", unit_id=place.unit_1502, payload={})])
    staff(sqlite_session_factory, "ada", "admin")
    login(client, "ada")
    case = page(client.get(f"/admin/cases/{case_id}"))
    assert "系统分析立项：疑似群租" in case and "opened: group rental" not in case
    alerts = page(client.get("/admin/alerts"))
    assert ">群租预警</span>" in alerts and ">overcrowding</span>" not in alerts
    assert "签名错误（密钥不符）" in alerts and "bad_signature" not in alerts
    assert ">brand new kind</span>" in alerts
