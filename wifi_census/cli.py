"""The `wifi-census` command: one entry point with a subcommand per job.

Each part of the system owns its own click group (``collector.cli``, ``analytics.cli``,
``portal.cli``, ``simulator.cli``); this module only wires them together with the shared
ones (services, db, import, config, keys, demo). Parts are imported when their subcommand
runs, so `wifi-census services up` does not pay for pandas or Flask. The two subcommands that
need more than their part may import (`analytics accuracy`, `portal purge`) are defined here and
added to the part's group when it is first used (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from census.settings import (
    generate_digest_key,
    generate_keys,
    markdown_table,
)
from census.startup import configure_logging, load_settings

LOGGER = logging.getLogger(__name__)


class LazyGroup(click.Group):
    """A group whose subcommands live in other packages, imported when first used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None,
                 extra: dict[str, dict[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy or {}
        self._extra = extra or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Eager and lazy subcommands, sorted."""
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import a lazy subcommand on first use."""
        if cmd_name in self._lazy:
            module_name, attribute = self._lazy[cmd_name].split(":")
            command = _command(self._lazy[cmd_name])
            if isinstance(command, click.Group):
                for name, where in self._extra.get(cmd_name, {}).items():
                    command.add_command(_command(where), name)
            return command
        return super().get_command(ctx, cmd_name)


def _command(where: str) -> click.Command:
    """The click command at ``module:attribute``."""
    module_name, attribute = where.split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{where} is not a click command")
    return command


LAZY_COMMANDS = {
    "collector": "collector.cli:collector",
    "sniff": "collector.cli:sniff",
    "analytics": "analytics.cli:analytics",
    "portal": "portal.cli:portal",
    "ap-commands": "apcommands.cli:ap_commands",
    "ap-agents": "simulator.cli:ap_agents",
    "simulate": "simulator.cli:simulate",
    "demo": "wifi_census.demo:demo",
    "firmware": "wifi_census.firmware:firmware",
}
# Subcommands of a part's group that need more than that part may import (docs/architecture.md):
# the top package adds them when the group is first used.
EXTRA_SUBCOMMANDS = {
    "analytics": {"accuracy": "wifi_census.cli:accuracy_command",
                  "calibrate": "wifi_census.cli:calibrate_command"},
    "portal": {"purge": "wifi_census.cli:portal_purge"},
}


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS, extra=EXTRA_SUBCOMMANDS)
@click.version_option(package_name="wifi-census")
def main() -> None:
    """wifi-census: captive-portal real-name Wi-Fi and presence analytics."""


# --- services --------------------------------------------------------------------------------


@main.group()
def services() -> None:
    """Start, stop and check the local Mosquitto, Redis, InfluxDB (and PostgreSQL)."""


@services.command("up")
@click.option("--postgres", is_flag=True, help="Also start the project's PostgreSQL cluster.")
def services_up(postgres: bool) -> None:
    """Start the local servers on 127.0.0.1 and wait until each answers."""
    from wifi_census import local_servers

    settings = load_settings()
    try:
        for service in local_servers.build_services(settings, include_postgres=postgres):
            click.echo(local_servers.start(service))
    except local_servers.ServiceError as error:
        raise click.ClickException(str(error)) from None


@services.command("down")
def services_down() -> None:
    """Stop the local servers this project started."""
    from wifi_census import local_servers

    for line in local_servers.down(load_settings()):
        click.echo(line)


@services.command("status")
def services_status() -> None:
    """Show which local servers run and answer; exit 1 if any does not."""
    from wifi_census import local_servers

    settings = load_settings()
    healthy = True
    for service in local_servers.build_services(settings, include_postgres=True):
        state = local_servers.status(service)
        word = (
            "up"
            if state.running and state.answering
            else ("answering" if state.answering else "down")
        )
        if service.name != "postgres" and not state.answering:
            healthy = False
        pid = f"pid {state.pid}" if state.pid else "no pid"
        click.echo(f"{state.name:10} {word:10} port {state.port:<6} {pid} {state.detail}")
    if not healthy:
        sys.exit(1)


# --- database --------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Registry database: migrations and staff accounts."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: newest)."""
    from registry.db import make_engine, upgrade

    settings = load_settings()
    upgrade(make_engine(settings.database_url), revision)
    click.echo(f"registry at {revision} ({_safe_url(settings.database_url)})")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    from registry.db import downgrade, make_engine

    downgrade(make_engine(load_settings().database_url), revision)
    click.echo(f"registry at {revision}")


@db.command("create-staff")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "hazard_team", "grid_worker",
                                           "viewer"]), required=True)
@click.option("--name", "display_name", default="", help="Name shown in the dashboard.")
@click.password_option()
def db_create_staff(username: str, role: str, display_name: str, password: str) -> None:
    """Create or update a staff account."""
    from registry.db import make_engine, make_session_factory, session_scope
    from registry.staff import upsert_staff

    settings = load_settings()
    try:
        with session_scope(make_session_factory(make_engine(settings.database_url))) as session:
            created = upsert_staff(session, username, password, role, display_name)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'created' if created else 'updated'} {role} {username}")


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- import ----------------------------------------------------------------------------------


@main.command("import")
@click.argument("kind", type=click.Choice(["units", "aps", "residents", "utilities"]))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--max-errors", default=50, show_default=True, help="Rejected rows to list.")
def import_command(kind: str, path: Path, as_json: bool, max_errors: int) -> None:
    """Import a registry CSV file (units, aps, residents or utilities)."""
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory, upgrade
    from registry.importers import HeaderError, count_data_lines, import_csv

    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    cipher = IdentityCipher.from_settings(settings)
    total = count_data_lines(path)
    try:
        with click.progressbar(
            length=total, label=f"importing {kind}", file=sys.stderr, show_pos=True
        ) as bar:
            report = import_csv(kind, path, factory, cipher, progress=bar.update, actor="cli")
    except HeaderError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": report.kind,
                    "rows": report.rows,
                    "created": report.created,
                    "updated": report.updated,
                    "unchanged": report.unchanged,
                    "errors": [{"line": e.line, "reason": e.reason} for e in report.errors],
                },
                ensure_ascii=False,
            )
        )
    else:
        click.echo(
            f"{kind}: {report.rows} rows, {report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.errors)} rejected"
        )
        for rejected in report.errors[:max_errors]:
            click.echo(f"  {path.name}: line {rejected.line}: {rejected.reason}", err=True)
        if len(report.errors) > max_errors:
            click.echo(f"  ... and {len(report.errors) - max_errors} more", err=True)
    if report.errors:
        sys.exit(2)


# --- retention -------------------------------------------------------------------------------


@main.group()
def retention() -> None:
    """Retention per data class (docs/privacy.md): delete what was kept long enough."""


def run_retention_command(as_json: bool, actor: str = "retention") -> None:
    """Enforce every class's retention now; print and audit what was deleted; exit 1 when a
    class could not be enforced (the others still are)."""
    import redis as redis_lib

    from registry.db import make_engine, make_session_factory, upgrade
    from registry.retention import CLASSES, run_retention
    from timeseries import open_store

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = open_store(settings)
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        report = run_retention(settings, make_session_factory(engine), store, client,
                               actor=actor)
    finally:
        store.close()
        client.close()
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        for name, setting in CLASSES.items():
            days = getattr(settings, setting)
            outcome = (f"not enforced: {report.errors[name]}" if name in report.errors
                       else f"deleted {report.deleted[name]}")
            click.echo(f"{name:13} kept {days:>5} days  {outcome}")
    if report.errors:
        sys.exit(1)


@retention.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def retention_run(as_json: bool) -> None:
    """Delete, class by class, what is older than its WIFI_CENSUS_RETENTION_* setting."""
    run_retention_command(as_json)


@click.command("purge")
def portal_purge() -> None:
    """Same as `wifi-census retention run` (kept for existing scripts): every data class, not
    only sign-ins, each to its own retention setting."""
    run_retention_command(as_json=False)


# --- analytics accuracy (simulator + collector + analytics: only the top may join them) -------


@click.command("accuracy")
@click.option("--units", default=150, show_default=True, help="Units in each simulated community.")
@click.option("--days", default=14, show_default=True, help="Nights to simulate and analyse.")
@click.option("--seed", "seeds", type=int, multiple=True, default=(8311,), show_default=True,
              help="Simulation seed(s); report figures on seeds never used to tune (see "
                   "docs/analytics.md).")
@click.option("--mix", "mixes", type=click.Choice(["default", "hard", "habits"]), multiple=True,
              default=("default", "hard"), show_default=True,
              help="Simulator behaviour mix(es), see docs/simulator.md.")
@click.option("--interval", "intervals", type=click.IntRange(10, 3600), multiple=True,
              default=(300, 600), show_default=True, help="AP snapshot cadence(s) in seconds.")
@click.option("--group-rental-share", type=float, default=None,
              help="Share of rentals that are group rentals (default: the simulator's, 6.44%).")
@click.option("--move-ins", "move_in_share", type=click.FloatRange(0.0, 1.0), default=0.0,
              show_default=True,
              help="Share of group rentals whose people move in during the period; also "
                   "reports how many nights after moving in each is first flagged (use "
                   "--days 28 or more).")
@click.option("--via", type=click.Choice(["influx", "direct"]), default="direct",
              show_default=True,
              help="influx: stream -> collector parser -> InfluxDB -> roll-up (the real path); "
                   "direct: the same roll-up function in memory (same events, no database).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the simulated communities and the table "
                   "(default: <var_dir>/accuracy).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--config", "config_path", type=click.Path(
    exists=True, dir_okay=False, path_type=Path), default=None,
    help="JSON file overriding analytics parameters (see docs/analytics.md).")
def accuracy_command(units: int, days: int, seeds: tuple[int, ...], mixes: tuple[str, ...],
                     intervals: tuple[int, ...], group_rental_share: float | None,
                     move_in_share: float, via: str, out_dir: Path | None, as_json: bool,
                     config_path: Path | None) -> None:
    """Simulate communities, analyse them as a deployment would, score against the truth.

    Prints Wi-Fi only, meters only, combined and the naive baseline side by side for every
    mix and cadence asked for.
    """
    from analytics.cli import command_config, progress
    from wifi_census.accuracy import matrix_table, run_matrix

    settings = load_settings()
    configure_logging(settings)
    config = command_config(settings, config_path, None)
    folder = out_dir or settings.var_dir / "accuracy"
    rows = run_matrix(settings, folder, seeds=list(seeds), mixes=list(mixes),
                      intervals=list(intervals), units=units, days=days,
                      group_rental_share=group_rental_share, via=via, config=config,
                      progress=progress, move_in_share=move_in_share)
    table = matrix_table(rows)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "accuracy.md").write_text(
        f"{units} units, {days} nights, presence via {via}\n\n{table}\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows], ensure_ascii=False))
        return
    click.echo(f"{units} units, {days} nights, presence via {via}; "
               f"took {sum(row.seconds for row in rows):.0f} s")
    click.echo("")
    click.echo(table)
    click.echo("")
    click.echo(f"table written to {folder / 'accuracy.md'}")


def _case(text: str) -> tuple[str, int, int]:
    """MIX:CADENCE:SEED (e.g. hard:600:101) as a tuple, or a click error naming it."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("default", "hard", "habits") or not all(
            p.isdigit() for p in parts[1:]):
        raise click.BadParameter(f"{text!r}: must be MIX:CADENCE:SEED, e.g. hard:600:101")
    return parts[0], int(parts[1]), int(parts[2])


@click.command("calibrate")
@click.option("--case", "cases", multiple=True, metavar="MIX:CADENCE:SEED",
              help="Development community (repeatable; default: 68 of them, seeds 111-168 "
                   "and five former held-out seeds in the hard, habits and default mixes at "
                   "300 s and 600 s, see docs/analytics.md). Never held-out seeds.")
@click.option("--units", default=150, show_default=True, help="Units in each community.")
@click.option("--days", default=14, show_default=True, help="Nights to simulate and analyse.")
@click.option("--group-rental-share", type=float, default=0.25, show_default=True,
              help="Share of rentals that are group rentals.")
@click.option("--target", type=click.FloatRange(0.5, 0.99), default=0.9, show_default=True,
              help="Coverage the reported interval should have.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="The analytics config file (JSON) to calibrate with and write "
                   "interval_self_coverage into (default: WIFI_CENSUS_ANALYTICS_CONFIG).")
@click.option("--without-meters", is_flag=True,
              help="Calibrate interval_self_coverage_wifi_only: the interval of a district "
                   "analysed on its Wi-Fi alone (no meter readings imported).")
@click.option("--dry-run", is_flag=True, help="Print the choice; write nothing.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the simulated communities (default: <var_dir>/calibrate).")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
def calibrate_command(cases: tuple[str, ...], units: int, days: int, group_rental_share: float,
                      target: float, config_path: Path | None, without_meters: bool,
                      dry_run: bool, out_dir: Path | None, as_json: bool) -> None:
    """Calibrate the reported interval by conformal calibration, and keep the result.

    Simulates the development communities, analyses each with the combined estimator (or
    on the Wi-Fi alone, --without-meters), picks the smallest ``interval_self_coverage``
    (``interval_self_coverage_wifi_only``: the share of its own posterior mass each
    district's intervals must hold) whose intervals cover TARGET of their occupied units,
    prints the coverage per mix and writes it into the analytics config file.
    """
    from analytics.cli import command_config, progress
    from wifi_census.accuracy import DEVELOPMENT_CASES, calibrate_interval, write_self_coverage

    settings = load_settings()
    configure_logging(settings)
    path = config_path or (Path(settings.analytics_config) if settings.analytics_config
                           else None)
    if path is None and not dry_run:
        raise click.UsageError("name the analytics config file to write: --config FILE or "
                               "WIFI_CENSUS_ANALYTICS_CONFIG (or use --dry-run)")
    config = command_config(settings, path if path is not None and path.is_file() else None,
                            None)
    chosen = tuple(_case(c) for c in cases) or DEVELOPMENT_CASES
    result = calibrate_interval(settings, out_dir or settings.var_dir / "calibrate",
                                cases=chosen, units=units, days=days,
                                group_rental_share=group_rental_share, target=target,
                                config=config, method="wifi" if without_meters else "combined",
                                progress=progress)
    if path is not None and not dry_run:
        try:
            write_self_coverage(path, result.self_coverage, result.parameter)
        except (OSError, ValueError) as error:
            raise click.ClickException(f"{path}: {error}") from None
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "written_to": None if dry_run else str(path)},
                              ensure_ascii=False))
        return
    click.echo(f"{result.units} occupied units in {len(result.cases)} development communities; "
               f"the interval must cover {result.needed:.1%} of them (target {target:.0%})")
    click.echo("")
    click.echo(result.table())
    click.echo("")
    click.echo(f"{result.parameter} = {result.self_coverage:.3f}"
               + ("" if dry_run else f", written to {path}"))


# --- configuration ---------------------------------------------------------------------------


@main.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
def config_command(markdown: bool) -> None:
    """Check the configuration and print it (secrets masked)."""
    if markdown:
        click.echo(markdown_table())
        return
    for name, value in load_settings().describe().items():
        click.echo(f"{name}={value}")


@main.group("keys", invoke_without_command=True)
@click.pass_context
def keys_command(ctx: click.Context) -> None:
    """Print fresh secret keys as environment lines, for a production .env file."""
    if ctx.invoked_subcommand is not None:
        return
    for name, value in generate_keys().items():
        click.echo(f"WIFI_CENSUS_{name.upper()}={value}")
    # Not generated in development (existing data keeps its derived key); new deployments pin
    # one from the start so that the identity key can be rotated later.
    click.echo(f"WIFI_CENSUS_DIGEST_KEY={generate_digest_key()}")


@keys_command.command("digest")
def keys_digest() -> None:
    """Print the identity digest key in use now (set it before rotating the identity key)."""
    from census.privacy import derived_digest_key

    settings = load_settings()
    key = settings.digest_key or derived_digest_key(settings.identity_key).hex()
    click.echo(f"WIFI_CENSUS_DIGEST_KEY={key}")


@keys_command.command("rotate")
@click.option("--batch", "batch_size", type=click.IntRange(1, 100_000), default=500,
              show_default=True, help="Rows per transaction.")
@click.option("--digest", "digests", is_flag=True,
              help="Re-digest residents, sign-ins and the watchlist under WIFI_CENSUS_DIGEST_KEY "
                   "instead (earlier keys in WIFI_CENSUS_DIGEST_KEYS_PREVIOUS).")
def keys_rotate(batch_size: int, digests: bool) -> None:
    """Re-encrypt every stored value under WIFI_CENSUS_IDENTITY_KEY, or with --digest move every
    lookup digest to WIFI_CENSUS_DIGEST_KEY (resumable: run it again after an interruption);
    then the previous keys may be emptied."""
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory, upgrade
    from registry.rotation import DigestRotationRefused, rotate_digests, rotate_keys

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    cipher = IdentityCipher.from_settings(settings)
    try:
        if digests:
            report = rotate_digests(make_session_factory(engine), cipher, batch_size)
        else:
            report = rotate_keys(make_session_factory(engine), cipher, batch_size)
    except DigestRotationRefused as error:
        raise click.ClickException(str(error)) from None
    finally:
        engine.dispose()
    done = "re-digested" if digests else "re-encrypted"
    for table in report.rotated:
        conflicts = report.conflicts.get(table, [])
        click.echo(f"{table:15} {done} {report.rotated[table]:>8}  already current "
                   f"{report.current[table]:>8}  unreadable {len(report.unreadable[table])}"
                   + (f"  held twice (ids {', '.join(map(str, conflicts))})" if conflicts else ""))
    if any(report.unreadable.values()):
        raise click.ClickException("some values open with no configured key (ids logged); "
                                   "keep the previous keys until they are dealt with")
    if not report.finished:
        raise click.ClickException("some identities are held twice, once under each digest key "
                                   "(ids above): merge those rows, run this again, and keep "
                                   "the previous digest key until then")
    if digests:
        click.echo("every digest is under the primary digest key: WIFI_CENSUS_DIGEST_KEYS_PREVIOUS "
                   "may now be emptied")
    else:
        click.echo("every value is under the primary key: WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS may "
                   "now be emptied")


if __name__ == "__main__":  # pragma: no cover
    main()
