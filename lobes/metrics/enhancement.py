"""Enhancement metrics per utterance, from maintained libraries.

:func:`enhancement_metrics` computes:

- ``pesq``: PESQ wide band (ITU-T P.862.2) from ``pesq``, at 16 kHz;
- ``stoi``, ``estoi``: (extended) short-time objective intelligibility from
  ``pystoi``;
- ``csig``, ``cbak``, ``covl``: the composite measures of Hu & Loizou
  (2008), i.e. the published linear combinations of PESQ, the log-likelihood
  ratio (LLR), the weighted-slope spectral distance (WSS) and segmental SNR.
  LLR, WSS and segSNR come from ``pysepm_evo``; its own ``composite()``
  cannot be used as released (0.1.1 refers to an undefined ``mos_lqo``, its
  package ``__init__`` imports the unpublished ``srmrpy``, and its
  ``util.py`` imports ``scipy.signal.kaiser``, removed in SciPy 1.13), so
  :func:`_pysepm_quality` loads its ``qualityMeasures`` module alone and
  the combination is done here with PESQ-WB from ``pesq``, as pysepm does
  at 16 kHz;
- ``si_sdr``: scale-invariant SDR (zero mean) from ``fast_bss_eval``;
- ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``: DNSMOS P.835 from
  ``speechmos`` (its bundled ONNX models; non-intrusive, 16 kHz; needs
  ``librosa``). Slow: clips shorter than 9 s are tiled to 9 s, longer ones
  are scored in 9 s windows every second.

A metric that cannot be computed for a degenerate input (PESQ finds no
utterance in silence, STOI has too few speech frames, a silent reference)
is NaN for that utterance, and :class:`lobes.metrics.common.MetricAverager`
counts it instead of averaging it.
"""

import importlib
import importlib.util
import logging
import math
import sys
import types
import warnings

import fast_bss_eval
import numpy as np
import pesq
import scipy.signal
import scipy.signal.windows
import torch
import torchaudio
from pystoi import stoi

from lobes.metrics.common import _CLAMP_DB, _SILENCE, _to_numpy

logger = logging.getLogger(__name__)

#: Every metric :func:`enhancement_metrics` knows, in report order.
ENHANCEMENT_METRICS = (
    "pesq",
    "stoi",
    "estoi",
    "csig",
    "cbak",
    "covl",
    "si_sdr",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
)

#: The ones that cost little (no composite, no DNSMOS): for validation.
FAST_ENHANCEMENT_METRICS = ("pesq", "stoi", "estoi", "si_sdr")

#: PESQ-WB, the composite measures and DNSMOS run at this rate.
METRIC_SAMPLE_RATE = 16000


class MetricUnavailableError(RuntimeError):
    """A metric's library is missing from the environment."""


def _resample(signal, sample_rate, target=METRIC_SAMPLE_RATE):
    if sample_rate == target:
        return signal
    tensor = torch.from_numpy(signal)
    return torchaudio.functional.resample(tensor, sample_rate, target).numpy()


def _pysepm_quality():
    """Import ``pysepm_evo.qualityMeasures`` without the package ``__init__``.

    The module is registered under a private package name, so an ordinary
    ``import pysepm_evo`` elsewhere is not affected. SciPy >= 1.13 moved
    ``kaiser`` to ``scipy.signal.windows``; the old name is added back for
    ``pysepm_evo.util``.

    Example
    -------
    >>> sorted(n for n in ("wss", "llr", "SNRseg")
    ...        if hasattr(_pysepm_quality(), n))
    ['SNRseg', 'llr', 'wss']
    """
    name = "_lobes_pysepm_evo"
    if f"{name}.qualityMeasures" in sys.modules:
        return sys.modules[f"{name}.qualityMeasures"]
    if not hasattr(scipy.signal, "kaiser"):
        scipy.signal.kaiser = scipy.signal.windows.kaiser
    spec = importlib.util.find_spec("pysepm_evo")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailableError(
            "csig/cbak/covl need pysepm-evo: pip install pysepm-evo"
        )
    # Its functions are numba-compiled on first use; numba's compiler logs
    # pages of DEBUG records, which SpeechBrain's log file would keep.
    logging.getLogger("numba").setLevel(logging.WARNING)
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package
    return importlib.import_module(f"{name}.qualityMeasures")


def _dnsmos_run():
    """Return ``speechmos.dnsmos.run``, or say which package is missing."""
    try:
        from speechmos import dnsmos
    except ImportError as err:
        missing = err.name or "speechmos"
        needs = (
            "speechmos"
            if missing == "speechmos"
            else (f"{missing} (a dependency of speechmos)")
        )
        raise MetricUnavailableError(
            f"DNSMOS needs {needs}: pip install {missing}; or leave "
            "dnsmos_* out of the metrics"
        ) from None
    return dnsmos.run


def _pesq_wb(clean16, enhanced16):
    try:
        return float(pesq.pesq(METRIC_SAMPLE_RATE, clean16, enhanced16, "wb"))
    except pesq.PesqError as err:
        logger.warning("PESQ failed (%s); counted as NaN", err)
        return math.nan


def _stoi(clean, enhanced, sample_rate, extended):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(clean, enhanced, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        logger.warning("STOI: too few speech frames; counted as NaN")
        return math.nan
    return value


def _composite(clean16, enhanced16, pesq_value):
    """CSIG, CBAK, COVL (Hu & Loizou 2008), each clipped to [1, 5]."""
    if math.isnan(pesq_value):
        return math.nan, math.nan, math.nan
    quality = _pysepm_quality()
    rate = METRIC_SAMPLE_RATE
    with np.errstate(all="ignore"):
        wss = float(quality.wss(clean16, enhanced16, rate))
        llr = float(quality.llr(clean16, enhanced16, rate, True))
        segsnr = float(quality.SNRseg(clean16, enhanced16, rate))
    if not all(map(math.isfinite, (wss, llr, segsnr))):
        logger.warning("composite measures not finite; counted as NaN")
        return math.nan, math.nan, math.nan
    csig = 3.093 - 1.029 * llr + 0.603 * pesq_value - 0.009 * wss
    cbak = 1.634 + 0.478 * pesq_value - 0.007 * wss + 0.063 * segsnr
    covl = 1.594 + 0.805 * pesq_value - 0.512 * llr - 0.007 * wss
    return tuple(min(max(v, 1.0), 5.0) for v in (csig, cbak, covl))


def _si_sdr(clean, enhanced):
    with np.errstate(all="ignore"):
        value = fast_bss_eval.si_sdr(
            clean[None, :],
            enhanced[None, :],
            zero_mean=True,
            clamp_db=_CLAMP_DB,
        )
    value = float(value[0])
    return value if math.isfinite(value) else math.nan


def _dnsmos(enhanced16):
    run = _dnsmos_run()
    peak = float(np.max(np.abs(enhanced16)))
    if peak > 1.0:  # speechmos only takes samples in [-1, 1].
        enhanced16 = enhanced16 / peak
    scores = run(enhanced16, METRIC_SAMPLE_RATE)
    return (
        float(scores["sig_mos"]),
        float(scores["bak_mos"]),
        float(scores["ovrl_mos"]),
    )


def enhancement_metrics(enhanced, clean, sample_rate, metrics=None):
    """Score one enhanced utterance against its clean reference.

    Arguments
    ---------
    enhanced, clean : torch.Tensor or numpy.ndarray
        Waveforms ``[time]`` of equal length.
    sample_rate : int
        Their rate. PESQ, the composite measures and DNSMOS resample to
        16 kHz; STOI and SI-SDR use the signals as they are.
    metrics : list of str, optional
        Which of :data:`ENHANCEMENT_METRICS` to compute (default: all).
        Leave out the slow ones (``dnsmos_*``, then ``csig/cbak/covl``) for
        quick validation, e.g. :data:`FAST_ENHANCEMENT_METRICS`.

    Returns
    -------
    dict
        ``{metric: float}`` for the requested metrics; NaN where the metric
        cannot be computed on this input.

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> speech = torch.sin(2 * math.pi * 200 * t) * torch.sin(math.pi * t)
    >>> noisy = speech + 0.1 * torch.randn(16000)
    >>> scores = enhancement_metrics(noisy, speech, 16000,
    ...                              metrics=["stoi", "si_sdr"])
    >>> sorted(scores), 10 < scores["si_sdr"] < 20
    (['si_sdr', 'stoi'], True)
    """
    wanted = ENHANCEMENT_METRICS if metrics is None else tuple(metrics)
    unknown = [name for name in wanted if name not in ENHANCEMENT_METRICS]
    if unknown:
        raise ValueError(
            f"unknown enhancement metrics {unknown}; choose from "
            f"{', '.join(ENHANCEMENT_METRICS)}"
        )
    enhanced = _to_numpy(enhanced, "enhanced")
    clean = _to_numpy(clean, "clean")
    if enhanced.shape != clean.shape:
        raise ValueError(
            f"enhanced ({enhanced.shape[0]} samples) and clean "
            f"({clean.shape[0]} samples) differ in length; trim the output"
        )
    results = {}
    silent_reference = float(np.max(np.abs(clean), initial=0.0)) < _SILENCE
    intrusive = {"pesq", "stoi", "estoi", "csig", "cbak", "covl", "si_sdr"}
    if silent_reference and intrusive & set(wanted):
        logger.warning("silent clean reference; intrusive metrics are NaN")
        results.update({name: math.nan for name in intrusive & set(wanted)})

    need16 = {"pesq", "csig", "cbak", "covl"} & set(wanted)
    need16 = need16 and not silent_reference
    if need16 or any(name.startswith("dnsmos") for name in wanted):
        enhanced16 = _resample(enhanced, sample_rate)
        clean16 = _resample(clean, sample_rate)
    if need16:
        pesq_value = _pesq_wb(clean16, enhanced16)
        if "pesq" in wanted:
            results["pesq"] = pesq_value
        if {"csig", "cbak", "covl"} & set(wanted):
            composite = _composite(clean16, enhanced16, pesq_value)
            for name, value in zip(("csig", "cbak", "covl"), composite):
                if name in wanted:
                    results[name] = value
    if not silent_reference:
        if "stoi" in wanted:
            results["stoi"] = _stoi(clean, enhanced, sample_rate, False)
        if "estoi" in wanted:
            results["estoi"] = _stoi(clean, enhanced, sample_rate, True)
        if "si_sdr" in wanted:
            results["si_sdr"] = _si_sdr(clean, enhanced)
    dnsmos_names = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
    if set(dnsmos_names) & set(wanted):
        for name, value in zip(dnsmos_names, _dnsmos(enhanced16)):
            if name in wanted:
                results[name] = value
    return {name: results[name] for name in wanted}
