"""Turn a day's associations into MQTT messages and write them in time order.

Each line of ``events.jsonl`` is one MQTT message: ``{"ap": ap_id, "payload": [events]}``,
the payload encoded byte for byte as ``census.events.encode_events`` would encode it (a test
holds the two together). A snapshot is one message per AP listing every associated station, or
``[]`` when nobody is there; a connect or disconnect is a message of its own, as hostapd reports
them one at a time; a sniffer's probe burst is one message.

The day is produced in time slices of a few snapshot rounds: per AP a sweep over its segments
(sorted by start) keeps only the associations alive in the slice, the slice's messages are
sorted by (time, AP) and written. Memory is bounded by one slice, whatever the district size.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import BinaryIO

from simulator.behaviour import CONNECT, DISCONNECT, DayActivity, Segment
from simulator.config import Period, SimulationConfig
from simulator.model import World
from simulator.rng import Rng

SLICE_MESSAGES = 60_000  # snapshot messages per slice, bounding the slice's memory
NOISE_SIZE = 4096  # per-day table of RSSI jitter, indexed by snapshot round and device


def seconds_json(ms: int) -> str:
    """A millisecond time as the JSON number json.dumps(ms / 1000) writes."""
    return repr(ms / 1000)


class StreamWriter:
    """Writes the event stream of a run, day after day, to a binary file."""

    def __init__(self, handle: BinaryIO, world: World, config: SimulationConfig,
                 period: Period) -> None:
        self.handle = handle
        self.world = world
        self.config = config
        self.period = period
        self.messages = 0
        self.events: Counter[str] = Counter()
        self.ssid_json = [json.dumps(ap.ssid) for ap in world.aps]
        self.prefix = ['{"ap":' + json.dumps(ap.ap_id) + ',"payload":[' for ap in world.aps]
        self._loss: Rng | None = None

    def write_day(self, activity: DayActivity) -> None:
        """Write every message of one day, in time order."""
        day = activity.day
        interval = self.config.snapshot_interval
        rounds = max(1, SLICE_MESSAGES // max(1, len(self.world.aps)))
        slice_s = rounds * interval
        noise_rng = Rng(self.config.seed, "rssi", day.index)
        noise = [noise_rng.randint(-4, 4) for _ in range(NOISE_SIZE)]
        # Lost snapshots (a congested uplink, a broker hiccup): drawn per message.
        self._loss = (Rng(self.config.seed, "snapshot-loss", day.index)
                      if self.config.snapshot_loss > 0 else None)
        day_ms = day.start * 1000
        states: list[tuple[list[Segment], list[int], list[Segment]]] = []
        for segments in activity.segments:
            segments.sort()
            states.append((segments, [0], []))
        probe_cursor = [0] * len(self.world.aps)
        for probes in activity.probes:
            probes.sort(key=lambda burst: burst[0])
        slice_start = day.start
        while slice_start < day.end:
            slice_end = min(slice_start + slice_s, day.end)
            self._write_slice(activity, states, probe_cursor, noise, day_ms, slice_start,
                              slice_end)
            slice_start = slice_end

    def _write_slice(self, activity: DayActivity,
                     states: list[tuple[list[Segment], list[int], list[Segment]]],
                     probe_cursor: list[int], noise: list[int], day_ms: int,
                     slice_start: int, slice_end: int) -> None:
        """Messages with a timestamp in [slice_start, slice_end) seconds, sorted and written."""
        interval = self.config.snapshot_interval
        interval_ms = interval * 1000
        lo_rel, hi_rel = slice_start * 1000 - day_ms, slice_end * 1000 - day_ms
        out: list[tuple[int, int, int, str]] = []
        seq = 0
        events = self.events
        for ap in self.world.aps:
            index = ap.index
            segments, cursor, active = states[index]
            outage = activity.outages[index]
            ssid = self.ssid_json[index]
            prefix = self.prefix[index]
            base = self.period.start + ap.phase  # snapshot k is at base + k * interval
            k0 = -(-(slice_start - base) // interval)
            k1 = -(-(slice_end - base) // interval)
            buckets: list[list[str]] = [[] for _ in range(k1 - k0)]
            position = cursor[0]
            while position < len(segments) and segments[position][0] < hi_rel:
                active.append(segments[position])
                position += 1
            cursor[0] = position
            base_ms = base * 1000 - day_ms
            keep: list[Segment] = []
            for segment in active:
                start, end, mac, rssi, flags, device = segment
                if flags & CONNECT and lo_rel <= start < hi_rel:
                    ts = seconds_json(day_ms + start)
                    out.append((day_ms + start, index, seq,
                                f'{prefix}{{"v":1,"type":"connect","mac":"{mac}","ts":{ts},'
                                f'"ssid":{ssid}}}]}}\n'))
                    seq += 1
                    events["connect"] += 1
                if flags & DISCONNECT and lo_rel <= end < hi_rel:
                    ts = seconds_json(day_ms + end)
                    out.append((day_ms + end, index, seq,
                                f'{prefix}{{"v":1,"type":"disconnect","mac":"{mac}",'
                                f'"ts":{ts}}}]}}\n'))
                    seq += 1
                    events["disconnect"] += 1
                first = max(k0, -(-(start - base_ms) // interval_ms))
                last = min(k1, -(-(end - base_ms) // interval_ms))
                for k in range(first, last):
                    level = rssi + noise[(k * 31 + device) % NOISE_SIZE]
                    buckets[k - k0].append(
                        f'{{"v":1,"type":"snapshot","mac":"{mac}","ts":{base + k * interval},'
                        f'"rssi":{level},"ssid":{ssid}}}')
                if end >= hi_rel:
                    keep.append(segment)
            active[:] = keep
            for offset, bucket in enumerate(buckets):
                ts_s = base + (k0 + offset) * interval
                rel = ts_s * 1000 - day_ms
                if outage is not None and outage[0] <= rel < outage[1]:
                    continue  # the AP is down: no report at all
                if self._loss is not None and self._loss.chance(self.config.snapshot_loss):
                    continue  # lost on the way: neither its stations nor its [] arrive
                out.append((ts_s * 1000, index, seq, prefix + ",".join(bucket) + "]}\n"))
                seq += 1
                events["snapshot"] += len(bucket)
            bursts = activity.probes[index]
            position = probe_cursor[index]
            while position < len(bursts) and bursts[position][0] < hi_rel:
                at, burst = bursts[position]
                position += 1
                if at < lo_rel or (outage is not None and outage[0] <= at < outage[1]):
                    continue  # the sniffer is down: nobody hears the burst
                body = ",".join(
                    f'{{"v":1,"type":"probe","mac":"{mac}","ts":{seconds_json(day_ms + when)},'
                    f'"rssi":{level},"ssid":{json.dumps(probe_ssid)}}}'
                    for when, mac, level, probe_ssid in burst)
                out.append((day_ms + at, index, seq, f"{prefix}{body}]}}\n"))
                seq += 1
                events["probe"] += len(burst)
            probe_cursor[index] = position
        out.sort()
        self.messages += len(out)
        self.handle.write("".join(line for _, _, _, line in out).encode("utf-8"))
