"""The nightly roll-up: raw presence events -> one row per (census day, AP, device).

Raw snapshots are ~288 points per device per day (10^8-10^9 at district scale over 28 nights),
far too many to read for every analysis. Each complete census day (06:00 to 06:00 local) is
rolled up once into ``presence_daily`` (docs/contracts.md section 6): per day, AP and device a
288-bit presence mask (one bit per 5-minute bin), the number of sightings, signal strength and
the first and last sighting. Everything the estimator needs is in those rows, so a 28-night
analysis reads ~30 rows per device instead of ~8,000 points.

``rollup_events`` is the pure step (events DataFrame -> roll-up DataFrame); ``RollupStore``
reads raw events from InfluxDB a day at a time and keeps the roll-up current incrementally.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.config import BIN_SECONDS, BINS_PER_DAY, MASK_BYTES, AnalyticsConfig, Window
from analytics.loaders import records
from timeseries import Point, TimeSeriesStore, queries
from timeseries.schema import (
    LOCATION_TAGS,
    MEASUREMENT_DAILY,
    MEASUREMENT_DAILY_STATE,
    TAG_AP,
    TAG_EVENT,
    TAG_SCOPE,
    daily_offset_ns,
)

LOGGER = logging.getLogger(__name__)

ROLLUP_COLUMNS = ["day", "ap", "device", "randomized", "mask", "bins", "samples",
                  "rssi_mean", "rssi_max", "first_s", "last_s", *LOCATION_TAGS]
ALL_SCOPE = "_all"
# The roll-up row of an AP's own reports (``ap_heartbeat``: every snapshot, connect and empty
# keep-alive it sent), kept beside its devices' rows under this reserved device name: its mask
# is the 5-minute bins in which the AP was heard. Device pseudonyms are hex digests, so the
# name never collides with one.
AP_HEARD = "ap-heard"


def day_starts_utc(days: Sequence[dt.date], window: Window) -> np.ndarray:
    """Census-day starts (06:00 local) as Unix seconds, one per day plus the end of the last."""
    starts = [window.day_start(d).timestamp() for d in days]
    starts.append(window.day_start(days[-1] + dt.timedelta(days=1)).timestamp())
    return np.asarray(starts, dtype=np.int64)


def empty_rollup() -> pd.DataFrame:
    """A roll-up frame with no rows and the right columns."""
    frame = pd.DataFrame({column: pd.Series(dtype="object") for column in ROLLUP_COLUMNS})
    return frame.astype({"randomized": bool, "bins": "int64", "samples": "int64",
                         "rssi_mean": "float64", "rssi_max": "float64",
                         "first_s": "int64", "last_s": "int64"})


MIN_CADENCE_SAMPLES = 20  # snapshot rounds needed before an AP's cadence is trusted


def infer_cadence(events: pd.DataFrame) -> pd.Series:
    """Per AP, its snapshot interval in seconds, inferred from the data.

    All stations of one snapshot share its timestamp, so the AP's distinct snapshot times are
    its reporting rounds; the most common step between consecutive rounds is the cadence
    (lost snapshots and hours with nobody there make longer steps, never shorter, so the mode
    is robust to them). APs with too few rounds are left out (the caller falls back).
    """
    snaps = events.loc[events["event"] == "snapshot", ["ap", "ts"]]
    if snaps.empty:
        return pd.Series(dtype="float64")
    rounds = snaps.drop_duplicates().sort_values(["ap", "ts"])
    step = rounds["ts"].diff().round()
    same_ap = rounds["ap"].eq(rounds["ap"].shift())
    steps = pd.DataFrame({"ap": rounds["ap"], "step": step}).loc[same_ap & (step > 0)]
    if steps.empty:
        return pd.Series(dtype="float64")
    counts = steps.groupby(["ap", "step"]).size().rename("n").reset_index()
    enough = counts.groupby("ap")["n"].transform("sum") >= MIN_CADENCE_SAMPLES
    counts = counts.loc[enough].sort_values(["ap", "n", "step"], ascending=[True, False, True])
    return counts.drop_duplicates("ap").set_index("ap")["step"].astype("float64")


def rollup_events(events: pd.DataFrame, window: Window,
                  config: AnalyticsConfig | None = None) -> pd.DataFrame:
    """Roll raw events up into one row per (census day, AP, device) with a presence mask.

    ``events`` has columns ts (Unix seconds), ap, event, device, rssi (NaN when absent),
    randomized, and optionally the location tags. Probe requests are left out: a probing
    station is near, not associated, and says nothing about where it sleeps. Sightings of the
    same device at the same AP closer than ``max_gap_s`` form one stay; a ``disconnect``
    ends a stay. Every 5-minute bin a stay touches is marked present.
    """
    config = config or AnalyticsConfig()
    frame = events.loc[events["event"] != "probe"]
    if frame.empty:
        return empty_rollup()
    starts = day_starts_utc(window.days, window)
    ts = frame["ts"].to_numpy(dtype=np.float64)
    inside = (ts >= starts[0]) & (ts < starts[-1])
    frame = frame.loc[inside]
    if frame.empty:
        return empty_rollup()
    # Sort on integer codes: sorting ~10^7 rows by two string columns is what made this slow.
    ap_codes, ap_names = pd.factorize(frame["ap"])
    dev_codes, dev_names = pd.factorize(frame["device"])
    ts = frame["ts"].to_numpy(dtype=np.float64)
    order = np.lexsort((ts, dev_codes, ap_codes))
    ts, ap_codes, dev_codes = ts[order], ap_codes[order], dev_codes[order]
    is_disconnect = (frame["event"] == "disconnect").to_numpy()[order]
    row_randomized = frame["randomized"].to_numpy(dtype=bool)[order]
    rssi = frame["rssi"].to_numpy(dtype=np.float64)[order]

    # Stays: a new one starts at a new (ap, device), after a gap, or after a disconnect. The
    # gap is sized from each AP's own cadence.
    cadence = infer_cadence(frame)
    gap_of_ap = np.maximum(
        float(config.max_gap_s),
        config.max_gap_intervals * pd.Series(ap_names).map(cadence).fillna(0.0).to_numpy())
    new_stay = np.ones(len(frame), dtype=bool)
    if len(frame) > 1:
        same = (ap_codes[1:] == ap_codes[:-1]) & (dev_codes[1:] == dev_codes[:-1])
        close = (ts[1:] - ts[:-1]) <= gap_of_ap[ap_codes[1:]]
        new_stay[1:] = ~(same & close & ~is_disconnect[:-1])
    first_row = np.flatnonzero(new_stay)
    last_row = np.r_[first_row[1:] - 1, len(frame) - 1]
    anchor = starts[0]
    g0 = ((ts[first_row] - anchor) // BIN_SECONDS).astype(np.int64)
    # A station last seen in a snapshot is there until about the next round: extend the stay
    # by one of its AP's intervals (not after a disconnect, which is exact, nor past the
    # window). Without this every census day ends with a fake departure of every device
    # before 06:00 at a 600 s cadence, which co-movement reads as everyone leaving together.
    cadence_of_ap = pd.Series(ap_names).map(cadence).fillna(0.0).to_numpy()
    extend = np.where(is_disconnect[last_row], 0.0,
                      np.maximum(cadence_of_ap[ap_codes[last_row]] - 1.0, 0.0))
    stay_end = np.minimum(ts[last_row] + extend, float(starts[-1]) - 1.0)
    g1 = ((stay_end - anchor) // BIN_SECONDS).astype(np.int64)
    lengths = g1 - g0 + 1
    owner = np.repeat(np.arange(len(first_row)), lengths)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    global_bin = g0[owner] + (np.arange(int(lengths.sum())) - offsets)
    bin_time = anchor + global_bin * BIN_SECONDS
    day_of_bin = np.searchsorted(starts, bin_time, side="right") - 1
    bin_in_day = np.minimum((bin_time - starts[day_of_bin]) // BIN_SECONDS, BINS_PER_DAY - 1)
    stay_ap = ap_codes[first_row][owner]
    stay_dev = dev_codes[first_row][owner]

    # Per-row statistics by the day each sighting falls in.
    row_day = np.searchsorted(starts, ts, side="right") - 1
    n_days = len(window.days)
    n_dev = len(dev_names)
    row_key = (row_day * len(ap_names) + ap_codes).astype(np.int64) * n_dev + dev_codes
    bin_key = (day_of_bin * len(ap_names) + stay_ap).astype(np.int64) * n_dev + stay_dev
    keys, key_index = np.unique(np.r_[row_key, bin_key], return_inverse=True)
    row_group = key_index[: len(row_key)]
    bin_group = key_index[len(row_key):]

    masks = np.zeros((len(keys), BINS_PER_DAY), dtype=bool)
    masks[bin_group, bin_in_day] = True
    packed = np.packbits(masks, axis=1)
    n_keys = len(keys)
    samples = np.bincount(row_group, minlength=n_keys)
    has_rssi = ~np.isnan(rssi)
    rssi_n = np.bincount(row_group[has_rssi], minlength=n_keys)
    rssi_sum = np.bincount(row_group[has_rssi], weights=rssi[has_rssi], minlength=n_keys)
    rssi_max = np.full(n_keys, -np.inf)
    np.maximum.at(rssi_max, row_group[has_rssi], rssi[has_rssi])
    first_s = np.full(n_keys, np.inf)
    np.minimum.at(first_s, row_group, ts)
    last_s = np.full(n_keys, -np.inf)
    np.maximum.at(last_s, row_group, ts)
    randomized = np.zeros(n_keys, dtype=bool)
    randomized[row_group[row_randomized]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        rssi_mean = np.where(rssi_n > 0, rssi_sum / np.maximum(rssi_n, 1), np.nan)
    rssi_max = np.where(rssi_n > 0, rssi_max, np.nan)
    day_index = keys // (len(ap_names) * n_dev)
    ap_index = (keys // n_dev) % len(ap_names)
    dev_index = keys % n_dev
    keep = (day_index >= 0) & (day_index < n_days)
    out = pd.DataFrame({
        "day": np.asarray(window.days, dtype=object)[day_index[keep]],
        "ap": np.asarray(ap_names, dtype=object)[ap_index[keep]],
        "device": np.asarray(dev_names, dtype=object)[dev_index[keep]],
        "randomized": randomized[keep],
        "mask": [row.tobytes().hex() for row in packed[keep]],
        "bins": masks[keep].sum(axis=1).astype(np.int64),
        "samples": samples[keep].astype(np.int64),
        "rssi_mean": rssi_mean[keep],
        "rssi_max": rssi_max[keep],
        "first_s": np.where(samples > 0, first_s, 0)[keep].astype(np.int64),
        "last_s": np.where(samples > 0, last_s, 0)[keep].astype(np.int64),
    })
    # A stay that crosses 06:00 marks bins in a day where it has no sighting of its own.
    no_rows = out["samples"] == 0
    if no_rows.any():
        day_start = starts[day_index[keep]][no_rows.to_numpy()]
        out.loc[no_rows, "first_s"] = day_start
        out.loc[no_rows, "last_s"] = day_start
    locations = _ap_locations(frame)
    out = out.merge(locations, on="ap", how="left") if not locations.empty else out
    for tag in LOCATION_TAGS:
        if tag not in out.columns:
            out[tag] = ""
        out[tag] = out[tag].fillna("").astype(str)
    return out[ROLLUP_COLUMNS].sort_values(["day", "ap", "device"], ignore_index=True)


def rollup_heard(reports: pd.DataFrame, window: Window,
                 config: AnalyticsConfig | None = None) -> pd.DataFrame:
    """Roll AP reports up into one ``AP_HEARD`` row per (census day, AP): when it was heard.

    ``reports`` has columns ts (Unix seconds: a report's latest event time, or its arrival
    for an empty keep-alive), ap, and optionally the location tags: one row per report. The
    reports are rolled up as the sightings of one station per AP, so the AP counts as heard
    from a report until the next one unless they are further apart than its stay gap (a lost
    report or two never opens a hole; an outage does), and for one of its intervals after
    the last.
    """
    if reports.empty:
        return empty_rollup()
    frame = reports.assign(event="snapshot", device=AP_HEARD, rssi=np.nan, randomized=False)
    return rollup_events(frame, window, config)


def split_heard(rollup: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A roll-up frame as (its devices' rows, its APs' ``AP_HEARD`` rows)."""
    if rollup.empty or "device" not in rollup.columns:
        return rollup, rollup.iloc[0:0]
    heard = (rollup["device"] == AP_HEARD).to_numpy()
    if not heard.any():
        return rollup, rollup.iloc[0:0]
    return (rollup.loc[~heard].reset_index(drop=True),
            rollup.loc[heard].reset_index(drop=True))


def _ap_locations(frame: pd.DataFrame) -> pd.DataFrame:
    """The location tags of each AP (the first seen; they follow the AP)."""
    present = [tag for tag in LOCATION_TAGS if tag in frame.columns]
    if not present:
        return pd.DataFrame()
    return frame[["ap", *present]].drop_duplicates("ap")


def unpack_masks(masks: Iterable[str]) -> np.ndarray:
    """Hex masks -> boolean array (rows x 288)."""
    blob = b"".join(bytes.fromhex(mask) for mask in masks)
    packed = np.frombuffer(blob, dtype=np.uint8).reshape(-1, MASK_BYTES)
    return np.unpackbits(packed, axis=1).astype(bool)


def pack_mask(bits: np.ndarray) -> str:
    """A boolean 288-vector -> hex mask."""
    return np.packbits(bits.astype(bool)).tobytes().hex()


# --- InfluxDB: the roll-up measurement (schema and statements in timeseries) -----------------

def rollup_points(rollup: pd.DataFrame, window: Window,
                  used: set[tuple[str, int]] | None = None) -> Iterator[Point]:
    """Roll-up rows as ``presence_daily`` points (time: day start + device offset).

    A generator, so a large roll-up is written batch by batch without holding every point;
    ``used`` carries the (AP, time) slots taken across calls.
    """
    used = set() if used is None else used
    day_ns = {d: int(window.day_start(d).timestamp()) * 1_000_000_000 for d in window.days}
    for row in records(rollup):
        ap, device = str(row["ap"]), str(row["device"])
        time_ns = day_ns[row["day"]] + daily_offset_ns(device)
        while (ap, time_ns) in used:  # same AP, same day, same offset: probe the next ns
            time_ns += 1
        used.add((ap, time_ns))
        fields: dict[str, str | int | float | bool] = {
            "device": device, "randomized": bool(row["randomized"]), "mask": str(row["mask"]),
            "bins": int(row["bins"]), "samples": int(row["samples"]),
            "first_s": int(row["first_s"]), "last_s": int(row["last_s"]),
        }
        if not math.isnan(float(row["rssi_mean"])):
            fields["rssi_mean"] = float(row["rssi_mean"])
            fields["rssi_max"] = float(row["rssi_max"])
        tags = {TAG_AP: ap, **{tag: str(row[tag]) for tag in LOCATION_TAGS}}
        yield Point(MEASUREMENT_DAILY, tags, fields, time_ns)


@dataclass
class RollupReport:
    """What one roll-up pass did."""

    days_rolled: int = 0
    days_current: int = 0
    raw_points: int = 0
    rows_written: int = 0


class RollupStore:
    """Reads raw presence a day at a time and keeps ``presence_daily`` current."""

    def __init__(self, store: TimeSeriesStore, config: AnalyticsConfig | None = None,
                 chunk_size: int = 100_000) -> None:
        self.store = store
        self.config = config or AnalyticsConfig()
        self.chunk_size = chunk_size

    def load_raw(self, start: dt.datetime, end: dt.datetime,
                 community: str | None = None) -> pd.DataFrame:
        """Raw association events in [start, end) as an events frame (probes left out)."""
        columns = self._collect(queries.raw_presence(_ns(start), _ns(end), community),
                                list(queries.RAW_FIELDS), (TAG_AP, TAG_EVENT, *LOCATION_TAGS))
        return pd.DataFrame({
            "ts": np.asarray(columns["time"], dtype=np.int64) / 1e9,
            "ap": columns["ap"], "event": columns["event"], "device": columns["device"],
            "rssi": np.asarray(columns["rssi"], dtype=np.float64),
            "randomized": np.asarray([v is True for v in columns["randomized"]], dtype=bool),
            **{tag: columns[tag] for tag in LOCATION_TAGS},
        })

    def load_reports(self, start: dt.datetime, end: dt.datetime,
                     community: str | None = None) -> pd.DataFrame:
        """The APs' reports in [start, end) from ``ap_heartbeat``: ts, ap, location tags.

        Empty before the collector stored heartbeats (older data): the estimator then infers
        when each AP was heard from its devices' sightings, as it did before.
        """
        columns = self._collect(queries.raw_heartbeats(_ns(start), _ns(end), community),
                                ["at_s"], (TAG_AP, *LOCATION_TAGS))
        return pd.DataFrame({
            "ts": np.asarray(columns["time"], dtype=np.int64) / 1e9, "ap": columns["ap"],
            **{tag: columns[tag] for tag in LOCATION_TAGS},
        })

    def _collect(self, query: queries.Query, fields: list[str],
                 tags: tuple[str, ...]) -> dict[str, list[Any]]:
        """Run a GROUP BY * query and gather its rows column by column (no frame per series)."""
        out: dict[str, list[Any]] = {name: [] for name in ("time", *fields, *tags)}
        for names, series_tags, rows in self.store.query_series(*query,
                                                                chunk_size=self.chunk_size):
            position = {name: i for i, name in enumerate(names)}
            for name in ("time", *fields):
                i = position.get(name)
                out[name].extend([row[i] for row in rows] if i is not None
                                 else [None] * len(rows))
            for tag in tags:
                out[tag].extend([series_tags.get(tag, "")] * len(rows))
        return out

    def state(self, window: Window, scope: str) -> dict[dt.date, tuple[int, int]]:
        """Days of the window already rolled up for ``scope``: (raw points, computed at)."""
        frame = self.store.query(*queries.daily_state(_ns(window.start), _ns(window.end), scope))
        if frame.empty:
            return {}
        starts = {int(window.day_start(d).timestamp()): d for d in window.days}
        result: dict[dt.date, tuple[int, int]] = {}
        for time, raw, computed in zip(frame["time"], frame["raw_points"], frame["computed_at"],
                                       strict=True):
            day = starts.get(int(time.timestamp()))
            if day is not None:
                result[day] = (int(raw), int(computed))
        return result

    def count_raw(self, day_window: Window, community: str | None = None) -> int:
        """Raw association events stored for a day (an aggregate: cheap next to reading them)."""
        frame = self.store.query(*queries.raw_presence_count(
            _ns(day_window.start), _ns(day_window.end), community))
        return int(frame["count"].sum()) if not frame.empty else 0

    def ensure(self, window: Window, community: str | None = None, *,
               now: dt.datetime | None = None, recompute: bool = False,
               progress: Callable[[dt.date, int], None] | None = None) -> RollupReport:
        """Roll up every complete day of the window not rolled up yet (or all, recompute).

        A day rolled up within ``rollup_settle_hours`` of its end may still have been
        receiving data (a collector's spool draining after an InfluxDB outage): its raw count
        is checked again, and the day rolled up again if it changed.
        """
        now = now or dt.datetime.now(dt.UTC)
        scope = community or ALL_SCOPE
        done = {} if recompute else self.state(window, scope)
        if not recompute and community:
            # A district-wide roll-up of a day covers every community.
            for day, known in self.state(window, ALL_SCOPE).items():
                done.setdefault(day, known)
        settle_s = self.config.rollup_settle_hours * 3600
        report = RollupReport()
        for day in window.days:
            day_window = Window(last_night=day, nights=1, timezone=window.timezone)
            if day_window.end > now:
                LOGGER.info("night %s is not over yet; not rolled up", day)
                continue
            if day in done:
                raw, computed_at = done[day]
                if computed_at >= day_window.end.timestamp() + settle_s:
                    report.days_current += 1
                    if progress:
                        progress(day, 0)
                    continue
                if self.count_raw(day_window, community) == raw:
                    self._record_state(day_window, scope, raw, None)
                    report.days_current += 1
                    if progress:
                        progress(day, 0)
                    continue
                LOGGER.info("night %s received data after its roll-up: rolling it up again", day)
            events = self.load_raw(day_window.start, day_window.end, community)
            rolled = rollup_events(events, day_window, self.config)
            heard = rollup_heard(self.load_reports(day_window.start, day_window.end, community),
                                 day_window, self.config)
            if not heard.empty:
                rolled = pd.concat([rolled, heard], ignore_index=True)
            self._replace_day(day_window, rolled, community)
            self._record_state(day_window, scope, len(events), len(rolled))
            report.days_rolled += 1
            report.raw_points += len(events)
            report.rows_written += len(rolled)
            LOGGER.info("rolled up night %s (%s): %d raw points -> %d rows",
                        day, scope, len(events), len(rolled))
            if progress:
                progress(day, len(events))
        return report

    def write_rollup(self, rollup: pd.DataFrame, window: Window, batch: int = 5000) -> int:
        """Write roll-up rows in batches (used by ``ensure`` and by the benchmark)."""
        written = 0
        lines: list[str] = []
        used: set[tuple[str, int]] = set()
        for start in range(0, len(rollup), 50_000):
            for point in rollup_points(rollup.iloc[start:start + 50_000], window, used):
                lines.append(point.to_line())
                if len(lines) >= batch:
                    self.store.write_lines(lines)
                    written += len(lines)
                    lines = []
        if lines:
            self.store.write_lines(lines)
            written += len(lines)
        return written

    def mark_rolled(self, window: Window, scope: str = ALL_SCOPE) -> None:
        """Record every day of the window as rolled up (benchmarks writing roll-ups directly)."""
        for day in window.days:
            self._record_state(Window(last_night=day, nights=1, timezone=window.timezone),
                               scope, 0, 0)

    def _replace_day(self, day_window: Window, rolled: pd.DataFrame, community: str | None) -> None:
        """Delete the day's old roll-up rows (of the community) and write the new ones."""
        list(self.store.query_chunks(*queries.delete_daily(
            _ns(day_window.start), _ns(day_window.end), community)))
        self.write_rollup(rolled, day_window)

    def _record_state(self, day_window: Window, scope: str, raw_points: int,
                      rows: int | None) -> None:
        """Remember that a day is rolled up, and from how many raw points.

        Without ``rows`` only the count and the time are written: InfluxDB merges the fields
        of a point written again at the same series and time, so the row count stays.
        """
        fields: dict[str, str | int | float | bool] = {
            "raw_points": int(raw_points),
            "computed_at": int(dt.datetime.now(dt.UTC).timestamp())}
        if rows is not None:
            fields["rows"] = int(rows)
        self.store.write([Point(MEASUREMENT_DAILY_STATE, {TAG_SCOPE: scope}, fields,
                                _ns(day_window.start))])

    def communities(self) -> list[str]:
        """Community codes present in the roll-up (the tag's values)."""
        frame = self.store.query(*queries.daily_communities())
        return sorted(str(v) for v in frame["value"]) if not frame.empty else []

    def load(self, window: Window, community: str | None = None) -> pd.DataFrame:
        """The roll-up rows of the window (optionally one community).

        The district is read one community at a time: one query over every series of a
        TEDA-sized district made InfluxDB 1.6 think for longer than the read timeout before its
        first chunk, while per-community queries start at once and stay bounded (analytics
        partitions by community, as the design says).
        """
        fields = list(queries.DAILY_FIELDS)
        # '' matches series without the tag, so nothing is missed when a point has none.
        codes = [community] if community else [*self.communities(), ""]
        columns: dict[str, list[Any]] = {}
        for code in codes:
            part = self._collect(queries.daily_rows(_ns(window.start), _ns(window.end), code),
                                 fields, (TAG_AP, *LOCATION_TAGS))
            for name, values in part.items():
                columns.setdefault(name, []).extend(values)
        if not columns.get("time"):
            return empty_rollup()
        starts = day_starts_utc(window.days, window)
        seconds = np.asarray(columns["time"], dtype=np.int64) // 1_000_000_000
        days = np.asarray(window.days, dtype=object)
        out = pd.DataFrame({
            "day": days[np.searchsorted(starts, seconds, side="right") - 1],
            "ap": columns["ap"], "device": columns["device"],
            "randomized": np.asarray([v is True for v in columns["randomized"]], dtype=bool),
            "mask": columns["mask"],
            **{name: np.asarray([0 if v is None else v for v in columns[name]], dtype=np.int64)
               for name in ("bins", "samples", "first_s", "last_s")},
            **{name: np.asarray(columns[name], dtype=np.float64)
               for name in ("rssi_mean", "rssi_max")},
            **{tag: columns[tag] for tag in LOCATION_TAGS},
        })
        return out[ROLLUP_COLUMNS]


def _ns(moment: dt.datetime) -> int:
    """Aware datetime -> Unix nanoseconds."""
    return int(moment.timestamp()) * 1_000_000_000
