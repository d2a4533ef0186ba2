"""Evaluation metrics for enhancement and separation, from maintained libraries.

- :mod:`lobes.metrics.enhancement`: per utterance, PESQ, (e)STOI, the
  composite measures, SI-SDR and DNSMOS (:func:`enhancement_metrics`);
- :mod:`lobes.metrics.separation`: SDR and SI-SNR and their improvements
  (:func:`separation_metrics`);
- :mod:`lobes.metrics.breakdown`: the energy of the interfering speakers,
  the noise and the artifacts in each speaker estimate
  (:func:`error_breakdown`);
- :mod:`lobes.metrics.common`: :class:`MetricAverager`, which counts a
  metric that cannot be computed (NaN) instead of averaging it.

Every public name is importable from ``lobes.metrics`` too.
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
