"""What Mosquitto's persistence costs, and whether what it acknowledged survives kill -9.

One command:

    .venv/bin/python bench/broker_durability.py                       # every setting, growing queue
    .venv/bin/python bench/broker_durability.py --settings interval:60,on:1 --publishers 100 \
        --drained                                                      # a running collector

For each persistence setting (``interval:60``: the old timer; ``on:N``: ``autosave_on_changes
true`` with ``autosave_interval N``), a private Mosquitto 2 (the project's configuration from
wifi_census.local_servers with only the autosave lines changed; its own folder and free port) gets a
prepared collector session that is not connected, so every message queues. QoS 1 messages of
10 snapshot events (~1 KB, what an AP sends) are published by --publishers connections, each
waiting for every PUBACK as an AP does (one connection pipelines up to 1,000), in steps of
--step; each step's rate is printed beside the queue it went into and the size of the database
file the broker rewrites on each save. After the last PUBACK the broker is killed
with SIGKILL at once, restarted, and the session drained: the events that survived are counted.
With --drained a subscriber empties the session meanwhile, as a running collector does: the
rate then is what the broker takes while its queue stays near empty.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from census.channels import events_subscription, events_topic  # noqa: E402
from census.events import PresenceEvent, encode_events  # noqa: E402
from census.mqtt import MqttClient, ReceivedMessage  # noqa: E402
from census.settings import Settings  # noqa: E402
from wifi_census import local_servers as local_services  # noqa: E402

EVENTS_PER_MESSAGE = 10
SESSION = "durability-collector"


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker(folder: Path, autosave: tuple[str, ...]) -> tuple[Settings, local_services.LocalService]:
    """A private Mosquitto with the project's configuration and the given autosave lines."""
    settings = Settings.load(environ={}, environment="test", var_dir=folder,
                             mqtt_port=free_port(), mqtt_topic_prefix="dur")
    service = next(s for s in local_services.build_services(settings) if s.name == "mosquitto")

    def prepare(target: local_services.LocalService) -> None:
        """The project's configuration, autosave lines swapped."""
        local_services._mosquitto_prepare(target)  # noqa: SLF001
        config = target.directory / "mosquitto.conf"
        text = config.read_text()
        for line in local_services.MOSQUITTO_AUTOSAVE:
            text = text.replace(line + "\n", "")
        config.write_text(text + "\n".join(autosave) + "\n")

    service.prepare = prepare
    return settings, service


def message(sequence: int, ts: float) -> bytes:
    """Ten snapshot events with MACs unique to this message."""
    return encode_events(
        PresenceEvent("snapshot", ":".join(f"{(sequence * 16 + i) >> s & 0xFF:02x}"
                                           for s in (40, 32, 24, 16, 8, 0)), ts, -60, "Census")
        for i in range(EVENTS_PER_MESSAGE))


def prepare_session(settings: Settings) -> None:
    """Create the collector's persistent session with its subscription, then leave."""
    client = MqttClient(settings, SESSION, persistent_session=True)
    client.connect()
    client.subscribe(events_subscription(settings.mqtt_topic_prefix), qos=1)
    client.disconnect()


def drain(settings: Settings, quiet_s: float = 3.0) -> set[str]:
    """Connect as the collector session and collect every queued event's MAC."""
    seen: set[str] = set()
    lock = threading.Lock()
    last = [time.monotonic()]

    def on_message(received: ReceivedMessage) -> None:
        """Record the MACs of a message."""
        with lock:
            seen.update(event["mac"] for event in json.loads(received.payload))
            last[0] = time.monotonic()

    client = MqttClient(settings, SESSION, persistent_session=True, on_message=on_message)
    client.connect()
    while time.monotonic() - last[0] < quiet_s:
        time.sleep(0.2)
    client.disconnect()
    return seen


def publish_step(clients: list[MqttClient], topic: str, first: int, count: int,
                 ts: float) -> None:
    """Publish count messages; one client pipelines, several each wait for every PUBACK (APs)."""
    if len(clients) == 1:
        clients[0].publish_many(((topic, message(first + i, ts)) for i in range(count)),
                                max_queued=1000, timeout=600)
        return

    def publish(index: int, client: MqttClient) -> None:
        """This AP's share of the step, one message at a time."""
        for sequence in range(first + index, first + count, len(clients)):
            client.publish(topic, message(sequence, ts), wait=True, timeout=600)

    threads = [threading.Thread(target=publish, args=(index, client))
               for index, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Drainer:
    """The collector session connected and acknowledging at once: the queue stays near 0."""

    def __init__(self, settings: Settings) -> None:
        self.received = 0
        self._client = MqttClient(settings, SESSION, persistent_session=True,
                                  on_message=self._count)

    def _count(self, received: ReceivedMessage) -> None:
        """Count a message (paho acknowledges it)."""
        self.received += 1

    def __enter__(self) -> Drainer:
        self._client.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.disconnect()


def run(setting: str, messages: int, step: int, publishers: int,
        drained: bool = False) -> dict[str, object]:
    """Measure one setting: rates as the queue grows, then kill -9 and count survivors."""
    kind, _, value = setting.partition(":")
    autosave = (("autosave_interval " + value,) if kind == "interval"
                else ("autosave_on_changes true", "autosave_interval " + value))
    with tempfile.TemporaryDirectory(prefix="durability-") as tmp:
        settings, service = broker(Path(tmp), autosave)
        local_services.start(service)
        database = service.directory / "data" / "mosquitto.db"
        try:
            prepare_session(settings)
            clients = [MqttClient(settings, f"durability-ap-{index}")
                       for index in range(publishers)]
            for client in clients:
                client.connect()
            topic = events_topic(settings.mqtt_topic_prefix, "ap-1")
            ts = time.time()
            steps = []
            sent = 0
            if drained:
                with Drainer(settings) as drainer:
                    began = time.perf_counter()
                    publish_step(clients, topic, 0, messages, ts)
                    elapsed = time.perf_counter() - began
                    while drainer.received < messages and time.perf_counter() - began < 600:
                        time.sleep(0.05)
                    print(f"  {setting:12} {messages:,} messages into a drained session: "
                          f"{messages / elapsed:8,.0f} msg/s acknowledged "
                          f"({drainer.received:,} delivered)", flush=True)
                for client in clients:
                    client.disconnect()
                return {"setting": setting, "rate": messages / elapsed}
            while sent < messages:
                count = min(step, messages - sent)
                began = time.perf_counter()
                publish_step(clients, topic, sent, count, ts)
                elapsed = time.perf_counter() - began
                size = database.stat().st_size if database.exists() else 0
                steps.append((sent, count / elapsed, size))
                print(f"  {setting:12} queue {sent:>7,} -> {sent + count:>7,} messages: "
                      f"{count / elapsed:8,.0f} msg/s, database {size / 1e6:6.1f} MB", flush=True)
                sent += count
                if sent == messages and messages % 1000 == 0:
                    messages += 37  # end between two saves of an every-N-changes setting
                    step = 37
            pid = service.read_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # at once: every message above is PUBACKed
            for client in clients:
                client.disconnect()
            # The process leaves /proc a moment before the kernel closes its listening socket.
            while not local_services.port_is_free(service.host, service.port):
                time.sleep(0.05)
            local_services.start(service)
            survived = len(drain(settings))
        finally:
            local_services.stop(service)
    acknowledged = messages * EVENTS_PER_MESSAGE
    print(f"  {setting:12} kill -9 after {acknowledged:,} acknowledged events: {survived:,} "
          f"survived, {acknowledged - survived:,} lost", flush=True)
    return {"setting": setting, "steps": steps, "acknowledged": acknowledged,
            "survived": survived}


def main() -> None:
    """Run every setting asked for."""
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--settings", default="interval:60,on:1000,on:100,on:1")
    arguments.add_argument("--messages", type=int, default=10_000)
    arguments.add_argument("--step", type=int, default=1_000)
    arguments.add_argument("--publishers", type=int, default=40,
                           help="1: one connection pipelining; N: N connections, one at a time")
    arguments.add_argument("--drained", action="store_true",
                           help="a subscriber drains the session meanwhile (the queue stays "
                                "near 0, as with a running collector); no kill")
    options = arguments.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {options.messages:,} messages of "
          f"{EVENTS_PER_MESSAGE} events ({len(message(0, time.time()))} bytes) per setting")
    for setting in options.settings.split(","):
        run(setting, options.messages, options.step, options.publishers, options.drained)


if __name__ == "__main__":
    main()
