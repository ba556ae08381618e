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


def inferred_links(rollup: pd.DataFrame, summary: pd.DataFrame, window_start: float,
                   window_end: float, config: AnalyticsConfig,
                   taken_ends: set[str] | None = None,
                   taken_starts: set[str] | None = None) -> pd.DataFrame:
    """Inferred links: a randomized address ends and a new one starts on the same AP soon after.

    Candidates are matched greedily by shortest gap, each address at most once in each role;
    beyond ``link_max_gap_s`` or below ``link_min_similarity`` (hour-of-day rhythm) no link.
    """
    columns = ["earlier", "later", "gap_s", "similarity"]
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
    pairs = ends[["device", "last_s", "last_ap"]].merge(
        starts[["device", "first_s", "first_ap"]], left_on="last_ap", right_on="first_ap",
        suffixes=("_end", "_start"))
    pairs["gap_s"] = pairs["first_s"] - pairs["last_s"]
    pairs = pairs.loc[(pairs["gap_s"] >= -OVERLAP_SLACK_S)
                      & (pairs["gap_s"] <= config.link_max_gap_s)
                      & (pairs["device_end"] != pairs["device_start"])]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    involved = pd.Index(pd.unique(pd.concat([pairs["device_end"], pairs["device_start"]])))
    profiles = hour_profiles(rollup, involved)
    a = profiles.reindex(pairs["device_end"]).fillna(0.0).to_numpy(dtype=float)
    b = profiles.reindex(pairs["device_start"]).fillna(0.0).to_numpy(dtype=float)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs["similarity"] = np.where(norms > 0, (a * b).sum(axis=1) / norms, 0.0)
    # A re-association within a couple of snapshots is a rotation whatever the rhythm says.
    quick = pairs["gap_s"] <= config.max_gap_s
    pairs = pairs.loc[quick | (pairs["similarity"] >= config.link_min_similarity)]
    pairs = pairs.sort_values(["gap_s", "similarity"], ascending=[True, False], kind="stable")
    used_end: set[str] = set()
    used_start: set[str] = set()
    chosen = []
    for end, start, gap, sim in zip(pairs["device_end"], pairs["device_start"], pairs["gap_s"],
                                    pairs["similarity"], strict=True):
        if end in used_end or start in used_start:
            continue
        used_end.add(end)
        used_start.add(start)
        chosen.append((end, start, float(gap), float(sim)))
    return pd.DataFrame(chosen, columns=columns)


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
