"""Devices to people, and the posterior over the number of people."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from analytics.config import AnalyticsConfig
from analytics.people import (
    INTERVAL_MASSES,
    Prior,
    capacity,
    central_interval,
    comovement_scores,
    district_interval_mass,
    fit_detection,
    fit_prior,
    group_people,
    phone_like,
    prior_distribution,
    summarise,
    unit_posterior,
    wifi_likelihood,
    zone_posteriors,
)

CONFIG = AnalyticsConfig()
PRIOR = Prior.from_config(CONFIG)
DAYS = 14


def timeline(spans: list[tuple[int, int]], days: int = DAYS, holes: list[int] | None = None,
             ) -> np.ndarray:
    """Presence over ``days`` days: each day present from bin a to bin b (census-day bins)."""
    out = np.zeros(days * 288, dtype=bool)
    for d in range(days):
        a, b = spans[d % len(spans)]
        out[d * 288 + a: d * 288 + b] = True
    for h in holes or []:
        out[h] = False
    return out


def test_a_phone_and_its_watch_are_one_person() -> None:
    """The watch arrives and leaves with the phone (and is off at night): same person."""
    phone = timeline([(140, 290), (150, 288), (135, 288)])
    watch = phone.copy()
    for d in range(DAYS):
        watch[d * 288 + 200: d * 288 + 288] = False  # on the charger at night
    people, scores = group_people(["phone", "watch"], np.vstack([phone, watch]), CONFIG)
    assert people[0] == people[1]
    assert scores[1] >= CONFIG.same_person_min_score


def test_two_flatmates_with_their_own_rhythms_are_two_people() -> None:
    """Different departure and return times day after day: two people."""
    a = timeline([(140, 288), (150, 288), (135, 288), (160, 288)])
    b = timeline([(170, 288), (120, 288), (180, 288)])
    people, _ = group_people(["a", "b"], np.vstack([a, b]), CONFIG)
    assert people[0] != people[1]


def test_a_homebody_and_a_worker_are_two_people_though_one_contains_the_other() -> None:
    """The worker is only home when the homebody is, but the homebody's outings are alone."""
    homebody = timeline([(0, 288)])
    for d in range(DAYS):
        homebody[d * 288 + 30 + d: d * 288 + 50 + d] = False  # a morning errand
        homebody[d * 288 + 150: d * 288 + 160] = False  # out while the worker is home
    worker = timeline([(140, 288), (145, 288), (150, 288)])
    people, _ = group_people(["homebody", "worker"], np.vstack([homebody, worker]), CONFIG)
    assert people[0] != people[1]


def test_comovement_is_symmetric_and_bounded() -> None:
    """Scores are symmetric, between 0 and 1, zero on the diagonal."""
    x = np.vstack([timeline([(140, 288)]), timeline([(150, 288)]), timeline([(100, 200)])])
    s = comovement_scores(x)
    assert np.allclose(s, s.T)
    assert (s >= 0).all() and (s <= 1).all()
    assert (np.diag(s) == 0).all()


def test_the_prior_is_a_distribution_centred_on_the_registered_count() -> None:
    """Most mass on N = registered; group rentals only beyond registered + 2."""
    dist = prior_distribution(3, PRIOR, CONFIG.max_people)
    assert dist.sum() == pytest.approx(1.0)
    assert dist.argmax() == 3
    assert dist[5:].sum() == pytest.approx(PRIOR.weights()[4])
    assert prior_distribution(0, PRIOR, CONFIG.max_people)[0] > 0.5


def test_the_wifi_likelihood_sums_over_seen_and_spurious_clusters() -> None:
    """P(D | N) is a distribution over D for each N, and seeing 0 of 0 is likely."""
    total = sum(wifi_likelihood(d, 10, 0.88, 0.08) for d in range(40))
    assert np.allclose(total, 1.0, atol=1e-6)
    assert wifi_likelihood(0, 10, 0.88, 0.08)[0] == pytest.approx(np.exp(-0.08))


def test_as_many_people_seen_as_registered_estimates_the_registered_count() -> None:
    """D = R: the estimate is R with little chance of two extra."""
    post = unit_posterior(3, 3, PRIOR, None, CONFIG)
    result = summarise(post, 3)
    assert result["estimated"] == 3
    assert result["p_plus_two"] < 0.05


def test_a_child_without_a_phone_is_accounted_for_by_the_prior() -> None:
    """D = R - 1 (a child the Wi-Fi cannot see): still estimated at R."""
    assert summarise(unit_posterior(3, 2, PRIOR, None, CONFIG), 3)["estimated"] == 3


def test_many_more_people_than_registered_is_a_confident_group_rental() -> None:
    """Nine people seen where one is registered: estimate about nine, certain excess."""
    result = summarise(unit_posterior(1, 9, PRIOR, None, CONFIG), 1)
    assert 8 <= result["estimated"] <= 11
    assert result["p_plus_two"] > 0.99
    assert result["low"] <= result["estimated"] <= result["high"]


def test_one_extra_person_is_not_a_group_rental() -> None:
    """D = R + 1 gives a likely extra person but a low probability of two."""
    result = summarise(unit_posterior(2, 3, PRIOR, None, CONFIG), 2)
    assert result["p_plus_one"] > 0.5
    assert result["p_plus_two"] < 0.5


def test_without_wifi_the_utility_signal_moves_the_estimate() -> None:
    """No Wi-Fi data: a utility likelihood peaked at 6 people pulls the estimate up."""
    n = np.arange(CONFIG.max_people + 1)
    loglik = -0.5 * ((np.log(np.maximum(n, 0.05)) - np.log(6)) / 0.15) ** 2
    assert summarise(unit_posterior(2, None, PRIOR, None, CONFIG), 2)["estimated"] == 2
    assert summarise(unit_posterior(2, None, PRIOR, loglik, CONFIG), 2)["estimated"] >= 5


def test_a_corridor_excess_goes_to_the_unit_whose_utilities_say_so() -> None:
    """Three units behind one corridor AP; the AP sees 12 people; the utility picks the unit."""
    n = np.arange(CONFIG.max_people + 1)

    def util(people: float) -> np.ndarray:
        """A utility log-likelihood centred on ``people``."""
        return -0.5 * ((np.log(np.maximum(n, 0.05)) - np.log(people)) / 0.2) ** 2

    posts = zone_posteriors([2, 2, 1], 12, [0, 0, 0], PRIOR, [util(2), util(2), util(8)], CONFIG)
    estimates = [summarise(p, r)["estimated"] for p, r in zip(posts, [2, 2, 1], strict=True)]
    assert estimates[0] == 2 and estimates[1] == 2
    assert estimates[2] >= 6
    assert summarise(posts[2], 1)["p_plus_two"] > 0.9


def test_a_corridor_that_sees_the_registered_total_leaves_every_unit_at_registered() -> None:
    """No excess on the corridor: each unit keeps its registered count."""
    posts = zone_posteriors([2, 3], 5, [0, 0], PRIOR, [None, None], CONFIG)
    assert [summarise(p, r)["estimated"] for p, r in zip(posts, [2, 3], strict=True)] == [2, 3]


def test_a_corridor_shows_a_group_rental_only_when_its_extras_cannot_all_be_single() -> None:
    """Three flats of 2 registered: 10 clusters seen make registered + 2 on the total all but
    sure, yet three extras (one each would do) are as likely as four or more, so not a group
    rental; 12 seen put two at least on one flat whichever way they are shared."""
    from analytics.estimate import _wifi_excess

    registered = [2, 2, 2]
    assert _wifi_excess(10, registered, PRIOR, CONFIG) > 0.98
    assert _wifi_excess(10, registered, PRIOR, CONFIG, extra=len(registered) + 1) < 0.9
    assert _wifi_excess(12, registered, PRIOR, CONFIG, extra=len(registered) + 1) > 0.99


def test_bound_residents_set_a_floor_under_their_unit() -> None:
    """Two residents bound to a corridor unit mean at least two people there."""
    posts = zone_posteriors([0, 2], 4, [2, 0], PRIOR, [None, None], CONFIG)
    assert posts[0][:2].sum() == 0


def test_empirical_bayes_learns_the_districts_mix() -> None:
    """Many units seen at R + 1 raise the weight of one extra person."""
    registered = [2] * 200
    detected = [3] * 80 + [2] * 120
    fitted = fit_prior(registered, detected, PRIOR, CONFIG)
    assert fitted.plus_one > PRIOR.plus_one
    assert sum(fitted.weights()) == pytest.approx(1.0)


def test_a_household_seen_short_keeps_the_registry_in_the_estimate() -> None:
    """Registered 5, seen 2: households differ, so the registry's 5 stays in the interval."""
    config = AnalyticsConfig()
    prior = Prior.from_config(config)
    post = unit_posterior(5, 2, prior, None, config)
    summary = summarise(post, 5)
    assert summary["low"] <= 2 and summary["high"] >= 5
    plain = unit_posterior(5, 2, prior, None, AnalyticsConfig(detect_concentration=1e9))
    assert post[5] > plain[5]  # the binomial called five people near impossible


def test_beta_binomial_detection_is_a_distribution_over_what_is_seen() -> None:
    """For every true N, the chances of seeing 0..N people (no extras) sum to one."""
    likelihoods = np.array([wifi_likelihood(d, 12, 0.88, 1e-12, 8.0) for d in range(13)])
    assert likelihoods.sum(axis=0) == pytest.approx(np.ones(13))


def test_the_fitted_prior_cannot_learn_its_own_inflated_counts() -> None:
    """Every unit shows three people more than registered: group weight at most doubles."""
    config = AnalyticsConfig()
    start = Prior.from_config(config)
    fitted = fit_prior([2] * 400, [5] * 400, start, config)
    assert fitted.weights()[4] <= 2 * start.weights()[4] + 1e-9
    assert fitted.weights()[2] >= start.weights()[2] / 2 - 1e-9


def test_no_posterior_mass_above_a_units_physical_capacity() -> None:
    """Seen 14 in a 20 m² flat: at most 8 people (2.5 m² each)."""
    config = AnalyticsConfig()
    assert capacity(20.0, config) == 8 and capacity(float("nan"), config) == config.max_people
    post = unit_posterior(1, 14, Prior.from_config(config), None, config, cap=8)
    assert post[9:].sum() == 0 and summarise(post, 1)["estimated"] <= 8


def test_the_detection_chance_is_fitted_down_where_many_people_go_unseen() -> None:
    """Households of four mostly show three: the chance drops from 0.88 towards 0.75."""
    config = AnalyticsConfig()
    prior = Prior.from_config(config)
    registered = [4] * 200
    detected = [3] * 110 + [4] * 60 + [2] * 30
    q = fit_detection(registered, detected, prior, config)
    assert 0.6 <= q <= 0.8


def test_the_detection_chance_never_rises_above_its_default() -> None:
    """Extra clusters (second devices) cannot pass for better detection."""
    config = AnalyticsConfig()
    q = fit_detection([2] * 100, [3] * 100, Prior.from_config(config), config)
    assert q <= config.detect_probability


def test_the_meters_weigh_as_much_as_they_predict_what_the_wifi_counts() -> None:
    """Meters that agree with the Wi-Fi keep their full say; meters that mislead lose it."""
    from analytics.people import Prior, fit_utility_weight

    config = AnalyticsConfig()
    n = np.arange(config.max_people + 1)
    rng = np.random.default_rng(5)
    people = rng.integers(1, 5, size=60)
    detected = [int(rng.binomial(p, 0.88)) for p in people]
    registered = [int(p) for p in people]
    caps = [config.max_people] * 60

    def meter(centre: float) -> np.ndarray:
        """A log-normal meter likelihood over N centred on ``centre`` people."""
        return -0.5 * ((np.log(np.maximum(n, 0.05)) - np.log(centre)) / 0.25) ** 2

    prior = Prior.from_config(config)
    honest = [meter(float(p)) for p in people]
    assert fit_utility_weight(registered, detected, honest, caps, prior, config) == 1.0
    misleading = [meter(float(rng.choice([1, 6, 9]))) for _ in people]
    assert fit_utility_weight(registered, detected, misleading, caps, prior, config) == 0.0
    halved = dataclasses.replace(config, utility_weight=0.5)
    assert fit_utility_weight(registered, detected, honest, caps, prior, halved) == 0.5


def shift(members: int, spread_min: float, seed: int = 5, night: bool = False,
          nights_home: tuple[int, ...] = (4, 11)) -> np.ndarray:
    """Phones of people on one shift, each member leaving and returning up to ``spread_min``
    minutes from the shift's time. A day shift is out 07:00-08:45 and back 17:00-20:00, home
    at night; a night shift (``night``) is home from about 08:00 to 19:00 to sleep and out at
    night, except on ``nights_home``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((members, DAYS * 288), dtype=bool)
    for d in range(DAYS):
        # Minutes after 06:00 of the shift's two moments (the first one earlier in the day).
        first, second = ((rng.uniform(110, 140), rng.uniform(760, 800)) if night
                         else (rng.uniform(60, 165), rng.uniform(660, 840)))
        for m in range(members):
            a = int((first + rng.uniform(-spread_min, spread_min)) // 5)
            b = int((second + rng.uniform(-spread_min, spread_min)) // 5)
            if night:
                out[m, d * 288 + a: (d + 1) * 288 if d in nights_home else d * 288 + b] = True
            else:
                out[m, d * 288: d * 288 + a] = True
                out[m, d * 288 + b: (d + 1) * 288] = True
    return out


def test_a_shift_of_four_phones_moving_together_stays_four_people() -> None:
    """Co-workers leave and come home within minutes of each other: four people, not one."""
    phones = shift(4, spread_min=3.0)
    assert (comovement_scores(phones)[np.triu_indices(4, 1)] >= CONFIG.same_person_min_score
            ).all()  # they do co-move: what merged them before
    people, _ = group_people(["a", "b", "c", "d"], phones, CONFIG)
    assert len(set(people)) == 4


def test_a_night_shift_of_four_phones_stays_four_people() -> None:
    """Night-shift co-workers sleep here by day and are rarely home at night: their phones
    are still phones (one person carries at most two), so four people, not one or two."""
    phones = shift(4, spread_min=3.0, seed=7, night=True)
    assert phones.reshape(4, DAYS, 288)[:, :, 216:276].any(axis=2).sum(axis=1).max() <= 2
    assert phone_like(phones).all()
    people, _ = group_people(["a", "b", "c", "d"], phones, CONFIG)
    assert len(set(people)) == 4


def test_devices_used_for_hours_by_day_are_not_phones() -> None:
    """A laptop used four hours every afternoon and a tablet used for an evening never stay
    six hours at a stretch by day nor into the night: they are not night-shift phones."""
    laptop = timeline([(84, 132)])  # 13:00-17:00
    tablet = timeline([(150, 190)])
    assert not phone_like(np.vstack([laptop, tablet])).any()


def test_two_phones_of_one_person_move_to_the_bin_and_are_one_person() -> None:
    """A second phone carried along leaves and arrives in the very same bins: one person."""
    phone = shift(1, spread_min=0.0)[0]
    people, _ = group_people(["phone", "second"], np.vstack([phone, phone.copy()]), CONFIG)
    assert people[0] == people[1]


def test_a_person_holds_at_most_two_phones() -> None:
    """Three phones in perfect lockstep are not one person carrying three phones."""
    phone = shift(1, spread_min=0.0)[0]
    people, _ = group_people(["a", "b", "c"], np.vstack([phone] * 3), CONFIG)
    assert len(set(people)) == 2


def _peaked(at: int, share: float, width: int = 41) -> np.ndarray:
    """A posterior with ``share`` at one count and the rest spread over its two neighbours."""
    post = np.zeros(width)
    post[at] = share
    post[at - 1] = post[at + 1] = (1 - share) / 2
    return post


def test_a_district_of_sure_units_gets_single_number_intervals() -> None:
    """Where every posterior holds 97% on one count, that count alone holds 91% on average."""
    posts = [_peaked(3, 0.97)] * 50
    mass = district_interval_mass(posts, 0.91)
    assert mass == INTERVAL_MASSES[0]
    assert summarise(posts[0], 3, mass)["low"] == summarise(posts[0], 3, mass)["high"] == 3


def test_a_district_of_unsure_units_gets_wider_intervals() -> None:
    """Posteriors with only 60% on one count: the interval takes in the neighbours."""
    sure, unsure = [_peaked(3, 0.97)] * 50, [_peaked(3, 0.6)] * 50
    mass = district_interval_mass(unsure, 0.91)
    assert mass > district_interval_mass(sure, 0.91)
    low, high = central_interval(unsure[0], mass)
    assert (low, high) == (2, 4) and unsure[0][low:high + 1].sum() >= 0.91
    # One mass per district: a few unsure units among many sure ones do not widen the rest.
    assert district_interval_mass(sure + unsure[:3], 0.91) == INTERVAL_MASSES[0]


def test_the_district_mass_is_the_smallest_that_holds_the_share() -> None:
    """Against a direct count over every candidate mass, on random posteriors."""
    rng = np.random.default_rng(7)
    posts = [rng.dirichlet(np.full(41, a)) for a in rng.uniform(0.05, 2.0, 200)]

    def direct(share: float) -> float:
        for mass in INTERVAL_MASSES:
            held = [p[central_interval(p, mass)[0]:central_interval(p, mass)[1] + 1].sum()
                    for p in posts]
            if np.mean(held) >= share:
                return mass
        return INTERVAL_MASSES[-1]

    for share in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
        assert district_interval_mass(posts, share) == direct(share)
