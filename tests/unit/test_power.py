"""benchmarks.power on simulated paired designs with a known effect."""

import math

import numpy as np
import pytest

from benchmarks.power import (
    bootstrap_means,
    holm,
    minimum_detectable_effect,
    paired_effect,
    variance_components,
)


def simulate(rng, effect, seeds=5, mixtures=300, seed_sd=0.2,
             mixture_sd=2.0, residual_sd=1.0):
    """One crossed design: d[s, m] = effect + a[s] + b[m] + e[s, m]."""
    return (effect + rng.normal(0, seed_sd, (seeds, 1))
            + rng.normal(0, mixture_sd, (1, mixtures))
            + rng.normal(0, residual_sd, (seeds, mixtures)))


@pytest.mark.parametrize("seed_sd", [0.05, 0.2, 0.6])
def test_t_interval_covers_the_true_effect_95_percent(seed_sd):
    rng = np.random.default_rng(11)
    draws = 400
    covered = 0
    for _ in range(draws):
        effect = paired_effect(simulate(rng, 0.3, seed_sd=seed_sd),
                               bootstrap=0)
        covered += effect.low <= 0.3 <= effect.high
    # binomial SD at 95 %: 1.1 points
    assert 0.915 <= covered / draws <= 0.985


def test_standard_error_is_unbiased():
    rng = np.random.default_rng(12)
    true_var = 0.2 ** 2 / 5 + 2.0 ** 2 / 300 + 1.0 / 1500
    se2 = [paired_effect(simulate(rng, 0.0), bootstrap=0).se ** 2
           for _ in range(300)]
    means = [simulate(rng, 0.0).mean() for _ in range(300)]
    assert abs(np.mean(se2) / true_var - 1) < 0.1
    assert abs(np.var(means) / true_var - 1) < 0.25


def test_crossed_bootstrap_covers_nested_one_would_not():
    """Mixtures shared by all seeds: resampling them within each seed
    forgets that their effect is common, and undercovers."""
    rng = np.random.default_rng(13)
    draws, crossed_hits, nested_hits = 150, 0, 0
    for k in range(draws):
        table = simulate(rng, 0.3, seed_sd=0.05)
        for crossed in (True, False):
            means = bootstrap_means(table, 300, crossed, rng=k)
            low, high = np.quantile(means, [0.025, 0.975])
            hit = low <= 0.3 <= high
            if crossed:
                crossed_hits += hit
            else:
                nested_hits += hit
    assert crossed_hits / draws >= 0.88
    assert nested_hits / draws < 0.75


def test_power_at_the_minimum_detectable_effect_is_80_percent():
    rng = np.random.default_rng(14)
    mde = minimum_detectable_effect(5, 300, 0.2, 2.0, 1.0)
    draws = 400
    rejected = sum(
        paired_effect(simulate(rng, mde), bootstrap=0).p < 0.05
        for _ in range(draws)
    )
    false = sum(
        paired_effect(simulate(rng, 0.0), bootstrap=0).p < 0.05
        for _ in range(draws)
    )
    assert 0.73 <= rejected / draws <= 0.87
    assert false / draws <= 0.085


def test_minimum_detectable_effect_shrinks_with_the_design():
    small = minimum_detectable_effect(3, 60, 0.3, 2.0, 1.0)
    seeds = minimum_detectable_effect(10, 60, 0.3, 2.0, 1.0)
    mixtures = minimum_detectable_effect(3, 600, 0.3, 2.0, 1.0)
    assert seeds < small and mixtures < small
    # only the seeds can beat the between-seed floor
    assert minimum_detectable_effect(3, 10 ** 6, 0.3, 2.0) > 0.3


def test_variance_components_recovered():
    rng = np.random.default_rng(15)
    table = simulate(rng, 0.0, seeds=60, mixtures=400, seed_sd=0.5)
    seed_sd, mixture_sd, residual_sd = variance_components(table)
    assert abs(seed_sd - 0.5) < 0.12
    assert abs(mixture_sd - 2.0) < 0.2
    assert abs(residual_sd - 1.0) < 0.05


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.5]) == [0.04, 0.09, 0.09, 0.5]
    assert holm([0.2, 0.9]) == [0.4, 0.9]
    assert holm([]) == []
    p = np.random.default_rng(3).uniform(0, 0.2, 10).tolist()
    adjusted = holm(p)
    assert all(a >= b for a, b in zip(adjusted, p))
    assert all(a <= min(1.0, 10 * b) + 1e-12 for a, b in zip(adjusted, p))


def test_one_seed_is_a_mixture_t_and_bad_input_refused():
    rng = np.random.default_rng(16)
    row = rng.normal(0.5, 1.0, 200)
    effect = paired_effect(row, bootstrap=0)
    assert effect.seeds == 1 and math.isclose(effect.df, 199)
    assert math.isclose(effect.se, row.std(ddof=1) / math.sqrt(200))
    with pytest.raises(ValueError, match="NaN"):
        paired_effect([[1.0, float("nan")]])
