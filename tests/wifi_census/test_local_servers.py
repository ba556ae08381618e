"""Local services: start, idempotent start, status, stop, and a taken port explained.

These run a private Redis and Mosquitto on free ports in a temporary folder, so the shared
servers other tests use are never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from census.settings import Settings
from tests.common import free_influx_port, free_port
from wifi_census import local_servers


@pytest.fixture
def private_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings whose servers live in tmp_path on free ports; stopped afterwards."""
    settings = Settings.load(
        environ={},
        var_dir=tmp_path,
        environment="test",
        mqtt_port=free_port(),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        influx_url=f"http://127.0.0.1:{free_influx_port()}",
    )
    yield settings
    local_servers.down(settings)


def by_name(settings: Settings, name: str) -> local_servers.LocalService:
    """One service of the settings' set."""
    return next(s for s in local_servers.build_services(settings) if s.name == name)


@pytest.mark.parametrize("name", ["redis", "mosquitto"])
def test_up_is_idempotent_and_down_stops(private_settings: Settings, name: str) -> None:
    """Start answers; a second start leaves it alone; stop ends it; a second stop is a no-op."""
    service = by_name(private_settings, name)
    assert "started" in local_servers.start(service)
    pid = service.read_pid()
    assert pid is not None and local_servers.status(service).answering
    assert local_servers.start(service) == (
        f"{name}: already running (pid {pid}, port {service.port})")
    assert local_servers.stop(service) == f"{name}: stopped (pid {pid})"
    state = local_servers.status(service)
    assert not state.running and not state.answering
    assert local_servers.stop(service) == f"{name}: not running"


def test_influxdb_starts_on_its_configured_loopback_port(private_settings: Settings) -> None:
    """InfluxDB gets a written config (loopback HTTP and RPC) and answers /ping."""
    service = by_name(private_settings, "influxdb")
    local_servers.start(service)
    config = (service.directory / "influxdb.conf").read_text()
    assert f'bind-address = "127.0.0.1:{service.port}"' in config
    assert "reporting-disabled = true" in config
    assert local_servers.status(service).answering
    local_servers.stop(service)


def test_server_output_goes_to_its_log_even_if_an_earlier_run_made_the_file(
    private_settings: Settings,
) -> None:
    """The detached server writes to server.log (appending), with stdin from /dev/null."""
    service = by_name(private_settings, "mosquitto")
    service.directory.mkdir(parents=True, exist_ok=True)
    service.log_file.write_text("earlier run\n")
    local_servers.start(service)
    pid = service.read_pid()
    assert pid is not None
    assert Path(f"/proc/{pid}/fd/1").resolve() == service.log_file.resolve()
    assert Path(f"/proc/{pid}/fd/0").resolve() == Path("/dev/null")
    text = service.log_file.read_text()
    assert text.startswith("earlier run\n") and "Mosquitto" in text.removeprefix("earlier run\n")
    local_servers.stop(service)


def test_a_port_taken_by_another_program_is_named(private_settings: Settings) -> None:
    """If something else listens on the port, `up` says so instead of failing obscurely."""
    service = by_name(private_settings, "redis")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", service.port))
        squatter.listen()
        with pytest.raises(local_servers.ServiceError) as caught:
            local_servers.start(service)
    message = str(caught.value)
    assert f"port {service.port} on 127.0.0.1 is already in use by another program" in message
    assert service.read_pid() is None


def test_a_stale_pid_file_is_not_trusted(private_settings: Settings) -> None:
    """A PID file naming some other process is ignored (PID reuse), and start proceeds."""
    service = by_name(private_settings, "redis")
    service.directory.mkdir(parents=True, exist_ok=True)
    service.pid_file.write_text("1\n")  # init, not redis
    assert service.read_pid() is None
    assert "started" in local_servers.start(service)
    local_servers.stop(service)


def test_remote_hosts_are_not_started(tmp_path: Path) -> None:
    """A service configured on another host is left to that host."""
    settings = Settings.load(
        environ={}, var_dir=tmp_path, environment="test", redis_url="redis://10.0.0.5:6379/0"
    )
    assert "not loopback" in local_servers.start(by_name(settings, "redis"))


@pytest.mark.postgres
def test_postgres_starts_from_a_0700_checkout_folder(tmp_path: Path) -> None:
    """From a 0700 folder (a checkout in /root, a mktemp -d) the cluster starts: as root it runs
    as `postgres` from that user's own folder; as anyone else, as them, inside var/."""
    private = tmp_path / "checkout"
    private.mkdir(mode=0o700)
    settings = Settings.load(environ={}, var_dir=private / "var", environment="test",
                             postgres_port=free_port())
    service = next(s for s in local_servers.build_services(settings, include_postgres=True)
                   if s.name == "postgres")
    as_root = os.geteuid() == 0
    assert service.directory.is_relative_to(private) is not as_root
    assert service.run_as == ("postgres" if as_root else None)
    try:
        assert "started" in local_servers.start(service)
        assert local_servers.status(service).answering
    finally:
        local_servers.stop(service)
        shutil.rmtree(service.directory, ignore_errors=True)


def test_the_cluster_stays_in_var_when_its_user_can_reach_it() -> None:
    """A var dir every user may enter keeps the cluster in var/services/postgres."""
    reachable = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        reachable.chmod(0o755)
        assert local_servers.postgres_directory(reachable, "postgres") == (
            reachable / "services" / "postgres")
        assert local_servers.postgres_directory(reachable, None) == (
            reachable / "services" / "postgres")
        reachable.chmod(0o700)
        assert not local_servers.postgres_directory(reachable, "postgres").is_relative_to(reachable)
    finally:
        shutil.rmtree(reachable)


@pytest.mark.parametrize(("durable", "expected"), [
    (True, ["autosave_on_changes true", "autosave_interval 1"]),
    (False, ["autosave_on_changes false", "autosave_interval 60"]),
])
def test_the_local_broker_saves_as_configured(tmp_path: Path, durable: bool,
                                              expected: list[str]) -> None:
    """WIFI_CENSUS_LOCAL_BROKER_DURABLE picks saving on every change or every 60 s."""
    settings = Settings.load(environ={}, var_dir=tmp_path, environment="test",
                             local_broker_durable=durable)
    service = by_name(settings, "mosquitto")
    service.directory.mkdir(parents=True)
    service.prepare(service)
    config = (service.directory / "mosquitto.conf").read_text().splitlines()
    assert [line for line in config if line.startswith("autosave")] == expected
