"""The nightly roll-up: pure step on inline events, and the InfluxDB round trip."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.config import AnalyticsConfig, Window
from analytics.rollup import (
    RollupStore,
    infer_cadence,
    pack_mask,
    rollup_events,
    unpack_masks,
)
from tests.common import APS_CSV, Routine, make_events, recent_last_night, write_raw
from timeseries import TimeSeriesStore
from timeseries.schema import MEASUREMENT_DAILY

WINDOW = Window(last_night=dt.date(2026, 11, 1), nights=2, timezone="Asia/Shanghai")
DAY0 = WINDOW.start.timestamp()  # 2026-10-31 06:00 +08:00, the first night's census day


def events(rows: list[tuple[float, str, str, str, float]]) -> pd.DataFrame:
    """Events frame from (seconds after the window start, ap, event, device, rssi)."""
    return pd.DataFrame({
        "ts": [DAY0 + r[0] for r in rows], "ap": [r[1] for r in rows],
        "event": [r[2] for r in rows], "device": [r[3] for r in rows],
        "rssi": [r[4] for r in rows], "randomized": [False] * len(rows),
    })


def bits_of(row: pd.Series) -> np.ndarray:
    """The presence bits of one roll-up row."""
    return unpack_masks([row["mask"]])[0]


def test_consecutive_snapshots_form_one_stay_and_mark_their_bins() -> None:
    """Four snapshots five minutes apart mark four bins; sightings and signal are summarised."""
    frame = rollup_events(events([(i * 300, "ap1", "snapshot", "d1", -50 - i) for i in range(4)]),
                          WINDOW)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert list(np.flatnonzero(bits_of(row))) == [0, 1, 2, 3]
    assert (row["bins"], row["samples"]) == (4, 4)
    assert row["rssi_mean"] == pytest.approx(-51.5)
    assert row["rssi_max"] == -50
    assert (row["first_s"], row["last_s"]) == (int(DAY0), int(DAY0 + 900))
    assert row["day"] == dt.date(2026, 10, 31)


def test_each_aps_cadence_is_inferred_from_its_snapshot_rounds_despite_losses() -> None:
    """600 s rounds with some lost give 600; 300 s rounds on another AP give 300."""
    slow = [(k * 600, "slow", "snapshot", "d1", -50) for k in range(40) if k not in (5, 6, 20)]
    slow += [(k * 600, "slow", "snapshot", "d2", -55) for k in range(10)]  # same rounds
    fast = [(k * 300, "fast", "snapshot", "d3", -50) for k in range(40) if k % 7 != 3]
    few = [(k * 900, "few", "snapshot", "d4", -50) for k in range(5)]
    cadence = infer_cadence(events(slow + fast + few))
    assert cadence.to_dict() == {"fast": 300.0, "slow": 600.0}


def test_at_a_600_s_cadence_a_lost_snapshot_neither_splits_a_stay_nor_ends_it_early() -> None:
    """Rounds every 600 s, one lost: one stay, every bin from the first to the last round's."""
    rows = [(k * 600, "ap1", "snapshot", "d1", -50) for k in range(30) if k != 12]
    row = rollup_events(events(rows), WINDOW).iloc[0]
    # 29 rounds cover 0..17,400 s, and the last round stands for the 600 s after it.
    assert list(np.flatnonzero(bits_of(row))) == list(range(0, 60))


def test_a_disconnect_ends_the_stay_exactly_even_at_a_slow_cadence() -> None:
    """No extension after a disconnect: the station said it left."""
    rows = [(k * 600, "ap1", "snapshot", "d1", -50) for k in range(25)]
    rows.append((24 * 600 + 10, "ap1", "disconnect", "d1", -50))
    row = rollup_events(events(rows), WINDOW).iloc[0]
    assert list(np.flatnonzero(bits_of(row))) == list(range(0, 49))


def test_a_missed_snapshot_does_not_split_a_stay_but_an_absence_does() -> None:
    """A 10-minute gap is filled (one lost snapshot); a 30-minute gap is an absence."""
    rows = [(0, "ap1", "snapshot", "d1", -50), (600, "ap1", "snapshot", "d1", -50),
            (2400, "ap1", "snapshot", "d1", -50)]
    row = rollup_events(events(rows), WINDOW).iloc[0]
    assert list(np.flatnonzero(bits_of(row))) == [0, 1, 2, 8]


def test_a_disconnect_ends_the_stay() -> None:
    """After a disconnect the next sighting starts a new stay even if it comes soon."""
    rows = [(0, "ap1", "connect", "d1", np.nan), (300, "ap1", "disconnect", "d1", np.nan),
            (900, "ap1", "connect", "d1", np.nan)]
    row = rollup_events(events(rows), WINDOW).iloc[0]
    assert list(np.flatnonzero(bits_of(row))) == [0, 1, 3]
    assert np.isnan(row["rssi_mean"])


def test_probes_say_nothing_about_where_a_device_sleeps() -> None:
    """Probe requests are left out of the roll-up."""
    rows = [(0, "ap1", "probe", "d1", -70), (300, "ap1", "probe", "d1", -70)]
    assert rollup_events(events(rows), WINDOW).empty


def test_devices_and_aps_get_their_own_rows_and_days_split_at_six() -> None:
    """A stay across 06:00 local is split between the two census days."""
    day_len = 86400
    rows = [(day_len - 600, "ap1", "snapshot", "d1", -50), (day_len - 300, "ap1", "snapshot",
                                                            "d1", -50),
            (day_len, "ap1", "snapshot", "d1", -50), (100, "ap2", "snapshot", "d1", -70),
            (100, "ap1", "snapshot", "d2", -60)]
    frame = rollup_events(events(rows), WINDOW)
    keyed = {(r.day, r.ap, r.device): r for r in frame.itertuples(index=False)}
    first, second = dt.date(2026, 10, 31), dt.date(2026, 11, 1)
    assert set(keyed) == {(first, "ap1", "d1"), (second, "ap1", "d1"), (first, "ap2", "d1"),
                          (first, "ap1", "d2")}
    assert keyed[(dt.date(2026, 10, 31), "ap1", "d1")].bins == 2  # bins 286 and 287
    assert keyed[(dt.date(2026, 11, 1), "ap1", "d1")].bins == 1


def test_events_outside_the_window_are_ignored() -> None:
    """Only the window's census days are rolled up."""
    rows = [(-300, "ap1", "snapshot", "d1", -50), (2 * 86400 + 10, "ap1", "snapshot", "d1", -50)]
    assert rollup_events(events(rows), WINDOW).empty


def test_masks_pack_and_unpack() -> None:
    """A mask survives hex packing."""
    bits = np.zeros(288, dtype=bool)
    bits[[0, 7, 8, 143, 287]] = True
    assert (unpack_masks([pack_mask(bits)])[0] == bits).all()


def test_rollup_in_influxdb_is_incremental_and_round_trips(influx: TimeSeriesStore) -> None:
    """Raw points in the contract schema roll up once; loading returns the same rows."""
    window = Window(last_night=recent_last_night(), nights=3, timezone="Asia/Shanghai")
    routines = [Routine("a", "ap-0101"), Routine("b", "ap-0102", rssi=-65),
                Routine("c", "ap-b2-f2", home=20.0)]
    raw = make_events(routines, window)
    aps = pd.read_csv(pd.io.common.StringIO(APS_CSV), dtype={"unit": str})
    aps["unit"] = aps.apply(lambda r: f"{r.community}/{r.building}/{r.unit}"
                            if isinstance(r.unit, str) else "", axis=1)
    aps = aps.rename(columns={"ap_id": "ap"})
    write_raw(influx, raw, aps)
    rollups = RollupStore(influx, AnalyticsConfig())
    first = rollups.ensure(window)
    assert (first.days_rolled, first.raw_points) == (3, len(raw))
    again = rollups.ensure(window)
    assert (again.days_rolled, again.days_current) == (0, 3)
    loaded = rollups.load(window)
    expected = rollup_events(raw, window)
    key = ["day", "ap", "device"]
    merged = loaded.merge(expected, on=key, suffixes=("", "_expected"))
    assert len(merged) == len(expected) == len(loaded)
    assert (merged["mask"] == merged["mask_expected"]).all()
    assert (merged["bins"] == merged["bins_expected"]).all()
    assert set(loaded.loc[loaded["ap"] == "ap-0101", "unit"]) == {"C1/B1/0101"}
    assert set(loaded.loc[loaded["ap"] == "ap-b2-f2", "floor"]) == {"2"}
    only_b2 = rollups.load(window, community="C1")
    assert len(only_b2) == len(loaded)
    assert rollups.load(window, community="C9").empty


def test_recompute_replaces_a_day_without_leaving_stale_rows(influx: TimeSeriesStore) -> None:
    """Rolling a day up again deletes its old rows first."""
    window = Window(last_night=recent_last_night(), nights=1, timezone="Asia/Shanghai")
    rollups = RollupStore(influx, AnalyticsConfig())
    stale = rollup_events(make_events([Routine("gone", "ap-0101")], window), window)
    for column in ("community", "building", "floor", "unit"):
        stale[column] = "x"
    rollups.write_rollup(stale, window)
    assert len(influx.query(f'SELECT device FROM "{MEASUREMENT_DAILY}" GROUP BY *')) == len(stale)
    rollups.ensure(window, recompute=True)
    assert rollups.load(window).empty


def test_a_night_that_is_not_over_is_not_rolled_up(influx: TimeSeriesStore) -> None:
    """The window's last night is skipped while it is still going on."""
    window = Window(last_night=recent_last_night(), nights=1, timezone="Asia/Shanghai")
    report = RollupStore(influx).ensure(window, now=window.end - dt.timedelta(hours=1))
    assert (report.days_rolled, report.days_current) == (0, 0)


def test_a_night_that_receives_late_data_is_rolled_up_again(influx: TimeSeriesStore) -> None:
    """Rolled up right after it ended, then a spool drains into it: the next run redoes it."""
    window = Window(last_night=recent_last_night(), nights=1, timezone="Asia/Shanghai")
    aps = pd.DataFrame({"ap": ["ap-0101"], "coverage": ["unit"], "community": ["C1"],
                        "building": ["B1"], "floor": [1], "unit": ["C1/B1/0101"]})
    write_raw(influx, make_events([Routine("early", "ap-0101")], window), aps)
    rollups = RollupStore(influx, AnalyticsConfig(rollup_settle_hours=24 * 365))
    assert rollups.ensure(window).days_rolled == 1
    assert rollups.ensure(window).days_rolled == 0  # nothing new: checked, left alone
    write_raw(influx, make_events([Routine("late", "ap-0101", home=20.0)], window), aps)
    again = rollups.ensure(window)
    assert again.days_rolled == 1
    assert rollups.load(window)["device"].nunique() == 2
    settled = RollupStore(influx, AnalyticsConfig(rollup_settle_hours=0))
    assert settled.ensure(window).days_current == 1
