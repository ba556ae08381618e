"""CSV import of units, access points, residents and utility readings (docs/contracts.md §8).

Every row is checked on its own: a bad row is reported with its line number and the reason and
skipped, the good rows around it are kept. Rows are keyed (units by community/building/unit,
APs by id, residents by identity document, readings by unit/kind/period), so importing the same
file again updates nothing and reports every row unchanged. Work is done in chunks so a
district-sized file (hundreds of thousands of rows) imports in bounded memory with progress.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from census.channels import is_ap_id
from census.privacy import (
    IdentityCipher,
    normalize_id_number,
    resident_id_problem,
)
from registry.db import bump_registry_version, session_scope
from registry.models import (
    AccessPoint,
    AuditEntry,
    Building,
    Community,
    Coverage,
    IdType,
    Resident,
    Unit,
    UtilityKind,
    UtilityReading,
    Verification,
)

LOGGER = logging.getLogger(__name__)

CHUNK_ROWS = 2000
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PHONE_PATTERN = re.compile(r"^(1[3-9]\d{9}|\+\d{6,15})$")
TRUE_WORDS = {"1", "yes", "true", "y"}
FALSE_WORDS = {"0", "no", "false", "n", ""}


class RowProblem(ValueError):
    """A row cannot be imported; the message says why."""


@dataclass(frozen=True)
class RowError:
    """A rejected row: its line number in the file and the reason."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Rows that created or changed something."""
        return self.created + self.updated


# --- field parsers: each raises RowProblem naming the column -----------------------------------


def _code(row: Mapping[str, str], column: str) -> str:
    """A community, building or unit code."""
    value = row[column].strip()
    if not CODE_PATTERN.match(value):
        raise RowProblem(f"{column} {value!r} must be 1-32 letters, digits, _ or -")
    return value


def _int(row: Mapping[str, str], column: str, low: int, high: int) -> int:
    """A whole number in [low, high]."""
    raw = row[column].strip()
    try:
        value = int(raw)
    except ValueError:
        raise RowProblem(f"{column} {raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise RowProblem(f"{column} {value} must be between {low} and {high}")
    return value


def _float(row: Mapping[str, str], column: str, low: float, high: float, allow_low: bool) -> float:
    """A number in (low, high] or [low, high]."""
    raw = row[column].strip()
    try:
        value = float(raw)
    except ValueError:
        raise RowProblem(f"{column} {raw!r} is not a number") from None
    if value != value or value > high or value < low or (value == low and not allow_low):
        bound = "at least" if allow_low else "more than"
        raise RowProblem(f"{column} {raw} must be {bound} {low:g} and at most {high:g}")
    return value


def _bool(row: Mapping[str, str], column: str) -> bool:
    """A yes/no column."""
    raw = row[column].strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise RowProblem(f"{column} {row[column]!r} must be 1/0, yes/no or true/false")


def _date(row: Mapping[str, str], column: str, required: bool = True) -> dt.date | None:
    """An ISO date."""
    raw = row[column].strip()
    if not raw:
        if required:
            raise RowProblem(f"{column} is required")
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise RowProblem(f"{column} {raw!r} is not a date (YYYY-MM-DD)") from None


def _choice(row: Mapping[str, str], column: str, choices: type[Any]) -> Any:
    """One of an enum's values."""
    raw = row[column].strip()
    try:
        return choices(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in choices)
        raise RowProblem(f"{column} {raw!r} must be one of {allowed}") from None


def unit_ref(community: str, building: str, unit: str) -> str:
    """The unit reference community/building/unit."""
    return f"{community}/{building}/{unit}"


# --- per-kind row parsers: CSV row -> validated values ----------------------------------------


def parse_unit_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate a units.csv row."""
    community, building, unit = _code(row, "community"), _code(row, "building"), _code(row, "unit")
    return {
        "key": unit_ref(community, building, unit),
        "community": community,
        "community_name": row["community_name"].strip()[:200],
        "building": building,
        "building_name": row["building_name"].strip()[:200],
        "code": unit,
        "floor": _int(row, "floor", -10, 200),
        "room": row["room"].strip()[:64],
        "area_m2": _float(row, "area_m2", 0.0, 10_000.0, allow_low=False),
        "registered_occupants": _int(row, "registered_occupants", 0, 500),
        "is_rented": _bool(row, "rented"),
        "meter_group": row["meter_group"].strip()[:64],
    }


def parse_ap_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate an aps.csv row."""
    ap_id = row["ap_id"].strip()
    if not is_ap_id(ap_id):
        raise RowProblem(f"ap_id {ap_id!r} must be 1-64 letters, digits, . _ or -")
    coverage = _choice(row, "coverage", Coverage)
    community, building = _code(row, "community"), _code(row, "building")
    floor_raw = row["floor"].strip()
    floor = _int(row, "floor", -10, 200) if floor_raw else None
    unit = row["unit"].strip()
    if coverage is Coverage.UNIT and not unit:
        raise RowProblem("coverage 'unit' needs the unit column")
    if coverage is not Coverage.UNIT and unit:
        raise RowProblem(f"coverage {coverage.value!r} must leave the unit column empty")
    if coverage is Coverage.FLOOR and floor is None:
        raise RowProblem("coverage 'floor' needs the floor column")
    ssid = row["ssid"].strip()
    if len(ssid.encode("utf-8")) > 32:
        raise RowProblem("ssid is longer than 32 bytes")
    return {
        "key": ap_id,
        "community": community,
        "building": building,
        "floor": floor,
        "unit_ref": unit_ref(community, building, _code(row, "unit")) if unit else None,
        "coverage": coverage,
        "ssid": ssid,
    }


def parse_resident_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate a residents.csv row."""
    id_type = _choice(row, "id_type", IdType)
    number = normalize_id_number(row["id_number"])
    if not number:
        raise RowProblem("id_number is required")
    if id_type is IdType.RESIDENT_ID_CARD:
        problem = resident_id_problem(number)
        if problem:
            raise RowProblem(f"id_number {problem}")
    elif not re.match(r"^[A-Z0-9]{5,20}$", number):
        raise RowProblem("id_number must be 5-20 letters or digits")
    name = row["name"].strip()
    if not name or len(name) > 200:
        raise RowProblem("name is required (at most 200 characters)")
    phone = re.sub(r"[\s-]", "", row["phone"])
    if phone and not PHONE_PATTERN.match(phone):
        raise RowProblem(
            f"phone {row['phone']!r} is not a mainland mobile or +international number"
        )
    move_in = _date(row, "move_in", required=False)
    move_out = _date(row, "move_out", required=False)
    if move_in and move_out and move_out < move_in:
        raise RowProblem("move_out is before move_in")
    community, building, unit = _code(row, "community"), _code(row, "building"), _code(row, "unit")
    return {
        "key": (id_type.value, number),
        "unit_ref": unit_ref(community, building, unit),
        "name": name,
        "id_type": id_type,
        "id_number": number,
        "phone": phone,
        "move_in": move_in,
        "move_out": move_out,
    }


def parse_utility_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate a utilities.csv row."""
    community, building, unit = _code(row, "community"), _code(row, "building"), _code(row, "unit")
    kind = _choice(row, "kind", UtilityKind)
    start = _date(row, "period_start")
    end = _date(row, "period_end")
    assert start is not None and end is not None  # required dates
    if end <= start:
        raise RowProblem("period_end must be after period_start")
    ref = unit_ref(community, building, unit)
    return {
        "key": (ref, kind.value, start),
        "unit_ref": ref,
        "kind": kind,
        "period_start": start,
        "period_end": end,
        "amount": _float(row, "amount", 0.0, 1e9, allow_low=True),
    }


# --- appliers: validated values -> database, in chunks ----------------------------------------


@dataclass
class _Context:
    """Caches shared by the chunks of one import."""

    session: Session
    cipher: IdentityCipher | None
    report: ImportReport
    communities: dict[str, Community] = field(default_factory=dict)
    buildings: dict[tuple[str, str], Building] = field(default_factory=dict)


def _assign(target: Any, values: Mapping[str, Any]) -> bool:
    """Set attributes that differ; return whether anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(target, name) != value:
            setattr(target, name, value)
            changed = True
    return changed


def _upsert(ctx: _Context, existing: Any, model: type[Any], fields: Mapping[str, Any],
            **identity: Any) -> None:
    """Add a new row (identity + fields), update a changed one, or count it unchanged."""
    if existing is None:
        ctx.session.add(model(**identity, **fields))
        ctx.report.created += 1
    elif _assign(existing, fields):
        ctx.report.updated += 1
    else:
        ctx.report.unchanged += 1


def _not_imported(thing: str) -> str:
    """The reason for a row that refers to a place not yet in the registry."""
    return f"{thing} is not in the registry (import units first)"


def _building(
    ctx: _Context,
    community_code: str,
    building_code: str,
    community_name: str = "",
    building_name: str = "",
    create: bool = True,
) -> Building | None:
    """Find (or create) a building by codes, caching lookups."""
    community = ctx.communities.get(community_code)
    if community is None:
        community = ctx.session.scalar(select(Community).where(Community.code == community_code))
        if community is None:
            if not create:
                return None
            community = Community(code=community_code, name=community_name)
            ctx.session.add(community)
            ctx.session.flush()
        ctx.communities[community_code] = community
    if community_name and community.name != community_name:
        community.name = community_name
    key = (community_code, building_code)
    building = ctx.buildings.get(key)
    if building is None:
        building = ctx.session.scalar(
            select(Building).where(
                Building.community_id == community.id, Building.code == building_code
            )
        )
        if building is None:
            if not create:
                return None
            building = Building(community_id=community.id, code=building_code, name=building_name)
            ctx.session.add(building)
            ctx.session.flush()
        ctx.buildings[key] = building
    if building_name and building.name != building_name:
        building.name = building_name
    return building


def _units_by_ref(session: Session, refs: set[str]) -> dict[str, Unit]:
    """Units with the given references."""
    if not refs:
        return {}
    return {u.ref: u for u in session.scalars(select(Unit).where(Unit.ref.in_(refs)))}


def _apply_units(ctx: _Context, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Upsert units."""
    existing = _units_by_ref(ctx.session, {values["key"] for _, values in records})
    for _line, values in records:
        building = _building(
            ctx,
            values["community"],
            values["building"],
            values["community_name"],
            values["building_name"],
        )
        assert building is not None
        fields_ = {
            "building_id": building.id,
            "code": values["code"],
            "floor": values["floor"],
            "room": values["room"],
            "area_m2": values["area_m2"],
            "registered_occupants": values["registered_occupants"],
            "is_rented": values["is_rented"],
            "meter_group": values["meter_group"],
        }
        _upsert(ctx, existing.get(values["key"]), Unit, fields_, ref=values["key"])


def _apply_aps(ctx: _Context, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Upsert access points; their building and unit must already be imported."""
    keys = {values["key"] for _, values in records}
    existing = {
        ap.ap_id: ap
        for ap in ctx.session.scalars(select(AccessPoint).where(AccessPoint.ap_id.in_(keys)))
    }
    units = _units_by_ref(ctx.session, {v["unit_ref"] for _, v in records if v["unit_ref"]})
    for line, values in records:
        building = _building(ctx, values["community"], values["building"], create=False)
        if building is None:
            where = f"building {values['community']}/{values['building']}"
            ctx.report.errors.append(RowError(line, _not_imported(where)))
            continue
        unit_id = None
        if values["unit_ref"]:
            unit = units.get(values["unit_ref"])
            if unit is None:
                missing = _not_imported(f"unit {values['unit_ref']}")
                ctx.report.errors.append(RowError(line, missing))
                continue
            unit_id = unit.id
        fields_ = {
            "building_id": building.id,
            "coverage": values["coverage"],
            "floor": values["floor"],
            "unit_id": unit_id,
            "ssid": values["ssid"],
        }
        _upsert(ctx, existing.get(values["key"]), AccessPoint, fields_, ap_id=values["key"])


def _apply_residents(ctx: _Context, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Upsert residents by identity digest; numbers are encrypted, never stored in clear."""
    assert ctx.cipher is not None
    digests = {
        ctx.cipher.digest(v["id_type"].value, v["id_number"]): (line, v) for line, v in records
    }
    existing = {
        r.id_digest: r
        for r in ctx.session.scalars(select(Resident).where(Resident.id_digest.in_(digests)))
    }
    units = _units_by_ref(ctx.session, {v["unit_ref"] for _, v in records})
    for digest, (line, values) in digests.items():
        unit = units.get(values["unit_ref"])
        if unit is None:
            ctx.report.errors.append(RowError(line, _not_imported(f"unit {values['unit_ref']}")))
            continue
        fields_ = {
            "unit_id": unit.id,
            "name": values["name"],
            "phone": values["phone"],
            "move_in": values["move_in"],
            "move_out": values["move_out"],
        }
        identity = {}
        if digest not in existing:  # encrypt only what is new: the number never changes a row
            identity = {
                "id_type": values["id_type"], "id_digest": digest,
                "id_number_encrypted": ctx.cipher.encrypt(values["id_number"]),
                "id_last4": values["id_number"][-4:], "verification": Verification.REGISTERED,
            }
        _upsert(ctx, existing.get(digest), Resident, fields_, **identity)


def _apply_utilities(ctx: _Context, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Upsert utility readings."""
    units = _units_by_ref(ctx.session, {v["unit_ref"] for _, v in records})
    keys = {
        (units[v["unit_ref"]].id, v["kind"], v["period_start"])
        for _, v in records
        if v["unit_ref"] in units
    }
    existing: dict[tuple[int, UtilityKind, dt.date], UtilityReading] = {}
    if keys:
        query = select(UtilityReading).where(
            tuple_(UtilityReading.unit_id, UtilityReading.kind, UtilityReading.period_start).in_(
                list(keys)
            )
        )
        existing = {(r.unit_id, r.kind, r.period_start): r for r in ctx.session.scalars(query)}
    new_rows: list[dict[str, Any]] = []
    for line, values in records:
        unit = units.get(values["unit_ref"])
        if unit is None:
            ctx.report.errors.append(RowError(line, _not_imported(f"unit {values['unit_ref']}")))
            continue
        reading = existing.get((unit.id, values["kind"], values["period_start"]))
        fields_ = {"period_end": values["period_end"], "amount": values["amount"]}
        if reading is None:
            new_rows.append(
                {
                    "unit_id": unit.id,
                    "kind": values["kind"],
                    "period_start": values["period_start"],
                    **fields_,
                }
            )
            ctx.report.created += 1
        elif _assign(reading, fields_):
            ctx.report.updated += 1
        else:
            ctx.report.unchanged += 1
    if new_rows:
        # Readings are the bulk of a district's data: insert them in one executemany.
        ctx.session.execute(insert(UtilityReading), new_rows)


@dataclass(frozen=True)
class ImportKind:
    """How to read and apply one kind of CSV file."""

    columns: tuple[str, ...]
    parse: Callable[[Mapping[str, str]], dict[str, Any]]
    apply: Callable[[_Context, list[tuple[int, dict[str, Any]]]], None]


KINDS: dict[str, ImportKind] = {
    "units": ImportKind(
        (
            "community",
            "community_name",
            "building",
            "building_name",
            "unit",
            "floor",
            "room",
            "area_m2",
            "registered_occupants",
            "rented",
            "meter_group",
        ),
        parse_unit_row,
        _apply_units,
    ),
    "aps": ImportKind(
        ("ap_id", "community", "building", "floor", "unit", "coverage", "ssid"),
        parse_ap_row,
        _apply_aps,
    ),
    "residents": ImportKind(
        (
            "community",
            "building",
            "unit",
            "name",
            "id_type",
            "id_number",
            "phone",
            "move_in",
            "move_out",
        ),
        parse_resident_row,
        _apply_residents,
    ),
    "utilities": ImportKind(
        ("community", "building", "unit", "kind", "period_start", "period_end", "amount"),
        parse_utility_row,
        _apply_utilities,
    ),
}


class HeaderError(ValueError):
    """The file's header row does not match the kind's columns."""


def _read_rows(path: Path, kind: ImportKind) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with their line numbers, after checking the header."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise HeaderError(f"{path}: the file is empty (a header row is required)") from None
        missing = [c for c in kind.columns if c not in header]
        extra = [c for c in header if c not in kind.columns]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing columns: {', '.join(missing)}")
            if extra:
                parts.append(f"unknown columns: {', '.join(extra)}")
            raise HeaderError(f"{path}: line 1: {'; '.join(parts)}")
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield line, {"__width__": f"has {len(values)} fields, the header has {len(header)}"}
                continue
            yield line, dict(zip(header, values, strict=True))


def import_csv(
    kind_name: str,
    path: Path,
    session_factory: sessionmaker[Session],
    cipher: IdentityCipher | None = None,
    progress: Callable[[int], None] | None = None,
    actor: str = "system",
) -> ImportReport:
    """Import one CSV file; return what was created, updated, unchanged and rejected."""
    kind = KINDS[kind_name]
    if kind_name == "residents" and cipher is None:
        raise ValueError("importing residents needs the identity cipher")
    report = ImportReport(kind=kind_name)
    seen: dict[Any, int] = {}
    chunk: list[tuple[int, dict[str, Any]]] = []

    def flush() -> None:
        """Apply the pending chunk in its own transaction."""
        if not chunk:
            return
        with session_scope(session_factory) as session:
            kind.apply(_Context(session, cipher, report), chunk)
        if progress:
            progress(len(chunk))
        chunk.clear()

    # One context for caches across chunks would hold stale objects after each commit; the
    # per-chunk context keeps memory bounded at the cost of a few repeated lookups.
    for line, row in _read_rows(path, kind):
        report.rows += 1
        if "__width__" in row:
            report.errors.append(RowError(line, row["__width__"]))
            continue
        try:
            values = kind.parse(row)
        except RowProblem as problem:
            report.errors.append(RowError(line, str(problem)))
            continue
        first = seen.get(values["key"])
        if first is not None:
            report.errors.append(RowError(line, f"duplicate of line {first} (same key)"))
            continue
        seen[values["key"]] = line
        chunk.append((line, values))
        if len(chunk) >= CHUNK_ROWS:
            flush()
    flush()
    report.errors.sort(key=lambda error: error.line)
    with session_scope(session_factory) as session:
        if report.changed:
            bump_registry_version(session)
        session.add(
            AuditEntry(
                actor=actor,
                action=f"import_{kind_name}",
                subject=str(path.name),
                detail={
                    "rows": report.rows,
                    "created": report.created,
                    "updated": report.updated,
                    "unchanged": report.unchanged,
                    "rejected": len(report.errors),
                },
            )
        )
    return report


def count_data_lines(path: Path) -> int:
    """Number of lines after the header (for a progress bar's length)."""
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)
