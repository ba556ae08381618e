"""Stand-ins for the census agent on every access point of a simulated community.

On a real AP the agent (built with the firmware configs) verifies each signed command with the
AP's key, runs ``ndsctl auth`` / ``ndsctl deauth`` and answers on ``{p}/v1/ap/{ap}/cmd/ack``
(contracts, section 4). Here one process plays that part for every AP: the same checks
(``census.commands.verify_command``, so the same refusal words), a table of authorized clients
per AP in place of openNDS's, and the same answer. The demo and the tests use it to close the
loop portal → AP → command log without access points.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from census.channels import ack_topic, ap_topic_head, command_topic
from census.commands import CommandError, NonceCache, encode_ack, verify_command
from census.mqtt import MqttClient, ReceivedMessage
from census.settings import Settings

LOGGER = logging.getLogger(__name__)


class SimulatedAgents:
    """Every AP's agent in one MQTT client: verify, apply, acknowledge."""

    def __init__(self, settings: Settings, key_for: Callable[[str], str | None],
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._key_for = key_for
        self._clock = clock
        self._head = ap_topic_head(settings.mqtt_topic_prefix)
        self._nonces: dict[str, NonceCache] = {}  # per AP, as each agent keeps its own
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        # ap_id -> {mac: authorized until (Unix time)}, what `ndsctl json` would list
        self.authorized: dict[str, dict[str, float]] = {}
        self.answers: Counter[str] = Counter()  # "ok" or the refusal word
        self._client = MqttClient(settings, on_message=self._on_command)

    def start(self) -> None:
        """Connect and subscribe to every AP's command topic."""
        self._client.connect()
        self._client.subscribe(command_topic(self._settings.mqtt_topic_prefix, "+"), qos=1)

    def stop(self) -> None:
        """Send the last answers and disconnect."""
        self._client.wait_until_published(timeout=10.0)
        self._client.disconnect()

    def wait_for_answers(self, count: int, timeout: float = 30.0) -> bool:
        """Block until count commands have been answered in all; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._answered:
            while sum(self.answers.values()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._answered.wait(left)
        return True

    def _on_command(self, message: ReceivedMessage) -> None:
        """paho's thread: one command for one AP."""
        ap_id = message.topic[len(self._head): -len("/cmd")]
        key = self._key_for(ap_id)
        nonce = _nonce_of(message.payload)
        now = self._clock()
        try:
            if key is None:
                raise CommandError("wrong_ap", f"no agent runs on {ap_id}")
            with self._lock:
                nonces = self._nonces.setdefault(ap_id, NonceCache())
            command = verify_command(message.payload, key, ap_id, nonces, now=now)
        except CommandError as error:
            LOGGER.info("AP %s refused a command: %s", ap_id, error)
            self._answer(ap_id, nonce, error.reason)
            return
        with self._lock:
            clients = self.authorized.setdefault(ap_id, {})
            if command.cmd == "authorize":
                clients[command.mac] = now + command.session_seconds
            else:
                clients.pop(command.mac, None)
        self._answer(ap_id, command.nonce, "")

    def _answer(self, ap_id: str, nonce: str, error: str) -> None:
        """Publish the answer (when the command had a usable nonce) and count it."""
        if nonce:
            self._client.publish(ack_topic(self._settings.mqtt_topic_prefix, ap_id),
                                 encode_ack(nonce, not error, error), wait=False)
        with self._answered:
            self.answers[error or "ok"] += 1
            self._answered.notify_all()


def _nonce_of(payload: bytes) -> str:
    """The nonce of a command too broken to parse, when it can still be read (else empty)."""
    marker = payload.find(b'"nonce":"')
    if marker < 0:
        return ""
    candidate = payload[marker + 9: marker + 25].decode("ascii", "replace")
    return candidate if len(candidate) == 16 and all(c in "0123456789abcdef"
                                                     for c in candidate) else ""
