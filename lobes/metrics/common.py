"""What the metric modules share: waveforms as numpy, the clamps, the averager.

:class:`MetricAverager` is the package's one statistics accumulator (the
Brains' stage statistics, the results CSVs, the benchmarks);
``_to_numpy`` turns a tensor or array into the float64 waveform the metric
libraries take.
"""

import math

import numpy as np
import torch

#: A reference whose peak is below this is silent (its metrics are NaN).
_SILENCE = 1e-8

#: fast_bss_eval clamps SDRs here: a perfect estimate scores about 150 dB
#: instead of an infinity that breaks its permutation solver.
_CLAMP_DB = 150.0


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
