"""The utility signal: consumption per registered occupant against similar units.

Per unit and utility kind, the average daily consumption over the window (readings prorated
by the days they overlap it). Peers are the units of the same building with their own meter,
people registered and an area within ``utility_area_tolerance`` (the whole building when too
few are that similar, then the community). On the peers a robust line
``consumption = base + per_person * registered`` is fitted (Theil-Sen: the median of pairwise
slopes), because most units hold their registered people and the few that do not must not
bend the line. A unit's utility estimate of its people is ``(consumption - base) / per_person``
and its likelihood over N is log-normal around that line with the peers' robust spread. Units
on a shared meter get no utility evidence of their own (the meter measures the group).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from analytics.config import AnalyticsConfig

MIN_SPREAD = 0.12  # log-units; below this the peers agree better than people's habits allow
# A spread measured on a handful of peers is mostly chance: with 5-9 peers the fitted spreads
# ranged 0.12-0.97 log-units where fits on 30+ peers of the same communities gave 0.19-0.43
# (electricity). Households vary alike across a community, so each fit's spread is pooled
# with the community's (for that kind) as if the community added this many peers' residuals.
# Without it a flat with five peers got the 0.12 floor: its meters, reading 34 people, said
# nothing more for 15 people than for 2 (every count was equally "an outlier").
SPREAD_PRIOR_PEERS = 10
VACANT_SHARE = 0.05  # an empty unit draws this share of a one-person unit's consumption
# A meter can be broken, stuck, shared without the registry knowing, or the household can be
# unusual: one reading is never allowed to be decisive. Each kind's likelihood is a mixture of
# the log-normal and this much of a flat "the meter says nothing" component, so a reading can
# move the odds by at most ~1/OUTLIER_WEIGHT, whatever its value.
OUTLIER_WEIGHT = 0.05
# Physical bounds on the per-person slope, as multiples of the peers' median consumption per
# registered person: a zero or negative slope (group rentals among the peers) would turn any
# excess into dozens or thousands of people. A person's own use is at least about half of
# what a household uses per registered head (electricity, with the largest base load, is
# ~0.6 at two people); noisy households (CV 0.5) and wrong registrations attenuate the fitted
# slope below that, which made a meter 47% over its peers read as twelve people, not five.
SLOPE_BOUNDS = (0.5, 1.5)
# A kind reading at most this share of one person's use reads "empty". Every kind reading
# empty is not a frugal habit that water and electricity share (habits vary by a CV of about
# 0.5): for anyone to live there, each meter would have to fail on its own. Such a unit's
# kinds are then independent readings and are not discounted as one shared habit.
VACANT_READING = 0.2
# A sustained step up this large, after at least this many readings, is a household moving
# into an empty flat (see ``_since_moved_in``).
MOVED_IN_RATIO = 5.0
MOVED_IN_MIN_READINGS = 3
MAX_COMMUNITY_PEERS = 60  # community fallback: the peers nearest in area (bounds the fit's cost)


def daily_consumption(utilities: pd.DataFrame, start: dt.date, end: dt.date,
                      kinds: tuple[str, ...]) -> pd.DataFrame:
    """Average daily consumption per unit and kind over [start, end) (columns: kinds)."""
    if utilities.empty:
        return pd.DataFrame(columns=list(kinds), dtype=float)
    frame = utilities.loc[utilities["kind"].isin(kinds)].copy()
    period_start = pd.to_datetime(frame["period_start"])
    period_end = pd.to_datetime(frame["period_end"])
    lo = period_start.where(period_start > pd.Timestamp(start), pd.Timestamp(start))
    hi = period_end.where(period_end < pd.Timestamp(end), pd.Timestamp(end))
    overlap = (hi - lo).dt.days.clip(lower=0)
    length = (period_end - period_start).dt.days.clip(lower=1)
    frame["share"] = frame["amount"] * overlap / length
    frame["days"] = overlap
    frame = frame.loc[frame["days"] > 0]
    frame = frame.loc[_since_moved_in(frame, length)]
    grouped = frame.groupby(["unit", "kind"])
    per_day = (grouped["share"].sum() / grouped["days"].sum()).unstack("kind")
    return per_day.reindex(columns=list(kinds))


def _since_moved_in(frame: pd.DataFrame, length: pd.Series) -> np.ndarray:
    """Which readings belong to the unit's current household: all, or those since it moved in.

    A flat that stood empty and then filled (a new group rental) draws a few percent of a
    household's use and then many times more; averaged over the whole window, the empty weeks
    hide the household that lives there now. Where the readings after some point use at least
    ``MOVED_IN_RATIO`` times as much per day as the (at least ``MOVED_IN_MIN_READINGS``)
    readings before it, only those after count. A household's own day-to-day variation (a CV
    of about 0.5) does not make averages of several readings differ that much.
    """
    keep = np.ones(len(frame), dtype=bool)
    rate = (frame["amount"] / length.reindex(frame.index)).to_numpy(dtype=float)
    days = frame["days"].to_numpy(dtype=float)
    starts = pd.to_datetime(frame["period_start"]).to_numpy()
    for found in frame.groupby(["unit", "kind"]).indices.values():
        if len(found) < 2 * MOVED_IN_MIN_READINGS:
            continue
        rows = np.asarray(found, dtype=np.int64)
        rows = rows[np.argsort(starts[rows], kind="stable")]
        r, d = rate[rows], days[rows]
        best, best_ratio = 0, MOVED_IN_RATIO
        for split in range(MOVED_IN_MIN_READINGS, len(rows) - MOVED_IN_MIN_READINGS + 1):
            before = float(r[:split] @ d[:split] / d[:split].sum())
            after = float(r[split:] @ d[split:] / d[split:].sum())
            if after >= best_ratio * max(before, 1e-12):
                best, best_ratio = split, after / max(before, 1e-12)
        keep[rows[:best]] = False
    return keep


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Robust line fit: median pairwise slope, median intercept."""
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    if not keep.any():
        return float(np.median(y)), 0.0
    slope = float(np.median((y[j] - y[i])[keep] / dx[keep]))
    intercept = float(np.median(y - slope * x))
    return intercept, slope


def utility_evidence(units: pd.DataFrame, consumption: pd.DataFrame,
                     config: AnalyticsConfig) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per unit: consumption ratio to peers, utility estimate of people, and a log-likelihood.

    Returns a frame (unit, ratio, estimated_people, kinds) and, per unit with evidence, the
    log-likelihood over N = 0..max_people summed over the utility kinds.
    """
    columns = ["unit", "ratio", "estimated_people", "kinds"]
    rows: list[dict[str, object]] = []
    logliks: dict[str, np.ndarray] = {}
    if consumption.empty or config.utility_weight == 0 or units.empty:
        return pd.DataFrame(columns=columns), logliks
    data = units.set_index("unit").join(consumption, how="left").reset_index()
    kinds = [k for k in config.utility_kinds if k in data.columns]
    n = np.arange(config.max_people + 1, dtype=float)
    for _community, frame in data.groupby("community", sort=False):
        # Peers are positions within the community's frame: a cache shared across
        # communities would hand one community's line to another with the same positions.
        fits: dict[tuple[str, bytes], Fit | None] = {}
        residuals: dict[str, dict[str, float]] = {}  # unit -> kind -> z at its registered
        kinds_used: dict[str, int] = {}
        refs = frame["unit"].to_numpy()
        registered = frame["registered"].to_numpy(dtype=float)
        areas = frame["area_m2"].to_numpy(dtype=float)
        own_meter = (frame["meter_group"] == "").to_numpy()
        values = {kind: frame[kind].to_numpy(dtype=float) for kind in kinds}
        eligible_c: np.ndarray = np.flatnonzero((registered > 0) & own_meter)
        chosen: list[tuple[int, np.ndarray]] = []
        for indices in frame.groupby("building", sort=False).indices.values():
            positions = np.asarray(indices, dtype=np.int64)
            eligible_b: np.ndarray = positions[(registered[positions] > 0) & own_meter[positions]]
            for position in positions:
                if not own_meter[position]:
                    continue
                area = areas[position]
                similar: np.ndarray = eligible_b[np.abs(areas[eligible_b] - area)
                                                 <= config.utility_area_tolerance * area]
                nearest = eligible_c[np.argsort(np.abs(areas[eligible_c] - area),
                                                kind="stable")[:MAX_COMMUNITY_PEERS + 1]]
                # The unit itself never takes part in its own peers' fit: a group rental
                # among its peers bends the line, and it would bend towards itself.
                candidates: list[np.ndarray] = [c[c != position]
                                                for c in (similar, eligible_b, nearest)]
                peers = next((c for c in candidates if len(c) >= config.utility_min_peers),
                             None)
                if peers is not None:
                    chosen.append((position, peers))
        for kind in kinds:
            for _position, peers in chosen:
                _fit(peers, kind, registered, values[kind], fits, config.utility_min_peers)
        pooled = {kind: _pooled_spread([fit for (fitted, _peers), fit in fits.items()
                                        if fitted == kind]) for kind in kinds}
        for position, peers in chosen:
            result = _unit_evidence(str(refs[position]), int(registered[position]),
                                    {k: values[k][position] for k in kinds},
                                    peers, registered, values, fits, pooled, n, config)
            if result is not None:
                rows.append(result.record)
                logliks[str(refs[position])] = result.loglik
                residuals[str(refs[position])] = result.at_registered
                if not result.reads_empty:
                    kinds_used[str(refs[position])] = result.kinds
        if config.utility_kinds_shared:
            _share_household(residuals, kinds_used, logliks, kinds)
    return pd.DataFrame(rows, columns=columns), logliks


def kinds_correlation(residuals: dict[str, dict[str, float]], kinds: list[str]) -> float:
    """How alike the kinds' deviations from their peers are, across a community's households.

    Each household's use per person differs from its peers' (a CV of about 0.5), and the same
    habit shows in water and electricity alike: the kinds' standardised residuals at the
    registered count then correlate across households. The mean pairwise correlation
    (residuals clipped at 3, so a broken meter does not decide it), in [0, 1]; 0 with fewer
    than ten households metered for a pair.
    """
    values: list[float] = []
    for i, first in enumerate(kinds):
        for second in kinds[i + 1:]:
            pairs = np.array([(z[first], z[second]) for z in residuals.values()
                              if first in z and second in z])
            if len(pairs) < 10:
                continue
            clipped = np.clip(pairs, -3.0, 3.0)
            if clipped[:, 0].std() == 0 or clipped[:, 1].std() == 0:
                continue
            values.append(float(np.corrcoef(clipped[:, 0], clipped[:, 1])[0, 1]))
    return min(max(float(np.mean(values)), 0.0), 1.0) if values else 0.0


def _share_household(residuals: dict[str, dict[str, float]], kinds_used: dict[str, int],
                     logliks: dict[str, np.ndarray], kinds: list[str]) -> None:
    """Count correlated kinds as the fewer independent looks at a household they are.

    Summing K kinds' log-likelihoods treats them as K independent readings; when they share
    the household's habit (correlation rho) they are worth K / (1 + (K - 1) rho) readings, so
    each unit's sum is scaled by 1 / (1 + (K - 1) rho). Without that, one frugal or lavish
    household counted twice and moved the estimate by two or three people.
    """
    rho = kinds_correlation(residuals, kinds)
    if rho <= 0:
        return
    for unit, k in kinds_used.items():
        if k > 1:
            logliks[unit] = logliks[unit] / (1.0 + (k - 1) * rho)


class Fit(NamedTuple):
    """Peers' robust line for one kind: consumption = base + per_person * people."""

    base: float
    per_person: float
    spread: float  # robust spread of the peers' log residuals, floored at MIN_SPREAD
    median_per_person: float  # the peers' median consumption per registered person
    peers: int  # peers with a reading


def _pooled_spread(found: list[Fit | None]) -> float | None:
    """The community's spread for one kind: its fits' spreads pooled by degrees of freedom."""
    freedom = [(f.peers - 2, f.spread) for f in found if f is not None and f.peers > 2]
    total = sum(dof for dof, _ in freedom)
    if total <= 0:
        return None
    return math.sqrt(sum(dof * spread * spread for dof, spread in freedom) / total)


def _moderated_spread(fit: Fit, pooled: float | None) -> float:
    """A fit's spread pooled with its community's (see ``SPREAD_PRIOR_PEERS``)."""
    if pooled is None:
        return fit.spread
    dof = max(fit.peers - 2, 0)
    return math.sqrt((dof * fit.spread ** 2 + SPREAD_PRIOR_PEERS * pooled ** 2)
                     / (dof + SPREAD_PRIOR_PEERS))


def _fit(peers: np.ndarray, kind: str, registered: np.ndarray, values: np.ndarray,
         fits: dict[tuple[str, bytes], Fit | None], min_peers: int) -> Fit | None:
    """The robust line of peers for one kind (cached per kind and peer set)."""
    key = (kind, peers.tobytes())
    if key not in fits:
        x, y = registered[peers], values[peers]
        keep = ~np.isnan(y)
        x, y = x[keep], y[keep]
        if len(x) < min_peers:
            fits[key] = None
            return None
        base, per_person = theil_sen(x, y)
        typical = float(np.median(y / x))
        if typical > 0:
            low, high = SLOPE_BOUNDS[0] * typical, SLOPE_BOUNDS[1] * typical
            if not low <= per_person <= high:
                per_person = min(max(per_person, low), high)
                base = float(np.median(y - per_person * x))
        base = max(base, 0.0)
        expected = np.maximum(base + per_person * x, 1e-9)
        resid = np.log(np.maximum(y, 1e-9) / expected)
        spread = max(MIN_SPREAD, 1.4826 * float(np.median(np.abs(resid - np.median(resid)))))
        fits[key] = Fit(base, per_person, spread, typical, len(x))
    return fits[key]


class UnitEvidence(NamedTuple):
    """One unit's utility evidence (see ``_unit_evidence``)."""

    record: dict[str, object]  # unit, ratio, estimated_people, kinds
    loglik: np.ndarray  # over N = 0..max_people, summed over the kinds
    at_registered: dict[str, float]  # kind -> z at the registered count
    kinds: int  # kinds with evidence
    reads_empty: bool  # every kind (two or more) reads like an empty flat


def _unit_evidence(ref: str, registered: int, consumed: dict[str, float], peers: np.ndarray,
                   peer_registered: np.ndarray, values: dict[str, np.ndarray],
                   fits: dict[tuple[str, bytes], Fit | None], pooled: dict[str, float | None],
                   n: np.ndarray, config: AnalyticsConfig,
                   ) -> UnitEvidence | None:
    """One unit's utility evidence against its peers."""
    total = np.zeros_like(n)
    at_registered: dict[str, float] = {}
    estimates: list[float] = []
    ratios: list[float] = []
    used: list[str] = []
    reads_empty: list[bool] = []
    for kind, amount in consumed.items():
        if np.isnan(amount):
            continue
        fit = _fit(peers, kind, peer_registered, values[kind], fits, config.utility_min_peers)
        if fit is None:
            continue
        base, per_person, _, median_per_person, _ = fit
        if per_person <= 0:
            continue
        spread = _moderated_spread(fit, pooled[kind])
        one = max(base + per_person, 1e-9)
        expected = np.maximum(base + per_person * n, 1e-9)
        expected[0] = VACANT_SHARE * one
        observed = max(float(amount), VACANT_SHARE * one)
        reads_empty.append(float(amount) <= VACANT_READING * one)
        z = (math.log(observed) - np.log(expected)) / spread
        total += np.log(np.exp(-0.5 * z * z) + OUTLIER_WEIGHT)
        if 0 < registered < len(z):
            at_registered[kind] = float(z[registered])
        estimates.append(max(0.0, (float(amount) - base) / per_person))
        if registered > 0 and median_per_person > 0:
            ratios.append(float(amount) / registered / median_per_person)
        used.append(kind)
    if not used:
        return None
    record: dict[str, object] = {
        "unit": ref,
        "ratio": round(float(np.mean(ratios)), 3) if ratios else None,
        "estimated_people": round(float(np.mean(estimates)), 2),
        "kinds": ",".join(used),
    }
    return UnitEvidence(record, total, at_registered, len(used),
                        len(used) > 1 and all(reads_empty))
