"""Benchmark of the simulator: generation time and peak memory, publishing throughput.

Each measurement runs `wifi-census simulate ... --json` in its own process, so the peak
resident memory it reports (getrusage) is that run's alone. Figures are printed with ratios
against a baseline measured in the same run (1,000 units for 2 days):

* memory against days: 1,000 units for 14 days vs the baseline (streaming per day means ~1x);
* generation + publishing of 1,000 units for 14 days (the issue's "runs in minutes");
* a TEDA-scale district (41,257 units) generated to files: peak memory and time.

Usage (from the checkout, services up):

    .venv/bin/python bench/simulate_scale.py [--teda-days 2] [--skip-publish] [--keep]

Outputs go to bench/out/ (git-ignored) and are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
COMMAND = [str(ROOT / ".venv" / "bin" / "wifi-census"), "simulate"]
END = "2026-01-15T12:00+08:00"  # fixed: the figures are reproducible run to run


def simulate(name: str, *arguments: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one simulation in a fresh process; return its JSON summary plus wall time."""
    out = OUT / name
    began = time.monotonic()
    completed = subprocess.run(
        [*COMMAND, "--out", str(out), "--end", END, "--json", *arguments],
        check=True, capture_output=True, text=True, env=env)
    summary: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    summary["wall_s"] = time.monotonic() - began
    summary["bytes"] = sum(path.stat().st_size for path in out.iterdir())
    return summary


def line(label: str, summary: dict[str, Any]) -> str:
    """One printed result."""
    return (f"{label:<38} {summary['wall_s']:8.1f} s  peak {summary['peak_rss_mb']:7.0f} MiB  "
            f"{summary['messages']:>11,} messages  {summary['bytes'] / 2**30:6.2f} GiB")


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teda-days", type=int, default=2,
                        help="days for the 41,257-unit run (disk: ~3.2 GiB per day)")
    parser.add_argument("--skip-publish", action="store_true")
    parser.add_argument("--skip-teda", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep bench/out/ afterwards")
    options = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WIFI_CENSUS_LOG_LEVEL": "WARNING",
           "WIFI_CENSUS_MQTT_TOPIC_PREFIX": f"bench-sim-{uuid.uuid4().hex[:8]}"}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, end {END}")
    try:
        baseline = simulate("base", "--units", "1000", "--days", "2", env=env)
        print(line("baseline: 1,000 units x 2 days", baseline))
        two_weeks = simulate("k1", "--units", "1000", "--days", "14", env=env)
        print(line("1,000 units x 14 days (files)", two_weeks))
        memory = two_weeks["peak_rss_mb"] / baseline["peak_rss_mb"]
        print(f"  memory 14 days / 2 days: {memory:.2f}x"
              f"   time: {two_weeks['wall_s'] / baseline['wall_s']:.2f}x")
        if not options.skip_publish:
            began = time.monotonic()
            completed = subprocess.run(
                [*COMMAND, "--out", str(OUT / "k1"), "--replay", "--json"],
                check=True, capture_output=True, text=True, env=env)
            seconds = time.monotonic() - began
            sent = json.loads(completed.stdout.strip().splitlines()[-1])["published"]
            print(f"{'publish 1,000 x 14 days (QoS 1)':<38} {seconds:8.1f} s  "
                  f"{sent:,} messages  {sent / seconds:,.0f} msg/s")
            total = two_weeks["wall_s"] + seconds
            print(f"  generate + publish 1,000 units x 14 days: {total / 60:.1f} min")
        if not options.skip_teda:
            shutil.rmtree(OUT / "base", ignore_errors=True)
            shutil.rmtree(OUT / "k1", ignore_errors=True)
            teda = simulate("teda", "--units", "41257", "--days", str(options.teda_days),
                            env=env)
            print(line(f"TEDA: 41,257 units x {options.teda_days} days", teda))
            print(f"  memory TEDA / baseline: {teda['peak_rss_mb'] / baseline['peak_rss_mb']:.1f}x"
                  f" for {41257 / 1000:.1f}x the units; "
                  f"people {teda['people']:,}, devices {teda['devices']:,}, APs {teda['aps']:,}")
    finally:
        if not options.keep:
            shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
