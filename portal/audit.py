"""The audit log: who signed in, and which staff member looked at or changed whose data."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.models import AuditEntry


def record(session: Session, actor: str, action: str, subject: str = "",
           detail: dict[str, Any] | None = None, client_ip: str = "") -> AuditEntry:
    """Add one audit entry to the session's transaction (it commits with the change it logs)."""
    entry = AuditEntry(actor=actor[:64], action=action[:64], subject=subject[:200],
                       detail=detail or {}, client_ip=client_ip[:64])
    session.add(entry)
    return entry
