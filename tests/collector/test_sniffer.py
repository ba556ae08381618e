"""The sniffer: crafted 802.11 captures into contract events, through the broker to storage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.layers.dot11 import (
    Dot11,
    Dot11AssoReq,
    Dot11AssoResp,
    Dot11Beacon,
    Dot11Deauth,
    Dot11Elt,
    Dot11FCS,
    Dot11ProbeReq,
    RadioTap,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from census.privacy import pseudonymize_mac
from census.settings import Settings
from collector.cli import sniff
from collector.service import Collector
from collector.sniffer import (
    FrameDecoder,
    SnifferError,
    check_monitor_interface,
    read_pcap,
    run_sniffer,
)
from tests.common import (
    AP_LOBBY,
    count_points,
    options_for,
    running_collector,
    settings_environment,
    wait_for,
)
from timeseries import TimeSeriesStore

AP_BSSID = "0e:00:00:00:00:01"
RANDOMIZED = "da:a1:19:00:00:01"  # locally administered (bit 1 of the first octet)
FIXED = "a4:83:e7:00:00:02"
JOINER = "a4:83:e7:00:00:03"
REFUSED = "a4:83:e7:00:00:04"
NO_SIGNAL = "a4:83:e7:00:00:05"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def radiotap(rssi: int | None = -60) -> Packet:
    """A radiotap header with (or without) a signal field."""
    if rssi is None:
        return RadioTap()
    return RadioTap(present="dBm_AntSignal", dBm_AntSignal=rssi)


def probe(station: str, ssid: bytes, rssi: int | None = -60) -> Packet:
    """A probe request from station."""
    return (radiotap(rssi) / Dot11(type=0, subtype=4, addr1=BROADCAST, addr2=station,
                                   addr3=BROADCAST)
            / Dot11ProbeReq() / Dot11Elt(ID=0, info=ssid) / Dot11Elt(ID=1, info=b"\x82\x84"))


def craft_capture(start: float) -> list[Packet]:
    """A capture with every frame kind the sniffer must handle, in time order."""
    beacon = (radiotap(-40) / Dot11(type=0, subtype=8, addr1=BROADCAST, addr2=AP_BSSID,
                                    addr3=AP_BSSID)
              / Dot11Beacon() / Dot11Elt(ID=0, info=b"Census-Free"))
    assoc_request = (radiotap(-58) / Dot11(type=0, subtype=0, addr1=AP_BSSID, addr2=JOINER,
                                           addr3=AP_BSSID)
                     / Dot11AssoReq() / Dot11Elt(ID=0, info=b"Census-Free"))
    assoc_response = (radiotap(-41) / Dot11(type=0, subtype=1, addr1=JOINER, addr2=AP_BSSID,
                                            addr3=AP_BSSID) / Dot11AssoResp(status=0, AID=1))
    refused_response = (radiotap(-41) / Dot11(type=0, subtype=1, addr1=REFUSED, addr2=AP_BSSID,
                                              addr3=AP_BSSID) / Dot11AssoResp(status=17))
    deauth_by_station = (radiotap(-63) / Dot11(type=0, subtype=12, addr1=AP_BSSID, addr2=FIXED,
                                               addr3=AP_BSSID) / Dot11Deauth(reason=3))
    deauth_everyone = (radiotap(-41) / Dot11(type=0, subtype=12, addr1=BROADCAST, addr2=AP_BSSID,
                                             addr3=AP_BSSID) / Dot11Deauth(reason=7))
    data_frame = radiotap(-50) / Dot11(type=2, subtype=0, addr1=AP_BSSID, addr2=FIXED,
                                       addr3=AP_BSSID)
    good_probe = bytes(probe(FIXED, b"Census-Free", -55))
    truncated = RadioTap(good_probe[:30])  # cut inside the 802.11 header
    lying_element = RadioTap(good_probe[:-6])  # an information element longer than the frame
    bad_fcs = (RadioTap(present="Flags+dBm_AntSignal", Flags="FCS+badFCS", dBm_AntSignal=-50)
               / Dot11FCS(type=0, subtype=4, addr1=BROADCAST, addr2=FIXED, addr3=BROADCAST)
               / Dot11ProbeReq() / Dot11Elt(ID=0, info=b"x"))
    ethernet = Ether(src="00:11:22:33:44:55", dst=BROADCAST) / b"not radio"
    frames = [
        beacon,
        probe(RANDOMIZED, b"", -71),  # wildcard probe, randomized address
        probe(FIXED, b"Census-Free", -55),
        probe(FIXED, b"Census-Free", -54),  # 1 s later: thinned
        probe(NO_SIGNAL, b"x", None),
        assoc_request, assoc_response, refused_response,
        truncated, lying_element, bad_fcs, data_frame, deauth_everyone,
        deauth_by_station,
        ethernet,
        probe(RANDOMIZED, b"Home", -70),  # 20 s later: a new probe event
    ]
    for index, frame in enumerate(frames):
        frame.time = start + index
    frames[-1].time = start + 40
    return frames


def write_capture(path: Path, frames: list[Packet]) -> Path:
    """Write frames to a pcap (radiotap link type; the Ethernet frame is kept as bytes)."""
    wrpcap(str(path), frames, linktype=127)
    return path


def test_frames_become_probe_connect_and_disconnect_events(tmp_path: Path) -> None:
    """Each frame kind is turned into the right event or counted as skipped."""
    start = time.time() - 100
    path = write_capture(tmp_path / "mixed.pcap", craft_capture(start))
    decoder = FrameDecoder(probe_interval_s=10)
    events = [e for e in (decoder.decode(p) for p in read_pcap(path)) if e is not None]
    assert [(e.type, e.mac) for e in events] == [
        ("probe", RANDOMIZED), ("probe", FIXED), ("connect", JOINER),
        ("disconnect", FIXED), ("probe", RANDOMIZED),
    ]
    wildcard, fixed_probe, connect, disconnect, later = events
    assert wildcard.ssid == "" and wildcard.rssi == -71
    assert fixed_probe.ssid == "Census-Free" and fixed_probe.rssi == -55
    assert abs(fixed_probe.ts - (start + 2)) < 1e-3
    # The response is sent by the AP: its signal is not the phone's, so no RSSI.
    assert connect.ssid == "Census-Free" and connect.rssi is None
    assert disconnect.rssi == -63 and later.ssid == "Home"
    stats = decoder.stats
    assert stats.frames == 16 and stats.thinned == 1 and stats.no_signal == 1
    assert stats.malformed == 3  # truncated header, lying element, failed FCS
    # beacon, association request, refused association, data, broadcast deauth, Ethernet
    assert stats.ignored == 6


def test_sniffed_capture_is_stored_through_the_real_broker(
    registry_settings: Settings, influx: TimeSeriesStore, tmp_path: Path,
) -> None:
    """`sniff --pcap`: events published as the AP, collected, stored with the right flags."""
    settings = registry_settings
    path = write_capture(tmp_path / "street.pcap", craft_capture(time.time() - 100))
    collector = Collector(settings, options_for(settings, "sniff"))
    with running_collector(collector):
        stats = run_sniffer(settings, AP_LOBBY, pcap=path, probe_interval_s=10)
        assert stats.events == 5 and stats.messages == 1
        wait_for(lambda: count_points(influx) == 5, what="sniffed events stored")
    frame = influx.query("SELECT * FROM presence")
    probes = frame[frame["event"] == "probe"]
    key = settings.pseudonym_key
    randomized = probes[probes["device"] == pseudonymize_mac(RANDOMIZED, key)]
    assert len(randomized) == 2 and randomized["randomized"].all()
    fixed = probes[probes["device"] == pseudonymize_mac(FIXED, key)]
    assert len(fixed) == 1 and not fixed["randomized"].any() and fixed["rssi"].iloc[0] == -55
    assert set(frame["event"]) == {"probe", "connect", "disconnect"}
    assert not collector.summary.dead_lettered


def test_sniff_command_reads_a_pcap_and_reports_counts(
    registry_settings: Settings, tmp_path: Path,
) -> None:
    """The CLI entry point publishes and prints what it saw."""
    path = write_capture(tmp_path / "cli.pcap", craft_capture(time.time() - 100))
    runner = CliRunner()
    result = runner.invoke(sniff, ["--pcap", str(path), "--ap-id", AP_LOBBY],
                           env=settings_environment(registry_settings))
    assert result.exit_code == 0, result.output
    assert "frames=16 events=5 probes=3 connects=1 disconnects=1" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--iface", "lo", "--ap-id", "s1"], "not in monitor mode"),
        (["--iface", "nosuch0", "--ap-id", "s1"], "no network interface 'nosuch0'"),
        (["--ap-id", "s1"], "exactly one of --iface IFACE or --pcap FILE"),
        (["--iface", "lo", "--ap-id", "bad id"], "must be 1-64 letters"),
    ],
)
def test_sniff_refuses_bad_arguments_clearly(
    settings: Settings, arguments: list[str], message: str,
) -> None:
    """Wrong interface, no source, bad AP id: a clear message, exit code 1."""
    result = CliRunner().invoke(sniff, arguments, env=settings_environment(settings))
    assert result.exit_code == 1 and message in result.output


def test_not_a_pcap_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not a capture is named in the error."""
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(SnifferError, match="not a readable pcap file"):
        list(read_pcap(path))


def test_monitor_check_accepts_a_radiotap_interface(tmp_path: Path) -> None:
    """Link type 803 is monitor mode with radiotap headers."""
    (tmp_path / "mon0").mkdir()
    (tmp_path / "mon0" / "type").write_text("803\n")
    check_monitor_interface("mon0", sys_class_net=tmp_path)  # does not raise
