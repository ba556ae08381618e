"""Randomized address linking on tiny roll-up frames."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from analytics.config import AnalyticsConfig, Window
from analytics.linking import apply_links, link_addresses
from analytics.rollup import unpack_masks
from tests.common import rollup_row

WINDOW = Window(last_night=dt.date(2026, 11, 10), nights=10, timezone="Asia/Shanghai")
START = WINDOW.start.timestamp()
END = WINDOW.end.timestamp()
DAY = 86400


def row(device: str, day: int, ap: str = "ap1", bins: range = range(150, 280),
        randomized: bool = True, first: float | None = None,
        last: float | None = None) -> dict[str, object]:
    """One roll-up row of this file's window."""
    return rollup_row(WINDOW, device, day, ap, bins, randomized=randomized, first=first,
                      last=last)


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows as a roll-up frame."""
    return pd.DataFrame(rows)


def no_bindings() -> pd.DataFrame:
    """An empty bindings frame."""
    return pd.DataFrame(columns=["device", "unit", "resident_id", "randomized", "bound_at",
                                 "revoked_at"])


def test_a_rotation_while_associated_links_old_and_new_address() -> None:
    """Address a stops and b appears on the same AP seconds later: one logical device."""
    rows = [row("a", d) for d in range(4)] + [row("a", 4, bins=range(150, 200))]
    rows += [row("b", 4, bins=range(200, 280))] + [row("b", d) for d in range(5, 10)]
    links = link_addresses(frame(rows), no_bindings(), START, END)
    by = links.set_index("device")
    assert by.at["a", "logical"] == by.at["b", "logical"] == "a"
    assert by.at["b", "link"] == "inferred"
    assert by.at["a", "link"] == "none"


def test_a_new_address_after_the_owner_comes_home_links_when_the_rhythm_agrees() -> None:
    """A gap of hours (rotation while away) links if the daily rhythm is the same."""
    rows = [row("a", d) for d in range(5)] + [row("b", d) for d in range(5, 10)]
    links = link_addresses(frame(rows), no_bindings(), START, END).set_index("device")
    assert links.at["b", "logical"] == "a"


def test_addresses_seen_at_the_same_time_are_never_linked() -> None:
    """Two phones in the same flat are two devices, whatever their rhythm."""
    rows = [row("a", d) for d in range(10)] + [row("b", d) for d in range(3, 10)]
    links = link_addresses(frame(rows), no_bindings(), START, END).set_index("device")
    assert links.at["a", "logical"] != links.at["b", "logical"]


def test_addresses_on_different_aps_are_not_linked() -> None:
    """Linking is per AP: a neighbour's new address is not this phone's."""
    rows = [row("a", d) for d in range(5)] + [row("b", d, ap="ap2") for d in range(5, 10)]
    links = link_addresses(frame(rows), no_bindings(), START, END).set_index("device")
    assert links.at["b", "logical"] == "b"


def test_a_different_rhythm_is_not_linked_after_a_long_gap() -> None:
    """An evening visitor appearing a day after a phone left is not that phone."""
    rows = [row("a", d) for d in range(4)]
    rows += [row("v", d, bins=range(130, 150)) for d in range(6, 9)]
    links = link_addresses(frame(rows), no_bindings(), START, END).set_index("device")
    assert links.at["v", "logical"] == "v"


def test_hardware_addresses_do_not_rotate() -> None:
    """Only randomized addresses are linked by inference."""
    rows = [row("a", d, randomized=False) for d in range(5)]
    rows += [row("b", d, randomized=False) for d in range(5, 10)]
    links = link_addresses(frame(rows), no_bindings(), START, END).set_index("device")
    assert links.at["b", "logical"] == "b"


def test_a_resident_rebinding_a_new_address_is_a_certain_link() -> None:
    """Sign-in bindings link addresses of one resident that never overlapped, across APs."""
    rows = [row("a", d) for d in range(3)] + [row("b", d, ap="ap2") for d in range(6, 10)]
    rows += [row("c", d) for d in range(10)]  # bound too, but seen with a: another device
    bindings = pd.DataFrame({
        "device": ["a", "b", "c"], "unit": ["C1/B1/0101"] * 3, "resident_id": [7, 7, 7],
        "randomized": [True, True, True],
        "bound_at": [dt.datetime(2026, 11, d, tzinfo=dt.UTC) for d in (1, 6, 1)],
        "revoked_at": [None, None, None]})
    links = link_addresses(frame(rows), bindings, START, END).set_index("device")
    assert links.at["b", "logical"] == "a"
    assert links.at["b", "link"] == "certain"
    assert links.at["c", "logical"] == "c"


def test_applying_links_merges_a_mid_day_rotation_into_one_row() -> None:
    """Two addresses of one device on one day become one row with the union of presence."""
    rows = [row("a", 0, bins=range(150, 200)), row("b", 0, bins=range(200, 280))]
    rows += [row("b", d) for d in range(1, 10)]
    rollup = frame(rows)
    links = link_addresses(rollup, no_bindings(), START, END, AnalyticsConfig())
    merged = apply_links(rollup, links)
    day0 = merged.loc[merged["day"] == WINDOW.days[0]]
    assert len(day0) == 1
    assert day0.iloc[0]["device"] == "a"
    assert day0.iloc[0]["bins"] == 130
    assert unpack_masks([day0.iloc[0]["mask"]])[0][150:280].all()
    assert merged["device"].nunique() == 1


def mass_rotation(levels: dict[str, float], rejoin: dict[str, int]) -> list[dict[str, object]]:
    """Stations on one AP, all dropped by a reboot on day 4 and back under new addresses.

    ``levels``: each station's signal (dBm); ``rejoin``: the bin each re-appears in, as its
    new address ``<name>2`` (the AP's re-join order has nothing to do with who is who).
    """
    reboot = START + 4 * DAY + 200 * 300
    rows: list[dict[str, object]] = []
    for name, level in levels.items():
        old = [row(f"{name}1", d) for d in range(4)]
        old.append(row(f"{name}1", 4, bins=range(150, 200), last=reboot))
        back = rejoin[name]
        new = [row(f"{name}2", 4, bins=range(back, 280), first=START + 4 * DAY + back * 300)]
        new += [row(f"{name}2", d) for d in range(5, 10)]
        for item in (*old, *new):
            item["rssi_mean"] = level
        rows += old + new
    return rows


def test_a_mass_rotation_is_matched_by_signal_not_by_who_rejoined_first() -> None:
    """Four stations of one AP re-join after a reboot in another order: each finds its own."""
    levels = {"p": -42.0, "q": -50.0, "r": -58.0, "s": -66.0}
    rejoin = {"p": 203, "q": 202, "r": 201, "s": 200}  # shortest gap would pair p1 with s2
    links = link_addresses(frame(mass_rotation(levels, rejoin)), no_bindings(), START,
                           END).set_index("device")
    for name in levels:
        assert links.at[f"{name}2", "logical"] == f"{name}1"
        assert links.at[f"{name}2", "link"] == "inferred"


def test_stations_that_cannot_be_told_apart_after_a_reboot_stay_unlinked() -> None:
    """Two stations at the same signal and rhythm: either pairing is a guess, so neither."""
    levels = {"p": -42.0, "q": -55.0, "t": -70.0, "u": -70.4}
    rejoin = {"p": 201, "q": 200, "t": 202, "u": 201}
    links = link_addresses(frame(mass_rotation(levels, rejoin)), no_bindings(), START,
                           END).set_index("device")
    assert links.at["p2", "logical"] == "p1" and links.at["q2", "logical"] == "q1"
    for name in ("t2", "u2"):
        assert links.at[name, "logical"] == name
        assert links.at[name, "link"] == "none"
