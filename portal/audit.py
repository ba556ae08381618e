"""The audit log: who signed in, and which staff member looked at or changed whose data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from registry.models import AuditEntry

_INSERT = insert(AuditEntry.metadata.tables[AuditEntry.__tablename__])


def _values(actor: str, action: str, subject: str, detail: dict[str, Any] | None,
            client_ip: str) -> dict[str, Any]:
    """An entry's columns, cut to their lengths."""
    return {"actor": actor[:64], "action": action[:64], "subject": subject[:200],
            "detail": detail or {}, "client_ip": client_ip[:64]}


def record(session: Session, actor: str, action: str, subject: str = "",
           detail: dict[str, Any] | None = None, client_ip: str = "") -> AuditEntry:
    """Add one audit entry to the session's transaction (it commits with the change it logs)."""
    entry = AuditEntry(**_values(actor, action, subject, detail, client_ip))
    session.add(entry)
    return entry


def write(connection: Connection, actor: str, action: str, subject: str = "",
          detail: dict[str, Any] | None = None, client_ip: str = "") -> None:
    """The same entry as record(), inserted now in the connection's transaction (sign-ins:
    a Core insert costs a fraction of the ORM's unit of work)."""
    connection.execute(_INSERT, _values(actor, action, subject, detail, client_ip))
