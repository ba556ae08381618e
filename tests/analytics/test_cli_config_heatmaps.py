"""The analytics command, its parameters and window, and the heatmaps."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from analytics.config import AnalyticsConfig, ConfigError, Window, parse_window
from analytics.devices import packed_masks
from analytics.heatmaps import build_heatmaps, write_heatmaps
from analytics.loaders import load_registry
from analytics.rollup import rollup_events
from census.privacy import IdentityCipher
from census.settings import Settings, environment_of
from registry.db import session_scope
from tests.common import Routine, household, import_registry, make_events, write_raw
from timeseries import TimeSeriesStore
from wifi_census.cli import main


@pytest.mark.parametrize("text, nights", [("28d", 28), ("4w", 28), ("7", 7), (" 14d ", 14)])
def test_window_lengths_parse(text: str, nights: int) -> None:
    """Nights, days or weeks."""
    assert parse_window(text) == nights


@pytest.mark.parametrize("text", ["", "28h", "0d", "-3", "400d"])
def test_bad_window_lengths_are_refused_by_name(text: str) -> None:
    """A window that is not 1..365 nights is a clear error."""
    with pytest.raises(ConfigError, match="window"):
        parse_window(text)


def test_nights_are_local_and_the_default_window_ends_with_the_last_night_that_is_over() -> None:
    """At 05:00 local the night is still going on; at 07:00 it is over."""
    tz = "Asia/Shanghai"
    before = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.UTC)  # 05:00 on the 21st in Shanghai
    after = dt.datetime(2026, 11, 20, 23, 0, tzinfo=dt.UTC)  # 07:00 on the 21st
    assert Window.ending(None, 28, tz, now=before).last_night == dt.date(2026, 11, 19)
    window = Window.ending(None, 28, tz, now=after)
    assert window.last_night == dt.date(2026, 11, 20)
    assert len(window.days) == 28 and window.first_night == dt.date(2026, 10, 24)
    assert window.start == dt.datetime(2026, 10, 23, 22, 0, tzinfo=dt.UTC)
    assert window.end == dt.datetime(2026, 11, 20, 22, 0, tzinfo=dt.UTC)
    assert window.describe()["end"] == "2026-11-21"


def test_parameters_are_checked_and_unknown_names_refused(tmp_path: Path) -> None:
    """A config file overrides by name; a typo or a wrong type names the parameter."""
    path = tmp_path / "analytics.json"
    path.write_text(json.dumps({"flag_confidence": 0.95, "utility_kinds": ["water"]}),
                    encoding="utf-8")
    config = AnalyticsConfig.from_file(path)
    assert (config.flag_confidence, config.utility_kinds) == (0.95, ("water",))
    for bad, message in (({"flag_confidense": 0.9}, "unknown analytics parameter"),
                         ({"window_nights": "28"}, "window_nights='28': must be a whole number"),
                         ({"flag_confidence": 1.5}, "flag_confidence=1.5"),
                         # A zone's placement may not ask for more than a flat's own flag.
                         ({"zone_flag_confidence": 0.95}, "zone_flag_confidence=0.95"),
                         ({"zone_flag_lead": 0.5}, "zone_flag_lead=0.5: must be at least 1"),
                         ({"utility_kinds": ["steam"]}, "unknown kind"),
                         ({"interval_self_coverage_wifi_only": 1.0},
                          "interval_self_coverage_wifi_only=1.0: must be 0.5..0.99")):
        with pytest.raises(ConfigError, match=message):
            AnalyticsConfig.from_mapping(bad)


def test_heatmaps_count_people_like_devices_per_place_by_hour_and_night(tmp_path: Path) -> None:
    """Two people at one unit AP show as 2 at 03:00; the plug is not counted; files written."""
    window = Window(last_night=dt.date(2026, 11, 10), nights=3, timezone="Asia/Shanghai")
    routines = [Routine("a", "ap-a", home=18.0, leave=8.0, jitter_min=0),
                Routine("b", "ap-a", home=20.0, leave=7.0, jitter_min=0),
                Routine("plug", "ap-a", always=True)]
    presence = rollup_events(make_events(routines, window), window)
    devices = pd.DataFrame({"device": presence["device"].unique()})
    devices["home_ap"] = "ap-a"
    devices["class"] = ["infrastructure" if d == presence.loc[presence["bins"].idxmax(), "device"]
                        else "resident" for d in devices["device"]]
    aps = pd.DataFrame({"ap": ["ap-a"], "coverage": ["unit"], "community": ["C1"],
                        "building": ["B1"], "floor": pd.array([3], dtype="Int64"),
                        "unit": ["C1/B1/0301"]})
    units = pd.DataFrame({"unit": ["C1/B1/0301", "C1/B1/0302"], "community": ["C1", "C1"],
                          "building": ["B1", "B1"], "floor": [3, 3]})
    maps = build_heatmaps(presence, packed_masks(presence["mask"]), devices, aps, units, window,
                          AnalyticsConfig())
    assert maps["unit_by_hour"].loc["C1/B1/0301", 3] == pytest.approx(2.0)
    assert maps["unit_by_hour"].loc["C1/B1/0301", 12] == 0.0
    # 0302 has no AP: no data (NaN), which is not 'nobody' (0).
    assert maps["unit_by_hour"].loc["C1/B1/0302"].isna().all()
    assert maps["floor_by_night"].loc["C1/B1/3"].tolist() == [2.0, 2.0, 2.0]
    assert list(maps["building_by_night"].columns) == [d.isoformat() for d in window.days]
    files = write_heatmaps(maps, tmp_path / "heatmaps", title="C1")
    assert set(files) >= {"unit_by_hour.csv", "unit_by_hour.json", "unit_by_hour/C1_B1.png"}
    document = json.loads(Path(files["floor_by_hour.json"]).read_text(encoding="utf-8"))
    assert document["rows"] == ["C1/B1/3"] and len(document["values"][0]) == 24
    assert Path(files["building_by_night/part01.png"]).read_bytes()[:4] == b"\x89PNG"
    unit_json = json.loads(Path(files["unit_by_night.json"]).read_text(encoding="utf-8"))
    assert unit_json["values"][1] == [None, None, None]  # no data is null, not 0


def environment(settings: Settings) -> dict[str, str]:
    """WIFI_CENSUS_* variables reproducing the test's settings for the CLI."""
    return environment_of(settings)


def six_in_0102_two_in_0101(settings: Settings, influx: TimeSeriesStore,
                            factory: sessionmaker[Session], tmp_path: Path) -> dt.date:
    """The test registry and eight nights ending today: six people living in C1/B1/0102 (one
    registered), two in 0101; today's date."""
    import_registry(factory, IdentityCipher.from_settings(settings), tmp_path)
    today = dt.datetime.now(settings.tz).date()
    window = Window.ending(today, 8, settings.timezone)
    with session_scope(factory) as session:
        aps = load_registry(session).aps
    write_raw(influx, make_events(household("ap-0102", 6, "g") + household("ap-0101", 2, "f"),
                                  window), aps)
    return today


def test_analytics_run_prints_a_summary_table_and_json(
        settings: Settings, influx: TimeSeriesStore, sqlite_session_factory: sessionmaker[Session],
        tmp_path: Path) -> None:
    """`wifi-census analytics run` over a window ending today: table, then --json."""
    today = six_in_0102_two_in_0101(settings, influx, sqlite_session_factory, tmp_path)
    env = environment(settings)
    runner = CliRunner()
    args = ["analytics", "run", "--window", "8d", "--end", today.isoformat(),
            "--out", str(tmp_path / "out")]
    table = runner.invoke(main, args, env=env)
    assert table.exit_code == 0, table.output
    assert "C1/B1/0102" in table.stdout and "key" in table.stdout
    assert "units       6 analysed" in table.stdout
    assert "rolling up nights" in table.stderr
    result = runner.invoke(main, [*args, "--json", "--no-deliver"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["window"]["nights"] == 8 and report["window"]["end"] == today.isoformat()
    assert [f["unit"] for f in report["flags"] if f["tier"] == "key"] == ["C1/B1/0102"]
    assert report["delivery"] is None and report["rollup"]["days_rolled"] == 0
    assert Path(report["report_path"]).exists()
    assert "units" not in report  # the flags only, unless every unit is asked for


def test_analytics_run_json_can_emit_every_unit_with_the_documented_columns(
        settings: Settings, influx: TimeSeriesStore, sqlite_session_factory: sessionmaker[Session],
        tmp_path: Path) -> None:
    """--json --all-units lists every unit, flagged or not, with the columns of contracts §5."""
    from analytics.pipeline import UNIT_OUTPUT_COLUMNS

    today = six_in_0102_two_in_0101(settings, influx, sqlite_session_factory, tmp_path)
    args = ["analytics", "run", "--window", "8d", "--end", today.isoformat(), "--json",
            "--all-units", "--no-deliver", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args, env=environment(settings))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    units = {u["unit"]: u for u in report["units"]}
    assert len(units) == report["units_analysed"] == 6
    assert all(list(u) == UNIT_OUTPUT_COLUMNS for u in units.values())
    assert units["C1/B1/0102"]["flag"] == "group_rental" and units["C1/B1/0102"]["tier"] == "key"
    unflagged = [u for u in units.values() if u["flag"] == ""]
    assert len(unflagged) == 5 and all(u["tier"] == "normal" for u in unflagged)
    assert all(u["low"] <= u["estimated"] <= u["high"] for u in units.values())
    contracts = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = contracts.split("**Per-unit estimates**", 1)[1].split("\n\n", 2)[1]
    documented = [line.split("|")[1].strip().strip("`") for line in section.splitlines()[2:]]
    assert documented == UNIT_OUTPUT_COLUMNS
    refused = CliRunner().invoke(main, ["analytics", "run", "--all-units"],
                                 env=environment(settings))
    assert refused.exit_code == 2 and "--json" in refused.output


def test_analytics_run_refuses_a_bad_window_naming_it(settings: Settings) -> None:
    """A bad --window is a usage error, not a traceback."""
    result = CliRunner().invoke(main, ["analytics", "run", "--window", "28h"],
                                env=environment(settings))
    assert result.exit_code == 2
    assert "window '28h'" in result.output


def test_an_unreachable_influxdb_is_a_clear_error(settings: Settings) -> None:
    """The run stops with the store named, not a traceback."""
    env = environment(settings)
    env["WIFI_CENSUS_INFLUX_URL"] = "http://127.0.0.1:1"
    result = CliRunner().invoke(main, ["analytics", "run", "--window", "2d"], env=env)
    assert result.exit_code == 1
    assert "InfluxDB" in result.output and "Traceback" not in result.output


def test_masks_are_unchanged_by_packing_many_rows() -> None:
    """packed_masks handles chunks."""
    rng = np.random.default_rng(1)
    bits = rng.random((7, 288)) > 0.5
    masks = pd.Series([np.packbits(b).tobytes().hex() for b in bits])
    assert (np.unpackbits(packed_masks(masks, chunk=3), axis=1).astype(bool) == bits).all()


def test_the_parameters_file_can_come_from_the_settings(
        settings: Settings, influx: TimeSeriesStore, tmp_path: Path) -> None:
    """WIFI_CENSUS_ANALYTICS_CONFIG is read when --config is not given; a wrong one is named."""
    parameters = tmp_path / "analytics.json"
    parameters.write_text(json.dumps({"window_nights": 3}))
    env = environment(settings)
    env["WIFI_CENSUS_ANALYTICS_CONFIG"] = str(parameters)
    args = ["analytics", "run", "--json", "--no-deliver", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["window"]["nights"] == 3
    parameters.write_text(json.dumps({"flag_confidense": 0.9}))
    refused = CliRunner().invoke(main, args, env=env)
    assert refused.exit_code == 2 and "flag_confidense" in refused.output
    env["WIFI_CENSUS_ANALYTICS_CONFIG"] = str(tmp_path / "missing.json")
    missing = CliRunner().invoke(main, args, env=env)
    assert missing.exit_code == 2 and "WIFI_CENSUS_ANALYTICS_CONFIG" in missing.output


def test_hour_night_cells_pack_and_unpack_with_no_data_apart_from_zero() -> None:
    """A night without data comes back None, an empty night as zeros; tenths are kept."""
    from analytics.heatmaps import pack_hour_night, unpack_hour_night

    nights: list[list[float] | None] = [[0.0] * 24, None, [1.5] * 12 + [3.0] * 12]
    assert unpack_hour_night(pack_hour_night(nights)) == nights
    assert unpack_hour_night(pack_hour_night([[99.0] * 24])) == [[25.4] * 24]
    assert unpack_hour_night("") == []
