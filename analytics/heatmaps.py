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

import base64
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass
class PresenceGrid:
    """People-like devices per AP and census day, by hour and at night.

    ``reported`` says which AP-days have any presence row (any device): an AP-day without one is
    *no data* (the AP was down, or saw nothing at all), which is not the same as *nobody*.
    """

    aps: pd.Index
    n_days: int
    reported: np.ndarray  # (APs, days) bool
    night: np.ndarray  # (APs, days) people present inside the night window
    hour_total: np.ndarray  # (APs, 24) people present per hour, summed over the days
    cells: np.ndarray  # keys ap * n_days + day of the AP-days with people present
    cell_hours: np.ndarray  # (len(cells), 24) people present per hour of that AP-day


def presence_grid(presence: pd.DataFrame, packed: np.ndarray, devices: pd.DataFrame,
                  window: Window, config: AnalyticsConfig, chunk: int = 400_000) -> PresenceGrid:
    """Count people-like devices at their home AP per AP, day and hour (the heatmaps' base)."""
    n_days = len(window.days)
    day_pos = {d: i for i, d in enumerate(window.days)}
    ap_codes, ap_names = pd.factorize(presence["ap"])
    day_codes = np.fromiter((day_pos[d] for d in presence["day"]), dtype=np.int64,
                            count=len(presence))
    reported = np.zeros((len(ap_names), n_days), dtype=bool)
    reported[ap_codes, day_codes] = True
    people = devices.loc[devices["class"].isin(PEOPLE_CLASSES), ["device", "home_ap"]]
    key = presence["device"] + "\x00" + presence["ap"]
    keep = key.isin(set(people["device"] + "\x00" + people["home_ap"])).to_numpy()
    codes, days, bits_packed = ap_codes[keep], day_codes[keep], packed[keep]
    hour_bits = np.zeros((len(codes), 24), dtype=np.uint8)
    for i in range(0, len(codes), chunk):
        part = np.unpackbits(bits_packed[i:i + chunk], axis=1).reshape(-1, 24, BITS_PER_HOUR)
        hour_bits[i:i + chunk] = part.any(axis=2)
    cell_key = codes * n_days + days
    cells = np.zeros(0, dtype=np.int64)
    cell_hours = np.zeros((0, 24), dtype=np.int64)
    hour_total = np.zeros((len(ap_names), 24))
    if len(codes):
        # Sum per AP-day by sorting once and reducing runs (np.add.at is unbuffered and slow).
        order = np.argsort(cell_key, kind="stable")
        runs = np.flatnonzero(np.r_[True, cell_key[order][1:] != cell_key[order][:-1]])
        cells = cell_key[order][runs]
        cell_hours = np.add.reduceat(hour_bits[order].astype(np.int64), runs, axis=0)
        ap_of_cell = cells // n_days
        ap_runs = np.flatnonzero(np.r_[True, ap_of_cell[1:] != ap_of_cell[:-1]])
        hour_total[ap_of_cell[ap_runs]] = np.add.reduceat(cell_hours, ap_runs, axis=0)
    start, end = night_bins(config)
    at_night = count_bins_window(bits_packed, start, end) > 0 if len(codes) else np.zeros(0, bool)
    night = np.bincount(cell_key[at_night], minlength=len(ap_names) * n_days).reshape(
        len(ap_names), n_days).astype(float)
    return PresenceGrid(pd.Index(ap_names), n_days, reported, night, hour_total, cells,
                        cell_hours)


def build_heatmaps(presence: pd.DataFrame, packed: np.ndarray, devices: pd.DataFrame,
                   aps: pd.DataFrame, units: pd.DataFrame, window: Window,
                   config: AnalyticsConfig, chunk: int = 400_000,
                   grid: PresenceGrid | None = None,
                   walls: Mapping[str, tuple[list[str], list[str]]] | None = None,
                   ) -> dict[str, pd.DataFrame]:
    """Heatmap frames keyed '<level>_by_hour' and '<level>_by_night'.

    Rows: unit reference, 'community/building/floor' or 'community/building', floors and units
    in numeric order; columns: local hours 0..23 or night dates (ISO). NaN is *no data* (no AP
    of the place reported that night, or the place has no AP); 0 is *nobody*.
    """
    grid = grid or presence_grid(presence, packed, devices, window, config, chunk)
    reported_days = grid.reported.sum(axis=1)
    by_ap_hour = pd.DataFrame(grid.hour_total / np.maximum(reported_days, 1)[:, None],
                              index=grid.aps, columns=_hour_labels())
    by_ap_hour = by_ap_hour[sorted(by_ap_hour.columns)]
    by_ap_night = pd.DataFrame(np.where(grid.reported, grid.night, np.nan), index=grid.aps,
                               columns=[d.isoformat() for d in window.days])
    weights = _ap_weights(aps, units, walls)
    out: dict[str, pd.DataFrame] = {}
    for level in LEVELS:
        w = weights[level]
        for name, frame in (("by_hour", by_ap_hour), ("by_night", by_ap_night)):
            w_here = w.loc[w["ap"].isin(frame.index)]
            values = frame.loc[w_here["ap"]].to_numpy() * w_here["weight"].to_numpy()[:, None]
            # min_count=1: a place whose every AP was silent stays NaN (no data), not 0.
            table = pd.DataFrame(values, columns=frame.columns).groupby(
                w_here["place"].to_numpy()).sum(min_count=1)
            table = table.reindex(_places(units, level)).round(3)
            table.index.name = level
            out[f"{level}_{name}"] = table
    return out


HOUR_NIGHT_SCALE = 10  # stored cells are tenths of a device
HOUR_NIGHT_NO_DATA = 255  # the stored byte of a no-data cell
HOUR_NIGHT_MAX = 254  # larger counts are stored as 25.4 (no unit holds more in an hour)


def unit_hour_night(grid: PresenceGrid, aps: pd.DataFrame, units: pd.DataFrame,
                    walls: Mapping[str, tuple[list[str], list[str]]] | None = None
                    ) -> dict[str, str]:
    """Per unit, its nights x hours (from 06:00) of people-like devices, packed for storage.

    A corridor AP's count is shared equally among the units it covers, as in the heatmaps. The
    value is ``pack_hour_night``'s text: a district holds ~10^6 unit-nights, which as JSON
    numbers took 20 s to build and 100 MB to store; packed they take 1 s and 37 MB.
    """
    n_days = grid.n_days
    weights = _ap_weights(aps, units, walls)["unit"]
    ap_pos = pd.Series(np.arange(len(grid.aps)), index=grid.aps)
    weights = weights.loc[weights["ap"].isin(ap_pos.index)]
    if weights.empty:
        return {}
    # Dense (AP, night, hour) counts: 0 where the AP reported but saw no one.
    dense = np.zeros((len(grid.aps), n_days, 24), dtype=np.float32)
    dense[grid.cells // n_days, grid.cells % n_days] = grid.cell_hours
    order = np.argsort(weights["place"].to_numpy(), kind="stable")
    places = weights["place"].to_numpy()[order]
    rows = ap_pos.loc[weights["ap"].to_numpy()[order]].to_numpy()
    w = weights["weight"].to_numpy(dtype=np.float32)[order]
    starts = np.flatnonzero(np.r_[True, places[1:] != places[:-1]])
    totals = np.add.reduceat(dense[rows] * w[:, None, None], starts, axis=0)
    seen = np.add.reduceat(grid.reported[rows].astype(np.int32), starts, axis=0) > 0
    packed = np.minimum(np.rint(totals * HOUR_NIGHT_SCALE), HOUR_NIGHT_MAX).astype(np.uint8)
    packed[~seen] = HOUR_NIGHT_NO_DATA
    return {str(place): base64.b64encode(cells.tobytes()).decode("ascii")
            for place, cells in zip(places[starts], packed, strict=True)}


def pack_hour_night(nights: list[list[float] | None]) -> str:
    """Nights x 24 hours (None: a night without data) as stored in unit_estimates."""
    cells = np.full((len(nights), 24), HOUR_NIGHT_NO_DATA, dtype=np.uint8)
    for i, night in enumerate(nights):
        if night is not None:
            cells[i] = np.minimum(np.rint(np.asarray(night) * HOUR_NIGHT_SCALE), HOUR_NIGHT_MAX)
    return base64.b64encode(cells.tobytes()).decode("ascii")


def unpack_hour_night(text: str) -> list[list[float] | None]:
    """The stored text back as nights x 24 hours of devices (None: no data that night)."""
    if not text:
        return []
    cells = np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(-1, 24)
    return [None if (night == HOUR_NIGHT_NO_DATA).all()
            else (night.astype(float) / HOUR_NIGHT_SCALE).tolist() for night in cells]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs as numbers: 2 before 10, 'B2' before 'B10'."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text) if part)


def _places(units: pd.DataFrame, level: str) -> list[str]:
    """Every unit, floor or building of the registry, in numeric order (floor 2 before 10)."""
    if level == "unit":
        rows = zip(units["unit"], units["community"], units["building"], units["floor"],
                   strict=True)
        return [u for u, *_ in sorted(rows, key=lambda r: (natural_key(str(r[1])),
                                                            natural_key(str(r[2])), int(r[3]),
                                                            natural_key(str(r[0]))))]
    if level == "floor":
        floors = set(zip(units["community"], units["building"], units["floor"].astype(int),
                         strict=True))
        return [f"{c}/{b}/{f}" for c, b, f in sorted(
            floors, key=lambda r: (natural_key(str(r[0])), natural_key(str(r[1])), r[2]))]
    buildings = set(zip(units["community"], units["building"], strict=True))
    return [f"{c}/{b}" for c, b in sorted(
        buildings, key=lambda r: (natural_key(str(r[0])), natural_key(str(r[1]))))]


def _ap_weights(aps: pd.DataFrame, units: pd.DataFrame,
                walls: Mapping[str, tuple[list[str], list[str]]] | None = None
                ) -> dict[str, pd.DataFrame]:
    """How much of an AP's count goes to each unit, floor and building (a wall AP's to the
    uncovered units it stands for, shared equally)."""
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
    for wall, (_sources, wall_units) in (walls or {}).items():
        covered = [u for u in wall_units if u in unit_floor]
        for u in covered:
            c, b, f = unit_floor[u]
            rows["unit"].append((wall, u, 1.0 / len(covered)))
            rows["floor"].append((wall, f"{c}/{b}/{f}", 1.0 / len(covered)))
        if covered:  # a wall AP's units are of one building (wall_coverage)
            c, b, _f = unit_floor[covered[0]]
            rows["building"].append((wall, f"{c}/{b}", 1.0))
    return {level: pd.DataFrame(r, columns=["ap", "place", "weight"]) for level, r in rows.items()}


TITLES = {  # (English, Chinese) per level and kind: the pictures are read by both
    "unit": ("unit", "户"), "floor": ("floor", "楼层"), "building": ("building", "楼栋"),
    "hour": ("by local hour", "按小时"), "night": ("by night", "按夜"),
}
NO_DATA_COLOUR = "#d0d7de"


def _json_values(frame: pd.DataFrame) -> list[list[float | None]]:
    """A frame's values for JSON: NaN (no data) becomes null."""
    values = frame.to_numpy(dtype=float).round(3)
    return [[None if np.isnan(v) else float(v) for v in row] for row in values]


def _picture_groups(frame: pd.DataFrame, level: str) -> dict[str, pd.DataFrame]:
    """Rows of one picture each: a building's units or floors, or every building in chunks."""
    if level == "building":
        return {f"part{i // MAX_PICTURE_ROWS + 1:02d}": frame.iloc[i:i + MAX_PICTURE_ROWS]
                for i in range(0, len(frame), MAX_PICTURE_ROWS)}
    building = [str(i).rsplit("/", 1)[0] for i in frame.index]
    groups: dict[str, pd.DataFrame] = {}
    for name in dict.fromkeys(building):
        rows = frame.loc[[b == name for b in building]]
        groups[name.replace("/", "_")] = rows.iloc[:MAX_PICTURE_ROWS]
    return groups


def write_heatmaps(heatmaps: Mapping[str, pd.DataFrame], folder: Path,
                   title: str = "") -> dict[str, str]:
    """Write each heatmap as CSV and JSON, and as PNG pictures per building; return the paths.

    Pictures: ``<level>_by_<kind>/<community>_<building>.png`` for units and floors (one per
    building, rows in numeric order), ``building_by_<kind>/partNN.png`` for buildings; titles
    in English and Chinese; no-data cells grey and hatched, unlike 0 (nobody).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    # CJK glyphs come from Noto Sans CJK (Debian's fonts-noto-cjk) when DejaVu lacks them.
    plt.rcParams["font.family"] = ["DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP"]
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for name, frame in heatmaps.items():
        csv_path = folder / f"{name}.csv"
        frame.to_csv(csv_path)
        json_path = folder / f"{name}.json"
        document: dict[str, Any] = {"rows": [str(i) for i in frame.index],
                                    "columns": [str(c) for c in frame.columns],
                                    "values": _json_values(frame)}
        json_path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        written[f"{name}.csv"] = str(csv_path)
        written[f"{name}.json"] = str(json_path)
        if frame.empty:
            continue
        level, _, kind = name.partition("_by_")
        vmax = max(1.0, float(np.nanmax(frame.to_numpy(dtype=float)))
                   if frame.notna().any().any() else 1.0)
        for group, rows in _picture_groups(frame, level).items():
            path = folder / name / f"{group}.png"
            _draw(plt, rows, level, kind, vmax, _title(title, level, kind, group), path)
            written[f"{name}/{group}.png"] = str(path)
    return written


def _title(title: str, level: str, kind: str, group: str) -> str:
    """A picture's bilingual title."""
    where = group.replace("_", "/") if level != "building" else title
    english = f"{where} presence per {TITLES[level][0]} {TITLES[kind][0]}"
    chinese = f"{where} 每{TITLES[level][1]}在场人数（{TITLES[kind][1]}）"
    return f"{english}\n{chinese}".strip()


def _draw(plt: Any, frame: pd.DataFrame, level: str, kind: str, vmax: float, title: str,
          path: Path) -> None:
    """Draw one heatmap picture: NaN cells grey and hatched ('no data'), 0 dark ('nobody')."""
    import matplotlib

    height = min(40.0, 2.2 + 0.2 * len(frame))
    width = 3.5 + 0.32 * len(frame.columns)
    figure, axes = plt.subplots(figsize=(width, height))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=NO_DATA_COLOUR)
    values = np.ma.masked_invalid(frame.to_numpy(dtype=float))
    image = axes.imshow(values, aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax,
                        interpolation="nearest")
    # Hatch the no-data cells too, so they stay apart from 'nobody' in grey print.
    for r, c in zip(*np.nonzero(np.ma.getmaskarray(values)), strict=True):
        axes.add_patch(matplotlib.patches.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False,
                                                    hatch="///", edgecolor="#8c959f",
                                                    linewidth=0))
    axes.set_yticks(range(len(frame)))
    axes.set_yticklabels([str(i).rsplit("/", 1)[-1] for i in frame.index], fontsize=7)
    axes.set_xticks(range(len(frame.columns)))
    labels = [str(c)[5:] if kind == "night" else str(c) for c in frame.columns]
    axes.set_xticklabels(labels, fontsize=6, rotation=90 if kind == "night" else 0)
    axes.set_xlabel("local hour 本地时间" if kind == "hour" else "night 夜")
    axes.set_ylabel(f"{TITLES[level][0]} {TITLES[level][1]}")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="people-like devices 在场人数")
    axes.add_patch(matplotlib.patches.Rectangle((0, 0), 0, 0, facecolor=NO_DATA_COLOUR,
                                                hatch="///", edgecolor="#8c959f",
                                                label="no data 无数据"))
    axes.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=7, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
