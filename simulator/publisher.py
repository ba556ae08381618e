"""Send a recorded event stream to the broker, as the access points would.

Each line of ``events.jsonl`` becomes one QoS 1 message on ``{p}/v1/ap/{ap_id}/events``
(``census.channels.events_topic``), through ``census.mqtt.MqttClient``. Lines the simulator wrote
are sliced, not parsed: the payload bytes go out exactly as recorded. Other well-formed lines
are parsed and re-encoded compactly; a malformed line is logged with its line number and
skipped, and the rest of the stream still goes out.

Pacing: by default as fast as the broker acknowledges (accelerated time, timestamps in the
past); ``rate`` plays the stream at that many simulated seconds per real second; ``live``
sends each message when the wall clock reaches its timestamp (for a run that starts today).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from census.channels import AP_ID_CHARS, events_topic, is_ap_id, stored_topic
from census.events import (
    MAX_BATCH_EVENTS,
    MAX_PAYLOAD_BYTES,
    decode_confirmation,
    encode_envelope,
)
from census.mqtt import MqttClient, MqttError, ReceivedMessage
from census.settings import Settings

LOGGER = logging.getLogger(__name__)

# The simulator's own lines: sliced without parsing (the common, fast path).
_LINE = re.compile(rb'^\{"ap":"([' + AP_ID_CHARS.encode() + rb']{1,64})","payload":(\[.*\])\}\s*$',
                   re.DOTALL)
_FIRST_TS = re.compile(rb'"ts":(-?[0-9.eE+-]+)')
# At most this many messages wait unacknowledged (paho's own queue is unbounded, see
# census.mqtt): what keeps a multi-gigabyte stream from piling up in memory. Unpaced streams
# go through MqttClient.publish_many (the loop driven from this thread, ~2x faster); paced
# ones through the background loop, waiting for an acknowledgement every ACK_WINDOW messages.
# Measured here: 5,000 queued with 1,000 in flight beat 500/500 and 10,000/5,000.
ACK_WINDOW = 5000
MAX_INFLIGHT = 1000


class StreamLineError(ValueError):
    """A line of an events file is not a message the publisher can send."""


def parse_line(raw: bytes) -> tuple[str, bytes, float | None]:
    """(AP id, payload bytes, first event time or None) of one events.jsonl line."""
    match = _LINE.match(raw)
    # A line that looks like ours but may hold too many events gets the full check below.
    if match and match.group(2).count(b"},{") < MAX_BATCH_EVENTS:
        ap_id, payload = match.group(1).decode("ascii"), match.group(2)
    else:
        try:
            record = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as error:
            raise StreamLineError(f"not JSON: {error}") from None
        if not isinstance(record, dict) or set(record) != {"ap", "payload"}:
            raise StreamLineError('must be an object with exactly the keys "ap" and "payload"')
        ap_id = record["ap"]
        if not isinstance(ap_id, str) or not is_ap_id(ap_id):
            raise StreamLineError(f"ap {ap_id!r} is not an AP id")
        body = record["payload"]
        if isinstance(body, list) and len(body) > MAX_BATCH_EVENTS:
            raise StreamLineError(f"payload has {len(body)} events, over {MAX_BATCH_EVENTS}")
        if not isinstance(body, list | dict):
            raise StreamLineError("payload must be an event object or an array of them")
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise StreamLineError(f"payload is {len(payload)} bytes, over {MAX_PAYLOAD_BYTES}")
    found = _FIRST_TS.search(payload)
    ts = float(found.group(1)) if found else None
    return ap_id, payload, ts


def read_stream(path: Path) -> Iterator[tuple[int, str, bytes, float | None]]:
    """(line number, AP id, payload, time) of every sendable line; bad lines are logged."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                ap_id, payload, ts = parse_line(raw)
            except StreamLineError as error:
                LOGGER.error("%s: line %d skipped: %s", path, number, error)
                continue
            yield number, ap_id, payload, ts


def count_lines(path: Path) -> int:
    """Number of lines in a file (for a progress bar)."""
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def publish(settings: Settings, events_path: Path, *, rate: float = 0.0, live: bool = False,
            client_id: str = "", progress: Callable[[int], None] | None = None,
            clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> int:
    """Publish a recorded stream with QoS 1; returns the number of messages sent."""
    if rate < 0:
        raise ValueError(f"rate {rate!r} must be 0 (unpaced) or a positive speed-up")
    prefix = settings.mqtt_topic_prefix
    client = MqttClient(settings, client_id or f"census-sim-{uuid.uuid4().hex[:8]}",
                        max_inflight=MAX_INFLIGHT)
    client.connect()
    topics: dict[str, str] = {}

    def topic_for(ap_id: str) -> str:
        """The events topic of an AP (cached: a district has tens of thousands)."""
        topic = topics.get(ap_id)
        if topic is None:
            topic = topics[ap_id] = events_topic(prefix, ap_id)
        return topic

    try:
        if not live and rate == 0:
            sent = client.publish_many(_unpaced(read_stream(events_path), topic_for, progress),
                                       qos=1, max_queued=ACK_WINDOW)
        else:
            sent = _paced(client, read_stream(events_path), topic_for, rate, live, clock, sleep,
                          progress)
        if progress:
            progress(sent % 1000)
    finally:
        client.disconnect()
    LOGGER.info("published %d messages from %s", sent, events_path)
    return sent


def _unpaced(stream: Iterator[tuple[int, str, bytes, float | None]],
             topic_for: Callable[[str], str],
             progress: Callable[[int], None] | None) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) pairs for MqttClient.publish_many, reporting progress per thousand."""
    count = 0
    for _number, ap_id, payload, _ts in stream:
        yield topic_for(ap_id), payload
        count += 1
        if progress and count % 1000 == 0:
            progress(1000)


def _paced(client: MqttClient, stream: Iterator[tuple[int, str, bytes, float | None]],
           topic_for: Callable[[str], str], rate: float, live: bool,
           clock: Callable[[], float], sleep: Callable[[float], None],
           progress: Callable[[int], None] | None) -> int:
    """Send each message when its time comes (live) or at ``rate`` x simulated time."""
    sent = 0
    first_stream_ts: float | None = None
    first_wall = clock()
    last_ts: float | None = None
    for _number, ap_id, payload, ts in stream:
        # An empty snapshot carries no time: it goes out with the message before it.
        ts = ts if ts is not None else last_ts
        last_ts = ts
        if ts is not None:
            if first_stream_ts is None:
                first_stream_ts = ts
            due = ts if live else first_wall + (ts - first_stream_ts) / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        sent += 1
        # The background network loop keeps the connection alive while this thread sleeps.
        client.publish(topic_for(ap_id), payload, qos=1, wait=sent % ACK_WINDOW == 0)
        if progress and sent % 1000 == 0:
            progress(1000)
    client.wait_until_published(timeout=120.0)
    return sent


class ConfirmedPublisher:
    """An AP's sender with end-to-end acknowledgement (contracts section 2a).

    Every message goes out in an envelope with a message id (``{boot}-{sequence}``) and is kept
    until the collector confirms it on the AP's ``stored`` topic; one still unconfirmed
    ``resend_s`` after it was last sent is sent again. A PUBACK alone deletes nothing: the
    broker may lose what it acknowledged if it is killed before its next save.
    """

    def __init__(self, settings: Settings, client_id: str = "", resend_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._resend_s = resend_s
        self._clock = clock
        self._boot = uuid.uuid4().hex[:12]  # ids stay unique across restarts of the sender
        self._sequence = 0
        self._lock = threading.Lock()
        # message id -> (topic, envelope, when last sent)
        self._pending: dict[str, tuple[str, bytes, float]] = {}
        self._watched: set[str] = set()
        self.confirmed = 0
        self.resent = 0
        self._client = MqttClient(settings, client_id or f"census-sim-{uuid.uuid4().hex[:8]}",
                                  on_message=self._on_confirmation)

    def connect(self) -> None:
        """Connect to the broker (paho reconnects and re-subscribes by itself after that)."""
        self._client.connect()

    def disconnect(self) -> None:
        """Disconnect; what is unconfirmed is forgotten (an AP keeps it in its spool)."""
        self._client.disconnect()

    def is_connected(self) -> bool:
        """True while connected to the broker."""
        return self._client.is_connected()

    @property
    def unconfirmed(self) -> int:
        """Messages sent and not yet confirmed."""
        with self._lock:
            return len(self._pending)

    def unconfirmed_ids(self) -> set[str]:
        """The ids of the messages sent and not yet confirmed."""
        with self._lock:
            return set(self._pending)

    def publish(self, ap_id: str, events_payload: bytes, wait: bool = True,
                timeout: float = 30.0) -> tuple[str, bool]:
        """Send one message for ap_id and keep it until confirmed: (its id, PUBACKed in time).

        A message not acknowledged in time (broker away) is kept all the same: paho sends it
        on reconnection, and ``resend_due`` again if it stays unconfirmed.
        """
        prefix = self._settings.mqtt_topic_prefix
        if ap_id not in self._watched:
            self._client.subscribe(stored_topic(prefix, ap_id), qos=1)
            self._watched.add(ap_id)
        with self._lock:
            self._sequence += 1
            message_id = f"{self._boot}-{self._sequence}"
            topic = events_topic(prefix, ap_id)
            envelope = encode_envelope(message_id, events_payload)
            self._pending[message_id] = (topic, envelope, self._clock())
        try:
            self._client.publish(topic, envelope, qos=1, wait=wait, timeout=timeout)
        except MqttError as error:
            LOGGER.debug("publish to %s not acknowledged: %s", topic, error)
            return message_id, False
        return message_id, True

    def resend_due(self, everything: bool = False) -> int:
        """Send again every message unconfirmed for resend_s (every unconfirmed one, with
        everything); return how many were sent."""
        now = self._clock()
        with self._lock:
            due = [(message_id, topic, envelope)
                   for message_id, (topic, envelope, sent) in self._pending.items()
                   if everything or now - sent >= self._resend_s]
            for message_id, topic, envelope in due:
                self._pending[message_id] = (topic, envelope, now)
        for _message_id, topic, envelope in due:
            try:
                self._client.publish(topic, envelope, qos=1, wait=False)
            except MqttError as error:  # not connected: the next round tries again
                LOGGER.debug("re-send to %s failed: %s", topic, error)
        self.resent += len(due)
        return len(due)

    def wait_confirmed(self, timeout: float, poll_s: float = 0.1) -> bool:
        """Re-send as due until every message is confirmed; False if some are not by timeout."""
        deadline = self._clock() + timeout
        while self.unconfirmed:
            if self._clock() >= deadline:
                return False
            self.resend_due()
            time.sleep(poll_s)
        return True

    def _on_confirmation(self, message: ReceivedMessage) -> None:
        """Forget the messages a confirmation names (paho's thread)."""
        try:
            ids = decode_confirmation(message.payload)
        except ValueError as error:
            LOGGER.warning("ignored a confirmation on %s: %s", message.topic, error)
            return
        with self._lock:
            for message_id in ids:
                if self._pending.pop(message_id, None) is not None:
                    self.confirmed += 1
