"""The access-point event contract (docs/contracts.md, section 2) as Python values.

Producers (the simulator, the sniffer, tests) build ``PresenceEvent`` values and encode them
with ``encode_events``; the collector's parser turns payloads back into them. Keeping both
directions beside each other is what keeps the contract single.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

CONTRACT_VERSION = 1
EVENT_TYPES = ("connect", "disconnect", "snapshot", "probe")
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 5000
MAX_SSID_BYTES = 32
MAX_EVENT_NESTING = 32  # levels of arrays/objects in one event, the event object included
RSSI_RANGE = (-120, 0)
DEFAULT_SNAPSHOT_INTERVAL_S = 300


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
