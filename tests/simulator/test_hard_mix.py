"""The hard behaviour mix (issue 16): each behaviour shows up in the files a run writes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from simulator import SimulationResult
from simulator.config import ConfigError, mix_overrides
from simulator.truth import load_truth
from tests.common import simulate_into


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, dict[str, Any]]:
    """A 120-unit, 4-day community in the hard mix at a 600 s cadence."""
    result = simulate_into(tmp_path_factory.mktemp("hard"), units=120, days=4, seed=909,
                 snapshot_interval=600, **mix_overrides("hard"))
    return result, load_truth(result.truth_path)


def test_an_unknown_mix_is_refused_by_name() -> None:
    """Only default and hard exist."""
    with pytest.raises(ConfigError, match="mix"):
        mix_overrides("brutal")


def test_home_devices_second_phones_and_reconnect_rotation_appear(
        hard: tuple[SimulationResult, dict[str, Any]]) -> None:
    """Devices that stay home dozing, reconnect-rotating phones, deviceless adults."""
    _result, truth = hard
    follows = Counter(d["follows"] for d in truth["devices"] if d["category"] == "resident")
    modes = Counter(d["address_mode"] for d in truth["devices"])
    assert follows["dozing"] >= 20 and modes["rotating_reconnect"] >= 5
    reconnecting = [d for d in truth["devices"] if d["address_mode"] == "rotating_reconnect"]
    assert max(len(d["addresses"]) for d in reconnecting) >= 4  # a new address per connect
    owners: Counter[str] = Counter(d["owner"] for d in truth["devices"]
                                   if d["kind"] == "phone" and d["category"] == "resident")
    assert any(n >= 2 for n in owners.values())  # second phones
    adults = [p for p in truth["people"] if p["lives_here"] and 18 <= p["age"] < 65]
    assert sum(1 for p in adults if not p["devices"]) >= 3


def test_reboots_rotate_every_reconnecting_address_on_the_ap_at_once(
        hard: tuple[SimulationResult, dict[str, Any]]) -> None:
    """After an AP's outage, its reconnect-rotating stations come back under new addresses."""
    _result, truth = hard
    changes = sorted(a["from"] for d in truth["devices"]
                     if d["address_mode"] == "rotating_reconnect" for a in d["addresses"][1:])
    outages = [(a, b) for ap in truth["aps"] for a, b in ap["outages"]]
    assert outages
    after_outage = [c for c in changes if any(b <= c <= b + 90 for _, b in outages)]
    assert after_outage  # a mass rotation follows at least one reboot or outage


def test_snapshots_are_lost_and_aps_go_silent(
        hard: tuple[SimulationResult, dict[str, Any]]) -> None:
    """Fewer snapshot rounds than 144 a day per AP: losses and outages."""
    result, truth = hard
    rounds: Counter[str] = Counter()
    with result.events_path.open("rb") as handle:
        for line in handle:
            message = json.loads(line)
            payload = message["payload"]
            if not payload or payload[0]["type"] == "snapshot":
                rounds[message["ap"]] += 1
    expected = 4 * 24 * 3600 // 600
    total = sum(rounds.values())
    assert total < 0.97 * expected * len(truth["aps"])  # ~5% lost
    assert total > 0.85 * expected * len(truth["aps"])


def test_meters_differ_between_households_and_some_are_broken(
        hard: tuple[SimulationResult, dict[str, Any]]) -> None:
    """Per person, one-person households' water use spreads widely; some meters read zero."""
    result, truth = hard
    occupants = {u["unit"]: u["true_occupants"] for u in truth["units"]}
    water: dict[str, list[float]] = {}
    with Path(result.utilities_csv).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["kind"] == "water":
                ref = f"{row['community']}/{row['building']}/{row['unit']}"
                water.setdefault(ref, []).append(float(row["amount"]))
    singles = [sum(v) / len(v) for ref, v in water.items() if occupants.get(ref) == 1]
    assert len(singles) >= 8
    mean = sum(singles) / len(singles)
    cv = (sum((x - mean) ** 2 for x in singles) / len(singles)) ** 0.5 / mean
    assert cv >= 0.3  # households of one size differ (CV 0.5 by design, plus presence)
