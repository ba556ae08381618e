"""The vectorised address linking decides exactly what its definition, written out pair by pair,
decides: the same links, gaps, similarities and evidence, to the last bit."""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from analytics.config import AnalyticsConfig, Window
from analytics.linking import (
    OVERLAP_SLACK_S,
    address_summary,
    assign_links,
    hour_profiles,
    inferred_links,
    link_evidence,
)
from tests.common import rollup_row

WINDOW = Window(last_night=dt.date(2026, 11, 10), nights=10, timezone="Asia/Shanghai")
START = WINDOW.start.timestamp()
END = WINDOW.end.timestamp()
DAY = 86400
BIN = 300


def reference_assign(evidence: np.ndarray, config: AnalyticsConfig) -> list[tuple[int, int]]:
    """One AP's links, each one-exchange alternative of each pair weighed in its own loop."""
    gain = np.maximum(np.where(np.isnan(evidence), 0.0, evidence - config.link_min_evidence),
                      0.0)
    if not gain.any():
        return []
    rows, cols = linear_sum_assignment(gain, maximize=True)
    pairs = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if gain[i, j] > 0]
    n_ends, n_starts = gain.shape
    end_of = {j: i for i, j in pairs}
    start_of = {i: j for i, j in pairs}
    chosen = []
    for i, j in pairs:
        here = float(gain[i, j])
        alternatives = [here]  # the pair left unlinked
        for k in range(n_starts):  # end i takes start k; k's end takes start j, if it has one
            if k != j:
                held = float(gain[end_of[k], k]) if k in end_of else 0.0
                back = float(gain[end_of[k], j]) if k in end_of else 0.0
                alternatives.append(here + held - float(gain[i, k]) - back)
        for k in range(n_ends):  # start j goes to end k; k's start goes to end i, if it has one
            if k != i:
                held = float(gain[k, start_of[k]]) if k in start_of else 0.0
                back = float(gain[i, start_of[k]]) if k in start_of else 0.0
                alternatives.append(here + held - float(gain[k, j]) - back)
        if min(alternatives) >= config.link_margin:
            chosen.append((i, j))
    return chosen


def reference_links(rollup: pd.DataFrame, config: AnalyticsConfig,
                    taken: set[str]) -> pd.DataFrame:
    """Inferred links as defined: every end against every start, one AP at a time."""
    summary = address_summary(rollup)
    margin = 2 * config.max_gap_s
    records = summary.to_dict("records")
    ends = [r for r in records if r["randomized"] and r["last_s"] < END - margin
            and r["device"] not in taken]
    starts = [r for r in records if r["randomized"] and r["first_s"] > START + margin
              and r["device"] not in taken]
    pairs: list[dict[str, Any]] = []
    for end in ends:
        for start in starts:
            gap = start["first_s"] - end["last_s"]
            if (end["last_ap"] == start["first_ap"] and end["device"] != start["device"]
                    and -OVERLAP_SLACK_S <= gap <= config.link_max_gap_s):
                pairs.append({"ap": end["last_ap"], "earlier": end["device"],
                              "later": start["device"], "gap_s": gap,
                              "days_end": end["days"], "days_start": start["days"]})
    columns = ["earlier", "later", "gap_s", "similarity", "evidence"]
    if not pairs:
        return pd.DataFrame(columns=columns)
    profiles = hour_profiles(rollup, pd.Index({p[k] for p in pairs for k in ("earlier", "later")}))
    last = rollup.sort_values("last_s", ascending=False, kind="stable").groupby("device").head(1)
    first = rollup.sort_values("first_s", kind="stable").groupby("device").head(1)
    last, first = last.set_index("device"), first.set_index("device")
    for pair in pairs:
        a, b = (profiles.loc[pair[k]].tolist() for k in ("earlier", "later"))
        products = [[x * y for x, y in zip(a, b, strict=True)], [x * x for x in a],
                    [y * y for y in b]]
        # How numpy summed the (pairs x 24) frames of the first linking: a row-major frame
        # (or a single pair's) row by row, pairwise; a column-major one hour after hour.
        if len(pairs) == 1 or profiles.to_numpy(dtype=float).flags.c_contiguous:
            dot, squares_a, squares_b = (float(np.add.reduce(np.array(p))) for p in products)
        else:
            dot, squares_a, squares_b = (functools.reduce(operator.add, p) for p in products)
        norms = math.sqrt(squares_a) * math.sqrt(squares_b)
        pair["similarity"] = dot / norms if norms > 0 else 0.0
        end, start = last.loc[pair["earlier"]], first.loc[pair["later"]]
        pair["rssi_end"], pair["n_end"] = end["rssi_mean"], max(end["samples"], 1.0)
        pair["rssi_start"], pair["n_start"] = start["rssi_mean"], max(start["samples"], 1.0)
    frame = pd.DataFrame(pairs)
    frame["evidence"] = link_evidence(frame, config)
    chosen = []
    for ap in sorted(set(frame["ap"])):
        group = frame.loc[frame["ap"] == ap]
        # Rows and columns in the order each address first occurs among the AP's pairs.
        row_of = {d: n for n, d in enumerate(dict.fromkeys(group["earlier"]))}
        col_of = {d: n for n, d in enumerate(dict.fromkeys(group["later"]))}
        matrix = np.full((len(row_of), len(col_of)), np.nan)
        at = {}
        for index, pair in group.iterrows():
            i, j = row_of[pair["earlier"]], col_of[pair["later"]]
            matrix[i, j] = pair["evidence"]
            at[(i, j)] = index
        chosen += [at[ij] for ij in reference_assign(matrix, config)]
    picked = frame.loc[chosen]
    return pd.DataFrame({"earlier": picked["earlier"].to_numpy(),
                         "later": picked["later"].to_numpy(),
                         "gap_s": picked["gap_s"].to_numpy(dtype=float),
                         "similarity": picked["similarity"].to_numpy(dtype=float),
                         "evidence": picked["evidence"].to_numpy(dtype=float)}, columns=columns)


def rows_of(device: str, ap: str, day: int, bins: Sequence[int], rssi: float,
            randomized: bool = True, first: float | None = None,
            last: float | None = None) -> dict[str, object]:
    """One roll-up row: ``device`` at ``ap`` in ``bins`` of census day ``day``."""
    return rollup_row(WINDOW, device, day, ap, bins, rssi, randomized, first, last)


def random_rollup(seed: int, aps: int = 3, phones: int = 10) -> pd.DataFrame:
    """Phones rotating addresses at random and all at once when their AP reboots.

    Signal levels come from a few values and rhythms from a few shapes, so that look-alike
    stations (ties for the assignment) are common; some phones also visit a neighbour's AP.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for a in range(aps):
        ap = f"ap{a}"
        reboot_day, reboot_bin = int(rng.integers(1, 9)), int(rng.integers(140, 170))
        for p in range(phones):
            begin = int(rng.choice([100, 130, 150]))
            bins = range(begin, begin + int(rng.choice([60, 100, 120])))
            level = float(rng.choice([-50.0, -55.0, -61.5]))
            randomized = bool(rng.random() < 0.9)
            address = 0
            for day in range(10):
                if rng.random() < 0.1:
                    continue  # a night away
                name = f"{ap}-p{p}-r{address}"
                if day == reboot_day and bins.start < reboot_bin < bins.stop - 1:
                    # The reboot: every phone re-joins under a new address a snapshot later.
                    rows.append(rows_of(name, ap, day, range(bins.start, reboot_bin), level,
                                        randomized))
                    address += 1
                    rows.append(rows_of(f"{ap}-p{p}-r{address}", ap, day,
                                        range(reboot_bin + 1, bins.stop), level, randomized))
                    continue
                rows.append(rows_of(name, ap, day, bins, level + float(rng.normal(0, 1)),
                                    randomized))
                if rng.random() < 0.1:
                    neighbour = f"ap{(a + 1) % aps}"
                    rows.append(rows_of(name, neighbour, day, range(bins.stop, bins.stop + 6),
                                        level - 15.0, randomized))
                if rng.random() < 0.25:
                    address += 1  # rotates while away: tomorrow's address is new
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("seed", "shuffled"), [(1, False), (2, False), (3, True), (4, True)])
def test_links_are_exactly_those_of_the_pair_by_pair_definition(seed: int,
                                                                  shuffled: bool) -> None:
    """Same links, in the same order, with the same gaps, similarities and evidence.

    A roll-up sorted by address and a shuffled one give hour profiles of different memory
    layouts, which numpy sums in different orders.
    """
    config = AnalyticsConfig()
    rollup = random_rollup(seed)
    if shuffled:
        rollup = rollup.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    taken = {"ap0-p0-r1", "ap1-p1-r1"} if seed % 2 else set()
    expected = reference_links(rollup, config, taken)
    got = inferred_links(rollup, address_summary(rollup), START, END, config,
                         taken_ends=taken, taken_starts=taken)
    assert len(expected) > 5  # the case links something
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_single_candidate_pair_is_weighed_exactly_as_defined() -> None:
    """One end and one start in the whole roll-up, with an uneven rhythm.

    (With this seed, summing the hours in the order of many pairs changes the similarity's
    last bit: numpy summed a single pair's hours pairwise.)
    """
    config = AnalyticsConfig()
    rng = np.random.default_rng(0)
    rows = []
    for day in range(10):
        begin = int(rng.integers(100, 160))
        bins = range(begin, begin + int(rng.integers(20, 120)))
        rows.append(rows_of("a" if day < 5 else "b", "ap0", day, bins, -50.0))
    rollup = pd.DataFrame(rows)
    expected = reference_links(rollup, config, set())
    got = inferred_links(rollup, address_summary(rollup), START, END, config)
    assert list(got["later"]) == ["b"]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_two_equally_good_assignments_are_decided_as_defined() -> None:
    """Three phones re-join after a reboot, each as alike to two new addresses as the other.

    Linking each to either is the same total evidence and no single exchange undoes it, so the
    assignment's order of ends and starts decides: it must be the order defined.
    """
    config = AnalyticsConfig()
    x, y, z = (list(range(48 * k, 48 * k + 48)) for k in range(3))  # three 4-hour blocks
    reboot = START + 4 * DAY + 13 * 3600
    rows = []
    for name, bins in {"e0": x + y, "e1": y + z, "e2": z + x}.items():
        rows += [rows_of(name, "ap0", d, bins, -50.0) for d in range(4)]
        rows.append(rows_of(name, "ap0", 4, bins, -50.0, last=reboot))
    for name, bins in {"s0": x, "s1": y, "s2": z}.items():
        rows.append(rows_of(name, "ap0", 4, bins, -50.0, first=reboot + BIN))
        rows += [rows_of(name, "ap0", d, bins, -50.0) for d in range(5, 10)]
    rollup = pd.DataFrame(rows)
    expected = reference_links(rollup, config, set())
    got = inferred_links(rollup, address_summary(rollup), START, END, config)
    assert len(got) == 3
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_candidates_but_no_link_give_the_same_empty_frame() -> None:
    """Two look-alike phones re-joining together: both left unlinked, as defined."""
    config = AnalyticsConfig()
    rows = []
    for phone in ("x", "y"):
        rows += [rows_of(f"{phone}0", "ap0", d, range(150, 280), -50.0) for d in range(4)]
        rows.append(rows_of(f"{phone}0", "ap0", 4, range(150, 200), -50.0))
        rows.append(rows_of(f"{phone}1", "ap0", 4, range(201, 280), -50.0))
        rows += [rows_of(f"{phone}1", "ap0", d, range(150, 280), -50.0) for d in range(5, 10)]
    rollup = pd.DataFrame(rows)
    expected = reference_links(rollup, config, set())
    got = inferred_links(rollup, address_summary(rollup), START, END, config)
    assert got.empty
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize("seed", range(20))
def test_assignment_keeps_exactly_the_pairs_the_exchange_loop_keeps(seed: int) -> None:
    """Random evidence with many ties and gaps: the same pairs as the loop over exchanges."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 40, size=2))
    evidence = rng.integers(-2, 8, size=shape).astype(float) / 2.0
    evidence[rng.random(shape) < 0.6] = np.nan
    config = AnalyticsConfig()
    assert assign_links(evidence, config) == reference_assign(evidence, config)
