"""What the portal publishes on MQTT: signed AP commands and back-office alerts.

One MQTT connection per worker process, opened on first use (after gunicorn forks). Commands
are published at QoS 1 and waited for, so a sign-in only reports success once the broker holds
the authorize command. Alerts go out from a background thread so that a watchlist hit costs
the resident's request no extra time (it must not be told apart from any other sign-in).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import requests

from census.channels import alert_topic, command_topic
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

    def _send(self, cmd: str, ap_id: str, mac: str, session_seconds: int) -> ApCommand:
        """Build, sign and publish one command."""
        key = self._key_for(ap_id) or self._settings.command_key
        command = build_command(key, cmd, ap_id, mac, session_seconds)
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
        return self._send("authorize", ap_id, mac, session_seconds)

    def deauthorize(self, ap_id: str, mac: str) -> ApCommand:
        """Tell the AP to cut the MAC off."""
        return self._send("deauthorize", ap_id, mac, 0)


_Queued = tuple[str, dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]] | None]


class AlertDispatcher:
    """Publishes alerts on MQTT and POSTs them to the webhook, off the request path."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._settings = settings
        self._publisher = publisher
        self._queue: queue.Queue[_Queued | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _ensure_thread(self) -> None:
        """Start the worker thread in this process (again after a fork)."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="portal-alerts",
                                                daemon=True)
                self._pid = os.getpid()
                self._thread.start()

    def dispatch(self, kind: str, payload: dict[str, Any],
                 store: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """Queue an alert for publishing (never blocks the caller); store, when given, runs in
        the alert thread first and returns the payload to publish (with the stored id)."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((kind, payload, store))
        except queue.Full:
            LOGGER.error("alert queue full: %s alert %s not published (stored in the registry)",
                         kind, payload.get("alert_id"))

    def _run(self) -> None:
        """Publish queued alerts until told to stop."""
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            kind, payload, store = item
            try:
                if store is not None:
                    payload = store(payload)
                self._deliver(kind, payload)
            except Exception:  # one bad alert must not stop the others
                LOGGER.exception("alert %s could not be delivered", payload.get("alert_id"))
            finally:
                self._queue.task_done()

    def _deliver(self, kind: str, payload: dict[str, Any]) -> None:
        """MQTT first (the back office listens there), then the webhook when configured."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            self._publisher.publish(alert_topic(self._settings.mqtt_topic_prefix, kind), body)
        except MqttError as error:
            LOGGER.error("alert %s not published on MQTT: %s", payload.get("alert_id"), error)
        if self._settings.alert_webhook_url:
            try:
                response = requests.post(self._settings.alert_webhook_url, data=body, timeout=5,
                                         headers={"Content-Type": "application/json"})
                if response.status_code >= 300:
                    LOGGER.error("alert webhook answered HTTP %s", response.status_code)
            except requests.RequestException as error:
                LOGGER.error("alert webhook unreachable: %s", error.__class__.__name__)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until queued alerts are delivered (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()

        def wait() -> None:
            """Join the queue in a helper thread so the wait can time out."""
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)
