"""Evaluation metrics for enhancement and separation, from maintained libraries.

Enhancement, per utterance (:func:`enhancement_metrics`):

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
is NaN for that utterance, and :class:`MetricAverager` counts it instead of
averaging it.

Separation (:func:`separation_metrics`): SDR (BSS Eval v4-style, 512-tap
distortion filters, sources matched by the permutation of best SIR, as
``mir_eval``) and SI-SNR (zero-mean SI-SDR with the best permutation), both
from ``fast_bss_eval``, and their improvements over the unprocessed mixture.

Error breakdown of separated speakers (:func:`error_breakdown`, averaged
over a test set by :func:`average_error_breakdown`): each estimate split by
orthogonal projections, as in BSS Eval (Vincent et al. 2006), into the
target, interfering speakers, noise and artifacts, the last three reported
as energies relative to the target in dB (``interference_db``, ``noise_db``,
``artifact_db``).
"""

import importlib
import importlib.util
import logging
import math
import sys
import types
import warnings

import numpy as np
import torch
import torchaudio

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

#: Keys of :func:`separation_metrics`.
SEPARATION_METRICS = ("sdr", "sdr_i", "si_snr", "si_snr_i")

#: Keys of :func:`error_breakdown` (energies relative to the target, dB).
BREAKDOWN_METRICS = ("interference_db", "noise_db", "artifact_db")

#: PESQ-WB, the composite measures and DNSMOS run at this rate.
METRIC_SAMPLE_RATE = 16000

_SILENCE = 1e-8

#: fast_bss_eval clamps SDRs here: a perfect estimate scores about 150 dB
#: instead of an infinity that breaks its permutation solver.
_CLAMP_DB = 150.0


class MetricUnavailableError(RuntimeError):
    """A metric's library is missing from the environment."""


def _to_numpy(signal, name):
    """A 1-D float64 numpy copy of a tensor or array."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().to("cpu", torch.float64).numpy()
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim == 2 and 1 in signal.shape:
        signal = signal.reshape(-1)
    if signal.ndim != 1:
        raise ValueError(
            f"{name} must be one waveform [time], got {signal.shape}"
        )
    return signal


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
    import scipy.signal
    import scipy.signal.windows

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
    import pesq

    try:
        return float(pesq.pesq(METRIC_SAMPLE_RATE, clean16, enhanced16, "wb"))
    except pesq.PesqError as err:
        logger.warning("PESQ failed (%s); counted as NaN", err)
        return math.nan


def _stoi(clean, enhanced, sample_rate, extended):
    from pystoi import stoi

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
    import fast_bss_eval

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


def _pair_sources(signals, name, sources=None):
    """``[time, sources]`` tensor or array -> ``[sources, time]`` float64."""
    if isinstance(signals, torch.Tensor):
        signals = signals.detach().to("cpu", torch.float64).numpy()
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 2:
        raise ValueError(f"{name} must be [time, sources], got {signals.shape}")
    if sources is not None and signals.shape[1] != sources:
        raise ValueError(
            f"{name} has {signals.shape[1]} sources, expected {sources}"
        )
    return np.ascontiguousarray(signals.T)


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
    >>> g = torch.Generator().manual_seed(0)
    >>> refs = torch.randn(8000, 2, generator=g)
    >>> mix = refs.sum(1)
    >>> ests = refs.flip(1) + 0.1 * torch.randn(8000, 2, generator=g)
    >>> scores = separation_metrics(ests, refs, mix)
    >>> 15 < scores["si_snr"] < 25, scores["si_snr_i"] > 15
    (True, True)
    """
    import fast_bss_eval

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


class MetricAverager:
    """Mean of per-utterance metrics, with NaNs counted rather than averaged.

    The package's one statistics accumulator: the Brains' stage statistics
    (:meth:`add`), the average row of every results CSV and the benchmarks
    use it. (SpeechBrain's ``MetricStats`` computes one metric function per
    item; here several metrics come from one pass over an utterance.)

    Example
    -------
    >>> averager = MetricAverager()
    >>> averager.append({"pesq": 2.0, "stoi": 0.5})
    >>> averager.append({"pesq": float("nan"), "stoi": 1.0})
    >>> averager.summarize()
    {'pesq': 2.0, 'stoi': 0.75}
    >>> averager.failures()
    {'pesq': 1, 'stoi': 0}
    >>> averager.describe()
    'pesq 2.000, stoi 0.750 over 2 utterances (NaN: pesq 1)'
    """

    def __init__(self):
        self.sums = {}
        self.counts = {}
        self.nans = {}
        self.utterances = 0

    def append(self, scores):
        """Add one utterance's ``{metric: value}``."""
        self.utterances += 1
        for name, value in scores.items():
            self.add(name, value)

    def add(self, name, value):
        """Add one value of one metric (a float or a 0-d tensor).

        Example
        -------
        >>> averager = MetricAverager()
        >>> averager.add("loss", torch.tensor(2.0)); averager.add("loss", 4)
        >>> averager.summarize()
        {'loss': 3.0}
        """
        if isinstance(value, torch.Tensor):
            value = value.detach()
        value = float(value)
        self.sums.setdefault(name, 0.0)
        self.counts.setdefault(name, 0)
        self.nans.setdefault(name, 0)
        if math.isfinite(value):
            self.sums[name] += value
            self.counts[name] += 1
        else:
            self.nans[name] += 1

    def summarize(self):
        """``{metric: mean over the finite values}`` (NaN if there are none)."""
        return {
            name: (
                self.sums[name] / self.counts[name]
                if self.counts[name]
                else math.nan
            )
            for name in self.sums
        }

    def failures(self):
        """``{metric: how many utterances gave NaN}``."""
        return dict(self.nans)

    def describe(self):
        """One line for a log: the means and any NaN counts."""
        means = ", ".join(f"{k} {v:.3f}" for k, v in self.summarize().items())
        line = f"{means} over {self.utterances} utterances"
        failed = [f"{k} {n}" for k, n in self.nans.items() if n]
        if failed:
            line += f" (NaN: {', '.join(failed)})"
        return line
