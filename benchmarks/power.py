"""Paired effects over seeds and mixtures: intervals, Holm, power.

An arm and its baseline are trained with the same seeds and scored on the
same test mixtures, so each comparison is a table ``d[s, m]`` of per-mixture
paired differences (arm minus baseline, seed ``s``, mixture ``m``). Seeds
and mixtures are crossed (every seed scores every mixture), and both are
samples of what a claim generalises over: other seeds, other mixtures. The
model is the two-way random-effects one,

    d[s, m] = mu + a[s] + b[m] + e[s, m],

with ``a`` the seed effect (SD ``seed_sd``), ``b`` the mixture effect
shared by all seeds (SD ``mixture_sd``) and ``e`` the rest
(``residual_sd``). Then

    Var(mean d) = seed_sd**2 / S + mixture_sd**2 / M
                  + residual_sd**2 / (S * M),

estimated without bias from the ANOVA mean squares as
``(MS_seed + MS_mixture - MS_residual) / (S * M)``, with Satterthwaite's
degrees of freedom. :func:`paired_effect` gives that mixed-model
t-interval and p-value (the one reported) and, beside it, a percentile
bootstrap that resamples seeds and mixtures (crossed: one set of mixture
indices for all seeds; ``crossed=False`` resamples mixtures within each
seed instead, for designs where every seed has its own mixtures). With
five seeds the bootstrap is narrower than it should be (it cannot know the
seed variance is estimated from five values): read the t-interval.

:func:`holm` adjusts the p-values of the comparisons reported together;
:func:`minimum_detectable_effect` is the smallest true effect a design
detects with 80 % power at a two-sided alpha of 0.05, from the observed or
assumed SDs.

Authors
 * noise-robust-sb contributors 2025
"""

import math
from typing import NamedTuple

import numpy as np
from scipy import stats


class Components(NamedTuple):
    """Variance components of a seeds x mixtures table, as SDs.

    Attributes
    ----------
    seed_sd, mixture_sd, residual_sd : float
        Estimated SDs of the seed effect, the mixture effect and the rest
        (a negative variance estimate is reported as 0).
    """

    seed_sd: float
    mixture_sd: float
    residual_sd: float


class Effect(NamedTuple):
    """One paired comparison (see :func:`paired_effect`).

    Attributes
    ----------
    mean : float
        Mean paired difference over seeds and mixtures.
    se : float
        Its standard error (mixed model).
    df : float
        Satterthwaite degrees of freedom.
    low, high : float
        The two-sided ``level`` t-interval.
    p : float
        Two-sided p-value of ``mean == 0``.
    boot_low, boot_high : float
        The percentile bootstrap interval (NaN when not drawn).
    seeds, mixtures : int
        The design.
    components : Components
        The estimated SDs.
    """

    mean: float
    se: float
    df: float
    low: float
    high: float
    p: float
    boot_low: float
    boot_high: float
    seeds: int
    mixtures: int
    components: Components


def _table(differences):
    """A finite 2-D float array ``[seeds, mixtures]``."""
    table = np.asarray(differences, dtype=float)
    if table.ndim == 1:
        table = table[None, :]
    if table.ndim != 2 or table.size == 0:
        raise ValueError(
            f"paired differences must be a [seeds, mixtures] table, got "
            f"shape {table.shape}"
        )
    if not np.isfinite(table).all():
        raise ValueError("paired differences hold NaN or infinite values")
    return table


def mean_squares(differences):
    """The two-way ANOVA mean squares of a seeds x mixtures table.

    Arguments
    ---------
    differences : array-like
        ``[seeds, mixtures]`` paired differences.

    Returns
    -------
    tuple of float
        ``(MS_seed, MS_mixture, MS_residual)``; a factor with one level
        has mean square 0 (and contributes nothing).

    Example
    -------
    >>> ms = mean_squares([[1.0, 3.0], [2.0, 4.0]])
    >>> [round(float(v), 6) for v in ms]
    [1.0, 4.0, 0.0]
    """
    table = _table(differences)
    seeds, mixtures = table.shape
    grand = table.mean()
    seed_means = table.mean(axis=1)
    mixture_means = table.mean(axis=0)
    ms_seed = (
        mixtures * ((seed_means - grand) ** 2).sum() / (seeds - 1)
        if seeds > 1 else 0.0
    )
    ms_mixture = (
        seeds * ((mixture_means - grand) ** 2).sum() / (mixtures - 1)
        if mixtures > 1 else 0.0
    )
    if seeds > 1 and mixtures > 1:
        residual = (table - seed_means[:, None] - mixture_means[None, :]
                    + grand)
        ms_residual = (residual ** 2).sum() / ((seeds - 1) * (mixtures - 1))
    else:
        ms_residual = 0.0
    return float(ms_seed), float(ms_mixture), float(ms_residual)


def variance_components(differences):
    """Estimate the seed, mixture and residual SDs of a paired table.

    Arguments
    ---------
    differences : array-like
        ``[seeds, mixtures]`` paired differences.

    Returns
    -------
    Components
        ANOVA (method of moments) estimates, truncated at 0.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> table = (rng.normal(0, 0.5, (40, 1)) + rng.normal(0, 2, (1, 300))
    ...          + rng.normal(0, 1, (40, 300)))
    >>> estimate = variance_components(table)
    >>> [abs(got - true) < 0.15 for got, true in zip(estimate, (0.5, 2, 1))]
    [True, True, True]
    """
    table = _table(differences)
    seeds, mixtures = table.shape
    ms_seed, ms_mixture, ms_residual = mean_squares(table)
    seed_var = (ms_seed - ms_residual) / mixtures if seeds > 1 else 0.0
    mixture_var = (ms_mixture - ms_residual) / seeds if mixtures > 1 else 0.0
    return Components(
        math.sqrt(max(seed_var, 0.0)),
        math.sqrt(max(mixture_var, 0.0)),
        math.sqrt(max(ms_residual, 0.0)),
    )


def _se_and_df(ms_seed, ms_mixture, ms_residual, seeds, mixtures):
    """SE of the grand mean and Satterthwaite df from the mean squares."""
    terms = []  # (coefficient * mean square, its df)
    if seeds > 1:
        terms.append((ms_seed, seeds - 1))
    if mixtures > 1:
        terms.append((ms_mixture, mixtures - 1))
    if seeds > 1 and mixtures > 1:
        terms.append((-ms_residual, (seeds - 1) * (mixtures - 1)))
    total = sum(value for value, _ in terms)
    floor = max(ms_seed, ms_mixture) if terms else 0.0
    total = max(total, floor * 1e-12)
    if total <= 0.0:
        return 0.0, math.inf
    denominator = sum(value ** 2 / df for value, df in terms)
    df = total ** 2 / denominator if denominator > 0 else math.inf
    return math.sqrt(total / (seeds * mixtures)), df


def paired_effect(differences, level=0.95, bootstrap=2000, crossed=True,
                  rng=0):
    """Mean paired difference with a mixed-model t-interval and a bootstrap.

    Arguments
    ---------
    differences : array-like
        ``[seeds, mixtures]`` per-mixture paired differences (arm minus
        baseline), the same mixtures in every row; one row: one seed.
    level : float
        Coverage of the intervals.
    bootstrap : int
        Bootstrap draws (0: none, the bootstrap interval is NaN).
    crossed : bool
        True: resample seeds, and one set of mixtures for all of them (the
        mixtures are shared by the seeds). False: resample seeds, then
        mixtures within each drawn seed (a nested design).
    rng : int or numpy.random.Generator
        The bootstrap's randomness.

    Returns
    -------
    Effect
        The mean, its SE, df, t-interval, p-value, bootstrap interval, the
        design's size and the estimated SDs.

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> table = (0.5 + rng.normal(0, 0.2, (5, 1)) + rng.normal(0, 2, (1, 300))
    ...          + rng.normal(0, 1, (5, 300)))
    >>> effect = paired_effect(table, bootstrap=500)
    >>> bool(effect.low < 0.5 < effect.high), effect.seeds, effect.mixtures
    (True, 5, 300)
    >>> bool(effect.p < 0.05), bool(effect.boot_low < effect.mean)
    (True, True)
    """
    table = _table(differences)
    seeds, mixtures = table.shape
    mean = float(table.mean())
    se, df = _se_and_df(*mean_squares(table), seeds, mixtures)
    quantile = stats.t.ppf(0.5 + level / 2, df) if math.isfinite(df) \
        else stats.norm.ppf(0.5 + level / 2)
    if se > 0:
        p = float(2 * stats.t.sf(abs(mean) / se, df))
    else:
        p = 0.0 if mean != 0 else 1.0
    boot_low = boot_high = math.nan
    if bootstrap:
        means = bootstrap_means(table, bootstrap, crossed, rng)
        boot_low, boot_high = (
            float(v) for v in np.quantile(
                means, [0.5 - level / 2, 0.5 + level / 2]
            )
        )
    return Effect(
        mean, se, df, mean - quantile * se, mean + quantile * se, p,
        boot_low, boot_high, seeds, mixtures, variance_components(table),
    )


def bootstrap_means(differences, draws=2000, crossed=True, rng=0):
    """Grand means of hierarchically resampled paired tables.

    Arguments
    ---------
    differences : array-like
        ``[seeds, mixtures]`` paired differences.
    draws : int
        Number of resampled tables.
    crossed : bool
        True: one set of resampled mixtures for all drawn seeds; False:
        mixtures resampled within each drawn seed.
    rng : int or numpy.random.Generator
        Randomness.

    Returns
    -------
    numpy.ndarray
        ``[draws]`` means.

    Example
    -------
    >>> means = bootstrap_means(np.ones((3, 10)), draws=5)
    >>> means.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    table = _table(differences)
    rng = np.random.default_rng(rng)
    seeds, mixtures = table.shape
    seed_index = rng.integers(0, seeds, (draws, seeds))
    if crossed:
        mixture_index = rng.integers(0, mixtures, (draws, mixtures))
        out = np.empty(draws)
        for k in range(draws):
            out[k] = table[np.ix_(seed_index[k], mixture_index[k])].mean()
        return out
    mixture_index = rng.integers(0, mixtures, (draws, seeds, mixtures))
    rows = table[seed_index[:, :, None], mixture_index]
    return rows.mean(axis=(1, 2))


def holm(p_values):
    """Holm's step-down adjustment of p-values (family-wise error).

    Arguments
    ---------
    p_values : sequence of float
        The comparisons reported together.

    Returns
    -------
    list of float
        Adjusted p-values, in the input's order (reject where <= alpha).

    Example
    -------
    >>> holm([0.01, 0.04, 0.03, 0.5])
    [0.04, 0.09, 0.09, 0.5]
    """
    values = [float(p) for p in p_values]
    order = sorted(range(len(values)), key=values.__getitem__)
    adjusted = [0.0] * len(values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(values) - rank) * values[index])
        adjusted[index] = round(min(1.0, running), 12)
    return adjusted


def minimum_detectable_effect(seeds, mixtures, seed_sd, mixture_sd,
                              residual_sd=0.0, alpha=0.05, power=0.8):
    """The smallest true effect a paired design detects with given power.

    Two-sided test of the mixed-model t (:func:`paired_effect`) at
    ``alpha``: ``MDE = (t[1 - alpha/2, df] + t[power, df]) * SE``, with
    ``SE**2 = seed_sd**2 / S + mixture_sd**2 / M + residual_sd**2 / (S M)``
    and Satterthwaite's df of the expected mean squares.

    Arguments
    ---------
    seeds, mixtures : int
        The design: fork seeds, test mixtures (every seed scores every
        mixture).
    seed_sd : float
        SD of a seed's mean effect over seeds (between-seed SD).
    mixture_sd : float
        SD of the per-mixture effect shared by all seeds; a per-mixture SD
        measured within one seed is a conservative stand-in (it is
        ``sqrt(mixture_sd**2 + residual_sd**2)``).
    residual_sd : float
        SD of the rest (seed-by-mixture), 0 if unknown.
    alpha : float
        Two-sided significance level.
    power : float
        Probability of detecting an effect of that size.

    Returns
    -------
    float
        The effect (same unit as the SDs, e.g. dB).

    Example
    -------
    >>> round(minimum_detectable_effect(5, 300, 0.1, 2.0), 2)
    0.35
    >>> round(minimum_detectable_effect(5, 3000, 0.1, 2.0), 2)
    0.18
    >>> round(minimum_detectable_effect(5, 300, 0.3, 2.0, 1.0), 2)
    0.55
    """
    seeds, mixtures = int(seeds), int(mixtures)
    ms_seed = residual_sd ** 2 + mixtures * seed_sd ** 2
    ms_mixture = residual_sd ** 2 + seeds * mixture_sd ** 2
    se, df = _se_and_df(ms_seed, ms_mixture, residual_sd ** 2, seeds,
                        mixtures)
    if not math.isfinite(df):
        quantiles = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    else:
        quantiles = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return float(quantiles * se)


def observed_mde(differences, alpha=0.05, power=0.8):
    """:func:`minimum_detectable_effect` of a table's own design and SDs.

    Example
    -------
    >>> rng = np.random.default_rng(2)
    >>> table = rng.normal(0, 1, (5, 300)) + rng.normal(0, 2, (1, 300))
    >>> 0.3 < observed_mde(table) < 0.5
    True
    """
    table = _table(differences)
    return minimum_detectable_effect(
        *table.shape, *variance_components(table), alpha=alpha, power=power
    )
