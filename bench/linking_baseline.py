"""The address linking of 2026-11-29, before it was vectorised: the baseline for
``bench/linking_speed.py`` (copied verbatim from ``analytics/linking.py``; the evidence itself,
``link_evidence``, is shared and unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from analytics.config import AnalyticsConfig
from analytics.linking import OVERLAP_SLACK_S, link_evidence
from analytics.rollup import unpack_masks


def hour_profiles(rollup: pd.DataFrame, devices: pd.Index) -> pd.DataFrame:
    """Per address, the share of its days on which it was present in each local hour (0..23).

    Columns are hours of the census day (hour 0 is the day's start, 06:00 local).
    """
    rows = rollup.loc[rollup["device"].isin(devices)]
    if rows.empty:
        return pd.DataFrame(columns=range(24), dtype=float)
    bits = unpack_masks(rows["mask"]).reshape(len(rows), 24, -1).any(axis=2).astype(float)
    frame = pd.DataFrame(bits, index=rows["device"].to_numpy())
    days = rows.groupby("device")["day"].nunique()
    return frame.groupby(level=0).sum().div(days, axis=0)


def _edge_rows(rollup: pd.DataFrame, devices: pd.Index, first: bool) -> pd.DataFrame:
    """Per address, its roll-up row at its first (or last) sighting: signal and samples."""
    rows = rollup.loc[rollup["device"].isin(devices)]
    if rows.empty:
        return pd.DataFrame(columns=["rssi", "samples"])
    index = (rows.groupby("device")["first_s"].idxmin() if first
             else rows.groupby("device")["last_s"].idxmax())
    picked = rows.loc[index.to_numpy(), ["device", "rssi_mean", "samples"]]
    return pd.DataFrame({"rssi": picked["rssi_mean"].to_numpy(dtype=float),
                         "samples": np.maximum(picked["samples"].to_numpy(dtype=float), 1.0)},
                        index=picked["device"].to_numpy())


def assign_links(evidence: np.ndarray, config: AnalyticsConfig) -> list[tuple[int, int]]:
    """One AP's links: the assignment with the most evidence, unambiguous pairs only.

    ``evidence`` is ends x starts (NaN: not a candidate). A pair below ``link_min_evidence``
    is worth less than no link. The assignment maximises the total evidence above that bar;
    each of its pairs is then kept only if every assignment that differs from it by one
    exchange without that pair (leave it unlinked; give its end another start, or its start
    another end, whose own partner takes what is left) is worse by at least ``link_margin``:
    two phones of one signal level re-joining together after a reboot can be swapped at
    almost no cost, so neither is linked rather than one guessed. (Exchanges of one are what
    tells two stations apart; re-solving the whole assignment without each pair instead cost
    ten times the linking's run time on a busy AP.)
    """
    gain = np.where(np.isnan(evidence), 0.0, evidence - config.link_min_evidence)
    gain = np.maximum(gain, 0.0)
    if not gain.any():
        return []
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = gain[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    n_ends, n_starts = gain.shape
    # Each start's current end (and its gain), each end's current start: -1 when unlinked.
    end_of = np.full(n_starts, -1)
    end_of[cols] = rows
    start_of = np.full(n_ends, -1)
    start_of[rows] = cols
    held_by_start = np.where(end_of >= 0, gain[np.maximum(end_of, 0), np.arange(n_starts)], 0.0)
    held_by_end = np.where(start_of >= 0, gain[np.arange(n_ends), np.maximum(start_of, 0)], 0.0)
    chosen = []
    for i, j in zip(rows, cols, strict=True):
        here = gain[i, j]
        # End i moves to start k; k's end (if any) takes start j instead (or nothing).
        partner = end_of
        back = np.where(partner >= 0, gain[np.maximum(partner, 0), j], 0.0)
        moves = here + held_by_start - gain[i] - back
        moves[j] = here  # leaving the pair unlinked
        # Start j goes to end k; k's start (if any) goes to end i instead (or nothing).
        other = start_of
        back_end = np.where(other >= 0, gain[i, np.maximum(other, 0)], 0.0)
        swaps = here + held_by_end - gain[:, j] - back_end
        swaps[i] = here
        if min(moves.min(), swaps.min()) >= config.link_margin:
            chosen.append((int(i), int(j)))
    return chosen


def inferred_links(rollup: pd.DataFrame, summary: pd.DataFrame, window_start: float,
                   window_end: float, config: AnalyticsConfig,
                   taken_ends: set[str] | None = None,
                   taken_starts: set[str] | None = None) -> pd.DataFrame:
    """Inferred links: a randomized address ends and a new one starts on the same AP after it.

    Per AP, all candidate pairs within ``link_max_gap_s`` are weighed at once
    (``link_evidence``) and matched by one assignment (``assign_links``), each address at most
    once in each role. Matching by shortest gap alone joined wrong pairs whenever many
    addresses changed together (an AP reboot with non-persistent addresses).
    """
    columns = ["earlier", "later", "gap_s", "similarity", "evidence"]
    randomized = summary.loc[summary["randomized"]]
    margin = 2 * config.max_gap_s  # an address seen up to the window's edge may go on beyond it
    ends = randomized.loc[randomized["last_s"] < window_end - margin]
    starts = randomized.loc[randomized["first_s"] > window_start + margin]
    if taken_ends:
        ends = ends.loc[~ends["device"].isin(taken_ends)]
    if taken_starts:
        starts = starts.loc[~starts["device"].isin(taken_starts)]
    if ends.empty or starts.empty:
        return pd.DataFrame(columns=columns)
    pairs = ends[["device", "last_s", "last_ap", "days"]].merge(
        starts[["device", "first_s", "first_ap", "days"]], left_on="last_ap",
        right_on="first_ap", suffixes=("_end", "_start"))
    pairs["gap_s"] = pairs["first_s"] - pairs["last_s"]
    pairs = pairs.loc[(pairs["gap_s"] >= -OVERLAP_SLACK_S)
                      & (pairs["gap_s"] <= config.link_max_gap_s)
                      & (pairs["device_end"] != pairs["device_start"])].reset_index(drop=True)
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    involved = pd.Index(pd.unique(pd.concat([pairs["device_end"], pairs["device_start"]])))
    profiles = hour_profiles(rollup, involved)
    a = profiles.reindex(pairs["device_end"]).fillna(0.0).to_numpy(dtype=float)
    b = profiles.reindex(pairs["device_start"]).fillna(0.0).to_numpy(dtype=float)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs["similarity"] = np.where(norms > 0, (a * b).sum(axis=1) / norms, 0.0)
    last_rows = _edge_rows(rollup, pd.Index(pairs["device_end"].unique()), first=False)
    first_rows = _edge_rows(rollup, pd.Index(pairs["device_start"].unique()), first=True)
    pairs["rssi_end"] = pairs["device_end"].map(last_rows["rssi"])
    pairs["n_end"] = pairs["device_end"].map(last_rows["samples"]).fillna(1.0)
    pairs["rssi_start"] = pairs["device_start"].map(first_rows["rssi"])
    pairs["n_start"] = pairs["device_start"].map(first_rows["samples"]).fillna(1.0)
    pairs["evidence"] = link_evidence(pairs, config)
    chosen = []
    for _ap, group in pairs.groupby("last_ap", sort=True):
        end_codes, end_names = pd.factorize(group["device_end"])
        start_codes, start_names = pd.factorize(group["device_start"])
        matrix = np.full((len(end_names), len(start_names)), np.nan)
        matrix[end_codes, start_codes] = group["evidence"].to_numpy(dtype=float)
        where = {(int(i), int(j)): k for i, j, k in zip(end_codes, start_codes, group.index,
                                                        strict=True)}
        for i, j in assign_links(matrix, config):
            chosen.append(where[(i, j)])
    picked = pairs.loc[chosen]
    return pd.DataFrame({"earlier": picked["device_end"].to_numpy(),
                         "later": picked["device_start"].to_numpy(),
                         "gap_s": picked["gap_s"].to_numpy(dtype=float),
                         "similarity": picked["similarity"].to_numpy(dtype=float),
                         "evidence": picked["evidence"].to_numpy(dtype=float)},
                        columns=columns)
