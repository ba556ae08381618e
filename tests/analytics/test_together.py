"""People who stay together count, however their phones' addresses are split (issue 16)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.pipeline import analyse_frames
from analytics.rollup import rollup_events, rollup_heard
from tests.common import Routine, household, make_events, pseudonym, registry_frames

WINDOW = Window(last_night=dt.date(2026, 11, 14), nights=14, timezone="Asia/Shanghai")
UNIT, OTHER = "C1/B1/0101", "C1/B1/0102"
APS = pd.DataFrame({
    "ap": ["ap-a", "ap-b"], "coverage": ["unit", "unit"], "community": ["C1"] * 2,
    "building": ["B1"] * 2, "floor": pd.array([1, 1], dtype="Int64"), "unit": [UNIT, OTHER],
})
UNITS = pd.DataFrame({
    "unit_id": [1, 2], "unit": [UNIT, OTHER], "community": ["C1"] * 2,
    "building": ["B1"] * 2, "floor": [1, 1], "area_m2": [90.0, 60.0], "registered": [2, 1],
    "rented": [True, False], "meter_group": ["", ""], "residents": [2, 1],
})
REGISTRY = registry_frames(UNITS, APS)
CONFIG = AnalyticsConfig()


def heard_all_window() -> pd.DataFrame:
    """Both APs reporting every five minutes through the window (so every day is observed)."""
    ticks = np.arange(WINDOW.start.timestamp() + 7, WINDOW.end.timestamp(), 300)
    return pd.DataFrame({"ts": np.tile(ticks, 2), "ap": np.repeat(["ap-a", "ap-b"], len(ticks))})


def analyse(routines: list[Routine]) -> tuple[pd.Series, pd.DataFrame]:
    """The unit's flagged row and its devices, from the routines' presence and the reports."""
    rollup = pd.concat([rollup_events(make_events(routines, WINDOW), WINDOW, CONFIG),
                        rollup_heard(heard_all_window(), WINDOW, CONFIG)], ignore_index=True)
    estimates, tiered = analyse_frames(rollup, REGISTRY, WINDOW, CONFIG)
    devices = estimates.devices
    return tiered.set_index("unit").loc[UNIT], devices.loc[devices["home_ap"] == "ap-a"]


def test_a_group_that_moved_in_with_rotating_phones_is_flagged() -> None:
    """Six people move in on day 8; their phones all take new addresses every second morning
    at once (as at an AP reboot), so no address stays the seven days that make a resident,
    and the rotations are too alike to link. Six stayed there together night after night."""
    arrival = 8
    group = household("ap-a", 6, "g", days=set(range(arrival, 14)), randomized=True)
    for routine in group:
        routine.addresses = [(day, f"{routine.name}-{day}") for day in range(arrival, 14, 2)]
    row, devices = analyse([*group, *household("ap-b", 1, "b")])
    assert (devices["class"] == "resident").sum() == 0  # fragments only: the cause
    assert devices["addresses"].max() < 3  # the mass rotations are left (mostly) unlinked
    assert row["people_detected"] == 6
    assert row["flag"] == "group_rental"


def test_evening_guests_and_a_weekend_visit_are_not_people_who_live_there() -> None:
    """Two residents; on six different days a guest stays five and a half hours, and a couple
    sleeps over two nights: nobody more lives there, nothing is flagged."""
    guests = [Routine(f"guest-{day}", "ap-a", home=17.0, leave=22.5, days={day},
                      randomized=True) for day in (1, 3, 5, 8, 10, 12)]
    couple = household("ap-a", 2, "couple", days={6, 7}, randomized=True)
    row, _devices = analyse([*household("ap-a", 2, "a"), *guests, *couple,
                             *household("ap-b", 1, "b")])
    assert row["people_detected"] == 2
    assert row["estimated"] == 2
    assert row["flag"] == ""


def test_people_who_follow_one_another_are_one_person_at_a_time() -> None:
    """At one flat: a phone whose address rotated unlinked on day 7 is two clusters, days 0-6
    and 7-13 (sharing no day), and counts once; two flatmates all fortnight count twice;
    a cluster that stays while two others follow one another makes two at most."""
    from analytics.estimate import _overlapping

    persons = pd.DataFrame({"person": [0, 1, 2, 3], "home_ap": ["ap-a"] * 3 + ["ap-b"],
                            "unit": [UNIT] * 3 + [OTHER], "devices": [1, 1, 1, 1]})
    days = {0: range(0, 7), 1: range(7, 14), 2: range(0, 14), 3: range(0, 14)}
    stays = pd.DataFrame([(p, d) for p, span in days.items() for d in span],
                         columns=["person", "day"])
    counted = _overlapping(persons, stays).groupby("unit")["counts"].sum()
    assert counted.to_dict() == {UNIT: 2, OTHER: 1}
    # The rotation's halves overlapping by one night (it rotated during a long night) are
    # still one at a time; overlapping by two they are two.
    for second_from, expected in ((6, 2), (5, 3)):
        days[1] = range(second_from, 14)
        stays = pd.DataFrame([(p, d) for p, span in days.items() for d in span],
                             columns=["person", "day"])
        assert _overlapping(persons, stays).groupby("unit")["counts"].sum()[UNIT] == expected


def rotating_daily(name: str, leader: Routine) -> Routine:
    """A phone that comes and goes with ``leader`` and takes a new address every day."""
    return Routine(name, leader.ap, randomized=True, companion_of=leader,
                   addresses=[(day, f"{name}-{day}") for day in range(1, 14)])


def test_night_shift_co_workers_with_rotating_phones_are_not_one_persons_devices() -> None:
    """A night shift of three at a flat's own AP: one phone keeps its address, two take a new
    one every day, and all three sleep there by day and leave together. One rotating address
    there with the person can be the person's own second phone; the second one at the same
    time is someone else. (Before, both were given to the person: one person, not two.)"""
    leader = Routine("shift-0", "ap-a", home=8.0, leave=19.0, jitter_min=10)
    co_workers = [rotating_daily(f"shift-{i}", leader) for i in (1, 2)]
    row, devices = analyse([leader, *co_workers, *household("ap-b", 1, "b")])
    assert (devices["class"] == "resident").sum() == 1  # the rotating phones are fragments
    assert row["people_detected"] == 2


def test_a_persons_rotating_second_phone_is_still_that_persons() -> None:
    """One day worker carries a phone that keeps its address and a second phone that takes
    a new one every day: one person."""
    owner = Routine("owner", "ap-a", home=18.5, leave=7.5, jitter_min=10)
    row, _devices = analyse([owner, rotating_daily("second", owner), *household("ap-b", 1, "b")])
    assert row["people_detected"] == 1


def test_a_corridors_new_group_is_not_absorbed_by_a_neighbour_who_never_leaves() -> None:
    """A corridor AP hears two flats. In one lives a homebody whose phone is there all day but
    an hour; into the other, beside its registered resident, five people move on day 4 with
    phones that all take new addresses every second morning. Each of their addresses lies
    within the homebody's time, as anything does; only a person who was away can own an
    address by containment, so the five still count, and the corridor's Wi-Fi sees a group
    rental. (Before, every address was given to the homebody: the corridor counted two.)"""
    corridor = pd.DataFrame({
        "ap": ["ap-c"], "coverage": ["floor"], "community": ["C1"], "building": ["B1"],
        "floor": pd.array([1], dtype="Int64"), "unit": [None]})
    registry = registry_frames(UNITS.assign(registered=[1, 1], residents=[1, 1]), corridor)
    arrival = 4
    group = household("ap-c", 5, "g", days=set(range(arrival, 14)), randomized=True)
    for routine in group:
        routine.addresses = [(day, f"{routine.name}-{day}") for day in range(arrival, 14, 2)]
    homebody = Routine("homebody", "ap-c", home=9.0, leave=8.0, jitter_min=10)
    routines = [*group, homebody, *household("ap-c", 1, "a")]
    ticks = np.arange(WINDOW.start.timestamp() + 7, WINDOW.end.timestamp(), 300)
    rollup = pd.concat([rollup_events(make_events(routines, WINDOW), WINDOW, CONFIG),
                        rollup_heard(pd.DataFrame({"ts": ticks, "ap": "ap-c"}), WINDOW, CONFIG)],
                       ignore_index=True)
    estimates, tiered = analyse_frames(rollup, registry, WINDOW, CONFIG)
    devices = estimates.devices
    assert (devices.loc[devices["device"].isin(
        {pseudonym("homebody")}), "class"] == "resident").all()
    row = tiered.set_index("unit").loc[UNIT]
    assert row["zone"] == "ap-c"
    assert row["zone_wifi_p_group"] >= CONFIG.flag_wifi_support
