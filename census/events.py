"""The access-point event contract (docs/contracts.md, section 2) as Python values.

Producers (the simulator, the sniffer, tests) build ``PresenceEvent`` values and encode them
with ``encode_events``; the collector's parser turns payloads back into them. Keeping both
directions beside each other is what keeps the contract single.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONTRACT_VERSION = 1
EVENT_TYPES = ("connect", "disconnect", "snapshot", "probe")
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 5000
MAX_SSID_BYTES = 32
MAX_EVENT_NESTING = 32  # levels of arrays/objects in one event, the event object included
RSSI_RANGE = (-120, 0)
DEFAULT_SNAPSHOT_INTERVAL_S = 300
# End-to-end acknowledgement (contracts section 2a): the id an AP gives a message it wants
# confirmed once stored, and how many ids one confirmation names at most.
MESSAGE_ID_PATTERN = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
MAX_CONFIRMED_IDS = 5000


def is_message_id(value: object) -> bool:
    """Whether value is a valid message id (a string of 1-64 of ``A-Za-z0-9._-``)."""
    return isinstance(value, str) and MESSAGE_ID_PATTERN.match(value) is not None


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """One observation of a station by an access point or sniffer."""

    type: str
    mac: str
    ts: float
    rssi: int | None = None
    ssid: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The event as the JSON object of the contract."""
        wire: dict[str, object] = {
            "v": CONTRACT_VERSION,
            "type": self.type,
            "mac": self.mac,
            "ts": self.ts,
        }
        if self.rssi is not None:
            wire["rssi"] = self.rssi
        if self.ssid is not None:
            wire["ssid"] = self.ssid
        return wire


def encode_events(events: Iterable[PresenceEvent]) -> bytes:
    """Encode events as one batch payload (a JSON array)."""
    return json.dumps([event.to_wire() for event in events], separators=(",", ":")).encode("utf-8")


def encode_event(event: PresenceEvent) -> bytes:
    """Encode a single event payload (a JSON object)."""
    return json.dumps(event.to_wire(), separators=(",", ":")).encode("utf-8")


def encode_envelope(message_id: str, events_payload: bytes) -> bytes:
    """Wrap an events payload (an array, or one event object) in the confirmed envelope.

    The payload bytes are spliced in, not re-encoded: ``{"v":1,"id":...,"events":[...]}``.
    """
    if not is_message_id(message_id):
        raise ValueError(f"message id {message_id!r} must be 1-64 of A-Za-z0-9._-")
    body = events_payload.strip()
    if body[:1] == b"{":
        body = b"[" + body + b"]"
    return b'{"v":1,"id":"' + message_id.encode("ascii") + b'","events":' + body + b"}"


def encode_confirmation(message_ids: Sequence[str]) -> bytes:
    """The collector's confirmation that these messages of one AP are stored (or dead-lettered)."""
    return json.dumps({"v": CONTRACT_VERSION, "ids": list(message_ids)},
                      separators=(",", ":")).encode("ascii")


def decode_confirmation(payload: bytes) -> list[str]:
    """The message ids a confirmation names; ids that are not valid are left out.

    Raises ValueError when the payload is not a confirmation at all.
    """
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"confirmation is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("v") != CONTRACT_VERSION:
        raise ValueError("confirmation must be an object with v = 1")
    ids = document.get("ids")
    if not isinstance(ids, list):
        raise ValueError("confirmation must list its ids")
    return [value for value in ids if is_message_id(value)]
