"""Parsed events -> InfluxDB line protocol with idempotent timestamps (contracts, section 6).

A point's timestamp is the event time truncated to the millisecond, in nanoseconds, plus an
offset in [0, 1e6) ns derived from the device pseudonym; so a redelivered event lands on the
same series and timestamp and overwrites itself. Two devices that collide in one message are
separated by probing to the next free offset, in message order, which a redelivery of the same
message repeats exactly.

Lines are formatted here directly rather than through ``Point.to_line`` because this is the
collector's hot path; ``tests/collector/test_points.py`` checks both give the same text.
"""

from __future__ import annotations

from collections.abc import Iterable

from census.presence_store import MEASUREMENT_PRESENCE, _escape_key
from collector.parser import ApLocation, ParsedEvent

NS_PER_MS = 1_000_000
OFFSET_SLOTS = 1_000_000


def device_offset(device: str) -> int:
    """The nanosecond offset in [0, 1e6) a device's points carry."""
    return int(device[:8], 16) % OFFSET_SLOTS


def base_time_ns(ts: float) -> int:
    """Event seconds truncated to the millisecond, as nanoseconds.

    The half-microsecond nudge makes values that are exact milliseconds in decimal
    (1764000000.123) land on their millisecond although the float is a hair below it.
    """
    return int(ts * 1000.0 + 0.0005) * NS_PER_MS


def escape_string_field(value: str) -> str:
    """A line-protocol string field value, quoted."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def series_prefix(location: ApLocation, event_type: str) -> str:
    """Measurement and tags (sorted by key, as InfluxDB stores them) of one AP's series."""
    tags = {
        "ap": location.ap_id,
        "building": location.building,
        "community": location.community,
        "event": event_type,
        "floor": location.floor,
        "unit": location.unit,
    }
    parts = [MEASUREMENT_PRESENCE]
    for key in sorted(tags):
        if tags[key]:
            parts.append(f",{key}={_escape_key(tags[key])}")
    return "".join(parts)


class LineBuilder:
    """Builds the lines of one message's events; caches series prefixes per AP location."""

    def __init__(self, max_cached_locations: int = 100_000,
                 max_cached_devices: int = 500_000) -> None:
        self._prefixes: dict[ApLocation, dict[str, str]] = {}
        self._max_cached = max_cached_locations
        # device -> (its time offset, its first fields): stations repeat in every snapshot.
        self._devices: dict[str, tuple[int, str]] = {}
        self._max_devices = max_cached_devices

    def prefixes(self, location: ApLocation) -> dict[str, str]:
        """The series prefix of each event type at this location."""
        found = self._prefixes.get(location)
        if found is None:
            if len(self._prefixes) >= self._max_cached:
                self._prefixes.clear()
            found = {
                kind: series_prefix(location, kind)
                for kind in ("connect", "disconnect", "snapshot", "probe")
            }
            self._prefixes[location] = found
        return found

    def lines(self, location: ApLocation, events: Iterable[ParsedEvent]) -> list[str]:
        """One line per event; timestamps idempotent and unique per series within the message."""
        prefixes = self.prefixes(location)
        taken: dict[tuple[str, int], str] = {}  # (event type, time) -> device holding it
        out: list[str] = []
        append = out.append
        devices = self._devices
        for event in events:
            kind = event.type
            device = event.device
            known = devices.get(device)
            if known is None:
                if len(devices) >= self._max_devices:
                    devices.clear()  # memory stays flat; the next snapshots refill it
                randomized = "true" if event.randomized else "false"
                known = devices[device] = (device_offset(device),
                                           f'device="{device}",randomized={randomized}')
            offset, fields = known
            base = base_time_ns(event.ts)
            time_ns = base + offset
            holder = taken.get((kind, time_ns))
            while holder is not None and holder != device:
                # Another device took this slot in this message: probe to the next free one.
                offset = (offset + 1) % OFFSET_SLOTS
                time_ns = base + offset
                holder = taken.get((kind, time_ns))
            taken[(kind, time_ns)] = device
            if event.rssi is not None:
                fields += f",rssi={event.rssi}i"
            if kind == "probe" and event.ssid is not None:
                fields += ",ssid=" + escape_string_field(event.ssid)
            append(f"{prefixes[kind]} {fields} {time_ns}")
        return out
