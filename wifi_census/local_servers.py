"""Start, check and stop the project's own local servers on 127.0.0.1, without Docker.

Each server (Mosquitto, Redis, InfluxDB 1.x, optionally PostgreSQL) runs from Debian's
package with a configuration this module writes into ``<var_dir>/services/<name>/``, listens
on loopback only, and is tracked by a PID file there. ``up`` is idempotent (a server that is
already ours and answering is left alone), ``down`` stops only processes this module started
(the PID file's process must still be that server's binary), and a port held by some other
program is reported by name instead of being fought over.
"""

from __future__ import annotations

import functools
import getpass
import grp
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from census.settings import Settings

LOGGER = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
READY_TIMEOUT_S = 60.0



class ServiceError(RuntimeError):
    """A local server could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    """What `services status` reports for one server."""

    name: str
    port: int
    pid: int | None
    running: bool
    answering: bool
    detail: str = ""


@dataclass
class LocalService:
    """One server: how to prepare its folder, start it, and tell that it answers."""

    name: str
    binary: str
    host: str
    port: int
    directory: Path
    command: Callable[[LocalService], list[str]]
    prepare: Callable[[LocalService], None]
    ready: Callable[[LocalService], bool]
    run_as: str | None = None
    debian_package: str = ""

    @property
    def pid_file(self) -> Path:
        """Where the running server's PID is kept."""
        return self.directory / "server.pid"

    @property
    def log_file(self) -> Path:
        """Where the server's output goes."""
        return self.directory / "server.log"

    def read_pid(self) -> int | None:
        """The PID recorded for this server, if its process is still this server's binary."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not _process_runs_binary(pid, Path(self.binary).name):
            return None
        return pid


def _launch_detached(service: LocalService) -> int:
    """Start the server in its own session, not as our child, and return its PID.

    The servers outlive the command that starts them; launched through a shell that exits at
    once, they are adopted by init, which reaps them, and no Python handle is left dangling.
    """
    # The log is opened here, not by the shell: the shell may run as another user (postgres)
    # who cannot open a log file an earlier run created.
    # The log arrives as the launcher's standard input (dash redirects only fds 0-9) and is
    # copied to fd 3 first: sh points a background command's stdin at /dev/null before its own
    # redirections run. It becomes the server's stdout and stderr; its stdin is /dev/null.
    script = 'exec 3<&0; exec "$@" >&3 2>&1 3>&- </dev/null & echo $!'
    with service.log_file.open("ab") as log:
        launcher = subprocess.run(
            ["/bin/sh", "-c", script, "sh", *service.command(service)],
            stdin=log, capture_output=True, text=True, cwd=service.directory,
            start_new_session=True, user=service.run_as, check=False,
        )
    if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
        raise ServiceError(f"{service.name}: could not be launched: {launcher.stderr.strip()}")
    return int(launcher.stdout.strip())


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (it may not have exec'd yet)."""
    try:
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def _process_runs_binary(pid: int, binary_name: str) -> bool:
    """True when process pid exists and its command line names binary_name (PID reuse guard)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not cmdline or not cmdline[0]:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if ") Z " in stat:  # a zombie is not running
        return False
    # redis-server rewrites its title to "redis-server 127.0.0.1:16379": compare the first word.
    first_word = cmdline[0].decode(errors="replace").split(" ")[0]
    return Path(first_word).name == binary_name


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host if host != "localhost" else "127.0.0.1", port)) != 0


def _find_binary(candidates: Sequence[str]) -> str:
    """The first existing binary among candidates (PATH names or absolute paths)."""
    for candidate in candidates:
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and Path(found).exists():
            return found
    return candidates[0]


# --- Mosquitto -------------------------------------------------------------------------------


# When Mosquitto writes its in-memory database (the whole file, every time) to disk. Counting
# changes with a count of 1 saves after every loop iteration that queued a message, so an event
# the broker acknowledged is on disk a moment later and survives kill -9 of the broker; the cost
# grows with the queue (docs/collector.md, "Broker crashes", has the measurements). Production
# (deploy/mosquitto/mosquitto.conf) and the fault tests' brokers save this way.
MOSQUITTO_AUTOSAVE = ("autosave_on_changes true", "autosave_interval 1")
# The local development broker's default (WIFI_CENSUS_LOCAL_BROKER_DURABLE=false): a save every
# 60 s. Saving on every change makes one-connection bulk replays (the demo, the simulator) about
# 8 times slower here; what such a broker acknowledged in its last minute is lost to kill -9.
MOSQUITTO_AUTOSAVE_TIMER = ("autosave_on_changes false", "autosave_interval 60")


def _mosquitto_prepare(service: LocalService, durable: bool = True) -> None:
    """Write mosquitto.conf: loopback listener, persistence, generous queues."""
    data = service.directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    (service.directory / "mosquitto.conf").write_text(
        "\n".join(
            [
                "# Written by `wifi-census services up`; edits are overwritten.",
                f"listener {service.port} {service.host}",
                "allow_anonymous true",
                f"user {user}",
                "persistence true",
                f"persistence_location {data}/",
                *(MOSQUITTO_AUTOSAVE if durable else MOSQUITTO_AUTOSAVE_TIMER),
                # The default of 1000 queued messages per client silently dropped ~70% of a 200k
                # burst to a slow subscriber here; a collector catching up needs far more.
                "max_queued_messages 2000000",
                "max_queued_bytes 0",
                "max_inflight_messages 1000",
                "max_packet_size 2097152",
                "persistent_client_expiration 14d",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "connection_messages false",
                "",
            ]
        ),
        encoding="utf-8",
    )


def _mosquitto_command(service: LocalService) -> list[str]:
    """Command line for Mosquitto in the foreground."""
    return [service.binary, "-c", str(service.directory / "mosquitto.conf")]


def _mosquitto_ready(service: LocalService) -> bool:
    """True when an MQTT CONNECT is accepted."""
    # A bare MQTT 3.1.1 CONNECT packet; a CONNACK with return code 0 means the broker serves.
    connect = (
        bytes([0x10, 0x10, 0x00, 0x04])
        + b"MQTT"
        + bytes([0x04, 0x02, 0x00, 0x0A, 0x00, 0x04])
        + b"ping"
    )
    try:
        with socket.create_connection((service.host, service.port), timeout=1.0) as conn:
            conn.sendall(connect)
            reply = conn.recv(4)
            conn.sendall(bytes([0xE0, 0x00]))  # DISCONNECT
    except OSError:
        return False
    return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0


# --- Redis -----------------------------------------------------------------------------------


def _redis_prepare(service: LocalService) -> None:
    """Make Redis's data folder."""
    (service.directory / "data").mkdir(parents=True, exist_ok=True)


def _redis_command(service: LocalService) -> list[str]:
    """Command line for redis-server: loopback, no persistence (live state only)."""
    return [
        service.binary,
        "--bind",
        service.host,
        "--port",
        str(service.port),
        "--dir",
        str(service.directory / "data"),
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--loglevel",
        "warning",
    ]


def _redis_ready(service: LocalService) -> bool:
    """True when PING answers PONG."""
    try:
        with socket.create_connection((service.host, service.port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- InfluxDB 1.x ----------------------------------------------------------------------------


def _influx_prepare(service: LocalService) -> None:
    """Write influxdb.conf: loopback HTTP and RPC, no reporting, TSI index."""
    for sub in ("meta", "data", "wal"):
        (service.directory / sub).mkdir(parents=True, exist_ok=True)
    rpc_port = service.port + 2  # InfluxDB's backup RPC port must not take the default 8088
    (service.directory / "influxdb.conf").write_text(
        "\n".join(
            [
                "# Written by `wifi-census services up`; edits are overwritten.",
                "reporting-disabled = true",
                f'bind-address = "{service.host}:{rpc_port}"',
                "[meta]",
                f'  dir = "{service.directory / "meta"}"',
                "[data]",
                f'  dir = "{service.directory / "data"}"',
                f'  wal-dir = "{service.directory / "wal"}"',
                '  index-version = "tsi1"',
                "  query-log-enabled = false",
                "  cache-max-memory-size = 2147483648",
                "  max-series-per-database = 0",
                "  max-values-per-tag = 0",
                "[coordinator]",
                "  max-select-point = 0",
                "[retention]",
                "  enabled = true",
                '  check-interval = "30m"',
                "[monitor]",
                "  store-enabled = false",
                "[http]",
                "  enabled = true",
                f'  bind-address = "{service.host}:{service.port}"',
                "  log-enabled = false",
                "  max-body-size = 0",
                "[subscriber]",
                "  enabled = false",
                "[continuous_queries]",
                "  log-enabled = false",
                "",
            ]
        ),
        encoding="utf-8",
    )


def _influx_command(service: LocalService) -> list[str]:
    """Command line for influxd with the written configuration."""
    return [service.binary, "-config", str(service.directory / "influxdb.conf")]


def _influx_ready(service: LocalService) -> bool:
    """True when /ping answers 204."""
    try:
        with socket.create_connection((service.host, service.port), timeout=1.0) as conn:
            conn.sendall(f"GET /ping HTTP/1.0\r\nHost: {service.host}\r\n\r\n".encode())
            return b" 204 " in conn.recv(64)
    except OSError:
        return False


# --- PostgreSQL ------------------------------------------------------------------------------

POSTGRES_SUPERUSER = "census"


def _postgres_admin(settings: Settings, statement: str) -> None:
    """Run one statement on the local cluster's maintenance database (CREATE/DROP DATABASE)."""
    import psycopg  # only the PostgreSQL helpers need the driver

    with psycopg.connect(host="127.0.0.1", port=settings.postgres_port,
                         user=POSTGRES_SUPERUSER, dbname="postgres", autocommit=True) as conn:
        conn.execute(statement)


def create_database(settings: Settings, name: str, template: str | None = None) -> str:
    """Create a fresh database on the local PostgreSQL cluster and return its URL.

    template: a database to copy (nobody may be connected to it), e.g. an already migrated one.
    """
    _postgres_admin(settings, f'CREATE DATABASE "{name}"'
                    + (f' TEMPLATE "{template}"' if template else ""))
    return f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{settings.postgres_port}/{name}"


def drop_database(settings: Settings, name: str) -> None:
    """Drop a database of the local PostgreSQL cluster (connections to it are ended)."""
    _postgres_admin(settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return _find_binary([*(str(v / name) for v in versions), name])


def _can_traverse(user: str, directory: Path) -> bool:
    """True when `user` may enter `directory` and each folder above it.

    Folders not made yet count as reachable: they are made with mode 0755 (umask 022).
    """
    record = pwd.getpwnam(user)
    groups = {record.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in (directory, *directory.parents):
        try:
            info = folder.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == record.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def postgres_directory(var_dir: Path, run_as: str | None) -> Path:
    """Where the project's PostgreSQL cluster lives: var/services/postgres when the server's
    user can reach it, else a folder of that user's own, one per var dir.

    Run as root, the server runs as `postgres`, which cannot enter a checkout in /root or in a
    0700 temporary folder; its cluster then lives under the postgres user's home.
    """
    own = var_dir / "services" / "postgres"
    if run_as is None or _can_traverse(run_as, own):
        return own
    digest = hashlib.sha256(str(var_dir.resolve()).encode()).hexdigest()[:16]
    return Path(pwd.getpwnam(run_as).pw_dir) / "wifi-census" / digest


def _postgres_prepare(service: LocalService) -> None:
    """initdb the project's cluster once (as the unprivileged postgres user when root)."""
    data = service.directory / "data"
    (service.directory / "run").mkdir(parents=True, exist_ok=True)
    if service.run_as:
        record = pwd.getpwnam(service.run_as)
        for path in (service.directory, service.directory / "run"):
            os.chown(path, record.pw_uid, record.pw_gid)
        if service.directory.parent.name == "wifi-census":
            os.chown(service.directory.parent, record.pw_uid, record.pw_gid)
    if (data / "PG_VERSION").exists():
        return
    result = subprocess.run(
        [
            _postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            POSTGRES_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        capture_output=True,
        text=True,
        user=service.run_as,
        cwd=service.directory,  # initdb returns to its working folder, which must be reachable
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")


def _postgres_command(service: LocalService) -> list[str]:
    """Command line for postgres on loopback with its socket in the project folder."""
    return [
        service.binary,
        "-D",
        str(service.directory / "data"),
        "-p",
        str(service.port),
        "-c",
        f"listen_addresses={service.host}",
        "-c",
        f"unix_socket_directories={service.directory / 'run'}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
    ]


def _postgres_ready(service: LocalService) -> bool:
    """True when a SQL connection succeeds."""
    import psycopg

    try:
        with psycopg.connect(
            host=service.host,
            port=service.port,
            user=POSTGRES_SUPERUSER,
            dbname="postgres",
            connect_timeout=1,
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


# --- the set of services ---------------------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    """Host and port of a URL."""
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 0


def build_services(settings: Settings, include_postgres: bool = False) -> list[LocalService]:
    """The local servers the settings point at."""
    root = settings.var_dir / "services"
    redis_host, redis_port = _host_port(settings.redis_url)
    influx_host, influx_port = _host_port(settings.influx_url)
    services = [
        LocalService(
            "mosquitto",
            _find_binary(["mosquitto", "/usr/sbin/mosquitto"]),
            settings.mqtt_host,
            settings.mqtt_port,
            root / "mosquitto",
            _mosquitto_command,
            functools.partial(_mosquitto_prepare, durable=settings.local_broker_durable),
            _mosquitto_ready,
            debian_package="mosquitto",
        ),
        LocalService(
            "redis",
            _find_binary(["redis-server", "/usr/bin/redis-server"]),
            redis_host,
            redis_port or 6379,
            root / "redis",
            _redis_command,
            _redis_prepare,
            _redis_ready,
            debian_package="redis-server",
        ),
        LocalService(
            "influxdb",
            _find_binary(["influxd", "/usr/bin/influxd"]),
            influx_host,
            influx_port or 8086,
            root / "influxdb",
            _influx_command,
            _influx_prepare,
            _influx_ready,
            debian_package="influxdb",
        ),
    ]
    if include_postgres:
        run_as = "postgres" if os.geteuid() == 0 else None
        services.append(
            LocalService(
                "postgres",
                _postgres_bin("postgres"),
                "127.0.0.1",
                settings.postgres_port,
                postgres_directory(settings.var_dir, run_as),
                _postgres_command,
                _postgres_prepare,
                _postgres_ready,
                run_as=run_as,
                debian_package="postgresql",
            )
        )
    return services


def start(service: LocalService, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Start one server unless it already runs; return what happened, in words."""
    if service.host not in LOOPBACK_HOSTS:
        return f"{service.name}: points at {service.host}, not loopback; not starting a local one"
    pid = service.read_pid()
    if pid is not None and service.ready(service):
        return f"{service.name}: already running (pid {pid}, port {service.port})"
    if pid is not None:
        stop(service)
    if not port_is_free(service.host, service.port):
        raise ServiceError(
            f"{service.name}: port {service.port} on {service.host} is already in use by another "
            f"program (not the {service.name} this project started from {service.directory}). "
            "Stop that program or choose another port in the settings."
        )
    if not Path(service.binary).exists():
        raise ServiceError(
            f"{service.name}: {service.binary} not found; install Debian's "
            f"'{service.debian_package}' package (scripts/setup.sh does)"
        )
    service.directory.mkdir(parents=True, exist_ok=True)
    service.prepare(service)
    pid = _launch_detached(service)
    service.pid_file.write_text(f"{pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            tail = service.log_file.read_text(errors="replace")[-1500:]
            service.pid_file.unlink(missing_ok=True)
            raise ServiceError(f"{service.name} exited during start-up:\n{tail}")
        if service.ready(service):
            return f"{service.name}: started (pid {pid}, port {service.port})"
        time.sleep(0.1)
    stop(service)
    raise ServiceError(
        f"{service.name}: did not answer on port {service.port} within {timeout_s:.0f} s"
    )


def stop(service: LocalService, timeout_s: float = 20.0) -> str:
    """Stop one server this project started; return what happened, in words."""
    pid = service.read_pid()
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        return f"{service.name}: not running"
    # postgres shuts down fastest and cleanly on SIGINT; the others on SIGTERM.
    os.kill(pid, signal.SIGINT if service.name == "postgres" else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _process_runs_binary(pid, Path(service.binary).name):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _reap(pid)
    service.pid_file.unlink(missing_ok=True)
    return f"{service.name}: stopped (pid {pid})"


def _reap(pid: int) -> None:
    """Collect the exit status if the server was our child, so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(service: LocalService) -> ServiceStatus:
    """Whether one server runs and answers."""
    pid = service.read_pid()
    answering = service.ready(service)
    detail = ""
    if pid is None and answering:
        detail = "answering, but not started by this project"
    return ServiceStatus(service.name, service.port, pid, pid is not None, answering, detail)


def _http_ready(service: LocalService) -> bool:
    """True when an HTTP GET / gets any HTTP answer."""
    try:
        with socket.create_connection((service.host, service.port), timeout=1.0) as conn:
            conn.sendall(f"GET / HTTP/1.0\r\nHost: {service.host}\r\n\r\n".encode())
            return conn.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def portal_service(settings: Settings, python: str) -> LocalService:
    """The portal as a background server (the demo leaves it running; `down` stops it)."""
    return LocalService(
        "portal", python, settings.portal_host, settings.portal_port,
        settings.var_dir / "services" / "portal",
        lambda service: [service.binary, "-m", "wifi_census.cli", "portal", "serve",
                         "--host", service.host, "--port", str(service.port)],
        lambda service: None, _http_ready,
    )


def _log_says(marker: str) -> Callable[[LocalService], bool]:
    """Readiness of a client (no port of its own): its fresh log has the line it writes once
    connected and subscribed."""

    def ready(service: LocalService) -> bool:
        try:
            return marker in service.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return False

    return ready


def _fresh_log(service: LocalService) -> None:
    """Start the log empty, so that readiness is read from this run's lines only."""
    service.log_file.write_bytes(b"")


def command_log_service(settings: Settings, python: str) -> LocalService:
    """The AP command log as a background client (the demo leaves it running)."""
    return LocalService(
        "ap-commands", python, "127.0.0.1", 0, settings.var_dir / "services" / "ap-commands",
        lambda service: [service.binary, "-m", "wifi_census.cli", "ap-commands", "run",
                         "--client-id", f"{settings.command_log_client_id}-demo"],
        _fresh_log, _log_says("watching"),
    )


def agents_service(settings: Settings, python: str) -> LocalService:
    """Stand-in agents for the registry's APs as a background client (the demo's)."""
    return LocalService(
        "ap-agents", python, "127.0.0.1", 0, settings.var_dir / "services" / "ap-agents",
        lambda service: [service.binary, "-m", "wifi_census.cli", "ap-agents"],
        _fresh_log, _log_says("AP agents answering"),
    )


def demo_services(settings: Settings, python: str) -> list[LocalService]:
    """What the demo leaves running besides the servers: portal, command log, AP agents."""
    return [portal_service(settings, python), command_log_service(settings, python),
            agents_service(settings, python)]


def up(settings: Settings, include_postgres: bool = False) -> list[str]:
    """Start every local server; return a line per server."""
    return [start(service) for service in build_services(settings, include_postgres)]


def down(settings: Settings) -> list[str]:
    """Stop every local server this project started (the demo's portal, command log and AP
    agents, and PostgreSQL too)."""
    import sys

    servers = demo_services(settings, sys.executable)
    servers += reversed(build_services(settings, include_postgres=True))
    return [stop(service) for service in servers]
