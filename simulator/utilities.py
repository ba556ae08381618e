"""Daily water, electricity, gas and heat readings consistent with who was really at home.

Consumption follows the person-hours spent in the unit that day (so a night-shift worker or a
traveller uses less, guests add some), on top of a base load that depends on the flat and its
always-on devices, with multiplicative noise, weekend and seasonal factors (a Tianjin climate:
air conditioning in summer, gas in winter, district heating from 15 November to 15 March).
Heat depends on area and weather, not on people, as it does in reality. Flats that share a
meter report one reading, recorded against the group's lowest unit reference.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from typing import TextIO

from simulator.config import Day, SimulationConfig
from simulator.model import GROUP_RENTAL, Unit, World
from simulator.rng import Rng

COLUMNS = ("community", "building", "unit", "kind", "period_start", "period_end", "amount")
DECIMALS = {"water": 3, "electricity": 2, "gas": 3, "heat": 4}


def outdoor_temperature(date: dt.date, rng: Rng) -> float:
    """Daily mean temperature (deg C) of a Tianjin-like climate, with weather noise."""
    day_of_year = date.timetuple().tm_yday
    seasonal = 12.5 - 15.5 * math.cos(2 * math.pi * (day_of_year - 20) / 365.25)
    return seasonal + rng.gauss(0.0, 2.5)


def heating_season(date: dt.date) -> bool:
    """Tianjin's district heating runs 15 November to 15 March."""
    return (date.month, date.day) >= (11, 15) or (date.month, date.day) <= (3, 15)


def daily_amounts(unit: Unit, person_days: float, temperature: float, date: dt.date,
                  rng: Rng, habit: float = 1.0) -> dict[str, float]:
    """One unit's consumption for a day, by kind (before rounding)."""
    weekend = 1.1 if date.weekday() >= 5 else 1.0
    occupied = person_days > 0
    # Group rentals share kitchens and bathrooms: a little less per head, far more in total.
    # ``habit``: this household's use per person against the average (households of one size
    # differ a lot: showers, cooking at home, appliances).
    per_head = (0.85 if unit.scenario == GROUP_RENTAL else 1.0) * habit
    iot = len(unit.infrastructure)
    amounts: dict[str, float] = {}
    water_season = 1.0 + 0.2 * (temperature - 12.5) / 15.5
    amounts["water"] = max(0.0, (0.01 + 0.11 * per_head * person_days * water_season * weekend)
                           * rng.noise(0.15))
    cooling = 0.45 * max(0.0, temperature - 24.0) / 6.0
    heating = 0.15 * max(0.0, 5.0 - temperature) / 10.0
    base = (1.2 + 0.012 * unit.area_m2) if occupied else 0.3
    amounts["electricity"] = max(0.0, (base + 0.35 * iot) * rng.noise(0.1)
                                 + 1.6 * per_head * person_days * (1 + cooling + heating) * weekend
                                 * rng.noise(0.15))
    if unit.has_gas:
        gas_season = 1.0 + 0.35 * max(0.0, 12.0 - temperature) / 14.0
        amounts["gas"] = ((0.15 + 0.18 * per_head * person_days) * gas_season * rng.noise(0.2)
                          if occupied else 0.0)
    if unit.heat_metered and heating_season(date):
        amounts["heat"] = 0.0025 * unit.area_m2 * max(0.0, 18.0 - temperature) / 19.0 \
            * rng.noise(0.05)
    return amounts


class UtilityWriter:
    """Writes utilities.csv, one day at a time."""

    def __init__(self, handle: TextIO, world: World, config: SimulationConfig) -> None:
        self.writer = csv.writer(handle, lineterminator="\n")
        self.writer.writerow(COLUMNS)
        self.config = config
        self.rows = 0
        # Meter groups: every member's consumption is recorded on the lowest reference.
        self.meter_head: dict[str, Unit] = {}
        for unit in world.units:
            if unit.meter_group:
                head = self.meter_head.get(unit.meter_group)
                if head is None or unit.ref < head.ref:
                    self.meter_head[unit.meter_group] = unit
        self.world = world
        # Per household: a lasting habit factor (log-normal, mean 1) and, for a few meters, a
        # fault: reads zero, stuck at its first reading, or off by a factor of ten.
        self.habit = [1.0] * len(world.units)
        self.fault: dict[int, tuple[str, str]] = {}
        self.stuck: dict[tuple[int, str], float] = {}
        cv = config.meter_household_cv
        sigma = math.sqrt(math.log(1 + cv * cv)) if cv > 0 else 0.0
        for unit in world.units:
            rng = Rng(config.seed, "meter", unit.index)
            if sigma > 0:
                self.habit[unit.index] = math.exp(rng.gauss(-sigma * sigma / 2, sigma))
            if config.broken_meter_share > 0 and rng.chance(config.broken_meter_share):
                self.fault[unit.index] = (rng.choice(("water", "electricity")),
                                          rng.choice(("zero", "stuck", "x10", "x0.1")))

    def write_day(self, day: Day, home_hours: list[float]) -> None:
        """Readings of every unit (or shared meter) for the day's local date."""
        rng = Rng(self.config.seed, "utility", day.index)
        temperature = outdoor_temperature(day.date, rng)
        start, end = day.date.isoformat(), (day.date + dt.timedelta(days=1)).isoformat()
        shared: dict[str, dict[str, float]] = {}
        ordered: list[tuple[Unit, dict[str, float]]] = []
        for unit in self.world.units:
            amounts = daily_amounts(unit, home_hours[unit.index] / 24.0, temperature, day.date,
                                    rng, self.habit[unit.index])
            fault = self.fault.get(unit.index)
            if fault is not None and fault[0] in amounts:
                amounts[fault[0]] = self._faulty(unit.index, fault, amounts[fault[0]])
            if unit.meter_group:
                total = shared.setdefault(unit.meter_group, {})
                for kind, amount in amounts.items():
                    total[kind] = total.get(kind, 0.0) + amount
                if self.meter_head[unit.meter_group] is unit:
                    ordered.append((unit, total))
            else:
                ordered.append((unit, amounts))
        for unit, amounts in ordered:
            building = unit.building
            for kind in ("water", "electricity", "gas", "heat"):
                if kind in amounts:
                    self.writer.writerow((building.community, building.code, unit.code, kind,
                                          start, end, f"{amounts[kind]:.{DECIMALS[kind]}f}"))
                    self.rows += 1

    def _faulty(self, index: int, fault: tuple[str, str], amount: float) -> float:
        """What a broken meter reads instead of ``amount``."""
        kind, how = fault
        if how == "zero":
            return 0.0
        if how == "stuck":
            return self.stuck.setdefault((index, kind), amount)
        return amount * (10.0 if how == "x10" else 0.1)
