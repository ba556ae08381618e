"""``wifi-census simulate``: generate a community with ground truth, optionally publish it."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from simulator.config import (
    MAX_DAYS,
    MAX_UNITS,
    MIXES,
    ConfigError,
    SimulationConfig,
    mix_overrides,
)


class _Moment(click.ParamType):
    """An ISO date or date-time; without an offset it is read as the site's local time."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.datetime:
        """Parse the option's text."""
        if isinstance(value, dt.datetime):
            return value
        try:
            return dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or date-time such as 2025-01-15 or "
                      "2025-01-15T08:00+08:00", param, ctx)


@click.command("simulate")
@click.option("--units", type=click.IntRange(1, MAX_UNITS), default=200, show_default=True,
              help="Housing units in the district (TEDA: 41257).")
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=14, show_default=True,
              help="Simulated days (06:00 to 06:00 local).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=1, show_default=True,
              help="Same seed (and --end), same output byte for byte.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the CSVs, events.jsonl and truth.json.")
@click.option("--end", type=_Moment(), default=None,
              help="The period ends at the last complete night before this (default: now).")
@click.option("--live", is_flag=True,
              help="Start the period this morning and publish each message at its own time.")
@click.option("--publish", "do_publish", is_flag=True,
              help="Also send the events to the broker (QoS 1, contract topics).")
@click.option("--replay", is_flag=True,
              help="Generate nothing: publish OUT/events.jsonl from an earlier run.")
@click.option("--rate", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Publishing speed in simulated seconds per real second (0: as fast as the "
                   "broker takes).")
@click.option("--snapshot-interval", type=click.IntRange(10, 86_400), default=300,
              show_default=True, help="Seconds between station snapshots of each AP.")
@click.option("--community-size", type=click.IntRange(10, 10_000), default=362,
              show_default=True, help="Units per community (TEDA: 41257 in 114).")
@click.option("--rented-share", type=click.FloatRange(0, 1), default=0.20, show_default=True,
              help="Share of units rented out.")
@click.option("--group-rental-share", type=click.FloatRange(0, 1), default=0.0644,
              show_default=True, help="Share of rented units that are group rentals.")
@click.option("--ssid", default="Census-Free", show_default=True, help="The APs' SSID.")
@click.option("--mix", type=click.Choice(MIXES), default="default", show_default=True,
              help="Behaviour mix: hard adds lost snapshots, AP reboots, reconnect rotation, "
                   "devices left at home, second phones, deviceless people and noisy meters "
                   "(docs/simulator.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(units: int, days: int, seed: int, out: Path, end: dt.datetime | None, live: bool,
             do_publish: bool, replay: bool, rate: float, snapshot_interval: int,
             community_size: int, rented_share: float, group_rental_share: float, ssid: str,
             mix: str, as_json: bool) -> None:
    """Generate a synthetic community with ground truth; with --publish, send its events."""
    from census.startup import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings)
    if replay:
        events_path = out / "events.jsonl"
        if not events_path.is_file():
            raise click.ClickException(f"--replay: {events_path} does not exist (run without "
                                       "--replay first)")
        sent = _publish(settings, events_path, None, rate, live)
        _report({"published": sent, "events_path": str(events_path)}, as_json)
        return
    if live and end is not None:
        raise click.UsageError("--live starts the period today; it cannot take --end")
    tz = ZoneInfo(settings.timezone)
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=tz)
    try:
        config = SimulationConfig(
            out=out, units=units, days=days, seed=seed, end=end,
            start=dt.datetime.now(dt.UTC) if live else None, timezone=settings.timezone,
            snapshot_interval=snapshot_interval, ssid=ssid, community_size=community_size,
            rented_share=rented_share, group_rental_share=group_rental_share,
            **mix_overrides(mix),
        )
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    from simulator.run import simulate as run_simulation

    with click.progressbar(length=days, label="simulating days", file=sys.stderr,
                           show_pos=True) as bar:
        result = run_simulation(config, progress=lambda _stage, done, _total: bar.update(
            done - bar.pos))
    summary: dict[str, Any] = {
        "out": str(result.out), "period_start": result.period_start.isoformat(),
        "period_end": result.period_end.isoformat(), "messages": result.messages,
        "events": result.events, **result.counts, "seconds": round(result.seconds, 1),
        "peak_rss_mb": round(result.peak_rss_mb, 1),
    }
    oldest = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.retention_days)
    if result.period_start < oldest:
        click.echo(f"warning: the period starts before the {settings.retention_days}-day "
                   "retention window; the collector will reject those events as too old "
                   "(use a later --end)", err=True)
    if do_publish or live:
        summary["published"] = _publish(settings, result.events_path, result.messages, rate, live)
    _report(summary, as_json)


def _publish(settings: Any, events_path: Path, total: int | None, rate: float,
             live: bool) -> int:
    """Publish with a progress bar; a broker problem becomes a clear CLI error."""
    from census.mqtt import MqttError
    from simulator.publisher import count_lines, publish

    length = total if total is not None else count_lines(events_path)
    try:
        with click.progressbar(length=length, label="publishing", file=sys.stderr,
                               show_pos=True) as bar:
            return publish(settings, events_path, rate=rate, live=live, progress=bar.update)
    except MqttError as error:
        raise click.ClickException(str(error)) from None


def _report(summary: dict[str, Any], as_json: bool) -> None:
    """Print what the run did."""
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


@click.command("ap-agents")
def ap_agents() -> None:
    """Stand-in command agents for every AP in the registry (a simulated community's APs):
    verify each signed command with the AP's key, apply it, answer on cmd/ack; until stopped."""
    import signal
    import threading

    from census.channels import command_topic
    from census.mqtt import MqttError
    from census.privacy import IdentityCipher
    from census.startup import configure_logging, load_settings
    from registry.db import make_engine, make_session_factory
    from registry.directory import ApDirectory
    from simulator.agents import SimulatedAgents

    settings = load_settings()
    configure_logging(settings)
    directory = ApDirectory(make_session_factory(make_engine(settings.database_url)),
                            IdentityCipher.from_settings(settings), settings.command_key)
    agents = SimulatedAgents(settings, directory.key_for)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        agents.start()
    except MqttError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"AP agents answering commands on {command_topic(settings.mqtt_topic_prefix, '+')}",
               err=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        agents.stop()
    answers = ", ".join(f"{word} {count}" for word, count in sorted(agents.answers.items()))
    click.echo(f"answered: {answers or 'nothing'}")
