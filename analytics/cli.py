"""``wifi-census analytics``: run the analysis, maintain the roll-up, measure accuracy."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from analytics.config import AnalyticsConfig, ConfigError, Window, parse_window

if TYPE_CHECKING:
    from census.settings import Settings

LOGGER = logging.getLogger(__name__)


def _settings() -> Settings:
    """Settings, or a click error naming the bad variable."""
    from census.startup import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings)
    return settings


def command_config(settings: Settings, path: Path | None, window: str | None) -> AnalyticsConfig:
    """Analytics parameters: --config, else WIFI_CENSUS_ANALYTICS_CONFIG, else the defaults.

    The --window option overrides the file's window.
    """
    try:
        overrides: dict[str, Any] = {}
        if window:
            overrides["window_nights"] = parse_window(window)
        if path is not None:
            return AnalyticsConfig.from_file(path, **overrides)
        if settings.analytics_config:
            configured = Path(settings.analytics_config)
            if not configured.is_file():
                raise click.UsageError(
                    f"WIFI_CENSUS_ANALYTICS_CONFIG names {configured}, which is not a file"
                )
            return AnalyticsConfig.from_file(configured, **overrides)
        return AnalyticsConfig.from_mapping(overrides)
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


def _window(config: AnalyticsConfig, end: dt.datetime | None, timezone: str) -> Window:
    """The window ending on the morning of END (a local date), or after the last full night."""
    return Window.ending(end.date() if end else None, config.window_nights, timezone)


def progress(message: str) -> None:
    """Progress lines on stderr, so --json output stays clean."""
    click.echo(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", err=True)


@click.group()
def analytics() -> None:
    """Occupancy per unit, over-occupancy flags, risk tiers, heatmaps and accuracy."""


_window_option = click.option("--window", "window_text", default=None,
                              help="Nights to analyse, e.g. 28d or 4w (default 28d).")
_community_option = click.option("--community", default=None,
                                 help="Analyse one community (its code); default: all.")
_end_option = click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                           help="Local date whose morning ends the window (default: the last "
                                "night that is over).")
_config_option = click.option("--config", "config_path", type=click.Path(
    exists=True, dir_okay=False, path_type=Path), default=None,
    help="JSON file overriding analytics parameters (see docs/analytics.md).")


@analytics.command("run")
@_window_option
@_community_option
@_end_option
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.option("--all-units", is_flag=True,
              help="With --json: every unit's estimate row, flagged or not (docs/contracts.md "
                   "section 5).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the report and heatmaps (default: <var_dir>/analytics).")
@click.option("--no-deliver", is_flag=True,
              help="Estimate and report only: no cases, tiers, alerts or webhook.")
@click.option("--recompute-rollup", is_flag=True, help="Roll up every night again.")
def run_command(window_text: str | None, community: str | None, end: dt.datetime | None,
                config_path: Path | None, as_json: bool, all_units: bool, out_dir: Path | None,
                no_deliver: bool, recompute_rollup: bool) -> None:
    """Estimate people per unit, flag over-occupancy, deliver cases and alerts, draw heatmaps."""
    from analytics.pipeline import run_analysis
    from timeseries import StoreError

    if all_units and not as_json:
        raise click.UsageError("--all-units goes with --json")
    settings = _settings()
    config = command_config(settings, config_path, window_text)
    window = _window(config, end, settings.timezone)
    try:
        result = run_analysis(settings, config, window=window, community=community,
                              deliver=not no_deliver, out_dir=out_dir,
                              recompute_rollup=recompute_rollup, progress=progress)
    except StoreError as error:
        raise click.ClickException(f"InfluxDB: {error}") from None
    summary = result.summary(all_units=all_units)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(summary_table(summary))


def summary_table(summary: dict[str, Any]) -> str:
    """The terminal summary: window, counts, tiers, delivery and the flags."""
    window = summary["window"]
    tiers = summary["tiers"]
    lines = [
        f"window      {window['start']} .. {window['end']} ({window['nights']} nights, "
        f"{window['timezone']})",
        f"community   {summary['community'] or 'all'}",
        f"units       {summary['units_analysed']} analysed, {summary['units_observed']} with "
        "Wi-Fi data",
        f"people      {summary['registered_people']} registered, "
        f"{summary['estimated_people']:.0f} estimated",
        f"tiers       key {tiers['key']}, attention {tiers['attention']}, "
        f"normal {tiers['normal']}",
    ]
    delivery = summary.get("delivery")
    if delivery:
        lines.append(
            f"cases       {delivery['cases_opened']} opened, {delivery['cases_updated']} updated; "
            f"alerts {delivery['mqtt_published']} on MQTT ({delivery['mqtt_failed']} failed), "
            f"{delivery['webhook_sent']} to the webhook ({delivery['webhook_failed']} failed)")
        for error in delivery["errors"][:5]:
            lines.append(f"  ! {error}")
    flags = sorted(summary["flags"], key=lambda f: (f["tier"] != "key", -f["confidence"],
                                                    f["unit"]))
    if flags:
        lines.append("")
        lines.append(f"{'unit':30} {'tier':9} {'reg':>4} {'est':>5} {'90% interval':>13} "
                     f"{'P(>=reg+2)':>10} {'nights':>6} {'devices':>7} {'utility':>8}")
        for flag in flags:
            low, high = flag["interval"]
            utility = flag.get("utility") or {}
            people = utility.get("estimated_people")
            lines.append(
                f"{flag['unit']:30} {flag['tier']:9} {flag['registered']:>4} "
                f"{flag['estimated']:>5.0f} {f'{low:.0f}-{high:.0f}':>13} "
                f"{flag['confidence']:>10.2f} {flag['nights_observed']:>6} "
                f"{flag['resident_devices']:>7} "
                f"{'-' if people is None else f'{people:.1f}':>8}")
    else:
        lines.append("no flags")
    lines.append("")
    lines.append(f"report      {summary['report_path']}")
    lines.append(f"heatmaps    {summary['heatmaps_dir']}")
    return "\n".join(lines)


@analytics.command("rollup")
@_window_option
@_community_option
@_end_option
@click.option("--recompute", is_flag=True, help="Roll up every night of the window again.")
def rollup_command(window_text: str | None, community: str | None, end: dt.datetime | None,
                   recompute: bool) -> None:
    """Roll raw presence up into nightly rows (the run does this too, incrementally)."""
    from analytics.rollup import RollupStore
    from timeseries import StoreError, open_store

    settings = _settings()
    config = command_config(settings, None, window_text)
    window = _window(config, end, settings.timezone)
    store = open_store(settings)
    try:
        with click.progressbar(length=len(window.days), label="rolling up nights",
                               file=sys.stderr, show_pos=True) as bar:
            report = RollupStore(store, config).ensure(
                window, community, recompute=recompute, progress=lambda _d, _n: bar.update(1))
    except StoreError as error:
        raise click.ClickException(f"InfluxDB: {error}") from None
    finally:
        store.close()
    click.echo(f"{report.days_rolled} nights rolled up ({report.raw_points} raw points -> "
               f"{report.rows_written} rows), {report.days_current} already current")
