"""Address linking against the simulator's truth: precision and recall of joined addresses.

    .venv/bin/python bench/linking_accuracy.py --mix hard --seed 101 --units 120

Simulates a community (``wifi_census.accuracy.prepare``, presence rolled up in memory), links
its randomized addresses as the estimator does (``analytics.linking.link_addresses``) and
scores the links with the truth file, which says which device used every address and when:

* **precision**: of the links made (consecutive addresses of one logical device, ordered by
  first sighting), the share joining two addresses of one true device;
* **recall**: of the true successive address pairs of one device that were both seen, the
  share that ended in one logical device;
* the same two on **mass rotations** only: pairs whose new address starts within a minute of
  the end of a reboot of an AP the device uses (every station re-joining at once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from census.privacy import pseudonymize_mac  # noqa: E402

REBOOT_REJOIN_S = 60  # stations re-join within a minute of the AP coming back


def link_scores(links: pd.DataFrame, rollup: pd.DataFrame, truth: dict[str, Any],
                pseudonym_key: str) -> dict[str, float | int]:
    """Precision and recall of ``links`` (``link_addresses`` output) against the truth."""
    reboot_ends = sorted(end for ap in truth["aps"] for _start, end in ap.get("reboots", []))
    owner: dict[str, str] = {}
    pairs: list[tuple[str, str, bool]] = []  # (earlier, later, at a mass rotation)
    for device in truth["devices"]:
        seq = [(pseudonymize_mac(a["mac"], pseudonym_key), float(a["from"]))
               for a in device["addresses"]]
        for pseudonym, _ in seq:
            owner[pseudonym] = device["id"]
        for (earlier, _), (later, start) in zip(seq, seq[1:], strict=False):
            mass = any(end <= start < end + REBOOT_REJOIN_S for end in reboot_ends)
            pairs.append((earlier, later, mass))
    logical = dict(zip(links["device"], links["logical"], strict=True))
    first = rollup.groupby("device")["first_s"].min()
    made = links.assign(first_s=links["device"].map(first)).sort_values(["logical", "first_s"])
    correct = total = 0
    for _root, group in made.groupby("logical", sort=False):
        chain = list(group["device"])
        for earlier, later in zip(chain, chain[1:], strict=False):
            total += 1
            correct += owner.get(earlier, "?a") == owner.get(later, "?b")
    seen = [(a, b, m) for a, b, m in pairs if a in logical and b in logical]
    joined = [logical[a] == logical[b] for a, b, _ in seen]
    mass_seen = [logical[a] == logical[b] for a, b, m in seen if m]
    # Precision on mass rotations: links whose later address starts at a reboot's re-join.
    later_first = made.set_index("device")["first_s"]
    mass_correct = mass_total = 0
    for _root, group in made.groupby("logical", sort=False):
        chain = list(group["device"])
        for earlier, later in zip(chain, chain[1:], strict=False):
            start = float(later_first.get(later, float("nan")))
            if any(end <= start < end + REBOOT_REJOIN_S + 600 for end in reboot_ends):
                mass_total += 1
                mass_correct += owner.get(earlier, "?a") == owner.get(later, "?b")
    return {
        "links": total,
        "precision": round(correct / total, 4) if total else 1.0,
        "true_pairs_seen": len(seen),
        "recall": round(sum(joined) / len(seen), 4) if seen else 1.0,
        "mass_pairs_seen": len(mass_seen),
        "mass_recall": round(sum(mass_seen) / len(mass_seen), 4) if mass_seen else 1.0,
        "mass_links": mass_total,
        "mass_precision": round(mass_correct / mass_total, 4) if mass_total else 1.0,
    }


def main() -> None:
    """Simulate, link and score; print one JSON line per seed."""
    from analytics.config import AnalyticsConfig
    from analytics.linking import link_addresses
    from census.startup import load_settings
    from simulator import SimulationConfig
    from simulator.config import MIXES, mix_overrides
    from wifi_census.accuracy import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=MIXES, default="hard")
    parser.add_argument("--seed", type=int, action="append", required=True)
    parser.add_argument("--units", type=int, default=120)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "linking")
    args = parser.parse_args()
    settings = load_settings()
    config = AnalyticsConfig()
    for seed in args.seed:
        folder = args.out / f"{args.mix}-{args.interval}-{seed}"
        sim = SimulationConfig(out=folder, units=args.units, days=args.days, seed=seed,
                               timezone=settings.timezone, snapshot_interval=args.interval,
                               group_rental_share=0.25, **mix_overrides(args.mix))
        prepared = prepare(settings, folder, sim, "direct", config, lambda _m: None,
                           dt.datetime.now(dt.UTC))
        links = link_addresses(prepared.rollup, prepared.registry.bindings,
                               prepared.window.start.timestamp(),
                               prepared.window.end.timestamp(), config)
        with (folder / "truth.json").open(encoding="utf-8") as handle:
            truth = json.load(handle)
        scores = link_scores(links, prepared.rollup, truth, settings.pseudonym_key)
        print(json.dumps({"mix": args.mix, "seed": seed, "interval": args.interval, **scores}))


if __name__ == "__main__":
    main()
