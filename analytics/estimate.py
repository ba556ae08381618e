"""Occupancy per unit: the pure pipeline from the roll-up and registry frames to estimates.

``estimate_occupancy`` runs the steps in order (address linking, device classes and homes,
placement in units or corridor zones, devices to people, the utility signal, the posterior per
unit) and returns the frames the flags, tiers, heatmaps and reports are made from. It reads
nothing itself: the caller loads the frames (``analytics.rollup``, ``analytics.loaders``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analytics.config import BINS_PER_DAY, AnalyticsConfig, Window
from analytics.devices import (
    choose_home,
    count_bins_window,
    daily_features,
    device_ap_features,
    hear_through_walls,
    is_wall_ap,
    mark_dozing_devices,
    mark_home_devices,
    night_bins,
    packed_masks,
    place_devices,
    wall_coverage,
    with_wall_aps,
    zones_for_aps,
)
from analytics.linking import apply_links, link_addresses
from analytics.loaders import RegistryFrames, records
from analytics.people import (
    Prior,
    capacity,
    dilate,
    district_interval_mass,
    fit_detection,
    fit_prior,
    fit_utility_weight,
    group_people,
    prior_distribution,
    summarise,
    timelines,
    unit_posterior,
    wifi_likelihood,
    zone_posteriors,
)
from analytics.rollup import split_heard
from analytics.utility import daily_consumption, utility_evidence

LOGGER = logging.getLogger(__name__)

UNIT_RESULT_COLUMNS = [
    "unit", "community", "building", "floor", "registered", "rented", "coverage",
    "nights_observed", "resident_devices", "people_detected", "estimated", "mean", "low", "high",
    "p_plus_one", "p_plus_two", "wifi_p_plus_two", "zone_wifi_p_group", "persistence",
    "weeks_observed", "utility_ratio", "utility_people", "zone", "zone_units",
]


@dataclass
class Estimates:
    """What the estimator found, as frames (all pseudonymous)."""

    units: pd.DataFrame
    devices: pd.DataFrame
    links: pd.DataFrame
    prior: Prior
    presence: pd.DataFrame = field(repr=False)
    # Each analysed unit's posterior over N = 0..max_people (``analytics calibrate`` reads
    # intervals of other masses from them).
    posteriors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # The central posterior mass of this district's reported intervals.
    interval_mass: float = 0.9
    # A wall AP per group of uncovered units (``analytics.devices.wall_coverage``: id -> its
    # unit APs, the units it covers); ``presence`` and ``devices`` name them as APs.
    walls: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict, repr=False)


def estimate_occupancy(rollup: pd.DataFrame, registry: RegistryFrames, window: Window,
                       config: AnalyticsConfig | None = None,
                       progress: Callable[[str], None] | None = None) -> Estimates:
    """Estimate people per unit from the window's roll-up and the registry."""
    config = config or AnalyticsConfig()
    step = progress or (lambda _name: None)
    units = registry.units
    start_s, end_s = window.start.timestamp(), window.end.timestamp()

    rollup, heard = split_heard(rollup)
    step("linking randomized addresses")
    links = link_addresses(rollup, registry.bindings, start_s, end_s, config)
    presence = apply_links(rollup, links).reset_index(drop=True)
    walls = wall_coverage(registry.aps, units)
    presence, heard = hear_through_walls(presence, heard, walls, config)
    aps = with_wall_aps(registry.aps, walls)
    packed = packed_masks(presence["mask"]) if len(presence) else np.zeros((0, 36), np.uint8)

    step("classifying devices")
    daily = daily_features(presence, packed, config)
    daily["away"] = away_while_heard(presence, packed, heard, daily["away"].to_numpy())
    features = device_ap_features(presence, daily)
    observation = ap_observation(presence, heard, config)
    days_heard = observation.groupby("ap")["day_share"].sum()
    homes = mark_home_devices(choose_home(features, aps, days_heard, config), presence, aps,
                              config)
    homes = mark_dozing_devices(homes, presence, packed, config)
    coverage = zones_for_aps(aps, units, walls)
    placed = place_devices(homes, coverage, links, registry.bindings)
    address_count = links.groupby("logical").size()
    placed["addresses"] = placed["device"].map(address_count).fillna(1).astype("int64")

    step("grouping devices into people")
    day_index = {d: i for i, d in enumerate(window.days)}
    residents = placed.loc[placed["class"] == "resident"]
    home_key = presence["device"] + "\x00" + presence["ap"]
    resident_keys = residents["device"] + "\x00" + residents["home_ap"]
    at_home = home_key.isin(set(resident_keys)).to_numpy()
    home_rows = presence.loc[at_home]
    home_packed = packed[at_home]
    home_stay = daily["stay"].to_numpy()[at_home]
    person_of: dict[str, int] = {}
    person_score: dict[str, float] = {}
    next_person = 0
    ap_rows = home_rows.groupby("ap").indices
    home_devices = home_rows["device"].to_numpy()
    home_days = home_rows["day"].to_numpy()
    for ap, devices_here in residents.groupby("home_ap", sort=True)["device"]:
        devices = list(devices_here)
        idx = ap_rows.get(ap, np.array([], dtype=np.int64))
        rows = pd.DataFrame({"device": home_devices[idx], "day": home_days[idx]})
        lines = timelines(rows, home_packed[idx], devices, day_index, len(window.days))
        people, scores = group_people(devices, lines, config)
        for device, p, score in zip(devices, people, scores, strict=True):
            person_of[device] = next_person + p
            person_score[device] = score
        next_person += max(people) + 1 if people else 0
    placed["person"] = placed["device"].map(person_of).fillna(-1).astype("int64")
    placed["person_score"] = placed["device"].map(person_score).astype("float64")

    together = people_together(presence, packed, daily, placed, day_index, len(window.days))

    step("reading the utility signal")
    consumption = daily_consumption(registry.utilities, window.first_night,
                                    window.days[-1], config.utility_kinds)
    util_frame, util_logliks = utility_evidence(units, consumption, config)

    step("estimating people per unit")
    wifi = wifi_evidence(placed, observation, home_rows, home_stay, person_of, day_index,
                         len(window.days), together, config)
    meters = MeterEvidence(util_frame.set_index("unit") if not util_frame.empty
                           else pd.DataFrame(), util_logliks)
    posteriors: dict[str, np.ndarray] = {}
    result, prior, mass = unit_results(units, unit_coverage(aps, coverage), wifi,
                                       meters, len(window.days), config, posteriors)
    return Estimates(units=result, devices=placed, links=links, prior=prior, presence=presence,
                     posteriors=posteriors, interval_mass=mass, walls=walls)


@dataclass(frozen=True)
class Coverage:
    """How each unit is seen: its own AP(s), or a corridor AP shared with its floor."""

    own_ap: dict[str, list[str]]  # unit -> its own APs
    zones: dict[str, list[str]]  # corridor AP -> the units it alone covers (sorted)


@dataclass(frozen=True)
class WifiEvidence:
    """What the Wi-Fi says, per AP and per unit, ready for the posteriors."""

    nights_by_ap: pd.Series  # nights each AP reported on
    detected_by_unit: pd.Series  # person-clusters placed in a unit with certainty
    unplaced_by_ap: pd.Series  # person-clusters of a corridor AP not placed in a unit
    devices_by_ap: pd.Series  # resident devices per home AP
    devices_by_unit: pd.Series  # resident devices placed in a unit
    weekly_by_ap: dict[str, list[int]]  # people with two or more stay days, per week
    observed_weeks_by_ap: dict[str, list[bool]]  # weeks with at least three days of data
    # People who stayed there together, held on ``together_min_days`` days, per AP.
    together_by_ap: dict[str, int] = field(default_factory=dict)

    def unit_detected(self, unit: str, aps_here: list[str]) -> int:
        """People seen in a unit with its own AP(s): its person-clusters, or more when that
        many stayed there together on enough days."""
        clusters = int(self.detected_by_unit.get(unit, 0))
        return max([clusters, *(self.together_by_ap.get(a, 0) for a in aps_here)])


@dataclass(frozen=True)
class MeterEvidence:
    """The utility signal per unit: its summary frame (indexed by unit) and log-likelihoods."""

    frame: pd.DataFrame
    logliks: dict[str, np.ndarray]

    def value(self, unit: str, column: str) -> float | None:
        """One summary value of a unit, or None."""
        return _maybe(self.frame, unit, column)


def unit_coverage(aps: pd.DataFrame, coverage: pd.DataFrame) -> Coverage:
    """Which units have their own AP and which corridor AP covers the others."""
    unit_aps = aps.loc[(aps["coverage"] == "unit") & (aps["unit"] != "")]
    own_ap = unit_aps.groupby("unit")["ap"].apply(list).to_dict()
    corridor = coverage.loc[coverage["ap"].isin(
        aps.loc[aps["coverage"].isin(["floor", "wall"]), "ap"])]
    zone_units = corridor.loc[~corridor["unit"].isin(own_ap)].groupby("ap")["unit"].apply(list)
    zones = {str(ap): sorted(str(u) for u in covered) for ap, covered in zone_units.items()}
    return Coverage(own_ap={str(u): list(a) for u, a in own_ap.items()}, zones=zones)


OBSERVATION_COLUMNS = ["ap", "day", "day_share", "night_share"]


def away_while_heard(presence: pd.DataFrame, packed: np.ndarray, heard: pd.DataFrame,
                     away: np.ndarray) -> np.ndarray:
    """Per roll-up row, away that day: a whole 40-minute block unseen while its AP was heard.

    An AP that was down for an hour made every device look away, so a TV that never leaves
    stopped looking like one; a block the AP was not heard in says nothing. Rows of APs
    without report rows that day keep ``away`` (inferred from the sightings alone).
    """
    if heard.empty or presence.empty:
        return away
    heard_packed = packed_masks(heard["mask"])
    index = {key: i for i, key in enumerate(zip(heard["ap"], heard["day"], strict=True))}
    rows = np.fromiter((index.get(key, -1) for key in zip(presence["ap"], presence["day"],
                                                          strict=True)),
                       dtype=np.int64, count=len(presence))
    known = rows >= 0
    out = away.copy()
    out[known] = ((packed[known] == 0) & (heard_packed[rows[known]] == 0xFF)).any(axis=1)
    return out


def ap_observation(presence: pd.DataFrame, heard: pd.DataFrame,
                   config: AnalyticsConfig) -> pd.DataFrame:
    """Per AP and day it was observed: the share of the day and of the night it was heard.

    The AP's own reports (its ``AP_HEARD`` roll-up rows, from ``ap_heartbeat``) are the
    evidence where they exist: a day the AP was heard with nobody there is observed and empty,
    a day it was silent (down, unplugged, its uplink cut) is not observed at all, and a day it
    was down for part of is observed for that part only. Where an AP has no report rows that
    day (data from before the collector stored heartbeats), a day with any device seen counts
    as observed, whole, as before.
    """
    start, end = night_bins(config)
    parts = []
    if not heard.empty:
        packed = packed_masks(heard["mask"])
        parts.append(pd.DataFrame({
            "ap": heard["ap"].to_numpy(), "day": heard["day"].to_numpy(),
            "day_share": heard["bins"].to_numpy(dtype=float) / BINS_PER_DAY,
            "night_share": count_bins_window(packed, start, end) / float(end - start)}))
    if not presence.empty:
        seen = presence[["ap", "day"]].drop_duplicates()
        if parts:
            known = set(zip(parts[0]["ap"], parts[0]["day"], strict=True))
            seen = seen.loc[[key not in known for key in zip(seen["ap"], seen["day"],
                                                              strict=True)]]
        parts.append(seen.assign(day_share=1.0, night_share=1.0))
    if not parts:
        return pd.DataFrame(columns=OBSERVATION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[OBSERVATION_COLUMNS]


TOGETHER_MIN_BINS = 12  # a count of people present together holds for an hour of the day
# Share of an address's time that lies within one resident person's (within five minutes)
# for the address to be that person's device rather than another sleeper.
FRAGMENT_CONTAINED = 0.97
# Containment says something only where the person was away: an address that lies within
# the time of a person who never leaves (a homebody, a phone left on) lies within it whoever
# owns it. On a corridor, where one person may take any number of addresses, the person must
# have been away this many bins a day (six hours), on average over the address's days.
FRAGMENT_TEST_AWAY_BINS = 72
SLEEP_BINS = 96  # eight hours in a day: time to have slept there, by night or by day
# A fragment's first and last days may be cut short by the rotations that bound it.
FRAGMENT_PARTIAL_DAYS = 2


def people_together(presence: pd.DataFrame, packed: np.ndarray, daily: pd.DataFrame,
                    placed: pd.DataFrame, day_index: Mapping[Any, int],
                    n_days: int) -> dict[str, np.ndarray]:
    """Per home AP and day of the window, how many people stayed there together.

    A day's people are the resident persons that made a stay day there (``min_stay_bins``)
    and the other (visitor-class) addresses that slept there: present in the night window
    (``min_night_bins``) or for ``SLEEP_BINS`` (a night-shift worker sleeps by day); the
    count is the most of them present in the same five minutes for ``TOGETHER_MIN_BINS``
    bins of the day (an AP reboot, where every address changes at once, overlaps old and new
    for a bin or two). Linking leaves such a mass rotation unlinked and cannot link a phone
    that takes a new address at each reconnect, so a household that moved in lately is, for
    its first weeks, mostly fragments of a few days that never reach ``resident_min_days``;
    fragments of one phone follow each other and are never there at once, so counting what is
    there together counts the phone once, and an address only ever there while one resident person
    is counts as that person (``_owned_fragments``). Home devices, infrastructure and
    neighbours' bleed are left out; a guest who stays a day or two is left out by
    ``together_min_days`` and ``_held``.
    """
    # A fragment of someone living here stays on (nearly) every day it is seen; a laptop or
    # tablet used now and then, and a guest who comes for evenings, do not.
    sleeper = ((placed["class"] == "visitor")
               & (placed["stay_days"] >= placed["days"] - FRAGMENT_PARTIAL_DAYS)
               & (2 * placed["stay_days"] >= placed["days"]))
    counted = placed.loc[((placed["class"] == "resident") | sleeper)
                         & placed["coverage"].isin(["unit", "floor"])]
    if counted.empty or presence.empty:
        return {}
    who_of = dict(zip(counted["device"],
                      np.where(counted["person"].to_numpy() >= 0,
                               "p" + counted["person"].astype(str).to_numpy(),
                               "d" + counted["device"].astype(str).to_numpy()), strict=True))
    home = dict(zip(counted["device"], counted["home_ap"], strict=True))
    resident = set(counted.loc[counted["class"] == "resident", "device"])
    is_resident = presence["device"].isin(resident).to_numpy()
    slept = daily["night"].to_numpy() | (presence["bins"].to_numpy() >= SLEEP_BINS)
    keep = daily["stay"].to_numpy() & (is_resident | slept)
    keep &= (presence["device"].map(home) == presence["ap"]).to_numpy()
    keep &= presence["day"].isin(set(day_index)).to_numpy()
    if not keep.any():
        return {}
    rows = presence.loc[keep]
    bits = np.unpackbits(packed[keep], axis=1).astype(np.int64)
    frame = pd.DataFrame({"ap": rows["ap"].to_numpy(),
                          "day": [day_index[d] for d in rows["day"]],
                          "who": [who_of[d] for d in rows["device"]]})
    own_aps = set(counted.loc[counted["coverage"] == "unit", "home_ap"])
    frame["who"] = _owned_fragments(frame, bits, own_aps)
    # One person's devices (or one address's rows) count once per bin.
    person_bits = pd.DataFrame(bits).groupby([frame["ap"], frame["day"], frame["who"]]).max()
    per_day = person_bits.groupby(level=["ap", "day"]).sum()
    held = np.sort(per_day.to_numpy(), axis=1)[:, ::-1][:, TOGETHER_MIN_BINS - 1]
    out: dict[str, np.ndarray] = {}
    for (ap, day), count in zip(per_day.index, held, strict=True):
        out.setdefault(str(ap), np.zeros(n_days, dtype=np.int64))[int(day)] = int(count)
    return out


def _owned_fragments(frame: pd.DataFrame, bits: np.ndarray,
                     single_household: set[str]) -> pd.Series:
    """``frame["who"]`` with each address that is only ever there while one resident person
    is (within five minutes) given to that person: a tablet or second phone that takes a new
    address at each reconnect stays on while its owner is home, and is not another sleeper.

    At a flat's own AP (``single_household``) a person takes one such device: the addresses
    given to one person follow each other (overlapping by less than ``TOGETHER_MIN_BINS`` a
    day, as one device's do at a rotation). A second address there at the same time is
    another sleeper: night-shift co-workers come home and leave within minutes of each other,
    so a co-worker's rotating phone is always there while the person is, and was counted as
    the person's own device. A corridor AP's persons are fewer than its people (a reboot
    splits residents' phones into halves too short to be residents), so there every address
    a person holds stays its own, but only a person who was away for a quarter of those days
    (``FRAGMENT_TEST_AWAY_BINS``) can hold it: a neighbour heard day and night took every
    newcomer of a corridor's new group rental, which was counted 6 for 15 people.
    """
    who = frame["who"].copy()
    key = frame["ap"].astype(str) + "\x00" + frame["day"].astype(str)
    for ap, rows in frame.groupby("ap").indices.items():
        labels = frame["who"].to_numpy()[rows]
        persons = sorted({w for w in labels if w.startswith("p")})
        fragments = sorted({w for w in labels if w.startswith("d")})
        if not persons or not fragments:
            continue
        days = key.to_numpy()[rows]
        present: dict[tuple[str, str], np.ndarray] = {}
        for label, day, row in zip(labels, days, rows, strict=True):
            mark = bits[row].astype(bool)
            if label.startswith("p"):
                mark = dilate(mark[None, :])[0]
            previous = present.get((label, day))
            present[(label, day)] = mark if previous is None else previous | mark
        taken: dict[tuple[str, str], np.ndarray] = {}  # (person, day) -> given addresses' bins
        for fragment in fragments:
            own_days = [d for (w, d) in present if w == fragment]
            total = sum(int(present[(fragment, d)].sum()) for d in own_days)
            for person in persons:
                inside = sum(int((present[(fragment, d)] & present[(person, d)]).sum())
                             for d in own_days if (person, d) in present)
                if not total or inside < FRAGMENT_CONTAINED * total:
                    continue
                if ap in single_household:
                    if any(int((present[(fragment, d)] & taken[(person, d)]).sum())
                           >= TOGETHER_MIN_BINS for d in own_days if (person, d) in taken):
                        continue
                    for d in own_days:
                        previous = taken.get((person, d))
                        mark = present[(fragment, d)]
                        taken[(person, d)] = mark if previous is None else previous | mark
                elif (_away_bins(present, person, own_days)
                      < FRAGMENT_TEST_AWAY_BINS * len(own_days)):
                    continue
                who.iloc[rows[labels == fragment]] = person
                break
    return who


def _away_bins(present: Mapping[tuple[str, str], np.ndarray], person: str,
               days: list[str]) -> int:
    """Bins of ``days`` in which ``person`` was not there (a day without them: all)."""
    return sum(int((~present[(person, day)]).sum()) if (person, day) in present
               else BINS_PER_DAY for day in days)


def _held(counts: np.ndarray, days: int) -> int:
    """The most people who stayed together on ``days`` days and on at least half of the days
    since that many first did (0 if none): a household is there day after day, guests come
    and go.
    """
    for count in range(int(counts.max(initial=0)), 0, -1):
        reached = counts >= count
        since = len(counts) - int(np.argmax(reached))
        if reached.sum() >= days and 2 * reached.sum() >= since:
            return count
    return 0


def wifi_evidence(placed: pd.DataFrame, observation: pd.DataFrame, home_rows: pd.DataFrame,
                  home_stay: np.ndarray, person_of: dict[str, int],
                  day_index: Mapping[Any, int], n_days: int,
                  together: Mapping[str, np.ndarray] | None = None,
                  config: AnalyticsConfig | None = None) -> WifiEvidence:
    """Counts per AP and unit: nights, people placed, resident devices, people per week.

    An AP's nights are the nights it was heard, a partly heard night counting as its share.
    ``together`` (``people_together``) adds the people who stayed there together: per AP the
    count reached on ``together_min_days`` days, and per week the count reached on two days
    (as a week's people are those with two stay days).
    """
    config = config or AnalyticsConfig()
    together = together or {}
    persons = _person_unit(placed)
    resident_devices = placed.loc[placed["class"] == "resident"]
    # Weekly people per AP (persistence): people with two or more stay days at home that week.
    weeks = _weeks(n_days)
    day_of_row = np.fromiter((day_index[d] for d in home_rows["day"]), dtype=np.int64,
                             count=len(home_rows))
    week_of_row = np.minimum(day_of_row // 7, weeks - 1)
    stays = pd.DataFrame({"ap": home_rows["ap"].to_numpy(), "week": week_of_row,
                          "day": day_of_row,
                          "person": home_rows["device"].map(person_of).to_numpy(),
                          "stay": home_stay})
    stays = stays.loc[stays["stay"] & (stays["person"] >= 0)]
    persons = _overlapping(persons, stays)
    per_person = stays.groupby(["ap", "week", "person"]).size()
    weekly = per_person.loc[per_person >= 2].groupby(level=["ap", "week"]).size()
    weekly_by_ap: dict[str, list[int]] = {}
    for (ap, week), count in zip(weekly.index, weekly.to_numpy(), strict=True):
        weekly_by_ap.setdefault(str(ap), [0] * weeks)[int(week)] = int(count)
    for ap, counts in together.items():
        week_counts = weekly_by_ap.setdefault(ap, [0] * weeks)
        for week in range(weeks):
            end = n_days if week == weeks - 1 else (week + 1) * 7
            week_counts[week] = max(week_counts[week], _held(counts[week * 7:end], 2))
    nights = observation.groupby("ap")["night_share"].sum() if not observation.empty else (
        pd.Series(dtype="float64"))
    return WifiEvidence(
        nights_by_ap=(nights + 1e-9).round().astype("int64"),
        detected_by_unit=(persons.loc[persons["unit"] != ""].groupby("unit")["counts"].sum()
                          if not persons.empty else pd.Series(dtype="int64")),
        unplaced_by_ap=(persons.loc[persons["unit"] == ""].groupby("home_ap")["counts"].sum()
                        if not persons.empty else pd.Series(dtype="int64")),
        devices_by_ap=resident_devices.groupby("home_ap").size(),
        devices_by_unit=resident_devices.loc[resident_devices["unit"] != ""].groupby(
            "unit").size(),
        weekly_by_ap=weekly_by_ap,
        observed_weeks_by_ap=_observed_weeks(observation, day_index, n_days),
        together_by_ap={ap: _held(counts, config.together_min_days)
                        for ap, counts in together.items()},
    )


def fit_district(units: pd.DataFrame, cover: Coverage, wifi: WifiEvidence,
                 meters: MeterEvidence, caps: Mapping[str, int],
                 config: AnalyticsConfig) -> tuple[Prior, AnalyticsConfig]:
    """The district's prior, detection chance and meter weight, fitted on units with their
    own AP.

    Returns the fitted prior and the configuration with the fitted detection chance and
    utility weight.
    """
    fit_r, fit_d, fit_units = [], [], []
    for ref, registered in zip(units["unit"], units["registered"], strict=True):
        aps_here = cover.own_ap.get(ref, [])
        nights = max((int(wifi.nights_by_ap.get(a, 0)) for a in aps_here), default=0)
        if aps_here and nights >= config.min_nights_observed and config.wifi_weight > 0:
            fit_r.append(int(registered))
            fit_d.append(wifi.unit_detected(str(ref), aps_here))
            fit_units.append(str(ref))
    if config.detect_fit and len(fit_r) >= config.detect_fit_min_units:
        q = fit_detection(fit_r, fit_d, Prior.from_config(config), config)
        LOGGER.info("fitted detection probability over %d units: %.2f", len(fit_r), q)
        config = dataclasses.replace(config, detect_probability=q)
    prior = fit_prior(fit_r, fit_d, Prior.from_config(config), config)
    LOGGER.info("fitted prior over %d units: %s", len(fit_r), prior)
    metered = sum(1 for u in fit_units if u in meters.logliks)
    if (config.utility_weight_fit and config.utility_weight > 0
            and metered >= config.detect_fit_min_units):
        w = fit_utility_weight(fit_r, fit_d, [meters.logliks.get(u) for u in fit_units],
                               [caps[u] for u in fit_units], prior, config)
        LOGGER.info("fitted utility weight over %d metered units: %.2f", metered, w)
        config = dataclasses.replace(config, utility_weight=w)
    return prior, config


def _registry_columns(unit: Mapping[str, Any], meters: MeterEvidence) -> dict[str, object]:
    """The columns of a unit's row that come from the registry and the meters."""
    ref = str(unit["unit"])
    return {"unit": ref, "community": unit["community"], "building": unit["building"],
            "floor": int(unit["floor"]), "registered": int(unit["registered"]),
            "rented": bool(unit["rented"]), "utility_ratio": meters.value(ref, "ratio"),
            "utility_people": meters.value(ref, "estimated_people"), "zone": "",
            "zone_units": 1}


def _own_ap_unit(unit: Mapping[str, Any], aps_here: list[str], wifi: WifiEvidence,
                 meters: MeterEvidence, prior: Prior, cap: int, n_days: int,
                 config: AnalyticsConfig) -> tuple[dict[str, object], np.ndarray]:
    """Row and posterior of a unit with its own AP(s)."""
    ref, registered = str(unit["unit"]), int(unit["registered"])
    loglik = meters.logliks.get(ref)
    nights = max(int(wifi.nights_by_ap.get(a, 0)) for a in aps_here)
    detected = wifi.unit_detected(ref, aps_here)
    unit_weeks = _sum_weeks([wifi.weekly_by_ap.get(a, []) for a in aps_here], n_days)
    weeks_seen = _max_weeks([wifi.observed_weeks_by_ap.get(a, []) for a in aps_here], n_days)
    row = _registry_columns(unit, meters)
    row.update(coverage="unit_ap", nights_observed=nights,
               resident_devices=int(sum(wifi.devices_by_ap.get(a, 0) for a in aps_here)),
               people_detected=detected)
    seen = detected if nights >= 1 and config.wifi_weight > 0 else None
    post = unit_posterior(registered, seen, prior, loglik, config, cap)
    row["persistence"], row["weeks_observed"] = _persistence(
        unit_weeks, weeks_seen, [registered], prior, config)
    row["wifi_p_plus_two"] = None
    if seen is not None:
        alone = unit_posterior(registered, seen, prior, None, config, cap)
        row["wifi_p_plus_two"] = float(alone[registered + 2:].sum())
    if config.wifi_weight == 0:
        row["persistence"] = 1.0  # no weekly Wi-Fi counts to check against
    return row, post


def _unseen_unit(unit: Mapping[str, Any], meters: MeterEvidence, prior: Prior, cap: int,
                 config: AnalyticsConfig) -> tuple[dict[str, object], np.ndarray]:
    """Row and posterior of a unit no AP covers: registry and meters only."""
    ref, registered = str(unit["unit"]), int(unit["registered"])
    row = _registry_columns(unit, meters)
    row.update(coverage="none", nights_observed=0, resident_devices=0, people_detected=0,
               persistence=0.0, weeks_observed=0, wifi_p_plus_two=None)
    return row, unit_posterior(registered, None, prior, meters.logliks.get(ref), config, cap)


def _zone_units(zone_ap: str, members: list[str], unit_info: Mapping[str, Mapping[str, Any]],
                wifi: WifiEvidence, meters: MeterEvidence, prior: Prior,
                cap_of: Mapping[str, int], config: AnalyticsConfig,
                ) -> list[tuple[dict[str, object], np.ndarray]]:
    """Rows and posteriors of the units one corridor AP covers, estimated jointly."""
    nights = int(wifi.nights_by_ap.get(zone_ap, 0))
    bound_counts = [int(wifi.detected_by_unit.get(u, 0)) for u in members]
    detected = max(int(wifi.unplaced_by_ap.get(zone_ap, 0)) + sum(bound_counts),
                   wifi.together_by_ap.get(zone_ap, 0))
    regs = [int(unit_info[u]["registered"]) for u in members]
    logliks = [meters.logliks.get(u) for u in members]
    if nights >= 1 and config.wifi_weight > 0:
        posts = zone_posteriors(regs, detected, bound_counts, prior, logliks, config,
                                [cap_of[u] for u in members])
    else:
        posts = [unit_posterior(r, None, prior, ll, config, cap_of[u])
                 for u, r, ll in zip(members, regs, logliks, strict=True)]
    persistence, weeks_observed = _persistence(
        wifi.weekly_by_ap.get(zone_ap, []), wifi.observed_weeks_by_ap.get(zone_ap, []), regs,
        prior, config)
    # What the corridor's Wi-Fi alone says about the zone's total (it cannot say which unit).
    wifi_support = group_support = None
    if nights >= 1 and config.wifi_weight > 0:
        total = _wifi_total(detected, regs, prior, config)
        wifi_support = float(total[sum(regs) + 2:].sum())
        # Registered + 2 on the total is only two extras somewhere: one each in two flats is
        # a family's relative twice, not a group rental. With k flats, registered + k + 1
        # puts at least two on one flat whichever way they are shared out.
        if len(members) > 1:
            group_support = float(total[sum(regs) + len(members) + 1:].sum())
    if config.wifi_weight == 0:
        persistence = 1.0
    out = []
    for unit_ref, post, b in zip(members, posts, bound_counts, strict=True):
        row = _registry_columns(unit_info[unit_ref], meters)
        row.update(coverage="neighbour_ap" if is_wall_ap(zone_ap) else "zone",
                   nights_observed=nights,
                   resident_devices=int(wifi.devices_by_unit.get(unit_ref, 0)),
                   people_detected=b, persistence=persistence, weeks_observed=weeks_observed,
                   wifi_p_plus_two=wifi_support, zone_wifi_p_group=group_support,
                   zone=zone_ap, zone_units=len(members))
        out.append((row, post))
    return out


def unit_results(units: pd.DataFrame, cover: Coverage, wifi: WifiEvidence,
                 meters: MeterEvidence, n_days: int, config: AnalyticsConfig,
                 posteriors: dict[str, np.ndarray] | None = None,
                 ) -> tuple[pd.DataFrame, Prior, float]:
    """Posterior per unit (own AP, corridor zone, or no coverage) and its summary row.

    Returns the rows (``UNIT_RESULT_COLUMNS``, in the registry's unit order), the prior
    fitted to the district and the central mass of its intervals
    (``people.district_interval_mass``); ``posteriors``, when given, receives each unit's
    posterior.
    """
    unit_records = records(units)
    unit_info = {str(u["unit"]): u for u in unit_records}
    cap_of = {ref: capacity(float(u["area_m2"]), config) for ref, u in unit_info.items()}
    prior, config = fit_district(units, cover, wifi, meters, cap_of, config)
    zoned = {u for members in cover.zones.values() for u in members}
    found: dict[str, tuple[dict[str, object], np.ndarray]] = {}
    for ref, unit in unit_info.items():
        if ref in cover.own_ap:
            found[ref] = _own_ap_unit(unit, cover.own_ap[ref], wifi, meters, prior, cap_of[ref],
                                      n_days, config)
        elif ref not in zoned:
            found[ref] = _unseen_unit(unit, meters, prior, cap_of[ref], config)
    for zone_ap, members in cover.zones.items():
        for row, post in _zone_units(zone_ap, members, unit_info, wifi, meters, prior, cap_of,
                                     config):
            found[str(row["unit"])] = (row, post)
    # Calibrated apart: posteriors with the meters' evidence are sure of themselves to a
    # different degree than the Wi-Fi's alone (``config.interval_self_coverage_wifi_only``).
    with_meters = config.utility_weight > 0 and bool(meters.logliks)
    mass = district_interval_mass((post for _row, post in found.values()),
                                  config.interval_self_coverage if with_meters
                                  else config.interval_self_coverage_wifi_only)
    LOGGER.info("interval: central %.2f of each posterior (%d units)", mass, len(found))
    rows = []
    for ref in units["unit"]:
        if ref in found:
            row, post = found[ref]
            if posteriors is not None:
                posteriors[str(ref)] = post
            rows.append({**row, **summarise(post, int(unit_info[ref]["registered"]), mass)})
    return pd.DataFrame(rows, columns=UNIT_RESULT_COLUMNS), prior, mass


def _person_unit(placed: pd.DataFrame) -> pd.DataFrame:
    """Per person-cluster: its home AP, and its unit when placed with certainty."""
    residents = placed.loc[placed["person"] >= 0]
    if residents.empty:
        return pd.DataFrame(columns=["person", "home_ap", "unit", "devices"])
    grouped = residents.groupby("person")
    return pd.DataFrame({
        "home_ap": grouped["home_ap"].first(),
        "unit": grouped["unit"].agg(lambda u: next((x for x in u if x), "")),
        "devices": grouped.size(),
    }).reset_index()


def _overlapping(persons: pd.DataFrame, stays: pd.DataFrame) -> pd.DataFrame:
    """``persons`` with ``counts``: 1 for each person-cluster the count keeps, 0 for one whose
    stay days never overlap those of enough others to need it.

    A phone whose address rotated unlinked (linking recall is about 0.5 in the hard mix)
    becomes two clusters, one for each half of the window, and counted twice. Per place (unit,
    or the AP of a zone's unplaced clusters), the people living there are counted as the
    most clusters whose spans (first to last stay day, sharing at most that day) cover one
    day: clusters that follow one another are one person at a time, whatever they are (a
    rotation, or a flatmate who moved out as another moved in). Which clusters the count
    keeps is arbitrary; only the sum per place is used.
    """
    out = persons.assign(counts=1)
    if out.empty or stays.empty:
        return out
    spans = stays.groupby("person")["day"].agg(["min", "max"])
    first = out["person"].map(spans["min"]).to_numpy()
    last = out["person"].map(spans["max"]).to_numpy()
    place = np.where(out["unit"] != "", "u:" + out["unit"].astype(str),
                     "a:" + out["home_ap"].astype(str))
    known = np.flatnonzero(~np.isnan(first))
    counts = out["counts"].to_numpy().copy()
    for positions in pd.Series(place[known]).groupby(place[known]).indices.values():
        if len(positions) < 2:
            continue
        rows = known[positions]
        starts = first[rows].astype(np.int64)
        # Most spans covering one day: sweep starts and ends, an end before a start on the
        # same day. A span ends on its last day, not the day after: an address that rotates
        # during a long night leaves both halves a stay day on that day.
        ends = np.maximum(last[rows].astype(np.int64), starts + 1)
        events = np.concatenate([np.stack([starts, np.ones_like(starts)], 1),
                                 np.stack([ends, -np.ones_like(ends)], 1)])
        events = events[np.lexsort((events[:, 1], events[:, 0]))]
        most = int(np.cumsum(events[:, 1]).max())
        counts[rows[most:]] = 0
    out["counts"] = counts
    return out


def _weeks(n_days: int) -> int:
    """Whole weeks in the window (at least one)."""
    return max(1, n_days // 7)


def _maybe(frame: pd.DataFrame, unit: str, column: str) -> float | None:
    """A value from an optional per-unit frame, or None."""
    if frame.empty or unit not in frame.index:
        return None
    value: Any = frame.at[unit, column]
    return None if value is None or pd.isna(value) else float(value)


def _observed_weeks(observation: pd.DataFrame, day_index: Mapping[Any, int],
                    n_days: int) -> dict[str, list[bool]]:
    """Per AP, whether each week had at least three days observed (heard half the day)."""
    weeks = _weeks(n_days)
    if observation.empty:
        return {}
    days = observation.loc[observation["day_share"] >= 0.5]
    days = days.loc[days["day"].isin(set(day_index))]
    week = np.minimum(np.fromiter((day_index[d] for d in days["day"]), dtype=np.int64,
                                  count=len(days)) // 7, weeks - 1)
    counts = pd.DataFrame({"ap": days["ap"].to_numpy(), "week": week}).groupby(
        ["ap", "week"]).size()
    out: dict[str, list[bool]] = {}
    for (ap, w), c in zip(counts.index, counts.to_numpy(), strict=True):
        out.setdefault(str(ap), [False] * weeks)[int(w)] = bool(c >= 3)
    return out


def _sum_weeks(series: list[list[int]], n_days: int) -> list[int]:
    """Element-wise sum of weekly counts."""
    total = [0] * _weeks(n_days)
    for s in series:
        for i, v in enumerate(s):
            total[i] += v
    return total


def _max_weeks(series: list[list[bool]], n_days: int) -> list[bool]:
    """Element-wise 'any' of observed weeks."""
    total = [False] * _weeks(n_days)
    for s in series:
        for i, v in enumerate(s):
            total[i] = total[i] or v
    return total


def _total_prior(registered: list[int], prior: Prior, config: AnalyticsConfig) -> np.ndarray:
    """The prior over the total people of one or more units (convolved), without the meters."""
    total = np.array([1.0])
    for r in registered:
        total = np.convolve(total, prior_distribution(r, prior, config.max_people))
    return total


def _wifi_total(count: int, registered: list[int], prior: Prior,
                config: AnalyticsConfig) -> np.ndarray:
    """The posterior over the total people from the registry prior and the Wi-Fi count alone
    (all zeros when the count is impossible under the prior)."""
    total_prior = _total_prior(registered, prior, config)
    lik = wifi_likelihood(count, len(total_prior) - 1, config.detect_probability,
                          config.spurious_clusters_mean * len(registered),
                          config.detect_concentration)
    post = total_prior * lik
    return post / post.sum() if post.sum() > 0 else np.zeros_like(post)


def _wifi_excess(count: int, registered: list[int], prior: Prior,
                 config: AnalyticsConfig, extra: int = 2) -> float:
    """P(total >= registered + extra) from the registry prior and the Wi-Fi count alone."""
    return float(_wifi_total(count, registered, prior, config)[sum(registered) + extra:].sum())


def _persistence(weekly: list[int], observed: list[bool], registered: list[int], prior: Prior,
                 config: AnalyticsConfig) -> tuple[float, int]:
    """Share of observed weeks, from the first that showed the excess on, that showed it.

    A week shows the excess when its own people count makes registered + 2 more likely than
    not: the Wi-Fi's own check, the registry prior and that week's count, without the meters
    (a meter far off its peers must not make every week look crowded). Counting from the first
    such week lets a group rental that moved in lately be persistent since it came (the weeks
    before, heard empty or with the former household, say nothing about it), while a crowded
    week followed by ordinary ones is not. For a corridor zone the check is on the zone's total.
    """
    weeks = [w for w, seen in zip(weekly, observed, strict=False) if seen]
    if not weeks:
        return 0.0, 0
    shows = [_wifi_excess(count, registered, prior, config) >= 0.5 for count in weeks]
    if not any(shows):
        return 0.0, len(weeks)
    since = shows[shows.index(True):]
    return sum(since) / len(since), len(weeks)
