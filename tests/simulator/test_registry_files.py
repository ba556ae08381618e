"""The registry CSVs import cleanly and tell the registry only what it would really know."""

from __future__ import annotations

import csv
import re
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from census.privacy import IdentityCipher, resident_id_problem
from registry.importers import PHONE_PATTERN, import_csv
from registry.models import AccessPoint, Resident, Unit, UtilityReading
from simulator import SimulationResult


def rows(path: Any) -> list[dict[str, str]]:
    """A CSV file as dicts."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_csvs_import_with_zero_rejected_rows(small_run: SimulationResult,
                                             session_factory: sessionmaker[Session],
                                             cipher: IdentityCipher) -> None:
    """units, aps, residents, utilities import on SQLite and PostgreSQL; a re-import is a no-op."""
    expected = {"units": small_run.units_csv, "aps": small_run.aps_csv,
                "residents": small_run.residents_csv, "utilities": small_run.utilities_csv}
    for kind, path in expected.items():
        report = import_csv(kind, path, session_factory, cipher)
        assert report.errors == [], (kind, report.errors[:5])
        assert report.created == report.rows == len(rows(path))
    for kind, path in expected.items():
        again = import_csv(kind, path, session_factory, cipher)
        assert again.errors == [] and again.changed == 0 and again.unchanged == again.rows
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Unit)) == small_run.counts["units"]
        assert session.scalar(select(func.count()).select_from(AccessPoint)) == \
            small_run.counts["aps"]
        assert session.scalar(select(func.count()).select_from(Resident)) == \
            small_run.counts["residents_rows"]
        assert session.scalar(select(func.count()).select_from(UtilityReading)) == \
            small_run.counts["utility_rows"]
        registered = session.scalar(select(func.sum(Unit.registered_occupants)))
        current = session.scalar(select(func.count()).select_from(Resident)
                                 .where(Resident.move_out.is_(None)))
        assert registered == current


def test_identities_are_valid_unique_and_plausible(small_run: SimulationResult) -> None:
    """GB 11643 ID numbers, valid phones, mostly Chinese names, some passports."""
    residents = rows(small_run.residents_csv)
    types = Counter(row["id_type"] for row in residents)
    assert types["resident_id_card"] > 0.9 * len(residents)
    for row in residents:
        if row["id_type"] == "resident_id_card":
            assert resident_id_problem(row["id_number"]) is None
        if row["phone"]:
            assert PHONE_PATTERN.match(row["phone"])
    assert len({(r["id_type"], r["id_number"]) for r in residents}) == len(residents)
    chinese = sum(bool(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", row["name"])) for row in residents)
    assert chinese > 0.9 * len(residents)


def test_units_registered_count_matches_current_residents(small_run: SimulationResult) -> None:
    """registered_occupants equals the unit's residents without a move_out date."""
    current = Counter((r["community"], r["building"], r["unit"])
                      for r in rows(small_run.residents_csv) if not r["move_out"])
    for unit in rows(small_run.units_csv):
        key = (unit["community"], unit["building"], unit["unit"])
        assert int(unit["registered_occupants"]) == current.get(key, 0)


def test_nothing_in_the_registry_or_stream_leaks_the_truth(
        small_run: SimulationResult, small_truth: dict[str, Any]) -> None:
    """No scenario words anywhere analytics can read; ids follow the layout only."""
    words = ("group", "vacant", "extra", "scenario", "truth", "fewer", "rental")
    for path in (small_run.units_csv, small_run.aps_csv, small_run.residents_csv,
                 small_run.utilities_csv):
        # The header is the contract's (units.csv has "meter_group"); the data must not tell.
        text = path.read_text(encoding="utf-8").lower().split("\n", 1)[1]
        assert not any(word in text for word in words), path.name
    with small_run.events_path.open("rb") as handle:
        head = handle.read(5_000_000).lower()
    assert not any(word.encode() in head for word in words)
    for ap in rows(small_run.aps_csv):
        assert re.fullmatch(r"ap-teda\d{3}-b\d{2}-(\d{4}|f\d{2}|lobby)", ap["ap_id"])
    # Group rentals look like any other rented flat in units.csv.
    group_refs = {u["unit"] for u in small_truth["units"] if u["group_rental"]}
    assert group_refs
    units = {f"{u['community']}/{u['building']}/{u['unit']}": u for u in rows(small_run.units_csv)}
    for ref in group_refs:
        assert units[ref]["rented"] == "1" and 1 <= int(units[ref]["registered_occupants"]) <= 3


def test_ap_coverage_matches_the_layout(small_run: SimulationResult,
                                        small_truth: dict[str, Any]) -> None:
    """Unit APs serve one unit, corridor APs a floor, lobby APs the building."""
    aps = {row["ap_id"]: row for row in rows(small_run.aps_csv)}
    coverage = Counter(row["coverage"] for row in aps.values())
    assert coverage["unit"] and coverage["floor"] and coverage["building"]
    for ap in small_truth["aps"]:
        row = aps[ap["ap"]]
        if row["coverage"] == "unit":
            assert ap["units"] == [f"{row['community']}/{row['building']}/{row['unit']}"]
        elif row["coverage"] == "floor":
            assert len(ap["units"]) >= 1 and row["unit"] == ""
            floor_prefix = f"{row['community']}/{row['building']}/{int(row['floor']):02d}"
            assert all(ref.startswith(floor_prefix) for ref in ap["units"])
        else:
            building = f"{row['community']}/{row['building']}/"
            assert ap["units"] and all(ref.startswith(building) for ref in ap["units"])
