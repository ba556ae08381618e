"""The collector's Redis side: live presence sets and the dead-letter stream (contracts, 7).

Presence: ``{r}here:ap:{ap}`` and ``{r}here:unit:{unit}`` are sorted sets of device pseudonyms
scored by last-seen Unix time. Scores only move forward (ZADD GT), so a late redelivery never
makes a device look older; a disconnect removes the device unless it was seen again after it.
Members older than the TTL are trimmed on each write and the key expires when nothing is seen.

Dead letters: ``{r}deadletter`` is a capped stream of samples (reason, detail, topic, payload,
at). When Redis cannot take them they go to a JSON-lines file instead, so a sample is never
what stalls the pipeline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from census.channels import RedisKeys
from collector.const import DEADLETTER_MAX_ENTRIES, PRESENCE_TTL_S
from collector.parser import ParsedEvent

LOGGER = logging.getLogger(__name__)

# Add devices seen, scores only moving forward; trim members past the TTL; refresh the expiry.
# Devices arrive grouped by time as space-separated text (ARGV: ttl, cutoff, then pairs of
# score and "dev1 dev2 ..."): a station snapshot shares one time, so the client sends one
# argument per group instead of two per device, which is where the client-side cost was.
# ZADD is called in chunks because Lua's unpack has a stack limit.
_SEEN_SCRIPT = """
local key = KEYS[1]
local args = {}
for i = 3, #ARGV, 2 do
  local score = ARGV[i]
  for member in string.gmatch(ARGV[i + 1], '%S+') do
    args[#args + 1] = score
    args[#args + 1] = member
    if #args >= 7000 then
      redis.call('ZADD', key, 'GT', unpack(args))
      args = {}
    end
  end
end
if #args > 0 then
  redis.call('ZADD', key, 'GT', unpack(args))
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[2])
redis.call('EXPIRE', key, ARGV[1])
return 0
"""

# Remove members a disconnect applies to: those whose last-seen score is not after it.
_DISCONNECT_SCRIPT = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


@dataclass
class PresenceUpdate:
    """Presence changes gathered over one batch: key -> {device: latest ts}."""

    seen: dict[str, dict[str, float]] = field(default_factory=dict)
    gone: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, key: str, device: str, ts: float, disconnect: bool) -> None:
        """Record that a device was seen at (or left) a key's place at ts."""
        members = (self.gone if disconnect else self.seen).setdefault(key, {})
        if members.get(device, -1.0) < ts:
            members[device] = ts

    def add_events(self, keys: tuple[str, ...], events: Iterable[ParsedEvent],
                   not_before: float) -> None:
        """Record one message's events at each of its places, skipping those before not_before.

        The same as ``add`` per event and key, in one call: this runs for every event.
        """
        seen: dict[str, float] = {}
        gone: dict[str, float] = {}
        for event in events:
            ts = event.ts
            if ts < not_before:
                continue  # too old to say anything about who is here now
            members = gone if event.type == "disconnect" else seen
            if members.get(event.device, -1.0) < ts:
                members[event.device] = ts
        for found, places in ((seen, self.seen), (gone, self.gone)):
            if found:
                for key in keys:
                    _fold(places, key, found, share=False)

    def __bool__(self) -> bool:
        """True when there is something to write."""
        return bool(self.seen or self.gone)

    def merge(self, other: PresenceUpdate) -> None:
        """Fold a later update in, keeping the latest time per device (what Redis would keep)."""
        for mine, theirs in ((self.seen, other.seen), (self.gone, other.gone)):
            for key, members in theirs.items():
                _fold(mine, key, members, share=True)


def _fold(places: dict[str, dict[str, float]], key: str, members: dict[str, float],
          share: bool) -> None:
    """Fold members into places[key], keeping each device's latest time. A place not there
    yet takes members as they are when share (no per-device work), else a copy of them."""
    held = places.get(key)
    if held is None:
        places[key] = members if share else dict(members)
        return
    for device, ts in members.items():
        if held.get(device, -1.0) < ts:
            held[device] = ts


class PresenceBuffer:
    """Hands presence updates from the writer to the presence thread, coalescing when behind.

    Presence is "latest time seen" per device and place, so folding several batches' updates
    into one loses nothing Redis would have kept, and memory stays bounded by the devices
    present rather than by how far Redis lags.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = PresenceUpdate()
        self._ready = threading.Event()

    def put(self, update: PresenceUpdate) -> None:
        """Queue an update (merged into whatever is already waiting)."""
        if not update:
            return
        with self._lock:
            if self._pending:
                self._pending.merge(update)
            else:
                self._pending = update
            self._ready.set()

    def take(self, timeout: float) -> PresenceUpdate | None:
        """Everything waiting, or None after timeout."""
        if not self._ready.wait(timeout):
            return None
        with self._lock:
            update, self._pending = self._pending, PresenceUpdate()
            self._ready.clear()
        return update or None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter sample (payload already redacted of raw MACs)."""

    reason: str
    detail: str
    topic: str
    payload: bytes
    at: float


class RedisState:
    """Writes presence updates and dead letters; reports Redis failures instead of raising."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        retention_days: int,
        fallback_file: Path,
        ttl_s: int = PRESENCE_TTL_S,
    ) -> None:
        self._client = client
        self._keys = RedisKeys(key_prefix)
        self._retention_s = retention_days * 86400
        self._fallback = fallback_file
        self._ttl_s = ttl_s
        self._disconnect = client.register_script(_DISCONNECT_SCRIPT)
        self._seen = client.register_script(_SEEN_SCRIPT)
        self._next_trim = 0.0
        self.deadletter_key = self._keys.deadletter()

    def ap_key(self, ap_id: str) -> str:
        """The presence key of an AP."""
        return self._keys.here_ap(ap_id)

    def unit_key(self, unit_ref: str) -> str:
        """The presence key of a unit."""
        return self._keys.here_unit(unit_ref)

    def apply_presence(self, update: PresenceUpdate, now: float | None = None) -> bool:
        """Write one batch's presence changes in one pipeline; False if Redis failed."""
        if not update:
            return True
        now = time.time() if now is None else now
        cutoff = now - self._ttl_s
        pipe = self._client.pipeline(transaction=False)
        for key, members in update.seen.items():
            groups: dict[float, list[str]] = {}
            for device, ts in members.items():
                group = groups.get(ts)
                if group is None:
                    groups[ts] = [device]
                else:
                    group.append(device)
            seen: list[str | int] = [self._ttl_s, repr(cutoff)]
            for ts, devices in groups.items():
                seen += [repr(ts), " ".join(devices)]
            self._seen(keys=[key], args=seen, client=pipe)
        for key, members in update.gone.items():
            gone: list[str | float] = []
            for device, ts in members.items():
                gone += [device, ts]
            self._disconnect(keys=[key], args=gone, client=pipe)
        try:
            pipe.execute()
        except redis.RedisError as error:
            LOGGER.error("Redis presence update failed (live state only; data is stored): %s",
                         error)
            return False
        return True

    def write_deadletters(self, letters: Iterable[DeadLetter]) -> bool:
        """Add samples to the stream (file if Redis fails); False if Redis failed."""
        letters = list(letters)
        if not letters:
            return True
        try:
            pipe = self._client.pipeline(transaction=False)
            for letter in letters:
                pipe.xadd(
                    self.deadletter_key,
                    {"reason": letter.reason, "detail": letter.detail, "topic": letter.topic,
                     "payload": letter.payload, "at": f"{letter.at:.3f}"},
                    maxlen=DEADLETTER_MAX_ENTRIES, approximate=True,
                )
            if time.monotonic() >= self._next_trim:
                # Entry ids are milliseconds: MINID trims samples older than the retention.
                self._next_trim = time.monotonic() + 60.0
                oldest_ms = int((time.time() - self._retention_s) * 1000)
                pipe.xtrim(self.deadletter_key, minid=str(oldest_ms), approximate=True)
            pipe.execute()
            return True
        except redis.RedisError as error:
            LOGGER.error("Redis dead-letter write failed, keeping %d samples in %s: %s",
                         len(letters), self._fallback, error)
            self._to_file(letters)
            return False

    def _to_file(self, letters: list[DeadLetter]) -> None:
        """Append samples as JSON lines (payload as text with undecodable bytes escaped)."""
        try:
            self._fallback.parent.mkdir(parents=True, exist_ok=True)
            with self._fallback.open("a", encoding="utf-8") as handle:
                for letter in letters:
                    handle.write(json.dumps({
                        "reason": letter.reason, "detail": letter.detail, "topic": letter.topic,
                        "payload": letter.payload.decode("utf-8", "backslashreplace"),
                        "at": letter.at,
                    }, ensure_ascii=False) + "\n")
        except OSError as error:
            LOGGER.error("dead-letter file %s not writable: %s", self._fallback, error)
