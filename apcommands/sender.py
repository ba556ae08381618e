"""Signing and sending AP commands: the per-process publisher and ``ApControl``.

One MQTT connection per worker process, opened on first use (after gunicorn forks). Commands
are signed with the AP's own key (or the shared command key) and published at QoS 1 and waited
for, so a sign-in only reports success once the broker holds the authorize command. The
message contract (fields, signing string, verification) is ``census.commands``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from census.channels import command_topic
from census.commands import ApCommand, build_command
from census.mqtt import MqttClient, MqttError
from census.settings import Settings

LOGGER = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 5.0


class CommandNotSent(RuntimeError):
    """The broker could not be reached or did not acknowledge a command."""


class Publisher:
    """A lazily connected MQTT client shared by the threads of one process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: MqttClient | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _connected(self) -> MqttClient:
        """The process's client, connecting (again after a fork) when needed."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                client_id = f"portal-{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
                client = MqttClient(self._settings, client_id=client_id)
                client.connect(timeout=PUBLISH_TIMEOUT_S)
                self._client, self._pid = client, os.getpid()
            return self._client

    def publish(self, topic: str, payload: bytes, wait: bool = True) -> None:
        """Publish at QoS 1, not retained; raise MqttError when it is not acknowledged."""
        self._connected().publish(topic, payload, qos=1, retain=False, wait=wait,
                                  timeout=PUBLISH_TIMEOUT_S)

    def close(self) -> None:
        """Disconnect (tests and shutdown)."""
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.disconnect()
            self._client = None


class ApControl:
    """Signs and sends authorize / deauthorize commands to APs."""

    def __init__(self, settings: Settings, publisher: Publisher,
                 key_for: Callable[[str], str | None]) -> None:
        self._settings = settings
        self._publisher = publisher
        self._key_for = key_for

    def send(self, cmd: str, ap_id: str, mac: str, session_seconds: int,
             now: float | None = None) -> ApCommand:
        """Build, sign (issued ``now``, default the clock) and publish one command; raise
        CommandNotSent when the broker did not take it."""
        key = self._key_for(ap_id) or self._settings.command_key
        command = build_command(key, cmd, ap_id, mac, session_seconds, now=now)
        topic = command_topic(self._settings.mqtt_topic_prefix, ap_id)
        try:
            self._publisher.publish(topic, command.to_json())
        except MqttError as error:
            LOGGER.error("%s for AP %s not sent: %s", cmd, ap_id, error)
            raise CommandNotSent(str(error)) from None
        LOGGER.debug("%s sent to %s (nonce %s)", cmd, ap_id, command.nonce)
        return command

    def authorize(self, ap_id: str, mac: str, session_seconds: int) -> ApCommand:
        """Tell the AP to let the MAC through for session_seconds."""
        return self.send("authorize", ap_id, mac, session_seconds)

    def deauthorize(self, ap_id: str, mac: str) -> ApCommand:
        """Tell the AP to cut the MAC off."""
        return self.send("deauthorize", ap_id, mac, 0)
