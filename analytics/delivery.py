"""Delivery of flags: registry cases for the hazard workflow, MQTT alerts and the webhook.

A flag opens a case of kind ``overcrowding`` for its unit, or, when the unit already has an
open one, updates it (new evidence, tier raised if it rose, a case event saying the flag
persists): a persisting flag never opens a second case. A flag after the unit's case was closed
opens a new case linked to the old one (``previous_case_id``); after a person *dismissed* the
finding (PIPL art. 24), the same flag only adds a note to the dismissed case, and a new case
opens only when the tier rose above the one dismissed. Every flag is also recorded as a
registry alert and sent as the flag record (docs/contracts.md section 5) on
``{p}/v1/alerts/overcrowding`` (QoS 1, not retained) and, when configured, POSTed to the
webhook. Cases are written first and committed: a broker or webhook that is down loses no
flag, the run reports the failed sends and the cases still carry the evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig, Window
from analytics.flags import TIER_ORDER, FlagRecord, flag_record, flags_to_deliver
from analytics.loaders import records
from census.channels import alert_topic
from census.settings import Settings
from registry.case_flow import OPEN_STATUSES
from registry.casework import is_duplicate_open_case
from registry.db import session_scope
from registry.models import (
    Alert,
    AuditEntry,
    Case,
    CaseEvent,
    CaseStatus,
    RiskTier,
    Unit,
    UnitEstimate,
)

LOGGER = logging.getLogger(__name__)

CASE_KIND = "overcrowding"
ACTOR = "analytics"
# A run that lost a race for a unit's case reads again and updates it; each try can lose only
# to a run that committed meanwhile, so a few tries settle any number of concurrent runs.
OPEN_CASE_RACE_TRIES = 5


@dataclass
class DeliveryReport:
    """What delivery did."""

    cases_opened: int = 0
    cases_updated: int = 0
    cases_noted_unflagged: int = 0
    tiers_changed: int = 0
    mqtt_published: int = 0
    mqtt_failed: int = 0
    webhook_sent: int = 0
    webhook_failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON values."""
        return dict(self.__dict__)


def _note(record: FlagRecord) -> str:
    """A one-line human summary of a flag for the case history."""
    low, high = record.interval
    window = record.window.describe()
    return (f"{record.flag.replace('_', ' ')}: estimated {record.estimated:g} people "
            f"(90% {low:g}-{high:g}) against {record.registered} registered; "
            f"P(>= registered + 2) = {record.confidence:.2f}; "
            f"{record.nights_observed} nights observed, window {window['start']}"
            f"..{window['end']}")


def store_cases(factory: sessionmaker[Session], units: pd.DataFrame, window: Window,
                config: AnalyticsConfig, now: dt.datetime | None = None,
                ) -> tuple[list[FlagRecord], DeliveryReport]:
    """Open or update cases for flagged units, set every analysed unit's tier, record alerts.

    ``units`` is the tiered estimate frame (``flags.assign_tiers``); which of its flags are
    delivered is ``flags.flags_to_deliver``'s decision. Returns the flag records (with their
    case ids) of the flags to send, and the report so far.

    Another run committing a unit's case between this run's read and its insert trips the
    one-open-case index: the case is open already, so the whole (rolled back) transaction runs
    again and updates it, as a run after that one would.
    """
    now = now or dt.datetime.now(dt.UTC)
    for attempt in range(1, OPEN_CASE_RACE_TRIES + 1):
        try:
            return _store_cases_once(factory, units, window, config, now)
        except IntegrityError as error:
            if not is_duplicate_open_case(error) or attempt == OPEN_CASE_RACE_TRIES:
                raise
            LOGGER.info("another run opened a case meanwhile (try %d): storing again", attempt)
    raise AssertionError("unreachable")


def _store_cases_once(factory: sessionmaker[Session], units: pd.DataFrame, window: Window,
                      config: AnalyticsConfig, now: dt.datetime,
                      ) -> tuple[list[FlagRecord], DeliveryReport]:
    """store_cases in one transaction."""
    report = DeliveryReport()
    deliver = flags_to_deliver(units, config)
    flagged_refs = set(deliver["unit"])
    out: list[FlagRecord] = []
    with session_scope(factory) as session:
        by_ref = {u.ref: u for u in _units(session, list(units["unit"]))}
        open_cases = {c.unit_id: c for c in session.scalars(
            select(Case).where(Case.kind == CASE_KIND, Case.status.in_(list(OPEN_STATUSES)))
            .order_by(Case.opened_at))}
        unit_ids = [u.id for u in by_ref.values() if u.ref in flagged_refs]
        last_final = _last_final_cases(session, unit_ids)
        for row in records(units):
            unit = by_ref.get(row["unit"])
            if unit is None:
                continue
            tier = RiskTier(row["tier"])
            if unit.risk_tier != tier:
                unit.risk_tier = tier
                report.tiers_changed += 1
        for row in records(deliver):
            unit = by_ref.get(row["unit"])
            if unit is None:
                report.errors.append(f"unit {row['unit']} is no longer in the registry")
                continue
            case = open_cases.get(unit.id)
            record = flag_record(row, window, now)
            tier = RiskTier(row["tier"])
            previous = last_final.get(unit.id)
            if (case is None and previous is not None
                    and previous.status is CaseStatus.DISMISSED
                    and TIER_ORDER[tier.value] <= TIER_ORDER[previous.tier.value]):
                # A person looked at this finding and dismissed it: the same finding again
                # is noted on that case, not put before them as a new one.
                record = record.with_case(previous.id)
                note = "flag persists after dismissal: " + _note(record)
                last = session.scalar(select(CaseEvent).where(CaseEvent.case_id == previous.id)
                                      .order_by(CaseEvent.at.desc(), CaseEvent.id.desc()))
                if last is None or last.note != note:
                    session.add(CaseEvent(case_id=previous.id, at=now, actor=ACTOR,
                                          from_status=previous.status.value,
                                          to_status=previous.status.value, note=note))
                session.add(Alert(kind=CASE_KIND, at=now, unit_id=unit.id,
                                  payload=record.as_dict()))
                report.cases_updated += 1
                out.append(record)
                continue
            if case is None:
                case = Case(unit_id=unit.id, kind=CASE_KIND, status=CaseStatus.DISCOVERED,
                            tier=tier, evidence={}, opened_at=now, updated_at=now,
                            previous_case_id=previous.id if previous else None)
                session.add(case)
                session.flush()
                record = record.with_case(case.id)
                session.add(CaseEvent(case_id=case.id, at=now, actor=ACTOR, from_status="",
                                      to_status=CaseStatus.DISCOVERED.value,
                                      note="opened: " + _note(record)
                                      + (f" (follows case {previous.id})" if previous else "")))
                open_cases[unit.id] = case
                report.cases_opened += 1
            else:
                status = case.status.value
                if TIER_ORDER[tier.value] > TIER_ORDER[case.tier.value]:
                    case.tier = tier
                record = record.with_case(case.id)
                case.updated_at = now
                session.add(CaseEvent(case_id=case.id, at=now, actor=ACTOR, from_status=status,
                                      to_status=status, note="flag persists: " + _note(record)))
                report.cases_updated += 1
            case.evidence = record.as_dict()  # a new object, so the JSON column is written
            session.add(Alert(kind=CASE_KIND, at=now, unit_id=unit.id,
                              payload=record.as_dict()))
            session.add(AuditEntry(at=now, actor=ACTOR, action="flag_unit",
                                   subject=f"unit:{unit.ref}",
                                   detail={"case_id": case.id, "flag": row["flag"],
                                           "tier": row["tier"]}))
            out.append(record)
        # Open cases whose unit is no longer flagged: say so once per window, change nothing.
        analysed = {by_ref[r].id for r in units["unit"] if r in by_ref}
        note = (f"not flagged in window {window.describe()['start']}.."
                f"{window.describe()['end']}; left open for the hazard team to close")
        for unit_id, case in open_cases.items():
            if unit_id in analysed and case.unit.ref not in flagged_refs:
                last = session.scalar(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                      .order_by(CaseEvent.at.desc(), CaseEvent.id.desc()))
                if last is None or last.note != note:
                    session.add(CaseEvent(case_id=case.id, at=now, actor=ACTOR,
                                          from_status=case.status.value,
                                          to_status=case.status.value, note=note))
                    report.cases_noted_unflagged += 1
    return out, report


def _last_final_cases(session: Session, unit_ids: list[int], chunk: int = 5000
                      ) -> dict[int, Case]:
    """The most recent closed or dismissed overcrowding case of each unit."""
    found: dict[int, Case] = {}
    for i in range(0, len(unit_ids), chunk):
        for case in session.scalars(
                select(Case).where(Case.kind == CASE_KIND,
                                   Case.status.in_([CaseStatus.CLOSED, CaseStatus.DISMISSED]),
                                   Case.unit_id.in_(unit_ids[i:i + chunk]))
                .order_by(Case.opened_at, Case.id)):
            found[case.unit_id] = case  # later rows win: the newest
    return found


def _cells(row: pd.Series | None) -> list[float | None]:
    """A heatmap row as JSON values: NaN (no data) becomes None."""
    if row is None:
        return []
    return [None if pd.isna(v) else round(float(v), 3) for v in row.to_numpy()]


def _optional(value: Any) -> float | None:
    """A float, or None for a missing value."""
    return None if value is None or pd.isna(value) else float(value)


def store_estimates(factory: sessionmaker[Session], units: pd.DataFrame,
                    heatmaps: dict[str, pd.DataFrame],
                    hour_night: dict[str, str], window: Window,
                    now: dt.datetime | None = None, chunk: int = 2000) -> int:
    """Keep each analysed unit's latest estimate and presence heatmaps for the back office.

    One row per unit, replaced by every run that covers it; returns the rows written.
    """
    now = now or dt.datetime.now(dt.UTC)
    by_night = heatmaps.get("unit_by_night", pd.DataFrame())
    by_hour = heatmaps.get("unit_by_hour", pd.DataFrame())
    rows = records(units)
    written = 0
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        with session_scope(factory) as session:
            ids: dict[str, int] = {ref: unit_id for ref, unit_id in session.execute(
                select(Unit.ref, Unit.id).where(Unit.ref.in_([r["unit"] for r in part])))}
            existing = {e.unit_id: e for e in session.scalars(
                select(UnitEstimate).where(UnitEstimate.unit_id.in_(list(ids.values()))))}
            for row in part:
                unit_id = ids.get(row["unit"])
                if unit_id is None:
                    continue
                estimate = existing.get(unit_id) or UnitEstimate(unit_id=unit_id)
                ref = row["unit"]
                estimate.generated_at = now
                estimate.window_start = window.first_night
                estimate.window_end = window.days[-1]
                estimate.registered = int(row["registered"])
                estimate.estimated = float(row["estimated"])
                estimate.low, estimate.high = float(row["low"]), float(row["high"])
                estimate.confidence = round(float(row["p_plus_two"]), 4)
                estimate.confidence_plus_one = round(float(row["p_plus_one"]), 4)
                estimate.persistence = round(float(row["persistence"]), 3)
                estimate.nights_observed = int(row["nights_observed"])
                estimate.resident_devices = int(row["resident_devices"])
                estimate.people_detected = int(row["people_detected"])
                estimate.coverage = str(row["coverage"])
                estimate.zone = str(row.get("zone") or "")
                estimate.zone_units = int(row.get("zone_units") or 1)
                estimate.utility_ratio = _optional(row.get("utility_ratio"))
                estimate.utility_people = _optional(row.get("utility_people"))
                estimate.flag = str(row.get("flag") or "")
                estimate.tier = str(row.get("tier") or "normal")
                estimate.nights = _cells(by_night.loc[ref] if ref in by_night.index else None)
                estimate.hours = _cells(by_hour.loc[ref] if ref in by_hour.index else None)
                estimate.hour_night = hour_night.get(ref, "")
                if unit_id not in existing:
                    session.add(estimate)
                written += 1
    return written


def _units(session: Session, refs: list[str], chunk: int = 5000) -> Iterable[Unit]:
    """Units by reference, fetched in chunks (IN lists stay bounded)."""
    for i in range(0, len(refs), chunk):
        yield from session.scalars(select(Unit).where(Unit.ref.in_(refs[i:i + chunk])))


def publish_alerts(settings: Settings, flags: Sequence[FlagRecord], report: DeliveryReport,
                   client_factory: Callable[[Settings], Any] | None = None) -> None:
    """Publish every flag record on the overcrowding alerts topic (QoS 1, not retained)."""
    if not flags:
        return
    topic = alert_topic(settings.mqtt_topic_prefix, CASE_KIND)
    if client_factory is None:
        from census.mqtt import MqttClient

        def client_factory(s: Settings) -> Any:
            """A fresh client with a unique id (analytics holds no session)."""
            return MqttClient(s, client_id=f"analytics-{uuid.uuid4().hex[:12]}")

    try:
        client = client_factory(settings)
        client.connect()
    except Exception as error:  # broker down: the cases hold the flags; report, do not fail
        report.mqtt_failed += len(flags)
        report.errors.append(f"MQTT alerts not sent: {error}")
        LOGGER.error("cannot publish %d alerts: %s", len(flags), error)
        return
    try:
        for record in flags:
            try:
                client.publish(topic, json.dumps(record.as_dict(), ensure_ascii=False), qos=1,
                               retain=False)
                report.mqtt_published += 1
            except Exception as error:  # one refused publish must not stop the others
                report.mqtt_failed += 1
                report.errors.append(f"MQTT alert for {record.unit} not sent: {error}")
    finally:
        client.disconnect()


def post_webhook(url: str, flags: Sequence[FlagRecord], report: DeliveryReport,
                 config: AnalyticsConfig, session: requests.Session | None = None) -> None:
    """POST each flag record as JSON; retry transient failures, give up on 4xx."""
    if not url or not flags:
        return
    http = session or requests.Session()
    try:
        _post_all(http, url, flags, report, config)
    finally:
        if session is None:
            http.close()


def _post_all(http: requests.Session, url: str, flags: Sequence[FlagRecord],
              report: DeliveryReport, config: AnalyticsConfig) -> None:
    """POST each record with retries (see ``post_webhook``)."""
    for record in flags:
        delay = 0.5
        for attempt in range(1, config.webhook_retries + 1):
            permanent = False
            try:
                response = http.post(url, json=record.as_dict(),
                                     timeout=config.webhook_timeout_s)
            except requests.RequestException as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 300:
                    report.webhook_sent += 1
                    break
                problem = f"HTTP {response.status_code}"
                # The receiver refuses this record: sending it again would be refused again.
                permanent = 400 <= response.status_code < 500 and response.status_code != 429
            if permanent or attempt >= config.webhook_retries:
                report.webhook_failed += 1
                report.errors.append(f"webhook for {record.unit} failed: {problem}")
                LOGGER.warning("webhook %s failed for %s: %s", url, record.unit, problem)
                break
            time.sleep(delay)
            delay *= 2
