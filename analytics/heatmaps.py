"""Presence heatmaps per unit, floor and building: by hour of day and by night.

Values are people-like devices (residents and visitors; infrastructure and neighbours' devices
left out) at their home AP: *by hour* the average number present in each local clock hour over
the nights the AP reported, *by night* the number present inside the night window of each
night. A corridor AP's devices count for its floor and building, and are shared equally among
its units at unit level. Only counts leave this module: no device pseudonym is written.

``build_heatmaps`` is the pure step (frames in, frames out) the dashboard can call;
``write_heatmaps`` writes them as CSV and JSON and draws PNG pictures (matplotlib, Agg).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analytics.config import DAY_START_HOUR, AnalyticsConfig, Window
from analytics.devices import BITS_PER_HOUR, count_bins_window, night_bins

LOGGER = logging.getLogger(__name__)

LEVELS = ("unit", "floor", "building")
PEOPLE_CLASSES = ("resident", "visitor")
MAX_PICTURE_ROWS = 400  # taller pictures are unreadable; the data files hold every row


def _hour_labels() -> list[int]:
    """Local clock hour of each hour of the census day (which starts at DAY_START_HOUR)."""
    return [(DAY_START_HOUR + h) % 24 for h in range(24)]


def build_heatmaps(presence: pd.DataFrame, packed: np.ndarray, devices: pd.DataFrame,
                   aps: pd.DataFrame, units: pd.DataFrame, window: Window,
                   config: AnalyticsConfig, chunk: int = 400_000) -> dict[str, pd.DataFrame]:
    """Heatmap frames keyed '<level>_by_hour' and '<level>_by_night'.

    Rows: unit reference, 'community/building/floor' or 'community/building'; columns: local
    hours 0..23 or night dates (ISO).
    """
    people = devices.loc[devices["class"].isin(PEOPLE_CLASSES), ["device", "home_ap"]]
    key = presence["device"] + "\x00" + presence["ap"]
    keep = key.isin(set(people["device"] + "\x00" + people["home_ap"])).to_numpy()
    rows = presence.loc[keep, ["ap", "day"]].reset_index(drop=True)
    bits_packed = packed[keep]
    n_days = len(window.days)
    day_pos = {d: i for i, d in enumerate(window.days)}
    ap_codes, ap_names = pd.factorize(rows["ap"])
    day_codes = np.fromiter((day_pos[d] for d in rows["day"]), dtype=np.int64, count=len(rows))
    hour_bits = np.zeros((len(rows), 24), dtype=np.uint8)
    for i in range(0, len(rows), chunk):
        part = np.unpackbits(bits_packed[i:i + chunk], axis=1).reshape(-1, 24, BITS_PER_HOUR)
        hour_bits[i:i + chunk] = part.any(axis=2)
    # Sum per AP by sorting once and reducing runs (np.add.at is unbuffered and slow).
    hours = np.zeros((len(ap_names), 24))
    if len(rows):
        order = np.argsort(ap_codes, kind="stable")
        runs = np.flatnonzero(np.r_[True, ap_codes[order][1:] != ap_codes[order][:-1]])
        hours[ap_codes[order][runs]] = np.add.reduceat(
            hour_bits[order].astype(np.int64), runs, axis=0)
    start, end = night_bins(config)
    at_night = count_bins_window(bits_packed, start, end) > 0 if len(rows) else np.zeros(0, bool)
    nights = np.bincount(ap_codes[at_night] * n_days + day_codes[at_night],
                         minlength=len(ap_names) * n_days).reshape(len(ap_names), n_days)
    nights = nights.astype(float)
    reported = pd.Series(day_codes).groupby(ap_codes).nunique().reindex(
        range(len(ap_names))).fillna(1).to_numpy()
    by_ap_hour = pd.DataFrame(hours / np.maximum(reported, 1)[:, None], index=ap_names,
                              columns=_hour_labels())
    by_ap_hour = by_ap_hour[sorted(by_ap_hour.columns)]
    by_ap_night = pd.DataFrame(nights, index=ap_names,
                               columns=[d.isoformat() for d in window.days])
    weights = _ap_weights(aps, units)
    out: dict[str, pd.DataFrame] = {}
    for level in LEVELS:
        w = weights[level]
        for name, frame in (("by_hour", by_ap_hour), ("by_night", by_ap_night)):
            w_here = w.loc[w["ap"].isin(frame.index)]
            values = frame.loc[w_here["ap"]].to_numpy() * w_here["weight"].to_numpy()[:, None]
            table = pd.DataFrame(values, columns=frame.columns).groupby(
                w_here["place"].to_numpy()).sum()
            places = _places(units, level)
            table = table.reindex(places).fillna(0.0).round(3)
            table.index.name = level
            out[f"{level}_{name}"] = table
    return out


def _places(units: pd.DataFrame, level: str) -> list[str]:
    """Every unit, floor or building of the registry, sorted."""
    if level == "unit":
        return sorted(units["unit"])
    if level == "floor":
        return sorted(set(units["community"] + "/" + units["building"] + "/"
                          + units["floor"].astype(str)))
    return sorted(set(units["community"] + "/" + units["building"]))


def _ap_weights(aps: pd.DataFrame, units: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """How much of an AP's count goes to each unit, floor and building."""
    rows: dict[str, list[tuple[str, str, float]]] = {level: [] for level in LEVELS}
    by_floor = units.groupby(["community", "building", "floor"])["unit"].apply(list).to_dict()
    unit_floor = {u: (c, b, f) for u, c, b, f in zip(units["unit"], units["community"],
                                                     units["building"], units["floor"],
                                                     strict=True)}
    for ap, coverage, community, building, floor, unit in zip(
            aps["ap"], aps["coverage"], aps["community"], aps["building"], aps["floor"],
            aps["unit"], strict=True):
        if coverage == "unit" and unit in unit_floor:
            c, b, f = unit_floor[unit]
            rows["unit"].append((ap, unit, 1.0))
            rows["floor"].append((ap, f"{c}/{b}/{f}", 1.0))
            rows["building"].append((ap, f"{c}/{b}", 1.0))
        elif coverage == "floor" and not pd.isna(floor):
            covered = by_floor.get((community, building, int(floor)), [])
            for u in covered:
                rows["unit"].append((ap, u, 1.0 / len(covered)))
            rows["floor"].append((ap, f"{community}/{building}/{int(floor)}", 1.0))
            rows["building"].append((ap, f"{community}/{building}", 1.0))
    return {level: pd.DataFrame(r, columns=["ap", "place", "weight"]) for level, r in rows.items()}


def write_heatmaps(heatmaps: Mapping[str, pd.DataFrame], folder: Path,
                   title: str = "") -> dict[str, str]:
    """Write each heatmap as CSV, JSON and (up to MAX_PICTURE_ROWS rows) PNG; return paths."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for name, frame in heatmaps.items():
        csv_path = folder / f"{name}.csv"
        frame.to_csv(csv_path)
        json_path = folder / f"{name}.json"
        document: dict[str, Any] = {"rows": [str(i) for i in frame.index],
                                    "columns": [str(c) for c in frame.columns],
                                    "values": frame.to_numpy().round(3).tolist()}
        json_path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        written[f"{name}.csv"] = str(csv_path)
        written[f"{name}.json"] = str(json_path)
        if frame.empty or len(frame) > MAX_PICTURE_ROWS:
            continue
        height = min(40.0, 1.5 + 0.18 * len(frame))
        width = 3.0 + 0.32 * len(frame.columns)
        figure, axes = plt.subplots(figsize=(width, height))
        image = axes.imshow(frame.to_numpy(), aspect="auto", cmap="viridis",
                            interpolation="nearest")
        axes.set_yticks(range(len(frame)))
        axes.set_yticklabels([str(i) for i in frame.index], fontsize=6)
        axes.set_xticks(range(len(frame.columns)))
        labels = [str(c)[5:] if "by_night" in name else str(c) for c in frame.columns]
        axes.set_xticklabels(labels, fontsize=6, rotation=90 if "by_night" in name else 0)
        level, _, kind = name.partition("_by_")
        axes.set_xlabel("local hour" if kind == "hour" else "night")
        axes.set_title(f"{title} presence per {level} by {kind}".strip(), fontsize=9)
        figure.colorbar(image, ax=axes, label="people-like devices")
        figure.tight_layout()
        png_path = folder / f"{name}.png"
        figure.savefig(png_path, dpi=110)
        plt.close(figure)
        written[f"{name}.png"] = str(png_path)
    return written

