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

BITS_PER_HOUR = 3600 // BIN_SECONDS
CLASSES = ("resident", "visitor", "infrastructure", "neighbour", "home_device")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


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
    homes = frame.loc[frame["coverage"].isin(["unit", "floor"])].copy()
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
    judged = ((out["class"] == "resident") & (out["coverage"] == "unit")
              & (out["days"] >= config.home_device_min_days)
              & pd.Series([place in active for place in home_place], index=out.index))
    carried = out["device"].isin(travelled)
    has_carrier = (judged & carried).groupby(out["home_ap"]).transform("any")
    out.loc[judged & ~carried & has_carrier, "class"] = "home_device"
    return out


def zones_for_aps(aps: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """Per unit or corridor AP, the units it covers (one row per AP and unit)."""
    rows = []
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
    single = out["zone"].map(lambda z: isinstance(z, tuple) and len(z) == 1)
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
