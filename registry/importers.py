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
import ipaddress
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
CODE_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
# A DNS host name: labels of letters, digits and inner hyphens.
HOST_PATTERN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                          r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
PHONE_PATTERN = re.compile(r"\A(1[3-9]\d{9}|\+\d{6,15})\Z")
TRUE_WORDS = {"1", "yes", "true", "y"}
FALSE_WORDS = {"0", "no", "false", "n", ""}


# Why a row is refused: a code and its English text (str.format fields). The CLI prints the
# English; the back office shows the same code in the reader's language (portal.imports).
PROBLEMS: dict[str, str] = {
    "code": "{column} {value!r} must be 1-32 letters, digits, _ or -",
    "not_whole": "{column} {value!r} is not a whole number",
    "int_range": "{column} {value} must be between {low} and {high}",
    "not_number": "{column} {value!r} is not a number",
    "number_range": "{column} {value} must be {bound} {low:g} and at most {high:g}",
    "not_bool": "{column} {value!r} must be 1/0, yes/no or true/false",
    "required": "{column} is required",
    "not_date": "{column} {value!r} is not a date (YYYY-MM-DD)",
    "choice": "{column} {value!r} must be one of {allowed}",
    "ap_id": "ap_id {value!r} must be 1-64 letters, digits, . _ or -",
    "unit_needed": "coverage 'unit' needs the unit column",
    "unit_not_allowed": "coverage {value!r} must leave the unit column empty",
    "floor_needed": "coverage 'floor' needs the floor column",
    "ssid_long": "ssid is longer than 32 bytes",
    "id_invalid": "id_number {detail}",
    "id_format": "id_number must be 5-20 letters or digits",
    "name_required": "name is required (at most 200 characters)",
    "phone": "phone {value!r} is not a mainland mobile or +international number",
    "move_order": "move_out is before move_in",
    "period_order": "period_end must be after period_start",
    "not_imported": "{thing} {value} is not in the registry (import units first)",
    "width": "has {found} fields, the header has {expected}",
    "duplicate": "duplicate of line {first} (same key)",
    "formula": "{column} {value!r} starts with {start!r}: a spreadsheet would run it as a "
               "formula",
    "out_of_scope": "community {value} is not one of your communities",
    "too_long": "{column} is longer than {limit} characters",
    "host_port": "{column} {value!r} must be host:port, e.g. 192.168.8.1:2050 or [fd00::1]:2050",
    "port": "{column} port {value!r} must be a number from 1 to 65535",
    "host": "{column} host {value!r} is not an IP address or host name",
}
# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): refused in free text,
# so nothing imported here can later be exported into someone's spreadsheet as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class RowProblem(ValueError):
    """A row cannot be imported; ``code`` (a PROBLEMS key) and ``params`` say why."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(PROBLEMS[code].format(**params))
        self.code = code
        self.params = params


@dataclass(frozen=True)
class RowError:
    """A rejected row: its line number in the file and the reason (English, and as a code)."""

    line: int
    reason: str
    code: str = ""
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, line: int, code: str, **params: Any) -> RowError:
        """A rejected row from a PROBLEMS code."""
        return cls(line, PROBLEMS[code].format(**params), code, params)


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
        raise RowProblem("code", column=column, value=value)
    return value


def _int(row: Mapping[str, str], column: str, low: int, high: int) -> int:
    """A whole number in [low, high]."""
    raw = row[column].strip()
    try:
        value = int(raw)
    except ValueError:
        raise RowProblem("not_whole", column=column, value=raw) from None
    if not low <= value <= high:
        raise RowProblem("int_range", column=column, value=value, low=low, high=high)
    return value


def _float(row: Mapping[str, str], column: str, low: float, high: float, allow_low: bool) -> float:
    """A number in (low, high] or [low, high]."""
    raw = row[column].strip()
    try:
        value = float(raw)
    except ValueError:
        raise RowProblem("not_number", column=column, value=raw) from None
    if value != value or value > high or value < low or (value == low and not allow_low):
        bound = "at least" if allow_low else "more than"
        raise RowProblem("number_range", column=column, value=raw, bound=bound, low=low,
                         high=high)
    return value


def _bool(row: Mapping[str, str], column: str) -> bool:
    """A yes/no column."""
    raw = row[column].strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise RowProblem("not_bool", column=column, value=row[column])


def _date(row: Mapping[str, str], column: str, required: bool = True) -> dt.date | None:
    """An ISO date."""
    raw = row[column].strip()
    if not raw:
        if required:
            raise RowProblem("required", column=column)
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise RowProblem("not_date", column=column, value=raw) from None


def _text(row: Mapping[str, str], column: str, limit: int) -> str:
    """A free-text cell, cut to its length; refused when a spreadsheet would run it."""
    value = row[column].strip()
    if value.startswith(FORMULA_STARTS) or row[column].startswith(FORMULA_STARTS):
        raise RowProblem("formula", column=column, value=value[:20],
                         start=row[column].lstrip(" ")[:1])
    return value[:limit]


def _choice(row: Mapping[str, str], column: str, choices: type[Any]) -> Any:
    """One of an enum's values."""
    raw = row[column].strip()
    try:
        return choices(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in choices)
        raise RowProblem("choice", column=column, value=raw, allowed=allowed) from None


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
        "community_name": _text(row, "community_name", 200),
        "building": building,
        "building_name": _text(row, "building_name", 200),
        "code": unit,
        "floor": _int(row, "floor", -10, 200),
        "room": _text(row, "room", 64),
        "area_m2": _float(row, "area_m2", 0.0, 10_000.0, allow_low=False),
        "registered_occupants": _int(row, "registered_occupants", 0, 500),
        "is_rented": _bool(row, "rented"),
        "meter_group": _text(row, "meter_group", 64),
    }


def _gateway(row: Mapping[str, str], column: str) -> str | None:
    """An openNDS gateway address host:port (None: no such column; empty: FAS off)."""
    if column not in row:
        return None
    raw = row[column].strip()
    if not raw:
        return ""
    if len(raw) > 100:
        raise RowProblem("too_long", column=column, limit=100)
    if raw.startswith("["):
        host, closing, rest = raw[1:].partition("]")
        if not closing or not rest.startswith(":"):
            raise RowProblem("host_port", column=column, value=raw)
        port = rest[1:]
    else:
        host, colon, port = raw.rpartition(":")
        if not colon or ":" in host:
            raise RowProblem("host_port", column=column, value=raw)
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise RowProblem("port", column=column, value=port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name whose last label is all digits is a mistyped address (999.1.1.1), not a name.
        if (raw.startswith("[") or not HOST_PATTERN.match(host)
                or host.rsplit(".", 1)[-1].isdigit()):
            raise RowProblem("host", column=column, value=host) from None
    return raw


def parse_ap_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate an aps.csv row."""
    ap_id = row["ap_id"].strip()
    if not is_ap_id(ap_id):
        raise RowProblem("ap_id", value=ap_id)
    coverage = _choice(row, "coverage", Coverage)
    community, building = _code(row, "community"), _code(row, "building")
    floor_raw = row["floor"].strip()
    floor = _int(row, "floor", -10, 200) if floor_raw else None
    unit = row["unit"].strip()
    if coverage is Coverage.UNIT and not unit:
        raise RowProblem("unit_needed")
    if coverage is not Coverage.UNIT and unit:
        raise RowProblem("unit_not_allowed", value=coverage.value)
    if coverage is Coverage.FLOOR and floor is None:
        raise RowProblem("floor_needed")
    ssid = _text(row, "ssid", 64)
    if len(ssid.encode("utf-8")) > 32:
        raise RowProblem("ssid_long")
    return {
        "key": ap_id,
        "community": community,
        "building": building,
        "floor": floor,
        "unit_ref": unit_ref(community, building, _code(row, "unit")) if unit else None,
        "coverage": coverage,
        "ssid": ssid,
        "fas_gateway": _gateway(row, "fas_gateway"),
    }


def parse_resident_row(row: Mapping[str, str]) -> dict[str, Any]:
    """Validate a residents.csv row."""
    id_type = _choice(row, "id_type", IdType)
    number = normalize_id_number(row["id_number"])
    if not number:
        raise RowProblem("required", column="id_number")
    if id_type is IdType.RESIDENT_ID_CARD:
        problem = resident_id_problem(number)
        if problem:
            raise RowProblem("id_invalid", detail=problem)
    elif not re.fullmatch(r"[A-Z0-9]{5,20}", number):
        raise RowProblem("id_format")
    name = _text(row, "name", 201)
    if not name or len(name) > 200:
        raise RowProblem("name_required")
    phone = re.sub(r"[\s-]", "", row["phone"])
    if phone and not PHONE_PATTERN.match(phone):
        raise RowProblem("phone", value=row["phone"])
    move_in = _date(row, "move_in", required=False)
    move_out = _date(row, "move_out", required=False)
    if move_in and move_out and move_out < move_in:
        raise RowProblem("move_order")
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
        raise RowProblem("period_order")
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


def _not_imported(line: int, thing: str, value: str) -> RowError:
    """The error of a row that refers to a place not yet in the registry."""
    return RowError.of(line, "not_imported", thing=thing, value=value)


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
            where = f"{values['community']}/{values['building']}"
            ctx.report.errors.append(_not_imported(line, "building", where))
            continue
        unit_id = None
        if values["unit_ref"]:
            unit = units.get(values["unit_ref"])
            if unit is None:
                ctx.report.errors.append(_not_imported(line, "unit", values["unit_ref"]))
                continue
            unit_id = unit.id
        fields_ = {
            "building_id": building.id,
            "coverage": values["coverage"],
            "floor": values["floor"],
            "unit_id": unit_id,
            "ssid": values["ssid"],
        }
        if values["fas_gateway"] is not None:  # a file without the column leaves FAS as set
            fields_["fas_gateway"] = values["fas_gateway"]
        _upsert(ctx, existing.get(values["key"]), AccessPoint, fields_, ap_id=values["key"])


def _apply_residents(ctx: _Context, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Upsert residents by identity digest; numbers are encrypted, never stored in clear."""
    assert ctx.cipher is not None
    digests = {
        ctx.cipher.digest(v["id_type"].value, v["id_number"]): (line, v) for line, v in records
    }
    # Every configured digest key's digest finds the row (a digest rotation may be running);
    # the row is keyed here by the primary one.
    primary_of = {
        any_key: digest for digest, (_line, v) in digests.items()
        for any_key in ctx.cipher.digests(v["id_type"].value, v["id_number"])
    }
    existing = {
        primary_of[r.id_digest]: r
        for r in ctx.session.scalars(select(Resident).where(
            Resident.id_digest.in_(list(primary_of))))
    }
    units = _units_by_ref(ctx.session, {v["unit_ref"] for _, v in records})
    for digest, (line, values) in digests.items():
        unit = units.get(values["unit_ref"])
        if unit is None:
            ctx.report.errors.append(_not_imported(line, "unit", values["unit_ref"]))
            continue
        fields_: dict[str, Any] = {
            "unit_id": unit.id,
            "name_digest": ctx.cipher.name_digest(values["name"]),
            "phone_digest": ctx.cipher.phone_digest(values["phone"]),
            "move_in": values["move_in"],
            "move_out": values["move_out"],
        }
        # Name and phone are compared by digest (a fresh encryption never equals the stored
        # one) and encrypted only when they changed: importing a file again changes nothing.
        known = existing.get(digest)
        if known is not None and known.id_digest != digest:
            fields_["id_digest"] = digest  # under an earlier digest key: moved to the primary
        if (known is None or known.name_digest != fields_["name_digest"]
                or known.phone_digest != fields_["phone_digest"]):
            fields_.update(ctx.cipher.person_columns(values["name"], values["phone"]))
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
            ctx.report.errors.append(_not_imported(line, "unit", values["unit_ref"]))
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
    optional: tuple[str, ...] = ()  # columns a file may leave out (older files)


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
        optional=("fas_gateway",),
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


def _parsed_rows(path: Path, kind: ImportKind, report: ImportReport
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, parsed values) for each row that parses; each row counted, each bad one reported
    with its line number."""
    for line, row in _read_rows(path, kind):
        report.rows += 1
        if "__width__" in row:
            found, expected = row["__width__"].split("/")
            report.errors.append(RowError.of(line, "width", found=found, expected=expected))
            continue
        try:
            values = kind.parse(row)
        except RowProblem as problem:
            report.errors.append(RowError.of(line, problem.code, **problem.params))
            continue
        yield line, values


def _read_rows(path: Path, kind: ImportKind) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with their line numbers, after checking the header."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise HeaderError(f"{path}: the file is empty (a header row is required)") from None
        missing = [c for c in kind.columns if c not in header]
        extra = [c for c in header if c not in kind.columns + kind.optional]
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
                yield line, {"__width__": f"{len(values)}/{len(header)}"}
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
    for line, values in _parsed_rows(path, kind, report):
        first = seen.get(values["key"])
        if first is not None:
            report.errors.append(RowError.of(line, "duplicate", first=first))
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


def _community_of(values: Mapping[str, Any]) -> str:
    """The community code a validated row writes to."""
    if "community" in values:
        return str(values["community"])
    return str(values["unit_ref"]).split("/", 1)[0]


def import_all_or_nothing(
    kind_name: str,
    path: Path,
    session_factory: sessionmaker[Session],
    cipher: IdentityCipher | None = None,
    *,
    commit: bool,
    actor: str,
    communities: frozenset[str] | None = None,
    client_ip: str = "",
    source_name: str = "",
) -> ImportReport:
    """Check a whole file, then apply it in one transaction, kept only when ``commit`` is
    asked and not one line is bad (the back office's upload: a dry run first, then commit).

    Rows go through the same parsers and appliers as ``import_csv``, so the checks and the
    reasons are the CLI's. ``communities`` (codes) limits what the file may touch: a row of
    another community is an error. Every run, dry or not, is audited.
    """
    kind = KINDS[kind_name]
    if kind_name == "residents" and cipher is None:
        raise ValueError("importing residents needs the identity cipher")
    report = ImportReport(kind=kind_name)
    seen: dict[Any, int] = {}
    records: list[tuple[int, dict[str, Any]]] = []
    for line, values in _parsed_rows(path, kind, report):
        community = _community_of(values)
        if communities is not None and community not in communities:
            report.errors.append(RowError.of(line, "out_of_scope", value=community))
            continue
        first = seen.get(values["key"])
        if first is not None:
            report.errors.append(RowError.of(line, "duplicate", first=first))
            continue
        seen[values["key"]] = line
        records.append((line, values))
    # Applied even on a dry run (then rolled back): references to units or buildings that are
    # not in the registry are only found against the database.
    kept = False
    with session_factory() as session:
        for start in range(0, len(records), CHUNK_ROWS):
            kind.apply(_Context(session, cipher, report), records[start:start + CHUNK_ROWS])
            session.flush()
        report.errors.sort(key=lambda error: error.line)
        if commit and not report.errors:
            if report.changed:
                bump_registry_version(session)
            session.add(_import_audit(report, actor, source_name or path.name, client_ip,
                                      dry_run=False))
            session.commit()
            kept = True
        else:
            session.rollback()
    if not kept:
        with session_scope(session_factory) as session:
            session.add(_import_audit(report, actor, source_name or path.name, client_ip,
                                      dry_run=not commit))
    LOGGER.info("import %s by %s: %d rows, %d rejected, %s", kind_name, actor, report.rows,
                len(report.errors), "committed" if kept else "nothing written")
    return report


def _import_audit(report: ImportReport, actor: str, name: str, client_ip: str,
                  dry_run: bool) -> AuditEntry:
    """The audit entry of a back-office import run (counts only, never a row's content)."""
    return AuditEntry(
        actor=actor[:64], action=f"import_{report.kind}", subject=name[:200],
        client_ip=client_ip[:64],
        detail={"rows": report.rows, "created": report.created, "updated": report.updated,
                "unchanged": report.unchanged, "rejected": len(report.errors),
                "dry_run": dry_run, "committed": not dry_run and not report.errors})


def count_data_lines(path: Path) -> int:
    """Number of lines after the header (for a progress bar's length)."""
    with path.open("rb") as handle:
        return max(0, sum(1 for _ in handle) - 1)
