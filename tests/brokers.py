"""Private Mosquitto brokers for the broker-security tests: certificates, free ports, start/stop.

Each test that needs the broker's TLS, password or ACL files loaded starts its own Mosquitto on
a free loopback port in its temporary folder (the shared broker on 18830 stays anonymous).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
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

MOSQUITTO = "/usr/sbin/mosquitto"


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
