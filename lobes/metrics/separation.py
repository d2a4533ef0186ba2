"""Separation metrics: SDR and SI-SNR, and their gains over the mixture.

Separation (:func:`separation_metrics`): SDR (BSS Eval v4-style, 512-tap
distortion filters, sources matched by the permutation of best SIR, as
``mir_eval``) and SI-SNR (zero-mean SI-SDR with the best permutation), both
from ``fast_bss_eval``, and their improvements over the unprocessed mixture.
"""

import logging
import math

import fast_bss_eval
import numpy as np

from lobes.metrics.common import _CLAMP_DB, _SILENCE, _pair_sources, _to_numpy

logger = logging.getLogger(__name__)

#: Keys of :func:`separation_metrics`.
SEPARATION_METRICS = ("sdr", "sdr_i", "si_snr", "si_snr_i")


def separation_metrics(estimates, references, mixture):
    """SDR and SI-SNR of separated sources and their gains over the mixture.

    Arguments
    ---------
    estimates : torch.Tensor or numpy.ndarray
        Separated sources ``[time, sources]`` (any order).
    references : torch.Tensor or numpy.ndarray
        True sources ``[time, sources]``.
    mixture : torch.Tensor or numpy.ndarray
        The input mixture ``[time]``.

    Returns
    -------
    dict
        ``sdr``, ``sdr_i``, ``si_snr``, ``si_snr_i`` in dB, each the mean
        over the sources (NaN for a degenerate input, e.g. a silent
        reference). ``sdr`` pairs the sources by the permutation of best
        SIR, ``si_snr`` by the permutation of best SI-SNR; the gains
        subtract the same metric with the mixture as every estimate.

    Example
    -------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> refs = torch.randn(8000, 2, generator=g)
    >>> mix = refs.sum(1)
    >>> ests = refs.flip(1) + 0.1 * torch.randn(8000, 2, generator=g)
    >>> scores = separation_metrics(ests, refs, mix)
    >>> 15 < scores["si_snr"] < 25, scores["si_snr_i"] > 15
    (True, True)
    """
    refs = _pair_sources(references, "references")
    ests = _pair_sources(estimates, "estimates", refs.shape[0])
    mix = _to_numpy(mixture, "mixture")
    if not refs.shape[1] == ests.shape[1] == mix.shape[0]:
        raise ValueError(
            "estimates, references and mixture differ in length "
            f"({ests.shape[1]}, {refs.shape[1]}, {mix.shape[0]})"
        )
    mix_as_estimates = np.repeat(mix[None, :], refs.shape[0], axis=0)
    nan_result = {name: math.nan for name in SEPARATION_METRICS}
    if np.any(np.max(np.abs(refs), axis=1) < _SILENCE):
        logger.warning("a silent reference source; separation metrics NaN")
        return nan_result
    try:
        with np.errstate(all="ignore"):
            sdr = fast_bss_eval.bss_eval_sources(
                refs, ests, clamp_db=_CLAMP_DB
            )[0]
            sdr_mix = fast_bss_eval.sdr(
                refs, mix_as_estimates, clamp_db=_CLAMP_DB
            )
            si_snr = fast_bss_eval.si_sdr(
                refs, ests, zero_mean=True, clamp_db=_CLAMP_DB
            )
            si_snr_mix = fast_bss_eval.si_sdr(
                refs, mix_as_estimates, zero_mean=True, clamp_db=_CLAMP_DB
            )
    except (np.linalg.LinAlgError, ValueError) as err:
        logger.warning("separation metrics failed (%s); NaN", err)
        return nan_result
    values = {
        "sdr": float(np.mean(sdr)),
        "sdr_i": float(np.mean(sdr - sdr_mix)),
        "si_snr": float(np.mean(si_snr)),
        "si_snr_i": float(np.mean(si_snr - si_snr_mix)),
    }
    return {k: v if math.isfinite(v) else math.nan for k, v in values.items()}
