"""Randomized addresses: link the addresses one device used into one logical device.

Phones change their private address (daily, or every couple of weeks) and re-associate under
the new one. Counted naively, one phone becomes many devices. Two kinds of link are made:

* **certain**: the same resident re-bound a new address at the portal (registry bindings), and
  the two addresses were never seen at the same time;
* **inferred**: a randomized address stops being seen and another randomized address, never
  seen before, appears on the same access point soon after, with a similar daily rhythm.

Links never join addresses seen at the same time, so a link can only merge, never invent,
presence; the logical device of an address is the earliest address of its chain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from analytics.config import AnalyticsConfig
from analytics.rollup import unpack_masks

LINK_COLUMNS = ["device", "logical", "link", "link_gap_s", "link_similarity"]
OVERLAP_SLACK_S = 60  # the old address's last snapshot and the new one's first may share a batch


def address_summary(rollup: pd.DataFrame) -> pd.DataFrame:
    """Per address: first and last sighting, where, whether randomized, how much presence."""
    if rollup.empty:
        return pd.DataFrame(columns=["device", "first_s", "last_s", "first_ap", "last_ap",
                                     "randomized", "bins", "days"])
    grouped = rollup.groupby("device", sort=True)
    summary = pd.DataFrame({
        "first_s": grouped["first_s"].min(),
        "last_s": grouped["last_s"].max(),
        "randomized": grouped["randomized"].max(),
        "bins": grouped["bins"].sum(),
        "days": grouped["day"].nunique(),
    })
    first_rows = rollup.loc[rollup.groupby("device")["first_s"].idxmin(), ["device", "ap"]]
    last_rows = rollup.loc[rollup.groupby("device")["last_s"].idxmax(), ["device", "ap"]]
    summary["first_ap"] = first_rows.set_index("device")["ap"]
    summary["last_ap"] = last_rows.set_index("device")["ap"]
    return summary.reset_index()


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


class _UnionFind:
    """Disjoint sets of addresses; the root is the earliest-seen address."""

    def __init__(self, order: dict[str, float]) -> None:
        self.parent: dict[str, str] = {}
        self.order = order

    def find(self, item: str) -> str:
        """The root of an item's set."""
        root = item
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(item, item) != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        """Join two sets; the earlier-seen root wins."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if (self.order.get(rb, 0.0), rb) < (self.order.get(ra, 0.0), ra):
            ra, rb = rb, ra
        self.parent[rb] = ra


def binding_links(summary: pd.DataFrame, bindings: pd.DataFrame) -> list[tuple[str, str]]:
    """Certain links: consecutive addresses one resident bound, never seen at the same time."""
    if bindings.empty or summary.empty:
        return []
    first = dict(zip(summary["device"], summary["first_s"].astype(float), strict=True))
    last = dict(zip(summary["device"], summary["last_s"].astype(float), strict=True))
    randomized = dict(zip(summary["device"], summary["randomized"].astype(bool), strict=True))
    links: list[tuple[str, str]] = []
    for _resident, group in bindings.sort_values("bound_at").groupby("resident_id", sort=False):
        addresses = [str(d) for d in group["device"] if d in first]
        # Order by when each address was first seen; link a chain of non-overlapping ones.
        addresses.sort(key=lambda d: first[d])
        used: set[str] = set()
        for position, later in enumerate(addresses):
            # The address this one replaced: the latest-ending earlier one it never overlapped
            # (a second device of the same resident overlaps, so it is skipped).
            candidates = [e for e in addresses[:position]
                          if e not in used and first[later] >= last[e] - OVERLAP_SLACK_S
                          and (randomized[e] or randomized[later])]
            if candidates:
                earlier = max(candidates, key=lambda e: last[e])
                used.add(earlier)
                links.append((earlier, later))
    return links


# Evidence that an ending and a starting address are one device, as log-likelihood ratios
# against "two different devices" (whose gap is anything up to ``link_max_gap_s``).
ROTATION_WHILE_AWAY_S = 12 * 3600.0  # a rotation while out: the owner is back within hours
QUICK_SHARE = 0.5  # of rotations: half while associated (seconds), half while away (hours)
# Signal level at one AP: a device re-joining within a snapshot or two has not moved (its
# day's mean level barely changes: 2 dB), keeps it roughly within a session (it moves about
# the flat: a few dB) and across days; two devices at one AP differ by about 9 dB (where each
# sits, how far the wall is). Each snapshot jitters by about 2.5 dB.
RSSI_SD_QUICK_DB = 2.0
RSSI_SD_SESSION_DB = 3.0
RSSI_SD_DAYS_DB = 6.0
RSSI_SD_OTHERS_DB = 9.0
RSSI_SD_SAMPLE_DB = 2.5
SESSION_S = 6 * 3600  # an end and a start this close share a session's signal level
RHYTHM_WEIGHT = 6.0  # nats per unit of hour-profile similarity above ``link_min_similarity``


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


def link_evidence(pairs: pd.DataFrame, config: AnalyticsConfig) -> np.ndarray:
    """Log-likelihood ratio "one device" vs "two devices" for each candidate pair.

    ``pairs`` has gap_s, similarity, the days each address was seen (days_end, days_start),
    and the signal (rssi_end, rssi_start) and snapshots (n_end, n_start) of the end's last and
    the start's first roll-up row. Three independent pieces of evidence add up: the gap (a
    rotation shows up seconds or hours later, another device's address at any time), the
    signal level (continuous for one device) and the daily rhythm (weighted by how many days
    it rests on: one stay says little).
    """
    gap = np.maximum(pairs["gap_s"].to_numpy(dtype=float), 0.0)
    quick_mean = config.max_gap_s / 2.0
    same = (QUICK_SHARE * np.exp(-gap / quick_mean) / quick_mean
            + (1 - QUICK_SHARE) * np.exp(-gap / ROTATION_WHILE_AWAY_S) / ROTATION_WHILE_AWAY_S)
    evidence = np.log(np.maximum(same, 1e-300) * config.link_max_gap_s)
    diff = pairs["rssi_end"].to_numpy(dtype=float) - pairs["rssi_start"].to_numpy(dtype=float)
    measure = RSSI_SD_SAMPLE_DB ** 2 * (1.0 / pairs["n_end"].to_numpy(dtype=float)
                                        + 1.0 / pairs["n_start"].to_numpy(dtype=float))
    drift = np.select([gap <= config.max_gap_s, gap <= SESSION_S],
                      [RSSI_SD_QUICK_DB, RSSI_SD_SESSION_DB], RSSI_SD_DAYS_DB) ** 2
    var_same, var_other = drift + measure, RSSI_SD_OTHERS_DB ** 2 + measure
    signal = (0.5 * np.log(var_other / var_same)
              - 0.5 * diff ** 2 * (1.0 / var_same - 1.0 / var_other))
    evidence += np.where(np.isnan(diff), 0.0, signal)
    days = np.minimum(pairs["days_end"].to_numpy(dtype=float),
                      pairs["days_start"].to_numpy(dtype=float))
    rhythm = (pairs["similarity"].to_numpy(dtype=float) - config.link_min_similarity)
    evidence += RHYTHM_WEIGHT * rhythm * days / (days + 2.0)
    return evidence


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


def link_addresses(rollup: pd.DataFrame, bindings: pd.DataFrame, window_start: float,
                   window_end: float, config: AnalyticsConfig | None = None) -> pd.DataFrame:
    """Map every address to its logical device, saying how each link was made."""
    config = config or AnalyticsConfig()
    summary = address_summary(rollup)
    if summary.empty:
        return pd.DataFrame(columns=LINK_COLUMNS)
    certain = binding_links(summary, bindings)
    inferred = inferred_links(rollup, summary, window_start, window_end, config,
                              taken_ends={a for a, _ in certain},
                              taken_starts={b for _, b in certain})
    order = dict(zip(summary["device"], summary["first_s"].astype(float), strict=True))
    sets = _UnionFind(order)
    for a, b in certain:
        sets.union(a, b)
    for a, b in zip(inferred["earlier"], inferred["later"], strict=True):
        sets.union(a, b)
    out = pd.DataFrame({"device": summary["device"]})
    out["logical"] = [sets.find(d) for d in out["device"]]
    out["link"] = "none"
    out["link_gap_s"] = np.nan
    out["link_similarity"] = np.nan
    later_certain = {b: a for a, b in certain}
    out.loc[out["device"].isin(later_certain), "link"] = "certain"
    info = inferred.set_index("later")
    inferred_mask = out["device"].isin(info.index)
    out.loc[inferred_mask, "link"] = "inferred"
    if inferred_mask.any():
        later = out.loc[inferred_mask, "device"]
        out.loc[inferred_mask, "link_gap_s"] = info.loc[later, "gap_s"].to_numpy(dtype=float)
        out.loc[inferred_mask, "link_similarity"] = info.loc[
            later, "similarity"].to_numpy(dtype=float)
    return out[LINK_COLUMNS]


def apply_links(rollup: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """Rewrite the roll-up per logical device: one row per (day, AP, logical device).

    Two addresses of one device seen the same day on the same AP (a rotation mid-day) become one
    row whose mask is the union of theirs.
    """
    if rollup.empty:
        return rollup.assign(addresses=pd.Series(dtype="int64"))
    mapping = links.set_index("device")["logical"]
    frame = rollup.assign(device=rollup["device"].map(mapping).fillna(rollup["device"]))
    duplicated = frame.duplicated(["day", "ap", "device"], keep=False)
    single = frame.loc[~duplicated].assign(addresses=1)
    if not duplicated.any():
        return single.reset_index(drop=True)
    # Merge the duplicated rows group by group, vectorised: OR of masks, sums, min/max.
    multi = frame.loc[duplicated].sort_values(["day", "ap", "device"], kind="stable")
    group = multi.groupby(["day", "ap", "device"], sort=False).ngroup().to_numpy()
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    bits = np.maximum.reduceat(unpack_masks(multi["mask"]).astype(np.uint8), starts, axis=0)
    weights = np.maximum(multi["samples"].to_numpy(dtype=float), 1.0)
    rssi = multi["rssi_mean"].to_numpy(dtype=float)
    valid = ~np.isnan(rssi)
    weighted = np.add.reduceat(np.where(valid, rssi * weights, 0.0), starts)
    weight_sum = np.add.reduceat(np.where(valid, weights, 0.0), starts)
    firsts = multi.iloc[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        rssi_mean = np.where(weight_sum > 0, weighted / weight_sum, np.nan)
    rssi_max = np.fmax.reduceat(multi["rssi_max"].to_numpy(dtype=float), starts)
    merged = pd.DataFrame({
        **{tag: firsts[tag].to_numpy() for tag in ("community", "building", "floor", "unit")},
        "day": firsts["day"].to_numpy(), "ap": firsts["ap"].to_numpy(),
        "device": firsts["device"].to_numpy(),
        "randomized": np.maximum.reduceat(multi["randomized"].to_numpy(dtype=bool), starts),
        "mask": [np.packbits(row).tobytes().hex() for row in bits.astype(bool)],
        "bins": bits.sum(axis=1).astype(np.int64),
        "samples": np.add.reduceat(multi["samples"].to_numpy(dtype=np.int64), starts),
        "rssi_mean": rssi_mean, "rssi_max": rssi_max,
        "first_s": np.minimum.reduceat(multi["first_s"].to_numpy(dtype=np.int64), starts),
        "last_s": np.maximum.reduceat(multi["last_s"].to_numpy(dtype=np.int64), starts),
        "addresses": np.diff(np.r_[starts, len(multi)]),
    })
    return pd.concat([single, merged[single.columns]], ignore_index=True)
