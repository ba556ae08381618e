"""The sniffer: 802.11 management frames -> contract events, published like an AP's.

It reads frames from a monitor-mode interface (live) or a pcap file, with scapy, and turns:

- probe requests into ``probe`` events (the station is nearby; RSSI from the radiotap header),
- successful association / reassociation responses into ``connect`` events (the SSID comes
  from the station's request just before; a refused association is not a connect),
- disassociation and deauthentication frames into ``disconnect`` events.

Beacons, probe responses, control and data frames say nothing about a station's presence
and are ignored. A phone sends bursts of probe requests on every channel; one ``probe`` per
station per ``probe_interval_s`` is kept. Frames that scapy cannot take apart (truncated, an
information element longer than the frame, a failed FCS) are counted as malformed and skipped.
The events go out as batches on ``{p}/v1/ap/{ap_id}/events``: the sniffer is an AP to the
collector, so its id must be in the registry (aps.csv) like any AP's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from census.channels import events_topic, is_ap_id
from census.events import MAX_SSID_BYTES, RSSI_RANGE, PresenceEvent, encode_events
from census.mqtt import MqttClient
from census.privacy import InvalidMacError, normalize_mac
from census.settings import Settings

LOGGER = logging.getLogger(__name__)

# 802.11 management frame subtypes (IEEE 802.11-2020, table 9-1).
SUBTYPE_ASSOC_REQUEST = 0
SUBTYPE_ASSOC_RESPONSE = 1
SUBTYPE_REASSOC_REQUEST = 2
SUBTYPE_REASSOC_RESPONSE = 3
SUBTYPE_PROBE_REQUEST = 4
SUBTYPE_DISASSOCIATION = 10
SUBTYPE_DEAUTHENTICATION = 12
# Linux link type of an interface in monitor mode with radiotap headers (ARPHRD_IEEE80211_RADIOTAP).
ARPHRD_IEEE80211_RADIOTAP = 803

# First bytes of the files scapy reads: pcap (both byte orders, micro- and nanosecond), pcapng,
# and gzip-compressed captures.
_CAPTURE_MAGIC = {
    bytes.fromhex("d4c3b2a1"), bytes.fromhex("a1b2c3d4"), bytes.fromhex("4d3cb2a1"),
    bytes.fromhex("a1b23c4d"), bytes.fromhex("0a0d0d0a"),
}
_CAPTURE_MAGIC |= {bytes.fromhex("1f8b") + suffix for suffix in (b"\x08\x00", b"\x08\x08")}

DEFAULT_PROBE_INTERVAL_S = 10.0
DEFAULT_BATCH_EVENTS = 500
DEFAULT_BATCH_DELAY_S = 1.0


class SnifferError(RuntimeError):
    """The sniffer cannot run; the message says what to fix."""


@dataclass
class SnifferStats:
    """What the sniffer saw and did."""

    frames: int = 0
    probes: int = 0
    connects: int = 0
    disconnects: int = 0
    thinned: int = 0  # probe requests within probe_interval_s of the station's last one
    ignored: int = 0  # frames that say nothing about a station (beacons, data, ...)
    malformed: int = 0
    no_signal: int = 0  # probe requests without a usable radiotap signal (RSSI is required)
    messages: int = 0  # MQTT messages published

    @property
    def events(self) -> int:
        """Events produced."""
        return self.probes + self.connects + self.disconnects

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return {
            "frames": self.frames, "events": self.events, "probes": self.probes,
            "connects": self.connects, "disconnects": self.disconnects,
            "thinned": self.thinned, "ignored": self.ignored, "malformed": self.malformed,
            "no_signal": self.no_signal, "messages": self.messages,
        }


def _station(raw: Any) -> str | None:
    """A unicast station address, normalised; None for group addresses or garbage."""
    if not isinstance(raw, str):
        return None
    try:
        mac = normalize_mac(raw)
    except InvalidMacError:
        return None
    if int(mac[:2], 16) & 0x01:
        return None  # multicast/broadcast bit: not a station
    return mac


class FrameDecoder:
    """Turns scapy packets into PresenceEvent values (small bounded memory, no I/O)."""

    def __init__(self, probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
                 max_tracked: int = 100_000) -> None:
        # scapy is imported here, not at module level: `wifi-census collector run` never pays
        # for it, and only the sniffer needs it.
        from scapy.layers import dot11

        self._dot11 = dot11
        self.probe_interval_s = probe_interval_s
        self.stats = SnifferStats()
        self._max_tracked = max_tracked
        self._last_probe: dict[str, float] = {}
        self._requested_ssid: dict[str, str | None] = {}

    def decode(self, packet: Any) -> PresenceEvent | None:
        """The event a frame means, or None (counted as ignored, thinned or malformed)."""
        self.stats.frames += 1
        try:
            return self._decode(packet)
        except Exception as error:  # scapy raises many kinds on odd frames: skip, never stop
            LOGGER.debug("frame skipped: %s", error)
            self.stats.malformed += 1
            return None

    def _decode(self, packet: Any) -> PresenceEvent | None:
        """Classify a frame."""
        dot11 = self._dot11
        radiotap = packet.getlayer(dot11.RadioTap)
        frame = packet.getlayer(dot11.Dot11)
        if frame is None:
            # A radiotap header with undecodable bytes after it is a broken 802.11 frame;
            # anything else (Ethernet, ...) is simply not 802.11.
            if radiotap is not None:
                self.stats.malformed += 1
            else:
                self.stats.ignored += 1
            return None
        if radiotap is not None and radiotap.Flags is not None and "badFCS" in radiotap.Flags:
            self.stats.malformed += 1
            return None
        if frame.type != 0:
            self.stats.ignored += 1
            return None
        if not self._elements_intact(packet):
            self.stats.malformed += 1
            return None
        subtype = int(frame.subtype)
        ts = float(packet.time)
        if subtype == SUBTYPE_PROBE_REQUEST:
            return self._probe(packet, frame, radiotap, ts)
        if subtype in (SUBTYPE_ASSOC_REQUEST, SUBTYPE_REASSOC_REQUEST):
            station = _station(frame.addr2)
            if station is None:
                self.stats.malformed += 1
                return None
            self._remember(self._requested_ssid, station, self._ssid(packet))
            self.stats.ignored += 1
            return None
        if subtype in (SUBTYPE_ASSOC_RESPONSE, SUBTYPE_REASSOC_RESPONSE):
            layer = packet.getlayer(dot11.Dot11AssoResp) or packet.getlayer(dot11.Dot11ReassoResp)
            station = _station(frame.addr1)
            if layer is None or station is None:
                self.stats.malformed += 1
                return None
            if int(layer.status) != 0:
                self.stats.ignored += 1  # association refused: the station did not join
                return None
            self.stats.connects += 1
            # The response comes from the AP, so its signal is not the station's: no RSSI.
            return PresenceEvent("connect", station, ts, None,
                                 self._requested_ssid.pop(station, None))
        if subtype in (SUBTYPE_DISASSOCIATION, SUBTYPE_DEAUTHENTICATION):
            from_station = frame.addr2 != frame.addr3  # addr3 is the BSSID
            station = _station(frame.addr2 if from_station else frame.addr1)
            if station is None:
                self.stats.ignored += 1  # e.g. an AP deauthenticating everyone (broadcast)
                return None
            self.stats.disconnects += 1
            rssi = self._rssi(radiotap) if from_station else None
            return PresenceEvent("disconnect", station, ts, rssi)
        self.stats.ignored += 1
        return None

    def _probe(self, packet: Any, frame: Any, radiotap: Any, ts: float) -> PresenceEvent | None:
        """A probe request: thinned per station, RSSI required."""
        station = _station(frame.addr2)
        if station is None:
            self.stats.malformed += 1
            return None
        rssi = self._rssi(radiotap)
        if rssi is None:
            self.stats.no_signal += 1
            return None
        last = self._last_probe.get(station)
        if last is not None and 0 <= ts - last < self.probe_interval_s:
            self.stats.thinned += 1
            return None
        self._remember(self._last_probe, station, ts)
        self.stats.probes += 1
        return PresenceEvent("probe", station, ts, rssi, self._ssid(packet) or "")

    def _remember(self, table: dict[str, Any], key: str, value: Any) -> None:
        """Store in a bounded table (cleared when full: memory stays flat on a busy street)."""
        if len(table) >= self._max_tracked and key not in table:
            table.clear()
        table[key] = value

    @staticmethod
    def _rssi(radiotap: Any) -> int | None:
        """The frame's signal in dBm from radiotap, if present and plausible."""
        if radiotap is None:
            return None
        value = getattr(radiotap, "dBm_AntSignal", None)
        if value is None:
            return None
        value = int(value)
        return value if RSSI_RANGE[0] <= value <= RSSI_RANGE[1] else None

    def _elements_intact(self, packet: Any) -> bool:
        """False when an information element claims more bytes than the frame holds."""
        element = packet.getlayer(self._dot11.Dot11Elt)
        while element is not None and isinstance(element, self._dot11.Dot11Elt):
            if element.len is not None and element.len != len(element.info or b""):
                return False
            element = element.payload
        return True

    def _ssid(self, packet: Any) -> str | None:
        """The SSID element as text ('' for a wildcard probe); None if not UTF-8 or too long."""
        element = packet.getlayer(self._dot11.Dot11Elt)
        while element is not None and isinstance(element, self._dot11.Dot11Elt):
            if element.ID == 0:
                raw = bytes(element.info or b"")
                if len(raw) > MAX_SSID_BYTES:
                    return None
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    return None
            element = element.payload
        return None


class EventPublisher:
    """Batches events into contract payloads and publishes them (QoS 1), thread-safe."""

    def __init__(self, publish: Callable[[str, bytes], None], topic: str,
                 batch_events: int = DEFAULT_BATCH_EVENTS,
                 max_delay_s: float = DEFAULT_BATCH_DELAY_S) -> None:
        self._publish = publish
        self._topic = topic
        self._batch_events = batch_events
        self._max_delay_s = max_delay_s
        self._pending: list[PresenceEvent] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self.messages = 0

    def add(self, event: PresenceEvent) -> None:
        """Queue an event; publish when the batch is full."""
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(event)
            if len(self._pending) >= self._batch_events:
                self._flush_locked()

    def flush(self, only_if_due: bool = False) -> None:
        """Publish what is pending (with only_if_due: only once it is max_delay_s old)."""
        with self._lock:
            if only_if_due and time.monotonic() - self._oldest < self._max_delay_s:
                return
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Publish the pending batch (the lock is held)."""
        if not self._pending:
            return
        payload = encode_events(self._pending)
        self._pending = []
        self._publish(self._topic, payload)
        self.messages += 1


def check_monitor_interface(iface: str, sys_class_net: Path = Path("/sys/class/net")) -> None:
    """Raise SnifferError unless iface exists and is in monitor mode with radiotap headers."""
    device = sys_class_net / iface
    if not device.exists():
        names = ", ".join(sorted(p.name for p in sys_class_net.iterdir())) or "none"
        raise SnifferError(f"no network interface {iface!r} (interfaces here: {names})")
    link_type = (device / "type").read_text().strip()
    if link_type != str(ARPHRD_IEEE80211_RADIOTAP):
        raise SnifferError(
            f"interface {iface!r} is not in monitor mode (link type {link_type}, need "
            f"{ARPHRD_IEEE80211_RADIOTAP}); e.g. `iw dev {iface} set type monitor` while it is down"
        )


def read_pcap(path: Path) -> Iterable[Any]:
    """Packets of a pcap file, streamed; a truncated last record ends the file quietly."""
    from scapy.error import Scapy_Exception
    from scapy.utils import PcapReader

    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise SnifferError(f"{path}: cannot read: {error}") from None
    if magic not in _CAPTURE_MAGIC:
        # Checked here because scapy's reader leaks its file handle when it refuses a file.
        shown = magic.hex() or "nothing"
        raise SnifferError(f"{path}: not a readable pcap file (starts with {shown})")
    try:
        reader = PcapReader(str(path))
    except (Scapy_Exception, OSError) as error:
        raise SnifferError(f"{path}: not a readable pcap file: {error}") from None
    with reader:
        while True:
            try:
                packet = reader.read_packet()
            except EOFError:
                return
            except Scapy_Exception as error:
                LOGGER.warning("%s: stopped at a damaged record: %s", path, error)
                return
            if packet is None:
                return
            yield packet


def run_sniffer(
    settings: Settings,
    ap_id: str,
    *,
    iface: str | None = None,
    pcap: Path | None = None,
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    stop: threading.Event | None = None,
    mqtt_factory: Callable[..., MqttClient] = MqttClient,
) -> SnifferStats:
    """Sniff (live or from a pcap) and publish events until the source ends or stop is set."""
    if not is_ap_id(ap_id):
        raise SnifferError(f"--ap-id {ap_id!r} must be 1-64 letters, digits, . _ or -")
    if (iface is None) == (pcap is None):
        raise SnifferError("give exactly one of --iface IFACE or --pcap FILE")
    if iface is not None:
        check_monitor_interface(iface)
    stop = stop or threading.Event()
    decoder = FrameDecoder(probe_interval_s=probe_interval_s)
    client = mqtt_factory(settings, f"wifi-census-sniffer-{ap_id}"[:64])
    client.connect()
    publisher = EventPublisher(lambda topic, payload: client.publish(topic, payload, wait=False),
                               events_topic(settings.mqtt_topic_prefix, ap_id), batch_events)

    def handle(packet: Any) -> None:
        """Decode one frame and queue its event."""
        event = decoder.decode(packet)
        if event is not None:
            publisher.add(event)

    try:
        if pcap is not None:
            for packet in read_pcap(pcap):
                handle(packet)
                if stop.is_set():
                    break
        else:
            _sniff_live(str(iface), handle, publisher, stop)
        publisher.flush()
        client.wait_until_published(timeout=60.0)
    finally:
        client.disconnect()
    decoder.stats.messages = publisher.messages
    LOGGER.info("sniffer done: %s", decoder.stats.as_dict())
    return decoder.stats


def _sniff_live(iface: str, handle: Callable[[Any], None], publisher: EventPublisher,
                stop: threading.Event) -> None:
    """Capture from a monitor-mode interface until stop is set, publishing at least every second."""
    from scapy.sendrecv import AsyncSniffer

    sniffer = AsyncSniffer(iface=iface, prn=handle, store=False, monitor=True)
    sniffer.start()
    try:
        while not stop.wait(0.5):
            publisher.flush(only_if_due=True)
            if not sniffer.running:
                error = getattr(sniffer, "exception", None)
                raise SnifferError(f"capture on {iface} stopped: {error or 'unknown reason'}")
    finally:
        if sniffer.running:
            sniffer.stop()
