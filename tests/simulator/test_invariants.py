"""Property tests (hypothesis) of the generator's invariants, over many small configurations."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from census.privacy import is_locally_administered
from simulator import SimulationConfig, simulate
from simulator.behaviour import CONNECT, DISCONNECT, DayEngine
from simulator.community import build_world
from simulator.config import simulation_period
from simulator.model import FIXED, GROUP_RENTAL, INFRASTRUCTURE, RESIDENT, VACANT, VISITOR
from simulator.truth import address_index, device_at, load_truth
from tests.common import SIM_END

configs = st.fixed_dictionaries({
    "units": st.integers(5, 70),
    "days": st.integers(1, 3),
    "seed": st.integers(0, 2**40),
    "rented_share": st.floats(0, 1),
    "group_rental_share": st.floats(0, 1),
    "walkup_share": st.floats(0, 1),
    "snapshot_interval": st.sampled_from([60, 300, 900]),
    "outage_rate": st.sampled_from([0.0, 0.02, 0.3]),
    "bleed_share": st.sampled_from([0.0, 0.06, 0.5]),
    "overnight_guest_rate": st.sampled_from([0.0, 0.01, 0.3]),
    "visit_rate": st.sampled_from([0.0, 0.06, 0.5]),
    "community_size": st.sampled_from([10, 25, 362]),
})
# The stream check reads every message: keep those runs small.
stream_configs = configs.map(lambda values: {
    **values, "units": min(values["units"], 40),
    "snapshot_interval": max(values["snapshot_interval"], 300)})
PROPERTY = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def make_config(out: Path, values: dict[str, Any]) -> SimulationConfig:
    """A config from drawn values and the fixed end."""
    return SimulationConfig(out=out, end=SIM_END, **values)


@settings(PROPERTY, max_examples=40)
@given(values=configs)
def test_world_invariants(values: dict[str, Any]) -> None:
    """Owners, address histories and the requested mix hold for any configuration."""
    config = make_config(Path("unused"), values)
    period = simulation_period(config)
    world = build_world(config, period)
    assert len(world.units) == config.units
    start_ms, end_ms = period.start * 1000, period.end * 1000
    seen_macs: set[str] = set()
    for device in world.devices:
        # Every device belongs to a person, or is marked infrastructure or visitor.
        if device.category == RESIDENT:
            assert device.owner is not None and device.owner.lives_here  # type: ignore[union-attr]
            assert device in device.owner.devices and device.unit is device.owner.unit  # type: ignore[union-attr]
        elif device.category == INFRASTRUCTURE:
            assert device.owner is None and device.unit is not None
            assert device in device.unit.infrastructure
        else:
            assert device.category == VISITOR and device.owner is not None
            assert device.unit is None and device in device.owner.devices
        # Rotated addresses never overlap: contiguous, ordered, covering the period.
        bounds = [(start, end) for _mac, start, end in device.addresses]
        assert bounds[0][0] == start_ms and bounds[-1][1] == end_ms
        assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(bounds, bounds[1:],
                                                                        strict=False))
        assert all(start < end for start, end in bounds)
        if device.mode in ("per_ssid", FIXED):
            assert len(device.addresses) == 1
        for mac, _start, _end in device.addresses:
            assert is_locally_administered(mac) == (device.mode != FIXED)
            assert int(mac[:2], 16) & 1 == 0  # unicast
            assert mac not in seen_macs  # unique in the run
            seen_macs.add(mac)
    # The requested mix, by exact counts.
    rented = sum(unit.rented for unit in world.units)
    assert rented == round(config.units * config.rented_share)
    group = [unit for unit in world.units if unit.scenario == GROUP_RENTAL]
    assert len(group) == round(rented * config.group_rental_share)
    vacant = [unit for unit in world.units if unit.scenario == VACANT]
    assert len(vacant) == min(round(config.units * config.vacant_share), config.units - rented)
    for unit in group:
        assert unit.rented and 6 <= len(unit.occupants) <= 15
        assert len(unit.occupants) >= 3 * len(unit.registered)
    for unit in vacant:
        assert not unit.occupants and not unit.rented
    for unit in world.units:
        if unit.scenario == "extra_occupant":
            assert len(unit.occupants) == len(unit.registered) + 1
        if unit.scenario == "fewer":
            assert len(unit.occupants) == len(unit.registered) - 1
        if unit.scenario == "match":
            assert unit.occupants == unit.registered
        for person in unit.occupants:
            assert len(person.devices) <= 3
            if person.age >= 18 and person.age < 65:
                assert person.devices  # working-age adults carry at least a phone


@settings(PROPERTY, max_examples=30)
@given(values=configs)
def test_associations_are_consistent_day_after_day(values: dict[str, Any]) -> None:
    """One AP at a time per device; what ends a day at an AP starts the next day there."""
    config = make_config(Path("unused"), values)
    period = simulation_period(config)
    world = build_world(config, period)
    engine = DayEngine(world, config)
    carried: dict[int, tuple[int, str]] = {}
    for day in period.days:
        activity = engine.run_day(day)
        length = day.length * 1000
        by_device: dict[int, list[tuple[int, int, int, str, int]]] = defaultdict(list)
        for ap_index, segments in enumerate(activity.segments):
            for start, end, mac, rssi, flags, device in segments:
                assert 0 <= start < end <= length
                assert -120 <= rssi <= 0
                assert bool(flags & CONNECT) == (start > 0)  # 0: associated since before
                outage = activity.outages[ap_index]
                silent = outage is not None and end == outage[0]
                assert bool(flags & DISCONNECT) == (end < length and not silent)
                by_device[device].append((start, end, ap_index, mac, flags))
        arriving: dict[int, tuple[int, str]] = {}
        for device, segments in by_device.items():
            segments.sort()
            for (_s1, end1, *_), (start2, *_rest) in zip(segments, segments[1:], strict=False):
                assert end1 < start2  # never associated twice at once
            first, last = segments[0], segments[-1]
            if first[0] == 0:
                arriving[device] = (first[2], first[3])
            if last[1] == length:
                carried_next = (last[2], last[3])
                arriving.setdefault(-1 - device, carried_next)  # stash for the next check
        if day.index > 0:
            # Exactly the devices still associated at the end of yesterday start today there.
            today = {d: v for d, v in arriving.items() if d >= 0}
            assert today == carried
        carried = {-1 - d: v for d, v in arriving.items() if d < 0}


@PROPERTY
@given(values=stream_configs)
def test_stream_is_explained_by_the_truth(values: dict[str, Any]) -> None:
    """Every address in the stream is one truth device's at that time; per-device order holds."""
    with tempfile.TemporaryDirectory() as folder:
        result = simulate(make_config(Path(folder), values))
        truth = load_truth(result.truth_path)
        index = address_index(truth)
        outages = {ap["ap"]: ap["outages"] for ap in truth["aps"]}
        categories = {device["id"]: device["category"] for device in truth["devices"]}
        last_time: dict[str, float] = {}
        where: dict[str, tuple[str, float]] = {}  # device -> (AP, last seen there)
        with result.events_path.open("rb") as handle:
            for raw in handle:
                record = json.loads(raw)
                for event in record["payload"]:
                    device = device_at(index, event["mac"], event["ts"])
                    assert device is not None, event
                    assert categories[device] in (RESIDENT, INFRASTRUCTURE, VISITOR)
                    assert event["ts"] >= last_time.get(device, 0.0)
                    last_time[device] = event["ts"]
                    if event["type"] == "probe":
                        continue
                    _check_single_ap(where, device, record["ap"], event, outages)


def _check_single_ap(where: dict[str, tuple[str, float]], device: str, ap: str,
                     event: dict[str, Any], outages: dict[str, list[list[float]]]) -> None:
    """A device seen at a second AP must have left the first (or the first went down)."""
    ts = event["ts"]
    previous = where.get(device)
    if previous is not None and previous[0] != ap:
        old_ap, seen = previous
        went_down = any(seen <= down <= ts for down, _up in outages[old_ap])
        assert went_down, f"{device} at {ap} at {ts} while associated to {old_ap}"
    if event["type"] == "disconnect":
        assert previous is None or previous[0] == ap
        where.pop(device, None)
    else:
        where[device] = (ap, ts)


def test_the_fixed_end_is_recent_enough_for_hypothesis_runs() -> None:
    """Guards the fixture: the end used above is a real, aware moment."""
    assert SIM_END.tzinfo is dt.UTC
