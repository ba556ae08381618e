"""``simulate(config)``: build the world, run the days, write every file into ``config.out``.

Files are written under temporary names and renamed when the run completes, so a folder never
holds a half-written run that looks finished. The registry CSVs are written first, then each
day's events and utility readings are streamed, then the truth (which records what the days
did: nightly head counts, probe addresses, AP outages).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simulator.behaviour import DayEngine
from simulator.community import build_world
from simulator.config import Period, SimulationConfig, simulation_period
from simulator.registry_files import write_aps, write_residents, write_units
from simulator.stream import StreamWriter
from simulator.truth import write_truth
from simulator.utilities import UtilityWriter

LOGGER = logging.getLogger(__name__)

FILES = ("units.csv", "aps.csv", "residents.csv", "utilities.csv", "events.jsonl", "truth.json")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class SimulationResult:
    """Where a run wrote its files and what it produced."""

    out: Path
    units_csv: Path
    aps_csv: Path
    residents_csv: Path
    utilities_csv: Path
    events_path: Path
    truth_path: Path
    period_start: dt.datetime
    period_end: dt.datetime
    messages: int
    events: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def paths(self) -> dict[str, Path]:
        """Every output file by its name."""
        return {path.name: path for path in (self.units_csv, self.aps_csv, self.residents_csv,
                                             self.utilities_csv, self.events_path,
                                             self.truth_path)}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate(config: SimulationConfig, progress: Progress | None = None,
             now: dt.datetime | None = None) -> SimulationResult:
    """Generate a community, its event stream, utilities and truth into ``config.out``."""
    began = time.monotonic()
    period: Period = simulation_period(config, now=now)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    temporary = {name: out / f".{name}.partial" for name in FILES}
    LOGGER.info("simulating %d units for %d days (%s to %s, %s), seed %d, into %s",
                config.units, config.days, period.days[0].date, period.days[-1].date,
                config.timezone, config.seed, out)
    world = build_world(config, period)
    write_units(temporary["units.csv"], world)
    write_aps(temporary["aps.csv"], world)
    residents = write_residents(temporary["residents.csv"], world)
    engine = DayEngine(world, config)
    with temporary["events.jsonl"].open("wb", buffering=1 << 20) as events_handle, \
            temporary["utilities.csv"].open("w", encoding="utf-8", newline="") as utility_handle:
        stream = StreamWriter(events_handle, world, config, period)
        utilities = UtilityWriter(utility_handle, world, config)
        for day in period.days:
            activity = engine.run_day(day)
            stream.write_day(activity)
            utilities.write_day(day, activity.home_hours)
            del activity
            LOGGER.info("day %d/%d (%s): %d messages so far, peak memory %.0f MiB",
                        day.index + 1, len(period.days), day.date, stream.messages,
                        peak_rss_mb())
            if progress:
                progress("days", day.index + 1, len(period.days))
    events = dict(sorted(stream.events.items()))
    extra = {"messages": stream.messages, "events": events, "residents_rows": residents,
             "utility_rows": utilities.rows}
    with temporary["truth.json"].open("w", encoding="utf-8") as handle:
        write_truth(handle, world, config, period, extra)
    for name, path in temporary.items():
        os.replace(path, out / name)
    elapsed = time.monotonic() - began
    LOGGER.info("wrote %d messages (%s) in %.1f s", stream.messages, events, elapsed)
    tz = config.tz
    return SimulationResult(
        out=out, units_csv=out / "units.csv", aps_csv=out / "aps.csv",
        residents_csv=out / "residents.csv", utilities_csv=out / "utilities.csv",
        events_path=out / "events.jsonl", truth_path=out / "truth.json",
        period_start=dt.datetime.fromtimestamp(period.start, tz),
        period_end=dt.datetime.fromtimestamp(period.end, tz),
        messages=stream.messages, events=events,
        counts={"units": len(world.units), "aps": len(world.aps), "people": len(world.people),
                "devices": len(world.devices), "residents_rows": residents,
                "utility_rows": utilities.rows,
                "group_rentals": sum(u.group_rental for u in world.units)},
        seconds=elapsed, peak_rss_mb=peak_rss_mb(),
    )
