"""Residents, visitors, infrastructure, neighbours' bleed and corridor placement."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.devices import (
    ap_observed_days,
    choose_home,
    daily_features,
    device_ap_features,
    mark_dozing_devices,
    mark_home_devices,
    packed_masks,
    place_devices,
    zones_for_aps,
)
from analytics.linking import link_addresses
from analytics.rollup import rollup_events
from tests.common import Routine, make_events, pseudonym

WINDOW = Window(last_night=dt.date(2026, 11, 14), nights=14, timezone="Asia/Shanghai")
APS = pd.DataFrame({
    "ap": ["ap-a", "ap-b", "ap-f2", "ap-lobby"],
    "coverage": ["unit", "unit", "floor", "building"],
    "community": ["C1"] * 4, "building": ["B1", "B1", "B2", "B1"],
    "floor": pd.array([1, 1, 2, 1], dtype="Int64"),
    "unit": ["C1/B1/0101", "C1/B1/0102", "", ""],
})
UNITS = pd.DataFrame({
    "unit": ["C1/B1/0101", "C1/B1/0102", "C1/B2/0201", "C1/B2/0202"],
    "community": ["C1"] * 4, "building": ["B1", "B1", "B2", "B2"], "floor": [1, 1, 2, 2],
    "registered": [2, 1, 2, 1], "area_m2": [60.0] * 4, "rented": [False, True, False, True],
    "meter_group": [""] * 4, "residents": [2, 1, 2, 1], "unit_id": [1, 2, 3, 4],
})
NO_BINDINGS = pd.DataFrame(columns=["device", "unit", "resident_id", "randomized", "bound_at",
                                    "revoked_at"])


def classify(routines: list[Routine],
             config: AnalyticsConfig | None = None) -> pd.DataFrame:
    """Roll the routines up and classify their devices; indexed by device name."""
    config = config or AnalyticsConfig()
    presence = rollup_events(make_events(routines, WINDOW), WINDOW, config)
    packed = packed_masks(presence["mask"])
    daily = daily_features(presence, packed, config)
    features = device_ap_features(presence, daily)
    homes = choose_home(features, APS, ap_observed_days(presence), config)
    names = {pseudonym(r.name): r.name for r in routines}
    return homes.assign(name=homes["device"].map(names)).set_index("name")


def test_a_person_who_sleeps_there_and_goes_to_work_is_a_resident() -> None:
    """Home every evening to morning: resident at that AP."""
    homes = classify([Routine("phone", "ap-a")])
    assert homes.at["phone", "class"] == "resident"
    assert homes.at["phone", "home_ap"] == "ap-a"
    assert homes.at["phone", "stay_days"] >= 13


def test_a_night_shift_worker_sleeping_by_day_is_a_resident() -> None:
    """Present 08:00-17:00 every day, never at night: still lives there."""
    homes = classify([Routine("night-shift", "ap-a", home=8.0, leave=17.0)])
    assert homes.at["night-shift", "class"] == "resident"
    assert homes.at["night-shift", "nights"] == 0


def test_evening_visitors_and_occasional_guests_are_not_residents() -> None:
    """Three hours every evening, or a whole night twice, is a visitor."""
    homes = classify([Routine("evening", "ap-a", home=19.0, leave=22.0),
                      Routine("guest", "ap-a", days={3, 9})])
    assert homes.at["evening", "class"] == "visitor"
    assert homes.at["guest", "class"] == "visitor"


def test_an_always_on_device_is_infrastructure() -> None:
    """A smart plug present in every bin never leaves: not a person."""
    homes = classify([Routine("plug", "ap-a", always=True)])
    assert homes.at["plug", "class"] == "infrastructure"


def test_a_device_heard_weakly_through_the_wall_is_a_neighbours() -> None:
    """A resident-like device only ever at -88 dBm on a unit AP lives next door."""
    homes = classify([Routine("next-door", "ap-a", rssi=-88)])
    assert homes.at["next-door", "class"] == "neighbour"


def test_bleed_onto_a_neighbours_ap_does_not_move_a_device() -> None:
    """A phone that sometimes joins the neighbour's AP weakly still lives at its own."""
    own = Routine("phone", "ap-a", rssi=-45)
    bleed = Routine("phone", "ap-b", rssi=-80, home=23.0, leave=1.0, days={2, 5})
    homes = classify([own, bleed])
    assert homes.at["phone", "home_ap"] == "ap-a"
    assert homes.at["phone", "class"] == "resident"
    assert homes.at["phone", "other_aps"] == 1


def test_lobby_aps_never_make_a_home() -> None:
    """People pass through lobbies; a device seen only there has no home."""
    homes = classify([Routine("passer-by", "ap-lobby")])
    assert "passer-by" not in homes.index


def test_corridor_devices_stay_in_the_zone_unless_bound_to_a_resident() -> None:
    """A corridor AP's device is placed in a unit only through a sign-in binding."""
    routines = [Routine("bound", "ap-f2"), Routine("unbound", "ap-f2", home=20.0),
                Routine("own-ap", "ap-a")]
    config = AnalyticsConfig()
    presence = rollup_events(make_events(routines, WINDOW), WINDOW, config)
    packed = packed_masks(presence["mask"])
    homes = choose_home(device_ap_features(presence, daily_features(presence, packed, config)),
                        APS, ap_observed_days(presence), config)
    bindings = pd.DataFrame({"device": [pseudonym("bound")], "unit": ["C1/B2/0202"],
                             "resident_id": [1], "randomized": [False],
                             "bound_at": [dt.datetime(2026, 11, 1, tzinfo=dt.UTC)],
                             "revoked_at": [None]})
    links = link_addresses(presence, bindings, WINDOW.start.timestamp(), WINDOW.end.timestamp())
    placed = place_devices(homes, zones_for_aps(APS, UNITS), links, bindings).set_index("device")
    bound = placed.loc[pseudonym("bound")]
    assert (bound["unit"], bound["placement"], bound["placement_confidence"]) == (
        "C1/B2/0202", "binding", 1.0)
    unbound = placed.loc[pseudonym("unbound")]
    assert (unbound["unit"], unbound["placement"]) == ("", "zone")
    assert unbound["zone_key"] == "C1/B2/0201|C1/B2/0202"
    assert placed.loc[pseudonym("own-ap"), "placement"] == "unit_ap"


def test_zones_list_the_units_each_ap_covers() -> None:
    """Unit APs cover their unit; corridor APs every unit of their floor; lobbies none."""
    zones = zones_for_aps(APS, UNITS)
    assert sorted(zones.loc[zones["ap"] == "ap-f2", "unit"]) == ["C1/B2/0201", "C1/B2/0202"]
    assert list(zones.loc[zones["ap"] == "ap-a", "unit"]) == ["C1/B1/0101"]
    assert "ap-lobby" not in set(zones["ap"])


CONFIG = AnalyticsConfig()
HOME_APS = pd.DataFrame({
    "ap": ["ap-0101", "ap-0102", "ap-lobby", "ap-w-f1", "ap-0101~wall"],
    "community": ["C1"] * 5, "building": ["B1", "B1", "B1", "B2", "B1"],
    "floor": [1, 1, 1, 1, None], "unit": ["C1/B1/0101", "C1/B1/0102", "", "", ""],
    "coverage": ["unit", "unit", "building", "floor", "wall"]})


def residents_at(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Resident home rows: (device, home AP, days seen)."""
    return pd.DataFrame({"device": [r[0] for r in rows], "home_ap": [r[1] for r in rows],
                         "coverage": [HOME_APS.set_index("ap").at[r[1], "coverage"]
                                      for r in rows],
                         "class": "resident", "days": [r[2] for r in rows]})


def lobby_sightings(devices: list[str]) -> pd.DataFrame:
    """Presence rows at the lobby AP for these devices (plus their home rows' AP)."""
    return pd.DataFrame({"device": devices, "ap": "ap-lobby"})


def test_a_device_that_never_passes_the_lobby_while_a_housemate_does_is_a_home_device() -> None:
    """The phone joins the lobby on its way out; the tablet left home never does."""
    homes = residents_at([("phone", "ap-0101", 14), ("tablet", "ap-0101", 14),
                          ("tv", "ap-0101", 3)])
    marked = mark_home_devices(homes, lobby_sightings(["phone"]), HOME_APS, CONFIG)
    assert marked.set_index("device")["class"].to_dict() == {
        "phone": "resident", "tablet": "home_device", "tv": "resident"}  # 3 days: too few


def test_a_flat_heard_through_the_wall_has_its_home_devices_told_apart_the_same_way() -> None:
    """A flat without an AP (its devices on a wall AP): its laptop, never at the lobby while
    its phone is, is a home device too, not a second person."""
    homes = residents_at([("phone", "ap-0101~wall", 14), ("laptop", "ap-0101~wall", 14)])
    marked = mark_home_devices(homes, lobby_sightings(["phone"]), HOME_APS, CONFIG)
    assert marked.set_index("device")["class"].to_dict() == {
        "phone": "resident", "laptop": "home_device"}


def test_nobody_is_made_a_home_device_where_no_device_of_the_home_travels() -> None:
    """A flat whose devices were never at the lobby keeps them all (someone carries one)."""
    homes = residents_at([("phone", "ap-0101", 14), ("tablet", "ap-0101", 14),
                          ("other", "ap-0102", 14)])
    marked = mark_home_devices(homes, lobby_sightings(["other"]), HOME_APS, CONFIG)
    assert set(marked["class"]) == {"resident"}


def test_without_a_lobby_ap_reporting_nothing_is_judged() -> None:
    """Walk-ups (corridor APs) and silent lobbies: the classes stay as they were."""
    homes = residents_at([("phone", "ap-w-f1", 14), ("laptop", "ap-w-f1", 14)])
    assert mark_home_devices(homes, lobby_sightings(["phone"]), HOME_APS,
                             CONFIG)["class"].eq("resident").all()
    homes = residents_at([("phone", "ap-0101", 14), ("laptop", "ap-0101", 14)])
    assert mark_home_devices(homes, pd.DataFrame({"device": ["x"], "ap": ["ap-0102"]}),
                             HOME_APS, CONFIG)["class"].eq("resident").all()


def day_masks(devices: dict[str, tuple[np.ndarray, int]], ap: str) -> tuple[pd.DataFrame,
                                                                             np.ndarray]:
    """Presence rows and their packed masks: each device's one-day bit pattern on N days."""
    rows, masks = [], []
    for device, (bits, days) in devices.items():
        for day in range(days):
            rows.append({"device": device, "ap": ap, "day": day})
            masks.append(np.packbits(bits))
    return pd.DataFrame(rows), np.vstack(masks)


def test_a_device_heard_at_every_hour_but_never_for_long_is_a_home_device() -> None:
    """A tablet left at home wakes for a few minutes every half hour, day and night; no lobby
    AP is needed to tell it from a person. A phone home for the night, a homebody's phone
    there all day, and a laptop used for an evening are not such devices; nor is a dozing
    device seen on too few days to judge."""
    dozing = np.zeros(288, dtype=bool)
    dozing[::6] = True
    night = np.zeros(288, dtype=bool)
    night[156:288] = True  # 19:00 to 06:00
    evening = np.zeros(288, dtype=bool)
    evening[168:192] = True
    presence, packed = day_masks({
        "tablet": (dozing, 14), "phone": (night, 14), "homebody": (np.ones(288, bool), 14),
        "laptop": (evening, 14), "new-tablet": (dozing, 3)}, "ap-w-f1")
    homes = residents_at([(d, "ap-w-f1", n) for d, n in
                          (("tablet", 14), ("phone", 14), ("homebody", 14), ("laptop", 14),
                           ("new-tablet", 3))])
    marked = mark_dozing_devices(homes, presence, packed, CONFIG)
    assert marked.set_index("device")["class"].to_dict() == {
        "tablet": "home_device", "phone": "resident", "homebody": "resident",
        "laptop": "resident", "new-tablet": "resident"}
