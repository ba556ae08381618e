"""The collector: MQTT events -> validated, pseudonymised points in InfluxDB and Redis.

Built on the shared acknowledge-after-commit consumer (``census.consumer``): its batcher
thread parses, its committer thread writes, and a third thread keeps Redis presence::

    paho network loop --(messages)--> parser --(batches)--> writer --> InfluxDB | spool
      (census.mqtt)                   (pure parse,         (store, Redis,     acks to broker
                                       lines, presence)     dead letters)

A message is acknowledged to the broker only after its points are durable: written to
InfluxDB, or to the on-disk spool while InfluxDB is unreachable. Until then the broker keeps it
in the collector's persistent session and redelivers it after a crash; redelivered points land
on the same series and timestamp and overwrite themselves (timeseries.presence). The broker's
in-flight window (MQTT 5 Receive Maximum) bounds how much the collector holds, so memory stays
flat whatever the backlog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from census.channels import events_subscription, stored_topic
from census.consumer import Abandon, AckingConsumer, ConsumerOptions
from census.events import MAX_CONFIRMED_IDS, encode_confirmation
from census.mqtt import MqttClient, MqttError, ReceivedMessage
from census.settings import Settings
from collector.apmap import RegistryApMap
from collector.const import (
    DEADLETTER_SAMPLES_PER_BATCH,
    PRESENCE_TTL_S,
    REASON_BAD_FIELD,
    REASON_STORE_REJECTED,
)
from collector.metrics import CollectorMetrics
from collector.parser import ApLocation, EventParser, Pseudonymizer, dead_letter_payload
from collector.redis_state import DeadLetter, PresenceBuffer, PresenceUpdate, RedisState
from collector.spool import Spool
from registry.db import make_engine, make_session_factory
from timeseries import PermanentStoreError, TimeSeriesStore, TransientStoreError, open_store
from timeseries.presence import LineBuilder, presence_points

LOGGER = logging.getLogger(__name__)


class ApLocator(Protocol):
    """Where the parser looks APs up (collector.apmap.RegistryApMap provides it)."""

    @property
    def size(self) -> int:
        """How many APs are known."""
        ...

    def get(self, ap_id: str) -> ApLocation | None:
        """The AP's location, or None when unknown."""
        ...

    def refresh(self, force_check: bool = False) -> bool:
        """Reload when the source changed; True if it did."""
        ...


class CollectorError(RuntimeError):
    """The collector cannot start; the message says what to fix."""


@dataclass(frozen=True)
class CollectorOptions:
    """How one collector process runs (defaults come from the settings)."""

    client_id: str
    share_group: str
    spool_dir: Path
    receive_maximum: int = 1000
    flush_interval_s: float = 0.2
    batch_size: int = 5000  # points per InfluxDB write request
    registry_poll_s: float = 10.0
    exit_when_idle_s: float | None = None
    metrics_port: int = 0
    store_timeout_s: float = 10.0
    store_retry_s: float = 2.0  # how often InfluxDB is tried again while it is down

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> CollectorOptions:
        """Options from the settings, with command-line overrides."""
        values: dict[str, Any] = {
            "client_id": settings.collector_client_id,
            "share_group": settings.collector_share_group,
            "spool_dir": (
                Path(settings.collector_spool_dir)
                if settings.collector_spool_dir
                else settings.var_dir / "spool" / "collector"
            ),
            "receive_maximum": settings.collector_receive_maximum,
            "flush_interval_s": settings.collector_flush_ms / 1000.0,
            "batch_size": settings.influx_batch_size,
            "registry_poll_s": float(settings.collector_registry_poll_s),
            "metrics_port": settings.metrics_port,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass
class CollectorSummary:
    """What a collector did, for the exit summary and the tests."""

    messages: int = 0
    events_received: int = 0
    # Presence points (the per-report ap_heartbeat points are not counted here).
    written: int = 0  # points that reached InfluxDB (directly or from the spool)
    spooled: int = 0  # points that went to the spool
    dead_lettered: Counter[str] = field(default_factory=Counter)
    redis_errors: int = 0
    spool_depth: int = 0
    first_message_at: float | None = None  # monotonic
    last_ack_at: float | None = None  # monotonic
    cpu_at_first_message: float = 0.0  # process CPU seconds (time.process_time)
    cpu_at_last_ack: float = 0.0

    @property
    def active_seconds(self) -> float:
        """From the first message received to the last acknowledgement."""
        if self.first_message_at is None or self.last_ack_at is None:
            return 0.0
        return max(self.last_ack_at - self.first_message_at, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        active = self.active_seconds
        return {
            "messages": self.messages,
            "events_received": self.events_received,
            "written": self.written,
            "spooled": self.spooled,
            "dead_lettered": dict(sorted(self.dead_lettered.items())),
            "redis_errors": self.redis_errors,
            "spool_depth": self.spool_depth,
            "active_seconds": round(active, 3),
            "events_per_second": round(self.events_received / active, 1) if active else 0.0,
            # CPU of the whole process (all threads) from first message to last ack.
            "active_cpu_seconds": round(max(self.cpu_at_last_ack - self.cpu_at_first_message,
                                            0.0), 3),
        }


@dataclass
class _Batch:
    """Everything one flush writes (the consumer keeps the messages to acknowledge)."""

    lines: list[str] = field(default_factory=list)
    presence: PresenceUpdate = field(default_factory=PresenceUpdate)
    deadletters: list[DeadLetter] = field(default_factory=list)
    samples: Counter[str] = field(default_factory=Counter)
    # AP id -> ids of its confirmed envelopes in this batch, confirmed once the batch is durable.
    confirm: dict[str, list[str]] = field(default_factory=dict)


class Collector:
    """One collector: subscribe, parse, write, acknowledge; stop cleanly on request."""

    def __init__(
        self,
        settings: Settings,
        options: CollectorOptions,
        *,
        store: TimeSeriesStore | None = None,
        redis_client: redis.Redis | None = None,
        ap_map: ApLocator | None = None,
        mqtt_factory: Callable[..., MqttClient] = MqttClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.options = options
        self.summary = CollectorSummary()
        self.metrics = CollectorMetrics()
        self._clock = clock
        self._store = store or open_store(settings, timeout_s=options.store_timeout_s)
        self._redis = redis_client or redis.Redis.from_url(
            settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        if ap_map is None:
            engine = make_engine(settings.database_url)
            ap_map = RegistryApMap(make_session_factory(engine), poll_s=options.registry_poll_s)
        self._ap_map = ap_map
        self._pseudonymizer = Pseudonymizer(settings.pseudonym_key)
        self._parser = EventParser(
            settings.mqtt_topic_prefix, self._pseudonymizer, ap_map.get, settings.retention_days
        )
        self._lines = LineBuilder()
        self._presence_keys: dict[ApLocation, tuple[str, ...]] = {}  # Redis keys per AP place
        self._state = RedisState(
            self._redis, settings.redis_key_prefix, settings.retention_days,
            fallback_file=options.spool_dir / "deadletter.jsonl",
        )
        self._spool = Spool(options.spool_dir / "batches")
        self._rejected_dir = options.spool_dir / "rejected"
        self.metrics.spool_depth.set(self._spool.depth)
        self._consumer: AckingConsumer[_Batch] = AckingConsumer(
            settings,
            ConsumerOptions(client_id=options.client_id, subscriptions=(self.subscription,),
                            receive_maximum=options.receive_maximum,
                            flush_interval_s=options.flush_interval_s, name="collector"),
            self, mqtt_factory=mqtt_factory)
        self._presence = PresenceBuffer()
        self.metrics.track_queue(self._consumer.queue_size)
        self._presence_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._store_down_until = 0.0
        self._database_ready = False
        self._metrics_server: Any = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def subscription(self) -> str:
        """The topic filter this collector subscribes to."""
        return events_subscription(self.settings.mqtt_topic_prefix,
                                   self.options.share_group or None)

    def start(self) -> None:
        """Load the AP map, start the threads, connect and subscribe."""
        self._ap_map.refresh(force_check=True)
        self.metrics.known_aps.set(self._ap_map.size)
        if self._ap_map.size == 0:
            LOGGER.warning("the registry has no access points: every event will be unknown_ap")
        try:
            self._ensure_database()
        except PermanentStoreError as error:
            raise CollectorError(f"InfluxDB refused to set up the database: {error}") from None
        if self.options.metrics_port:
            try:
                self._metrics_server = self.metrics.serve(self.options.metrics_port)
            except OSError as error:
                raise CollectorError(
                    f"cannot serve metrics on 127.0.0.1:{self.options.metrics_port}: {error} "
                    "(choose another --metrics-port / WIFI_CENSUS_METRICS_PORT; 0 turns it off)"
                ) from None
        self._presence_thread = threading.Thread(target=self._presence_loop,
                                                 name="collector-presence", daemon=True)
        self._presence_thread.start()
        try:
            self._consumer.start()
        except MqttError as error:
            self._presence_thread.join(timeout=10)
            raise CollectorError(str(error)) from None
        LOGGER.info(
            "collector %s subscribed to %s (%d APs known, spool %s holds %d points)",
            self.options.client_id, self.subscription, self._ap_map.size,
            self._spool.directory, self._spool.depth,
        )

    def run(self, progress_every_s: float = 10.0) -> CollectorSummary:
        """Start, work until stopped (or idle, when asked), then shut down cleanly."""
        self.start()
        next_progress = time.monotonic() + progress_every_s
        last_events = 0
        try:
            while not self._consumer.stopping.wait(0.1):
                now = time.monotonic()
                if now >= next_progress:
                    received = self.summary.events_received
                    LOGGER.info(
                        "collector progress: events=%d rate=%.0f/s written=%d spooled=%d "
                        "spool_depth=%d dead_lettered=%d queue=%d",
                        received, (received - last_events) / progress_every_s,
                        self.summary.written, self.summary.spooled, self._spool.depth,
                        sum(self.summary.dead_lettered.values()), self._consumer.queue_size(),
                    )
                    last_events = received
                    next_progress = now + progress_every_s
                idle = self.options.exit_when_idle_s
                if (idle is not None and self.is_idle()
                        and now - self._consumer.last_message >= idle):
                    LOGGER.info("no message for %.1f s: stopping", idle)
                    break
        finally:
            self.shutdown()
        return self.summary

    def is_idle(self) -> bool:
        """True when every message received is acknowledged and the spool is drained.

        While InfluxDB is down the spool cannot drain; that counts as idle too (the exit
        summary reports the spool depth, and the next run drains it).
        """
        if not self._consumer.is_idle():
            return False
        return self._spool.files == 0 or time.monotonic() < self._store_down_until

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._consumer.stopping.is_set()

    def request_stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._consumer.request_stop()

    def abort(self) -> None:
        """Stop without waiting for batches that cannot be stored (they stay unacknowledged)."""
        self._consumer.abort()

    def shutdown(self) -> None:
        """Flush and acknowledge what was received, then disconnect."""
        if self._stopped.is_set():
            return
        self._consumer.stop()
        if self._presence_thread is not None:
            self._presence_thread.join()
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
            server.server_close()
        self.summary.spool_depth = self._spool.depth
        self._stopped.set()
        LOGGER.info("collector stopped: %s", self.summary.as_dict())

    # --- the consumer's batcher thread: parse ---------------------------------------------------

    def open_batch(self) -> _Batch:
        """A new, empty batch."""
        return _Batch()

    def is_full(self, batch: _Batch, messages: int) -> bool:
        """A batch is written once it holds a write request's worth of points."""
        return len(batch.lines) >= self.options.batch_size

    def tick(self) -> None:
        """Reload the AP map when the registry changed."""
        if self._ap_map.refresh():
            self.metrics.known_aps.set(self._ap_map.size)
            self.metrics.registry_reloads.inc()

    def add(self, batch: _Batch, message: ReceivedMessage) -> None:
        """Parse one message into the batch; a bug here dead-letters, never stops the loop."""
        summary = self.summary
        if summary.first_message_at is None:
            summary.first_message_at = time.monotonic()
            summary.cpu_at_first_message = time.process_time()
        now = self._clock()
        summary.messages += 1
        self.metrics.messages_received.inc()
        try:
            parsed = self._parser.parse(message.topic, message.payload, now)
            if parsed.message_id is not None and parsed.ap_id is not None:
                # Stored or dead-lettered, it is handled either way: confirmed after the commit.
                batch.confirm.setdefault(parsed.ap_id, []).append(parsed.message_id)
            lines = []
            if parsed.location is not None:
                lines = self._lines.lines(parsed.location, parsed.events)
                # One heartbeat per report, empty or not: "AP silent" apart from "nobody home".
                lines.append(self._lines.heartbeat(parsed.location, parsed.events, now))
        except Exception as error:  # a parser bug must not stall the pipeline
            LOGGER.exception("parser failed on a message from %s", message.topic)
            summary.events_received += 1
            self.metrics.events_received.inc()
            self._reject(batch, REASON_BAD_FIELD, f"parser error: {error}"[:200], message.topic,
                         message.payload, 1, now)
            return
        batch.lines += lines
        summary.events_received += parsed.total
        self.metrics.events_received.inc(parsed.total)
        location = parsed.location
        if parsed.events and location is not None:
            keys = self._presence_keys.get(location)
            if keys is None:
                ap_key = self._state.ap_key(location.ap_id)
                keys = (ap_key, self._state.unit_key(location.unit)) if location.unit else (ap_key,)
                if len(self._presence_keys) >= 100_000:
                    self._presence_keys.clear()
                self._presence_keys[location] = keys
            batch.presence.add_events(keys, parsed.events, now - PRESENCE_TTL_S)
        for reject in parsed.rejects:
            self._reject(batch, reject.reason, reject.detail, message.topic, reject.sample,
                         reject.count, now)

    def _reject(self, batch: _Batch, reason: str, detail: str, topic: str, sample: Any,
                count: int, now: float) -> None:
        """Count a rejection and keep a (redacted) sample of it."""
        self.summary.dead_lettered[reason] += count
        self.metrics.dead_lettered.labels(reason=reason).inc(count)
        if batch.samples[reason] < DEADLETTER_SAMPLES_PER_BATCH:
            batch.samples[reason] += 1
            payload = dead_letter_payload(self._pseudonymizer, sample)
            batch.deadletters.append(DeadLetter(reason, detail, topic, payload, now))

    # --- the consumer's committer thread: write -------------------------------------------------

    def commit(self, batch: _Batch) -> None:
        """Store a batch durably (InfluxDB or the spool), then hand presence and dead letters on."""
        for start in range(0, len(batch.lines), self.options.batch_size):
            self._persist(batch.lines[start : start + self.options.batch_size])
        # Durable now. Confirmed before the broker's acks go out (on the same connection, so
        # in this order): killed in between, the broker redelivers, the points are written
        # again and confirmed again. The other way round, a kill would leave messages acked
        # and never confirmed, re-sent only after the AP's timeout.
        self._confirm(batch)
        self._presence.put(batch.presence)
        if batch.deadletters and not self._state.write_deadletters(batch.deadletters):
            self.summary.redis_errors += 1
            self.metrics.redis_errors.inc()

    def committed(self, batch: _Batch, messages: int, started: float) -> None:
        """The batch's messages are acknowledged: record when, and the latency."""
        now = time.monotonic()
        self.summary.last_ack_at = now
        self.summary.cpu_at_last_ack = time.process_time()
        self.metrics.batch_latency.observe(now - started)

    def _confirm(self, batch: _Batch) -> None:
        """Tell each AP which of its messages are stored: one QoS 1 message per AP per batch.

        Only ever called once the batch's points are in InfluxDB or fsynced in the spool (or
        refused for good and kept on disk). Not waited for: a confirmation lost on the way only
        makes the AP re-send, and a re-sent event overwrites its own point.
        """
        prefix = self.settings.mqtt_topic_prefix
        for ap_id, ids in batch.confirm.items():
            for start in range(0, len(ids), MAX_CONFIRMED_IDS):
                self._consumer.publish(stored_topic(prefix, ap_id),
                                       encode_confirmation(ids[start : start + MAX_CONFIRMED_IDS]))
        if batch.confirm:
            self.metrics.confirmations.inc(len(batch.confirm))

    def idle(self, final: bool) -> None:
        """Drain the spool when InfluxDB is up: a few files between batches, all at the end."""
        self._drain_spool(max_files=None if final else 4)

    # --- presence thread ----------------------------------------------------------------------

    def _presence_loop(self) -> None:
        """Write live presence to Redis, off the acknowledgement path, until the writer ends."""
        while True:
            finished = self._consumer.committer_done.is_set()  # read before take: none missed
            update = self._presence.take(timeout=0.2)
            if update is not None and not self._state.apply_presence(update):
                self.summary.redis_errors += 1
                self.metrics.redis_errors.inc()
            if finished and update is None:
                return

    # --- writer thread, storage -----------------------------------------------------------------

    def _persist(self, lines: list[str]) -> None:
        """Write lines to InfluxDB, or spool them while it is down; raise Abandon only on abort."""
        if time.monotonic() >= self._store_down_until and self._write(lines):
            return
        points = presence_points(lines)
        while True:
            try:
                self._spool.append(lines, points)
            except OSError as error:
                # Neither store takes the batch: hold it (unacknowledged) and keep trying.
                LOGGER.error("spool %s not writable: %s; retrying", self._spool.directory, error)
                if self._consumer.aborted.wait(1.0):
                    raise Abandon from None
                if self._write(lines):
                    return
                continue
            self.summary.spooled += points
            self.metrics.events_spooled.inc(points)
            self.metrics.spool_depth.set(self._spool.depth)
            return

    def _write(self, lines: list[str]) -> bool:
        """One write attempt; True when InfluxDB has the lines (or refused them for good)."""
        started = time.monotonic()
        if not self._database_ready and not self._ensure_database():
            return False
        try:
            self._store.write_lines(lines)
        except TransientStoreError as error:
            if time.monotonic() >= self._store_down_until:
                LOGGER.warning("InfluxDB unavailable, spooling to %s: %s",
                               self._spool.directory, error)
            self._store_down_until = time.monotonic() + self.options.store_retry_s
            return False
        except PermanentStoreError as error:
            self._keep_rejected(lines, str(error))
            return True
        self.metrics.write_seconds.observe(time.monotonic() - started)
        points = presence_points(lines)
        self.summary.written += points
        self.metrics.events_written.inc(points)
        return True

    def _ensure_database(self) -> bool:
        """Create the database and retention policy; False while InfluxDB is unreachable."""
        try:
            self._store.ensure_database(self.settings.influx_policy_days)
        except TransientStoreError as error:
            LOGGER.warning("InfluxDB unreachable, cannot check the database yet: %s", error)
            self._store_down_until = time.monotonic() + self.options.store_retry_s
            return False
        self._database_ready = True
        return True

    def _keep_rejected(self, lines: list[str], error: str) -> None:
        """InfluxDB refused lines the collector built: keep them on disk and count them."""
        LOGGER.error("InfluxDB refused %d points (kept in %s): %s",
                     len(lines), self._rejected_dir, error[:500])
        points = presence_points(lines)
        self.summary.dead_lettered[REASON_STORE_REJECTED] += points
        self.metrics.dead_lettered.labels(reason=REASON_STORE_REJECTED).inc(points)
        try:
            Spool(self._rejected_dir).append(lines)
        except OSError as problem:
            LOGGER.error("cannot keep refused points in %s: %s", self._rejected_dir, problem)

    def _drain_spool(self, max_files: int | None) -> None:
        """Write spooled batches to InfluxDB, oldest first, while it takes them."""
        drained = 0
        while self._spool.files and (max_files is None or drained < max_files):
            if time.monotonic() < self._store_down_until:
                return
            oldest = self._spool.oldest()
            if oldest is None:
                return
            if not self._write(Spool.read(oldest)):
                return
            self._spool.remove(oldest)
            self.metrics.spool_depth.set(self._spool.depth)
            drained += 1
            if not self._spool.files:
                LOGGER.info("spool drained")
