"""Private Mosquitto brokers for the broker-security tests: certificates, free ports, start/stop.

Each test that needs the broker's TLS, password or ACL files loaded starts its own Mosquitto on
a free loopback port in its temporary folder (the shared broker on 18830 stays anonymous).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from census.mqtt import MqttClient, ReceivedMessage
from census.settings import Settings, generate_keys
from tests.common import free_port
from wifi_census.firmware import issue_credentials

MOSQUITTO = "/usr/sbin/mosquitto"
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "mosquitto"
SERVICE_PASSWORDS = {"MQTT_COLLECTOR_PASSWORD": "collector-secret",
                     "MQTT_COMMAND_LOG_PASSWORD": "command-log-secret",
                     "MQTT_PORTAL_PASSWORD": "portal-secret",
                     "MQTT_ANALYTICS_PASSWORD": "analytics-secret"}
# A test-only observer that reads everything on the services' listener: it sees whatever an
# attack managed to get through (production has no such user).
WATCHER = ("watcher", "watcher-secret")


@dataclass(frozen=True)
class Pki:
    """A test CA with the broker's certificate (for 127.0.0.1 and localhost)."""

    ca: Path
    server_cert: Path
    server_key: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    folder: Path

    def client(self, common_name: str) -> tuple[Path, Path]:
        """A client certificate and key signed by this CA, CN = common_name."""
        return _issue(self.folder, common_name, self.ca_cert, self.ca_key, server=False)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PEM (what Mosquitto and paho read)."""
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _issue(folder: Path, common_name: str, ca_cert: x509.Certificate,
           ca_key: ec.EllipticCurvePrivateKey, server: bool) -> tuple[Path, Path]:
    """Sign a leaf certificate for a server (with SANs) or a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = folder / f"{common_name}.crt", folder / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def make_pki(folder: Path, name: str = "census-test-ca") -> Pki:
    """A fresh CA and a broker certificate for 127.0.0.1 / localhost in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = folder / f"{name}.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = _issue(folder, "broker", ca_cert, ca_key, server=True)
    return Pki(ca_path, server_cert, server_key, ca_cert, ca_key, folder)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path,
                  timeout: float = 10.0) -> None:
    """Wait until a broker accepts connections; fail with its log if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port} in {timeout} s:\n{log.read_text()}")


def run_as_me() -> str:
    """A `user` line keeping Mosquitto as this user (as root it would switch to `mosquitto`,
    which cannot read the test's private folder)."""
    return f"user {pwd.getpwuid(os.getuid()).pw_name}\n"


@contextlib.contextmanager
def mosquitto(config: Path, ports: list[int], command: list[str] | None = None,
              env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run Mosquitto (or a command that execs it) until the block ends; wait for every port."""
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(command or [MOSQUITTO, "-c", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    try:
        for port in ports:
            wait_for_port(port, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def registry_with_aps(database_url: str, ap_ids: list[str], building: str = "T-1/B1") -> None:
    """A migrated registry holding these APs in one building (community/building)."""
    from registry.db import make_engine, make_session_factory, session_scope, upgrade
    from registry.models import AccessPoint, Building, Community, Coverage

    engine = make_engine(database_url)
    upgrade(engine)
    community_code, building_code = building.split("/")
    with session_scope(make_session_factory(engine)) as session:
        community = Community(code=community_code, name="")
        place = Building(community=community, code=building_code, name="")
        session.add_all([community, place])
        for ap_id in ap_ids:
            session.add(AccessPoint(ap_id=ap_id, building=place, coverage=Coverage.BUILDING,
                                    ssid="Census-Free"))
    engine.dispose()


@dataclass
class Broker:
    """The running production broker: its ports, CA, and the AP passwords issued."""

    settings: Settings  # provisioning settings (registry, AP password file, topic prefix)
    ap_port: int
    services_port: int
    portal_port: int
    ca: Path
    passwords: dict[str, str]
    process_id: int

    def client(self, user: str, password: str, *, listener: str = "ap",
               client_id: str = "", persistent: bool = False,
               inbox: queue.Queue[ReceivedMessage] | None = None) -> MqttClient:
        """A connected client on one listener (TLS on the AP one)."""
        port = {"ap": self.ap_port, "services": self.services_port,
                "portal": self.portal_port}[listener]
        settings = dataclasses.replace(
            self.settings, mqtt_host="127.0.0.1", mqtt_port=port, mqtt_username=user,
            mqtt_password=password, mqtt_tls_ca=str(self.ca) if listener == "ap" else "")
        client = MqttClient(settings, client_id, persistent_session=persistent,
                            on_message=inbox.put if inbox else None)
        client.connect(timeout=5)
        return client

    def ap(self, ap_id: str, *, client_id: str = "", persistent: bool = False,
           inbox: queue.Queue[ReceivedMessage] | None = None) -> MqttClient:
        """An AP connected with its own issued credentials."""
        return self.client(ap_id, self.passwords[ap_id], client_id=client_id,
                           persistent=persistent, inbox=inbox)

    def service(self, user: str, *, client_id: str = "", persistent: bool = False,
                inbox: queue.Queue[ReceivedMessage] | None = None) -> MqttClient:
        """A service connected with its own credentials on its listener."""
        passwords = {"collector-1": "collector-secret", "command-log": "command-log-secret",
                     "analytics": "analytics-secret", "portal": "portal-secret",
                     WATCHER[0]: WATCHER[1]}
        listener = "portal" if user == "portal" else "services"
        return self.client(user, passwords[user], listener=listener, client_id=client_id,
                           persistent=persistent, inbox=inbox)


@contextlib.contextmanager
def production_broker(base: Path, prefix: str, ap_ids: list[str]) -> Iterator[Broker]:
    """deploy/mosquitto's broker, run by its entrypoint.sh with its mosquitto.conf (ports moved
    to free loopback ones, paths into base), with these APs in a registry and issued."""
    pki = make_pki(base / "pki")
    for folder in ("config", "data", "aps", "certs"):
        (base / folder).mkdir()
    shutil.copy(pki.server_cert, base / "certs/server.crt")
    shutil.copy(pki.server_key, base / "certs/server.key")
    shutil.copy(DEPLOY / "aps.acl.in", base / "config")
    (base / "config/services.acl.in").write_text(
        (DEPLOY / "services.acl.in").read_text() + f"\nuser {WATCHER[0]}\ntopic read #\n")
    ports = {"8883": free_port(), "1883": free_port(), "1884": free_port()}
    config = (DEPLOY / "mosquitto.conf").read_text().replace("/mosquitto/", f"{base}/")
    for production, port in ports.items():
        config = config.replace(f"listener {production}\n", f"listener {port} 127.0.0.1\n")
    assert all(f"listener {port} 127.0.0.1" in config for port in ports.values())
    (base / "config/mosquitto.conf").write_text(run_as_me() + config)

    settings = Settings.load(environ={}, environment="test", var_dir=base / "var",
                             database_url=f"sqlite:///{base / 'registry.sqlite3'}",
                             mqtt_topic_prefix=prefix,
                             firmware_password_file=str(base / "aps/passwd"), **generate_keys())
    registry_with_aps(settings.database_url, ap_ids)
    passwords = {ap: issue_credentials(settings, ap) for ap in ap_ids}

    env = {**os.environ, **SERVICE_PASSWORDS, "TOPIC_PREFIX": prefix,
           "CONFIG_DIR": str(base / "config"), "DATA_DIR": str(base / "data"),
           "APS_DIR": str(base / "aps")}
    with mosquitto(base / "config/mosquitto.conf", list(ports.values()),
                   # BusyBox ash: the shell of the eclipse-mosquitto image (Alpine).
                   command=["busybox", "ash", str(DEPLOY / "entrypoint.sh")],
                   env=env) as process:
        # The observer is added the way an operator adds a user: mosquitto_passwd, SIGHUP.
        subprocess.run(["mosquitto_passwd", "-b", str(base / "data/services.passwd"), *WATCHER],
                       check=True)
        os.kill(process.pid, signal.SIGHUP)
        time.sleep(0.3)
        yield Broker(settings, ports["8883"], ports["1883"], ports["1884"], pki.ca, passwords,
                     process.pid)
