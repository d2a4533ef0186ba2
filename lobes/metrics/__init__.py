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

The modules: :mod:`lobes.metrics.enhancement`,
:mod:`lobes.metrics.separation`, :mod:`lobes.metrics.breakdown` and
:mod:`lobes.metrics.common` (:class:`MetricAverager`); every public name is
importable from ``lobes.metrics`` too.
"""

from lobes.metrics.breakdown import (
    BREAKDOWN_METRICS,
    average_error_breakdown,
    error_breakdown,
    source_error_breakdown,
)
from lobes.metrics.common import MetricAverager
from lobes.metrics.enhancement import (
    ENHANCEMENT_METRICS,
    FAST_ENHANCEMENT_METRICS,
    METRIC_SAMPLE_RATE,
    MetricUnavailableError,
    enhancement_metrics,
)
from lobes.metrics.separation import SEPARATION_METRICS, separation_metrics

__all__ = [
    "BREAKDOWN_METRICS",
    "ENHANCEMENT_METRICS",
    "FAST_ENHANCEMENT_METRICS",
    "METRIC_SAMPLE_RATE",
    "SEPARATION_METRICS",
    "MetricAverager",
    "MetricUnavailableError",
    "average_error_breakdown",
    "enhancement_metrics",
    "error_breakdown",
    "separation_metrics",
    "source_error_breakdown",
]
