"""The AP command log: commands and agents' answers recorded, silences and refusals surfaced."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from apcommands.log import (
    CommandLog,
    CommandLogService,
    SeenAck,
    SeenCommand,
    TopicReader,
)
from census.channels import ack_topic, command_topic
from census.commands import (
    CommandAck,
    CommandError,
    build_command,
    encode_ack,
    parse_ack,
)
from census.mqtt import MqttClient
from census.privacy import pseudonymize_mac
from census.settings import Settings
from registry.db import make_session_factory, upgrade
from registry.models import Alert, ApCommandRecord
from simulator.agents import SimulatedAgents

KEY = "agent-key-" + "0" * 30
PSEUDONYM_KEY = "p" * 40
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
MAC = "a4:83:e7:12:9f:01"


def sent(ap: str = "ap-1", nonce: str = "0000000000000001", at: dt.datetime = NOW,
         cmd: str = "authorize") -> SeenCommand:
    """A command as the log sees it on the command topic."""
    command = build_command(KEY, cmd, ap, MAC, 86400 if cmd == "authorize" else 0,
                            now=int(at.timestamp()), nonce=nonce)
    return SeenCommand(ap, command)


def answer(nonce: str = "0000000000000001", ok: bool = True, error: str = "",
           ap: str = "ap-1", at: dt.datetime = NOW) -> SeenAck:
    """An agent's answer as the log sees it."""
    return SeenAck(ap, CommandAck(nonce, ok, error), at)


def rows(factory: sessionmaker[Session]) -> dict[str, ApCommandRecord]:
    """The log's rows by nonce."""
    with factory() as session:
        return {row.nonce: row for row in session.scalars(select(ApCommandRecord))}


def alerts(factory: sessionmaker[Session]) -> list[Alert]:
    """Alerts of AP commands refused."""
    with factory() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == "ap_command_refused")))


def test_a_command_and_its_answer_settle_one_row(session_factory: sessionmaker[Session]) -> None:
    """sent -> done, the MAC kept only as its pseudonym; the answer redelivered changes nothing."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    assert log.record([sent()]).commands == 1
    row = rows(session_factory)["0000000000000001"]
    assert (row.state, row.cmd, row.ap_id) == ("sent", "authorize", "ap-1")
    assert row.mac_pseudonym == pseudonymize_mac(MAC, PSEUDONYM_KEY) and MAC not in str(vars(row))
    assert row.expires_at == NOW + dt.timedelta(seconds=300)
    later = NOW + dt.timedelta(seconds=2)
    assert log.record([answer(at=later)]).acks == 1
    assert log.record([answer(ok=False, error="expired", at=later)]).acks == 0  # redelivered
    row = rows(session_factory)["0000000000000001"]
    assert (row.state, row.error, row.settled_at) == ("done", "", later)


def test_configuration_refusals_open_one_alert_per_ap_and_reason(
        session_factory: sessionmaker[Session]) -> None:
    """bad_signature twice on one AP: one alert counting 2; an expired command: no alert."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    log.record([sent(nonce="000000000000000a"), sent(nonce="000000000000000b"),
                sent(nonce="000000000000000c"), sent(ap="ap-2", nonce="000000000000000d")])
    summary = log.record([answer("000000000000000a", False, "bad_signature"),
                          answer("000000000000000b", False, "bad_signature"),
                          answer("000000000000000c", False, "expired"),
                          answer("000000000000000d", False, "bad_signature", ap="ap-2")])
    assert summary.alerts == 2
    found = {(a.payload["ap"], a.payload["reason"]): a.payload["count"]
             for a in alerts(session_factory)}
    assert found == {("ap-1", "bad_signature"): 2, ("ap-2", "bad_signature"): 1}
    assert rows(session_factory)["000000000000000c"].state == "refused"


def test_silence_becomes_no_ack_and_a_late_answer_still_counts(
        session_factory: sessionmaker[Session]) -> None:
    """No answer by expiry + grace: no_ack; an answer after that settles it as done (late)."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    log.record([sent(nonce="00000000000000a1"), sent(nonce="00000000000000a2")])
    log.record([answer("00000000000000a2")])
    assert log.sweep(NOW + dt.timedelta(seconds=300 + 59), retention_days=90).no_ack == 0
    assert log.sweep(NOW + dt.timedelta(seconds=300 + 61), retention_days=90).no_ack == 1
    assert rows(session_factory)["00000000000000a1"].state == "no_ack"
    assert log.record([answer("00000000000000a1")]).late_acks == 1
    assert rows(session_factory)["00000000000000a1"].state == "done"


def test_an_answer_before_its_command_is_kept_and_completed(
        session_factory: sessionmaker[Session]) -> None:
    """Order across topics is not guaranteed: the answer opens the row, the command fills it."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    assert log.record([answer("00000000000000b1")]).unmatched_acks == 1
    log.record([sent(nonce="00000000000000b1")])
    row = rows(session_factory)["00000000000000b1"]
    assert (row.state, row.cmd, row.issued_at) == ("done", "authorize", NOW)


def test_an_answer_from_another_aps_topic_settles_nothing(
        session_factory: sessionmaker[Session]) -> None:
    """The attack: ap-evil answers ap-1's command on its own ack topic, claiming it failed
    (bad_signature), before and after the command is seen. Neither settles the command; the
    real answer does; each forged answer opens (or counts into) an alert against ap-evil."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    log.record([sent(nonce="00000000000000c1")])
    forged = log.record([answer("00000000000000c1", False, "bad_signature", ap="ap-evil")])
    assert (forged.acks, forged.foreign_acks) == (0, 1)
    assert rows(session_factory)["00000000000000c1"].state == "sent"
    assert log.record([answer("00000000000000c1")]).acks == 1
    # Before its command: the forged answer opens the row, the command takes it back.
    log.record([answer("00000000000000c2", ap="ap-evil")])
    assert log.record([sent(nonce="00000000000000c2")]).foreign_acks == 1
    row = rows(session_factory)["00000000000000c2"]
    assert (row.ap_id, row.state, row.settled_at) == ("ap-1", "sent", None)
    assert rows(session_factory)["00000000000000c1"].state == "done"
    assert [(a.payload["ap"], a.payload["reason"], a.payload["count"])
            for a in alerts(session_factory)] == [("ap-evil", "foreign_ack", 2)]


def test_only_the_first_answer_counts(session_factory: sessionmaker[Session]) -> None:
    """A second answer (a replayed 'ok' after a refusal, or the other way) changes nothing."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    log.record([sent(nonce="00000000000000d1"), sent(nonce="00000000000000d2")])
    log.record([answer("00000000000000d1", False, "expired"), answer("00000000000000d2")])
    second = log.record([answer("00000000000000d1"),
                         answer("00000000000000d2", False, "ndsctl_failed")])
    assert second.acks == 0
    settled = rows(session_factory)
    assert (settled["00000000000000d1"].state, settled["00000000000000d1"].error) == (
        "refused", "expired")
    assert (settled["00000000000000d2"].state, settled["00000000000000d2"].error) == ("done", "")


def test_rows_past_retention_are_purged_and_the_summary_ranks_failing_aps(
        session_factory: sessionmaker[Session]) -> None:
    """Old rows go; per AP: counts by state and reason, the most failing AP first."""
    log = CommandLog(session_factory, PSEUDONYM_KEY)
    old = NOW - dt.timedelta(days=91)
    log.record([sent(nonce="00000000000000c1", at=old),
                sent(nonce="00000000000000c2"), sent(nonce="00000000000000c3"),
                sent(ap="ap-2", nonce="00000000000000c4")])
    log.record([answer("00000000000000c2"),
                answer("00000000000000c4", False, "wrong_ap", ap="ap-2")])
    assert log.sweep(NOW + dt.timedelta(minutes=30), retention_days=90).purged == 1
    assert "00000000000000c1" not in rows(session_factory)
    report = log.per_ap(NOW - dt.timedelta(hours=1))
    assert [entry["ap"] for entry in report] == ["ap-2", "ap-1"]
    assert report[0]["errors"] == {"wrong_ap": 1} and report[0]["failed_share"] == 1.0
    assert (report[1]["done"], report[1]["no_ack"], report[1]["commands"]) == (1, 1, 2)


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "bad_json"),
    (b"[]", "bad_json"),
    (b'{"v":2,"nonce":"0000000000000001","ok":true,"error":""}', "bad_version"),
    (b'{"v":1,"nonce":"XYZ","ok":true,"error":""}', "bad_field"),
    (b'{"v":1,"nonce":"0000000000000001","ok":"yes","error":""}', "bad_field"),
    (b'{"v":1,"nonce":"0000000000000001","ok":false,"error":"<script>"}', "bad_field"),
    (b'{"v":1,"nonce":"0000000000000001","ok":true,"error":"expired"}', "bad_field"),
])
def test_malformed_answers_are_refused_by_reason(payload: bytes, reason: str) -> None:
    """An ack must be the contract's shape; the error is a short word."""
    with pytest.raises(CommandError) as raised:
        parse_ack(payload)
    assert raised.value.reason == reason


def test_topics_are_told_apart_and_a_command_on_another_aps_topic_is_refused() -> None:
    """.../cmd is a command, .../cmd/ack an answer; anything else is bad_topic."""
    reader = TopicReader("site")
    command = sent().command
    assert isinstance(reader.read("site/v1/ap/ap-1/cmd", command.to_json(), NOW), SeenCommand)
    seen = reader.read("site/v1/ap/ap-1/cmd/ack", encode_ack(command.nonce, True), NOW)
    assert isinstance(seen, SeenAck) and seen.ap_id == "ap-1" and seen.ack.ok
    with pytest.raises(CommandError, match="wrong_ap"):
        reader.read("site/v1/ap/ap-2/cmd", command.to_json(), NOW)
    with pytest.raises(CommandError, match="bad_topic"):
        reader.read("site/v1/ap/ap-1/status", b"{}", NOW)


def test_the_service_records_what_was_sent_while_it_was_down(
        settings: Settings, sqlite_session_factory: sessionmaker[Session]) -> None:
    """Real broker: commands answered by an agent (one with the wrong key) while the log is
    stopped are all recorded when it starts again (its persistent session kept them)."""
    client_id = f"test-cmdlog-{uuid.uuid4().hex[:8]}"
    service = CommandLogService(settings, client_id, session_factory=sqlite_session_factory,
                                flush_interval_s=0.1)
    service.run(exit_when_idle_s=0.3)  # opens the session and subscribes, then stops
    # The agents: ap-good holds the key the commands are signed with, ap-miskeyed another.
    agents = SimulatedAgents(settings, {"ap-good": KEY, "ap-miskeyed": "other-key-" * 4}.get)
    agents.start()
    publisher = MqttClient(settings)
    publisher.connect()
    prefix = settings.mqtt_topic_prefix
    for index in range(5):
        for ap_id in ("ap-good", "ap-miskeyed"):
            command = build_command(KEY, "authorize", ap_id, MAC, 3600,
                                    nonce=f"{index:015x}{0 if ap_id == 'ap-good' else 1}")
            publisher.publish(command_topic(prefix, ap_id), command.to_json())
    publisher.publish(ack_topic(prefix, "ap-good"), b"not json")
    publisher.disconnect()
    assert agents.wait_for_answers(10, timeout=20)
    agents.stop()
    assert agents.answers == {"ok": 5, "bad_signature": 5}
    assert set(agents.authorized) == {"ap-good"} and MAC in agents.authorized["ap-good"]
    try:
        totals = CommandLogService(settings, client_id, session_factory=sqlite_session_factory,
                                   flush_interval_s=0.1).run(exit_when_idle_s=1.0)
    finally:
        ending = MqttClient(settings, client_id)  # a clean start ends the persistent session
        ending.connect()
        ending.disconnect()
    assert (totals.commands, totals.acks, totals.malformed["bad_json"]) == (10, 10, 1)
    states = {(row.ap_id, row.state, row.error) for row in rows(sqlite_session_factory).values()}
    assert states == {("ap-good", "done", ""), ("ap-miskeyed", "refused", "bad_signature")}
    assert [(a.payload["ap"], a.payload["count"]) for a in alerts(sqlite_session_factory)] == [
        ("ap-miskeyed", 5)]


def test_nothing_is_acknowledged_while_the_database_refuses_writes(
        settings: Settings, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Real broker, real SQLite held under an exclusive lock by another connection: the log
    retries without acknowledging; stopped meanwhile, its next run gets the command again."""
    engine = create_engine(f"sqlite:///{tmp_path / 'locked.sqlite3'}",
                           connect_args={"timeout": 0.3})
    upgrade(engine)
    factory = make_session_factory(engine)
    client_id = f"test-cmdlog-{uuid.uuid4().hex[:8]}"
    first = CommandLogService(settings, client_id, session_factory=factory,
                              flush_interval_s=0.1)
    worker = threading.Thread(target=first.run, daemon=True)
    worker.start()
    assert first.subscribed.wait(10)
    lock = sqlite3.connect(tmp_path / "locked.sqlite3", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        publisher = MqttClient(settings)
        publisher.connect()
        command = build_command(KEY, "authorize", "ap-1", MAC, 60, nonce="00000000000000e1")
        publisher.publish(command_topic(settings.mqtt_topic_prefix, "ap-1"), command.to_json())
        publisher.disconnect()
        deadline = time.monotonic() + 10
        while "registry database unavailable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "registry database unavailable" in caplog.text
        first.request_stop()
        worker.join(20)
        assert not worker.is_alive() and first.totals.commands == 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    try:
        second = CommandLogService(settings, client_id, session_factory=factory,
                                   flush_interval_s=0.1).run(exit_when_idle_s=1.0)
    finally:
        ending = MqttClient(settings, client_id)
        ending.connect()
        ending.disconnect()
    assert second.commands == 1
    assert rows(factory)["00000000000000e1"].state == "sent"
