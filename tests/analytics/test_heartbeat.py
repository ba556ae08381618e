"""The APs' own reports (ap_heartbeat) tell "AP silent" apart from "nobody home"."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.estimate import estimate_occupancy
from analytics.rollup import AP_HEARD, rollup_events, rollup_heard, split_heard
from tests.common import Routine, household, make_events, registry_frames

WINDOW = Window(last_night=dt.date(2026, 11, 14), nights=14, timezone="Asia/Shanghai")
UNIT = "C1/B1/0101"
APS = pd.DataFrame({
    "ap": ["ap-a", "ap-b"], "coverage": ["unit", "unit"], "community": ["C1"] * 2,
    "building": ["B1"] * 2, "floor": pd.array([1, 1], dtype="Int64"),
    "unit": [UNIT, "C1/B1/0102"],
})
UNITS = pd.DataFrame({
    "unit_id": [1, 2], "unit": [UNIT, "C1/B1/0102"], "community": ["C1"] * 2,
    "building": ["B1"] * 2, "floor": [1, 1], "area_m2": [80.0, 60.0], "registered": [2, 1],
    "rented": [True, False], "meter_group": ["", ""], "residents": [2, 1],
})
REGISTRY = registry_frames(UNITS, APS)
CONFIG = AnalyticsConfig()
DAY_S = 86400


def community() -> pd.DataFrame:
    """Three people (two registered) and an always-on TV at ap-a; one person at ap-b."""
    routines = [*household("ap-a", 3, "a"), Routine("a-tv", "ap-a", always=True),
                *household("ap-b", 1, "b")]
    return make_events(routines, WINDOW)


def reports(aps: list[str], interval: int = 300) -> pd.DataFrame:
    """Every AP reporting every ``interval`` seconds through the window (keep-alives included)."""
    start = WINDOW.start.timestamp()
    ticks = np.arange(start + 7, WINDOW.end.timestamp(), interval)
    return pd.DataFrame({"ts": np.tile(ticks, len(aps)), "ap": np.repeat(aps, len(ticks))})


def silent(frame: pd.DataFrame, ap: str, down: list[tuple[float, float]]) -> pd.DataFrame:
    """The frame without the AP's rows in the given (from, to) seconds of the window."""
    rel = frame["ts"] - WINDOW.start.timestamp()
    drop = np.zeros(len(frame), dtype=bool)
    for low, high in down:
        drop |= (frame["ap"] == ap).to_numpy() & (rel >= low).to_numpy() & (rel < high).to_numpy()
    return frame.loc[~drop].reset_index(drop=True)


def estimate(events: pd.DataFrame, heard: pd.DataFrame | None) -> pd.Series:
    """The unit's row from presence and, when given, the APs' reports."""
    rollup = rollup_events(events, WINDOW, CONFIG)
    if heard is not None:
        rollup = pd.concat([rollup, rollup_heard(heard, WINDOW, CONFIG)], ignore_index=True)
    units = estimate_occupancy(rollup, REGISTRY, WINDOW, CONFIG).units
    return units.set_index("unit").loc[UNIT]


def test_the_reports_roll_up_into_one_heard_row_per_ap_and_day() -> None:
    """An AP reporting all day is heard in all 288 bins; its row is split off from devices'."""
    heard = rollup_heard(reports(["ap-a"]), WINDOW, CONFIG)
    assert set(heard["device"]) == {AP_HEARD} and len(heard) == 14
    assert (heard["bins"] == 288).all()
    rollup = pd.concat([rollup_events(community(), WINDOW, CONFIG), heard], ignore_index=True)
    devices, aps = split_heard(rollup)
    assert AP_HEARD not in set(devices["device"]) and len(aps) == 14


def test_an_ap_down_for_nights_neither_lowers_the_estimate_nor_counts_them_as_empty() -> None:
    """Five nights silent: still three people, and those nights are not observed nights."""
    events, heard = community(), reports(["ap-a", "ap-b"])
    before = estimate(events, heard)
    down = [(4 * DAY_S, 9 * DAY_S)]
    during = estimate(silent(events, "ap-a", down), silent(heard, "ap-a", down))
    assert before["estimated"] == 3 and before["nights_observed"] == 14
    assert during["estimated"] == before["estimated"]
    assert during["nights_observed"] == 9  # the nine it was heard on, no fewer
    assert during["people_detected"] == before["people_detected"]


def test_an_ap_heard_with_nobody_there_is_an_observed_empty_night() -> None:
    """Heard but nobody seen: the nights are observed (and empty), not missing."""
    away = [(4 * DAY_S, 9 * DAY_S)]
    events = silent(community(), "ap-a", away)  # the household away; the AP keeps reporting
    with_reports = estimate(events, reports(["ap-a", "ap-b"]))
    inferred = estimate(events, None)  # older data: no reports stored
    assert with_reports["nights_observed"] == 14
    assert inferred["nights_observed"] == 9


def test_a_daily_outage_does_not_turn_an_always_on_tv_into_a_person() -> None:
    """Down 10:00-16:00 every day: the TV is infrastructure when the AP's reports say so."""
    down = [(d * DAY_S + 4 * 3600, d * DAY_S + 10 * 3600) for d in range(14)]  # from 06:00
    events = silent(community(), "ap-a", down)
    with_reports = estimate(events, silent(reports(["ap-a", "ap-b"]), "ap-a", down))
    assert with_reports["estimated"] == 3
    assert with_reports["resident_devices"] == 3
    inferred = estimate(events, None)
    assert inferred["resident_devices"] == 4  # without reports the outage hides the TV
