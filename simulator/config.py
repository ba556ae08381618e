"""What a simulation run is asked to do, checked up front, and the period it covers.

Every tunable share and rate of the model lives in ``SimulationConfig`` with the default the
documentation (docs/simulator.md) explains; a bad value is refused with the field's name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from census.events import DEFAULT_SNAPSHOT_INTERVAL_S, MAX_SSID_BYTES

TEDA_UNITS = 41_257
TEDA_COMMUNITIES = 114
MAX_UNITS = 100_000
MAX_DAYS = 366
# A simulated day runs from 06:00 to 06:00 local time, so every day holds one whole night and
# the period ends when the last night is complete.
DAY_START_HOUR = 6


class ConfigError(ValueError):
    """A simulation parameter has a value the simulator cannot use."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"{name}={value!r}: {reason}")
        self.name = name


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of one run; the defaults follow TEDA (see docs/simulator.md)."""

    out: Path
    units: int = 200
    days: int = 14
    seed: int = 1
    end: dt.datetime | None = None  # the period ends at the last 06:00 local before this
    start: dt.datetime | None = None  # live runs: the period starts at the last 06:00 before this
    timezone: str = "Asia/Shanghai"
    snapshot_interval: int = DEFAULT_SNAPSHOT_INTERVAL_S
    ssid: str = "Census-Free"
    community_size: int = 362  # TEDA: 41,257 units in 114 communities
    rented_share: float = 0.20  # TEDA: 8,303 of 41,257 units
    group_rental_share: float = 0.0644  # TEDA: 535 of 8,303 rentals
    vacant_share: float = 0.06
    extra_occupant_share: float = 0.10
    fewer_share: float = 0.05
    walkup_share: float = 0.30  # buildings served by one corridor AP per floor
    no_ap_share: float = 0.02  # units in AP-per-unit buildings whose AP is missing
    sniffer_share: float = 0.40  # lobby APs that also report probe requests
    shared_meter_share: float = 0.03
    bleed_share: float = 0.06  # resident devices that sometimes join a neighbour's AP
    outage_rate: float = 0.02  # chance per AP per day of an outage
    visit_rate: float = 0.06  # chance per occupied unit per evening of a visit
    overnight_guest_rate: float = 0.01  # chance per occupied unit per night
    trip_rate: float = 0.10  # chance per adult per 14 days of a trip of 2-7 nights
    # --- harder behaviours (issue 16); all off by default, on in ``hard_mix`` ----------------
    snapshot_loss: float = 0.0  # share of snapshot messages lost on the way
    reboot_rate: float = 0.0  # chance per AP per day of a reboot (every station drops at once)
    reconnect_rotation_share: float = 0.0  # phones/tablets with a new address at each connect
    random_rotation_times: bool = False  # biweekly rotations at any time, not a fixed hour
    home_device_share: float = 0.0  # laptops/tablets that stay home, dozing, woken at night
    second_phone_share: float = 0.0  # adults with a second phone (half carried, half at home)
    deviceless_share: float = 0.0  # adults with no Wi-Fi device at all (cellular only)
    night_shift_share: float = 0.0  # extra chance that a working adult works night shifts
    meter_household_cv: float = 0.0  # per-household spread of use per person (log-normal CV)
    broken_meter_share: float = 0.0  # meters stuck, reading zero, or off by a factor
    # Randomizing devices whose address is new at each re-join after their AP reboots
    # (non-persistent randomization): a reboot is then a mass rotation of the AP's stations.
    reboot_rotation_share: float = 0.0
    # Group rentals whose working residents go in shift groups: several people with one
    # schedule, leaving and coming home together within a few minutes.
    shift_group_share: float = 0.0
    # --- device habits (varied in the "habits" mix; the defaults are the documented ones) --
    watch_share: float | None = None  # adults with a watch (None: 12%, 3% in group rentals)
    second_phone_carried: float = 0.5  # second phones carried (the rest stay home, dozing)
    travelling_tablet_share: float = 0.0  # tablets carried like a phone (not at home)
    night_wifi_off_share: float = 0.05  # phone owners switching Wi-Fi off 23:30-06:30
    # Group rentals that start during the period: all their people arrive on one day between
    # a quarter and half of the way in (how soon a new group rental is flagged).
    group_move_in_share: float = 0.0

    def __post_init__(self) -> None:
        """Refuse values the model cannot use, naming the parameter."""
        _check_int("units", self.units, 1, MAX_UNITS)
        _check_int("days", self.days, 1, MAX_DAYS)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("snapshot_interval", self.snapshot_interval, 10, 86_400)
        _check_int("community_size", self.community_size, 10, 10_000)
        for name in ("rented_share", "group_rental_share", "vacant_share", "extra_occupant_share",
                     "fewer_share", "walkup_share", "no_ap_share", "sniffer_share",
                     "shared_meter_share", "bleed_share", "outage_rate", "visit_rate",
                     "overnight_guest_rate", "trip_rate", "snapshot_loss", "reboot_rate",
                     "reconnect_rotation_share", "home_device_share", "second_phone_share",
                     "deviceless_share", "night_shift_share", "meter_household_cv",
                     "broken_meter_share", "group_move_in_share", "reboot_rotation_share",
                     "shift_group_share", "second_phone_carried", "travelling_tablet_share",
                     "night_wifi_off_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(name, value, "must be a number between 0 and 1")
        if self.watch_share is not None and (
                isinstance(self.watch_share, bool) or not isinstance(self.watch_share, int | float)
                or not 0 <= self.watch_share <= 1):
            raise ConfigError("watch_share", self.watch_share,
                              "must be a number between 0 and 1, or None")
        if self.vacant_share + self.extra_occupant_share + self.fewer_share > 0.9:
            raise ConfigError("vacant_share", self.vacant_share,
                              "vacant + extra_occupant + fewer must leave 10% of units matching")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("timezone", self.timezone, "is not an IANA time zone name") from None
        if not self.ssid or len(self.ssid.encode("utf-8")) > MAX_SSID_BYTES:
            raise ConfigError("ssid", self.ssid, f"must be 1 to {MAX_SSID_BYTES} bytes")
        for name in ("end", "start"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ConfigError(name, value, "must be timezone-aware")
        if self.end is not None and self.start is not None:
            raise ConfigError("start", self.start, "give either start (live) or end, not both")

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)

    def describe(self) -> dict[str, Any]:
        """The parameters as JSON-ready values (for the truth file)."""
        values = asdict(self)
        values["out"] = str(self.out)
        for name in ("end", "start"):
            if values[name] is not None:
                values[name] = values[name].isoformat()
        return values


MIXES = ("default", "hard", "habits")

# The hard mix: the behaviours that broke the estimator on districts it was not developed on
# (issue 16), at the strength seen there. A cadence is chosen separately (300 s or 600 s).
HARD_MIX: dict[str, Any] = {
    "snapshot_loss": 0.05,
    "outage_rate": 0.05,
    "reboot_rate": 0.04,
    "reconnect_rotation_share": 0.15,
    "random_rotation_times": True,
    "home_device_share": 0.6,
    "second_phone_share": 0.15,
    "deviceless_share": 0.08,
    "night_shift_share": 0.12,
    "trip_rate": 0.30,
    "meter_household_cv": 0.5,
    "broken_meter_share": 0.03,
    "shared_meter_share": 0.05,
    "reboot_rotation_share": 1.0,
    "shift_group_share": 0.5,
}

# Device habits the estimator was not developed on, on top of the hard mix: more watches and
# carried second phones, tablets that travel, phones that sleep Wi-Fi at night. Held out.
HABITS_MIX: dict[str, Any] = {
    **HARD_MIX,
    "watch_share": 0.35,
    "second_phone_share": 0.30,
    "second_phone_carried": 0.8,
    "travelling_tablet_share": 0.5,
    "night_wifi_off_share": 0.25,
}


def mix_overrides(mix: str) -> dict[str, Any]:
    """The parameter values of a named behaviour mix ("default": none changed)."""
    if mix not in MIXES:
        raise ConfigError("mix", mix, f"must be one of {', '.join(MIXES)}")
    return {"hard": dict(HARD_MIX), "habits": dict(HABITS_MIX)}.get(mix, {})


def _check_int(name: str, value: object, low: int, high: int) -> None:
    """Refuse a non-integer or out-of-range integer parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(name, value, f"must be a whole number between {low} and {high}")


@dataclass(frozen=True)
class Day:
    """One simulated day: 06:00 local on ``date`` to 06:00 local the next day."""

    index: int
    date: dt.date
    start: int  # Unix seconds
    end: int

    @property
    def length(self) -> int:
        """Seconds in the day (23 or 25 hours across a daylight-saving change)."""
        return self.end - self.start

    @property
    def weekday(self) -> int:
        """Monday 0 ... Sunday 6, of the local date the day starts on."""
        return self.date.weekday()


@dataclass(frozen=True)
class Period:
    """The simulated days, in order."""

    days: tuple[Day, ...] = field(default_factory=tuple)
    timezone: str = "Asia/Shanghai"

    @property
    def start(self) -> int:
        """Unix seconds of the first day's start."""
        return self.days[0].start

    @property
    def end(self) -> int:
        """Unix seconds of the last day's end."""
        return self.days[-1].end


def _day_start(date: dt.date, tz: ZoneInfo) -> int:
    """Unix seconds of 06:00 local on a date."""
    return int(dt.datetime.combine(date, dt.time(DAY_START_HOUR), tzinfo=tz).timestamp())


def last_day_start(moment: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The local date of the latest 06:00 local at or before a moment."""
    local = moment.astimezone(tz)
    date = local.date()
    if _day_start(date, tz) > int(moment.timestamp()):
        date -= dt.timedelta(days=1)
    return date


def simulation_period(config: SimulationConfig, now: dt.datetime | None = None) -> Period:
    """The days a run covers: ending at the last complete night, or (live) starting today."""
    tz = config.tz
    if config.start is not None:
        first = last_day_start(config.start, tz)
    else:
        end = config.end or now or dt.datetime.now(dt.UTC)
        first = last_day_start(end, tz) - dt.timedelta(days=config.days)
    days = []
    for index in range(config.days):
        date = first + dt.timedelta(days=index)
        days.append(Day(index, date, _day_start(date, tz),
                        _day_start(date + dt.timedelta(days=1), tz)))
    return Period(tuple(days), config.timezone)
