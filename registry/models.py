"""The registry's tables: places, access points, residents, devices, utilities, staff, cases.

SQLAlchemy 2 typed models. The schema is created and changed only through Alembic migrations
(registry/migrations); ``tests/registry/test_migrations.py`` checks that the migrations and
these models agree.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
)
from sqlalchemy.types import TypeDecorator

# Explicit constraint names, so that migrations are the same on SQLite and PostgreSQL and
# batch alterations on SQLite can find constraints by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A DateTime column that takes and returns timezone-aware UTC on every database.

    SQLite keeps no time zone, so values come back naive; they were written as UTC, so they are
    read as UTC. A naive value written by mistake is refused rather than guessed at.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=timezone)

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(enum_class: type[enum.Enum], name: str) -> Enum:
    """A portable enum column stored as its values (VARCHAR + CHECK, not a native type)."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Coverage(enum.StrEnum):
    """What an access point covers."""

    UNIT = "unit"
    FLOOR = "floor"
    BUILDING = "building"


class IdType(enum.StrEnum):
    """Kinds of identity document."""

    RESIDENT_ID_CARD = "resident_id_card"
    PASSPORT = "passport"
    HK_MACAO_PERMIT = "hk_macao_permit"
    TAIWAN_PERMIT = "taiwan_permit"
    FOREIGN_PERMANENT_ID = "foreign_permanent_id"
    OTHER = "other"


class Verification(enum.StrEnum):
    """How a resident's identity is known."""

    REGISTERED = "registered"  # matched the unit's registry (imported or checked)
    SELF_DECLARED = "self_declared"  # signed in without a registry match; unverified


class UtilityKind(enum.StrEnum):
    """Metered utilities."""

    WATER = "water"
    ELECTRICITY = "electricity"
    GAS = "gas"
    HEAT = "heat"


class Role(enum.StrEnum):
    """Staff roles (what a person may do; where is their community scope)."""

    ADMIN = "admin"  # manages staff; every action
    SUPERVISOR = "supervisor"  # reviews, dispatches, approves requests, verifies and closes
    HAZARD_TEAM = "hazard_team"  # reviews findings, handles cases assigned to the team member
    GRID_WORKER = "grid_worker"  # handles cases on site, feeds back
    VIEWER = "viewer"  # reads only


class RiskTier(enum.StrEnum):
    """A unit's risk tier (重点户 / 关注户 / 普通户)."""

    KEY = "key"
    ATTENTION = "attention"
    NORMAL = "normal"


class CaseStatus(enum.StrEnum):
    """The closed loop (受理 立案 派遣 处置 反馈 核查 结案): registry/case_flow.py."""

    DISCOVERED = "discovered"  # found by analytics, an inspection or the watchlist
    REVIEWED = "reviewed"  # a person confirmed the finding (PIPL art. 24): 立案
    ASSIGNED = "assigned"  # dispatched to a person with a due date: 派遣, the clock starts
    HANDLING = "handling"  # the assignee is on it: 处置
    FEEDBACK = "feedback"  # the assignee said what was done: 反馈
    VERIFIED = "verified"  # a supervisor's re-check passed: 核查
    CLOSED = "closed"  # 结案
    DISMISSED = "dismissed"  # the reviewer found nothing to act on (with a reason)
    PARKED = "parked"  # a known open problem, with a supervisor's approval: 挂账


FINAL_CASE_STATUSES = (CaseStatus.CLOSED, CaseStatus.DISMISSED)
ONE_OPEN_CASE_KINDS = ("overcrowding", "watchlist")
ONE_OPEN_CASE_INDEX = "uq_cases_one_open_per_unit_kind"
# Every state before closed or dismissed is open (registry.case_flow.OPEN_STATUSES); written
# as "not final" so that a state added later is covered without a new migration.
ONE_OPEN_CASE_WHERE = (
    "status NOT IN (" + ", ".join(f"'{s.value}'" for s in FINAL_CASE_STATUSES) + ") "
    "AND kind IN (" + ", ".join(f"'{k}'" for k in ONE_OPEN_CASE_KINDS) + ")"
)


class CaseRequest(enum.StrEnum):
    """What an assignee may ask a supervisor for (none pending: empty)."""

    RETURN = "return"  # 回退: send the case back for dispatch, with a reason
    EXTEND = "extend"  # 延期: more days
    PARK = "park"  # 挂账


def new_qr_token() -> str:
    """An unguessable token for a unit's QR code."""
    return secrets.token_urlsafe(18)


class Community(Base):
    """A residential community (小区)."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")

    buildings: Mapped[list[Building]] = relationship(back_populates="community")


class Building(Base):
    """A building in a community."""

    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")

    community: Mapped[Community] = relationship(back_populates="buildings")
    units: Mapped[list[Unit]] = relationship(back_populates="building")


class Unit(Base):
    """A housing unit (户): where people are registered and counted."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("building_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    building_id: Mapped[int] = mapped_column(
        ForeignKey("buildings.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(100), unique=True)  # community/building/unit
    floor: Mapped[int] = mapped_column(Integer)
    room: Mapped[str] = mapped_column(String(64), default="")
    area_m2: Mapped[float] = mapped_column(Float)
    registered_occupants: Mapped[int] = mapped_column(Integer, default=0)
    is_rented: Mapped[bool] = mapped_column(Boolean, default=False)
    meter_group: Mapped[str] = mapped_column(String(64), default="")
    qr_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_qr_token)
    risk_tier: Mapped[RiskTier] = mapped_column(
        _enum(RiskTier, "risk_tier"), default=RiskTier.NORMAL
    )
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    building: Mapped[Building] = relationship(back_populates="units")
    residents: Mapped[list[Resident]] = relationship(back_populates="unit")


class AccessPoint(Base):
    """An access point (or sniffer) and what it covers."""

    __tablename__ = "access_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    ap_id: Mapped[str] = mapped_column(String(64), unique=True)
    building_id: Mapped[int] = mapped_column(
        ForeignKey("buildings.id", ondelete="CASCADE"), index=True
    )
    coverage: Mapped[Coverage] = mapped_column(_enum(Coverage, "coverage"))
    floor: Mapped[int | None] = mapped_column(Integer, nullable=True)
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="SET NULL"), nullable=True
    )
    ssid: Mapped[str] = mapped_column(String(32), default="")
    # Per-AP command-signing secret, encrypted like identity numbers; empty: the global key.
    secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The AP's MQTT password (user name = AP id), encrypted the same way: the broker keeps only
    # its hash, and `firmware render` needs the clear text for the AP. Empty: none issued.
    broker_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    broker_secret_issued_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True
    )
    # openNDS FAS: the gateway address (host:port) this AP's openNDS gives as gatewayaddress.
    # Empty: the AP does not hand over by FAS (only the signed redirect is accepted from it).
    fas_gateway: Mapped[str] = mapped_column(String(100), default="", server_default="")

    building: Mapped[Building] = relationship()
    unit: Mapped[Unit | None] = relationship()


class Resident(Base):
    """A person registered (or self-declared) as living in a unit."""

    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("id_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    # Name and phone are encrypted like the identity number and found by keyed digests
    # (census.privacy.IdentityCipher.person_columns): the database holds neither in clear.
    name_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    name_digest: Mapped[str] = mapped_column(String(64), index=True)
    id_type: Mapped[IdType] = mapped_column(_enum(IdType, "id_type"))
    id_number_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    id_digest: Mapped[str] = mapped_column(String(64))  # keyed blind index of (type, number)
    id_last4: Mapped[str] = mapped_column(String(4))  # for masked display without decrypting
    phone_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # E.164
    phone_digest: Mapped[str] = mapped_column(String(64), default="", index=True)  # "": none
    move_in: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    move_out: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    verification: Mapped[Verification] = mapped_column(
        _enum(Verification, "verification"), default=Verification.REGISTERED
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    unit: Mapped[Unit] = relationship(back_populates="residents")
    devices: Mapped[list[Device]] = relationship(back_populates="resident")


class Device(Base):
    """A device address bound to a resident by a portal sign-in."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("resident_id", "mac_pseudonym"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    mac_pseudonym: Mapped[str] = mapped_column(String(16), index=True)
    # The raw MAC is needed to send deauthorize commands to the AP; kept encrypted.
    mac_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    randomized: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str] = mapped_column(String(64), default="")
    ap_id: Mapped[str] = mapped_column(String(64), default="")  # where it was last authorized
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    resident: Mapped[Resident] = relationship(back_populates="devices")


class UtilityReading(Base):
    """A metered consumption for one unit, one utility, one period."""

    __tablename__ = "utility_readings"
    __table_args__ = (UniqueConstraint("unit_id", "kind", "period_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    kind: Mapped[UtilityKind] = mapped_column(_enum(UtilityKind, "utility_kind"))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[float] = mapped_column(Float)


class StaffUser(Base):
    """An administrator, hazard-team member or grid worker."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    # District-wide staff see every community; the others only those in staff_communities.
    district_wide: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Counted up by logout and by password, role or community changes; a staff session
    # stamped with an older value is refused (portal/staff_auth.py): all of them end at once.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    communities: Mapped[list[Community]] = relationship(secondary="staff_communities")


# Changes that must end a staff member's open sessions (their generation moves on).
SESSION_ENDING_CHANGES = ("password_hash", "role", "communities", "district_wide", "active")


@event.listens_for(Session, "before_flush")
def _end_sessions_on_staff_change(session: Session, _context: object, _instances: object
                                  ) -> None:
    """Whatever code changes a password, role, community or activation, the sessions end."""
    for obj in session.dirty:
        if not isinstance(obj, StaffUser):
            continue
        state = inspect(obj)
        if any(state.attrs[name].history.has_changes() for name in SESSION_ENDING_CHANGES):
            obj.session_generation = (obj.session_generation or 0) + 1


class StaffCommunity(Base):
    """One community a staff member works in (a person may have several)."""

    __tablename__ = "staff_communities"

    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Case(Base):
    """A hazard case (from an analytics flag or an inspection) through the closed loop."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_unit_kind_open", "unit_id", "kind", "status"),
        # One open case per unit and kind, held by the database (issue 12): two analytics runs
        # at once both found no open case and both inserted one. Only for the kinds opened by
        # machines per unit; an inspection opens its own case, so a unit may hold several.
        Index(ONE_OPEN_CASE_INDEX, "unit_id", "kind", unique=True,
              postgresql_where=text(ONE_OPEN_CASE_WHERE), sqlite_where=text(ONE_OPEN_CASE_WHERE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # overcrowding, watchlist, inspection, ...
    status: Mapped[CaseStatus] = mapped_column(
        _enum(CaseStatus, "case_status"), default=CaseStatus.DISCOVERED
    )
    tier: Mapped[RiskTier] = mapped_column(_enum(RiskTier, "case_tier"), default=RiskTier.ATTENTION)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    assigned_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The SLA clock: it starts at assignment; parking stops it (due moves on by the time parked).
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    parked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A request waiting for a supervisor (return, extend, park), who asked and why.
    pending: Mapped[str] = mapped_column(String(16), default="")
    pending_by: Mapped[str] = mapped_column(String(64), default="")
    pending_reason: Mapped[str] = mapped_column(Text, default="")
    pending_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The case this one follows: a unit flagged again after its case was closed.
    previous_case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True
    )

    unit: Mapped[Unit] = relationship()
    assignee: Mapped[StaffUser | None] = relationship()
    events: Mapped[list[CaseEvent]] = relationship(back_populates="case", order_by="CaseEvent.at")


class CaseEvent(Base):
    """One step of a case: who moved it, from what to what, and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))  # staff username, or "analytics"
    action: Mapped[str] = mapped_column(String(32), default="")  # case_flow.Action, or ""
    from_status: Mapped[str] = mapped_column(String(32), default="")
    to_status: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")

    case: Mapped[Case] = relationship(back_populates="events")


class Inspection(Base):
    """What a grid worker found on site (hazard categories, configurable; the district uses 46)."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    inspector_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), nullable=True
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    people_found: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Of the people found, how many are not registered for the unit (None: not checked).
    people_unregistered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hazards: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    # The case this inspection opened, if it opened one.
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True
    )

    photos: Mapped[list[InspectionPhoto]] = relationship(
        back_populates="inspection", order_by="InspectionPhoto.id")


class InspectionPhoto(Base):
    """An inspection photo: re-encoded, stored under the var dir, never in the web root."""

    __tablename__ = "inspection_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(200))  # relative to <var_dir>/photos
    media_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    inspection: Mapped[Inspection] = relationship(back_populates="photos")


class UnitEstimate(Base):
    """A unit's latest analytics estimate and its presence heatmaps (one row per unit).

    Written by every ``analytics run`` that covers the unit, read by the back office (unit file,
    building heatmap, overview). Heatmap cells are people-like devices; ``None`` in a cell means
    no data (the unit's APs reported nothing that night), which is not the same as 0 (nobody).
    """

    __tablename__ = "unit_estimates"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), unique=True
    )
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    window_start: Mapped[dt.date] = mapped_column(Date)  # first night
    window_end: Mapped[dt.date] = mapped_column(Date)  # last night
    registered: Mapped[int] = mapped_column(Integer)
    estimated: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)  # P(people >= registered + 2)
    confidence_plus_one: Mapped[float] = mapped_column(Float)
    persistence: Mapped[float] = mapped_column(Float, default=0.0)
    nights_observed: Mapped[int] = mapped_column(Integer)
    resident_devices: Mapped[int] = mapped_column(Integer)
    people_detected: Mapped[int] = mapped_column(Integer, default=0)
    coverage: Mapped[str] = mapped_column(String(16))  # unit_ap, zone, none
    zone: Mapped[str] = mapped_column(String(64), default="")  # the corridor AP of a zone
    zone_units: Mapped[int] = mapped_column(Integer, default=1)
    utility_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    utility_people: Mapped[float | None] = mapped_column(Float, nullable=True)
    flag: Mapped[str] = mapped_column(String(32), default="")
    tier: Mapped[str] = mapped_column(String(16), default="normal")
    nights: Mapped[list] = mapped_column(JSON, default=list)  # per window night; None: no data
    hours: Mapped[list] = mapped_column(JSON, default=list)  # mean per local hour 0..23
    # Nights x 24 hours from 06:00, one byte per cell in tenths of a device, 255 = no data,
    # base64 (analytics.heatmaps.pack_hour_night / unpack_hour_night): ~10^6 unit-nights fit.
    hour_night: Mapped[str] = mapped_column(Text, default="")

    unit: Mapped[Unit] = relationship()


class AuditEntry(Base):
    """Who looked at or changed whose personal data, and when (PIPL access log)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # staff username, "resident", "system"
    action: Mapped[str] = mapped_column(String(64))  # view_resident, sign_in, import, ...
    subject: Mapped[str] = mapped_column(String(200), default="")  # e.g. resident:42, unit:ref
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    client_ip: Mapped[str] = mapped_column(String(64), default="")


class WatchlistEntry(Base):
    """An identity whose sign-in raises an alert to the back office (matched by its digest)."""

    __tablename__ = "watchlist"
    __table_args__ = (UniqueConstraint("id_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    id_digest: Mapped[str] = mapped_column(String(64))
    # The identity itself, encrypted, so that `keys rotate --digest` can digest it under a new
    # key. Empty for an entry of a list imported before (migration 0011 fills in what the
    # residents and sign-ins hold): only importing the list again gives it back.
    id_type: Mapped[str] = mapped_column(String(32), default="")
    id_number_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Alert(Base):
    """An alert raised to the back office (watchlist sign-ins, overcrowding flags)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="SET NULL"), nullable=True
    )
    resident_id: Mapped[int | None] = mapped_column(
        ForeignKey("residents.id", ondelete="SET NULL"), nullable=True
    )
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    acknowledged_by: Mapped[str] = mapped_column(String(64), default="")
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The case this alert opened or joined (watchlist alerts: registry.casework).
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), nullable=True, index=True
    )


class ApCommandRecord(Base):
    """A signed command sent to an AP's agent and what became of it (the command log).

    Written by the command log service (``wifi-census ap-commands run``), which watches the
    command and acknowledgement topics: the portal's request path does not pay for it.
    """

    __tablename__ = "ap_commands"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(16), unique=True)
    ap_id: Mapped[str] = mapped_column(String(64), index=True)
    cmd: Mapped[str] = mapped_column(String(16), default="")  # empty until the command is seen
    mac_pseudonym: Mapped[str] = mapped_column(String(16), default="", index=True)
    issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # sent (no answer yet), done (the agent applied it), refused (error says why),
    # no_ack (nothing heard by expiry plus a grace period: agent offline or the message lost)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str] = mapped_column(String(32), default="")
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OutboxCommand(Base):
    """An AP command not yet held by the broker (the transactional outbox, issue 12).

    Written in the transaction of the change that causes it (a sign-in, a revoked binding), so
    a portal worker that dies before the broker answers loses nothing; ``apcommands.outbox``
    signs it afresh at each send and deletes the row once the broker has acknowledged it.
    """

    __tablename__ = "ap_command_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cmd: Mapped[str] = mapped_column(String(16))  # authorize or deauthorize
    ap_id: Mapped[str] = mapped_column(String(64))
    mac_encrypted: Mapped[bytes] = mapped_column(LargeBinary)  # the AP needs the address itself
    session_seconds: Mapped[int] = mapped_column(Integer, default=0)  # authorize: from created_at
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Not before: the request sending it itself, or the back-off after a failed send.
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                         index=True)
    last_error: Mapped[str] = mapped_column(String(200), default="")


class RegistryVersion(Base):
    """A single row counting registry changes, so caches (collector AP map) know to reload."""

    __tablename__ = "registry_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SignIn(Base):
    """One captive-portal sign-in: the declared identity, the device, the AP and the outcome."""

    __tablename__ = "portal_signins"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    ap_id: Mapped[str] = mapped_column(String(64))
    handshake: Mapped[str] = mapped_column(String(16))  # signed (this project's) or fas (openNDS)
    method: Mapped[str] = mapped_column(String(16))  # sms (full sign-in) or one_tap
    # registered, self_declared, unconfirmed (a resident with no phone on file), mismatch
    # (identity known, name/phone differ), visitor
    outcome: Mapped[str] = mapped_column(String(32), index=True)
    mac_pseudonym: Mapped[str] = mapped_column(String(16), index=True)
    randomized: Mapped[bool] = mapped_column(Boolean, default=False)
    resident_id: Mapped[int | None] = mapped_column(
        ForeignKey("residents.id", ondelete="SET NULL"), nullable=True, index=True
    )
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), nullable=True
    )
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="SET NULL"), nullable=True
    )
    # The identity as declared on the form (empty for one-tap sign-ins), all of it encrypted
    # with keyed digests, as in residents.
    name_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    name_digest: Mapped[str] = mapped_column(String(64), default="")
    id_type: Mapped[str] = mapped_column(String(32), default="")
    id_number_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    id_digest: Mapped[str] = mapped_column(String(64), default="", index=True)
    id_last4: Mapped[str] = mapped_column(String(4), default="")
    phone_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    phone_digest: Mapped[str] = mapped_column(String(64), default="")
    watchlist_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_version: Mapped[str] = mapped_column(String(32), default="")
    locale: Mapped[str] = mapped_column(String(8), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    device_label: Mapped[str] = mapped_column(String(64), default="")
    # A new randomized address that replaced an older one of the same phone (address linking).
    rebound_from_device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), nullable=True
    )
