"""TEDA-scale analytics benchmark (issue 6): 1k, 10k and 41,257 units over 28 nights.

One command (from the repository root, services up):

    .venv/bin/python bench/analytics_scale.py

What it measures, in one run, against the real InfluxDB and a SQLite registry:

1. **The analysis end to end** (``analytics.pipeline.run_analysis``: load 28 rolled-up nights
   from InfluxDB, load the registry and utilities, link addresses, classify, group into people,
   estimate, flag, tier, store cases, publish alerts, draw heatmaps) at each district size, in
   a fresh child process so its peak memory is its own. Printed: seconds, seconds per 1,000
   units and its ratio to the smallest size (flat = 1.0), peak RSS, load average.
2. **The nightly roll-up** (raw snapshots -> ``presence_daily``), which the run keeps
   incremental: one simulated night of the base community is written raw and rolled up; its
   rate (raw points/s) gives the time one TEDA night takes, printed beside the figure.

The district is built from a real simulator community (``--base-units``, 28 days; cached in
var/bench/analytics) whose registry and roll-up are tiled with fresh community codes, AP ids
and device pseudonyms until the size is reached, so each copy behaves like the simulator's
community, not like a synthetic shortcut. Generating 28 raw TEDA nights (~2.4e9 snapshots)
is out of reach of this machine, hence the tiling at the roll-up level.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import pickle
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.config import AnalyticsConfig, Window  # noqa: E402
from census.settings import Settings  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench" / "analytics"
TEDA_UNITS = 41_257


def bench_settings(size: int) -> Settings:
    """Settings of one benchmark size: its own InfluxDB database, registry and topic prefix."""
    folder = BENCH_DIR / f"size-{size}"
    return Settings.load(
        influx_database=f"bench_analytics_{size}",
        database_url=f"sqlite:///{folder / 'registry.sqlite3'}",
        mqtt_topic_prefix="bench-analytics", redis_key_prefix="bench-analytics:")


def base_community(units: int, seed: int) -> dict[str, Any]:
    """The simulator community every district copy is made of (cached)."""
    cache = BENCH_DIR / f"base-{units}-{seed}.pkl"
    if cache.exists():
        with cache.open("rb") as handle:
            data: dict[str, Any] = pickle.load(handle)
        return data
    from analytics.loaders import load_registry
    from analytics.rollup import rollup_events
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory, session_scope, upgrade
    from registry.importers import import_csv
    from simulator import SimulationConfig, simulate
    from wifi_census.accuracy import stream_events, window_for_period

    settings = Settings.load()
    folder = BENCH_DIR / f"sim-{units}-{seed}"
    print(f"building the base community: simulating {units} units for 28 days (seed {seed})")
    sim = simulate(SimulationConfig(out=folder, units=units, days=28, seed=seed))
    database = folder / "registry.sqlite3"
    database.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    factory = make_session_factory(engine)
    cipher = IdentityCipher.from_settings(settings)
    for kind in ("units", "aps", "utilities"):
        import_csv(kind, folder / f"{kind}.csv", factory, cipher, actor="bench")
    with session_scope(factory) as session:
        registry = load_registry(session)
    window = window_for_period(sim.period_start, sim.period_end, settings.timezone)
    print("  rolling the base stream up")
    rollup = rollup_events(stream_events(sim.events_path, settings.pseudonym_key, registry.aps),
                           window)
    data = {"units": registry.units, "aps": registry.aps, "utilities": registry.utilities,
            "rollup": rollup, "last_night": window.last_night, "nights": window.nights,
            "events_path": str(sim.events_path)}
    with cache.open("wb") as handle:
        pickle.dump(data, handle)
    return data


def _rename(value: str, copy: int) -> str:
    """A community code, AP id or reference in district copy ``copy``."""
    return f"X{copy:03d}{value}" if copy else value


def tile(base: dict[str, Any], size: int) -> Iterator[dict[str, pd.DataFrame]]:
    """Copies of the base community, one copy at a time, building by building, to ``size``."""
    units: pd.DataFrame = base["units"]
    buildings = list(units.groupby(["community", "building"], sort=True).groups)
    total, copy = 0, 0
    while total < size:
        parts: dict[str, list[pd.DataFrame]] = {"units": [], "aps": [], "utilities": [],
                                                "rollup": []}
        for community, building in buildings:
            if total >= size:
                break
            here = units.loc[(units["community"] == community) & (units["building"] == building)]
            here = here.iloc[: size - total]
            keep = set(here["unit"])
            aps = base["aps"].loc[(base["aps"]["community"] == community)
                                  & (base["aps"]["building"] == building)]
            aps = aps.loc[(aps["unit"] == "") | aps["unit"].isin(keep)]
            util = base["utilities"].loc[base["utilities"]["unit"].isin(keep)]
            roll = base["rollup"].loc[base["rollup"]["ap"].isin(set(aps["ap"]))]
            parts["units"].append(here.assign(
                unit=[_rename(u, copy) for u in here["unit"]],
                community=_rename(community, copy)))
            parts["aps"].append(aps.assign(
                ap=[_rename(a, copy) for a in aps["ap"]],
                community=_rename(community, copy),
                unit=[_rename(u, copy) if u else "" for u in aps["unit"]]))
            parts["utilities"].append(util.assign(unit=[_rename(u, copy) for u in util["unit"]]))
            salt = f"copy{copy}".encode()
            parts["rollup"].append(roll.assign(
                ap=[_rename(a, copy) for a in roll["ap"]],
                community=[_rename(c, copy) for c in roll["community"]],
                unit=[_rename(u, copy) if u else "" for u in roll["unit"]],
                device=[hashlib.blake2b(salt + d.encode(), digest_size=8).hexdigest()
                        for d in roll["device"]]))
            total += len(here)
        copy += 1
        yield {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


class RegistryWriter:
    """Bulk-inserts the district's registry copy by copy (ids assigned here)."""

    def __init__(self, settings: Settings) -> None:
        from registry.db import make_engine, make_session_factory, upgrade

        path = Path(settings.database_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        self.engine = make_engine(settings.database_url)
        upgrade(self.engine)
        self.factory = make_session_factory(self.engine)
        self.next_ids = {"community": 1, "building": 1, "unit": 1}

    def add(self, part: dict[str, pd.DataFrame]) -> None:
        """Insert one copy's communities, buildings, units, APs and utility readings."""
        from sqlalchemy import insert

        from registry.db import session_scope
        from registry.models import (
            AccessPoint,
            Building,
            Community,
            Coverage,
            Unit,
            UtilityKind,
            UtilityReading,
        )

        units, aps, util = part["units"], part["aps"], part["utilities"]
        ids = self.next_ids
        with session_scope(self.factory) as session:
            communities = sorted(set(units["community"]))
            community_id = {c: ids["community"] + i for i, c in enumerate(communities)}
            session.execute(insert(Community), [{"id": i, "code": c, "name": c}
                                                for c, i in community_id.items()])
            pairs = sorted(set(zip(units["community"], units["building"], strict=True)))
            building_id = {p: ids["building"] + i for i, p in enumerate(pairs)}
            session.execute(insert(Building), [
                {"id": i, "community_id": community_id[c], "code": b, "name": b}
                for (c, b), i in building_id.items()])
            unit_rows = [{"id": ids["unit"] + i,
                          "building_id": building_id[(r.community, r.building)],
                          "code": r.unit.rsplit("/", 1)[1], "ref": r.unit,
                          "floor": int(r.floor), "room": "", "area_m2": float(r.area_m2),
                          "registered_occupants": int(r.registered),
                          "is_rented": bool(r.rented), "meter_group": r.meter_group,
                          "qr_token": secrets.token_urlsafe(18)}
                         for i, r in enumerate(units.itertuples(index=False))]
            session.execute(insert(Unit), unit_rows)
            unit_id = {row["ref"]: row["id"] for row in unit_rows}
            session.execute(insert(AccessPoint), [
                {"ap_id": r.ap, "building_id": building_id[(r.community, r.building)],
                 "coverage": Coverage(r.coverage),
                 "floor": None if pd.isna(r.floor) else int(r.floor),
                 "unit_id": unit_id.get(r.unit), "ssid": "Census-Free"}
                for r in aps.itertuples(index=False)])
            session.execute(insert(UtilityReading), [
                {"unit_id": unit_id[r.unit], "kind": UtilityKind(r.kind),
                 "period_start": r.period_start, "period_end": r.period_end,
                 "amount": float(r.amount)} for r in util.itertuples(index=False)])
        ids["community"] += len(community_id)
        ids["building"] += len(building_id)
        ids["unit"] += len(unit_rows)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()


def prepare(size: int, base: dict[str, Any]) -> dict[str, Any]:
    """Registry and roll-up of one district size in its own database, a copy at a time."""
    from analytics.rollup import RollupStore
    from timeseries import open_store

    settings = bench_settings(size)
    started = time.monotonic()
    window = Window(last_night=base["last_night"], nights=base["nights"],
                    timezone=settings.timezone)
    registry = RegistryWriter(settings)
    store = open_store(settings)
    try:
        store.drop_database()
    except Exception:  # noqa: BLE001 - absent on a first run
        pass
    store.ensure_database(settings.retention_days)
    rollups = RollupStore(store, AnalyticsConfig())
    counts = {"units": 0, "aps": 0, "rollup_rows": 0, "utility_rows": 0}
    for part in tile(base, size):
        registry.add(part)
        counts["rollup_rows"] += rollups.write_rollup(part["rollup"], window)
        counts["units"] += len(part["units"])
        counts["aps"] += len(part["aps"])
        counts["utility_rows"] += len(part["utilities"])
    rollups.mark_rolled(window)
    registry.close()
    store.close()
    return {"size": size, **counts, "prepare_s": time.monotonic() - started}


def cleanup(size: int) -> None:
    """Drop a size's InfluxDB database (the machine's InfluxDB is shared)."""
    from timeseries import open_store

    store = open_store(bench_settings(size))
    try:
        store.drop_database()
    finally:
        store.close()


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM).

    Not ``ru_maxrss``: Linux carries it across fork and exec, so a child would report the
    parent's peak (the parent that built the base community holds several GiB).
    """
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(size: int, last_night: str, nights: int) -> dict[str, Any]:
    """Run one analysis (in this process) and report time and peak memory."""
    from analytics.pipeline import run_analysis

    settings = bench_settings(size)
    window = Window(last_night=dt.date.fromisoformat(last_night), nights=nights,
                    timezone=settings.timezone)
    started = time.monotonic()
    result = run_analysis(settings, AnalyticsConfig(), window=window,
                          out_dir=BENCH_DIR / f"size-{size}" / "out",
                          progress=lambda message: print(f"    {message}", file=sys.stderr))
    seconds = time.monotonic() - started
    return {"seconds": seconds, "timings": result.timings,
            "peak_rss_mb": peak_rss_mb(),
            "units": len(result.units), "flags": len(result.flags),
            "key": sum(1 for f in result.flags if f.tier == "key")}


def rollup_rate(base: dict[str, Any], units: int, seed: int) -> dict[str, Any]:
    """Raw points/s of the nightly roll-up, on one simulated night of the base community."""
    from analytics.rollup import RollupStore
    from collector.parser import ApLocation
    from simulator import SimulationConfig, simulate
    from timeseries import open_store
    from wifi_census.accuracy import window_for_period, write_stream_points

    settings = bench_settings(0)
    folder = BENCH_DIR / f"sim-night-{units}-{seed}"
    sim = simulate(SimulationConfig(out=folder, units=units, days=1, seed=seed))
    window = window_for_period(sim.period_start, sim.period_end, settings.timezone)
    aps = base["aps"]
    locations = {r.ap: ApLocation(r.ap, r.community, r.building,
                                  "" if pd.isna(r.floor) else str(int(r.floor)),
                                  r.unit if r.coverage == "unit" else "")
                 for r in aps.itertuples(index=False)}
    store = open_store(settings)
    store.ensure_database(settings.retention_days)
    try:
        points = write_stream_points(store, sim.events_path, locations, settings.pseudonym_key)
        started = time.monotonic()
        report = RollupStore(store, AnalyticsConfig()).ensure(window, recompute=True)
        seconds = time.monotonic() - started
    finally:
        store.drop_database()
        store.close()
    return {"raw_points": points, "rolled": report.raw_points, "rows": report.rows_written,
            "seconds": seconds, "points_per_s": report.raw_points / max(seconds, 1e-9)}


def main() -> None:
    """Prepare each size, measure it in a child process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"1000,10000,{TEDA_UNITS}")
    parser.add_argument("--base-units", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--measure-one", nargs=3, metavar=("SIZE", "LAST_NIGHT", "NIGHTS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--skip-rollup-rate", action="store_true")
    parser.add_argument("--keep", action="store_true",
                        help="Keep each size's InfluxDB database and registry afterwards.")
    args = parser.parse_args()
    if args.measure_one:
        size, last_night, nights = args.measure_one
        print(json.dumps(measure_one(int(size), last_night, int(nights))))
        return
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    base = base_community(args.base_units, args.seed)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"district of {size} units: preparing registry and roll-up", flush=True)
        prepared = prepare(size, base)
        print(f"  {prepared['units']} units, {prepared['aps']} APs, {prepared['rollup_rows']} "
              f"roll-up rows, {prepared['utility_rows']} utility readings "
              f"({prepared['prepare_s']:.0f} s); analysing", flush=True)
        load_before = os.getloadavg()[0]
        child = subprocess.run(
            [sys.executable, __file__, "--measure-one", str(size),
             base["last_night"].isoformat(), str(base["nights"])],
            capture_output=True, text=True, check=False, cwd=ROOT)
        if child.returncode != 0:
            raise SystemExit(f"size {size} failed:\n{child.stderr[-3000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append({**prepared, **measured, "load": (load_before, os.getloadavg()[0])})
        if not args.keep:
            cleanup(size)
        print(f"  {measured['seconds']:.1f} s, peak {measured['peak_rss_mb']:.0f} MiB, "
              f"{measured['key']} key flags", flush=True)
    first = rows[0]
    per_k0 = first["seconds"] / (first["units"] / 1000)
    print("")
    print(f"analytics end to end, {base['nights']} nights "
          f"(bounds: 41,257 units in <= 300 s and <= 8192 MiB; time per unit flat)")
    print(f"{'units':>7} {'roll-up rows':>12} {'seconds':>8} {'s/1k units':>10} "
          f"{'ratio':>6} {'peak MiB':>9} {'load before/after':>18}  stages (s)")
    for row in rows:
        per_k = row["seconds"] / (row["units"] / 1000)
        stages = " ".join(f"{k}={v:.0f}" for k, v in row["timings"].items() if k != "total")
        print(f"{row['units']:>7} {row['rollup_rows']:>12} {row['seconds']:>8.1f} "
              f"{per_k:>10.2f} {per_k / per_k0:>6.2f} {row['peak_rss_mb']:>9.0f} "
              f"{row['load'][0]:>8.2f}/{row['load'][1]:<8.2f}  {stages}")
    if not args.skip_rollup_rate:
        rate = rollup_rate(base, args.base_units, args.seed)
        teda_night = rate["points_per_s"] and (TEDA_UNITS / args.base_units) * rate["rolled"]
        print("")
        print(f"nightly roll-up: {rate['rolled']} raw points of one night of {args.base_units} "
              f"units -> {rate['rows']} rows in {rate['seconds']:.1f} s "
              f"({rate['points_per_s']:,.0f} points/s); a TEDA night (~{teda_night:,.0f} points) "
              f"takes ~{teda_night / rate['points_per_s'] / 60:.0f} min, once per night")


if __name__ == "__main__":
    main()
