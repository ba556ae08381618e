"""The truth agrees with the registry files, and the behaviour it describes shows in the data."""

from __future__ import annotations

import csv
import datetime as dt
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from simulator import SimulationResult
from simulator.community import _Builder, build_world
from simulator.config import SimulationConfig, simulation_period
from simulator.truth import address_index, device_at
from tests.common import SIM_END


def test_truth_matches_the_registry_files(small_run: SimulationResult,
                                          small_truth: dict[str, Any]) -> None:
    """Registered counts, rented flags and meter groups agree with units.csv."""
    with small_run.units_csv.open(encoding="utf-8") as handle:
        units = {f"{r['community']}/{r['building']}/{r['unit']}": r for r in csv.DictReader(handle)}
    assert len(small_truth["units"]) == len(units)
    people = {p["id"]: p for p in small_truth["people"]}
    devices = {d["id"]: d for d in small_truth["devices"]}
    for unit in small_truth["units"]:
        row = units[unit["unit"]]
        assert int(row["registered_occupants"]) == unit["registered"]
        assert len(unit["registered_residents"]) == unit["registered"]
        assert row["rented"] == ("1" if unit["rented"] else "0")
        assert row["meter_group"] == unit["meter_group"]
        assert unit["true_occupants"] == len(unit["occupants"])
        assert all(people[p]["lives_here"] and people[p]["unit"] == unit["unit"]
                   for p in unit["occupants"])
        owned = [d for p in unit["occupants"] for d in people[p]["devices"]]
        assert unit["resident_devices"] == owned
        assert all(devices[d]["owner"] in unit["occupants"] for d in owned)
        assert all(devices[d]["category"] == "infrastructure" and devices[d]["owner"] is None
                   for d in unit["infrastructure_devices"])
        assert all(0 <= n <= unit["true_occupants"] for n in unit["home_at_night"])
        assert len(unit["home_at_night"]) == len(small_truth["period"]["days"])
        if unit["group_rental"]:
            assert unit["rented"] and 6 <= unit["true_occupants"] <= 15
    summary = small_truth["summary"]
    assert summary["group_rentals"] == sum(u["group_rental"] for u in small_truth["units"]) > 0
    assert summary["messages"] == small_run.messages


def test_modelled_behaviours_all_occur(small_truth: dict[str, Any]) -> None:
    """Each behaviour the docs list shows up in a 300-unit run."""
    devices = small_truth["devices"]
    people = small_truth["people"]
    units = small_truth["units"]
    modes = Counter(d["address_mode"] for d in devices)
    assert all(modes[m] for m in ("fixed", "per_ssid", "rotating_daily", "rotating_biweekly"))
    kinds = Counter(d["kind"] for d in devices)
    assert all(kinds[k] for k in ("phone", "laptop", "tablet", "watch", "smart_tv", "camera"))
    roles = Counter(p["role"] for p in people if p["lives_here"])
    assert all(roles[r] for r in ("day_worker", "night_shift", "homebody", "school_child",
                                  "young_child"))
    living = [p for p in people if p["lives_here"]]
    assert any(not p["devices"] and p["age"] < 6 for p in living)  # children without phones
    assert any(not p["devices"] and p["age"] >= 65 for p in living)  # no smartphone
    assert any(p["trips"] for p in living)
    assert any(p["night_wifi_off"] for p in living)
    assert Counter(u["scenario"] for u in units).keys() == {
        "match", "extra_occupant", "fewer", "vacant", "group_rental"}
    assert any(not u["own_ap"] and u["home_ap"] for u in units)  # flat without its own AP
    assert any(d["bleeds_to"] for d in devices)
    assert any(d["probe_addresses"] for d in devices)
    assert any(ap["outages"] for ap in small_truth["aps"])
    assert any(sum(u["guests_at_night"]) for u in units)
    assert any(len(u["aps"]) > 1 and u["meter_group"] for u in units)


def _night_devices(run: SimulationResult, truth: dict[str, Any]) -> dict[str, set[str]]:
    """Per unit AP: distinct devices seen in snapshots 00:00-05:00 local with a strong signal."""
    tz = ZoneInfo(truth["period"]["timezone"])
    index = address_index(truth)
    seen: dict[str, set[str]] = defaultdict(set)
    with run.events_path.open("rb") as handle:
        for raw in handle:
            if b'"snapshot"' not in raw:
                continue
            record = json.loads(raw)
            hour = dt.datetime.fromtimestamp(record["payload"][0]["ts"], tz).hour
            if hour >= 5:
                continue
            for event in record["payload"]:
                if event["rssi"] > -70:
                    device = device_at(index, event["mac"], event["ts"])
                    assert device is not None
                    seen[record["ap"]].add(device)
    return seen


def test_occupancy_is_learnable_from_behaviour(small_run: SimulationResult,
                                               small_truth: dict[str, Any]) -> None:
    """Group rentals show several times the night-time devices of matching households."""
    seen = _night_devices(small_run, small_truth)
    counts: dict[str, list[int]] = defaultdict(list)
    for unit in small_truth["units"]:
        if unit["own_ap"]:
            counts[unit["scenario"]].append(len(seen.get(unit["home_ap"], set())))
    assert statistics.mean(counts["group_rental"]) > 2.5 * statistics.mean(counts["match"])
    assert statistics.mean(counts["vacant"]) < 1.0  # at most a camera or a plug


def test_neighbour_bleed_is_weak_and_on_the_neighbours_ap(small_run: SimulationResult,
                                                          small_truth: dict[str, Any]) -> None:
    """A bleeding device appears on its neighbour's AP only with a weak signal."""
    index = address_index(small_truth)
    bleeders = {d["id"]: d["bleeds_to"] for d in small_truth["devices"] if d["bleeds_to"]}
    found = 0
    with small_run.events_path.open("rb") as handle:
        for raw in handle:
            record = json.loads(raw)
            for event in record["payload"]:
                if event["type"] != "snapshot":
                    continue
                device = device_at(index, event["mac"], event["ts"])
                if device in bleeders and record["ap"] == bleeders[device]:
                    assert event["rssi"] <= -72
                    found += 1
    assert found > 0


def test_utilities_follow_true_occupants(small_run: SimulationResult,
                                         small_truth: dict[str, Any]) -> None:
    """Water per registered occupant is far above normal in group rentals."""
    water: dict[str, list[float]] = defaultdict(list)
    with small_run.utilities_csv.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["kind"] == "water":
                water[f"{row['community']}/{row['building']}/{row['unit']}"].append(
                    float(row["amount"]))
    by_ref = {u["unit"]: u for u in small_truth["units"]}
    ratio: dict[str, list[float]] = defaultdict(list)
    for ref, amounts in water.items():
        unit = by_ref[ref]
        if unit["meter_group"] or unit["registered"] == 0:
            continue
        ratio[unit["scenario"]].append(statistics.mean(amounts) / unit["registered"])
    assert min(ratio["group_rental"]) > 2 * statistics.median(ratio["match"])
    occupied = [(by_ref[r]["true_occupants"], statistics.mean(a)) for r, a in water.items()
                if not by_ref[r]["meter_group"]]
    assert _spearman(occupied) > 0.6
    # Shared meters: one reading per group, on the lowest reference.
    groups: dict[str, list[str]] = defaultdict(list)
    for unit in small_truth["units"]:
        if unit["meter_group"]:
            groups[unit["meter_group"]].append(unit["unit"])
    for members in groups.values():
        assert [m for m in members if m in water] == [min(members)]


def _spearman(pairs: list[tuple[float, float]]) -> float:
    """Spearman's rank correlation (ties ranked by order; enough for a sanity bound)."""
    def ranks(values: list[float]) -> list[float]:
        """Rank of each value."""
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        for rank, position in enumerate(order):
            result[position] = float(rank)
        return result
    first = ranks([a for a, _ in pairs])
    second = ranks([b for _, b in pairs])
    return statistics.correlation(first, second)


def test_default_mix_matches_teda() -> None:
    """Default shares: 20% rented, 6.44% of rentals group rentals, by exact counts."""
    config = SimulationConfig(out=Path("unused"), units=5_000, days=1, end=SIM_END)
    world = build_world(config, simulation_period(config))
    rented = sum(unit.rented for unit in world.units)
    assert rented == 1_000
    assert Counter(unit.scenario for unit in world.units)["group_rental"] == round(1_000 * 0.0644)


def test_district_layout_has_tedas_communities() -> None:
    """41,257 units fall into TEDA's 114 communities of ~362 units."""
    config = SimulationConfig(out=Path("unused"), units=41_257, days=1, end=SIM_END)
    builder = _Builder(config, simulation_period(config))
    builder.layout()
    assert len(builder.units) == 41_257
    assert len(builder.communities) == 114
    assert len({unit.ref for unit in builder.units}) == 41_257
    assert len({ap.ap_id for ap in builder.aps}) == len(builder.aps)
