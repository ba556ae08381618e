"""Flags and risk tiers from the estimates and the grid workers' inspection findings.

A unit is flagged as a **group rental** (tier *key*) when the posterior probability that at
least ``registered + 2`` people live there reaches ``flag_confidence``, the excess shows in at
least ``persistence_min_fraction`` of the observed weeks, the unit's APs reported on at
least ``min_nights_observed`` nights, and the Wi-Fi alone (registry prior and Wi-Fi count,
without the meters) makes ``registered + 2`` at least ``flag_wifi_support`` likely: meters may
strengthen a group rental the Wi-Fi sees, never create one it does not. On a corridor,
where the Wi-Fi sees the flats' total, the meters may also say which flat holds a group
rental the corridor's Wi-Fi is sure of (``placed_in_zone``). One unregistered
extra person is an **attention** case: ``P(people >= registered + 1) >= attention_confidence``
without the group-rental evidence.
Inspection findings raise the tier by the hazard categories' own tiers (``hazards.json``,
46 categories in the district's list; configurable).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analytics.config import AnalyticsConfig, ConfigError, Window

TIER_ORDER = {"normal": 0, "attention": 1, "key": 2}


@dataclass(frozen=True)
class HazardCategory:
    """One hazard category grid workers record, and the tier a finding of it implies."""

    code: str
    group: str
    name: str
    tier: str
    name_zh: str = ""  # the name grid workers read in Chinese (falls back to ``name``)


def load_hazards(path: Path) -> dict[str, HazardCategory]:
    """Read the hazard catalogue; refuse a malformed one, naming the entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"hazards catalogue {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise ConfigError(f"hazards catalogue {path}: needs a 'categories' list")
    catalogue: dict[str, HazardCategory] = {}
    for index, entry in enumerate(data["categories"]):
        try:
            category = HazardCategory(str(entry["code"]), str(entry["group"]), str(entry["name"]),
                                      str(entry["tier"]), str(entry.get("name_zh", "")))
        except (KeyError, TypeError):
            raise ConfigError(f"hazards catalogue {path}: entry {index} needs code, group, "
                              "name and tier") from None
        if category.tier not in ("key", "attention"):
            raise ConfigError(f"hazards catalogue {path}: {category.code}: tier must be key or "
                              "attention")
        if category.code in catalogue:
            raise ConfigError(f"hazards catalogue {path}: duplicate code {category.code}")
        catalogue[category.code] = category
    return catalogue


def decide_flags(units: pd.DataFrame, config: AnalyticsConfig) -> pd.DataFrame:
    """Add the flag decision per unit: ``flag`` is 'group_rental', 'attention' or ''."""
    out = units.copy()
    enough = out["nights_observed"] >= config.min_nights_observed
    # No Wi-Fi-only figure (meters only, or no Wi-Fi data): nothing to check against.
    wifi = pd.to_numeric(out["wifi_p_plus_two"], errors="coerce") if (
        "wifi_p_plus_two" in out.columns) else pd.Series(float("nan"), index=out.index)
    supported = wifi.isna() | (wifi >= config.flag_wifi_support)
    confident = (out["p_plus_two"] >= config.flag_confidence) | placed_in_zone(out, config)
    group = (enough & confident
             & (out["persistence"] >= config.persistence_min_fraction) & supported)
    attention = (enough & ~group & (out["p_plus_one"] >= config.attention_confidence)
                 & (out["estimated"] >= out["registered"] + 1))
    out["flag"] = ""
    out.loc[group, "flag"] = "group_rental"
    out.loc[attention, "flag"] = "attention"
    return out


def placed_in_zone(units: pd.DataFrame, config: AnalyticsConfig) -> pd.Series:
    """Units of a corridor zone that hold the zone's excess: the zone's likeliest flat, at
    ``zone_flag_confidence`` or more and ``zone_flag_lead`` times its next flat.

    The corridor's Wi-Fi alone must put at least two extras on one of its flats
    (``zone_wifi_p_group`` at ``flag_wifi_support``); the meters only say which flat, and
    that flat's own meters must read like registered + 2 people or more: a flat whose lead
    comes from the registry prior alone (its meters read like everyone else's) is not placed.
    """
    placed = pd.Series(False, index=units.index)
    if "zone_wifi_p_group" not in units.columns:
        return placed
    group = pd.to_numeric(units["zone_wifi_p_group"], errors="coerce")
    metered = pd.to_numeric(units["utility_people"], errors="coerce")
    reads_crowded = metered >= units["registered"] + 2
    zoned = units.loc[group >= config.flag_wifi_support]
    for _, members in zoned.groupby("zone", sort=False):
        odds = members["p_plus_two"].sort_values(ascending=False)
        runner_up = float(odds.iloc[1]) if len(odds) > 1 else 0.0
        top = float(odds.iloc[0])
        if (top >= config.zone_flag_confidence and top >= config.zone_flag_lead * runner_up
                and bool(reads_crowded.loc[odds.index[0]])):
            placed.loc[odds.index[0]] = True
    return placed


def hazard_tiers(inspections: pd.DataFrame, catalogue: dict[str, HazardCategory],
                 now: dt.datetime, lookback_days: int) -> pd.DataFrame:
    """Per unit, the highest tier its recent inspection findings imply, and the findings."""
    columns = ["unit", "hazard_tier", "hazards"]
    if inspections.empty:
        return pd.DataFrame(columns=columns)
    since = now - dt.timedelta(days=lookback_days)
    rows: dict[str, tuple[str, set[str]]] = {}
    for unit, at, hazards in zip(inspections["unit"], inspections["at"], inspections["hazards"],
                                 strict=True):
        if at is not None and at < since:
            continue
        tier, found = rows.get(unit, ("normal", set()))
        for code in hazards or []:
            category = catalogue.get(str(code))
            if category is None:
                continue  # an unknown code is kept in the inspection, not guessed at here
            found.add(category.code)
            if TIER_ORDER[category.tier] > TIER_ORDER[tier]:
                tier = category.tier
        rows[unit] = (tier, found)
    return pd.DataFrame([(u, t, sorted(f)) for u, (t, f) in rows.items()], columns=columns)


def assign_tiers(flagged: pd.DataFrame, hazards: pd.DataFrame) -> pd.DataFrame:
    """Per unit tier: key for group rentals or key hazards; attention for one extra person
    or attention hazards; normal otherwise."""
    out = flagged.copy()
    flag_tier = [{"group_rental": "key", "attention": "attention"}.get(f, "normal")
                 for f in out["flag"]]
    tier_of: dict[str, str] = {}
    found_of: dict[str, list[str]] = {}
    if not hazards.empty:
        tier_of = dict(zip(hazards["unit"], hazards["hazard_tier"], strict=True))
        found_of = dict(zip(hazards["unit"], hazards["hazards"], strict=True))
    hazard_tier = [tier_of.get(u, "normal") for u in out["unit"]]
    out["hazards"] = [list(found_of.get(u, [])) for u in out["unit"]]
    out["tier"] = [a if TIER_ORDER[a] >= TIER_ORDER[b] else b
                   for a, b in zip(flag_tier, hazard_tier, strict=True)]
    return out


def flags_to_deliver(units: pd.DataFrame, config: AnalyticsConfig) -> pd.DataFrame:
    """The one place that decides which flags go out: group rentals, and attention cases
    when ``deliver_attention`` is on."""
    chosen = (units["flag"] == "group_rental") | (
        (units["flag"] == "attention") & config.deliver_attention)
    return units.loc[chosen]


@dataclass(frozen=True)
class UtilitySignal:
    """What the meters said about a flagged unit."""

    ratio: float | None  # consumption per registered occupant / similar units' median
    estimated_people: float


@dataclass(frozen=True)
class FlagRecord:
    """A delivered flag: the record of docs/contracts.md section 5 (``as_dict``)."""

    unit: str
    registered: int
    estimated: float
    interval: tuple[float, float]
    nights_observed: int
    resident_devices: int
    utility: UtilitySignal | None
    confidence: float
    confidence_plus_one: float
    persistence: float
    coverage: str
    flag: str
    tier: str
    hazards: tuple[str, ...]
    window: Window
    generated_at: dt.datetime
    case_id: int | None = None

    def with_case(self, case_id: int) -> FlagRecord:
        """The same record, naming the registry case it opened or updated."""
        return dataclasses.replace(self, case_id=case_id)

    def as_dict(self) -> dict[str, Any]:
        """The record as the JSON object of docs/contracts.md section 5."""
        return {
            "v": 1,
            "kind": "overcrowding",
            "unit": self.unit,
            "registered": self.registered,
            "estimated": self.estimated,
            "interval": list(self.interval),
            "nights_observed": self.nights_observed,
            "resident_devices": self.resident_devices,
            "utility": None if self.utility is None else {
                "ratio": self.utility.ratio, "estimated_people": self.utility.estimated_people},
            "confidence": self.confidence,
            "confidence_plus_one": self.confidence_plus_one,
            "persistence": self.persistence,
            "coverage": self.coverage,
            "flag": self.flag,
            "tier": self.tier,
            "hazards": list(self.hazards),
            "window": self.window.describe(),
            "case_id": self.case_id,
            "generated_at": int(self.generated_at.timestamp()),
        }


def _missing(value: Any) -> bool:
    """A cell with no value (None or NaN)."""
    return value is None or bool(pd.isna(value))


def flag_record(row: Mapping[str, Any], window: Window, generated_at: dt.datetime,
                case_id: int | None = None) -> FlagRecord:
    """The flag record of one tiered unit row (``flags.assign_tiers``)."""
    utility = None
    people, ratio = row.get("utility_people"), row.get("utility_ratio")
    if people is not None and not _missing(people):
        utility = UtilitySignal(None if ratio is None or _missing(ratio) else float(ratio),
                                float(people))
    return FlagRecord(
        unit=str(row["unit"]),
        registered=int(row["registered"]),
        estimated=float(row["estimated"]),
        interval=(float(row["low"]), float(row["high"])),
        nights_observed=int(row["nights_observed"]),
        resident_devices=int(row["resident_devices"]),
        utility=utility,
        confidence=round(float(row["p_plus_two"]), 4),
        confidence_plus_one=round(float(row["p_plus_one"]), 4),
        persistence=round(float(row["persistence"]), 3),
        coverage=str(row["coverage"]),
        flag=str(row["flag"]),
        tier=str(row["tier"]),
        hazards=tuple(str(h) for h in (row.get("hazards", []) or [])),
        window=window,
        generated_at=generated_at,
        case_id=case_id,
    )
