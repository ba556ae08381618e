"""A flat with no AP of its own is heard through a neighbour's wall (issue 16).

Its people's phones join the next flat's AP at a signal too weak to be from inside it. They
used to be dropped as "neighbours", so the flat was estimated from the registry and meters
alone, and a group rental there was never flagged by the Wi-Fi (two of the development
communities' misses).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.devices import (
    WALL_AP_SUFFIX,
    hear_through_walls,
    is_wall_ap,
    packed_masks,
    wall_coverage,
    with_wall_aps,
    zones_for_aps,
)
from analytics.estimate import estimate_occupancy
from analytics.heatmaps import build_heatmaps
from analytics.rollup import rollup_events, rollup_heard, split_heard
from tests.common import Routine, household, make_events, registry_frames

WINDOW = Window(last_night=dt.date(2026, 11, 14), nights=14, timezone="Asia/Shanghai")
CONFIG = AnalyticsConfig()
UNCOVERED = "C1/B1/0103"
APS = pd.DataFrame({
    "ap": ["ap-0101", "ap-0102", "ap-0301", "ap-b2-f1"],
    "coverage": ["unit", "unit", "unit", "floor"],
    "community": ["C1"] * 4, "building": ["B1", "B1", "B1", "B2"],
    "floor": pd.array([1, 1, 3, 1], dtype="Int64"),
    "unit": ["C1/B1/0101", "C1/B1/0102", "C1/B1/0301", ""],
})
UNITS = pd.DataFrame({
    "unit_id": [1, 2, 3, 4, 5, 6],
    "unit": ["C1/B1/0101", "C1/B1/0102", UNCOVERED, "C1/B1/0301", "C1/B2/0101",
             "C1/B2/0102"],
    "community": ["C1"] * 6, "building": ["B1", "B1", "B1", "B1", "B2", "B2"],
    "floor": [1, 1, 1, 3, 1, 1], "area_m2": [80.0] * 6, "registered": [2, 1, 1, 1, 2, 2],
    "rented": [False, False, True, False, False, False], "meter_group": [""] * 6,
    "residents": [2, 1, 1, 1, 2, 2],
})
WEAK = -82  # dBm: through a wall (the unit's own devices are heard at about -50)


def test_each_uncovered_unit_gets_one_wall_ap_of_the_unit_aps_within_a_floor() -> None:
    """0103 has no AP and no corridor AP on its floor: the unit APs of its building within a
    floor share one wall AP for it; 0301, two floors up, and the corridor-covered building
    take no part."""
    walls = wall_coverage(APS, UNITS)
    assert walls == {"ap-0101" + WALL_AP_SUFFIX: (["ap-0101", "ap-0102"], [UNCOVERED])}
    assert all(is_wall_ap(w) for w in walls) and not is_wall_ap("ap-0101")
    table = with_wall_aps(APS, walls).set_index("ap")
    assert table.at["ap-0101~wall", "coverage"] == "wall"
    assert table.at["ap-0101~wall", "building"] == "B1"
    zones = zones_for_aps(with_wall_aps(APS, walls), UNITS, walls)
    assert list(zones.loc[zones["ap"] == "ap-0101~wall", "unit"]) == [UNCOVERED]


def test_every_unit_covered_means_no_wall_aps_and_nothing_moved() -> None:
    """Without an uncovered unit the roll-up is left exactly as it was."""
    covered = UNITS.loc[UNITS["unit"] != UNCOVERED]
    assert wall_coverage(APS, covered) == {}
    presence = rollup_events(make_events([Routine("x", "ap-0102", rssi=WEAK)], WINDOW), WINDOW,
                             CONFIG)
    moved, heard = hear_through_walls(presence, presence.iloc[0:0], {}, CONFIG)
    assert moved is presence and heard.empty


def test_only_weak_devices_move_and_the_wall_ap_is_heard_when_either_unit_ap_is() -> None:
    """The neighbour flat's own phone stays at its AP; the weak one moves. ap-0102 silent on
    days 3-5 while ap-0101 reports: the wall AP is heard on every day."""
    walls = wall_coverage(APS, UNITS)
    events = make_events([Routine("own", "ap-0102"), Routine("through", "ap-0102", rssi=WEAK)],
                         WINDOW)
    rollup = rollup_events(events, WINDOW, CONFIG)
    start = WINDOW.start.timestamp()
    ticks = np.arange(start + 7, WINDOW.end.timestamp(), 300)
    reports = pd.DataFrame({"ts": np.tile(ticks, 2), "ap": np.repeat(["ap-0101", "ap-0102"],
                                                                     len(ticks))})
    rel = reports["ts"] - start
    reports = reports.loc[~((reports["ap"] == "ap-0102") & (rel >= 3 * 86400)
                            & (rel < 6 * 86400))]
    presence, heard = split_heard(pd.concat([rollup, rollup_heard(reports, WINDOW, CONFIG)],
                                            ignore_index=True))
    moved, heard_after = hear_through_walls(presence, heard, walls, CONFIG)
    by_device = moved.groupby("device")["ap"].agg(set)
    own, through = (by_device[d] for d in sorted(by_device.index, key=lambda d: moved.loc[
        moved["device"] == d, "rssi_mean"].median(), reverse=True))
    assert own == {"ap-0102"} and through == {"ap-0101~wall"}
    wall_days = heard_after.loc[heard_after["ap"] == "ap-0101~wall"]
    assert len(wall_days) == 14 and (wall_days["bins"] >= 287).all()
    assert len(heard_after) == len(heard) + 14  # the real APs' rows are kept as they were


def test_a_group_rental_with_no_ap_is_counted_through_the_wall_and_the_neighbours_are_not_changed(
        ) -> None:
    """Six people live in 0103 (one registered), their phones weak on ap-0102. The flat is
    estimated at six from the Wi-Fi and can be flagged; 0101 and 0102 keep their own
    counts, and a 0101 phone that sometimes bleeds weakly onto ap-0102 stays 0101's."""
    routines = [*household("ap-0101", 2, "a"), *household("ap-0102", 1, "b"),
                *household("ap-0102", 6, "crowd", rssi=WEAK), *household("ap-0301", 1, "c"),
                Routine("a-p0", "ap-0102", rssi=-85, home=23.0, leave=1.0, days={2, 5, 9})]
    rollup = rollup_events(make_events(routines, WINDOW), WINDOW, CONFIG)
    estimates = estimate_occupancy(rollup, registry_frames(UNITS, APS), WINDOW, CONFIG)
    row = estimates.units.set_index("unit")
    assert row.at[UNCOVERED, "coverage"] == "neighbour_ap"
    assert row.at[UNCOVERED, "zone"] == "ap-0101~wall"
    assert row.at[UNCOVERED, "nights_observed"] == 14
    assert 5 <= row.at[UNCOVERED, "estimated"] <= 7
    assert row.at[UNCOVERED, "p_plus_two"] >= CONFIG.flag_confidence
    assert row.at["C1/B1/0101", "estimated"] == 2 and row.at["C1/B1/0102", "estimated"] == 1
    assert row.at["C1/B1/0101", "coverage"] == "unit_ap"
    # The heatmaps show the flat's nights from its wall AP; next door's stay its own.
    maps = build_heatmaps(estimates.presence, packed_masks(estimates.presence["mask"]),
                          estimates.devices, APS, UNITS, WINDOW, CONFIG, walls=estimates.walls)
    nights = maps["unit_by_night"]
    assert nights.loc[UNCOVERED].median() == 6
    assert nights.loc["C1/B1/0102"].median() == 1 and nights.loc["C1/B1/0101"].median() == 2
    # Nobody weak at the unit APs: the flat is seen empty of Wi-Fi, not as six people.
    quiet = [r for r in routines if r.rssi != WEAK]
    rollup = rollup_events(make_events(quiet, WINDOW), WINDOW, CONFIG)
    units = estimate_occupancy(rollup, registry_frames(UNITS, APS), WINDOW, CONFIG).units
    assert units.set_index("unit").at[UNCOVERED, "estimated"] <= 1


def test_wall_ap_ids_fit_where_ap_ids_are_stored_even_for_the_longest_ap_ids() -> None:
    """A wall AP's id becomes the unit's stored zone (64 characters at most, as AP ids): two
    64-character unit APs alike in their first 59 characters still get two distinct ids."""
    long_a, long_b = "a" * 63 + "1", "a" * 63 + "2"
    aps = pd.DataFrame({
        "ap": [long_a, long_b], "coverage": ["unit", "unit"], "community": ["C1"] * 2,
        "building": ["B1", "B1"], "floor": pd.array([1, 9], dtype="Int64"),
        "unit": ["C1/B1/0101", "C1/B1/0901"]})
    units = pd.DataFrame({
        "unit": ["C1/B1/0101", "C1/B1/0102", "C1/B1/0901", "C1/B1/0902"],
        "community": ["C1"] * 4, "building": ["B1"] * 4, "floor": [1, 1, 9, 9]})
    walls = wall_coverage(aps, units)
    assert sorted(covered for _sources, covered in walls.values()) == [
        ["C1/B1/0102"], ["C1/B1/0902"]]
    assert len(walls) == 2 and all(len(w) <= 64 and is_wall_ap(w) for w in walls)
