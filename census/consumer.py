"""The one acknowledge-after-commit MQTT consumer: inbox, back-pressure, batches, acks, stop.

Two threads behind paho's network thread, joined by bounded queues::

    paho network loop --(messages)--> batcher --(batches)--> committer --> acks to the broker
      (census.mqtt)      inbox        handler.add            handler.commit
                                      handler.tick           handler.idle

A message is acknowledged only after the batch holding it is committed (``handler.commit``
returned); until then the broker keeps it in the consumer's persistent session and redelivers
it after a crash, so handlers must make a redelivered message change nothing. The broker's
in-flight window (MQTT 5 Receive Maximum) bounds what the consumer holds; when the handler
falls behind, the full inbox blocks paho's thread, which stops reading from the broker
(back-pressure). Used by the collector (``collector.service``) and the AP command log
(``apcommands.log``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from census.mqtt import MqttClient, MqttError, ReceivedMessage
from census.settings import Settings

LOGGER = logging.getLogger(__name__)

BatchT = TypeVar("BatchT")
_STOP = object()  # end-of-stream marker on the queues


class Abandon(Exception):  # noqa: N818 - it is a signal to the consumer, not an error report
    """Raised by a handler's commit: the batch cannot be made durable before the stop; leave
    its messages unacknowledged (the broker redelivers them)."""


class BatchHandler(Protocol[BatchT]):
    """What a consumer's user supplies: how to batch, commit and idle."""

    def open_batch(self) -> BatchT:
        """A new, empty batch."""
        ...

    def add(self, batch: BatchT, message: ReceivedMessage) -> None:
        """Add one message to the batch (batcher thread); must not raise for bad input."""
        ...

    def is_full(self, batch: BatchT, messages: int) -> bool:
        """True when the batch should be committed now, before its flush deadline."""
        ...

    def commit(self, batch: BatchT) -> None:
        """Make the batch durable (committer thread); raise Abandon to leave it unacknowledged."""
        ...

    def committed(self, batch: BatchT, messages: int, started: float) -> None:
        """Called after the batch's messages were acknowledged (started: first arrival)."""
        ...

    def tick(self) -> None:
        """Called by the batcher after each message and each wait (cheap periodic work)."""
        ...

    def idle(self, final: bool) -> None:
        """Called by the committer between batches, and once with final=True at the end."""
        ...


@dataclass
class _Pending(Generic[BatchT]):
    """A batch with the messages to acknowledge once it is committed."""

    batch: BatchT
    started: float  # monotonic arrival of its first message
    opened: float  # monotonic time the batcher opened it (for the flush deadline)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (mid, qos), arrival order


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer batches: in-flight window, flush interval, messages per batch."""

    client_id: str
    subscriptions: Sequence[str]
    receive_maximum: int = 1000
    flush_interval_s: float = 0.2
    max_messages: int = 0  # 0: half the in-flight window, so acks flow before it fills
    name: str = "consumer"


class AckingConsumer(Generic[BatchT]):
    """Subscribe with a persistent session, batch, commit, acknowledge; stop cleanly."""

    def __init__(self, settings: Settings, options: ConsumerOptions,
                 handler: BatchHandler[BatchT], *,
                 mqtt_factory: Callable[..., MqttClient] = MqttClient) -> None:
        self.settings = settings
        self.options = options
        self._handler = handler
        self._mqtt_factory = mqtt_factory
        self._mqtt: MqttClient | None = None
        # +1 so the end-of-stream marker always fits behind a full in-flight window.
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=options.receive_maximum + 1)
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._max_messages = options.max_messages or max(1, options.receive_maximum // 2)
        self.stopping = threading.Event()  # a stop was asked for: take no more messages
        self.aborted = threading.Event()  # a hard stop: give up on batches not yet durable
        self._stopped = threading.Event()
        self.committer_done = threading.Event()  # set when the committer thread has ended
        self._threads: list[threading.Thread] = []
        self.enqueued = 0  # messages handed to the batcher (paho thread)
        self.settled = 0  # messages acknowledged (committer thread)
        self.last_message = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads, connect, subscribe; on MqttError stop the threads and re-raise."""
        name = self.options.name
        self._threads = [
            threading.Thread(target=self._batch_loop, name=f"{name}-batcher", daemon=True),
            threading.Thread(target=self._commit_loop, name=f"{name}-committer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._mqtt = self._mqtt_factory(
            self.settings, self.options.client_id, persistent_session=True, manual_ack=True,
            on_message=self._on_message, receive_maximum=self.options.receive_maximum,
        )
        try:
            self._mqtt.connect()
            for topic in self.options.subscriptions:
                self._mqtt.subscribe(topic, qos=1)
        except MqttError:
            self.stopping.set()
            self._inbox.put(_STOP)
            for thread in self._threads:
                thread.join(timeout=10)
            self._mqtt.disconnect()
            raise
        self.last_message = time.monotonic()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish on the consumer's connection without waiting; False when it could not.

        For what a handler sends after a commit (the collector's confirmations to APs): paho
        sends it from its own thread; a message that cannot be queued is logged, not raised.
        """
        mqtt = self._mqtt
        if mqtt is None:
            return False
        try:
            mqtt.publish(topic, payload, qos=qos, wait=False)
        except MqttError as error:
            LOGGER.warning("%s could not publish to %s: %s", self.options.name, topic, error)
            return False
        return True

    def queue_size(self) -> int:
        """Messages waiting in the inbox."""
        return self._inbox.qsize()

    def is_idle(self) -> bool:
        """True when every message received has been acknowledged."""
        return self.enqueued == self.settled

    def request_stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler); ``stop`` carries it out."""
        self.stopping.set()

    def abort(self) -> None:
        """Stop without waiting for batches that cannot be committed (left unacknowledged)."""
        self.aborted.set()
        self.stopping.set()

    def stop(self) -> None:
        """Commit and acknowledge what was received, then disconnect."""
        if self._stopped.is_set():
            return
        self.stopping.set()
        self._put(self._inbox, _STOP)
        for thread in self._threads:
            thread.join()
        if self._mqtt is not None:
            try:
                self._mqtt.wait_until_published(timeout=10.0)  # the last acks are on the wire
            except MqttError:
                LOGGER.warning("some acknowledgements were not sent; the broker will redeliver")
            self._mqtt.disconnect()
        self._stopped.set()

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        """Put on a bounded queue, giving up only on a hard stop."""
        while True:
            try:
                target.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.aborted.is_set():
                    return

    # --- paho's network thread ----------------------------------------------------------------

    def _on_message(self, message: ReceivedMessage) -> None:
        """Hand the message over; after a stop request, leave it unacknowledged."""
        now = time.monotonic()
        while not self.stopping.is_set():
            try:
                # The in-flight window makes a full queue rare; blocking then is back-pressure.
                self._inbox.put((message, now), timeout=0.5)
            except queue.Full:
                continue
            self.enqueued += 1
            self.last_message = now
            return
        # Not acknowledged: the broker redelivers it to this session (or the share group).

    # --- batcher thread -----------------------------------------------------------------------

    def _guarded(self, role: str, body: Callable[[], None]) -> bool:
        """Run a thread's loop; a bug in it stops the consumer instead of stalling it silently.

        False when it failed (the consumer is then aborted).
        """
        try:
            body()
        except Exception:
            LOGGER.exception("%s %s failed: stopping (unacknowledged messages are redelivered)",
                             self.options.name, role)
            self.abort()
            return False
        return True

    def _batch_loop(self) -> None:
        """The batcher thread; after a failure it still tells the committer to end."""
        if not self._guarded("batcher", self._batch_messages):
            self._put(self._outbox, _STOP)

    def _batch_messages(self) -> None:
        """Batch messages; hand a batch to the committer when full or old enough."""
        handler = self._handler
        flush_s = self.options.flush_interval_s
        pending: _Pending[BatchT] | None = None
        while True:
            timeout = 0.5
            if pending is not None:
                timeout = max(0.0, pending.opened + flush_s - time.monotonic())
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                if pending is not None:
                    self._put(self._outbox, pending)
                self._put(self._outbox, _STOP)
                return
            if item is not None:
                message, arrived = item
                if pending is None:
                    # The deadline runs from now, not from arrival: a backlog's messages all
                    # arrived long ago, and flushing each alone would make one write per message.
                    pending = _Pending(handler.open_batch(), arrived, time.monotonic())
                pending.acks.append((message.mid, message.qos))
                handler.add(pending.batch, message)
            if pending is not None and (
                len(pending.acks) >= self._max_messages
                or handler.is_full(pending.batch, len(pending.acks))
                or time.monotonic() >= pending.opened + flush_s
            ):
                self._put(self._outbox, pending)
                pending = None
            handler.tick()

    # --- committer thread ---------------------------------------------------------------------

    def _commit_loop(self) -> None:
        """The committer thread; whatever happens, it says when it has ended."""
        try:
            self._guarded("committer", self._commit_batches)
        finally:
            self.committer_done.set()

    def _commit_batches(self) -> None:
        """Commit batches, acknowledge them in arrival order, idle in between."""
        handler = self._handler
        while True:
            try:
                item = self._outbox.get(timeout=0.5)
            except queue.Empty:
                item = None
            if item is _STOP:
                handler.idle(final=True)
                return
            if item is not None:
                try:
                    handler.commit(item.batch)
                except Abandon:
                    LOGGER.error("%s stopped before a batch was committed; it stays "
                                 "unacknowledged", self.options.name)
                    self.abort()  # nothing later may be acknowledged ahead of it
                    return
                mqtt = self._mqtt
                if mqtt is not None:
                    for mid, qos in item.acks:
                        mqtt.ack(mid, qos)
                self.settled += len(item.acks)
                handler.committed(item.batch, len(item.acks), item.started)
            handler.idle(final=False)
