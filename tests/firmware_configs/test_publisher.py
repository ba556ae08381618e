"""census-publisher under BusyBox ash: recorded hostapd notifications -> broker -> collector."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from census.privacy import pseudonymize_mac
from census.settings import Settings
from collector.service import Collector
from tests.common import AP_UNIT, add_aps, count_points, free_port, options_for, running_collector
from tests.firmware_configs.apside import PUBLISHER, TESTDATA, Script, start_script, wait_until
from tests.firmware_configs.apside import write_conf as write_ap_conf
from timeseries import TimeSeriesStore

RECORDED = (TESTDATA / "hostapd.wlan0.notify").read_text()
SHARED_BROKER = ("127.0.0.1", 18830)


def notify(state: Path, lines: str, obj: str = "hostapd.wlan0") -> None:
    """hostapd sends notifications (the stand-in's subscribers print them)."""
    with open(state / f"{obj}.notify", "a") as feed:
        feed.write(lines)


def subscriptions(state: Path) -> list[str]:
    """The subscriptions the stand-in ubus has seen made, as 'name id'."""
    log = state / "subscriptions.log"
    return log.read_text().splitlines() if log.exists() else []


def spooled(spool: Path) -> list[str]:
    """The messages waiting in the spool to be sent, oldest first."""
    return [path.read_text() for path in sorted(spool.glob("*.json"))]


def awaiting(spool: Path) -> list[Path]:
    """The messages sent and waiting for the collector's confirmation, oldest first."""
    return sorted((spool / "sent").glob("*.json"))


def events_of(message: str) -> list[dict[str, object]]:
    """The events of one message: an envelope's (contracts 2a), a batch, or one event."""
    document = json.loads(message)
    if isinstance(document, dict) and "events" in document:
        assert isinstance(document["id"], str)
        return list(document["events"])
    return document if isinstance(document, list) else [document]


def run_publisher(tmp_path: Path, path: str, state: Path, prefix: str, ap_id: str,
                  port: int, **conf: object) -> Script:
    """Start census-publisher with its own ap.conf, run and spool folders."""
    keys: dict[str, object] = {
        "AP_ID": ap_id, "TOPIC_PREFIX": prefix, "BROKER_HOST": "127.0.0.1",
        "BROKER_PORT": port, "SNAPSHOT_INTERVAL": 3600, "SPOOL_DIR": tmp_path / "spool",
    }
    keys.update(conf)
    ap_conf = write_ap_conf(tmp_path / "ap.conf", **keys)
    return start_script(PUBLISHER, path, tmp_path / "publisher.log", CENSUS_CONF=str(ap_conf),
                        CENSUS_RUN_DIR=str(tmp_path / "run"), CENSUS_WATCH_INTERVAL="1",
                        CENSUS_RETRY_MAX="1", CENSUS_MQTT_TIMEOUT="5", CENSUS_CONFIRM_WINDOW="2",
                        UBUS_STANDIN_DIR=str(state))


def test_collector_stores_exactly_what_hostapd_reported(
    settings: Settings, influx: TimeSeriesStore, openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """assoc/disassoc become connect/disconnect, get_clients a snapshot; nothing else is stored."""
    add_aps(settings)
    collector = Collector(settings, options_for(settings, "firmware"))
    with running_collector(collector):
        started = time.time()
        script = run_publisher(tmp_path, openwrt_bin, ubus_state, settings.mqtt_topic_prefix,
                               AP_UNIT, SHARED_BROKER[1])
        try:
            wait_until(lambda: bool(subscriptions(ubus_state)), 15, "the ubus subscription")
            notify(ubus_state, RECORDED)
            wait_until(lambda: count_points(influx) >= 5, 20, "5 points in InfluxDB")
            time.sleep(1.0)  # a sixth point would be a bug: give it time to show
            # The collector confirmed every message it stored: nothing waits on the AP.
            spool = tmp_path / "spool"
            wait_until(lambda: not spooled(spool) and not awaiting(spool), 20,
                       "every message confirmed and deleted")
        finally:
            log = script.stop()
    frame = influx.query("SELECT * FROM presence")
    key = settings.pseudonym_key

    def row(event: str, mac: str, rssi: int | None) -> tuple[str, str, int | None]:
        return event, pseudonymize_mac(mac, key), rssi

    stored = {(str(r["event"]), str(r["device"]), None if pd.isna(r["rssi"]) else int(r["rssi"]))
              for r in frame.to_dict("records")}
    assert len(frame) == 5, log
    # The recorded notifications: two stations associate, the first leaves; probes and auth
    # frames are not presence. get_clients lists two associated stations and one that only
    # authenticated (left out).
    assert stored == {
        row("connect", "a4:83:e7:12:9f:01", -48),
        row("connect", "ba:1c:3d:77:02:9e", -71),
        row("disconnect", "a4:83:e7:12:9f:01", None),
        row("snapshot", "ba:1c:3d:77:02:9e", -69),
        row("snapshot", "00:16:3e:00:00:07", -55),
    }
    assert set(frame["ap"]) == {AP_UNIT}
    times = frame["time"].map(lambda t: t.timestamp())
    assert times.min() >= int(started) - 1 and times.max() <= time.time() + 1


def test_a_returning_interface_is_subscribed_again(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path, test_id: str,
) -> None:
    """hostapd re-adds its object (new id) after a reload: the publisher re-subscribes."""
    prefix = f"test-{test_id}"
    ap_id = "ap-resubscribe"
    topic = f"{prefix}/v1/ap/{ap_id}/events"
    received = tmp_path / "received.jsonl"
    with open(received, "w") as sink:
        listener = subprocess.Popen(["mosquitto_sub", "-p", str(SHARED_BROKER[1]), "-q", "1",
                                     "-t", topic], stdout=sink)
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, prefix, ap_id, SHARED_BROKER[1])
    try:
        wait_until(lambda: subscriptions(ubus_state) == ["hostapd.wlan0 0a1b2c3d"], 15,
                   "the first subscription")
        (ubus_state / "objects").write_text("")  # wifi down: the object leaves ubus
        wait_until(lambda: "left ubus" in script.output(), 15, "the publisher to notice")
        (ubus_state / "objects").write_text("hostapd.wlan0 0a1b2c3e\n")  # and comes back
        wait_until(lambda: len(subscriptions(ubus_state)) == 2, 15, "a second subscription")
        assert subscriptions(ubus_state)[1] == "hostapd.wlan0 0a1b2c3e"
        notify(ubus_state, '{ "disassoc": {"address":"ba:1c:3d:77:02:9e"} }\n')
        wait_until(lambda: '"disconnect"' in received.read_text(), 20, "the disconnect event")
    finally:
        log = script.stop()
        listener.terminate()
        listener.wait(5)
    events = [e for line in received.read_text().splitlines() for e in events_of(line)
              if e["type"] != "snapshot"]
    assert [(e["type"], e["mac"]) for e in events] == [("disconnect", "ba:1c:3d:77:02:9e")], log


@contextmanager
def own_broker(folder: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Mosquitto of this test's own, persisting sessions in folder across restarts."""
    conf = folder / "mosquitto.conf"
    # As root, mosquitto would switch to its own user, who cannot write the test's folder.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {folder}/\n{run_as}")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 20, f"mosquitto on port {port}")
        yield broker
    finally:
        if broker.poll() is None:
            broker.send_signal(signal.SIGTERM)  # saves the persistence file
            broker.wait(10)


def test_spool_keeps_every_message_in_order_while_the_broker_is_down(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """Broker stopped: events wait in the spool; broker back: all arrive, in order, once."""
    port = free_port()
    topic = "spooltest/v1/ap/ap-spool/events"
    reader = ["mosquitto_sub", "-p", str(port), "-c", "-i", "spool-reader", "-q", "1",
              "-t", topic]
    with own_broker(tmp_path, port):
        # The reader's persistent session queues whatever arrives while it is away.
        subprocess.run([*reader, "-E"], check=True, timeout=10)
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-spool", port)
    try:
        wait_until(lambda: len(spooled(spool)) == 1, 20, "the first snapshot to wait")
        waiting = spooled(spool)
        wait_until(lambda: bool(subscriptions(ubus_state)), 20, "the subscription")
        notify(ubus_state, RECORDED)
        wait_until(lambda: len(spooled(spool)) == 4, 20, "4 messages in the spool")
        waiting = spooled(spool)
        wait_until(lambda: "cannot publish" in script.output(), 5, "the sender to fail")
        with own_broker(tmp_path, port):
            wait_until(lambda: not spooled(spool), 15, "the spool to drain")
            received = subprocess.run([*reader, "-C", "4", "-W", "10"], capture_output=True,
                                      text=True, timeout=15).stdout.splitlines()
    finally:
        log = script.stop()
    assert received == waiting, log
    assert events_of(received[0])[0]["type"] == "snapshot"
    assert [events_of(m)[0]["type"] for m in received[1:]] == ["connect", "connect", "disconnect"]
    # PUBACKed but not confirmed (no collector here): kept, awaiting confirmation.
    assert len(awaiting(spool)) == 4
    assert "broker reachable again" in log


def test_spool_is_bounded_and_says_what_it_dropped(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """With nobody listening and SPOOL_MAX_FILES 2, the oldest messages go, and the log says so."""
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-bounded",
                           free_port(), SPOOL_MAX_FILES=2)
    try:
        wait_until(lambda: len(spooled(spool)) == 1, 20, "the first snapshot")
        wait_until(lambda: bool(subscriptions(ubus_state)), 20, "the subscription")
        notify(ubus_state, RECORDED)
        wait_until(lambda: "dropped the 1 oldest" in script.output()
                   and '"disconnect"' in "".join(spooled(spool)), 20, "the spool to overflow")
    finally:
        log = script.stop()
    kept = [event for message in spooled(spool) for event in events_of(message)]
    assert [(m["type"], m["mac"]) for m in kept] == [
        ("connect", "ba:1c:3d:77:02:9e"), ("disconnect", "a4:83:e7:12:9f:01")], log


def test_snapshots_repeat_every_interval(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """A snapshot batch every SNAPSHOT_INTERVAL seconds, so a missed event heals by itself."""
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-interval",
                           free_port(), SNAPSHOT_INTERVAL=1)
    try:
        wait_until(lambda: len(spooled(spool)) >= 2, 20, "two snapshots")
    finally:
        log = script.stop()
    batches = [events_of(message) for message in spooled(spool)]
    assert all(isinstance(batch, list) and len(batch) == 2 for batch in batches), log
    stamps = [batch[0]["ts"] for batch in batches]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_stopping_leaves_no_process_behind(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """SIGTERM (procd's stop) ends the subscriptions, relays, watcher and sender too."""
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-stop", free_port())
    wait_until(lambda: bool(subscriptions(ubus_state)), 20, "the subscription")
    script.process.send_signal(signal.SIGTERM)
    script.process.wait(5)
    time.sleep(0.5)
    survivors = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(script.process.pid)],
                               capture_output=True, text=True).stdout.splitlines()
    alive = [line for line in survivors if " Z" not in line and "defunct" not in line]
    script.stop()
    assert alive == [], alive
    assert os.path.exists(tmp_path / "run")


def test_an_ssid_with_quotes_and_backslashes_stays_valid_json(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """The SSID from get_status is escaped into the event, whatever it holds."""
    ssid = 'Wi-Fi "社区" \\ free'
    status = json.loads((ubus_state / "hostapd.wlan0.get_status.json").read_text())
    (ubus_state / "hostapd.wlan0.get_status.json").write_text(json.dumps({**status, "ssid": ssid}))
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-ssid", free_port())
    try:
        wait_until(lambda: len(spooled(spool)) == 1, 20, "the first snapshot")
    finally:
        log = script.stop()
    batch = events_of(spooled(spool)[0])
    assert [event["ssid"] for event in batch] == [ssid, ssid], log


def test_a_killed_publisher_leaves_no_process_behind(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """SIGKILL (procd, when SIGTERM took too long): watcher and sender notice and end the rest."""
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, "spooltest", "ap-kill", free_port())
    wait_until(lambda: bool(subscriptions(ubus_state)), 20, "the subscription")
    script.process.kill()
    script.process.wait(5)

    def survivors() -> list[str]:
        listing = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(script.process.pid)],
                                 capture_output=True, text=True).stdout.splitlines()
        return [line for line in listing if " Z" not in line and "defunct" not in line]

    try:
        wait_until(lambda: survivors() == [], 20, "the publisher's processes to end")
    finally:
        script.stop()


def make_certificates(folder: Path) -> None:
    """A test CA, a server certificate for 127.0.0.1, and client certificates ap-tls, reader."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=30)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=census test CA")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "ap-tls", "reader"):
        openssl("req", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'127.0.0.1' if name == 'server' else name}")
        extra = ["-extfile", "server.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", *extra)


def test_the_publisher_speaks_tls_with_a_client_certificate(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path,
) -> None:
    """BROKER_CAFILE / CERTFILE / KEYFILE: events reach a broker that requires a certificate."""
    make_certificates(tmp_path)
    port = free_port()
    conf = tmp_path / "tls.conf"
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {port} 127.0.0.1\ncafile {tmp_path}/ca.crt\n"
                    f"certfile {tmp_path}/server.crt\nkeyfile {tmp_path}/server.key\n"
                    "require_certificate true\nuse_identity_as_username true\n"
                    f"allow_anonymous false\n{run_as}")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    received = tmp_path / "received.jsonl"
    script = None
    listener = None
    try:
        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 20, "the TLS broker")
        with open(received, "w") as sink:
            listener = subprocess.Popen(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                 "--cafile", str(tmp_path / "ca.crt"), "--cert", str(tmp_path / "reader.crt"),
                 "--key", str(tmp_path / "reader.key"), "-t", "tlstest/#"], stdout=sink)
        time.sleep(0.5)
        script = run_publisher(tmp_path, openwrt_bin, ubus_state, "tlstest", "ap-tls", port,
                               BROKER_CAFILE=tmp_path / "ca.crt",
                               BROKER_CERTFILE=tmp_path / "ap-tls.crt",
                               BROKER_KEYFILE=tmp_path / "ap-tls.key")
        wait_until(lambda: "snapshot" in received.read_text(), 20, "the snapshot over TLS")
    finally:
        log = script.stop() if script else ""
        if listener:
            listener.terminate()
            listener.wait(5)
        broker.terminate()
        broker.wait(10)
    batch = events_of(received.read_text().splitlines()[0])
    assert [event["mac"] for event in batch] == ["ba:1c:3d:77:02:9e", "00:16:3e:00:00:07"], log


def test_an_unconfirmed_message_is_sent_again_until_a_confirmation_deletes_it(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path, test_id: str,
) -> None:
    """No collector confirms: the snapshot goes out again after CONFIRM_RESEND_S with the same
    id; the confirmation naming that id deletes it, and nothing is sent after that."""
    prefix = f"test-{test_id}"
    ap_id = "ap-confirm"
    received = tmp_path / "received.jsonl"
    port = str(SHARED_BROKER[1])
    with open(received, "w") as sink:
        listener = subprocess.Popen(["mosquitto_sub", "-p", port, "-q", "1",
                                     "-t", f"{prefix}/v1/ap/{ap_id}/events"], stdout=sink)
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, prefix, ap_id, SHARED_BROKER[1],
                           CONFIRM_RESEND_S=2)
    try:
        wait_until(lambda: len(received.read_text().splitlines()) >= 2, 20, "a re-send")
        first, again = received.read_text().splitlines()[:2]
        assert first == again  # the same envelope, the same id: the points overwrite themselves
        message_id = json.loads(first)["id"]
        assert [path.name.split(".", 1)[1] for path in awaiting(spool)] == [f"{message_id}.json"]
        # A forged id, a path and the real one: only the real one deletes anything.
        confirmation = json.dumps({"v": 1, "ids": ["../x", "nothing", message_id]})
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t",
                        f"{prefix}/v1/ap/{ap_id}/stored", "-m", confirmation], check=True,
                       timeout=10)
        wait_until(lambda: not awaiting(spool), 10, "the confirmed message deleted")
        count = len(received.read_text().splitlines())
        time.sleep(3)  # past the resend timeout: nothing more goes out
    finally:
        log = script.stop()
        listener.terminate()
        listener.wait(5)
    assert len(received.read_text().splitlines()) == count, log
    assert "sending it again" in log


def test_the_spool_cap_counts_messages_awaiting_confirmation(
    openwrt_bin: str, ubus_state: Path, tmp_path: Path, test_id: str,
) -> None:
    """The broker takes everything, nobody confirms: SPOOL_MAX_FILES still bounds what the AP
    keeps, the oldest awaiting confirmation going first."""
    spool = tmp_path / "spool"
    script = run_publisher(tmp_path, openwrt_bin, ubus_state, f"test-{test_id}", "ap-cap",
                           SHARED_BROKER[1], SPOOL_MAX_FILES=2)
    try:
        wait_until(lambda: len(awaiting(spool)) == 1, 20, "the snapshot sent, unconfirmed")
        wait_until(lambda: bool(subscriptions(ubus_state)), 20, "the subscription")
        notify(ubus_state, RECORDED)
        wait_until(lambda: "dropped the 1 oldest" in script.output() and not spooled(spool)
                   and '"disconnect"' in "".join(p.read_text() for p in awaiting(spool)),
                   20, "the cap to drop the oldest awaiting ones")
    finally:
        log = script.stop()
    kept = [event for path in awaiting(spool) for event in events_of(path.read_text())]
    assert [(e["type"], e["mac"]) for e in kept] == [
        ("connect", "ba:1c:3d:77:02:9e"), ("disconnect", "a4:83:e7:12:9f:01")], log
