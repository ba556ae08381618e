"""One analytics run: roll-up, load, estimate, flag, tier, deliver, draw, report.

This is the estimator path a deployment runs (``wifi-census analytics run``). It sees only
what a deployment sees: presence in InfluxDB (through the roll-up), the registry and its
utility readings and inspections. It never reads a simulator truth file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig, Window
from analytics.delivery import (
    DeliveryReport,
    post_webhook,
    publish_alerts,
    store_cases,
    store_estimates,
)
from analytics.devices import packed_masks
from analytics.estimate import Estimates, estimate_occupancy
from analytics.flags import (
    FlagRecord,
    assign_tiers,
    decide_flags,
    flag_record,
    flags_to_deliver,
    hazard_tiers,
    load_hazards,
)
from analytics.heatmaps import build_heatmaps, presence_grid, unit_hour_night, write_heatmaps
from analytics.loaders import RegistryFrames, load_registry, records
from analytics.rollup import RollupReport, RollupStore
from census.settings import Settings
from registry.db import make_engine, make_session_factory, session_scope, upgrade
from timeseries import TimeSeriesStore, open_store

LOGGER = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class AnalysisResult:
    """Everything one run produced."""

    window: Window
    community: str | None
    units: pd.DataFrame
    flags: list[FlagRecord]
    estimates: Estimates
    rollup: RollupReport
    delivery: DeliveryReport | None
    heatmap_files: dict[str, str] = field(default_factory=dict)
    heatmaps_dir: str = ""
    report_path: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def summary(self, all_units: bool = False) -> dict[str, Any]:
        """The run as JSON values (what ``analytics run --json`` prints).

        ``all_units`` adds ``units``: every analysed unit's row (docs/contracts.md section 5,
        "Per-unit estimates"), flagged or not.
        """
        units = self.units
        tiers = units["tier"].value_counts().to_dict() if not units.empty else {}
        observed = units.loc[units["nights_observed"] > 0] if not units.empty else units
        out: dict[str, Any] = {
            "v": 1,
            "window": self.window.describe(),
            "community": self.community,
            "units_analysed": int(len(units)),
            "units_observed": int(len(observed)),
            "registered_people": int(units["registered"].sum()) if not units.empty else 0,
            "estimated_people": float(units["estimated"].sum()) if not units.empty else 0.0,
            "tiers": {k: int(tiers.get(k, 0)) for k in ("key", "attention", "normal")},
            "flags": [flag.as_dict() for flag in self.flags],
            "rollup": self.rollup.__dict__,
            "delivery": self.delivery.as_dict() if self.delivery else None,
            "prior": {k: round(float(v), 4) for k, v in self.estimates.prior.__dict__.items()},
            "interval_mass": self.estimates.interval_mass,
            "heatmaps_dir": self.heatmaps_dir,
            "report_path": self.report_path,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "generated_at": int(self.generated_at.timestamp()),
        }
        if all_units:
            out["units"] = unit_rows(units)
        return out


# The per-unit output (units.csv, ``analytics run --json --all-units``), in this order;
# docs/contracts.md section 5 documents each column.
UNIT_OUTPUT_COLUMNS = [
    "unit", "community", "building", "floor", "registered", "rented", "coverage",
    "nights_observed", "resident_devices", "people_detected", "estimated", "mean", "low", "high",
    "p_plus_one", "p_plus_two", "wifi_p_plus_two", "zone_wifi_p_group", "persistence",
    "weeks_observed", "utility_ratio", "utility_people", "zone", "zone_units", "flag", "tier",
    "hazards",
]


def _json_value(value: Any) -> Any:
    """A frame cell as a JSON value: numpy scalars unwrapped, NaN and None as null."""
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def unit_rows(units: pd.DataFrame) -> list[dict[str, Any]]:
    """Every unit's estimate row as JSON values (the columns of ``UNIT_OUTPUT_COLUMNS``)."""
    columns = [c for c in UNIT_OUTPUT_COLUMNS if c in units.columns]
    return [{c: _json_value(row[c]) for c in columns} for row in records(units[columns])]


def analyse_frames(rollup: pd.DataFrame, registry: RegistryFrames, window: Window,
                   config: AnalyticsConfig, now: dt.datetime | None = None,
                   progress: Progress | None = None) -> tuple[Estimates, pd.DataFrame]:
    """The pure part of a run: estimates, flags and tiers from loaded frames."""
    now = now or dt.datetime.now(dt.UTC)
    estimates = estimate_occupancy(rollup, registry, window, config, progress=progress)
    flagged = decide_flags(estimates.units, config)
    catalogue = load_hazards(Path(config.hazards_path))
    hazards = hazard_tiers(registry.inspections, catalogue, now, config.inspection_lookback_days)
    return estimates, assign_tiers(flagged, hazards)


def run_analysis(settings: Settings, config: AnalyticsConfig | None = None, *,
                 window: Window | None = None, community: str | None = None,
                 deliver: bool = True, out_dir: Path | None = None,
                 factory: sessionmaker[Session] | None = None,
                 store: TimeSeriesStore | None = None, recompute_rollup: bool = False,
                 now: dt.datetime | None = None, progress: Progress | None = None,
                 mqtt_factory: Callable[[Settings], Any] | None = None) -> AnalysisResult:
    """Run analytics end to end against the configured stores."""
    config = config or AnalyticsConfig()
    now = now or dt.datetime.now(dt.UTC)
    say = progress or (lambda message: LOGGER.info("%s", message))
    window = window or Window.ending(None, config.window_nights, settings.timezone, now=now)
    timings: dict[str, float] = {}
    started = time.monotonic()
    if factory is None:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        factory = make_session_factory(engine)
    own_store = store is None
    store = store or open_store(settings)
    try:
        rollups = RollupStore(store, config)
        say(f"rolling up nights {window.first_night}..{window.days[-1]}")
        rollup_report = rollups.ensure(
            window, community, now=now, recompute=recompute_rollup,
            progress=lambda day, n: say(f"  night {day}: {n} raw points rolled up" if n
                                        else f"  night {day}: already rolled up"))
        timings["rollup"] = time.monotonic() - started
        mark = time.monotonic()
        say("loading the window's roll-up and the registry")
        rollup = rollups.load(window, community)
        with session_scope(factory) as session:
            registry = load_registry(
                session, community,
                utilities_from=window.first_night - dt.timedelta(days=31),
                utilities_to=window.days[-1] + dt.timedelta(days=1),
                inspections_since=now - dt.timedelta(days=config.inspection_lookback_days))
        timings["load"] = time.monotonic() - mark
        LOGGER.info("loaded %d roll-up rows, %d units, %d APs", len(rollup),
                    len(registry.units), len(registry.aps))
    finally:
        if own_store:
            store.close()
    mark = time.monotonic()
    estimates, units = analyse_frames(rollup, registry, window, config, now=now,
                                      progress=lambda step: say(step))
    timings["estimate"] = time.monotonic() - mark

    delivery: DeliveryReport | None = None
    flags: list[FlagRecord]
    mark = time.monotonic()
    if deliver:
        say("storing cases and unit tiers")
        flags, delivery = store_cases(factory, units, window, config, now=now)
        say(f"publishing {len(flags)} alerts")
        publish_alerts(settings, flags, delivery, client_factory=mqtt_factory)
        post_webhook(settings.alert_webhook_url, flags, delivery, config)
    else:
        flags = [flag_record(row, window, now) for row in records(flags_to_deliver(units, config))]
    timings["deliver"] = time.monotonic() - mark

    mark = time.monotonic()
    folder = (out_dir or settings.var_dir / "analytics") / _run_name(window, community)
    say(f"drawing heatmaps into {folder}")
    presence = estimates.presence
    packed = packed_masks(presence["mask"]) if len(presence) else None
    files: dict[str, str] = {}
    heatmaps: dict[str, pd.DataFrame] = {}
    hour_night: dict[str, str] = {}
    if packed is not None:
        grid = presence_grid(presence, packed, estimates.devices, window, config)
        heatmaps = build_heatmaps(presence, packed, estimates.devices, registry.aps,
                                  registry.units, window, config, grid=grid,
                                  walls=estimates.walls)
        if deliver:
            hour_night = unit_hour_night(grid, registry.aps, registry.units, estimates.walls)
        files = write_heatmaps(heatmaps, folder / "heatmaps", title=community or "district")
    timings["heatmaps"] = time.monotonic() - mark
    if deliver:
        mark = time.monotonic()
        say("storing estimates for the back office")
        store_estimates(factory, units, heatmaps, hour_night, window, now=now)
        timings["store_estimates"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started
    result = AnalysisResult(window=window, community=community, units=units, flags=flags,
                            estimates=estimates, rollup=rollup_report, delivery=delivery,
                            heatmap_files=files, heatmaps_dir=str(folder / "heatmaps"),
                            timings=timings, generated_at=now)
    result.report_path = str(write_report(result, folder))
    return result


def _run_name(window: Window, community: str | None) -> str:
    """Folder name of a run's outputs."""
    return f"{window.first_night.isoformat()}_{window.days[-1].isoformat()}_{community or 'all'}"


def write_report(result: AnalysisResult, folder: Path) -> Path:
    """Write the run's JSON report and the per-unit estimates (CSV, pseudonymous)."""
    folder.mkdir(parents=True, exist_ok=True)
    units_path = folder / "units.csv"
    columns = [c for c in UNIT_OUTPUT_COLUMNS if c in result.units.columns and c != "hazards"]
    result.units[columns].to_csv(units_path, index=False)
    path = folder / "report.json"
    summary = result.summary()
    summary["report_path"] = str(path)
    summary["units_csv"] = str(units_path)
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return path
