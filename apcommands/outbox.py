"""The AP command outbox: a command is written with the change that causes it, then sent until
the broker has it.

``enqueue`` inserts a row of ``ap_command_outbox`` in the caller's transaction (a sign-in, a
revoked binding), so a command exists exactly when its cause was committed. ``CommandOutbox``
sends rows: the request that wrote one sends it at once (``send``, from the row it holds in
memory: the registry may be gone a moment after the commit, and the resident who is signed in
should be let through all the same); a drain thread in every
portal process (``start``) sends whatever is due, so what a worker killed before the broker's
PUBACK left behind goes out after the restart. A row is deleted once the broker has
acknowledged it (QoS 1); a failed send is tried again with a doubling back-off.

Every send is signed afresh (new nonce, issued now, expiring ``DEFAULT_COMMAND_TTL_S`` later):
a row sent twice (the broker's PUBACK arrived, the worker died before the delete) reaches the
AP as two valid commands, both harmless (authorize and deauthorize are idempotent), and a
command never goes out already expired. An authorize carries what is left of the session the
resident signed in for, and is dropped (and logged) once nothing is left: the resident is long
gone from the captive page or has signed in again. A deauthorize (move-out, erasure, a ban) is
never dropped for its age: it is sent until the broker takes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from apcommands.sender import ApControl, CommandNotSent
from census.commands import ApCommand
from census.privacy import IdentityCipher
from registry.models import OutboxCommand

LOGGER = logging.getLogger(__name__)
OUTBOX = OutboxCommand.metadata.tables[OutboxCommand.__tablename__]
# The request that wrote a row sends it itself: the drain leaves it alone this long (more than
# a publish's timeout), then takes it over (the worker died, or its send failed).
HOLD_S = 15.0
DRAIN_INTERVAL_S = 1.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
MIN_SESSION_LEFT_S = 60  # an authorize for less than this is not worth letting anyone in for
DRAIN_BATCH = 200


class _Dropped(CommandNotSent):
    """An authorize whose session ended before it could be sent."""


def _utc(value: dt.datetime) -> dt.datetime:
    """A stored time as aware UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def enqueue(connection: Connection | Session, cipher: IdentityCipher, cmd: str, ap_id: str,
            mac: str, session_seconds: int, now: dt.datetime) -> OutboxCommand:
    """Write one command into the outbox, in the caller's transaction; the row as written
    (detached: for the caller to ``send`` after its commit without reading it back)."""
    values = {
        "created_at": now, "cmd": cmd, "ap_id": ap_id, "mac_encrypted": cipher.encrypt(mac),
        "session_seconds": session_seconds, "attempts": 0,
        "next_attempt_at": now + dt.timedelta(seconds=HOLD_S), "last_error": "",
    }
    row_id = connection.execute(insert(OUTBOX).returning(OUTBOX.c.id), values).scalar_one()
    return OutboxCommand(id=int(row_id), **values)


@dataclass
class DrainReport:
    """What one pass of the drain did."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


class CommandOutbox:
    """Sends the outbox's commands: the request's own, and every due one from a drain thread."""

    def __init__(self, factory: sessionmaker[Session], cipher: IdentityCipher,
                 control: ApControl,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 interval_s: float = DRAIN_INTERVAL_S) -> None:
        self._factory = factory
        self._cipher = cipher
        self._control = control
        self._clock = clock
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, row: OutboxCommand) -> ApCommand:
        """Send a row now (the request that wrote it, once committed): the command; raise
        CommandNotSent, leaving it due. The registry is not read: a registry lost since the
        commit leaves only the delete undone, and the drain's later re-send is harmless. (A
        drain that took the row over after its hold has sent it too, equally harmlessly.)"""
        return self._deliver(row, self._clock())

    def drain(self) -> DrainReport:
        """Send every due row once (claimed first, so that two processes never both send it)."""
        report = DrainReport()
        now = self._clock()
        with self._factory() as db:
            due = db.scalars(select(OutboxCommand).where(OutboxCommand.next_attempt_at <= now)
                             .order_by(OutboxCommand.id).limit(DRAIN_BATCH)).all()
            db.expunge_all()
        for row in due:
            if not self._claim(row, now):
                continue
            try:
                self._deliver(row, now)
            except _Dropped:
                report.dropped += 1
            except CommandNotSent:
                report.failed += 1
            else:
                report.sent += 1
        if due:
            LOGGER.info("outbox: %d sent, %d failed, %d dropped", report.sent, report.failed,
                        report.dropped)
        return report

    def _claim(self, row: OutboxCommand, now: dt.datetime) -> bool:
        """Take a due row for one send: move its next attempt on, if nobody did meanwhile."""
        lease = now + dt.timedelta(seconds=HOLD_S)
        with self._factory.begin() as db:
            taken = db.execute(update(OUTBOX).where(
                OUTBOX.c.id == row.id, OUTBOX.c.next_attempt_at <= now)
                .values(next_attempt_at=lease))
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    def _deliver(self, row: OutboxCommand, now: dt.datetime) -> ApCommand:
        """Sign, publish and wait for the PUBACK, then delete the row; or note the failure."""
        seconds = 0
        if row.cmd == "authorize":
            seconds = row.session_seconds - int((now - _utc(row.created_at)).total_seconds())
            if seconds < MIN_SESSION_LEFT_S:
                LOGGER.warning("outbox: authorize %s on %s dropped unsent: its session ended "
                               "(%d attempts, last error %s)", row.id, row.ap_id,
                               row.attempts, row.last_error or "none")
                self._delete(row.id)
                raise _Dropped(row.id)
        try:
            mac = self._cipher.decrypt(row.mac_encrypted)
        except ValueError as error:  # its key was dropped before a rotation reached it
            self._failed(row, now, str(error))
            LOGGER.error("outbox: %s %s for AP %s unreadable: %s", row.cmd, row.id, row.ap_id,
                         error)
            raise CommandNotSent(str(error)) from None
        try:
            command = self._control.send(row.cmd, row.ap_id, mac, seconds, now=now.timestamp())
        except CommandNotSent as error:
            self._failed(row, now, str(error))
            LOGGER.error("outbox: %s %s for AP %s not sent (attempt %d): %s", row.cmd, row.id,
                         row.ap_id, row.attempts + 1, error)
            raise
        self._delete(row.id)
        return command

    def _delete(self, row_id: int) -> None:
        """The broker has it: forget the row (a lost delete only means one harmless re-send)."""
        try:
            with self._factory.begin() as db:
                db.execute(delete(OUTBOX).where(OUTBOX.c.id == row_id))
        except SQLAlchemyError as error:
            LOGGER.warning("outbox: row %s sent but not deleted (%s): it will be sent again",
                           row_id, error)

    def _failed(self, row: OutboxCommand, now: dt.datetime, error: str) -> None:
        """Count a failed send and put the next one off, doubling each time."""
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(row.attempts, 16))
        try:
            with self._factory.begin() as db:
                db.execute(update(OUTBOX).where(OUTBOX.c.id == row.id).values(
                    attempts=OUTBOX.c.attempts + 1, last_error=error[:200],
                    next_attempt_at=now + dt.timedelta(seconds=delay)))
        except SQLAlchemyError as db_error:  # the row stays due as it was: tried again
            LOGGER.warning("outbox: failure of row %s not noted: %s", row.id, db_error)

    def start(self) -> None:
        """Drain in a background thread of this process until stop()."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ap-command-outbox",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The drain loop: every interval, and at once on start (a restart's first job)."""
        while not self._stop.is_set():
            try:
                self.drain()
            except SQLAlchemyError as error:  # the database away: the next pass tries again
                LOGGER.warning("outbox: drain failed, trying again: %s", error)
            except Exception:  # a bug: shown in full, and the thread keeps draining
                LOGGER.exception("outbox: drain failed")
            self._stop.wait(self._interval_s)

    def stop(self) -> None:
        """Stop the drain thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
