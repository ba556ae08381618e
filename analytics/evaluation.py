"""Accuracy against the simulator's ground truth, beside a naive baseline.

This module is the only part of analytics that reads a truth file, and the estimator never
imports it: ``analytics.pipeline`` sees only what a deployment sees (presence from InfluxDB,
the registry, utility readings). The harness drives the real path: the simulator writes a
community; its registry CSVs are imported with ``registry.importers``; its event stream is
turned into presence points exactly as the collector writes them (pseudonymised with the
settings' key; contracts section 6) in a test InfluxDB database, or, with ``via='direct'``,
rolled up straight from the stream (same roll-up function, no database); then the analysis
runs and its estimates are scored.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.loaders import records
from census.privacy import is_locally_administered, pseudonymize_mac

LOGGER = logging.getLogger(__name__)

BOUNDS = {"mae_max": 0.35, "within_one_min": 0.95, "precision_min": 0.95, "recall_min": 0.90}


def read_truth(path: Path) -> pd.DataFrame:
    """Per unit: registered, true occupants, group rental, scenario (from truth.json)."""
    with path.open(encoding="utf-8") as handle:
        document = json.load(handle)
    rows = [{"unit": u["unit"], "true_registered": u["registered"],
             "true_occupants": u["true_occupants"], "group_rental": bool(u["group_rental"]),
             "scenario": u["scenario"], "own_ap": bool(u.get("own_ap", False))}
            for u in document["units"]]
    return pd.DataFrame(rows)


def iter_stream(path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The messages of a recorded stream: (AP id, events)."""
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            message = json.loads(line)
            payload = message["payload"]
            yield message["ap"], payload if isinstance(payload, list) else [payload]


def stream_events(path: Path, pseudonym_key: str, aps: pd.DataFrame) -> pd.DataFrame:
    """A recorded stream as the events frame the collector would store (pseudonymised)."""
    pseudonyms: dict[str, tuple[str, bool]] = {}
    ts: list[float] = []
    ap_ids: list[str] = []
    kinds: list[str] = []
    devices: list[str] = []
    rssi: list[float] = []
    randomized: list[bool] = []
    for ap, events in iter_stream(path):
        for event in events:
            mac = event["mac"]
            known = pseudonyms.get(mac)
            if known is None:
                known = (pseudonymize_mac(mac, pseudonym_key), is_locally_administered(mac))
                pseudonyms[mac] = known
            ts.append(float(event["ts"]))
            ap_ids.append(ap)
            kinds.append(event["type"])
            devices.append(known[0])
            rssi.append(float(event["rssi"]) if event.get("rssi") is not None else math.nan)
            randomized.append(known[1])
    frame = pd.DataFrame({"ts": ts, "ap": ap_ids, "event": kinds, "device": devices,
                          "rssi": rssi, "randomized": randomized})
    return attach_locations(frame, aps)


def attach_locations(frame: pd.DataFrame, aps: pd.DataFrame) -> pd.DataFrame:
    """Add the location tags the collector takes from the registry's AP record."""
    tags = aps.set_index("ap")
    single = tags["coverage"] == "unit"
    frame["community"] = frame["ap"].map(tags["community"]).fillna("")
    frame["building"] = frame["ap"].map(tags["building"]).fillna("")
    frame["floor"] = frame["ap"].map(tags["floor"].astype("string")).fillna("")
    frame["unit"] = frame["ap"].map(tags.loc[single, "unit"]).fillna("")
    return frame


def naive_baseline(rollup: pd.DataFrame, units: pd.DataFrame, aps: pd.DataFrame,
                   config: AnalyticsConfig) -> pd.Series:
    """Distinct night-time addresses per unit divided by a devices-per-person ratio.

    Addresses seen at night on a unit's own AP count for the unit; a corridor AP's are shared
    equally among the units it covers. The ratio is the district's: all night addresses over
    all registered people.
    """
    from analytics.devices import count_bins_window, night_bins, packed_masks

    if rollup.empty:
        return pd.Series(0.0, index=units["unit"])
    start, end = night_bins(config)
    night = count_bins_window(packed_masks(rollup["mask"]), start, end) > 0
    seen = rollup.loc[night].drop_duplicates(["ap", "device"]).groupby("ap").size()
    counts = pd.Series(0.0, index=units["unit"])
    for ap in records(aps):
        n = float(seen.get(ap["ap"], 0))
        if ap["coverage"] == "unit" and ap["unit"] in counts.index:
            counts[ap["unit"]] += n
        elif ap["coverage"] == "floor":
            covered = units.loc[(units["community"] == ap["community"])
                                & (units["building"] == ap["building"])
                                & (units["floor"] == ap["floor"]), "unit"]
            if len(covered):
                counts[covered] += n / len(covered)
    registered = float(units["registered"].sum())
    ratio = counts.sum() / registered if registered else 1.0
    return counts / (ratio if ratio > 0 else 1.0)


@dataclass
class Score:
    """Accuracy figures of one estimator on one community."""

    units_occupied: int
    mae: float
    within_one: float
    flags: int
    group_rentals: int
    true_positives: int
    precision: float
    recall: float
    false_flags_zero_or_one_extra: int

    def as_dict(self) -> dict[str, float | int]:
        """The figures as a dict."""
        return dict(self.__dict__)


def score(estimated: pd.Series, flagged: pd.Series, truth: pd.DataFrame) -> Score:
    """Score per-unit estimates and group-rental flags against the truth."""
    frame = truth.set_index("unit").join(estimated.rename("estimated")).join(
        flagged.rename("flagged"))
    frame["flagged"] = frame["flagged"].fillna(False).astype(bool)
    occupied = frame.loc[frame["true_occupants"] > 0]
    error = (occupied["estimated"].fillna(occupied["true_registered"])
             - occupied["true_occupants"]).abs()
    tp = int((frame["flagged"] & frame["group_rental"]).sum())
    flags = int(frame["flagged"].sum())
    groups = int(frame["group_rental"].sum())
    extra = frame["true_occupants"] - frame["true_registered"]
    false_small = int((frame["flagged"] & (extra <= 1)).sum())
    return Score(
        units_occupied=len(occupied),
        mae=round(float(error.mean()), 4) if len(error) else 0.0,
        within_one=round(float((error <= 1).mean()), 4) if len(error) else 1.0,
        flags=flags, group_rentals=groups, true_positives=tp,
        precision=round(tp / flags, 4) if flags else 1.0,
        recall=round(tp / groups, 4) if groups else 1.0,
        false_flags_zero_or_one_extra=false_small,
    )


def meets_bounds(s: Score) -> dict[str, bool]:
    """Which of the issue's bounds a score meets."""
    return {
        "mae": s.mae <= BOUNDS["mae_max"],
        "within_one": s.within_one >= BOUNDS["within_one_min"],
        "precision": s.precision >= BOUNDS["precision_min"],
        "recall": s.recall >= BOUNDS["recall_min"],
        "no_false_small": s.false_flags_zero_or_one_extra == 0,
    }


def accuracy_table(estimator: Score, baseline: Score) -> str:
    """The accuracy table (Markdown) for docs/analytics.md and the CLI."""
    ok = meets_bounds(estimator)

    def mark(key: str) -> str:
        """A check mark or a cross for a bound."""
        return "met" if ok[key] else "NOT met"

    lines = [
        "| measure | bound | estimator | naive baseline |",
        "|---|---|---|---|",
        f"| people per occupied unit, mean absolute error | <= 0.35 | {estimator.mae:.3f} "
        f"({mark('mae')}) | {baseline.mae:.3f} |",
        f"| units within +-1 person | >= 95% | {estimator.within_one:.1%} ({mark('within_one')}) "
        f"| {baseline.within_one:.1%} |",
        f"| group-rental flag precision | >= 0.95 | {estimator.precision:.3f} "
        f"({mark('precision')}) | {baseline.precision:.3f} |",
        f"| group-rental flag recall | >= 0.90 | {estimator.recall:.3f} ({mark('recall')}) "
        f"| {baseline.recall:.3f} |",
        f"| flags on units with 0 or 1 unregistered | 0 | "
        f"{estimator.false_flags_zero_or_one_extra} ({mark('no_false_small')}) | "
        f"{baseline.false_flags_zero_or_one_extra} |",
        f"| flags raised / group rentals in truth | | {estimator.flags} / "
        f"{estimator.group_rentals} | {baseline.flags} / {baseline.group_rentals} |",
        f"| occupied units scored | | {estimator.units_occupied} | {baseline.units_occupied} |",
    ]
    return "\n".join(lines)


def window_for_period(start: dt.datetime, end: dt.datetime, timezone: str) -> Window:
    """The analysis window covering a simulated period (its days start at 06:00 local)."""
    nights = max(1, round((end - start).total_seconds() / 86400))
    last_night = end.astimezone(start.tzinfo).date() - dt.timedelta(days=1)
    return Window(last_night=last_night, nights=nights, timezone=timezone)


def baseline_flags(baseline: pd.Series, units: pd.DataFrame) -> pd.Series:
    """The baseline's group-rental flags: estimate at least registered + 2."""
    registered = units.set_index("unit")["registered"]
    flagged = np.round(baseline) >= registered.reindex(baseline.index) + 2
    return pd.Series(flagged, index=baseline.index, name="flagged")


ProgressFn = Callable[[str], None]
