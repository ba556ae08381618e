"""Analytics parameters and the analysis window (local nights).

Every threshold the estimator uses is a field of ``AnalyticsConfig`` with its default and the
reason for it, so the method in docs/analytics.md and the code cannot drift apart. A JSON file
(``wifi-census analytics run --config FILE``) overrides any field by name; an unknown name or a
value of the wrong type is refused with the field named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

BIN_SECONDS = 300  # the contract's default snapshot interval: one bin per snapshot
BINS_PER_DAY = 24 * 3600 // BIN_SECONDS  # 288
MASK_BYTES = BINS_PER_DAY // 8  # 36
DAY_START_HOUR = 6  # a census day runs 06:00 to 06:00 local, so one night is never split

DEFAULT_HAZARDS_PATH = Path(__file__).resolve().parent / "hazards.json"


class ConfigError(ValueError):
    """An analytics parameter is unknown or has an unusable value."""


@dataclass(frozen=True)
class AnalyticsConfig:
    """Parameters of the occupancy estimator, flags and tiers (see docs/analytics.md)."""

    # --- window -------------------------------------------------------------------------------
    window_nights: int = 28
    # Local hours counted as "night" (sleep); a day runs 06:00->06:00 so 00:00-05:00 is whole.
    night_start_hour: int = 0
    night_end_hour: int = 5
    # --- presence stays (roll-up) -------------------------------------------------------------
    # Two sightings further apart than this start a new stay (2.5 snapshot intervals: one lost
    # snapshot does not split a stay, a real absence of 15 minutes does).
    max_gap_s: int = 750
    # Each AP's own snapshot cadence is inferred from its data (the contract lets it be
    # anything; 300 s and 600 s are both common): the stay gap is this many of its intervals
    # (one lost snapshot never splits a stay). ``max_gap_s`` is the floor, and the gap when an
    # AP has too few snapshots to tell its cadence.
    max_gap_intervals: float = 2.5
    # A night rolled up this soon after it ended is checked again at the next run: a collector
    # draining its spool after an InfluxDB outage may still have been writing it.
    rollup_settle_hours: int = 6
    # --- resident / visitor / infrastructure --------------------------------------------------
    min_night_bins: int = 24  # 2 h inside the night window makes a "night present"
    min_stay_bins: int = 60  # 5 h in a day makes a "stay day" (covers night-shift sleepers)
    resident_min_days: int = 7  # fewer stay days than this is a visitor or guest
    resident_min_fraction: float = 0.35  # ... or fewer than this share of observed days
    # People who stayed together: a count of people (resident persons and other addresses,
    # each with a stay day) present together at one AP holds once reached on this many days.
    # Phones that take a new address at each reconnect or AP reboot are split into fragments
    # of a few days that never reach ``resident_min_days``, but each fragment still stays
    # there; a guest stays a day or two, not this many.
    together_min_days: int = 4
    # Always-on devices: present in nearly every bin and never away for an hour.
    infra_min_presence: float = 0.93
    infra_max_away_days: float = 0.15
    # A resident seen on this many days that never joined its building's lobby AP, while a
    # housemate's device did, stays home: a laptop, tablet, TV or second phone (not a person).
    home_device_min_days: int = 7
    # --- neighbours' bleed and corridor APs ---------------------------------------------------
    bleed_rssi_margin_db: float = 8.0  # weaker than its best AP by this much: bled, not home
    # A device inside the flat of its AP is rarely weaker than about -70 dBm; through a wall or
    # floor it loses 10-20 dB. At a unit AP, a device whose typical signal is this weak lives
    # next door (e.g. in a flat without its own AP), whatever its rhythm.
    weak_rssi_dbm: float = -76.0
    # --- randomized address linking -----------------------------------------------------------
    # A new address may appear the moment the old one leaves (rotation while associated) or when
    # the owner comes home, even after a trip: up to three days, if the daily rhythm agrees.
    link_max_gap_s: int = 3 * 86400
    link_min_similarity: float = 0.55  # hour-of-day rhythm similarity for a slow link
    # Inferred links are chosen per AP by one global assignment on the evidence that two
    # addresses are one device (gap, signal level, rhythm: a log-likelihood ratio in nats). A
    # link needs ``link_min_evidence`` and must beat the next-best candidate of either address
    # by ``link_margin``: after a mass rotation (an AP reboot) ambiguous pairs stay unlinked.
    link_min_evidence: float = 0.0
    link_margin: float = 1.0
    # --- devices to people --------------------------------------------------------------------
    same_person_min_score: float = 0.80  # co-movement score to merge devices into one person
    # Prior for people the Wi-Fi cannot see (children without phones, elderly without a
    # smartphone): the chance that a person living in the unit shows up as a device cluster.
    detect_probability: float = 0.88
    # How much that chance varies between households (Beta concentration; larger: less).
    # Households differ: some adults have no Wi-Fi device, some are away on trips or night
    # shifts. A fixed chance made "registered 5, seen 2" near impossible and overrode the
    # registry. 0 would be nonsense; very large is the plain binomial.
    detect_concentration: float = 8.0
    # Fit the chance to the district (units with their own AP), never below this floor.
    detect_fit: bool = True
    detect_probability_min: float = 0.6
    detect_fit_min_units: int = 30
    # Extra device clusters that are not people (a second phone, a tablet left home) per unit.
    spurious_clusters_mean: float = 0.08
    # Prior on (true - registered) people: mostly 0; some +1; a long tail of group rentals.
    prior_match: float = 0.78
    prior_empty: float = 0.05
    prior_plus_one: float = 0.09
    prior_fewer: float = 0.04
    prior_group_rental: float = 0.04
    # The district's fitted prior weights stay within this factor of the defaults above.
    prior_fit_max_ratio: float = 2.0
    max_people: int = 40
    # The reported interval is a 90% interval: per district, the central posterior mass whose
    # intervals hold this share of the units' own posterior mass on average
    # (``people.district_interval_mass``), chosen by conformal calibration on development
    # communities so that 90% of their occupied units were covered (``analytics calibrate``).
    # See docs/analytics.md "Interval calibration" (68 development communities: 0.935).
    interval_self_coverage: float = 0.935
    # The same for a district analysed without meter evidence (no readings imported, or the
    # meters' fitted weight 0): Wi-Fi posteriors are sure of themselves to a different
    # degree, and with the meters' value their intervals covered 92.6% on the development
    # communities and 93.0-93.5% held out (``analytics calibrate --without-meters``).
    interval_self_coverage_wifi_only: float = 0.915
    # Physical capacity: nobody is estimated above area / this (bunk beds leave about 2.5 m²
    # of floor per sleeper; a 40 m² flat holds at most 16). Unknown area: max_people.
    capacity_m2_per_person: float = 2.5
    # --- utility signal -----------------------------------------------------------------------
    utility_kinds: tuple[str, ...] = ("water", "electricity")
    utility_min_peers: int = 5
    utility_area_tolerance: float = 0.35
    utility_weight: float = 1.0  # 0 switches the utility evidence off in the estimate
    # How far the meters are trusted is measured per community, not assumed: the weight in
    # (0, 0.1, ..., utility_weight) under which prior x meters best predicts the people the
    # Wi-Fi counted on units with their own AP (each source checked against the other; no
    # truth needed). Households whose use per person varies widely, and broken or shared
    # meters, then lower the meters' say where they are noisy and only there.
    utility_weight_fit: bool = True
    # Kinds that share the household's habit (water and electricity of a frugal household are
    # both low) are fewer independent readings than there are kinds: their log-likelihoods
    # are scaled by 1 / (1 + (K - 1) rho), rho measured per community (utility.kinds_correlation).
    utility_kinds_shared: bool = True
    # 0 switches the Wi-Fi evidence off (meters and registry only: the accuracy report's
    # "meters only" column); persistence then cannot be measured and is not required.
    wifi_weight: float = 1.0
    # --- flags and tiers ----------------------------------------------------------------------
    flag_confidence: float = 0.90  # P(people >= registered + 2) needed to flag a group rental
    attention_confidence: float = 0.80  # P(people >= registered + 1) for an attention case
    persistence_min_fraction: float = 0.5  # share of observed weeks that must show the excess
    # The Wi-Fi's own say on a group rental, where it has data: P(people >= registered + 2)
    # from the registry prior and the Wi-Fi count alone must reach this. The meters may make
    # the case surer (and, on a corridor, say which flat holds the floor's excess) but never
    # carry a flat's own Wi-Fi over the line: a household's use per person varies with a CV
    # of about 0.5, so a meter far off its peers is often a habit, not a crowd. At 0.5,
    # meters tipped units with one unregistered person into flags (Wi-Fi alone 0.79, with
    # the meters 0.91); on the development communities every true flag's Wi-Fi alone was
    # at least 0.98, so asking it for the flag's own confidence costs them nothing.
    flag_wifi_support: float = 0.9
    # A corridor AP sees its zone's total, not which flat holds it. Where the corridor's Wi-Fi
    # alone puts two extras on one of its k flats (total >= registered + k + 1 at
    # ``flag_wifi_support``), the flat the meters place them on is flagged at this lower
    # confidence, if it is also ``zone_flag_lead`` times as likely as the zone's next flat and
    # its own meters read registered + 2 or more (``flags.placed_in_zone``): the visit is to
    # one corridor, and the unit file says the flat was placed.
    # On the development communities a corridor's likeliest flat at 0.6-0.7 held the group
    # rental about half the time (4 of 7), at 0.7-0.9 five times in six.
    zone_flag_confidence: float = 0.7
    zone_flag_lead: float = 2.0
    min_nights_observed: int = 7
    hazards_path: str = str(DEFAULT_HAZARDS_PATH)
    inspection_lookback_days: int = 180
    # --- delivery -----------------------------------------------------------------------------
    deliver_attention: bool = True  # attention cases go to the registry and alerts too
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3

    def __post_init__(self) -> None:
        """Refuse values the estimator cannot use, naming the field."""
        checks: list[tuple[str, bool, str]] = [
            ("window_nights", 1 <= self.window_nights <= 365, "must be 1..365"),
            ("night_start_hour", 0 <= self.night_start_hour < DAY_START_HOUR,
             f"must be 0..{DAY_START_HOUR - 1} (after midnight, before the day starts)"),
            ("night_end_hour", self.night_start_hour < self.night_end_hour <= DAY_START_HOUR,
             f"must be after night_start_hour and at most {DAY_START_HOUR}"),
            ("max_gap_s", 60 <= self.max_gap_s <= 7200, "must be 60..7200"),
            ("max_gap_intervals", 1.5 <= self.max_gap_intervals <= 10, "must be 1.5..10"),
            ("detect_probability", 0.05 <= self.detect_probability < 1.0, "must be 0.05..<1"),
            ("detect_concentration", self.detect_concentration >= 0.5, "must be at least 0.5"),
            ("flag_confidence", 0.5 <= self.flag_confidence < 1.0, "must be 0.5..<1"),
            ("attention_confidence", 0.5 <= self.attention_confidence < 1.0, "must be 0.5..<1"),
            ("max_people", 5 <= self.max_people <= 500, "must be 5..500"),
            ("capacity_m2_per_person", 0.5 <= self.capacity_m2_per_person <= 50.0,
             "must be 0.5..50"),
            ("prior_fit_max_ratio", self.prior_fit_max_ratio >= 1.0, "must be at least 1"),
            ("wifi_weight", self.wifi_weight in (0.0, 1.0), "must be 0 (off) or 1 (on)"),
            ("utility_weight", 0.0 <= self.utility_weight <= 5.0, "must be 0..5"),
            ("interval_self_coverage", 0.5 <= self.interval_self_coverage <= 0.99,
             "must be 0.5..0.99"),
            ("interval_self_coverage_wifi_only",
             0.5 <= self.interval_self_coverage_wifi_only <= 0.99, "must be 0.5..0.99"),
            ("together_min_days", 1 <= self.together_min_days <= 31,
             "must be 1..31"),
            ("resident_min_fraction", 0.0 <= self.resident_min_fraction <= 1.0, "must be 0..1"),
            ("persistence_min_fraction", 0.0 <= self.persistence_min_fraction <= 1.0,
             "must be 0..1"),
            ("flag_wifi_support", 0.0 <= self.flag_wifi_support < 1.0, "must be 0..<1"),
            ("zone_flag_confidence", 0.5 <= self.zone_flag_confidence <= self.flag_confidence,
             "must be 0.5..flag_confidence"),
            ("zone_flag_lead", self.zone_flag_lead >= 1.0, "must be at least 1"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {reason}")
        priors = (self.prior_match, self.prior_empty, self.prior_plus_one, self.prior_fewer,
                  self.prior_group_rental)
        if any(p < 0 for p in priors) or sum(priors) <= 0:
            raise ConfigError("prior_*: must be non-negative and not all zero")
        unknown = set(self.utility_kinds) - {"water", "electricity", "gas", "heat"}
        if unknown:
            raise ConfigError(f"utility_kinds: unknown kind(s) {sorted(unknown)}")

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> AnalyticsConfig:
        """Load overrides from a JSON object file; refuse unknown names, naming them."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read a JSON object: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object of parameter names to values")
        data.update(overrides)
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> AnalyticsConfig:
        """Build from a name -> value mapping, checking names and types."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in data.items():
            if name in RENAMED:
                raise ConfigError(f"analytics parameter {name!r} is gone: {RENAMED[name]}")
            if name not in known:
                raise ConfigError(f"unknown analytics parameter {name!r}")
            default = getattr(cls(), name)
            values[name] = _coerce(name, raw, default)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON values (recorded with every run)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


# Parameters that were replaced, and what to do about a file that still names them.
RENAMED = {
    "interval_mass": "the interval's mass is now chosen per district from "
                     "interval_self_coverage; run `wifi-census analytics calibrate` to set it",
}


def _coerce(name: str, raw: Any, default: Any) -> Any:
    """Check a JSON value against the type of the field's default."""
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{name}={raw!r}: must be true or false")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{name}={raw!r}: must be a whole number")
        return raw
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"{name}={raw!r}: must be a number")
        return float(raw)
    if isinstance(default, tuple):
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ConfigError(f"{name}={raw!r}: must be a list of strings")
        return tuple(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{name}={raw!r}: must be a string")
    return raw


_DURATION = re.compile(r"\A\s*(\d+)\s*([dw]?)\s*\Z")


def parse_window(text: str) -> int:
    """Parse a window length such as '28d', '4w' or '28' into nights."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"window {text!r}: use a number of nights such as 28d or 4w")
    nights = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    if not 1 <= nights <= 365:
        raise ConfigError(f"window {text!r}: must be 1 to 365 nights")
    return nights


@dataclass(frozen=True)
class Window:
    """The analysis window: ``nights`` local nights, the last one starting on ``last_night``.

    Night ``d`` is the census day from 06:00 local on date ``d`` to 06:00 local the next day.
    """

    last_night: dt.date
    nights: int
    timezone: str = "Asia/Shanghai"
    days: tuple[dt.date, ...] = field(init=False)

    def __post_init__(self) -> None:
        """List the nights."""
        first = self.last_night - dt.timedelta(days=self.nights - 1)
        object.__setattr__(self, "days", tuple(first + dt.timedelta(days=i)
                                               for i in range(self.nights)))

    @property
    def tz(self) -> ZoneInfo:
        """The site's zone."""
        return ZoneInfo(self.timezone)

    @property
    def first_night(self) -> dt.date:
        """The first night of the window."""
        return self.days[0]

    def day_start(self, day: dt.date) -> dt.datetime:
        """When census day ``day`` starts: 06:00 local, as aware UTC."""
        local = dt.datetime.combine(day, dt.time(DAY_START_HOUR), tzinfo=self.tz)
        return local.astimezone(dt.UTC)

    @property
    def start(self) -> dt.datetime:
        """Start of the window (aware UTC)."""
        return self.day_start(self.first_night)

    @property
    def end(self) -> dt.datetime:
        """End of the window, exclusive (aware UTC)."""
        return self.day_start(self.last_night + dt.timedelta(days=1))

    def describe(self) -> dict[str, Any]:
        """The window as the flag record writes it."""
        return {"start": self.first_night.isoformat(),
                "end": (self.last_night + dt.timedelta(days=1)).isoformat(),
                "nights": self.nights, "timezone": self.timezone}

    @classmethod
    def ending(cls, end: dt.date | None, nights: int, timezone: str,
               now: dt.datetime | None = None) -> Window:
        """The window of ``nights`` complete nights ending on the morning of ``end``.

        Without ``end``: the last night that is already over (its census day ended at 06:00).
        """
        tz = ZoneInfo(timezone)
        if end is None:
            local_now = (now or dt.datetime.now(dt.UTC)).astimezone(tz)
            end = local_now.date()
            if local_now.hour < DAY_START_HOUR:
                end -= dt.timedelta(days=1)
        return cls(last_night=end - dt.timedelta(days=1), nights=nights, timezone=timezone)
