"""The ground truth file: what really happened, for scoring analytics against.

``truth.json`` is one JSON document written record by record (one unit, person, visitor,
device or AP per line), so it loads with ``json.load`` and can also be scanned line by line at
district scale. Its layout is documented in docs/simulator.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from simulator.config import Period, SimulationConfig
from simulator.macs import AddressAllocator
from simulator.model import SCENARIOS, Device, Person, Unit, World

TRUTH_VERSION = 1


def _dump(record: dict[str, Any]) -> str:
    """One record, compact, keys sorted (stable bytes)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _seconds(ms: int) -> float:
    """Milliseconds as Unix seconds."""
    return ms / 1000


def unit_record(unit: Unit, world_aps_by_unit: dict[int, list[str]]) -> dict[str, Any]:
    """The truth about one unit."""
    residents = [d.did for p in unit.occupants for d in p.devices]
    return {
        "unit": unit.ref,
        "registered": len(unit.registered),
        "true_occupants": len(unit.occupants),
        "scenario": unit.scenario,
        "group_rental": unit.group_rental,
        "rented": unit.rented,
        "occupants": [p.pid for p in unit.occupants],
        "registered_residents": [p.pid for p in unit.registered],
        "former_residents": [p.pid for p in unit.former],
        "resident_devices": residents,
        "infrastructure_devices": [d.did for d in unit.infrastructure],
        "aps": world_aps_by_unit.get(unit.index, []),
        "home_ap": unit.home_ap.ap_id if unit.home_ap else None,
        "own_ap": bool(unit.home_ap and unit.home_ap.unit_code == unit.code
                       and unit.home_ap.building == unit.building.code),
        "meter_group": unit.meter_group,
        "home_at_night": unit.home_at_night,
        "guests_at_night": unit.guests_at_night,
        "moved_in_day": unit.moved_in_day,
    }


def person_record(person: Person) -> dict[str, Any]:
    """The truth about one person."""
    identity = person.identity
    return {
        "id": person.pid,
        "unit": person.unit.ref,
        "lives_here": person.lives_here,
        "registered": person.registered and person.move_out is None,
        "move_in": person.move_in.isoformat() if person.move_in else None,
        "move_out": person.move_out.isoformat() if person.move_out else None,
        "name": identity.name,
        "id_type": identity.id_type,
        "id_number": identity.id_number,
        "phone": identity.phone,
        "sex": identity.sex,
        "age": person.age,
        "nationality": identity.nationality,
        "role": person.role,
        "devices": [d.did for d in person.devices],
        "trips": [list(trip) for trip in person.trips],
        "workdays": person.workdays,
        "shift_cycle": list(person.shift_cycle) if person.role == "night_shift" else None,
        "night_wifi_off": person.night_wifi_off,
        "shift_group": person.shift_group or None,
    }


def device_record(device: Device, period: Period, allocator: AddressAllocator) -> dict[str, Any]:
    """The truth about one device: owner and every address it used, with when."""
    owner = device.owner
    probe_addresses = []
    for day in period.days:
        if device.probe_days >> day.index & 1:
            probe_addresses.append({"mac": allocator.probe(device.index, day.index),
                                    "from": day.start, "to": day.end})
    return {
        "id": device.did,
        "category": device.category,
        "kind": device.kind,
        "owner": None if owner is None else (owner.pid if isinstance(owner, Person)
                                             else owner.vid),
        "unit": device.unit.ref if device.unit else None,
        "address_mode": device.mode,
        "follows": device.follows,
        "addresses": [{"mac": mac, "from": _seconds(start), "to": _seconds(end)}
                      for mac, start, end in device.addresses],
        "probe_addresses": probe_addresses,
        "bleeds_to": device.bleed_ap.ap_id if device.bleed_ap else None,
        "reboot_rotates": device.reboot_rotates,
    }


def summary(world: World, extra: dict[str, Any]) -> dict[str, Any]:
    """Counts that describe the run."""
    scenarios = Counter(unit.scenario for unit in world.units)
    categories = Counter(device.category for device in world.devices)
    living = [p for p in world.people if p.lives_here]
    return {
        "units": len(world.units),
        "rented_units": sum(unit.rented for unit in world.units),
        "group_rentals": scenarios["group_rental"],
        "scenarios": {name: scenarios[name] for name in SCENARIOS},
        "buildings": len(world.buildings),
        "communities": len(world.communities),
        "aps": len(world.aps),
        "people_living": len(living),
        "people_registered": sum(len(unit.registered) for unit in world.units),
        "people_without_devices": sum(1 for p in living if not p.devices),
        "visitors": len(world.visitors),
        "devices": dict(sorted(categories.items())),
        "addresses": sum(len(device.addresses) for device in world.devices),
        **extra,
    }


def _array(handle: TextIO, name: str, records: Iterable[dict[str, Any]], last: bool) -> None:
    """One top-level array, one record per line."""
    handle.write(f'"{name}":[\n')
    first = True
    for record in records:
        if not first:
            handle.write(",\n")
        handle.write(_dump(record))
        first = False
    handle.write("\n]" + ("\n" if last else ",\n"))


def write_truth(handle: TextIO, world: World, config: SimulationConfig, period: Period,
                extra_summary: dict[str, Any]) -> None:
    """Write truth.json."""
    allocator = AddressAllocator(config.seed)
    aps_by_unit: dict[int, list[str]] = {}
    for ap in world.aps:
        for unit in ap.units:
            aps_by_unit.setdefault(unit.index, []).append(ap.ap_id)
    header = {
        "v": TRUTH_VERSION,
        "config": {k: v for k, v in config.describe().items() if k != "out"},
        "period": {
            "timezone": period.timezone,
            "start": period.start,
            "end": period.end,
            "night_check": "03:00",
            "days": [{"index": d.index, "date": d.date.isoformat(), "start": d.start,
                      "end": d.end} for d in period.days],
        },
        "summary": summary(world, extra_summary),
    }
    handle.write("{\n")
    for key, value in header.items():
        handle.write(f'"{key}":{_dump(value) if isinstance(value, dict) else json.dumps(value)},\n')
    _array(handle, "units", (unit_record(u, aps_by_unit) for u in world.units), last=False)
    people = [p for u in world.units for p in (*u.occupants, *[r for r in u.registered
                                                               if not r.lives_here], *u.former)]
    _array(handle, "people", (person_record(p) for p in people), last=False)
    _array(handle, "visitors", ({"id": v.vid, "community": v.community,
                                 "devices": [d.did for d in v.devices]} for v in world.visitors),
           last=False)
    _array(handle, "devices", (device_record(d, period, allocator) for d in world.devices),
           last=False)
    _array(handle, "aps", ({"ap": ap.ap_id, "coverage": ap.coverage,
                            "units": [u.ref for u in ap.units], "sniffer": ap.sniffer,
                            "phase": ap.phase,
                            "outages": [[_seconds(a), _seconds(b)] for a, b in ap.outages],
                            "reboots": [[_seconds(a), _seconds(b)] for a, b in ap.reboots]}
                           for ap in world.aps), last=True)
    handle.write("}\n")


# --- reading the truth back (for tests, benchmarks and analytics' accuracy checks) -----------

def load_truth(path: Path) -> dict[str, Any]:
    """Read truth.json."""
    with path.open(encoding="utf-8") as handle:
        truth: dict[str, Any] = json.load(handle)
    if truth.get("v") != TRUTH_VERSION:
        raise ValueError(f"{path}: truth version {truth.get('v')!r}, expected {TRUTH_VERSION}")
    return truth


def address_index(truth: dict[str, Any]) -> dict[str, list[tuple[float, float, str]]]:
    """MAC -> [(valid from, valid to, device id)] over association and probe addresses."""
    index: dict[str, list[tuple[float, float, str]]] = {}
    for device in truth["devices"]:
        for entry in (*device["addresses"], *device["probe_addresses"]):
            index.setdefault(entry["mac"], []).append((entry["from"], entry["to"], device["id"]))
    return index


def device_at(index: dict[str, list[tuple[float, float, str]]], mac: str,
              ts: float) -> str | None:
    """The device that used a MAC at a time, or None."""
    for start, end, device in index.get(mac, ()):
        if start <= ts < end:
            return device
    return None
