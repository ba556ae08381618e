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
MARGIN_BLOCK_CELLS = 1 << 20  # exchanges weighed at once in ``assign_links`` (8 MiB a matrix)
SIMILARITY_BLOCK = 1 << 16  # candidate pairs whose hour profiles are multiplied at once


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
    # Each start's current end (and its gain), each end's current start: -1 when unlinked,
    # which picks the zero row (column) padded onto the gains.
    end_of = np.full(n_starts, -1)
    end_of[cols] = rows
    start_of = np.full(n_ends, -1)
    start_of[rows] = cols
    padded = np.zeros((n_ends + 1, n_starts + 1))
    padded[:-1, :-1] = gain
    held_by_start = padded[end_of, np.arange(n_starts)]
    held_by_end = padded[np.arange(n_ends), start_of]
    # Every chosen pair's exchanges at once, a block of pairs at a time (a pair by pair loop
    # was most of the linking's time on a busy AP); the sums keep the loop's order of terms,
    # so the margins are the same to the last bit.
    ok = np.empty(len(rows), dtype=bool)
    block = max(1, MARGIN_BLOCK_CELLS // max(n_ends, n_starts, 1))
    for lo in range(0, len(rows), block):
        i, j = rows[lo:lo + block], cols[lo:lo + block]
        here = gain[i, j][:, None]
        picked = np.arange(len(i))
        # End i moves to start k; k's end (if any) takes start j instead (or nothing).
        moves = here + held_by_start
        moves -= gain[i]
        moves -= padded[np.ix_(end_of, j)].T
        moves[picked, j] = here[:, 0]  # leaving the pair unlinked
        # Start j goes to end k; k's start (if any) goes to end i instead (or nothing).
        swaps = here + held_by_end
        swaps -= gain[:, j].T
        swaps -= padded[np.ix_(i, start_of)]
        swaps[picked, i] = here[:, 0]
        ok[lo:lo + block] = np.minimum(moves.min(axis=1), swaps.min(axis=1)) >= config.link_margin
    return [(int(i), int(j)) for i, j in zip(rows[ok], cols[ok], strict=True)]


def _candidates(ends: pd.DataFrame, starts: pd.DataFrame,
                config: AnalyticsConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs as positions into ``ends`` and ``starts``, and their gaps.

    The pairs of an end and a start on one AP within the gap bounds, never an address with
    itself, in the order an inner merge of the two on the AP gives (ends in order, then starts
    in order). Only the starts inside each end's gap window are visited: pairing every end
    with every start of its AP first was most of the work over a long window.
    """
    aps, _names = pd.factorize(pd.concat([ends["last_ap"], starts["first_ap"]],
                                         ignore_index=True))
    end_ap, start_ap = aps[:len(ends)], aps[len(ends):]
    last = ends["last_s"].to_numpy(dtype=float)
    first = starts["first_s"].to_numpy(dtype=float)
    # One sort key, AP then time, in bands far enough apart that no window reaches the next
    # AP's band; one second of slack either side (the exact bounds are applied below).
    base = min(last.min(), first.min())
    span = max(last.max(), first.max()) - base + OVERLAP_SLACK_S + config.link_max_gap_s + 4
    start_key = start_ap * span + (first - base)
    by_key = np.argsort(start_key, kind="stable")
    sorted_key = start_key[by_key]
    end_key = end_ap * span + (last - base)
    lo = np.searchsorted(sorted_key, end_key - OVERLAP_SLACK_S - 1, side="left")
    hi = np.searchsorted(sorted_key, end_key + config.link_max_gap_s + 1, side="right")
    counts = np.where(end_ap >= 0, hi - lo, 0)  # an AP-less address has no candidates
    end_pos = np.repeat(np.arange(len(ends)), counts)
    offsets = np.arange(len(end_pos)) - np.repeat(np.cumsum(counts) - counts, counts)
    start_pos = by_key[np.repeat(lo, counts) + offsets]
    # The merge's order: by end, then by start (each pair once, so sorting one number will do).
    pair_key = np.sort(end_pos * len(starts) + start_pos)
    end_pos, start_pos = np.divmod(pair_key, len(starts))
    gap = starts["first_s"].to_numpy()[start_pos] - ends["last_s"].to_numpy()[end_pos]
    names, _uniques = pd.factorize(pd.concat([ends["device"], starts["device"]],
                                             ignore_index=True))
    same = names[:len(ends)][end_pos] == names[len(ends):][start_pos]
    keep = ((gap >= -OVERLAP_SLACK_S) & (gap <= config.link_max_gap_s) & ~same
            & (end_ap[end_pos] == start_ap[start_pos]))
    return end_pos[keep], start_pos[keep], gap[keep]


def _lookup(frame: pd.DataFrame, column: str, devices: np.ndarray) -> np.ndarray:
    """``frame[column]`` for each device (NaN where the device has no row)."""
    at = frame.index.get_indexer(pd.Index(devices))
    values = np.append(frame[column].to_numpy(dtype=float), np.nan)
    return values[np.where(at >= 0, at, len(values) - 1)]


def _row_sums(values: np.ndarray, pairwise: bool) -> np.ndarray:
    """Each row's sum: numpy's pairwise sum of the row, or its hours added one after another."""
    if pairwise:  # numpy reduces each row of a row-major array pairwise
        return np.add.reduce(np.ascontiguousarray(values), axis=1)
    total = values[:, 0].copy()
    for column in range(1, values.shape[1]):
        total += values[:, column]
    return total


def _similarities(profiles: pd.DataFrame, earlier: np.ndarray, later: np.ndarray,
                  end_pos: np.ndarray, start_pos: np.ndarray) -> np.ndarray:
    """Cosine similarity of the hour profiles of each pair (0 where one is empty).

    ``earlier`` and ``later`` are the addresses of the ends and the starts, ``end_pos`` and
    ``start_pos`` the pairs as positions into them.
    """
    table = profiles.to_numpy(dtype=float).reshape(len(profiles), 24)
    table = np.vstack([np.where(np.isnan(table), 0.0, table), np.zeros((1, 24))])
    missing = len(table) - 1  # the zero profile of an address without one
    a_rows = profiles.index.get_indexer(pd.Index(earlier))
    b_rows = profiles.index.get_indexer(pd.Index(later))
    a_rows = np.where(a_rows < 0, missing, a_rows)[end_pos]
    b_rows = np.where(b_rows < 0, missing, b_rows)[start_pos]
    # The first linking summed (pairs x 24) copies of the profiles, whose memory layout is
    # the profiles' own: row by row (numpy sums a row pairwise) when the frame is row-major
    # (a roll-up not sorted by address), hour after hour when it is column-major, unless there
    # is a single pair (a one-row copy is row-major too). Summing in the same order keeps
    # every similarity the same to the last bit.
    pairwise = len(a_rows) == 1 or bool(profiles.to_numpy(dtype=float).flags.c_contiguous)
    # Norms per address, dot products per pair (in blocks: 24 floats per pair and side).
    norm = np.sqrt(_row_sums(table * table, pairwise))
    out = np.empty(len(a_rows))
    for lo in range(0, len(a_rows), SIMILARITY_BLOCK):
        a, b = a_rows[lo:lo + SIMILARITY_BLOCK], b_rows[lo:lo + SIMILARITY_BLOCK]
        norms = norm[a] * norm[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:lo + SIMILARITY_BLOCK] = np.where(
                norms > 0, _row_sums(table[a] * table[b], pairwise) / norms, 0.0)
    return out


def _first_seen_rank(ids: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per element, the rank of its id within its group by where the id first occurs.

    What ``pd.factorize`` gives each group's ids, for all groups at once. The ids are
    0..n-1, all present, and an id belongs to one group only.
    """
    first = np.full(int(ids.max()) + 1, len(ids))
    np.minimum.at(first, ids, np.arange(len(ids)))
    owner = group[first]
    order = np.lexsort((first, owner))
    position = np.empty(len(first), dtype=np.int64)
    position[order] = np.arange(len(first))
    rank = position - np.searchsorted(owner[order], owner, side="left")
    return rank[ids]


def _dense(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions that occur (sorted) and each element's index among them."""
    seen = np.zeros(size, dtype=bool)
    seen[positions] = True
    return np.flatnonzero(seen), (np.cumsum(seen) - 1)[positions]


def _assign_per_ap(aps: np.ndarray, end_pos: np.ndarray, start_pos: np.ndarray,
                   evidence: np.ndarray, config: AnalyticsConfig) -> np.ndarray:
    """The chosen pairs (positions into the candidates), AP by AP in the APs' name order.

    Each AP's matrix has its ends and starts in the order they first occur among its pairs
    (an address ends, or starts, on one AP only), so the assignment, which breaks ties by
    position, sees exactly the matrix it always saw.
    """
    codes, names = pd.factorize(aps)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(len(names))
    ap_rank = rank[codes]
    rows = _first_seen_rank(end_pos, ap_rank)
    cols = _first_seen_rank(start_pos, ap_rank)
    order = np.argsort(ap_rank, kind="stable")
    bounds = np.flatnonzero(np.diff(ap_rank[order])) + 1
    chosen: list[np.ndarray] = []
    for group in np.split(order, bounds):
        i, j = rows[group], cols[group]
        matrix = np.full((int(i.max()) + 1, int(j.max()) + 1), np.nan)
        matrix[i, j] = evidence[group]
        picked = assign_links(matrix, config)
        if picked:
            where = np.full(matrix.shape, -1, dtype=np.int64)
            where[i, j] = group
            chosen.append(where[tuple(np.array(picked).T)])
    return np.concatenate(chosen) if chosen else np.array([], dtype=np.int64)


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
    end_pos, start_pos, gap = _candidates(ends, starts, config)
    if not len(end_pos):
        return pd.DataFrame(columns=columns)
    # Each address's profile and signal is looked up once and then taken by position for its
    # pairs (a busy AP has hundreds of thousands of pairs and only hundreds of addresses).
    used_ends, end_pos = _dense(end_pos, len(ends))
    used_starts, start_pos = _dense(start_pos, len(starts))
    earlier = ends["device"].to_numpy()[used_ends]
    later = starts["device"].to_numpy()[used_starts]
    profiles = hour_profiles(rollup, pd.Index(pd.unique(np.concatenate([earlier, later]))))
    last_rows = _edge_rows(rollup, pd.Index(earlier), first=False)
    first_rows = _edge_rows(rollup, pd.Index(later), first=True)
    n_end = _lookup(last_rows, "samples", earlier)[end_pos]
    n_start = _lookup(first_rows, "samples", later)[start_pos]
    pairs = pd.DataFrame({
        "gap_s": gap,
        "similarity": _similarities(profiles, earlier, later, end_pos, start_pos),
        "days_end": ends["days"].to_numpy()[used_ends][end_pos],
        "days_start": starts["days"].to_numpy()[used_starts][start_pos],
        "rssi_end": _lookup(last_rows, "rssi", earlier)[end_pos],
        "n_end": np.where(np.isnan(n_end), 1.0, n_end),
        "rssi_start": _lookup(first_rows, "rssi", later)[start_pos],
        "n_start": np.where(np.isnan(n_start), 1.0, n_start),
    })
    evidence = link_evidence(pairs, config)
    chosen = _assign_per_ap(ends["last_ap"].to_numpy()[used_ends][end_pos], end_pos, start_pos,
                            evidence, config)
    return pd.DataFrame({"earlier": earlier[end_pos[chosen]],
                         "later": later[start_pos[chosen]],
                         "gap_s": gap[chosen].astype(float),
                         "similarity": pairs["similarity"].to_numpy()[chosen],
                         "evidence": evidence[chosen]},
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
