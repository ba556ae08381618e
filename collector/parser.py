"""The pure parser: ``(topic, payload) -> accepted events and rejects`` (contracts, section 2).

Nothing here touches the network, a database or the clock: the caller passes the current
time, the AP lookup and the pseudonymiser, so every rule of the contract is a unit test.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal, NamedTuple

import msgspec

from census.channels import ap_topic_head, is_ap_id
from census.events import (
    CONTRACT_VERSION,
    EVENT_TYPES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_NESTING,
    MAX_PAYLOAD_BYTES,
    MAX_SSID_BYTES,
    RSSI_RANGE,
    is_message_id,
)
from census.privacy import InvalidMacError, is_locally_administered, pseudonymize_mac
from collector.const import (
    DEADLETTER_PAYLOAD_BYTES,
    MAX_FUTURE_S,
    REASON_AP_MISMATCH,
    REASON_BAD_FIELD,
    REASON_BAD_JSON,
    REASON_BAD_TIMESTAMP,
    REASON_BAD_TOPIC,
    REASON_BAD_VERSION,
    REASON_OVERSIZED,
    REASON_UNKNOWN_AP,
)
from timeseries.schema import ApLocation  # the tags an AP's points carry (re-exported)

_EVENT_TYPES = frozenset(EVENT_TYPES)
_RSSI_LOW, _RSSI_HIGH = RSSI_RANGE
_NEEDS_RSSI = frozenset({"snapshot", "probe"})
_MAX_GOOD_SSIDS = 10_000
# MAC-shaped text in a dead-letter sample: colon/dash separated, or 12 bare hex digits.
_MAC_IN_TEXT = re.compile(
    rb"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Fa-f])"
    rb"|(?<![0-9A-Fa-f])[0-9A-Fa-f]{12}(?![0-9A-Fa-f])"
)
# No field of the contract needs more digits; int() of a longer digit string costs quadratic
# time and Python refuses past 4,300 digits (ValueError), which would fail the whole message.
_MAX_INT_DIGITS = 20
# Nesting is measured on the text, never by decoding: both decoders recurse, and a value nested
# past the interpreter's recursion limit raises RecursionError from inside them.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Each byte's change of depth, plus one (bytes.translate needs values 0..255).
_BRACKET_STEP = bytes(2 if byte in b"[{" else 0 if byte in b"]}" else 1 for byte in range(256))
_JSON_SPACE = " \t\n\r"
_COMMA = re.compile(",")


class ParsedEvent(NamedTuple):
    """A valid event with its MAC already pseudonymised (the raw MAC is not kept).

    A NamedTuple rather than a frozen dataclass: one is built per event on the hot path, and
    a tuple is built several times faster.
    """

    type: str
    device: str
    randomized: bool
    ts: float
    rssi: int | None
    ssid: str | None


@dataclass(frozen=True, slots=True)
class Reject:
    """Why something was refused, how many events it held, and a sample for the dead letter."""

    reason: str
    detail: str
    sample: Any  # the offending event object, or the raw payload bytes
    count: int = 1


@dataclass(slots=True)
class ParsedMessage:
    """What one MQTT message turned into."""

    topic: str
    ap_id: str | None
    location: ApLocation | None
    events: list[ParsedEvent] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    # The id of a confirmed envelope (contracts section 2a): confirmed to the AP once stored.
    message_id: str | None = None

    @property
    def rejected(self) -> int:
        """How many events (or whole messages) were refused."""
        return sum(reject.count for reject in self.rejects)

    @property
    def total(self) -> int:
        """Events accepted plus events refused."""
        return len(self.events) + self.rejected


class _TooDeep(NamedTuple):
    """An element of a batch nested past MAX_EVENT_NESTING: refused without being decoded."""

    text: str


class _NestingError(ValueError):
    """A whole message nested past what one event may be."""


def _parse_int(text: str) -> int | float:
    """A JSON integer; one too long for any field becomes a float (inf past 1e308)."""
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def _depths(text: str) -> tuple[str, list[int]]:
    """The text with strings blanked out, and the nesting depth after each of its characters."""
    flat = _JSON_STRING.sub(lambda match: "_" * len(match.group()), text)
    if not flat.isascii():
        raise ValueError("a character outside a string that JSON does not allow")
    steps = flat.encode("ascii").translate(_BRACKET_STEP)
    return flat, list(accumulate(map((-1).__add__, steps)))


def _load_json(text: str) -> Any:
    """Decode JSON text; a batch element nested too deep becomes a _TooDeep, left undecoded.

    A batch is an array of events or an envelope whose ``events`` is one; either way one deep
    element is refused alone and its neighbours are decoded. Raises ValueError for text that is
    not JSON and _NestingError for a message that is one value nested too deep.
    """
    if text.count("[") + text.count("{") <= MAX_EVENT_NESTING:
        return json.loads(text, parse_int=_parse_int)  # cannot be too deep: the common case
    flat, depths = _depths(text)
    if max(depths) <= MAX_EVENT_NESTING:
        return json.loads(text, parse_int=_parse_int)
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    opener = text[start : start + 1]
    if opener not in ("[", "{"):
        raise _NestingError
    if min(depths) < 0 or 0 not in depths[start:]:
        raise ValueError("unbalanced brackets")
    end = depths.index(0, start)  # the closing bracket of the message's array or object
    if text[end + 1 :].strip(_JSON_SPACE):
        raise ValueError("extra data after the message")
    if opener == "[":
        return _split_items(text, flat, depths, start, end, level=1)
    return _split_envelope(text, flat, depths, start, end)


def _split_items(text: str, flat: str, depths: list[int], start: int, end: int,
                 level: int) -> list[Any]:
    """The elements of the array text[start:end + 1], whose elements sit at depth ``level``."""
    if not text[start + 1 : end].strip(_JSON_SPACE):
        return []
    commas = (match.start() for match in _COMMA.finditer(flat, start + 1, end))
    bounds = [start, *(index for index in commas if depths[index] == level), end]
    items: list[Any] = []
    for left, right in zip(bounds, bounds[1:], strict=False):
        element = text[left + 1 : right]
        # An element may nest as deep as an event does, counted from its own level.
        if max(depths[left + 1 : right], default=level) > MAX_EVENT_NESTING + level:
            items.append(_TooDeep(element.strip(_JSON_SPACE)))
        else:
            items.append(json.loads(element, parse_int=_parse_int))
    return items


def _split_envelope(text: str, flat: str, depths: list[int], start: int,
                    end: int) -> dict[str, Any]:
    """An object too deep to decode whole, as an envelope: its ``events`` array split like a
    bare batch (so a deep event does not take its neighbours with it); any other member too
    deep refuses the message (_NestingError)."""
    commas = (match.start() for match in _COMMA.finditer(flat, start + 1, end))
    bounds = [start, *(index for index in commas if depths[index] == 1), end]
    document: dict[str, Any] = {}
    for left, right in zip(bounds, bounds[1:], strict=False):
        colon = flat.find(":", left + 1, right)  # strings are blanked in flat: the key's colon
        if colon < 0:
            raise ValueError("an object member without a value")
        key = json.loads(text[left + 1 : colon])
        if type(key) is not str:
            raise ValueError("an object key that is not a string")
        value_start = colon + 1 + len(text[colon + 1 : right]) - len(
            text[colon + 1 : right].lstrip(_JSON_SPACE))
        if key == "events" and text[value_start : value_start + 1] == "[":
            close = depths.index(1, value_start)  # back to the envelope's level: the array ends
            if text[close + 1 : right].strip(_JSON_SPACE):
                raise ValueError("extra data after the events array")
            document[key] = _split_items(text, flat, depths, value_start, close, level=2)
        elif max(depths[colon + 1 : right], default=1) > MAX_EVENT_NESTING + 1:
            raise _NestingError
        else:
            document[key] = json.loads(text[colon + 1 : right], parse_int=_parse_int)
    return document


class _WireEvent(msgspec.Struct, gc=False):
    """An event as the contract types it, for the fast path (msgspec checks the types in C).

    Strict like the per-event checks: JSON true is not an int, a string is not a number; unknown
    fields are ignored, as there. Values the types cannot express (the version, finite and
    in-range times, SSID bytes, the AP id) are checked in ``EventParser._fast_events``.
    """

    v: int
    type: Literal["connect", "disconnect", "snapshot", "probe"]
    mac: str
    ts: float
    rssi: int | None = None
    ssid: str | None = None
    ap: str | None = None


_WIRE_DECODER = msgspec.json.Decoder(list[_WireEvent] | _WireEvent)


class _WireEnvelope(msgspec.Struct, gc=False):
    """A confirmed message (contracts section 2a): the AP's message id around its events."""

    v: int
    id: str
    events: list[_WireEvent]


_ENVELOPE_DECODER = msgspec.json.Decoder(_WireEnvelope)
_ENVELOPE_KEY = b'"events"'


class Pseudonymizer:
    """MAC -> (pseudonym, randomized) with a bounded memo: stations repeat in every snapshot."""

    def __init__(self, key: str, max_entries: int = 500_000) -> None:
        self._key = key
        self._max_entries = max_entries
        self._memo: dict[str, tuple[str, bool] | None] = {}

    def lookup(self, raw: str) -> tuple[str, bool] | None:
        """The pseudonym and randomized flag of a MAC as sent, or None if it is not a MAC."""
        memo = self._memo
        found = memo.get(raw, False)
        if found is not False:
            return found  # type: ignore[return-value]
        try:
            pseudonym = pseudonymize_mac(raw, self._key)
            value: tuple[str, bool] | None = (pseudonym, is_locally_administered(raw.strip()))
        except InvalidMacError:
            value = None
        if len(memo) >= self._max_entries:
            memo.clear()  # keeps memory flat; the next snapshots refill it
        memo[raw] = value
        return value

    def redact(self, sample: bytes) -> bytes:
        """Replace MAC-shaped text with ``mac~<pseudonym>`` so dead letters hold no raw MAC."""

        def replace(match: re.Match[bytes]) -> bytes:
            found = self.lookup(match.group(0).decode("ascii"))
            return b"mac~" + found[0].encode("ascii") if found else b"mac~?"

        return _MAC_IN_TEXT.sub(replace, sample)


def _ssid_fits(ssid: str) -> bool:
    """True when an SSID is encodable UTF-8 (JSON can smuggle lone surrogates) of <= 32 bytes."""
    try:
        return len(ssid.encode("utf-8")) <= MAX_SSID_BYTES
    except UnicodeEncodeError:
        return False


def sample_bytes(sample: Any) -> bytes:
    """A dead-letter sample as bytes, cut to twice the contract's 4 KiB (redaction comes next)."""
    if isinstance(sample, bytes | bytearray):
        raw = bytes(sample)
    elif isinstance(sample, _TooDeep):
        raw = sample.text[: 2 * DEADLETTER_PAYLOAD_BYTES].encode("utf-8", "replace")
    else:
        try:
            raw = json.dumps(sample, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            raw = repr(sample).encode("utf-8", "replace")
    return raw[: 2 * DEADLETTER_PAYLOAD_BYTES]


def dead_letter_payload(pseudonymizer: Pseudonymizer, sample: Any) -> bytes:
    """The sample as stored: MACs redacted first, then cut to 4 KiB (so no MAC is half cut)."""
    return pseudonymizer.redact(sample_bytes(sample))[:DEADLETTER_PAYLOAD_BYTES]


class EventParser:
    """Turns AP event messages into ParsedMessage values, following the contract exactly."""

    def __init__(
        self,
        topic_prefix: str,
        pseudonymizer: Pseudonymizer,
        locate: Callable[[str], ApLocation | None],
        retention_days: int,
        max_future_s: float = MAX_FUTURE_S,
    ) -> None:
        self._head = ap_topic_head(topic_prefix)
        self._tail = "/events"
        self._pseudonymizer = pseudonymizer
        self._locate = locate
        self._max_age_s = retention_days * 86400.0
        self._max_future_s = max_future_s
        self._good_ssids: set[str] = set()  # SSIDs already checked: a few per community

    def ap_from_topic(self, topic: str) -> str | None:
        """The AP id of an events topic, or None when the topic is not one."""
        if not (topic.startswith(self._head) and topic.endswith(self._tail)):
            return None
        ap_id = topic[len(self._head) : len(topic) - len(self._tail)]
        return ap_id if is_ap_id(ap_id) else None

    def parse(self, topic: str, payload: bytes, now: float) -> ParsedMessage:
        """Parse one message; every problem becomes a Reject, nothing raises."""
        ap_id = self.ap_from_topic(topic)
        if ap_id is not None and len(payload) <= MAX_PAYLOAD_BYTES:
            fast = self._fast_events(ap_id, payload, now)
            if fast is not None:
                location, events, message_id = fast
                return ParsedMessage(topic=topic, ap_id=ap_id, location=location, events=events,
                                     message_id=message_id)
        return self.parse_checked(topic, payload, now)

    def parse_checked(self, topic: str, payload: bytes, now: float) -> ParsedMessage:
        """Parse one message event by event, naming each problem (``parse`` falls back to this).

        Gives the same result as ``parse`` for every input, only slower; kept public so the
        tests can hold the two to that.
        """
        ap_id = self.ap_from_topic(topic)
        result = ParsedMessage(topic=topic, ap_id=ap_id, location=None)
        if ap_id is None:
            result.rejects.append(Reject(REASON_BAD_TOPIC, f"not an AP events topic: {topic[:200]}",
                                         payload))
            return result
        if len(payload) > MAX_PAYLOAD_BYTES:
            result.rejects.append(Reject(
                REASON_OVERSIZED, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}",
                payload))
            return result
        try:
            # What json.loads(bytes) does, then the nesting-safe decode of the text.
            text = payload.decode(json.detect_encoding(payload), "surrogatepass")
            document = _load_json(text)
        except _NestingError:
            result.rejects.append(Reject(
                REASON_BAD_FIELD, f"event nests more than {MAX_EVENT_NESTING} levels", payload))
            return result
        except ValueError as error:  # UnicodeDecodeError, JSONDecodeError
            result.rejects.append(Reject(REASON_BAD_JSON, f"not UTF-8 JSON: {error}"[:200],
                                         payload))
            return result
        if type(document) is dict and "events" in document:
            opened = self._open_envelope(document, payload, result)
            if opened is None:
                return result
            document = opened
        items: list[Any] = document if isinstance(document, list) else [document]
        if len(items) > MAX_BATCH_EVENTS:
            result.rejects.append(Reject(
                REASON_OVERSIZED, f"batch of {len(items)} events is over {MAX_BATCH_EVENTS}",
                payload, count=len(items)))
            return result
        if not items:
            # An AP with nobody associated: alive, no event to store; located (when known) so
            # that its heartbeat is stored. An unknown AP's empty report is dropped silently.
            result.location = self._locate(ap_id)
            return result
        location = self._locate(ap_id)
        if location is None:
            result.rejects.append(Reject(
                REASON_UNKNOWN_AP, f"AP {ap_id!r} is not in the registry",
                payload, count=len(items)))
            return result
        result.location = location
        events = result.events
        rejects = result.rejects
        oldest = now - self._max_age_s
        newest = now + self._max_future_s
        check = self._check_event
        for item in items:
            outcome = check(item, ap_id, oldest, newest)
            if type(outcome) is ParsedEvent:
                events.append(outcome)
            else:
                rejects.append(outcome)  # type: ignore[arg-type]
        return result

    @staticmethod
    def _open_envelope(document: dict[str, Any], payload: bytes,
                       result: ParsedMessage) -> list[Any] | None:
        """The events of a confirmed envelope, its id noted in result; None when it is refused.

        A valid id is kept even when the rest is refused: dead-lettered messages are confirmed.
        """
        message_id = document.get("id")
        if is_message_id(message_id):
            result.message_id = message_id
        events = document.get("events")
        count = len(events) if type(events) is list else 1
        version = document.get("v")
        if type(version) is not int:
            reject = Reject(REASON_BAD_FIELD, "envelope v is missing or not an integer", payload,
                            count)
        elif version != CONTRACT_VERSION:
            reject = Reject(REASON_BAD_VERSION, f"unsupported envelope version {version}",
                            payload, count)
        elif result.message_id is None:
            reject = Reject(REASON_BAD_FIELD, "envelope id must be 1-64 of A-Za-z0-9._-",
                            payload, count)
        elif type(events) is not list:
            reject = Reject(REASON_BAD_FIELD, "envelope events must be an array", payload)
        else:
            return events
        result.rejects.append(reject)
        return None

    def _fast_events(
        self, ap_id: str, payload: bytes, now: float
    ) -> tuple[ApLocation | None, list[ParsedEvent], str | None] | None:
        """The location and events of a message that is valid throughout, else None.

        Nearly every message is valid, so it is decoded and type-checked in one C pass; the
        first problem of any kind sends the whole message to the per-event checks below, which
        name the reason. Both paths accept exactly the same messages (tests/collector/
        test_parser.py runs every case through both).
        """
        message_id: str | None = None
        items: list[_WireEvent]
        if _ENVELOPE_KEY in payload:
            # A confirmed envelope (or, rarely, an event whose text holds "events": the checked
            # path sorts that out).
            try:
                envelope = _ENVELOPE_DECODER.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                return None
            if envelope.v != CONTRACT_VERSION or not is_message_id(envelope.id):
                return None
            message_id = envelope.id
            items = envelope.events
            brackets = len(items) + 2  # the envelope's object and its array
        else:
            try:
                document = _WIRE_DECODER.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                return None
            # isinstance, not `type(...) is list`: mypy 2 no longer narrows a union by type().
            items = document if isinstance(document, list) else [document]
            brackets = len(items) + (document is items)
        if not items:
            # alive, nobody there: located for its heartbeat
            return self._locate(ap_id), [], message_id
        # One bracket per event (and one for the batch) means no nested unknown field anywhere;
        # anything else goes to the checked path, which measures the nesting (brackets inside
        # strings send a message there too, harmlessly).
        if payload.count(b"[") + payload.count(b"{") != brackets:
            return None
        if len(items) > MAX_BATCH_EVENTS:
            return None
        location = self._locate(ap_id)
        if location is None:
            return None
        oldest = now - self._max_age_s
        newest = now + self._max_future_s
        lookup = self._pseudonymizer.lookup
        good_ssids = self._good_ssids
        events: list[ParsedEvent] = []
        append = events.append
        for item in items:
            if item.v != CONTRACT_VERSION:
                return None
            identity = lookup(item.mac)
            if identity is None:
                return None
            ts = item.ts
            if not oldest <= ts <= newest:  # False for NaN too
                return None
            kind = item.type
            rssi = item.rssi
            if rssi is None:
                if kind in _NEEDS_RSSI:
                    return None
            elif not _RSSI_LOW <= rssi <= _RSSI_HIGH:
                return None
            ssid = item.ssid
            if ssid is not None and ssid not in good_ssids:
                if not _ssid_fits(ssid):
                    return None
                if len(good_ssids) >= _MAX_GOOD_SSIDS:
                    good_ssids.clear()
                good_ssids.add(ssid)
            ap = item.ap
            if ap is not None and ap != ap_id:
                return None
            append(ParsedEvent(kind, identity[0], identity[1], ts, rssi, ssid))
        return location, events, message_id

    def _check_event(
        self, item: Any, ap_id: str, oldest: float, newest: float
    ) -> ParsedEvent | Reject:
        """Validate one event object; return the event or why it is refused."""
        # `type(x) is int` on purpose: JSON true/false arrive as bool, a subclass of int.
        if type(item) is _TooDeep:
            return Reject(REASON_BAD_FIELD,
                          f"event nests more than {MAX_EVENT_NESTING} levels", item)
        if type(item) is not dict:
            return Reject(REASON_BAD_FIELD, "event is not a JSON object", item)
        version = item.get("v")
        if type(version) is not int:
            return Reject(REASON_BAD_FIELD, "v is missing or not an integer", item)
        if version != CONTRACT_VERSION:
            return Reject(REASON_BAD_VERSION, f"unsupported contract version {version}", item)
        kind = item.get("type")
        if type(kind) is not str or kind not in _EVENT_TYPES:
            return Reject(REASON_BAD_FIELD, "type must be connect, disconnect, snapshot or probe",
                          item)
        mac = item.get("mac")
        if type(mac) is not str:
            return Reject(REASON_BAD_FIELD, "mac is missing or not a string", item)
        identity = self._pseudonymizer.lookup(mac)
        if identity is None:
            return Reject(REASON_BAD_FIELD, "mac is not a MAC address", item)
        ts = item.get("ts")
        ts_type = type(ts)
        if ts_type is not float and ts_type is not int:
            return Reject(REASON_BAD_FIELD, "ts is missing or not a number", item)
        # Only floats can be NaN or infinite; ints are compared exactly below (math.isfinite
        # would raise OverflowError on an int past 1e308).
        if ts_type is float and not math.isfinite(ts):  # type: ignore[arg-type]
            return Reject(REASON_BAD_FIELD, "ts is not finite", item)
        if ts > newest:  # type: ignore[operator]
            return Reject(REASON_BAD_TIMESTAMP, "ts is more than 5 minutes in the future", item)
        if ts < oldest:  # type: ignore[operator]
            return Reject(REASON_BAD_TIMESTAMP, "ts is older than the retention period", item)
        rssi = item.get("rssi")
        if rssi is None:
            if kind in _NEEDS_RSSI:
                return Reject(REASON_BAD_FIELD, f"rssi is required for {kind}", item)
        elif type(rssi) is not int or not _RSSI_LOW <= rssi <= _RSSI_HIGH:
            return Reject(REASON_BAD_FIELD, "rssi must be an integer from -120 to 0", item)
        ssid = item.get("ssid")
        if ssid is not None and (type(ssid) is not str or not _ssid_fits(ssid)):
            return Reject(REASON_BAD_FIELD, "ssid must be UTF-8 text of at most 32 bytes", item)
        ap = item.get("ap")
        if ap is not None and ap != ap_id:
            return Reject(REASON_AP_MISMATCH, "ap contradicts the topic's AP id", item)
        return ParsedEvent(kind, identity[0], identity[1], float(ts),  # type: ignore[arg-type]
                           rssi, ssid)
