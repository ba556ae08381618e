"""Back-office alerts on MQTT and the webhook, published off the request path.

Alerts go out from a background thread so that a watchlist hit costs the resident's request no
extra time (it must not be told apart from any other sign-in). They share the process's MQTT
connection with the AP commands (``apcommands.sender.Publisher``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import requests

from apcommands.sender import Publisher
from census.channels import alert_topic
from census.mqtt import MqttError
from census.settings import Settings

LOGGER = logging.getLogger(__name__)

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
