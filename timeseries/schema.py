"""The InfluxDB schema (docs/contracts.md section 6): measurements, tags and timestamps.

Every measurement, tag name and timestamp rule lives here; the writers (``lineprotocol``,
``presence``) and the queries (``queries``) take their names from this module only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MEASUREMENT_PRESENCE = "presence"
# The nightly roll-up analytics keeps, and its per-day state.
MEASUREMENT_DAILY = "presence_daily"
MEASUREMENT_DAILY_STATE = "presence_daily_state"
# One point per AP report (an empty keep-alive included): "AP silent" apart from "nobody home".
MEASUREMENT_HEARTBEAT = "ap_heartbeat"

TAG_AP = "ap"
TAG_EVENT = "event"
TAG_SCOPE = "scope"
# The location tags every AP's points carry (from the registry's AP record at ingest time).
LOCATION_TAGS = ("community", "building", "floor", "unit")
EVENT_TYPES = ("connect", "disconnect", "snapshot", "probe")

NS_PER_MS = 1_000_000
OFFSET_SLOTS = 1_000_000
DAILY_OFFSET_NS = 3_600_000_000_000  # a roll-up point's offset stays under one hour


@dataclass(frozen=True, slots=True)
class ApLocation:
    """Where an access point is, from the registry: the tags its points carry."""

    ap_id: str
    community: str
    building: str
    floor: str = ""  # the AP's floor as text, empty when it has none
    unit: str = ""  # unit reference, only when the AP covers exactly one unit

    def tags(self) -> dict[str, str]:
        """The AP and location tags (empty values included; the writer leaves them out)."""
        return {TAG_AP: self.ap_id, "community": self.community, "building": self.building,
                "floor": self.floor, "unit": self.unit}


def device_offset(device: str) -> int:
    """The nanosecond offset in [0, 1e6) a device's raw points carry."""
    return int(device[:8], 16) % OFFSET_SLOTS


def base_time_ns(ts: float) -> int:
    """Event seconds truncated to the millisecond, as nanoseconds.

    The half-microsecond nudge makes values that are exact milliseconds in decimal
    (1764000000.123) land on their millisecond although the float is a hair below it.
    """
    return int(ts * 1000.0 + 0.0005) * NS_PER_MS


def daily_offset_ns(device: str) -> int:
    """A stable offset under one hour from the pseudonym, so one AP's devices differ in time."""
    digest = hashlib.blake2b(device.encode(), digest_size=8).hexdigest()
    return int(digest, 16) % DAILY_OFFSET_NS
