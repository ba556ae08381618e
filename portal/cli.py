"""`wifi-census portal ...`: serve the portal, import the watchlist, manage AP secrets."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

LOGGER = logging.getLogger(__name__)


def _settings() -> Any:
    """Settings, or a click error naming the bad variable."""
    from census.startup import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings)
    return settings


@click.group()
def portal() -> None:
    """The captive portal: serve it, import the watchlist, manage AP secrets."""


@portal.command("serve")
@click.option("--role", type=click.Choice(["captive", "admin", "both"]), default=None,
              help="What to serve: captive (residents), admin (back office, on "
                   "PORTAL_ADMIN_HOST/PORT) or both (development only). Default: both in "
                   "development, captive in production.")
@click.option("--host", default=None, help="Address to listen on (default: settings).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: settings).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="gunicorn worker processes (default: one per CPU).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Threads per worker (more than 1: gunicorn's gthread worker, keep-alive).")
@click.option("--proxy-hops", type=click.IntRange(0, 5), default=0, show_default=True,
              help="Reverse proxies in front whose X-Forwarded-For/Proto/Host are trusted.")
@click.option("--dev", is_flag=True, help="Werkzeug's development server instead of gunicorn.")
def serve(role: str | None, host: str | None, port: int | None, workers: int | None,
          threads: int, proxy_hops: int, dev: bool) -> None:
    """Serve the portal (gunicorn; --dev for a single-process development server)."""
    from portal import create_app, serving_role
    from portal.services import PortalConfigError
    from registry.db import make_engine, upgrade

    settings = _settings()
    if role == "admin":
        host = host or settings.portal_admin_host
        port = port or settings.portal_admin_port
    host = host or settings.portal_host
    port = port or settings.portal_port
    test_config: dict[str, Any] = {"PORTAL_PROXY_HOPS": proxy_hops, "PORTAL_ROLE": role}
    try:
        # Checked here, before any worker starts: a refused role stops the command cleanly.
        serving_role(settings, role)
    except PortalConfigError as error:
        raise click.ClickException(str(error)) from None
    # Once, before any worker starts: a fresh checkout (or the demo) serves a migrated registry.
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    if dev:
        app = create_app(settings, test_config)
        click.echo(f"portal (development server) on http://{host}:{port}/", err=True)
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
        return
    from gunicorn.app.base import BaseApplication

    class PortalApplication(BaseApplication):
        """gunicorn running create_app() in each worker (after the fork)."""

        def load_config(self) -> None:
            """gunicorn settings from the command line."""
            options = {
                "bind": f"{host}:{port}",
                # gthread with keep-alive: twice the sign-ins/s of sync workers here, which
                # close every connection (bench/portal_load.py, docs/portal.md).
                "workers": workers or (os.cpu_count() or 1),
                "threads": threads,
                "worker_class": "gthread" if threads > 1 else "sync",
                "accesslog": None,
                "errorlog": "-",
                "loglevel": settings.log_level.lower(),
                "graceful_timeout": 10,
                "timeout": 30,
                "keepalive": 5,
                "backlog": 2048,
                "proc_name": "wifi-census-portal",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            """The WSGI app (each worker builds its own connections)."""
            return create_app(settings, test_config)

    click.echo(f"portal on http://{host}:{port}/ (gunicorn)", err=True)
    PortalApplication().run()


@portal.group("watchlist")
def watchlist() -> None:
    """The watchlist of identities whose sign-in alerts the back office."""


@watchlist.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def watchlist_import(path: Path) -> None:
    """Import FILE (CSV: id_type,id_number,reason); identities are kept as keyed digests only."""
    from census.privacy import IdentityCipher
    from portal.watchlist import WatchlistFileError, import_watchlist
    from registry.db import make_engine, make_session_factory, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        report = import_watchlist(path, make_session_factory(engine),
                                  IdentityCipher.from_settings(settings))
    except WatchlistFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"watchlist: {report.rows} rows, {report.created} created, {report.updated} "
               f"updated, {report.unchanged} unchanged, {len(report.errors)} rejected")
    for line, reason in report.errors[:50]:
        click.echo(f"  {path.name}: line {line}: {reason}", err=True)
    if report.errors:
        sys.exit(2)


@portal.command("ap-secret")
@click.argument("ap_id")
def ap_secret(ap_id: str) -> None:
    """Give AP_ID a fresh signing secret and print it once (for its agent and openNDS faskey)."""
    from sqlalchemy import select

    from census.privacy import IdentityCipher
    from portal.audit import record
    from registry.db import bump_registry_version, make_engine, make_session_factory, session_scope
    from registry.models import AccessPoint

    settings = _settings()
    secret = secrets.token_hex(32)
    factory = make_session_factory(make_engine(settings.database_url))
    with session_scope(factory) as session:
        ap = session.scalar(select(AccessPoint).where(AccessPoint.ap_id == ap_id))
        if ap is None:
            raise click.ClickException(f"AP {ap_id!r} is not in the registry (import aps first)")
        ap.secret_encrypted = IdentityCipher.from_settings(settings).encrypt(secret)
        bump_registry_version(session)
        record(session, "cli", "set_ap_secret", f"ap:{ap_id}")
    click.echo(secret)


@portal.command("ap-fas")
@click.argument("ap_id")
@click.option("--gateway", default="",
              help="The AP's openNDS gatewayaddress (host:port) to enable FAS; omit to disable.")
def ap_fas(ap_id: str, gateway: str) -> None:
    """Enable openNDS FAS hand-overs from AP_ID at its gateway address, or disable them."""
    from sqlalchemy import select

    from census.handshake import valid_gateway
    from portal.audit import record
    from registry.db import bump_registry_version, make_engine, make_session_factory, session_scope
    from registry.models import AccessPoint

    if gateway and not valid_gateway(gateway):
        raise click.BadParameter(f"{gateway!r} is not host:port", param_hint="--gateway")
    settings = _settings()
    factory = make_session_factory(make_engine(settings.database_url))
    with session_scope(factory) as session:
        ap = session.scalar(select(AccessPoint).where(AccessPoint.ap_id == ap_id))
        if ap is None:
            raise click.ClickException(f"AP {ap_id!r} is not in the registry (import aps first)")
        ap.fas_gateway = gateway
        bump_registry_version(session)
        record(session, "cli", "set_ap_fas", f"ap:{ap_id}", {"gateway": gateway})
    click.echo(f"AP {ap_id}: FAS " + (f"enabled at {gateway}" if gateway else "disabled"))


@portal.command("sign-redirect")
@click.option("--ap", "ap_id", required=True, help="AP id (must be in the registry).")
@click.option("--mac", required=True, help="The client's MAC address.")
@click.option("--ip", "client_ip", required=True, help="The client's IP address.")
@click.option("--gw", default="", help="The gateway's host:port as the client reaches it.")
@click.option("--url", "original_url", default="", help="The page the client asked for.")
def sign_redirect_command(ap_id: str, mac: str, client_ip: str, gw: str,
                          original_url: str) -> None:
    """Print a signed redirect URL as the AP's agent would build it (testing, demo)."""
    from census.handshake import sign_redirect
    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory
    from registry.directory import ApDirectory

    settings = _settings()
    factory = make_session_factory(make_engine(settings.database_url))
    key = ApDirectory(factory, IdentityCipher.from_settings(settings),
                      settings.command_key).key_for(ap_id)
    if key is None:
        raise click.ClickException(f"AP {ap_id!r} is not in the registry")
    query = urlencode(sign_redirect(key, ap_id, mac, client_ip, gw, original_url))
    click.echo(f"{settings.portal_public_url.rstrip('/')}/?{query}")


@portal.command("move-out")
@click.argument("resident_id", type=int)
@click.option("--date", "when", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Move-out date (default: today, local).")
def move_out_command(resident_id: int, when: dt.datetime | None) -> None:
    """Record RESIDENT_ID's move-out and deauthorize every device of theirs."""
    from portal.services import PortalServices
    from portal.signin import move_out

    settings = _settings()
    services = PortalServices.build(settings)
    try:
        day = when.date() if when else dt.datetime.now(settings.tz).date()
        sent = move_out(services, resident_id, day, "cli")
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    finally:
        services.close()
    click.echo(f"resident {resident_id} moved out on {day}; {sent} deauthorize command(s) sent")


@portal.command("confirm-phone")
@click.argument("signin_id", type=int)
@click.option("--staff", required=True, help="Who saw the person and their document (audited).")
def confirm_phone_command(signin_id: int, staff: str) -> None:
    """Make SIGNIN_ID's verified phone its resident's, after seeing them in person.

    Only for an `unconfirmed` sign-in (a registered resident with no phone on file).
    """
    from census.privacy import IdentityCipher
    from portal.signin import confirm_phone
    from registry.db import make_engine, make_session_factory

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        resident_id = confirm_phone(make_session_factory(engine), signin_id, f"cli:{staff}",
                                    cipher=IdentityCipher.from_settings(settings))
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    finally:
        engine.dispose()
    click.echo(f"resident {resident_id}: the phone of sign-in {signin_id} is now on file")


@portal.command("case-sweep")
def case_sweep() -> None:
    """Open cases for watchlist alerts; escalate cases past their due time (with notices)."""
    from apcommands.sender import Publisher
    from portal.alerts import AlertDispatcher
    from registry.casework import escalate_overdue, open_watchlist_cases
    from registry.db import make_engine, make_session_factory, session_scope

    settings = _settings()
    with session_scope(make_session_factory(make_engine(settings.database_url))) as session:
        opened = open_watchlist_cases(session)
        notices = escalate_overdue(session)
    publisher = Publisher(settings)
    alerts = AlertDispatcher(settings, publisher)
    try:
        for notice in notices:  # after the commit: the events are stored even if this fails
            alerts.dispatch(notice["kind"], notice)
        alerts.flush(timeout=30)
    finally:
        publisher.close()
    click.echo(f"opened {opened} watchlist case(s); escalated {len(notices)} overdue case(s)")


@portal.group("resident")
def resident_group() -> None:
    """One resident's rights (PIPL arts. 45-47): export everything held, erase."""


@resident_group.command("export")
@click.argument("resident_id", type=int)
@click.option("--staff", required=True, help="Who asks, for whom (audited).")
@click.option("--format", "form", type=click.Choice(["json", "html"]), default="json",
              show_default=True, help="JSON document, or the readable page (Chinese and English).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (created owner-only) instead of standard output.")
def resident_export(resident_id: int, staff: str, form: str, out: Path | None) -> None:
    """Print everything held on RESIDENT_ID: identity, units, devices, sign-ins, consents."""
    import json

    from portal.audit import record
    from portal.services import PortalServices
    from registry.db import session_scope
    from registry.subject_rights import export_resident

    settings = _settings()
    services = PortalServices.build(settings)
    try:
        with session_scope(services.session_factory) as session:
            try:
                document = export_resident(session, services.cipher, settings, resident_id)
            except LookupError as error:
                raise click.ClickException(str(error)) from None
            record(session, f"cli:{staff}", "export_resident", f"resident:{resident_id}",
                   {"format": form})
        if form == "json":
            text = json.dumps(document, ensure_ascii=False, indent=2)
        else:
            from portal import create_app
            from portal.residents import render_export

            # The back office's templates and catalogs render it, as on the export page.
            app = create_app(settings, {"PORTAL_ROLE": "admin"})
            try:
                with app.test_request_context():
                    text = render_export(document)
            finally:
                app.extensions["portal"].close()
    finally:
        services.close()
    if out is None:
        click.echo(text)
        return
    # Owner-only from the first byte: the file holds a person's identity in clear.
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    click.echo(f"resident {resident_id}: export written to {out}", err=True)


@resident_group.command("erase")
@click.argument("resident_id", type=int)
@click.option("--staff", required=True, help="Who erases (audited).")
@click.option("--reason", required=True, help="The request: when, who asked (audited).")
@click.option("--yes", is_flag=True, help="Do it (without: say what would happen and stop).")
def resident_erase(resident_id: int, staff: str, reason: str, yes: bool) -> None:
    """Erase RESIDENT_ID: identity, bindings (devices disconnected), sign-ins older than six
    months; the network log's last six months and the audit log are kept, as the law requires."""
    from portal.audit import record
    from portal.devices import Revocation
    from portal.services import PortalServices
    from portal.signin import queue_revocations, send_revocations
    from registry.db import session_scope
    from registry.subject_rights import erase_resident

    if len(reason.strip()) < 10:
        raise click.BadParameter("give the request's date and who asked (10 characters at "
                                 "least)", param_hint="--reason")
    settings = _settings()
    if not yes:
        click.echo(f"would erase resident {resident_id}; run again with --yes to do it")
        return
    services = PortalServices.build(settings)
    try:
        with session_scope(services.session_factory) as session:
            try:
                report = erase_resident(session, services.cipher, resident_id)
            except LookupError as error:
                raise click.ClickException(str(error)) from None
            record(session, f"cli:{staff}", "erase_resident", f"resident:{resident_id}",
                   {"reason": reason.strip(), **report.as_dict()})
            revoked = [Revocation(device_id, ap, mac, "erased")
                       for device_id, mac, ap in report.revoked]
            queued = queue_revocations(session, services, revoked, dt.datetime.now(dt.UTC))
        sent = send_revocations(services, revoked, queued)
    finally:
        services.close()
    kept = report.kept.get("signins")
    click.echo(f"resident {resident_id} erased: {report.deleted['devices']} device(s), "
               f"{report.deleted['signins']} old sign-in(s); {sent} deauthorize command(s) sent")
    if kept:
        click.echo(f"kept: {kept['count']} sign-in(s) until {kept['until']} ({kept['reason']}); "
                   "the audit log (PIPL art. 56)")
