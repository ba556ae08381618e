"""``wifi-census ap-commands run | summary``: the command log service and its report."""

from __future__ import annotations

import datetime as dt

import click

from apcommands.log import CommandLog, CommandLogService
from census.mqtt import MqttError
from registry.db import make_engine, make_session_factory


@click.group("ap-commands")
def ap_commands() -> None:
    """The log of signed commands sent to AP agents and their answers."""


@ap_commands.command("run")
@click.option("--client-id", default=None,
              help="MQTT client id = persistent session (default "
                   "WIFI_CENSUS_COMMAND_LOG_CLIENT_ID).")
@click.option("--exit-when-idle", type=click.FloatRange(min=0.1), default=None,
              metavar="SECONDS", help="Stop, everything recorded, once idle this long.")
def run_command(client_id: str | None, exit_when_idle: float | None) -> None:
    """Watch command and answer topics; keep ap_commands current (a long-running service)."""
    import signal

    from census.startup import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings)
    service = CommandLogService(settings, client_id or settings.command_log_client_id)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: service.request_stop())
    try:
        totals = service.run(exit_when_idle_s=exit_when_idle)
    except MqttError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        totals = service.totals
    malformed = ", ".join(f"{k} {v}" for k, v in sorted(totals.malformed.items())) or "none"
    click.echo(f"commands {totals.commands}, answers {totals.acks} (late {totals.late_acks}, "
               f"before their command {totals.unmatched_acks}, from another AP, ignored "
               f"{totals.foreign_acks}), no answer {totals.no_ack}, "
               f"alerts {totals.alerts}, purged {totals.purged}, malformed: {malformed}")


@ap_commands.command("summary")
@click.option("--hours", type=click.IntRange(1, 24 * 90), default=24, show_default=True,
              help="Commands issued in the last HOURS.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def summary_command(hours: int, as_json: bool) -> None:
    """Per AP: commands sent, done, refused (by reason) and unanswered, worst first."""
    import json

    from census.startup import load_settings

    settings = load_settings()
    log = CommandLog(make_session_factory(make_engine(settings.database_url)),
                     settings.pseudonym_key)
    report = log.per_ap(dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours))
    if as_json:
        click.echo(json.dumps(report))
        return
    if not report:
        click.echo(f"no commands in the last {hours} h")
        return
    click.echo(f"{'AP':<32} {'sent':>6} {'done':>6} {'refused':>8} {'no ack':>7} {'waiting':>8}"
               "  errors")
    for entry in report:
        errors = ", ".join(f"{k} {v}" for k, v in entry["errors"].items())
        click.echo(f"{entry['ap']:<32} {entry['commands']:>6} {entry['done']:>6} "
                   f"{entry['refused']:>8} {entry['no_ack']:>7} {entry['waiting']:>8}  {errors}")
