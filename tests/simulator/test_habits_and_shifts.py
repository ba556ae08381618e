"""Mass rotations at AP reboots, shift groups in group rentals, and varied device habits."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from simulator import SimulationResult
from simulator.config import ConfigError, SimulationConfig, mix_overrides
from simulator.truth import load_truth
from tests.common import simulate_into


@pytest.fixture(scope="module")
def habits(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, dict[str, Any]]:
    """40 units, 4 days, the habits mix, every rental a group rental, frequent reboots."""
    overrides = {**mix_overrides("habits"), "reboot_rate": 0.3, "shift_group_share": 1.0,
                 "rented_share": 0.3, "group_rental_share": 1.0}
    result = simulate_into(tmp_path_factory.mktemp("habits"), units=40, days=4, seed=4401,
                           **overrides)
    return result, load_truth(result.truth_path)


def test_a_reboot_changes_every_randomized_address_on_the_ap_at_once(
        habits: tuple[SimulationResult, dict[str, Any]]) -> None:
    """Stations back after a reboot re-join under new addresses, per-network ones too."""
    _result, truth = habits
    reboots = [end for ap in truth["aps"] for _start, end in ap["reboots"]]
    assert reboots
    at_reboot: Counter[float] = Counter()
    modes: Counter[str] = Counter()
    for device in truth["devices"]:
        for address in device["addresses"][1:]:
            end = next((e for e in reboots if e <= address["from"] < e + 60), None)
            if end is not None:
                at_reboot[end] += 1
                modes[device["address_mode"]] += 1
                assert device["reboot_rotates"] or device["address_mode"] == "rotating_reconnect"
    assert max(at_reboot.values()) >= 3  # a mass rotation: several addresses at one moment
    assert modes["per_ssid"] >= 3  # not only the reconnect-rotating minority
    # Fixed (hardware) addresses never change, reboot or not.
    assert all(len(d["addresses"]) == 1 for d in truth["devices"]
               if d["address_mode"] == "fixed")


def _connects_by_person(result: SimulationResult,
                        truth: dict[str, Any]) -> dict[str, list[float]]:
    """Per person, the times their carried phones connected to their home AP."""
    mac_owner = {a["mac"]: d["owner"] for d in truth["devices"]
                 if d["kind"] == "phone" and d["follows"] == "carried"
                 and d["category"] == "resident" for a in d["addresses"]}
    home_ap = {u["unit"]: u["home_ap"] for u in truth["units"]}
    person_ap = {p["id"]: home_ap[p["unit"]] for p in truth["people"]}
    out: dict[str, list[float]] = {}
    with result.events_path.open("rb") as handle:
        for line in handle:
            message = json.loads(line)
            for event in message["payload"]:
                owner = mac_owner.get(event.get("mac", ""))
                if (event["type"] == "connect" and owner is not None
                        and person_ap.get(owner) == message["ap"]):
                    out.setdefault(owner, []).append(float(event["ts"]))
    return out


def test_shift_groups_leave_and_come_home_together(
        habits: tuple[SimulationResult, dict[str, Any]]) -> None:
    """Members of a shift group share a routine and connect within minutes of their leader."""
    result, truth = habits
    groups: dict[str, list[dict[str, Any]]] = {}
    for person in truth["people"]:
        if person["shift_group"]:
            groups.setdefault(person["shift_group"], []).append(person)
    assert len(groups) >= 3 and all(3 <= len(m) <= 6 for m in groups.values())
    connects = _connects_by_person(result, truth)

    def share_near(follower: str, leader: str) -> tuple[int, int]:
        """How many of the follower's connects come within 7 minutes of one of the leader's."""
        times = connects.get(leader, [])
        moments = connects.get(follower, [])
        return sum(any(abs(m - t) <= 7 * 60 for t in times) for m in moments), len(moments)

    same = [0, 0]
    other = [0, 0]
    leaders = {name: members[0]["id"] for name, members in groups.items()}
    for name, members in groups.items():
        assert len({m["role"] for m in members}) == 1
        assert len({tuple(map(tuple, m["trips"])) for m in members}) == 1
        stranger = next(lead for other_name, lead in leaders.items() if other_name != name)
        for follower in members[1:]:
            for tally, leader in ((same, members[0]["id"]), (other, stranger)):
                near, total = share_near(follower["id"], leader)
                tally[0] += near
                tally[1] += total
    # Wi-Fi dropouts and reboots add connects of their own; coming home is the rest.
    assert same[1] >= 20
    assert same[0] / same[1] >= 3 * other[0] / other[1]


def test_the_habits_mix_varies_watches_tablets_and_wifi_at_night(
        habits: tuple[SimulationResult, dict[str, Any]]) -> None:
    """More watches, tablets that travel, phones off at night, carried second phones."""
    _result, truth = habits
    resident = [d for d in truth["devices"] if d["category"] == "resident"]
    adults = [p for p in truth["people"] if p["lives_here"] and 18 <= p["age"] < 65
              and p["devices"]]
    kinds = Counter(d["kind"] for d in resident)
    assert kinds["watch"] >= 0.2 * len(adults)
    assert any(d["kind"] == "tablet" and d["follows"] == "carried" for d in resident)
    with_phone = [p for p in truth["people"] if p["lives_here"] and p["devices"]]
    assert sum(p["night_wifi_off"] for p in with_phone) >= 0.1 * len(with_phone)
    phones: Counter[str] = Counter(d["owner"] for d in resident
                                   if d["kind"] == "phone" and d["follows"] == "carried")
    assert any(n >= 2 for n in phones.values())  # a carried second phone


def test_habit_shares_are_checked_by_name(tmp_path: Any) -> None:
    """A share outside 0..1 is refused naming the field."""
    with pytest.raises(ConfigError, match="watch_share"):
        SimulationConfig(out=tmp_path, watch_share=1.5)
    with pytest.raises(ConfigError, match="shift_group_share"):
        SimulationConfig(out=tmp_path, shift_group_share=-0.1)
