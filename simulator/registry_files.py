"""The registry CSV files (docs/contracts.md section 8) as the authorities would hold them.

Only what the registry knows goes here: registered residents (some of whom live elsewhere),
units with their registered count, APs with their coverage. Nothing about true occupancy,
group rentals or scenarios leaks into ids, names or columns.
"""

from __future__ import annotations

import csv
from pathlib import Path

from simulator.model import Person, World

UNIT_COLUMNS = ("community", "community_name", "building", "building_name", "unit", "floor",
                "room", "area_m2", "registered_occupants", "rented", "meter_group")
AP_COLUMNS = ("ap_id", "community", "building", "floor", "unit", "coverage", "ssid")
RESIDENT_COLUMNS = ("community", "building", "unit", "name", "id_type", "id_number", "phone",
                    "move_in", "move_out")


def write_units(path: Path, world: World) -> int:
    """units.csv; returns the number of rows."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(UNIT_COLUMNS)
        for unit in world.units:
            building = unit.building
            writer.writerow((building.community, building.community_name, building.code,
                             building.name, unit.code, unit.floor, unit.room, f"{unit.area_m2:.1f}",
                             len(unit.registered), "1" if unit.rented else "0", unit.meter_group))
    return len(world.units)


def write_aps(path: Path, world: World) -> int:
    """aps.csv; returns the number of rows."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(AP_COLUMNS)
        for ap in world.aps:
            writer.writerow((ap.ap_id, ap.community, ap.building,
                             "" if ap.floor is None else ap.floor, ap.unit_code, ap.coverage,
                             ap.ssid))
    return len(world.aps)


def _resident_row(person: Person) -> tuple[str, ...]:
    """One residents.csv row."""
    unit = person.unit
    identity = person.identity
    return (unit.building.community, unit.building.code, unit.code, identity.name,
            identity.id_type, identity.id_number, identity.phone,
            person.move_in.isoformat() if person.move_in else "",
            person.move_out.isoformat() if person.move_out else "")


def write_residents(path: Path, world: World) -> int:
    """residents.csv: registered residents, then those who moved out; returns the rows."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RESIDENT_COLUMNS)
        for unit in world.units:
            for person in [*unit.registered, *unit.former]:
                writer.writerow(_resident_row(person))
                rows += 1
    return rows
