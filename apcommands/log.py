"""The AP command log: every signed command sent to an AP agent, and what became of it.

The portal signs ``authorize`` / ``deauthorize`` commands and publishes them (contracts, 4);
the agent on the AP answers each on ``{p}/v1/ap/{ap}/cmd/ack``. This service watches both
topics and keeps one row per command in ``ap_commands``: ``sent`` until an answer comes,
``done`` or ``refused`` (with the agent's reason word) when it does, ``no_ack`` when nothing
came by the command's expiry plus a grace period (agent offline, or the message lost).

It runs beside the portal rather than inside it, so a sign-in pays nothing for the log, and
with its own persistent MQTT session, so commands and answers published while it is down are
read when it returns. A message is acknowledged to the broker only after its row is committed;
rows are keyed by the command's nonce, so a redelivered message changes nothing. The inbox,
batching and acknowledge-after-commit are the shared consumer's (``census.consumer``).

Refusals that mean a configuration fault rather than a late delivery (a wrong signature key, a
command for another AP, a clock far off, a replay) raise a back-office alert, one open alert per
AP and reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from census.commands import ApCommand, CommandAck, CommandError, parse_ack, parse_command
from census.consumer import Abandon, AckingConsumer, ConsumerOptions
from census.mqtt import ReceivedMessage
from census.privacy import pseudonymize_mac
from census.settings import Settings
from registry.db import make_engine, make_session_factory, session_scope
from registry.models import Alert, ApCommandRecord

LOGGER = logging.getLogger(__name__)

STATE_SENT = "sent"
STATE_DONE = "done"
STATE_REFUSED = "refused"
STATE_NO_ACK = "no_ack"
# Reasons that mean the AP or the portal is misconfigured (or someone replays commands), not
# that a command arrived late: each opens a back-office alert.
ALERT_REASONS = frozenset({"bad_signature", "wrong_ap", "not_yet_valid", "replayed",
                           "bad_version", "bad_field", "bad_json"})
ALERT_KIND = "ap_command_refused"
# Alert reason for an AP answering another AP's command.
FOREIGN_ACK = "foreign_ack"
NO_ACK_GRACE_S = 60
RECEIVE_MAXIMUM = 1000  # the broker's in-flight window for the log's session
MAX_BATCH = 500  # messages per transaction


@dataclass(frozen=True, slots=True)
class SeenCommand:
    """A command read from an AP's command topic."""

    ap_id: str
    command: ApCommand


@dataclass(frozen=True, slots=True)
class SeenAck:
    """An acknowledgement read from an AP's ack topic."""

    ap_id: str
    ack: CommandAck
    at: dt.datetime


@dataclass
class LogSummary:
    """What one batch or sweep changed."""

    commands: int = 0
    acks: int = 0
    late_acks: int = 0  # answers to commands already marked no_ack
    unmatched_acks: int = 0  # answers whose command was not (yet) seen
    foreign_acks: int = 0  # answers on another AP's ack topic than the command's: ignored
    no_ack: int = 0
    purged: int = 0
    alerts: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


class CommandLog:
    """The ``ap_commands`` table: record commands and answers, sweep the silent, purge the old."""

    def __init__(self, session_factory: sessionmaker[Session], pseudonym_key: str) -> None:
        self._sessions = session_factory
        self._pseudonym_key = pseudonym_key

    def record(self, items: Iterable[SeenCommand | SeenAck]) -> LogSummary:
        """Record commands and answers in one transaction (idempotent by nonce)."""
        summary = LogSummary()
        items = list(items)
        if not items:
            return summary
        nonces = {item.command.nonce if isinstance(item, SeenCommand) else item.ack.nonce
                  for item in items}
        with session_scope(self._sessions) as session:
            rows = {row.nonce: row for row in session.scalars(
                select(ApCommandRecord).where(ApCommandRecord.nonce.in_(nonces)))}
            for item in items:
                if isinstance(item, SeenCommand):
                    self._record_command(session, rows, item, summary)
                    summary.commands += 1
                else:
                    self._record_ack(session, rows, item, summary)
        return summary

    def _record_command(self, session: Session, rows: dict[str, ApCommandRecord],
                        item: SeenCommand, summary: LogSummary) -> None:
        """A command: a new row in state sent, or the details of a row its answer opened."""
        command = item.command
        row = rows.get(command.nonce)
        if row is None:
            row = ApCommandRecord(nonce=command.nonce, ap_id=item.ap_id, state=STATE_SENT)
            session.add(row)
            rows[command.nonce] = row
        foreign = row.ap_id if row.ap_id != item.ap_id else None
        row.cmd = command.cmd
        # The command carries the raw MAC (the AP needs it); the log keeps only the pseudonym.
        row.mac_pseudonym = pseudonymize_mac(command.mac, self._pseudonym_key)
        row.issued_at = dt.datetime.fromtimestamp(command.issued, dt.UTC)
        row.expires_at = dt.datetime.fromtimestamp(command.expires, dt.UTC)
        if foreign is not None:
            # The row was opened by an answer from another AP, seen before the command: that
            # answer was not from the command's AP, so it settles nothing.
            LOGGER.warning("ignored an answer to %s's command %s from AP %s", item.ap_id,
                           command.nonce, foreign)
            summary.foreign_acks += 1
            summary.alerts += self._alert(session, foreign, FOREIGN_ACK, row)
            row.ap_id, row.state, row.error, row.settled_at = item.ap_id, STATE_SENT, "", None

    def _record_ack(self, session: Session, rows: dict[str, ApCommandRecord], item: SeenAck,
                    summary: LogSummary) -> None:
        """An answer: settle the command's row (opening it when the command was not seen)."""
        ack = item.ack
        row = rows.get(ack.nonce)
        if row is None:
            summary.unmatched_acks += 1
            row = ApCommandRecord(nonce=ack.nonce, ap_id=item.ap_id, state=STATE_SENT)
            session.add(row)
            rows[ack.nonce] = row
        elif row.ap_id != item.ap_id:
            # Only the AP the command was for may answer it (the broker's ACL should already
            # stop this: an AP publishing on another AP's ack topic is misconfigured or hostile).
            LOGGER.warning("ignored an answer to %s's command %s from AP %s", row.ap_id,
                           ack.nonce, item.ap_id)
            summary.foreign_acks += 1
            summary.alerts += self._alert(session, item.ap_id, FOREIGN_ACK, row)
            return
        elif row.state in (STATE_DONE, STATE_REFUSED):
            return  # the first answer stands: a redelivered or second one changes nothing
        elif row.state == STATE_NO_ACK:
            summary.late_acks += 1
        summary.acks += 1
        row.state = STATE_DONE if ack.ok else STATE_REFUSED
        row.error = ack.error
        row.settled_at = item.at
        if not ack.ok and ack.error in ALERT_REASONS:
            summary.alerts += self._alert(session, item.ap_id, ack.error, row)

    @staticmethod
    def _alert(session: Session, ap_id: str, reason: str, row: ApCommandRecord) -> int:
        """Open a back-office alert for an AP refusing commands, or count into the open one."""
        open_alerts = session.scalars(
            select(Alert).where(Alert.kind == ALERT_KIND, Alert.acknowledged_at.is_(None))
        ).all()
        for alert in open_alerts:
            if alert.payload.get("ap") == ap_id and alert.payload.get("reason") == reason:
                alert.payload = {**alert.payload, "count": int(alert.payload.get("count", 1)) + 1,
                                 "last_nonce": row.nonce}
                return 0
        session.add(Alert(kind=ALERT_KIND, payload={
            "ap": ap_id, "reason": reason, "count": 1, "cmd": row.cmd,
            "first_nonce": row.nonce, "last_nonce": row.nonce,
        }))
        LOGGER.warning("AP %s refuses commands: %s (back-office alert opened)", ap_id, reason)
        return 1

    def sweep(self, now: dt.datetime, retention_days: int,
              grace_s: int = NO_ACK_GRACE_S) -> LogSummary:
        """Mark commands unanswered past expiry + grace as no_ack; purge rows past retention."""
        summary = LogSummary()
        with session_scope(self._sessions) as session:
            silent = session.execute(
                update(ApCommandRecord)
                .where(ApCommandRecord.state == STATE_SENT,
                       ApCommandRecord.expires_at < now - dt.timedelta(seconds=grace_s))
                .values(state=STATE_NO_ACK, settled_at=now)
            )
            summary.no_ack = silent.rowcount or 0  # type: ignore[attr-defined]
            cutoff = now - dt.timedelta(days=retention_days)
            old = session.execute(
                delete(ApCommandRecord).where(or_(
                    ApCommandRecord.issued_at < cutoff,
                    and_(ApCommandRecord.issued_at.is_(None), ApCommandRecord.settled_at < cutoff),
                ))
            )
            summary.purged = old.rowcount or 0  # type: ignore[attr-defined]
        return summary

    def per_ap(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Commands issued since a time, counted per AP and state, worst first."""
        record = ApCommandRecord
        with self._sessions() as session:
            groups = session.execute(
                select(record.ap_id, record.state, record.error, func.count())
                .where(record.issued_at >= since)
                .group_by(record.ap_id, record.state, record.error)
            ).all()
        states: dict[str, Counter[str]] = {}
        errors: dict[str, Counter[str]] = {}
        for ap_id, state, error, count in groups:
            states.setdefault(ap_id, Counter())[state] += count
            if error:
                errors.setdefault(ap_id, Counter())[error] += count
        report: list[dict[str, Any]] = []
        for ap_id, counter in states.items():
            total = counter.total()
            failed = counter[STATE_REFUSED] + counter[STATE_NO_ACK]
            report.append({
                "ap": ap_id, "commands": total, "done": counter[STATE_DONE],
                "refused": counter[STATE_REFUSED], "no_ack": counter[STATE_NO_ACK],
                "waiting": counter[STATE_SENT],
                "errors": dict(sorted(errors.get(ap_id, Counter()).items())),
                "failed_share": round(failed / total, 3),
            })
        report.sort(key=lambda entry: (-float(entry["failed_share"]), -int(entry["commands"]),
                                       str(entry["ap"])))
        return report


class TopicReader:
    """Tells command and answer topics apart: ``{p}/v1/ap/{ap}/cmd`` and ``.../cmd/ack``."""

    def __init__(self, topic_prefix: str) -> None:
        self._head = f"{topic_prefix}/v1/ap/"

    def subscriptions(self) -> list[str]:
        """The topic filters the log needs."""
        return [f"{self._head}+/cmd", f"{self._head}+/cmd/ack"]

    def read(self, topic: str, payload: bytes,
             now: dt.datetime) -> SeenCommand | SeenAck:
        """The command or answer in a message; raise CommandError when it is malformed."""
        if not topic.startswith(self._head):
            raise CommandError("bad_topic", topic[:200])
        rest = topic[len(self._head):]
        if rest.endswith("/cmd/ack"):
            return SeenAck(rest[: -len("/cmd/ack")], parse_ack(payload), now)
        if rest.endswith("/cmd"):
            ap_id = rest[: -len("/cmd")]
            command = parse_command(payload)
            if command.ap != ap_id:
                raise CommandError("wrong_ap", f"command for {command.ap} on {ap_id}'s topic")
            return SeenCommand(ap_id, command)
        raise CommandError("bad_topic", topic[:200])


class CommandLogService:
    """Subscribe, record in batches, acknowledge after commit, sweep now and then.

    The inbox, back-pressure, batching and acknowledge-after-commit are the shared consumer's
    (``census.consumer``); this class says how a batch is recorded and when to sweep.
    """

    def __init__(self, settings: Settings, client_id: str, *,
                 session_factory: sessionmaker[Session] | None = None,
                 flush_interval_s: float = 0.5, sweep_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client_id = client_id
        if session_factory is None:
            session_factory = make_session_factory(make_engine(settings.database_url))
        self.log = CommandLog(session_factory, settings.pseudonym_key)
        self.reader = TopicReader(settings.mqtt_topic_prefix)
        self.totals = LogSummary()
        self._sweep_interval_s = sweep_interval_s
        self._next_sweep = 0.0
        self._clock = clock
        self._consumer: AckingConsumer[list[ReceivedMessage]] = AckingConsumer(
            settings,
            ConsumerOptions(client_id=client_id, subscriptions=self.reader.subscriptions(),
                            receive_maximum=RECEIVE_MAXIMUM, flush_interval_s=flush_interval_s,
                            name="command-log"),
            self)
        self.subscribed = threading.Event()  # set once both subscriptions are in place

    def request_stop(self) -> None:
        """Ask for a clean stop (safe from a signal handler)."""
        self._consumer.request_stop()

    def run(self, exit_when_idle_s: float | None = None) -> LogSummary:
        """Work until stopped (or idle for exit_when_idle_s), then flush and disconnect."""
        consumer = self._consumer
        consumer.start()
        self.subscribed.set()
        LOGGER.info("command log %s watching %s", self.client_id,
                    ", ".join(self.reader.subscriptions()))
        try:
            while not consumer.stopping.wait(0.05):
                idle = time.monotonic() - consumer.last_message
                if (exit_when_idle_s is not None and consumer.is_idle()
                        and idle >= exit_when_idle_s):
                    break
        finally:
            consumer.stop()
        return self.totals

    # --- the consumer's handler -----------------------------------------------------------------

    def open_batch(self) -> list[ReceivedMessage]:
        """A new, empty batch."""
        return []

    def add(self, batch: list[ReceivedMessage], message: ReceivedMessage) -> None:
        """Keep the message for the batch's transaction."""
        batch.append(message)

    def is_full(self, batch: list[ReceivedMessage], messages: int) -> bool:
        """At most MAX_BATCH messages per transaction."""
        return messages >= MAX_BATCH

    def tick(self) -> None:
        """Nothing to do between messages."""

    def commit(self, batch: list[ReceivedMessage]) -> None:
        """Record a batch (malformed messages are counted, dropped); retry until the database
        takes it, or leave it unacknowledged when stopped meanwhile."""
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        items: list[SeenCommand | SeenAck] = []
        malformed: Counter[str] = Counter()
        for message in batch:
            try:
                items.append(self.reader.read(message.topic, message.payload, now))
            except CommandError as error:
                malformed[error.reason] += 1
                LOGGER.warning("ignored a malformed message on %s: %s", message.topic[:200], error)
        while True:
            try:
                summary = self.log.record(items)
                break
            except SQLAlchemyError as error:
                # Nothing is acknowledged until it is recorded: wait for the database.
                LOGGER.error("registry database unavailable, retrying: %s", error)
                if self._consumer.stopping.wait(2.0):
                    raise Abandon from None  # the broker redelivers them to this session
        summary.malformed.update(malformed)
        self._add(summary)

    def committed(self, batch: list[ReceivedMessage], messages: int, started: float) -> None:
        """Nothing more to do once a batch is acknowledged."""

    def idle(self, final: bool) -> None:
        """Sweep when it is due (not on the way out)."""
        if final or time.monotonic() < self._next_sweep:
            return
        self._sweep()
        self._next_sweep = time.monotonic() + self._sweep_interval_s

    def _sweep(self) -> None:
        """Mark silent commands; purge past retention (skipped while the database is down)."""
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        try:
            summary = self.log.sweep(now, self.settings.retention_ap_commands_days)
        except SQLAlchemyError as error:
            LOGGER.error("sweep skipped, registry database unavailable: %s", error)
            return
        if summary.no_ack:
            LOGGER.warning("%d commands got no answer by their expiry", summary.no_ack)
        self._add(summary)

    def _add(self, summary: LogSummary) -> None:
        """Fold a batch's figures into the totals."""
        totals = self.totals
        for name in ("commands", "acks", "late_acks", "unmatched_acks", "foreign_acks", "no_ack",
                     "purged", "alerts"):
            setattr(totals, name, getattr(totals, name) + getattr(summary, name))
        totals.malformed.update(summary.malformed)
