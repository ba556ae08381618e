"""Retention per data class: delete what has been kept as long as its setting allows.

One function, ``run_retention``, enforces every class (docs/privacy.md lists them with their
legal reasons): the registry's tables (sign-ins, the AP command log, devices, residents after
move-out, audit, alerts, cases), InfluxDB's raw presence and roll-ups, and the collector's dead
letters in Redis. Each class is deleted in its own transaction and reported on its own, so one
failing class (InfluxDB down) does not keep the others; the run itself leaves an audit entry
with what it deleted per class.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Delete, and_, delete, exists, func, or_
from sqlalchemy.orm import Session, sessionmaker

from census.channels import RedisKeys
from census.settings import Settings
from registry.db import session_scope
from registry.models import (
    Alert,
    ApCommandRecord,
    AuditEntry,
    Case,
    CaseStatus,
    Device,
    Inspection,
    Resident,
    SignIn,
    Verification,
)
from timeseries import StoreError, TimeSeriesStore
from timeseries.schema import MEASUREMENT_DAILY, MEASUREMENT_DAILY_STATE, MEASUREMENT_PRESENCE

LOGGER = logging.getLogger(__name__)

# Data classes in the order they are enforced; the setting that bounds each.
CLASSES: dict[str, str] = {
    "cases": "retention_cases_days",
    "alerts": "retention_alerts_days",
    "residents": "retention_residents_days",
    "devices": "retention_devices_days",
    "signins": "retention_network_log_days",
    "ap_commands": "retention_ap_commands_days",
    "audit": "retention_audit_days",
    "raw_presence": "retention_days",
    "rollups": "retention_rollup_days",
    "dead_letters": "retention_days",
}


@dataclass
class RetentionReport:
    """What one run deleted per class, the cutoff it used, and the classes that failed."""

    at: dt.datetime
    cutoffs: dict[str, dt.datetime] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (CLI --json, the audit entry)."""
        return {name: {"days_kept": (self.at - self.cutoffs[name]).days,
                       "before": self.cutoffs[name].isoformat(),
                       "deleted": self.deleted.get(name),
                       **({"error": self.errors[name]} if name in self.errors else {})}
                for name in self.cutoffs}


def _rows(session: Session, statement: Delete) -> int:
    """Run a bulk DELETE and return how many rows it took."""
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def _registry_deletes(cutoff: dt.datetime, name: str) -> list[Delete]:
    """The DELETE statements of one registry class for a cutoff."""
    if name == "cases":
        # Case steps go with their case (ON DELETE CASCADE); on-site findings by their age.
        return [delete(Case).where(Case.status == CaseStatus.CLOSED, Case.closed_at < cutoff),
                delete(Inspection).where(Inspection.at < cutoff)]
    if name == "alerts":
        return [delete(Alert).where(Alert.acknowledged_at < cutoff)]
    if name == "residents":
        recent_signin = exists().where(SignIn.resident_id == Resident.id, SignIn.at >= cutoff)
        return [delete(Resident).where(or_(
            Resident.move_out < cutoff.date(),
            # Self-declared: nobody vouched for them; kept while they keep signing in.
            and_(Resident.verification == Verification.SELF_DECLARED,
                 Resident.created_at < cutoff, ~recent_signin),
        ))]
    if name == "devices":
        return [delete(Device).where(or_(
            Device.revoked_at < cutoff,
            and_(Device.revoked_at.is_(None),
                 func.coalesce(Device.last_seen_at, Device.bound_at) < cutoff),
        ))]
    if name == "signins":
        return [delete(SignIn).where(SignIn.at < cutoff)]
    if name == "ap_commands":
        return [delete(ApCommandRecord).where(or_(
            ApCommandRecord.issued_at < cutoff,
            and_(ApCommandRecord.issued_at.is_(None), ApCommandRecord.settled_at < cutoff),
        ))]
    if name == "audit":
        return [delete(AuditEntry).where(AuditEntry.at < cutoff)]
    raise KeyError(name)


def run_retention(settings: Settings, session_factory: sessionmaker[Session],
                  store: TimeSeriesStore | None, redis_client: redis.Redis | None,
                  now: dt.datetime | None = None, actor: str = "retention") -> RetentionReport:
    """Delete every class's data older than its setting; log and audit what went."""
    report = RetentionReport(at=now or dt.datetime.now(dt.UTC))
    for name, setting in CLASSES.items():
        cutoff = report.at - dt.timedelta(days=int(getattr(settings, setting)))
        report.cutoffs[name] = cutoff
        try:
            report.deleted[name] = _enforce(name, cutoff, settings, session_factory, store,
                                            redis_client)
        except (StoreError, redis.RedisError, OSError) as error:
            report.errors[name] = str(error)[:300]
            LOGGER.error("retention %s: not enforced this run: %s", name, error)
            continue
        LOGGER.info("retention %s: deleted %d older than %s (%s days)", name,
                    report.deleted[name], cutoff.isoformat(), getattr(settings, setting))
    with session_scope(session_factory) as session:
        session.add(AuditEntry(actor=actor, action="retention_run", subject="",
                               detail=report.as_dict()))
    return report


def _enforce(name: str, cutoff: dt.datetime, settings: Settings,
             session_factory: sessionmaker[Session], store: TimeSeriesStore | None,
             redis_client: redis.Redis | None) -> int:
    """Delete one class; the number of rows, points or entries it took."""
    before_ns = int(cutoff.timestamp() * 1_000_000_000)
    influx: dict[str, tuple[tuple[str, str], ...]] = {
        "raw_presence": ((MEASUREMENT_PRESENCE, "device"),),
        "rollups": ((MEASUREMENT_DAILY, "device"), (MEASUREMENT_DAILY_STATE, "rows")),
    }
    if name in influx:
        if store is None:
            raise OSError("no InfluxDB store given")
        total = 0
        for measurement, counted in influx[name]:
            total += store.count_before(measurement, counted, before_ns)
            store.delete_before(measurement, before_ns)
        return total
    if name == "dead_letters":
        if redis_client is None:
            raise OSError("no Redis client given")
        key = RedisKeys(settings.redis_key_prefix).deadletter()
        # Stream ids are milliseconds: everything below the cutoff's goes (exactly, not ~).
        return int(redis_client.xtrim(key, minid=str(before_ns // 1_000_000),
                                      approximate=False))
    with session_scope(session_factory) as session:
        return sum(_rows(session, statement) for statement in _registry_deletes(cutoff, name))

