"""`wifi-census firmware`: AP broker credentials and the per-AP files rendered from the registry.

The bridge test runs a real central broker (deploy/mosquitto, as in test_broker_security) and
a real building gateway from the rendered files, and sends an AP's event up and a command down.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result

from census.mqtt import MqttClient, ReceivedMessage
from census.privacy import IdentityCipher
from census.settings import Settings, environment_of, generate_keys
from registry.db import make_engine, make_session_factory, session_scope
from registry.models import AccessPoint
from tests.brokers import (
    Broker,
    mosquitto,
    production_broker,
    registry_with_aps,
    run_as_me,
)
from tests.common import free_port
from wifi_census.cli import main
from wifi_census.firmware import (
    ProvisioningError,
    fill,
    issue_credentials,
    mosquitto_password_hash,
    remove_password,
    set_password,
)

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLES = Path(__file__).resolve().parent / "firmware_templates"
AP_CONF_KEYS = ["AP_ID", "TOPIC_PREFIX", "BROKER_HOST", "BROKER_PORT", "BROKER_USER",
                "BROKER_PASSWORD_FILE", "BROKER_CAFILE", "BROKER_CERTFILE", "BROKER_KEYFILE",
                "COMMAND_KEY_FILE", "SNAPSHOT_INTERVAL", "SPOOL_DIR", "SPOOL_MAX_FILES",
                "CONFIRM_RESEND_S",
                "SESSION_DEFAULT_MINUTES"]
AP_SECRET = "s" * 64


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The project's bridge templates with this test's own sample OpenWrt templates."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "firmware_configs" / "broker", folder / "broker")
    shutil.copytree(SAMPLES / "openwrt", folder / "openwrt")
    return folder


@pytest.fixture
def provisioning(tmp_path: Path, templates: Path) -> Settings:
    """Settings with a registry holding ap-1 (own signing secret) and ap-2 (none)."""
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n")
    settings = Settings.load(
        environ={}, environment="test", var_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}", mqtt_topic_prefix="site",
        firmware_broker_host="mqtt.example.org", firmware_broker_ca=str(ca),
        firmware_templates=str(templates), portal_public_url="https://portal.example.org/",
        **generate_keys())
    registry_with_aps(settings.database_url, ["ap-1", "ap-2"], building="TEDA-017/B03")
    _give_signing_secret(settings, "ap-1")
    return settings


def _give_signing_secret(settings: Settings, ap_id: str) -> None:
    """What `wifi-census portal ap-secret` does, with a known secret."""
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        ap = session.query(AccessPoint).filter_by(ap_id=ap_id).one()
        ap.secret_encrypted = IdentityCipher.from_settings(settings).encrypt(AP_SECRET)
    engine.dispose()


def cli(settings: Settings, *args: str) -> Result:
    """Run `wifi-census ...` with these settings in the environment."""
    env = environment_of(settings)
    return CliRunner().invoke(main, list(args), env=env)


def source(conf: Path) -> dict[str, str]:
    """Source a rendered ap.conf in BusyBox ash (as the AP does) and read the keys back."""
    script = f'. "{conf}"; ' + "; ".join(f'printf "%s=%s\\n" {k} "${k}"' for k in AP_CONF_KEYS)
    output = subprocess.run(["busybox", "ash", "-c", script], capture_output=True, text=True,
                            check=True).stdout
    return dict(line.split("=", 1) for line in output.splitlines())


def test_the_password_hash_is_mosquitto_passwds_format() -> None:
    """$7$ (PBKDF2-SHA512, 101 rounds), 12-byte salt; same salt and password, same hash.
    (That Mosquitto accepts it is tested by every broker test: AP users are hashed here.)"""
    line = mosquitto_password_hash("pw", salt=b"\x00" * 12)
    assert line.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(line.split("$")[4]) == 88
    assert line == mosquitto_password_hash("pw", salt=b"\x00" * 12)
    assert line != mosquitto_password_hash("pw")


def test_password_lines_are_replaced_and_removed_alone(tmp_path: Path) -> None:
    """Issuing again replaces the AP's line; revoking removes it; other users stay; the
    file keeps its mode (the broker must still read it)."""
    path = tmp_path / "passwd"
    path.write_text("collector-1:$7$keep\n")
    path.chmod(0o640)
    set_password(path, "ap-1", "one")
    set_password(path, "ap-1", "two")
    set_password(path, "ap-2", "three")
    users = [line.split(":")[0] for line in path.read_text().splitlines()]
    assert users == ["collector-1", "ap-1", "ap-2"]
    assert remove_password(path, "ap-1") and not remove_password(path, "ap-1")
    assert path.read_text().splitlines()[0] == "collector-1:$7$keep"
    assert [line.split(":")[0] for line in path.read_text().splitlines()] == ["collector-1", "ap-2"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("ap_id", ["collector-1", "collector", "portal", "command-log",
                                   "analytics", "bad id", ""])
def test_service_names_and_bad_ids_cannot_become_ap_users(provisioning: Settings,
                                                           ap_id: str) -> None:
    """An AP named like a service would get that service's client id on the broker."""
    with pytest.raises(ProvisioningError):
        issue_credentials(provisioning, ap_id)


def test_ap_cred_issue_prints_the_secret_once_and_revoke_removes_it(
        provisioning: Settings) -> None:
    """issue: a fresh password printed once, its hash in the broker's file, encrypted in the
    registry; issue again: a different one; revoke: the line is gone; unknown AP: an error."""
    first = cli(provisioning, "firmware", "ap-cred", "issue", "--ap", "ap-1")
    assert first.exit_code == 0, first.output
    password = first.stdout.splitlines()[0]
    passwd = provisioning.var_dir / "broker" / "aps.passwd"
    assert passwd.read_text().startswith("ap-1:$7$101$") and password not in passwd.read_text()
    second = cli(provisioning, "firmware", "ap-cred", "issue", "--ap", "ap-1")
    assert second.stdout.splitlines()[0] != password
    assert len(passwd.read_text().splitlines()) == 1
    revoked = cli(provisioning, "firmware", "ap-cred", "revoke", "--ap", "ap-1")
    assert revoked.exit_code == 0 and passwd.read_text() == ""
    again = cli(provisioning, "firmware", "ap-cred", "revoke", "--ap", "ap-1")
    assert again.exit_code == 1 and "had no broker credentials" in again.output
    unknown = cli(provisioning, "firmware", "ap-cred", "issue", "--ap", "ap-9")
    assert unknown.exit_code == 1 and "not in the registry" in unknown.output


def test_render_writes_every_file_an_ap_needs(provisioning: Settings, tmp_path: Path) -> None:
    """ap.conf with exactly the contract's keys (sourceable by ash), the password and key files
    (owner-only), the CA, the AP's own bridge, and the templates filled (executable kept)."""
    password = issue_credentials(provisioning, "ap-1")
    out = tmp_path / "out"
    result = cli(provisioning, "firmware", "render", "--ap", "ap-1", "--out", str(out))
    assert result.exit_code == 0, result.output
    conf = out / "etc/wifi-census/ap.conf"
    assert [line.split("=")[0] for line in conf.read_text().splitlines()] == AP_CONF_KEYS
    values = source(conf)
    assert values == {
        "AP_ID": "ap-1", "TOPIC_PREFIX": "site", "BROKER_HOST": "127.0.0.1",
        "BROKER_PORT": "1883", "BROKER_USER": "ap-1",
        "BROKER_PASSWORD_FILE": "/etc/wifi-census/broker.password", "BROKER_CAFILE": "",
        "BROKER_CERTFILE": "", "BROKER_KEYFILE": "",
        "COMMAND_KEY_FILE": "/etc/wifi-census/command.key", "SNAPSHOT_INTERVAL": "300",
        "SPOOL_DIR": "/var/spool/wifi-census", "SPOOL_MAX_FILES": "1000", "CONFIRM_RESEND_S": "120",
        "SESSION_DEFAULT_MINUTES": "1440"}
    assert (out / "etc/wifi-census/broker.password").read_text() == password + "\n"
    assert (out / "etc/wifi-census/command.key").read_text() == AP_SECRET + "\n"
    assert (out / "etc/wifi-census/ca.crt").read_text() == Path(
        provisioning.firmware_broker_ca).read_text()
    for secret in ("etc/wifi-census/broker.password", "etc/wifi-census/command.key",
                   "etc/mosquitto/mosquitto.conf", "etc/config/census-sample"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
    bridge = (out / "etc/mosquitto/mosquitto.conf").read_text()
    assert "listener 1883 127.0.0.1" in bridge and "address mqtt.example.org:8883" in bridge
    assert f"remote_password {password}" in bridge and "bridge_cafile /etc/wifi-census/ca.crt" \
        in bridge
    assert "topic site/v1/ap/ap-1/cmd in 1" in bridge
    assert (out / "etc/mosquitto/census.passwd").read_text().startswith("ap-1:$7$")
    sample = (out / "etc/config/census-sample").read_text()
    assert "option ap_id 'ap-1'" in sample and f"option faskey '{AP_SECRET}'" in sample
    assert "'https://portal.example.org/api/captive?ap=ap-1'" in sample
    assert ("fasremotefqdn 'portal.example.org'" in sample and "fasport '443'" in sample
            and "faspath '/'" in sample)
    assert "user@example.org" in sample and "@" not in sample.replace("user@example.org", "")
    assert os.access(out / "etc/init.d/census-sample", os.X_OK)


@pytest.mark.parametrize(("ap_id", "prepare", "message"), [
    ("ap-9", None, "not in the registry"),
    ("ap-1", None, "no broker credentials"),
    ("ap-2", "issue", "no signing secret of its own"),
])
def test_render_refuses_what_would_give_an_ap_the_wrong_secrets(
        provisioning: Settings, tmp_path: Path, ap_id: str, prepare: str | None,
        message: str) -> None:
    """Unknown AP, no broker password yet, or only the global signing key (an AP holding it
    could sign commands for every AP): a clear error, nothing written."""
    if prepare:
        issue_credentials(provisioning, ap_id)
    out = tmp_path / "out"
    result = cli(provisioning, "firmware", "render", "--ap", ap_id, "--out", str(out))
    assert result.exit_code == 1 and message in result.output
    assert not out.exists()


def test_an_unknown_placeholder_is_named_with_its_file_and_line() -> None:
    """A template asking for a key the renderer does not know is an error, not a blank."""
    with pytest.raises(ProvisioningError, match=r"x\.in:2: unknown placeholder @NOPE@"):
        fill("ok @AP_ID@\n@NOPE@\n", {"AP_ID": "ap-1"}, "x.in")


def test_the_projects_own_openwrt_templates_render(provisioning: Settings,
                                                   tmp_path: Path) -> None:
    """Whatever *.in templates firmware_configs/openwrt holds use only keys the renderer has."""
    issue_credentials(provisioning, "ap-1")
    settings = dataclasses.replace(provisioning,
                                   firmware_templates=str(ROOT / "firmware_configs"))
    result = cli(settings, "firmware", "render", "--ap", "ap-1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "o"
    templates = ROOT / "firmware_configs" / "openwrt" / "templates"
    rendered = [out / t.relative_to(templates) for t in templates.rglob("*") if t.is_file()]
    assert rendered
    for path in rendered:
        text = path.read_text()
        assert not re.search(r"@[A-Z_]+@", text), path
    opennds = (out / "etc/config/opennds").read_text()
    assert "ap-1" in opennds
    assert urlsplit(settings.portal_public_url).hostname in opennds


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Broker]:
    """The production broker with ap-1 and ap-2 (both with signing secrets)."""
    with production_broker(tmp_path / "central", "census", ["ap-1", "ap-2"]) as running:
        for ap_id in ("ap-1", "ap-2"):
            _give_signing_secret(running.settings, ap_id)
        yield running


def bridged_settings(central: Broker, templates: Path) -> Settings:
    """Provisioning settings pointing the bridges at the central test broker's TLS port."""
    return dataclasses.replace(
        central.settings, firmware_broker_host="127.0.0.1",
        firmware_broker_port=central.ap_port, firmware_broker_ca=str(central.ca),
        firmware_templates=str(templates))


def local_broker_config(root: Path, data: Path) -> tuple[Path, int]:
    """A rendered local broker's mosquitto.conf, moved to root's files and a free port."""
    port = free_port()
    config = (root / "etc/mosquitto/mosquitto.conf").read_text()
    listen = re.search(r"^listener 1883 (\S+)$", config, re.M)
    assert listen, config
    config = (config.replace("/etc/", f"{root}/etc/")
              .replace("/var/lib/mosquitto/", f"{data}/")
              .replace(listen.group(0), f"listener {port} 127.0.0.1")
              .replace("log_dest syslog", "log_dest stdout"))
    data.mkdir()
    path = data.parent / f"{data.name}.conf"
    path.write_text(run_as_me() + config)
    return path, port


def connect_as_ap(settings: Settings, ap_root: Path, port: int,
                  inbox: queue.Queue[ReceivedMessage] | None = None) -> MqttClient:
    """An AP's script connecting to its local broker with the rendered ap.conf and password."""
    conf = source(ap_root / "etc/wifi-census/ap.conf")
    password = (ap_root / "etc/wifi-census/broker.password").read_text().strip()
    client = MqttClient(dataclasses.replace(
        settings, mqtt_host="127.0.0.1", mqtt_port=port, mqtt_username=conf["BROKER_USER"],
        mqtt_password=password), on_message=inbox.put if inbox else None)
    client.connect(timeout=5)
    return client


def test_an_ap_of_its_own_bridges_to_the_central_broker(central: Broker, tmp_path: Path,
                                                        templates: Path) -> None:
    """render --ap: the AP's own Mosquitto (on 127.0.0.1) carries its event up over TLS under
    its user and its command down; its scripts connect as ap.conf says."""
    settings = bridged_settings(central, templates)
    out = tmp_path / "out"
    result = cli(settings, "firmware", "render", "--ap", "ap-1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert source(out / "etc/wifi-census/ap.conf")["BROKER_HOST"] == "127.0.0.1"
    config, port = local_broker_config(out, tmp_path / "ap-broker")
    events: queue.Queue[ReceivedMessage] = queue.Queue()
    collector = central.service("collector-1", inbox=events)
    collector.subscribe("census/v1/ap/+/events", qos=1)
    with mosquitto(config, [port]):
        commands: queue.Queue[ReceivedMessage] = queue.Queue()
        agent = connect_as_ap(settings, out, port, commands)
        agent.subscribe("census/v1/ap/ap-1/cmd", qos=1)
        publisher = connect_as_ap(settings, out, port)
        portal = central.service("portal")
        try:
            publisher.publish("census/v1/ap/ap-1/events", b"[]", qos=1)
            assert events.get(timeout=20).topic == "census/v1/ap/ap-1/events"
            portal.publish("census/v1/ap/ap-1/cmd", b"authorize", qos=1)
            assert commands.get(timeout=20).payload == b"authorize"
        finally:
            for client in (agent, publisher, portal, collector):
                client.disconnect()


def test_a_building_gateway_relays_its_aps_over_tls(central: Broker, tmp_path: Path,
                                                    templates: Path) -> None:
    """render --building --gateway-host: the gateway's Mosquitto (the rendered files, real)
    bridges to the central broker over TLS under each AP's own user. An AP's event reaches the
    collector; the portal's command reaches the AP's agent; an AP cannot use the gateway to
    publish as its neighbour."""
    settings = bridged_settings(central, templates)
    out = tmp_path / "out"
    result = cli(settings, "firmware", "render", "--building", "T-1/B1", "--out", str(out),
                 "--gateway-host", "gw.b1.lan")
    assert result.exit_code == 0, result.output
    ap_conf = source(out / "ap-1/etc/wifi-census/ap.conf")
    assert (ap_conf["BROKER_HOST"], ap_conf["BROKER_USER"]) == ("gw.b1.lan", "ap-1")
    assert not (out / "ap-1/etc/mosquitto").exists()  # the gateway's broker serves it
    config, port = local_broker_config(out / "gateway", tmp_path / "gateway-data")

    def at_gateway(ap_id: str, inbox: queue.Queue[ReceivedMessage] | None = None) -> MqttClient:
        """An AP's script connecting to the gateway."""
        return connect_as_ap(settings, out / ap_id, port, inbox)

    events: queue.Queue[ReceivedMessage] = queue.Queue()
    collector = central.service("collector-1", inbox=events)
    collector.subscribe("census/v1/ap/+/events", qos=1)
    with mosquitto(config, [port]):
        commands: queue.Queue[ReceivedMessage] = queue.Queue()
        agent = at_gateway("ap-1", commands)
        agent.subscribe("census/v1/ap/ap-1/cmd", qos=1)
        publisher = at_gateway("ap-1")
        neighbour = at_gateway("ap-2")
        portal = central.service("portal")
        try:
            # The bridges connect in the background: the first event may wait in the gateway.
            publisher.publish("census/v1/ap/ap-1/events", b'[{"n":1}]', qos=1)
            neighbour.publish("census/v1/ap/ap-1/events", b"forged by ap-2", qos=1)
            neighbour.publish("census/v1/ap/ap-2/events", b'[{"n":2}]', qos=1)
            received = {events.get(timeout=20).payload for _ in range(2)}
            portal.publish("census/v1/ap/ap-1/cmd", b"authorize", qos=1)
            assert commands.get(timeout=20).payload == b"authorize"
        finally:
            for client in (agent, publisher, neighbour, portal, collector):
                client.disconnect()
    assert received == {b'[{"n":1}]', b'[{"n":2}]'}
    assert events.empty()
