"""Address linking speed: ``inferred_links`` against its code before vectorising, same links.

    nice .venv/bin/python bench/linking_speed.py [--mix hard] [--seed 101] [--units 200] \\
        [--days 14] [--interval 300] [--repeat 3]

Simulates a community (``wifi_census.accuracy.prepare``, presence rolled up in memory, as
``bench/linking_accuracy.py`` does), then on its roll-up, each measured ``--repeat`` times back
to back, the best kept:

* ``inferred_links`` now and as it was (``bench/linking_baseline.py``, the code of 2026-11-29
  copied verbatim), their ratio, and whether both give exactly the same links (every column
  to the last bit: this must say ``yes``), on the roll-up as simulated and sorted by address
  (its hour profiles then have the other memory layout, summed in the other order);
* the time of each phase of one call of each (cProfile, cumulative per function);
* the whole ``estimate_occupancy`` with either linking, and the share of it spent linking
  (``link_addresses``).

The machine is shared: run it under ``nice`` and read the ratios, which hold from run to run
better than the seconds do. The simulated files go to ``bench/out/linking_speed`` (git-ignored)
and are deleted once rolled up, unless ``--keep``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import linking_baseline  # noqa: E402

import analytics.estimate as estimate_module  # noqa: E402
import analytics.linking as linking  # noqa: E402
from analytics.config import AnalyticsConfig  # noqa: E402
from analytics.rollup import split_heard  # noqa: E402

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)  # fixed: the same community run to run
# Phases of one call: (label, function, the function calling it); the time of ``function``
# when called from ``caller`` (nested phases are indented and not added to the rest).
PHASES = {
    "now": [("candidate pairs", "_candidates", "inferred_links"),
            ("hour profiles", "hour_profiles", "inferred_links"),
            ("signal at the edges", "_edge_rows", "inferred_links"),
            ("rhythm similarity", "_similarities", "inferred_links"),
            ("evidence", "link_evidence", "inferred_links"),
            ("assignment per AP", "_assign_per_ap", "inferred_links"),
            ("  of which assign_links", "assign_links", "_assign_per_ap"),
            ("  of which linear_sum_assignment", "linear_sum_assignment", "assign_links")],
    "before": [("candidate pairs (merge)", "merge", "inferred_links"),
               ("hour profiles", "hour_profiles", "inferred_links"),
               ("profiles per pair (reindex)", "reindex", "inferred_links"),
               ("signal at the edges", "_edge_rows", "inferred_links"),
               ("signal per pair (Series.map)", "map", "inferred_links"),
               ("evidence", "link_evidence", "inferred_links"),
               ("per-AP matrix order (factorize)", "factorize", "inferred_links"),
               ("per-AP pair index (dict)", "<dictcomp>", "inferred_links"),
               ("assign_links", "assign_links", "inferred_links"),
               ("  of which linear_sum_assignment", "linear_sum_assignment", "assign_links")],
}


def say(message: str) -> None:
    """Progress on stderr, so the figures on stdout stay clean."""
    print(message, file=sys.stderr, flush=True)


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest of ``repeat`` timed runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return min(times), result


def phases(run: Callable[[], Any], which: str) -> tuple[float, list[tuple[str, float]]]:
    """One profiled call: its total and the seconds of each phase."""
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in stats.values())
    found = []
    for label, function, caller in PHASES[which]:
        seconds = 0.0
        for (_path, _line, name), entry in stats.items():
            if name == function or (name.startswith("<built-in") and function in name):
                seconds += sum(timing[3] for (_p, _l, by), timing in entry[4].items()
                               if by == caller)
        found.append((label, seconds))
    return total, found


def compare(now: pd.DataFrame, before: pd.DataFrame) -> str:
    """``yes`` if both linkings' frames are equal to the last bit, else the first difference."""
    try:
        pd.testing.assert_frame_equal(now, before, check_exact=True)
    except AssertionError as error:
        return f"NO: {str(error).strip().splitlines()[0]}"
    return "yes"


@contextmanager
def linking_as(function: Callable[..., pd.DataFrame]) -> Iterator[None]:
    """``link_addresses`` (and so the estimator) calling ``function`` for inferred links."""
    saved = linking.inferred_links
    linking.inferred_links = function
    try:
        yield
    finally:
        linking.inferred_links = saved


@contextmanager
def timed_linking(spent: list[float]) -> Iterator[None]:
    """Record the seconds of every ``link_addresses`` call the estimator makes."""
    saved = estimate_module.link_addresses

    def timed(*args: Any, **kwargs: Any) -> pd.DataFrame:
        began = time.perf_counter()
        try:
            return saved(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    estimate_module.link_addresses = timed
    try:
        yield
    finally:
        estimate_module.link_addresses = saved


def main() -> None:
    """Simulate, time both linkings and the estimator with each, check the links agree."""
    from census.startup import load_settings
    from simulator import SimulationConfig
    from simulator.config import MIXES, mix_overrides
    from wifi_census.accuracy import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=MIXES, default="hard")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each, best kept")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "linking_speed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the simulated files (about 1 GiB for the default community)")
    args = parser.parse_args()

    settings = load_settings()
    config = AnalyticsConfig()
    folder = args.out / f"{args.mix}-{args.interval}-{args.seed}-{args.units}x{args.days}"
    sim = SimulationConfig(out=folder, units=args.units, days=args.days, seed=args.seed,
                           timezone=settings.timezone, snapshot_interval=args.interval,
                           group_rental_share=0.25, **mix_overrides(args.mix))
    began = time.perf_counter()
    try:
        prepared = prepare(settings, folder, sim, "direct", config, say, NOW)
    finally:
        if not args.keep:  # the roll-up is in memory; the raw stream is not needed again
            shutil.rmtree(folder, ignore_errors=True)
    say(f"prepared in {time.perf_counter() - began:.1f} s")

    # The inputs link_addresses gives inferred_links, built once.
    rollup, _heard = split_heard(prepared.rollup)
    summary = linking.address_summary(rollup)
    certain = linking.binding_links(summary, prepared.registry.bindings)
    window = (prepared.window.start.timestamp(), prepared.window.end.timestamp())
    taken = ({a for a, _ in certain}, {b for _, b in certain})

    def run_now() -> pd.DataFrame:
        return linking.inferred_links(rollup, summary, *window, config, *taken)

    def run_before() -> pd.DataFrame:
        return linking_baseline.inferred_links(rollup, summary, *window, config, *taken)

    say(f"timing inferred_links, {args.repeat} runs of each, back to back")
    before_s = now_s = float("inf")
    links_before = links_now = pd.DataFrame()
    for _ in range(args.repeat):
        seconds, links_before = best_of(1, run_before)
        before_s = min(before_s, seconds)
        seconds, links_now = best_of(1, run_now)
        now_s = min(now_s, seconds)
    same = compare(links_now, links_before)
    # Sorted by address, the hour profiles come out column-major and are summed in another
    # order (analytics.linking._similarities): check that layout too.
    by_address = rollup.sort_values(["device", "day"], kind="stable").reset_index(drop=True)
    same_sorted = compare(
        linking.inferred_links(by_address, summary, *window, config, *taken),
        linking_baseline.inferred_links(by_address, summary, *window, config, *taken))

    say("profiling one call of each")
    profiled = {"before": phases(run_before, "before"), "now": phases(run_now, "now")}

    say(f"timing estimate_occupancy with each linking, {args.repeat} runs")
    whole: dict[str, tuple[float, float]] = {}
    for label, function in (("before", linking_baseline.inferred_links),
                            ("now", linking.inferred_links)):
        spent: list[float] = []
        with linking_as(function), timed_linking(spent):
            seconds, _estimates = best_of(args.repeat, lambda: estimate_module.estimate_occupancy(
                prepared.rollup, prepared.registry, prepared.window, config))
        whole[label] = (seconds, min(spent))

    pairs = len(links_now)
    print(f"community: {args.mix} mix, seed {args.seed}, {args.units} units, {args.days} nights, "
          f"{args.interval} s; roll-up {len(rollup):,} rows, {len(summary):,} addresses, "
          f"{pairs:,} inferred links")
    print(f"inferred_links   before {before_s:7.3f} s   now {now_s:7.3f} s   "
          f"{before_s / now_s:5.1f}x faster   same links: {same} "
          f"(roll-up sorted by address: {same_sorted})")
    for label in ("before", "now"):
        total, found = profiled[label]
        print(f"phases {label} (one profiled call, {total:.3f} s under cProfile):")
        listed = 0.0
        for name, seconds in found:
            print(f"    {name:<34} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")
            listed += 0.0 if name.startswith(" ") else seconds
        print(f"    {'the rest':<34} {total - listed:7.3f} s  "
              f"{100 * (total - listed) / total:5.1f}%")
    for label in ("before", "now"):
        seconds, link_s = whole[label]
        print(f"estimate_occupancy with linking {label:<6} {seconds:7.3f} s, of which "
              f"link_addresses {link_s:6.3f} s ({100 * link_s / seconds:4.1f}%)")
    if same != "yes" or same_sorted != "yes":
        sys.exit(1)


if __name__ == "__main__":
    main()
