"""Provisioning of access points: their broker credentials and every per-AP file, rendered.

`wifi-census firmware ap-cred issue|revoke --ap AP` gives an AP its own MQTT user (user name =
AP id) in the broker's password file of AP users and keeps the password, encrypted like identity
numbers, in the registry; `wifi-census firmware render --ap AP | --building B --out DIR` writes
what the AP needs, laid out as on the AP's file system: ``etc/wifi-census/ap.conf`` (the
shell-sourceable per-AP contract), the secrets beside it, the AP's Mosquitto bridge to the
central broker, and every template under ``firmware_configs/openwrt/templates/`` (and any other
``*.in`` under ``firmware_configs/openwrt/``) with its ``@KEY@`` placeholders filled in.
Nobody edits these files by hand.

Why a bridge: the central broker binds each client id to its user (``use_username_as_clientid``)
so no credential can take over another's session; that allows one connection per user, while the
AP's scripts open several (the agent's subscription, each ``mosquitto_pub``). So the AP's
scripts talk to a Mosquitto on the AP (or on the building's gateway), which holds the one
connection per AP to the central broker.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shlex
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import click

from census.channels import is_ap_id
from census.settings import Settings

LOGGER = logging.getLogger(__name__)

# Mosquitto 2's password hash ($7$): PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, 64-byte
# key, both base64 (mosquitto_passwd's defaults; the broker reads the iteration count back).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
# Service users on the central broker. Client ids are one namespace across listeners and equal
# the user name there, so an AP named like a service would take over that service's session.
RESERVED_USER = re.compile(r"\A(collector(-.*)?|command-log|portal|analytics)\Z")
_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")

AP_DIR = "etc/wifi-census"
# Where the files live on the AP (the rendered tree mirrors the AP's file system).
AP_CONF = f"{AP_DIR}/ap.conf"
PASSWORD_FILE = f"{AP_DIR}/broker.password"
CA_FILE = f"{AP_DIR}/ca.crt"
COMMAND_KEY_FILE = f"{AP_DIR}/command.key"
BRIDGE_CONF = "etc/mosquitto/mosquitto.conf"
BRIDGE_PASSWD = "etc/mosquitto/census.passwd"
BRIDGE_ACL = "etc/mosquitto/census.acl"

DEFAULT_SNAPSHOT_INTERVAL = 300
DEFAULT_SPOOL_DIR = "/var/spool/wifi-census"
DEFAULT_SPOOL_MAX_FILES = 1000
# End-to-end acknowledgement: seconds an AP waits for the collector's confirmation before it
# sends a message again (docs/contracts.md section 2a; 0 turns it off).
DEFAULT_CONFIRM_RESEND_S = 120
# The AP's (or gateway's) own broker, where its scripts connect.
LOCAL_BROKER_PORT = 1883


class ProvisioningError(RuntimeError):
    """An AP cannot be provisioned as asked; the message says why."""


# --- the broker's password file ------------------------------------------------------------------


def mosquitto_password_hash(password: str, salt: bytes | None = None) -> str:
    """The password as mosquitto_passwd 2.x stores it (``$7$`` PBKDF2-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    encode = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside a file while it is rewritten (two issues at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace_atomically(path: Path, text: str) -> None:
    """Write a file whole through a temporary one, keeping its mode and owner (the broker's)."""
    old = path.stat() if path.exists() else None
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        if old is not None:
            os.chmod(temporary, old.st_mode & 0o777)
            with contextlib.suppress(PermissionError):  # only root may give files away
                os.chown(temporary, old.st_uid, old.st_gid)
        else:
            os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _password_lines(path: Path) -> list[str]:
    """The file's lines (none when it does not exist yet)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def set_password(path: Path, user: str, password: str) -> None:
    """Add or replace a user's line in a Mosquitto password file."""
    with _locked(path):
        lines = [line for line in _password_lines(path) if line.split(":", 1)[0] != user]
        lines.append(f"{user}:{mosquitto_password_hash(password)}")
        _replace_atomically(path, "\n".join(lines) + "\n")


def remove_password(path: Path, user: str) -> bool:
    """Remove a user's line from a Mosquitto password file; False when it had none."""
    with _locked(path):
        lines = _password_lines(path)
        kept = [line for line in lines if line.split(":", 1)[0] != user]
        if len(kept) == len(lines):
            return False
        _replace_atomically(path, "".join(line + "\n" for line in kept))
        return True


def password_file(settings: Settings) -> Path:
    """The broker's password file of AP users."""
    if settings.firmware_password_file:
        return Path(settings.firmware_password_file)
    return settings.var_dir / "broker" / "aps.passwd"


def check_ap_user(ap_id: str) -> None:
    """Refuse AP ids that cannot be broker users (bad form, or a service's name)."""
    if not is_ap_id(ap_id):
        raise ProvisioningError(f"{ap_id!r} is not an AP id ([A-Za-z0-9._-], 1-64)")
    if RESERVED_USER.match(ap_id):
        raise ProvisioningError(
            f"AP id {ap_id!r} is reserved for a service's broker user (its client id)")


# --- templates -----------------------------------------------------------------------------------


def fill(template: str, values: Mapping[str, str], source: str) -> str:
    """Replace every @KEY@; raise ProvisioningError naming the first unknown key and its line."""
    for number, line in enumerate(template.splitlines(), start=1):
        for key in _PLACEHOLDER.findall(line):
            if key not in values:
                raise ProvisioningError(
                    f"{source}:{number}: unknown placeholder @{key}@ "
                    f"(known: {', '.join(sorted(values))})")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def shell_assignments(values: Mapping[str, str]) -> str:
    """``KEY='value'`` lines a POSIX shell can source (values quoted, no newlines allowed)."""
    lines = []
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise ProvisioningError(f"{key} must be one line")
        lines.append(f"{key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


# --- what one AP needs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApMaterial:
    """An AP's identity and secrets as the registry holds them (decrypted)."""

    ap_id: str
    building: str  # community/building
    ssid: str
    broker_password: str
    command_key: str


@dataclass(frozen=True)
class RenderOptions:
    """How the APs reach their local broker and what the AP scripts are tuned to."""

    snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL
    spool_dir: str = DEFAULT_SPOOL_DIR
    spool_max_files: int = DEFAULT_SPOOL_MAX_FILES
    confirm_resend_s: int = DEFAULT_CONFIRM_RESEND_S
    gateway_host: str = ""  # set: the APs use the building's gateway, not a broker of their own
    allow_shared_command_key: bool = False


class Renderer:
    """Writes every per-AP file from the registry's material, the settings and the templates."""

    def __init__(self, settings: Settings, options: RenderOptions) -> None:
        self.settings = settings
        self.options = options
        self.templates = Path(settings.firmware_templates)
        self.ca = settings.firmware_broker_ca or settings.mqtt_tls_ca
        if self.ca and not Path(self.ca).is_file():
            raise ProvisioningError(f"CA certificate {self.ca!r} (WIFI_CENSUS_FIRMWARE_BROKER_CA "
                                    "or WIFI_CENSUS_MQTT_TLS_CA) is not a file")
        self.central_host = settings.firmware_broker_host or settings.mqtt_host

    def ap_conf(self, ap: ApMaterial) -> dict[str, str]:
        """The keys of /etc/wifi-census/ap.conf, in contract order."""
        broker = self.options.gateway_host or "127.0.0.1"
        return {
            "AP_ID": ap.ap_id,
            "TOPIC_PREFIX": self.settings.mqtt_topic_prefix,
            "BROKER_HOST": broker,
            "BROKER_PORT": str(LOCAL_BROKER_PORT),
            "BROKER_USER": ap.ap_id,
            "BROKER_PASSWORD_FILE": f"/{PASSWORD_FILE}",
            # The hop to the local broker is plain (loopback, or the building's wired LAN to its
            # gateway); the bridge to the central broker is the TLS one.
            "BROKER_CAFILE": "",
            "BROKER_CERTFILE": "",
            "BROKER_KEYFILE": "",
            "COMMAND_KEY_FILE": f"/{COMMAND_KEY_FILE}",
            "SNAPSHOT_INTERVAL": str(self.options.snapshot_interval),
            "SPOOL_DIR": self.options.spool_dir,
            "SPOOL_MAX_FILES": str(self.options.spool_max_files),
            "CONFIRM_RESEND_S": str(self.options.confirm_resend_s),
            "SESSION_DEFAULT_MINUTES": str(max(1, self.settings.portal_session_seconds // 60)),
        }

    def template_values(self, ap: ApMaterial) -> dict[str, str]:
        """What @KEY@ placeholders of the AP templates may use."""
        portal = self.settings.portal_public_url.rstrip("/")
        parsed = urlsplit(portal)
        return {
            **self.ap_conf(ap),
            "SSID": ap.ssid,
            "BUILDING": ap.building,
            "PORTAL_URL": portal,
            # openNDS FAS: fasremotefqdn, fasport, faspath (and the walled garden's host).
            "PORTAL_FQDN": parsed.hostname or "",
            "FAS_KEY": ap.command_key,  # openNDS faskey: the AP's own command-signing secret
            "PORTAL_PORT": str(parsed.port or (443 if parsed.scheme == "https" else 80)),
            "PORTAL_PATH": (parsed.path or "") + "/",
            # RFC 8908 API (portal/api.py), told which AP the client is behind.
            "CAPPORT_API_URL": f"{portal}/api/captive?ap={quote(ap.ap_id)}",
            "CENTRAL_BROKER_HOST": self.central_host,
            "CENTRAL_BROKER_PORT": str(self.settings.firmware_broker_port),
        }

    def _write(self, out: Path, relative: str, text: str, secret: bool = False) -> Path:
        """Write one rendered file (secrets readable by the owner only)."""
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600 if secret else 0o644
        # Created with its mode, so a secret is never readable by others, not even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        path.chmod(mode)  # an existing file keeps its old mode through os.open
        return path

    def _broker_template(self, name: str) -> str:
        """One of the bridge templates under firmware_configs/broker/."""
        path = self.templates / "broker" / name
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            raise ProvisioningError(f"template {path}: {error}") from None

    def bridge(self, aps: list[ApMaterial], listen_address: str, name: str,
               etc: str = "/etc/mosquitto") -> tuple[str, str, str]:
        """The local broker's configuration, password file and ACL relaying these APs."""
        prefix = self.settings.mqtt_topic_prefix
        conf = fill(self._broker_template("local.conf.in"), {
            "GATEWAY_NAME": name, "PERSISTENCE_DIR": "/var/lib/mosquitto/",
            "MAX_QUEUED": "10000", "LISTEN_PORT": str(LOCAL_BROKER_PORT),
            "LISTEN_ADDRESS": listen_address,
            "PASSWORD_FILE": f"{etc}/census.passwd", "ACL_FILE": f"{etc}/census.acl",
        }, "broker/local.conf.in")
        tls = "# no CA given: this bridge is NOT encrypted"
        if self.ca:
            tls = (f"bridge_cafile /{CA_FILE}\n"
                   "bridge_insecure false\nbridge_tls_version tlsv1.2")
        connection = self._broker_template("connection.conf.in")
        for ap in aps:
            conf += fill(connection, {
                "AP_ID": ap.ap_id, "CENTRAL_HOST": self.central_host,
                "CENTRAL_PORT": str(self.settings.firmware_broker_port),
                "BROKER_PASSWORD": ap.broker_password, "BRIDGE_TLS": tls,
                "TOPIC_PREFIX": prefix,
            }, "broker/connection.conf.in")
        passwd = "".join(f"{ap.ap_id}:{mosquitto_password_hash(ap.broker_password)}\n"
                         for ap in aps)
        acl = fill(self._broker_template("acl.in"), {"TOPIC_PREFIX": prefix}, "broker/acl.in")
        return conf, passwd, acl

    def _write_bridge(self, out: Path, aps: list[ApMaterial], listen_address: str,
                      name: str) -> list[Path]:
        """Write the local broker's three files (and the CA its bridge checks) under out."""
        conf, passwd, acl = self.bridge(aps, listen_address, name)
        # Mosquitto 2 reads its configuration as root, but the password file and ACL only
        # after dropping to its own user: those must be readable by it (the password file holds
        # only PBKDF2 hashes of 32-character random passwords).
        written = [self._write(out, BRIDGE_CONF, conf, secret=True),
                   self._write(out, BRIDGE_PASSWD, passwd),
                   self._write(out, BRIDGE_ACL, acl)]
        if self.ca:
            written.append(self._write(out, CA_FILE, Path(self.ca).read_text(encoding="utf-8")))
        return written

    def render_ap(self, ap: ApMaterial, out: Path) -> list[Path]:
        """Every file one AP needs, under out as on its file system."""
        written = [
            self._write(out, AP_CONF, shell_assignments(self.ap_conf(ap))),
            self._write(out, PASSWORD_FILE, ap.broker_password + "\n", secret=True),
            self._write(out, COMMAND_KEY_FILE, ap.command_key + "\n", secret=True),
        ]
        if self.options.gateway_host:
            if self.ca:  # the scripts do not need it; kept so every AP tree is alike
                written.append(self._write(out, CA_FILE,
                                           Path(self.ca).read_text(encoding="utf-8")))
        else:
            written += self._write_bridge(out, [ap], "127.0.0.1", ap.ap_id)
        values = self.template_values(ap)
        for template, relative in self._ap_templates():
            text = fill(template.read_text(encoding="utf-8"), values,
                        str(template.relative_to(self.templates)))
            secret = ap.command_key in text or ap.broker_password in text
            path = self._write(out, str(relative), text, secret=secret)
            if os.access(template, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)  # init scripts stay executable
            written.append(path)
        return written

    def _ap_templates(self) -> list[tuple[Path, Path]]:
        """Each AP template and where it lands on the AP: every file under
        openwrt/templates/ (its path below that folder), and any other openwrt/**/*.in."""
        openwrt = self.templates / "openwrt"
        if not openwrt.is_dir():
            return []
        tree = openwrt / "templates"
        found: list[tuple[Path, Path]] = []
        for template in sorted(tree.rglob("*")) if tree.is_dir() else []:
            if template.is_file():
                relative = template.relative_to(tree)
                found.append((template, relative.with_suffix("") if template.suffix == ".in"
                              else relative))
        for template in sorted(openwrt.rglob("*.in")):
            if not template.is_relative_to(tree):
                found.append((template, template.relative_to(openwrt).with_suffix("")))
        return found

    def render_gateway(self, aps: list[ApMaterial], out: Path, name: str) -> list[Path]:
        """The building gateway's broker relaying every AP of the building."""
        return self._write_bridge(out, aps, "0.0.0.0", name)


# --- the registry --------------------------------------------------------------------------------


def load_material(settings: Settings, ap_ids: list[str] | None = None,
                  building: str | None = None,
                  allow_shared_command_key: bool = False) -> list[ApMaterial]:
    """The APs asked for (by id, or every AP of community/building) with their secrets."""
    from sqlalchemy import select

    from census.privacy import IdentityCipher
    from registry.db import make_engine, make_session_factory
    from registry.models import AccessPoint, Building, Community

    cipher = IdentityCipher.from_settings(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            query = (select(AccessPoint, Building, Community)
                     .join(Building, AccessPoint.building_id == Building.id)
                     .join(Community, Building.community_id == Community.id)
                     .order_by(AccessPoint.ap_id))
            if ap_ids is not None:
                query = query.where(AccessPoint.ap_id.in_(ap_ids))
            if building is not None:
                community_code, _, building_code = building.partition("/")
                if not building_code:
                    raise ProvisioningError(f"--building {building!r}: give it as "
                                            "COMMUNITY/BUILDING, e.g. TEDA-017/B03")
                query = query.where(Community.code == community_code,
                                    Building.code == building_code)
            rows = session.execute(query).all()
    finally:
        engine.dispose()
    found = {ap.ap_id for ap, _, _ in rows}
    missing = sorted(set(ap_ids or ()) - found)
    if missing:
        raise ProvisioningError(f"not in the registry: {', '.join(missing)} (import aps first)")
    if not rows:
        raise ProvisioningError(f"no APs in building {building!r}")
    material = []
    for ap, building_row, community in rows:
        if ap.broker_secret_encrypted is None:
            raise ProvisioningError(f"AP {ap.ap_id} has no broker credentials: "
                                    f"`wifi-census firmware ap-cred issue --ap {ap.ap_id}` first")
        if ap.secret_encrypted is None and not allow_shared_command_key:
            # The global key signs every AP's commands: an AP holding it could forge the others'.
            raise ProvisioningError(
                f"AP {ap.ap_id} has no signing secret of its own: `wifi-census portal ap-secret "
                f"{ap.ap_id}` first (or --allow-shared-command-key)")
        command_key = (cipher.decrypt(ap.secret_encrypted) if ap.secret_encrypted
                       else settings.command_key)
        material.append(ApMaterial(
            ap_id=ap.ap_id, building=f"{community.code}/{building_row.code}", ssid=ap.ssid,
            broker_password=cipher.decrypt(ap.broker_secret_encrypted), command_key=command_key))
    return material


def issue_credentials(settings: Settings, ap_id: str) -> str:
    """Give an AP a fresh broker password (registry and password file); return it."""
    from sqlalchemy import select

    from census.privacy import IdentityCipher
    from portal.audit import record
    from registry.db import make_engine, make_session_factory, session_scope
    from registry.models import AccessPoint

    check_ap_user(ap_id)
    password = secrets.token_urlsafe(24)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            ap = session.scalar(select(AccessPoint).where(AccessPoint.ap_id == ap_id))
            if ap is None:
                raise ProvisioningError(f"AP {ap_id!r} is not in the registry (import aps first)")
            ap.broker_secret_encrypted = IdentityCipher.from_settings(settings).encrypt(password)
            ap.broker_secret_issued_at = dt.datetime.now(dt.UTC)
            record(session, "cli", "issue_ap_broker_credentials", f"ap:{ap_id}")
            # Written before the commit: if the file cannot be written, nothing is recorded.
            set_password(password_file(settings), ap_id, password)
    finally:
        engine.dispose()
    LOGGER.info("issued broker credentials for AP %s", ap_id)
    return password


def revoke_credentials(settings: Settings, ap_id: str) -> bool:
    """Remove an AP's broker user and forget its password; False when it had none."""
    from sqlalchemy import select

    from portal.audit import record
    from registry.db import make_engine, make_session_factory, session_scope
    from registry.models import AccessPoint

    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            ap = session.scalar(select(AccessPoint).where(AccessPoint.ap_id == ap_id))
            had = ap is not None and ap.broker_secret_encrypted is not None
            if ap is not None:
                ap.broker_secret_encrypted = None
                ap.broker_secret_issued_at = None
                record(session, "cli", "revoke_ap_broker_credentials", f"ap:{ap_id}")
            # Removed even for an AP gone from the registry: its line must not outlive it.
            removed = remove_password(password_file(settings), ap_id)
    finally:
        engine.dispose()
    LOGGER.info("revoked broker credentials for AP %s", ap_id)
    return had or removed


# --- command line --------------------------------------------------------------------------------


@click.group("firmware")
def firmware() -> None:
    """Provision access points: broker credentials and every per-AP file."""


@firmware.command("render")
@click.option("--ap", "ap_ids", multiple=True, help="AP id (repeatable).")
@click.option("--building", default=None, metavar="COMMUNITY/BUILDING",
              help="Every AP of a building, each in OUT/<AP id>/.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (laid out as the AP's file system).")
@click.option("--gateway-host", default="", metavar="HOST",
              help="With --building: the APs use the building gateway at HOST, whose broker "
                   "is written to OUT/gateway/ (default: each AP runs its own).")
@click.option("--snapshot-interval", type=click.IntRange(30, 3600),
              default=DEFAULT_SNAPSHOT_INTERVAL, show_default=True, help="Seconds.")
@click.option("--spool-max-files", type=click.IntRange(1, 100_000),
              default=DEFAULT_SPOOL_MAX_FILES, show_default=True,
              help="Batches an AP keeps while its broker is unreachable.")
@click.option("--allow-shared-command-key", is_flag=True,
              help="Render APs without a signing secret of their own with the global key.")
def render_command(ap_ids: tuple[str, ...], building: str | None, out: Path, gateway_host: str,
                   snapshot_interval: int, spool_max_files: int,
                   allow_shared_command_key: bool) -> None:
    """Write every file an AP needs (ap.conf, secrets, its bridge, the OpenWrt templates)."""
    from census.startup import load_settings

    if bool(ap_ids) == bool(building):
        raise click.UsageError("give --ap or --building")
    if gateway_host and not building:
        raise click.UsageError("--gateway-host goes with --building")
    settings = load_settings()
    options = RenderOptions(snapshot_interval=snapshot_interval, spool_max_files=spool_max_files,
                            gateway_host=gateway_host,
                            allow_shared_command_key=allow_shared_command_key)
    try:
        renderer = Renderer(settings, options)
        aps = load_material(settings, list(ap_ids) if ap_ids else None, building,
                            allow_shared_command_key)
        written: list[Path] = []
        for ap in aps:
            written += renderer.render_ap(ap, out / ap.ap_id if building else out)
        if gateway_host:
            written += renderer.render_gateway(aps, out / "gateway", building or "gateway")
    except ProvisioningError as error:
        raise click.ClickException(str(error)) from None
    for path in written:
        click.echo(str(path))
    if not (settings.firmware_broker_ca or settings.mqtt_tls_ca):
        click.echo("warning: no CA configured: the bridges to the central broker are NOT "
                   "encrypted", err=True)


@firmware.group("ap-cred")
def ap_cred() -> None:
    """An AP's own broker user (user name = AP id) in the broker's password file."""


@ap_cred.command("issue")
@click.option("--ap", "ap_id", required=True, help="AP id (must be in the registry).")
def issue_command(ap_id: str) -> None:
    """Give AP a fresh broker password (replacing any) and print it once."""
    from census.startup import load_settings

    settings = load_settings()
    try:
        password = issue_credentials(settings, ap_id)
    except ProvisioningError as error:
        raise click.ClickException(str(error)) from None
    click.echo(password)
    click.echo(f"written to {password_file(settings)}; reload the broker (SIGHUP) to apply, "
               f"then `wifi-census firmware render --ap {ap_id}`", err=True)


@ap_cred.command("revoke")
@click.option("--ap", "ap_id", required=True, help="AP id.")
def revoke_command(ap_id: str) -> None:
    """Remove AP's broker user; reload the broker (SIGHUP) to refuse it."""
    from census.startup import load_settings

    settings = load_settings()
    if not revoke_credentials(settings, ap_id):
        raise click.ClickException(f"AP {ap_id!r} had no broker credentials")
    click.echo(f"revoked {ap_id} in {password_file(settings)}; reload the broker (SIGHUP): it "
               "then refuses the AP and closes its open connection")

