"""`wifi-census demo`: a simulated community through the whole system, to flags and a portal.

Each step uses the real part through its public interface: the simulator writes a community and
its event stream, the registry imports the CSVs, the collector subscribes to the real broker
and drains the published stream into InfluxDB and Redis, analytics turns presence into flags,
cases and alerts, and the portal starts on 127.0.0.1. Last, the AP command log and stand-ins for
the APs' agents start in the background and residents sign in over HTTP: the agents apply the
authorize commands and the log records their answers. Portal, log and agents are left running
(`wifi-census services down` stops them with the servers).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from census.settings import Settings
from census.startup import configure_logging, load_settings

STEPS = 9
DEMO_SIGNINS = 20


def step(number: int, text: str) -> float:
    """Announce a step; return its start time."""
    click.secho(f"[{number}/{STEPS}] {text}", bold=True, err=True)
    return time.monotonic()


def done(started: float, text: str) -> None:
    """Report a finished step with its duration."""
    click.echo(f"      {text} ({time.monotonic() - started:.1f} s)", err=True)


def cli_command(*args: str) -> list[str]:
    """The wifi-census command line, run with this interpreter."""
    return [sys.executable, "-m", "wifi_census.cli", *args]


def reset_demo_stores(settings: Settings) -> None:
    """Start from empty stores: only the development defaults in var/ are ever reset."""
    from timeseries import open_store

    if settings.environment == "production":
        raise click.ClickException("the demo refuses to reset stores in production")
    default_sqlite = f"sqlite:///{settings.var_dir / 'registry.sqlite3'}"
    if settings.database_url == default_sqlite:
        for suffix in ("", "-wal", "-shm"):
            Path(str(settings.var_dir / "registry.sqlite3") + suffix).unlink(missing_ok=True)
    store = open_store(settings)
    store.drop_database()
    store.ensure_database(settings.influx_policy_days)
    # A clean-start connection under the collector's client id discards its persistent session,
    # so events queued for it by an earlier, interrupted demo are not delivered again.
    from census.mqtt import MqttClient

    client = MqttClient(settings, settings.collector_client_id, persistent_session=False)
    client.connect()
    client.disconnect()


def import_registry(settings: Settings, out: Path) -> dict[str, Any]:
    """Import the simulated registry CSVs; return the reports by kind."""
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory, upgrade
    from registry.importers import count_data_lines, import_csv

    engine = make_engine(settings.database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    cipher = IdentityCipher.from_settings(settings)
    reports: dict[str, Any] = {}
    for kind in ("units", "aps", "residents", "utilities"):
        path = out / f"{kind}.csv"
        with click.progressbar(length=count_data_lines(path), label=f"      {kind:10}",
                               file=sys.stderr, show_pos=True) as bar:
            report = import_csv(kind, path, factory, cipher, progress=bar.update, actor="demo")
        if report.errors:
            first = report.errors[0]
            raise click.ClickException(
                f"{path.name}: {len(report.errors)} rows rejected; "
                f"line {first.line}: {first.reason}"
            )
        reports[kind] = report
    return reports


def start_collector(idle_seconds: int) -> subprocess.Popen[str]:
    """Create the collector's persistent session, then start it in the background.

    With the session made first, the broker keeps every event published from then on for the
    collector, whenever it gets to them: nothing depends on who starts first.
    """
    prepared = subprocess.run(cli_command("collector", "prepare"), capture_output=True,
                              text=True, check=False)
    if prepared.returncode != 0:
        raise click.ClickException(f"collector session not created:\n{prepared.stderr[-2000:]}")
    return subprocess.Popen(
        cli_command("collector", "run", "--exit-when-idle", str(idle_seconds), "--summary-json",
                    "--metrics-port", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_analytics(settings: Settings) -> dict[str, Any]:
    """Run analytics over the simulated window; return its JSON report."""
    result = subprocess.run(cli_command("analytics", "run", "--json"), capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"analytics failed:\n{result.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def create_admin(settings: Settings) -> tuple[str, str]:
    """A demo administrator with a fresh random password (kept in var/demo/admin.txt)."""
    from registry.db import make_engine, make_session_factory, session_scope
    from registry.staff import upsert_staff

    password = secrets.token_urlsafe(12)
    with session_scope(make_session_factory(make_engine(settings.database_url))) as session:
        upsert_staff(session, "admin", password, "admin", "Demo administrator")
    path = settings.var_dir / "demo" / "admin.txt"
    path.write_text(f"admin\n{password}\n", encoding="utf-8")
    path.chmod(0o600)
    return "admin", password


def start_portal(settings: Settings) -> str:
    """Leave the portal serving in the background; return what happened."""
    from wifi_census import local_servers

    portal = local_servers.portal_service(settings, sys.executable)
    local_servers.stop(portal)  # a portal from an earlier demo serves old keys and data
    return local_servers.start(portal)


@click.command()
@click.option("--units", default=300, show_default=True, help="Units in the simulated community.")
@click.option("--days", default=14, show_default=True, help="Days of presence to simulate.")
@click.option("--seed", default=2026, show_default=True, help="Simulation seed.")
@click.option("--keep", is_flag=True, help="Keep earlier demo data instead of starting empty.")
def demo(units: int, days: int, seed: int, keep: bool) -> None:
    """Run a simulated community through the whole system and leave the portal serving."""
    from simulator import SimulationConfig, publish, simulate

    settings = load_settings()
    configure_logging(settings)
    os.environ.setdefault("WIFI_CENSUS_LOG_LEVEL", settings.log_level)
    out = settings.var_dir / "demo"
    out.mkdir(parents=True, exist_ok=True)
    overall = time.monotonic()

    started = step(1, "preparing empty stores" if not keep else "keeping earlier data")
    if not keep:
        reset_demo_stores(settings)
    done(started, f"registry {settings.database_url}, InfluxDB database {settings.influx_database}")

    started = step(2, f"simulating {units} units for {days} days (seed {seed})")
    result = simulate(SimulationConfig(units=units, days=days, seed=seed, out=out,
                                       timezone=settings.timezone))
    done(started, f"community and event stream written to {out}")

    started = step(3, "importing the registry")
    reports = import_registry(settings, out)
    counts = ", ".join(f"{kind} {r.rows}" for kind, r in reports.items())
    done(started, f"rows imported: {counts}")

    started = step(4, "starting the collector")
    collector = start_collector(idle_seconds=6)
    done(started, "persistent session subscribed to every access point's events")

    started = step(5, "publishing the access points' events to the broker")
    with click.progressbar(length=result.messages, label="      messages", file=sys.stderr,
                           show_pos=True) as bar:
        messages = publish(settings, result.events_path, progress=bar.update)
    done(started, f"{messages} MQTT messages published")

    started = step(6, "waiting for the collector to drain the stream")
    stdout, stderr = collector.communicate()
    if collector.returncode != 0:
        raise click.ClickException(f"collector failed:\n{stderr[-3000:]}")
    counts = json.loads(stdout.strip().splitlines()[-1])
    rejected = sum(counts["dead_lettered"].values())
    done(started, f"{counts['events_received']} events received, {counts['written']} points "
                  f"written, {rejected} dead-lettered, {counts['events_per_second']:.0f} events/s")

    started = step(7, "analysing presence, registry and utilities")
    report = run_analytics(settings)
    done(started, "analytics finished")

    started = step(8, "starting the portal")
    username, password = create_admin(settings)
    done(started, start_portal(settings))

    started = step(9, f"{DEMO_SIGNINS} residents sign in on the portal from their own units")
    signins = run_signins(settings, out, DEMO_SIGNINS, seed)
    done(started, signins)

    print_summary(settings, report, username, password, time.monotonic() - overall)


def run_signins(settings: Settings, community_dir: Path, count: int, seed: int) -> str:
    """Start the AP command log and stand-in AP agents in the background (they stay, like the
    portal), sign residents in over HTTP, and read back what the command log recorded.
    Returns the step's one-line result."""
    import redis
    from sqlalchemy import func, select

    from census.privacy import IdentityCipher
    from portal.sms import ConsoleSmsSender
    from registry.db import make_engine, make_session_factory
    from registry.directory import ApDirectory
    from registry.models import ApCommandRecord
    from simulator.signins import pick_visitors, sign_in
    from wifi_census import local_servers

    for service in local_servers.demo_services(settings, sys.executable)[1:]:
        local_servers.stop(service)  # one from an earlier demo knows an older registry
        local_servers.start(service)
    factory = make_session_factory(make_engine(settings.database_url))
    directory = ApDirectory(factory, IdentityCipher.from_settings(settings), settings.command_key)
    outbox = ConsoleSmsSender(redis.Redis.from_url(settings.redis_url), settings.redis_key_prefix)
    visitors = pick_visitors(community_dir, count, seed)
    outcomes = [sign_in(settings.portal_public_url, visitor,
                        directory.key_for(visitor.ap_id) or settings.command_key,
                        outbox.last_code) for visitor in visitors]
    signed_in = sum(outcome.ok for outcome in outcomes)
    failed = [f"{o.visitor.ap_id} at {o.step}: {o.detail}" for o in outcomes if not o.ok]
    if failed:
        click.echo("      sign-ins that failed: " + "; ".join(failed), err=True)

    def recorded() -> dict[str, int]:
        with factory() as session:
            return dict(session.execute(
                select(ApCommandRecord.state, func.count()).group_by(ApCommandRecord.state)
            ).all())

    deadline = time.monotonic() + 30
    states = recorded()
    while states.get("done", 0) < signed_in and time.monotonic() < deadline:
        time.sleep(0.2)  # the answers' way: broker -> agents -> broker -> command log
        states = recorded()
    logged = ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "nothing"
    return (f"{signed_in} of {len(outcomes)} signed in; AP command log: {logged} "
            "(agents and command log left running)")


def print_summary(settings: Settings, report: dict[str, Any], username: str, password: str,
                  seconds: float) -> None:
    """The closing summary: analytics' own table, then where to look next."""
    from analytics.cli import summary_table

    click.echo("")
    click.secho("wifi-census demo: summary", bold=True)
    click.echo(summary_table(report))
    click.echo(f"portal      {settings.portal_public_url}/  (captive sign-in)")
    click.echo(f"back office {settings.portal_public_url}/admin/login  staff {username} / "
               f"{password} (also in {settings.var_dir / 'demo' / 'admin.txt'})")
    click.echo("AP agents   stand-ins answer every AP's commands; `wifi-census ap-commands "
               "summary` lists what each AP did, `wifi-census portal sign-redirect` makes a "
               "sign-in link")
    click.echo(f"took        {seconds:.0f} s; stop the servers, the portal, the command log and "
               "the agents with `wifi-census services down`")
