"""Which devices live where: residents, visitors, neighbours' bleed and infrastructure.

Pure steps over the (linked) roll-up. For every device and AP: on how many days it stayed
long (5 h or more), on how many nights it was there inside the night window, how strong its
signal was and whether it ever leaves. Each device then gets one home AP (where it stays
most; a much weaker AP it also joins is the neighbours' bleed), a class, and a place: a unit
(APs covering one unit, or a corridor device bound to a registered resident) or a zone (the
units a corridor AP covers), with how sure the placement is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analytics.config import BIN_SECONDS, BINS_PER_DAY, DAY_START_HOUR, MASK_BYTES, AnalyticsConfig
from analytics.loaders import records
from analytics.people import run_reaches
from census.channels import AP_ID_MAX

BITS_PER_HOUR = 3600 // BIN_SECONDS
CLASSES = ("resident", "visitor", "infrastructure", "neighbour", "home_device")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

# A unit with no AP of its own is heard through the wall of a neighbour's: its residents' phones
# join the neighbour's unit AP at a signal too weak to be from inside that flat (see
# ``choose_home``'s ``weak_rssi_dbm``). Those weak devices are moved to a "wall AP" standing for
# the uncovered units next to that flat, and estimated as those units' Wi-Fi evidence instead
# of being dropped as neighbours. No real AP id contains "~" (census.channels.AP_ID_CHARS).
WALL_AP_SUFFIX = "~wall"
WALL_FLOORS = 1  # a wall, floor or ceiling: the uncovered units up to one floor away


def packed_masks(masks: pd.Series, chunk: int = 500_000) -> np.ndarray:
    """Hex masks -> packed bit matrix (rows x 36 bytes), converted a chunk at a time."""
    out = np.empty((len(masks), MASK_BYTES), dtype=np.uint8)
    values = masks.to_numpy()
    for i in range(0, len(values), chunk):
        part = values[i:i + chunk]
        out[i:i + len(part)] = np.frombuffer(bytes.fromhex("".join(part)),
                                             dtype=np.uint8).reshape(-1, MASK_BYTES)
    return out


def window_bits(start_bin: int, end_bin: int) -> np.ndarray:
    """A packed mask with bins [start_bin, end_bin) set."""
    bits = np.zeros(BINS_PER_DAY, dtype=bool)
    bits[start_bin:end_bin] = True
    return np.packbits(bits)


def count_bits(packed: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Set bits per row, optionally only inside a packed window mask."""
    data = packed if window is None else packed & window
    return _POPCOUNT[data].sum(axis=1, dtype=np.int64)


def night_bins(config: AnalyticsConfig) -> tuple[int, int]:
    """The night window as bins of the census day (which starts at DAY_START_HOUR local)."""
    start = ((config.night_start_hour - DAY_START_HOUR) % 24) * BITS_PER_HOUR
    end = ((config.night_end_hour - DAY_START_HOUR) % 24) * BITS_PER_HOUR or BINS_PER_DAY
    return start, end


def away_in_day(packed: np.ndarray) -> np.ndarray:
    """Per row, whether the device was gone for a while that day.

    "A while" is a whole aligned 40-minute block (one byte of the mask) without a sighting: any
    absence of 75 minutes or more contains one, so this is a cheap, vectorised test of "left
    the place that day" that never unpacks the masks.
    """
    return (packed == 0).any(axis=1)


def daily_features(presence: pd.DataFrame, packed: np.ndarray,
                   config: AnalyticsConfig) -> pd.DataFrame:
    """Per roll-up row: night bins, whether it is a stay day / a night present / a day away."""
    start, end = night_bins(config)
    night = count_bins_window(packed, start, end)
    return pd.DataFrame({
        "night_bins": night,
        "stay": presence["bins"].to_numpy() >= config.min_stay_bins,
        "night": night >= config.min_night_bins,
        "away": away_in_day(packed),
    }, index=presence.index)


def count_bins_window(packed: np.ndarray, start: int, end: int) -> np.ndarray:
    """Present bins per row inside [start, end)."""
    return count_bits(packed, window_bits(start, end))


def ap_observed_days(presence: pd.DataFrame) -> pd.Series:
    """Days on which each AP reported anybody (an AP that saw nobody, or was down, has none)."""
    if presence.empty:
        return pd.Series(dtype="int64")
    return presence.groupby("ap")["day"].nunique().astype("int64")


def device_ap_features(presence: pd.DataFrame, daily: pd.DataFrame) -> pd.DataFrame:
    """Per (device, AP): days seen, stay days, nights, days away, bins, median signal."""
    frame = pd.concat([presence[["device", "ap", "day", "bins", "rssi_mean", "randomized"]],
                       daily], axis=1)
    grouped = frame.groupby(["device", "ap"], sort=True)
    features = pd.DataFrame({
        "days": grouped["day"].nunique(),
        "stay_days": grouped["stay"].sum(),
        "nights": grouped["night"].sum(),
        "away_days": grouped["away"].sum(),
        "bins": grouped["bins"].sum(),
        "night_bins": grouped["night_bins"].sum(),
        "rssi": grouped["rssi_mean"].median(),
        "randomized": grouped["randomized"].max(),
    }).reset_index()
    return features.astype({"days": "int64", "stay_days": "int64", "nights": "int64",
                            "away_days": "int64", "bins": "int64", "night_bins": "int64"})


def choose_home(features: pd.DataFrame, aps: pd.DataFrame, observed: pd.Series,
                config: AnalyticsConfig) -> pd.DataFrame:
    """One home AP and a class per device.

    Home: the unit or corridor AP where the device stays most (stay days and nights, then
    bins); lobby (building) APs never make a home, people pass through them. A device whose
    home signal is very weak is a neighbour's device heard through the wall. Then:
    infrastructure never leaves; a resident stays long on enough days; anything else seen is
    a visitor (evenings, occasional nights).
    """
    coverage = aps.set_index("ap")["coverage"]
    frame = features.assign(coverage=features["ap"].map(coverage).fillna("unknown"))
    homes = frame.loc[frame["coverage"].isin(["unit", "floor", "wall"])].copy()
    columns = ["device", "home_ap", "coverage", "class", "days", "stay_days", "nights",
               "away_days", "bins", "rssi", "observed_days", "presence", "other_aps",
               "randomized"]
    if homes.empty:
        return pd.DataFrame(columns=columns)
    homes["score"] = homes["stay_days"] + homes["nights"] + homes["bins"] / (BINS_PER_DAY * 10.0)
    homes = homes.sort_values(["device", "score", "rssi"], ascending=[True, False, False])
    best = homes.drop_duplicates("device", keep="first").set_index("device")
    others = homes.groupby("device")["ap"].size() - 1
    best_rssi = homes.groupby("device")["rssi"].max()
    out = pd.DataFrame({
        "device": best.index,
        "home_ap": best["ap"].to_numpy(),
        "coverage": best["coverage"].to_numpy(),
        "days": best["days"].to_numpy(),
        "stay_days": best["stay_days"].to_numpy(),
        "nights": best["nights"].to_numpy(),
        "away_days": best["away_days"].to_numpy(),
        "bins": best["bins"].to_numpy(),
        "rssi": best["rssi"].to_numpy(),
        "other_aps": others.reindex(best.index).fillna(0).astype("int64").to_numpy(),
        "randomized": best["randomized"].to_numpy(dtype=bool),
    })
    out["observed_days"] = out["home_ap"].map(observed).fillna(0).astype("float64")
    out["presence"] = out["bins"] / (BINS_PER_DAY * out["observed_days"].clip(lower=1))
    # Bleed: a stronger AP exists for this device where it also stays: it lives there.
    stronger = best_rssi.reindex(best.index).to_numpy() - out["rssi"].to_numpy()
    out["class"] = "visitor"
    needed = np.maximum(
        2, np.ceil(config.resident_min_fraction * out["observed_days"]).astype(int))
    needed = np.minimum(needed, config.resident_min_days)
    needed = np.maximum(needed, np.minimum(config.resident_min_days,
                                           np.ceil(out["observed_days"] / 2).astype(int)))
    resident = out["stay_days"] >= needed
    infrastructure = ((out["presence"] >= config.infra_min_presence)
                      & (out["away_days"] <= config.infra_max_away_days * out["days"])
                      & (out["days"] >= needed))
    weak = (out["rssi"] <= config.weak_rssi_dbm) & (out["coverage"] == "unit")
    bled = stronger > config.bleed_rssi_margin_db
    out.loc[resident, "class"] = "resident"
    out.loc[infrastructure, "class"] = "infrastructure"
    out.loc[weak | (bled & ~resident), "class"] = "neighbour"
    return out[columns].reset_index(drop=True)


def mark_home_devices(homes: pd.DataFrame, presence: pd.DataFrame, aps: pd.DataFrame,
                      config: AnalyticsConfig) -> pd.DataFrame:
    """Residents that never travel are the home's devices, not people.

    A phone goes where its owner goes: leaving or coming home it passes the building's lobby
    AP and, with the community's one SSID, joins it now and then. Laptops, tablets, TVs and
    second phones left at home never do, however often they sleep and wake; co-movement
    cannot tie a device that never moves to anybody, so each became a person. In a building
    whose lobby AP reported during the window, a resident seen on at least
    ``home_device_min_days`` days and never at the lobby is a ``home_device`` when another
    resident of the same AP was seen there (so a home is never left with nobody carrying).
    """
    out = homes.copy()
    if out.empty or presence.empty:
        return out
    ap_table = aps.set_index("ap")
    lobbies = ap_table.loc[ap_table["coverage"] == "building"]
    lobby_rows = presence.loc[presence["ap"].isin(lobbies.index)]
    if lobby_rows.empty:
        return out
    active = {(str(c), str(b)) for c, b in zip(lobbies.loc[lobby_rows["ap"].unique(),
                                                            "community"],
                                               lobbies.loc[lobby_rows["ap"].unique(),
                                                           "building"], strict=True)}
    travelled = set(lobby_rows["device"])
    home_place = list(zip(out["home_ap"].map(ap_table["community"]).astype(str),
                          out["home_ap"].map(ap_table["building"]).astype(str), strict=True))
    judged = ((out["class"] == "resident") & out["coverage"].isin(["unit", "wall"])
              & (out["days"] >= config.home_device_min_days)
              & pd.Series([place in active for place in home_place], index=out.index))
    carried = out["device"].isin(travelled)
    has_carrier = (judged & carried).groupby(out["home_ap"]).transform("any")
    out.loc[judged & ~carried & has_carrier, "class"] = "home_device"
    return out


# A device left at home that sleeps and wakes for a minute or two every quarter to full hour
# (a tablet, a laptop, a second phone) is heard in nearly every hour of the day and night, yet
# never for long at a stretch; a carried phone is gone for hours when its owner is out, or,
# with an owner at home, stays on for hours.
DOZING_MIN_HOURS = 20  # hours of the day it was heard in
DOZING_MAX_RUN_BINS = 36  # never three hours at a stretch
DOZING_MIN_DAY_SHARE = 0.5  # on at least this share of its days


def mark_dozing_devices(homes: pd.DataFrame, presence: pd.DataFrame, packed: np.ndarray,
                        config: AnalyticsConfig) -> pd.DataFrame:
    """Residents that are around at every hour but asleep most of it are the home's devices.

    Where a building has no lobby AP (``mark_home_devices``), such a device was a person of
    its own: co-movement cannot tie it to its owner, because it does not leave when the
    owner does. On at least ``DOZING_MIN_DAY_SHARE`` of at least ``home_device_min_days``
    days it must be heard in ``DOZING_MIN_HOURS`` hours without ever staying
    ``DOZING_MAX_RUN_BINS`` bins at a stretch.
    """
    out = homes.copy()
    judged = (out["class"] == "resident") & (out["days"] >= config.home_device_min_days)
    if not judged.any() or presence.empty:
        return out
    home_of = dict(zip(out.loc[judged, "device"], out.loc[judged, "home_ap"], strict=True))
    rows = (presence["device"].map(home_of) == presence["ap"]).to_numpy()
    if not rows.any():
        return out
    bits = np.unpackbits(packed[rows], axis=1)[:, :BINS_PER_DAY].astype(bool)
    hours = bits.reshape(len(bits), 24, BINS_PER_DAY // 24).any(axis=2).sum(axis=1)
    stays = run_reaches(bits, DOZING_MAX_RUN_BINS)
    dozing_day = pd.Series((hours >= DOZING_MIN_HOURS) & ~stays,
                           index=presence.loc[rows, "device"].to_numpy())
    share = dozing_day.groupby(level=0).mean()
    dozing = set(share.index[share >= DOZING_MIN_DAY_SHARE])
    out.loc[judged & out["device"].isin(dozing), "class"] = "home_device"
    return out


def zones_for_aps(aps: pd.DataFrame, units: pd.DataFrame,
                  walls: dict[str, tuple[list[str], list[str]]] | None = None) -> pd.DataFrame:
    """Per unit, corridor or wall AP, the units it covers (one row per AP and unit)."""
    rows = [(wall, unit) for wall, (_sources, covered) in (walls or {}).items()
            for unit in covered]
    by_floor = units.groupby(["community", "building", "floor"])["unit"].apply(list).to_dict()
    for ap in records(aps):
        if ap["coverage"] == "unit" and ap["unit"]:
            rows.append((ap["ap"], ap["unit"]))
        elif ap["coverage"] == "floor" and not pd.isna(ap["floor"]):
            for unit in by_floor.get((ap["community"], ap["building"], int(ap["floor"])), []):
                rows.append((ap["ap"], unit))
    return pd.DataFrame(rows, columns=["ap", "unit"])


def place_devices(homes: pd.DataFrame, coverage: pd.DataFrame, links: pd.DataFrame,
                  bindings: pd.DataFrame) -> pd.DataFrame:
    """Place each device: its unit when certain, else the zone (group of units) of its AP.

    A corridor device (or another address of its chain) bound at the portal to a resident of
    one of the covered units is placed in that unit with certainty; otherwise it stays in the
    corridor's zone and the estimator shares it out (see ``analytics.people``).
    """
    covered = coverage.groupby("ap")["unit"].apply(lambda u: tuple(sorted(u)))
    out = homes.copy()
    out["zone"] = out["home_ap"].map(covered)
    out["unit"] = ""
    out["placement"] = "zone"
    out["placement_confidence"] = 0.0
    # A wall AP's devices stay in its zone even when it stands for one unit: heard through a
    # wall, they are evidence for the Wi-Fi count, not people certainly living there.
    single = (out["zone"].map(lambda z: isinstance(z, tuple) and len(z) == 1)
              & ~out["home_ap"].astype(str).map(is_wall_ap))
    out.loc[single, "unit"] = out.loc[single, "zone"].map(lambda z: z[0])
    out.loc[single, "placement"] = "unit_ap"
    out.loc[single, "placement_confidence"] = 1.0
    if not bindings.empty and not links.empty:
        bound = links.merge(bindings[["device", "unit"]], on="device", how="inner")
        bound_unit: dict[str, str] = {
            str(logical): str(units.mode().iloc[0])
            for logical, units in bound.groupby("logical")["unit"]}
        devices: list[str] = [str(d) for d in out["device"]]
        zones: list[Any] = list(out["zone"])
        for position, index in enumerate(out.index):
            if single.iloc[position]:
                continue
            unit = bound_unit.get(devices[position])
            zone = zones[position]
            if unit is not None and isinstance(zone, tuple) and unit in zone:
                out.at[index, "unit"] = unit
                out.at[index, "placement"] = "binding"
                out.at[index, "placement_confidence"] = 1.0
    no_zone = out["zone"].isna()
    out.loc[no_zone, "placement"] = "none"
    out["zone_key"] = out["zone"].map(lambda z: "|".join(z) if isinstance(z, tuple) else "")
    return out


def is_wall_ap(ap: str) -> bool:
    """Whether an AP id is a wall AP made by ``wall_coverage`` (not a real AP)."""
    return ap.endswith(WALL_AP_SUFFIX)


def wall_coverage(aps: pd.DataFrame, units: pd.DataFrame
                  ) -> dict[str, tuple[list[str], list[str]]]:
    """Wall APs: id -> (the real unit APs whose weak devices it takes, the uncovered units it
    stands for).

    Uncovered: a unit with no unit AP of its own and no corridor AP on its floor. Each unit AP
    of the same building within ``WALL_FLOORS`` floors of one may hear it; unit APs that hear
    the same uncovered units share one wall AP, so that every uncovered unit is in one only.
    """
    if aps.empty or units.empty:
        return {}
    unit_aps = aps.loc[(aps["coverage"] == "unit") & (aps["unit"] != "")]
    own = set(unit_aps["unit"])
    floors = aps.loc[(aps["coverage"] == "floor") & aps["floor"].notna()]
    corridor = {(str(c), str(b), int(f)) for c, b, f in zip(
        floors["community"], floors["building"], floors["floor"], strict=True)}
    place = {str(u): (str(c), str(b), int(f)) for u, c, b, f in zip(
        units["unit"], units["community"], units["building"], units["floor"], strict=True)}
    uncovered: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for ref, (community, building, floor) in place.items():
        if ref not in own and (community, building, floor) not in corridor:
            uncovered.setdefault((community, building), []).append((floor, ref))
    if not uncovered:
        return {}
    # Union-find over unit APs and the uncovered units they hear.
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for ap, ref in zip(unit_aps["ap"], unit_aps["unit"], strict=True):
        where = place.get(str(ref))
        if where is None:
            continue
        community, building, floor = where
        for other_floor, other in uncovered.get((community, building), []):
            if abs(other_floor - floor) <= WALL_FLOORS:
                parent[root("ap:" + str(ap))] = root("unit:" + other)
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for node in list(parent):
        sources, covered = groups.setdefault(root(node), ([], []))
        (sources if node.startswith("ap:") else covered).append(node.split(":", 1)[1])
    out: dict[str, tuple[list[str], list[str]]] = {}
    for sources, covered in sorted(groups.values()):
        if sources and covered:
            # An AP id has at most 64 characters, and so has the stored zone it becomes.
            wall = min(sources)[:AP_ID_MAX - len(WALL_AP_SUFFIX)] + WALL_AP_SUFFIX
            if wall in out:  # two long ids alike in their first 59 characters
                wall = f"{min(sources)[:AP_ID_MAX - len(WALL_AP_SUFFIX) - 4]}~{len(out):03d}"
                wall += WALL_AP_SUFFIX
            out[wall] = (sorted(sources), sorted(covered))
    return out


def hear_through_walls(presence: pd.DataFrame, heard: pd.DataFrame,
                       walls: dict[str, tuple[list[str], list[str]]],
                       config: AnalyticsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move each weak device's rows at a wall AP's unit APs to that wall AP; the wall AP is
    heard when any of its unit APs is (its ``AP_HEARD`` rows, bins OR-ed per day)."""
    if not walls or presence.empty:
        return presence, heard
    wall_of = {ap: wall for wall, (sources, _units) in walls.items() for ap in sources}
    at_source = presence["ap"].isin(wall_of).to_numpy()
    if not at_source.any():
        return presence, heard
    rows = presence.loc[at_source, ["device", "ap", "rssi_mean"]]
    typical = rows.groupby(["device", "ap"])["rssi_mean"].median()
    weak = typical.loc[typical <= config.weak_rssi_dbm]
    if weak.empty:
        return presence, heard
    weak_keys = set(weak.index)
    move = np.zeros(len(presence), dtype=bool)
    move[np.flatnonzero(at_source)] = [key in weak_keys for key in zip(
        rows["device"], rows["ap"], strict=True)]
    out = presence.copy()
    out.loc[move, "ap"] = out.loc[move, "ap"].map(wall_of)
    if heard.empty:
        return out, heard
    source_rows = heard.loc[heard["ap"].isin(wall_of)]
    if source_rows.empty:
        return out, heard
    bits = packed_masks(source_rows["mask"])
    positions: dict[tuple[str, Any], list[int]] = {}
    for position, key in enumerate(zip(source_rows["ap"].map(wall_of), source_rows["day"],
                                       strict=True)):
        positions.setdefault(key, []).append(position)
    wall_rows = []
    for (wall, day), index in positions.items():
        merged = np.bitwise_or.reduce(bits[index], axis=0)
        first = source_rows.iloc[index[0]]
        wall_rows.append({**first.to_dict(), "ap": wall, "day": day,
                          "mask": merged.tobytes().hex(),
                          "bins": int(count_bits(merged[None, :])[0])})
    return out, pd.concat([heard, pd.DataFrame(wall_rows, columns=heard.columns)],
                          ignore_index=True)


def with_wall_aps(aps: pd.DataFrame, walls: dict[str, tuple[list[str], list[str]]]
                  ) -> pd.DataFrame:
    """The AP table with a row per wall AP (coverage ``wall``, in its unit APs' building)."""
    if not walls:
        return aps
    table = aps.set_index("ap")
    rows = [{"ap": wall, "coverage": "wall", "community": table.at[sources[0], "community"],
             "building": table.at[sources[0], "building"], "floor": pd.NA, "unit": ""}
            for wall, (sources, _covered) in walls.items()]
    out = pd.concat([aps, pd.DataFrame(rows, columns=aps.columns)], ignore_index=True)
    out["floor"] = out["floor"].astype("Int64")
    return out
