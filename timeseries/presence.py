"""AP reports -> ``presence`` and ``ap_heartbeat`` lines with idempotent timestamps (contracts, 6).

A point's timestamp is the event time truncated to the millisecond, in nanoseconds, plus an
offset in [0, 1e6) ns derived from the device pseudonym; so a redelivered event lands on the
same series and timestamp and overwrites itself. Two devices that collide in one message are
separated by probing to the next free offset, in message order, which a redelivery of the same
message repeats exactly.

This is the collector's hot path, so series prefixes and per-device fields are cached; the text
comes from ``timeseries.lineprotocol``'s functions, and ``tests/timeseries`` checks it equals
what ``Point.to_line`` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from timeseries.lineprotocol import escape_string, series_key
from timeseries.schema import (
    EVENT_TYPES,
    MEASUREMENT_HEARTBEAT,
    MEASUREMENT_PRESENCE,
    NS_PER_MS,
    OFFSET_SLOTS,
    TAG_EVENT,
    ApLocation,
    base_time_ns,
    device_offset,
)


class PresenceEvent(Protocol):
    """One validated, pseudonymised AP event (collector.parser.ParsedEvent provides it)."""

    @property
    def type(self) -> str:
        """connect, disconnect, snapshot or probe."""
        ...

    @property
    def device(self) -> str:
        """The device pseudonym."""
        ...

    @property
    def randomized(self) -> bool:
        """The MAC is locally administered."""
        ...

    @property
    def ts(self) -> float:
        """When the AP saw it (Unix seconds)."""
        ...

    @property
    def rssi(self) -> int | None:
        """Signal in dBm, when the event had one."""
        ...

    @property
    def ssid(self) -> str | None:
        """The SSID (probe events)."""
        ...


HEARTBEAT = "heartbeat"  # the prefix cache's key for an AP's heartbeat series
_HEARTBEAT_HEAD = MEASUREMENT_HEARTBEAT + ","


def series_prefix(location: ApLocation, event_type: str) -> str:
    """Measurement and tags (sorted by key, as InfluxDB stores them) of one AP's series."""
    return series_key(MEASUREMENT_PRESENCE, {**location.tags(), TAG_EVENT: event_type})


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
            found = {kind: series_prefix(location, kind) for kind in EVENT_TYPES}
            found[HEARTBEAT] = series_key(MEASUREMENT_HEARTBEAT, location.tags())
            self._prefixes[location] = found
        return found

    def lines(self, location: ApLocation, events: Iterable[PresenceEvent]) -> list[str]:
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
                fields += ",ssid=" + escape_string(event.ssid)
            append(f"{prefixes[kind]} {fields} {time_ns}")
        return out

    def heartbeat(self, location: ApLocation, events: Sequence[PresenceEvent],
                  received_s: float) -> str:
        """The ``ap_heartbeat`` line of one AP report (an empty keep-alive included).

        Its time is the latest event time of the report, so a redelivered report overwrites
        itself; an empty report carries no time of its own and takes its arrival time.
        """
        latest = max((event.ts for event in events), default=received_s)
        time_ns = base_time_ns(latest)
        return (f"{self.prefixes(location)[HEARTBEAT]} events={len(events)}i,"
                f"at_s={time_ns // (1000 * NS_PER_MS)}i {time_ns}")


def presence_points(lines: Sequence[str]) -> int:
    """How many of a batch's lines are presence points (its heartbeat lines left out)."""
    return len(lines) - sum(1 for line in lines if line.startswith(_HEARTBEAT_HEAD))
