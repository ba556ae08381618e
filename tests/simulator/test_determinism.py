"""Same seed, same bytes; different seeds differ; the period is placed as documented."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import ConfigError, SimulationConfig
from simulator.config import simulation_period
from simulator.run import FILES
from tests.common import SIM_END, simulate_into


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every output file."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    """Two runs with one seed and end write the same bytes in all six files."""
    simulate_into(tmp_path / "a", units=60, days=2, seed=5)
    simulate_into(tmp_path / "b", units=60, days=2, seed=5)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert not list((tmp_path / "a").glob(".*.partial"))


def test_different_seeds_differ_in_every_file(tmp_path: Path) -> None:
    """Another seed gives another community, stream and truth."""
    simulate_into(tmp_path / "a", units=60, days=2, seed=5)
    simulate_into(tmp_path / "b", units=60, days=2, seed=6)
    first, second = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert all(first[name] != second[name] for name in FILES)


def test_rerun_into_the_same_folder_replaces_the_files(tmp_path: Path) -> None:
    """A second run into a folder leaves exactly the second run's files."""
    simulate_into(tmp_path / "a", units=30, days=1, seed=1)
    simulate_into(tmp_path / "a", units=30, days=1, seed=2)
    simulate_into(tmp_path / "b", units=30, days=1, seed=2)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_period_ends_at_the_last_complete_local_night(tmp_path: Path) -> None:
    """Days run 06:00 to 06:00 Asia/Shanghai and the last ends at or before --end."""
    config = SimulationConfig(out=tmp_path, days=3, end=SIM_END)  # 20:00 local on 10 March
    period = simulation_period(config)
    tz = ZoneInfo("Asia/Shanghai")
    starts = [dt.datetime.fromtimestamp(day.start, tz) for day in period.days]
    assert [s.isoformat() for s in starts] == [
        "2025-03-07T06:00:00+08:00", "2025-03-08T06:00:00+08:00", "2025-03-09T06:00:00+08:00"]
    assert period.end == int(dt.datetime(2025, 3, 10, 6, tzinfo=tz).timestamp())


def test_end_before_six_in_the_morning_uses_the_night_before(tmp_path: Path) -> None:
    """At 05:59 local the night is not over yet: the period ends a day earlier."""
    tz = ZoneInfo("Asia/Shanghai")
    config = SimulationConfig(out=tmp_path, days=1,
                              end=dt.datetime(2025, 3, 10, 5, 59, tzinfo=tz))
    assert simulation_period(config).end == int(dt.datetime(2025, 3, 9, 6, tzinfo=tz).timestamp())


def test_live_period_starts_this_morning(tmp_path: Path) -> None:
    """A live run starts at the last 06:00 before now and runs into the future."""
    tz = ZoneInfo("Asia/Shanghai")
    now = dt.datetime(2025, 3, 10, 14, 30, tzinfo=tz)
    period = simulation_period(SimulationConfig(out=tmp_path, days=2, start=now))
    assert period.start == int(dt.datetime(2025, 3, 10, 6, tzinfo=tz).timestamp())
    assert period.end == int(dt.datetime(2025, 3, 12, 6, tzinfo=tz).timestamp())


@settings(max_examples=60, deadline=None)
@given(moment=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1),
                           timezones=st.just(dt.UTC)),
       zone=st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]),
       days=st.integers(1, 20))
def test_days_are_contiguous_local_six_to_six(moment: dt.datetime, zone: str, days: int) -> None:
    """Across daylight-saving changes days stay contiguous and start at 06:00 local."""
    config = SimulationConfig(out=Path("unused"), days=days, end=moment, timezone=zone)
    period = simulation_period(config)
    tz = ZoneInfo(zone)
    assert len(period.days) == days
    assert period.end <= moment.timestamp() < period.end + 25 * 3600
    for before, after in zip(period.days, period.days[1:], strict=False):
        assert before.end == after.start
    for day in period.days:
        local = dt.datetime.fromtimestamp(day.start, tz)
        assert (local.hour, local.minute, local.date()) == (6, 0, day.date)
        assert day.length in (82_800, 86_400, 90_000)


@pytest.mark.parametrize(("overrides", "name"), [
    ({"units": 0}, "units"),
    ({"days": 0}, "days"),
    ({"seed": -1}, "seed"),
    ({"snapshot_interval": 5}, "snapshot_interval"),
    ({"rented_share": 1.5}, "rented_share"),
    ({"group_rental_share": -0.1}, "group_rental_share"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"ssid": "x" * 33}, "ssid"),
    ({"end": dt.datetime(2025, 1, 1)}, "end"),
    ({"vacant_share": 0.5, "extra_occupant_share": 0.3, "fewer_share": 0.2}, "vacant_share"),
])
def test_bad_parameters_are_refused_by_name(tmp_path: Path, overrides: dict[str, object],
                                            name: str) -> None:
    """A bad value raises ConfigError naming the parameter, before anything is written."""
    with pytest.raises(ConfigError) as caught:
        SimulationConfig(out=tmp_path / "x", **overrides)  # type: ignore[arg-type]
    assert caught.value.name == name
    assert str(caught.value).startswith(f"{name}=")
    assert not (tmp_path / "x").exists()
