"""The `wifi-census` command: one entry point with a subcommand per job.

Each part of the system owns its own click group (``collector.cli``, ``analytics.cli``,
``portal.cli``, ``simulator.cli``); this module only wires them together with the shared
ones (services, db, import, config, keys, demo). Parts are imported when their subcommand
runs, so `wifi-census services up` does not pay for pandas or Flask.
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
    Settings,
    SettingsError,
    generate_digest_key,
    generate_keys,
    markdown_table,
)

LOGGER = logging.getLogger(__name__)


def load_settings() -> Settings:
    """Load settings or stop with the offending variable named."""
    try:
        return Settings.load()
    except SettingsError as error:
        raise click.ClickException(f"configuration error: {error}") from None


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the configured level."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class LazyGroup(click.Group):
    """A group whose subcommands live in other packages, imported when first used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Eager and lazy subcommands, sorted."""
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import a lazy subcommand on first use."""
        if cmd_name in self._lazy:
            module_name, attribute = self._lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


LAZY_COMMANDS = {
    "collector": "collector.cli:collector",
    "sniff": "collector.cli:sniff",
    "analytics": "analytics.cli:analytics",
    "portal": "portal.cli:portal",
    "ap-commands": "apcommands.cli:ap_commands",
    "ap-agents": "simulator.cli:ap_agents",
    "simulate": "simulator.cli:simulate",
    "demo": "census.demo:demo",
    "firmware": "census.firmware:firmware",
}


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS)
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
    from census import services as local

    settings = load_settings()
    try:
        for service in local.build_services(settings, include_postgres=postgres):
            click.echo(local.start(service))
    except local.ServiceError as error:
        raise click.ClickException(str(error)) from None


@services.command("down")
def services_down() -> None:
    """Stop the local servers this project started."""
    from census import services as local

    for line in local.down(load_settings()):
        click.echo(line)


@services.command("status")
def services_status() -> None:
    """Show which local servers run and answer; exit 1 if any does not."""
    from census import services as local

    settings = load_settings()
    healthy = True
    for service in local.build_services(settings, include_postgres=True):
        state = local.status(service)
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
    from timeseries.influx_v1 import InfluxV1Store

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = InfluxV1Store.from_settings(settings)
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
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored value under WIFI_CENSUS_IDENTITY_KEY (resumable: run it again
    after an interruption); then WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS may be emptied."""
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory, upgrade
    from registry.rotation import rotate_keys

    settings = load_settings()
    configure_logging(settings)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    report = rotate_keys(make_session_factory(engine), IdentityCipher.from_settings(settings),
                         batch_size)
    engine.dispose()
    for table in report.rotated:
        click.echo(f"{table:15} re-encrypted {report.rotated[table]:>8}  already current "
                   f"{report.current[table]:>8}  unreadable {len(report.unreadable[table])}")
    if not report.finished:
        raise click.ClickException("some values open with no configured key (ids logged); "
                                   "keep the previous keys until they are dealt with")
    click.echo("every value is under the primary key: WIFI_CENSUS_IDENTITY_KEYS_PREVIOUS may "
               "now be emptied")


if __name__ == "__main__":  # pragma: no cover
    main()
