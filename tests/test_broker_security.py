"""The production broker's security, attacked: a real Mosquitto started by deploy/mosquitto's
entrypoint.sh with its mosquitto.conf (ports moved to free ones, paths into a temporary folder),
the ACLs it renders, TLS, and AP users issued by `wifi-census firmware ap-cred`.

Every defence is checked by performing the attack: anonymous and wrong credentials, an AP
publishing as another AP or as analytics, reading another AP's commands, and taking over a
service's or another AP's session by its client id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from census.mqtt import MqttClient, MqttError, ReceivedMessage
from census.settings import Settings
from tests.brokers import WATCHER, Broker, mosquitto, production_broker, run_as_me
from tests.common import free_port
from wifi_census.cli import main
from wifi_census.firmware import revoke_credentials

PREFIX = "census"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """deploy/mosquitto's broker with ap-1, ap-2 and ap-3 issued, on free loopback ports."""
    with production_broker(tmp_path_factory.mktemp("broker"), PREFIX,
                           ["ap-1", "ap-2", "ap-3"]) as running:
        yield running


def drain(inbox: queue.Queue[ReceivedMessage], until_topic: str,
          timeout: float = 5.0) -> list[tuple[str, bytes]]:
    """Messages received up to and including the first on until_topic (the sentinel)."""
    seen: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"sentinel on {until_topic} never came; saw {seen}")
        message = inbox.get(timeout=remaining)
        seen.append((message.topic, message.payload))
        if message.topic == until_topic:
            return seen


def topic(ap_id: str, kind: str) -> str:
    """An AP topic under the test prefix."""
    return f"{PREFIX}/v1/ap/{ap_id}/{kind}"


@pytest.mark.parametrize("listener", ["ap", "services", "portal"])
def test_anonymous_clients_are_refused(broker: Broker, listener: str) -> None:
    """No user name: no connection, on every listener."""
    with pytest.raises(MqttError, match="refused|Not authorized|not authorised"):
        broker.client("", "", listener=listener)


@pytest.mark.parametrize(("user", "password", "listener"), [
    ("ap-1", "wrong", "ap"),
    ("ap-1", None, "services"),  # an AP's real password, on the services' listener
    ("ap-1", None, "portal"),
    ("collector-1", "collector-secret", "ap"),  # a service's, on the APs' listener
    ("collector-1", "collector-secret", "portal"),
    ("portal", "portal-secret", "services"),
])
def test_credentials_work_only_on_their_own_listener(broker: Broker, user: str,
                                                     password: str | None, listener: str) -> None:
    """Wrong passwords fail, and each listener accepts only its own users."""
    with pytest.raises(MqttError):
        broker.client(user, password or broker.passwords[user], listener=listener)


def test_an_ap_publishes_only_its_own_events_status_and_answers(broker: Broker) -> None:
    """ap-1 forges ap-2's events, status and answer, a command, and analytics' and the portal's
    alerts: none reaches anyone; its own event, status and answer do."""
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    watcher = broker.service(WATCHER[0], inbox=inbox)
    watcher.subscribe(f"{PREFIX}/#", qos=1)
    attacker = broker.ap("ap-1")
    try:
        forged = [topic("ap-2", "events"), topic("ap-2", "status"), topic("ap-2", "cmd/ack"),
                  topic("ap-2", "cmd"), topic("ap-1", "cmd"), f"{PREFIX}/v1/alerts/overcrowding",
                  f"{PREFIX}/v1/alerts/watchlist", f"{PREFIX}/v1/ap/ap-2/events/x"]
        for name in forged:
            attacker.publish(name, b'{"forged":true}', qos=1)
        own = [topic("ap-1", "events"), topic("ap-1", "status"), topic("ap-1", "cmd/ack")]
        for name in own:
            attacker.publish(name, b"own", qos=1)
        seen = drain(inbox, own[-1])
    finally:
        attacker.disconnect()
        watcher.disconnect()
    assert seen == [(name, b"own") for name in own]


def test_an_ap_cannot_read_another_aps_commands(broker: Broker) -> None:
    """ap-1 subscribes to ap-2's commands (and to everything): it gets only its own."""
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    spy = broker.ap("ap-1", inbox=inbox)
    portal = broker.service("portal")
    try:
        for pattern in (topic("ap-2", "cmd"), f"{PREFIX}/v1/ap/+/cmd", "#"):
            spy.subscribe(pattern, qos=1)
        portal.publish(topic("ap-2", "cmd"), b"for ap-2", qos=1)
        portal.publish(topic("ap-1", "cmd"), b"for ap-1", qos=1)
        seen = drain(inbox, topic("ap-1", "cmd"))
        time.sleep(0.3)  # anything else (a second copy through '#') would be here by now
    finally:
        spy.disconnect()
        portal.disconnect()
    assert {payload for _, payload in seen} | {m.payload for m in inbox.queue} == {b"for ap-1"}


def test_an_ap_reads_only_its_own_confirmations_and_cannot_forge_one(broker: Broker) -> None:
    """End-to-end acknowledgement attacked: ap-2 subscribes to ap-1's confirmations (and to every
    AP's) and publishes a forged confirmation on ap-1's topic; ap-1 gets only the collector's
    confirmation, ap-2 only its own."""
    mine: queue.Queue[ReceivedMessage] = queue.Queue()
    spied: queue.Queue[ReceivedMessage] = queue.Queue()
    victim = broker.ap("ap-1", inbox=mine)
    attacker = broker.ap("ap-2", inbox=spied)
    collector = broker.service("collector-1")
    try:
        victim.subscribe(topic("ap-1", "stored"), qos=1)
        for pattern in (topic("ap-1", "stored"), f"{PREFIX}/v1/ap/+/stored", "#"):
            attacker.subscribe(pattern, qos=1)
        # A forged confirmation would make ap-1 delete events the collector never stored.
        attacker.publish(topic("ap-1", "stored"), b'{"v":1,"ids":["forged"]}', qos=1)
        collector.publish(topic("ap-1", "stored"), b'{"v":1,"ids":["for-ap-1"]}', qos=1)
        collector.publish(topic("ap-2", "stored"), b'{"v":1,"ids":["for-ap-2"]}', qos=1)
        victim_saw = drain(mine, topic("ap-1", "stored"))
        attacker_saw = drain(spied, topic("ap-2", "stored"))
        time.sleep(0.3)  # anything else (a forged copy, a copy through '#') would be here by now
    finally:
        for client in (victim, attacker, collector):
            client.disconnect()
    assert victim_saw == [(topic("ap-1", "stored"), b'{"v":1,"ids":["for-ap-1"]}')]
    assert mine.empty()
    assert {payload for _, payload in attacker_saw} | {m.payload for m in spied.queue} == \
        {b'{"v":1,"ids":["for-ap-2"]}'}


def test_an_ap_cannot_take_over_the_collectors_session(broker: Broker) -> None:
    """The incident: a client connects with the collector's client id (clean start off) while
    events wait for it. Here an AP does it on its listener: it gets a session of its own (the
    client id is its user name), nothing of the collector's; the collector then gets them all,
    and a collector online is not disconnected by the attempt."""
    collector = broker.service("collector-1", client_id="collector-1", persistent=True)
    collector.subscribe(f"{PREFIX}/v1/ap/+/events", qos=1)
    collector.disconnect()
    publisher = broker.ap("ap-3")
    for index in range(3):
        publisher.publish(topic("ap-3", "events"), f"queued {index}".encode(), qos=1)
    stolen: queue.Queue[ReceivedMessage] = queue.Queue()
    thief = broker.ap("ap-2", client_id="collector-1", persistent=True, inbox=stolen)
    time.sleep(0.5)
    thief.disconnect()
    assert stolen.empty()
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    collector = broker.service("collector-1", client_id="collector-1", persistent=True,
                               inbox=inbox)
    try:
        # online now: a second attempt must not disconnect it
        thief = broker.ap("ap-2", client_id="collector-1", persistent=True)
        publisher.publish(topic("ap-3", "events"), b"after the attempt", qos=1)
        seen = [inbox.get(timeout=5).payload for _ in range(4)]
        thief.disconnect()
    finally:
        publisher.disconnect()
        collector.disconnect()
        ending = broker.service("collector-1")  # a clean start ends the test's session
        ending.disconnect()
    assert seen == [b"queued 0", b"queued 1", b"queued 2", b"after the attempt"]


def test_an_ap_cannot_take_over_another_aps_session(broker: Broker) -> None:
    """ap-2 connecting with ap-1's client id gets none of ap-1's queued commands."""
    agent = broker.ap("ap-1", client_id="ap-1", persistent=True)
    agent.subscribe(topic("ap-1", "cmd"), qos=1)
    agent.disconnect()
    portal = broker.service("portal")
    portal.publish(topic("ap-1", "cmd"), b"queued for ap-1", qos=1)
    stolen: queue.Queue[ReceivedMessage] = queue.Queue()
    thief = broker.ap("ap-2", client_id="ap-1", persistent=True, inbox=stolen)
    time.sleep(0.5)
    thief.disconnect()
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    agent = broker.ap("ap-1", client_id="ap-1", persistent=True, inbox=inbox)
    try:
        assert inbox.get(timeout=5).payload == b"queued for ap-1"
    finally:
        agent.disconnect()
        portal.disconnect()
        broker.ap("ap-1").disconnect()  # clean start: the session ends
    assert stolen.empty()


@pytest.mark.parametrize(("user", "allowed", "refused"), [
    ("collector-1", topic("ap-2", "stored"), topic("ap-2", "cmd")),
    ("command-log", None, topic("ap-2", "cmd/ack")),
    ("analytics", f"{PREFIX}/v1/alerts/overcrowding", topic("ap-2", "cmd")),
    ("portal", topic("ap-2", "cmd"), f"{PREFIX}/v1/alerts/overcrowding"),
])
def test_each_service_publishes_only_what_it_needs(broker: Broker, user: str,
                                                   allowed: str | None, refused: str) -> None:
    """The collector publishes only confirmations, the command log nothing; analytics only its
    alerts; the portal commands and watchlist alerts, not overcrowding alerts."""
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    watcher = broker.service(WATCHER[0], inbox=inbox)
    watcher.subscribe(f"{PREFIX}/#", qos=1)
    service = broker.service(user)
    sentinel = broker.ap("ap-2")
    try:
        service.publish(refused, b"refused", qos=1)
        if allowed:
            service.publish(allowed, b"allowed", qos=1)
            assert inbox.get(timeout=5).topic == allowed
        sentinel.publish(topic("ap-2", "events"), b"sentinel", qos=1)
        seen = drain(inbox, topic("ap-2", "events"))
    finally:
        for client in (service, sentinel, watcher):
            client.disconnect()
    assert seen == [(topic("ap-2", "events"), b"sentinel")]


def test_a_revoked_ap_is_refused_after_a_reload(broker: Broker) -> None:
    """ap-cred revoke removes the AP's line; after SIGHUP the broker refuses the AP, and drops
    its open connection; issuing again lets it back in with the new password only."""
    connected = broker.ap("ap-3")
    assert revoke_credentials(broker.settings, "ap-3")
    os.kill(broker.process_id, signal.SIGHUP)
    time.sleep(0.5)
    with pytest.raises(MqttError):
        broker.ap("ap-3")
    with pytest.raises(MqttError):
        connected.publish(topic("ap-3", "events"), b"after revoke", qos=1, timeout=2)
    connected.disconnect()
    old = broker.passwords["ap-3"]
    result = CliRunner().invoke(main, ["firmware", "ap-cred", "issue", "--ap", "ap-3"],
                                env=_cli_env(broker.settings))
    assert result.exit_code == 0, result.output
    fresh = result.stdout.splitlines()[0]
    os.kill(broker.process_id, signal.SIGHUP)
    time.sleep(0.5)
    broker.client("ap-3", fresh).disconnect()
    with pytest.raises(MqttError):
        broker.client("ap-3", old)
    broker.passwords["ap-3"] = fresh


def _cli_env(settings: Settings) -> dict[str, str]:
    """The environment that makes the CLI load these settings."""
    names = {"environment", "var_dir", "database_url", "mqtt_topic_prefix",
             "firmware_password_file", "secret_key", "pseudonym_key", "identity_key",
             "command_key"}
    return {f"WIFI_CENSUS_{name.upper()}": str(getattr(settings, name)) for name in names}


def test_a_tampered_bridge_cannot_relay_another_aps_topics(broker: Broker,
                                                           tmp_path: Path) -> None:
    """A gateway reconfigured to relay ap-2's events and commands over ap-1's bridge
    connection (Mosquitto marks it a bridge): the central ACL still holds for ap-1's user."""
    local = free_port()
    config = tmp_path / "tampered.conf"
    config.write_text(run_as_me() + f"""listener {local} 127.0.0.1
allow_anonymous true
log_dest stdout
connection tampered
address 127.0.0.1:{broker.ap_port}
remote_username ap-1
remote_password {broker.passwords["ap-1"]}
bridge_cafile {broker.ca}
topic {topic("ap-2", "events")} out 1
topic {topic("ap-2", "cmd")} in 1
topic {topic("ap-1", "events")} out 1
""")
    inbox: queue.Queue[ReceivedMessage] = queue.Queue()
    watcher = broker.service(WATCHER[0], inbox=inbox)
    watcher.subscribe(f"{PREFIX}/#", qos=1)
    stolen: queue.Queue[ReceivedMessage] = queue.Queue()
    with mosquitto(config, [local]):
        settings = dataclasses.replace(broker.settings, mqtt_host="127.0.0.1", mqtt_port=local)
        gateway_side = MqttClient(settings, on_message=stolen.put)
        gateway_side.connect(timeout=5)
        portal = broker.service("portal")
        try:
            gateway_side.subscribe(topic("ap-2", "cmd"), qos=1)
            # The bridge connects in the background: send the sentinel until it comes through.
            deadline = time.monotonic() + 20
            seen: list[tuple[str, bytes]] = []
            while not any(name == topic("ap-1", "events") for name, _ in seen):
                assert time.monotonic() < deadline, "the bridge never connected"
                gateway_side.publish(topic("ap-2", "events"), b"forged", qos=1)
                gateway_side.publish(topic("ap-1", "events"), b"sentinel", qos=1)
                with contextlib.suppress(AssertionError, queue.Empty):
                    seen += drain(inbox, topic("ap-1", "events"), timeout=1)
            portal.publish(topic("ap-2", "cmd"), b"for ap-2", qos=1)
            time.sleep(1)
        finally:
            gateway_side.disconnect()
            portal.disconnect()
            watcher.disconnect()
    assert {name for name, _ in seen} == {topic("ap-1", "events")}
    assert stolen.empty()
