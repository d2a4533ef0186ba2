"""Error breakdown of separated speakers: interference, noise, artifacts.

Error breakdown of separated speakers (:func:`error_breakdown`, averaged
over a test set by :func:`average_error_breakdown`): each estimate split by
orthogonal projections, as in BSS Eval (Vincent et al. 2006), into the
target, interfering speakers, noise and artifacts, the last three reported
as energies relative to the target in dB (``interference_db``, ``noise_db``,
``artifact_db``).
"""

import logging
import math

import numpy as np
import torch

from lobes.metrics.common import (
    _CLAMP_DB,
    _SILENCE,
    MetricAverager,
    _pair_sources,
)

logger = logging.getLogger(__name__)

#: Keys of :func:`error_breakdown` (energies relative to the target, dB).
BREAKDOWN_METRICS = ("interference_db", "noise_db", "artifact_db")


def _project(basis, signal):
    """Orthogonal projection of ``signal [time]`` on the columns' span."""
    coefficients = np.linalg.lstsq(basis, signal, rcond=None)[0]
    return basis @ coefficients


def _relative_db(error, target):
    """``10 log10(error / target)`` clamped to +-150 dB (energies)."""
    if error <= 0.0:
        return -_CLAMP_DB
    if target <= 0.0:
        return _CLAMP_DB
    value = 10.0 * math.log10(error / target)
    return min(max(value, -_CLAMP_DB), _CLAMP_DB)


def source_error_breakdown(estimates, speakers, noise=None):
    """Per speaker estimate: interference, noise and artifacts vs the target.

    The projection decomposition of BSS Eval (Vincent, Gribonval and
    Fevotte 2006) with zero-delay gains (no distortion filters: every
    projection is an ordinary least-squares fit of the signals
    themselves, not of delayed copies). For estimate ``j``, speaker ``s_j``:

    - ``s_target = <est_j, s_j> s_j / ||s_j||^2``;
    - ``e_interf = P_speakers(est_j) - s_target`` (``P_speakers``: the
      orthogonal projection on the span of all speakers);
    - ``e_noise = P_speakers+noise(est_j) - P_speakers(est_j)``;
    - ``e_artif = est_j - P_speakers+noise(est_j)``.

    Arguments
    ---------
    estimates : torch.Tensor or numpy.ndarray
        Separated speakers ``[time, speakers]``, already in the speakers'
        order (apply the PIT permutation first).
    speakers : torch.Tensor or numpy.ndarray
        True speakers ``[time, speakers]``.
    noise : torch.Tensor or numpy.ndarray, optional
        True noise ``[time]`` (or ``[time, sources]``). Without it, the
        noise is not separated from the artifacts and ``noise_db`` is
        left out.

    Returns
    -------
    dict
        ``interference_db``, ``noise_db``, ``artifact_db``: float64 arrays
        ``[speakers]``, each ``10 log10(||e||^2 / ||s_target||^2)``,
        clamped to +-150 dB (a zero error gives -150). NaN for a source
        whose reference or estimate is silent; ``noise_db`` is NaN
        everywhere if the noise is silent.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> speakers, noise = torch.randn(8000, 2, generator=g), torch.randn(8000)
    >>> estimates = speakers + 0.1 * speakers.flip(1)
    >>> parts = source_error_breakdown(estimates, speakers, noise)
    >>> parts["interference_db"].round(0), parts["noise_db"]
    (array([-20., -20.]), array([-150., -150.]))
    """
    refs = _pair_sources(speakers, "speakers")
    ests = _pair_sources(estimates, "estimates", refs.shape[0])
    length = refs.shape[1]
    if ests.shape[1] != length:
        raise ValueError(
            f"estimates ({ests.shape[1]} samples) and speakers ({length} "
            "samples) differ in length"
        )
    noises = None
    if noise is not None:
        if isinstance(noise, torch.Tensor):
            noise = noise.detach().to("cpu", torch.float64).numpy()
        noise = np.asarray(noise, dtype=np.float64)
        noises = _pair_sources(noise.reshape(noise.shape[0], -1), "noise")
        if noises.shape[1] != length:
            raise ValueError(
                f"noise ({noises.shape[1]} samples) and speakers ({length} "
                "samples) differ in length"
            )
    keys = BREAKDOWN_METRICS if noises is not None else BREAKDOWN_METRICS[::2]
    count = refs.shape[0]
    result = {key: np.full(count, math.nan) for key in keys}
    silent_noise = noises is not None and bool(
        np.max(np.abs(noises)) < _SILENCE
    )
    speaker_basis = refs.T
    full_basis = (
        speaker_basis
        if noises is None
        else np.concatenate([speaker_basis, noises.T], axis=1)
    )
    for index in range(count):
        estimate, reference = ests[index], refs[index]
        quietest = min(np.max(np.abs(reference)), np.max(np.abs(estimate)))
        if quietest < _SILENCE:
            logger.warning("a silent speaker or estimate; breakdown NaN")
            continue
        target = reference * (estimate @ reference) / (reference @ reference)
        on_speakers = _project(speaker_basis, estimate)
        on_all = (
            on_speakers if noises is None else _project(full_basis, estimate)
        )
        energy = float(target @ target)
        interference = on_speakers - target
        artifacts = estimate - on_all
        result["interference_db"][index] = _relative_db(
            float(interference @ interference), energy
        )
        result["artifact_db"][index] = _relative_db(
            float(artifacts @ artifacts), energy
        )
        if noises is not None and not silent_noise:
            residual = on_all - on_speakers
            result["noise_db"][index] = _relative_db(
                float(residual @ residual), energy
            )
    return result


def error_breakdown(estimates, speakers, noise=None):
    """Error breakdown of one mixture's speaker estimates, in dB.

    The mean over the speakers of :func:`source_error_breakdown` (see there
    for the projections: BSS Eval's decomposition with zero-delay gains, no
    distortion filters), one float per key, ready for
    :class:`MetricAverager` or :func:`average_error_breakdown`.

    Arguments
    ---------
    estimates : torch.Tensor or numpy.ndarray
        Separated speakers ``[time, speakers]``, in the speakers' order.
    speakers : torch.Tensor or numpy.ndarray
        True speakers ``[time, speakers]``.
    noise : torch.Tensor or numpy.ndarray, optional
        True noise ``[time]``; without it ``noise_db`` is left out and the
        residual noise counts as artifacts.

    Returns
    -------
    dict
        ``interference_db``, ``noise_db``, ``artifact_db``: energy of the
        interfering speakers, the noise and the artifacts relative to the
        target, dB, mean over the speakers; NaN if any speaker (or its
        estimate) is silent, as :func:`separation_metrics`; ``noise_db``
        NaN if the noise is silent.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> speakers, noise = torch.randn(8000, 2, generator=g), torch.randn(8000)
    >>> junk = torch.randn(8000, 2, generator=g)
    >>> estimates = speakers + 0.1 * speakers.flip(1) + 0.01 * noise[:, None]
    >>> parts = error_breakdown(estimates + 0.0316 * junk, speakers, noise)
    >>> {key: round(value) for key, value in parts.items()}
    {'interference_db': -20, 'noise_db': -40, 'artifact_db': -30}
    """
    parts = source_error_breakdown(estimates, speakers, noise)
    return {key: float(np.mean(values)) for key, values in parts.items()}


def average_error_breakdown(breakdowns):
    """Average :func:`error_breakdown` over a test set's mixtures.

    The mean of the dB values over the mixtures where they are finite (as
    the package's other metrics: :class:`MetricAverager`), with the count
    of NaN mixtures beside each.

    Arguments
    ---------
    breakdowns : iterable of dict
        One :func:`error_breakdown` result per mixture.

    Returns
    -------
    dict
        ``{key: mean dB}`` for each key, ``{key}_nan``: how many mixtures
        gave NaN, and ``mixtures``: how many there were.

    Example
    -------
    >>> average_error_breakdown([
    ...     {"interference_db": -10.0, "artifact_db": -20.0},
    ...     {"interference_db": float("nan"), "artifact_db": -10.0},
    ... ])  # doctest: +NORMALIZE_WHITESPACE
    {'interference_db': -10.0, 'artifact_db': -15.0,
     'interference_db_nan': 1, 'artifact_db_nan': 0, 'mixtures': 2}
    """
    averager = MetricAverager()
    for breakdown in breakdowns:
        averager.append(breakdown)
    result = averager.summarize()
    result.update({f"{k}_nan": n for k, n in averager.failures().items()})
    result["mixtures"] = averager.utterances
    return result
