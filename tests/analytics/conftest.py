"""Small, deterministic worlds for analytics tests: registry CSVs and raw presence events.

Each person or device is a daily routine (when it is home, at which AP, how strong); events
are the snapshots an AP would send every 300 s, plus connect/disconnect at the edges. The
worlds are tiny on purpose: every expected count can be worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import Window
from census.privacy import IdentityCipher
from registry.importers import import_csv
from timeseries import Point, TimeSeriesStore
from timeseries.schema import MEASUREMENT_PRESENCE

TZ = "Asia/Shanghai"
LAST_NIGHT = dt.date(2026, 11, 10)  # replaced by a recent date where InfluxDB retention matters

UNITS_HEADER = ("community,community_name,building,building_name,unit,floor,room,area_m2,"
                "registered_occupants,rented,meter_group\n")
UNITS_CSV = UNITS_HEADER + """C1,,B1,,0101,1,101,60,2,0,
C1,,B1,,0102,1,102,60,1,1,
C1,,B1,,0103,1,103,60,2,0,
C1,,B1,,0104,1,104,60,1,1,
C1,,B2,,0201,2,201,50,2,0,
C1,,B2,,0202,2,202,50,1,1,
"""
APS_CSV = """ap_id,community,building,floor,unit,coverage,ssid
ap-0101,C1,B1,1,0101,unit,Census-Free
ap-0102,C1,B1,1,0102,unit,Census-Free
ap-0103,C1,B1,1,0103,unit,Census-Free
ap-0104,C1,B1,1,0104,unit,Census-Free
ap-lobby,C1,B1,1,,building,Census-Free
ap-b2-f2,C1,B2,2,,floor,Census-Free
"""


def recent_last_night() -> dt.date:
    """A last night a few days back, inside InfluxDB's retention and already over."""
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()


def pseudonym(name: str) -> str:
    """A stable 16-hex pseudonym for a test device name."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass
class Routine:
    """A device's days: home from ``home`` (local hour, may pass midnight) to ``leave``."""

    name: str
    ap: str
    home: float = 19.0
    leave: float = 8.0
    rssi: int = -50
    jitter_min: int = 40
    days: set[int] | None = None  # day indices present; None: every day
    always: bool = False
    randomized: bool = False
    addresses: list[tuple[int, str]] = field(default_factory=list)  # (from day, device name)
    companion_of: Routine | None = None  # arrives and leaves with this one

    def device_on(self, day: int) -> str:
        """The pseudonym the device uses on a day (rotating addresses)."""
        name = self.name
        for start, other in self.addresses:
            if day >= start:
                name = other
        return pseudonym(name)


def _stays(routine: Routine, window: Window, rng: random.Random,
           cache: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The (start, end) Unix times a routine is present over the window."""
    if routine.companion_of is not None:
        return cache[routine.companion_of.name]
    if routine.always:
        stays = [(window.start.timestamp(), window.end.timestamp() - 1)]
        cache[routine.name] = stays
        return stays
    stays = []
    tz = window.tz
    for index, day in enumerate(window.days):
        if routine.days is not None and index not in routine.days:
            continue
        home = dt.datetime.combine(day, dt.time(0), tzinfo=tz) + dt.timedelta(hours=routine.home)
        home += dt.timedelta(minutes=rng.randint(-routine.jitter_min, routine.jitter_min))
        leave_day = day + dt.timedelta(days=1) if routine.leave < routine.home else day
        leave = dt.datetime.combine(leave_day, dt.time(0), tzinfo=tz) + dt.timedelta(
            hours=routine.leave, minutes=rng.randint(-routine.jitter_min, routine.jitter_min))
        stays.append((max(home.timestamp(), window.start.timestamp()),
                      min(leave.timestamp(), window.end.timestamp() - 1)))
    cache[routine.name] = stays
    return stays


def make_events(routines: Iterable[Routine], window: Window, seed: int = 1,
                interval: int = 300) -> pd.DataFrame:
    """Raw events (ts, ap, event, device, rssi, randomized) for the routines over the window."""
    rng = random.Random(seed)
    cache: dict[str, list[tuple[float, float]]] = {}
    rows = []
    start_day = window.start.timestamp()
    for routine in sorted(routines, key=lambda r: r.companion_of is not None):
        for start, end in _stays(routine, window, rng, cache):
            first = start_day + ((start - start_day) // interval + 1) * interval
            t = first
            while t <= end:
                day = int((t - start_day) // 86400)
                rows.append((t, routine.ap, "snapshot", routine.device_on(day),
                             float(routine.rssi), routine.randomized))
                t += interval
    frame = pd.DataFrame(rows, columns=["ts", "ap", "event", "device", "rssi", "randomized"])
    return frame.sort_values("ts", ignore_index=True)


def write_raw(store: TimeSeriesStore, events: pd.DataFrame, aps: pd.DataFrame) -> None:
    """Write events as the collector does (contracts section 6 tags and fields)."""
    tags_of = {row.ap: row for row in aps.itertuples(index=False)}
    points = []
    for row in events.itertuples(index=False):
        ap = tags_of[row.ap]
        tags = {"ap": row.ap, "event": row.event, "community": ap.community,
                "building": ap.building,
                "floor": "" if pd.isna(ap.floor) else str(int(ap.floor)),
                "unit": ap.unit if ap.coverage == "unit" else ""}
        fields: dict[str, str | int | float | bool] = {"device": row.device,
                                                       "randomized": bool(row.randomized)}
        if not pd.isna(row.rssi):
            fields["rssi"] = int(row.rssi)
        offset = int(row.device[:8], 16) % 1_000_000
        points.append(Point(MEASUREMENT_PRESENCE, tags, fields,
                            int(row.ts * 1000) * 1_000_000 + offset))
    for i in range(0, len(points), 5000):
        store.write(points[i:i + 5000])


def import_registry(factory: sessionmaker[Session], cipher: IdentityCipher, folder: Path,
                    units_csv: str = UNITS_CSV, aps_csv: str = APS_CSV,
                    residents_csv: str | None = None, utilities_csv: str | None = None) -> None:
    """Import the tiny registry through the real CSV importer."""
    files = {"units": units_csv, "aps": aps_csv}
    if residents_csv:
        files["residents"] = residents_csv
    if utilities_csv:
        files["utilities"] = utilities_csv
    for kind, text in files.items():
        path = folder / f"{kind}.csv"
        path.write_text(text, encoding="utf-8")
        report = import_csv(kind, path, factory, cipher, actor="test")
        assert not report.errors, report.errors


def household(ap: str, people: int, prefix: str, **overrides: object) -> list[Routine]:
    """``people`` day workers at one AP, each with a phone, with different rhythms."""
    routines = []
    for i in range(people):
        home = 18.0 + (i % 4) * 0.75
        leave = 7.0 + (i % 3) * 0.5
        routines.append(Routine(f"{prefix}-p{i}", ap, home=home, leave=leave,
                                **overrides))  # type: ignore[arg-type]
    return routines


@pytest.fixture
def window() -> Window:
    """Fourteen nights ending a couple of days ago."""
    return Window(last_night=recent_last_night(), nights=14, timezone=TZ)
