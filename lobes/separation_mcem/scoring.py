"""Scores of the audio-visual separation: SDR, SI-SDR, PESQ, STOI, order.

:func:`evaluate` scores the estimates against the references with the
permutation of best SI-SDR: SDR (BSS Eval), SI-SDR, their gains over the
mixture, PESQ (wide band) and STOI, each averaged over the speakers, and
whether the lips' order was the best permutation; :func:`summary_table`
prints the means per method as a markdown table.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import fast_bss_eval
import numpy as np

from lobes.metrics import enhancement_metrics, separation_metrics

#: Scores :func:`evaluate` returns.
SCORES = (
    "sdr", "sdr_i", "si_sdr", "si_sdr_i", "pesq", "stoi", "order_correct",
)  # fmt: skip


def _best_order(estimates, references):
    """Permutation (tuple) of the estimates with the best mean SI-SDR.

    ``order[j]`` is the estimate matched to reference ``j``.

    Example
    -------
    >>> import torch
    >>> refs = torch.randn(3, 4000)
    >>> _best_order(refs[[2, 0, 1]], refs)
    (1, 2, 0)
    """
    with np.errstate(all="ignore"):
        _, perm = fast_bss_eval.si_sdr(
            references.double().numpy(), estimates.double().numpy(),
            zero_mean=True, clamp_db=150.0, return_perm=True,
        )  # fmt: skip
    return tuple(int(i) for i in np.asarray(perm).reshape(-1))


def evaluate(estimates, references, mixture, sample_rate=16000,
             quality=True):  # fmt: skip
    """Scores of ``[J, T]`` estimates against ``[J, T]`` references.

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``[J, T]``.
    mixture : torch.Tensor
        ``[T]``.
    sample_rate : int
        Their rate.
    quality : bool
        Also compute PESQ and STOI (slower).

    Returns
    -------
    dict
        :data:`SCORES` (``pesq``/``stoi`` NaN when ``quality`` is False):
        means over the speakers at the permutation of best SI-SDR;
        ``order_correct`` is 1.0 when that permutation is the given order.

    Example
    -------
    >>> import torch
    >>> refs = torch.randn(2, 8000)
    >>> mix = refs.sum(0)
    >>> scores = evaluate(refs.flip(0) + 0.01 * torch.randn(2, 8000), refs,
    ...                   mix, quality=False)
    >>> scores["si_sdr"] > 30, scores["order_correct"]
    (True, 0.0)
    """
    order = _best_order(estimates, references)
    ordered = estimates[list(order)]
    sep = separation_metrics(ordered.t(), references.t(), mixture)
    scores = {
        "sdr": sep["sdr"],
        "sdr_i": sep["sdr_i"],
        "si_sdr": sep["si_snr"],
        "si_sdr_i": sep["si_snr_i"],
        "pesq": math.nan,
        "stoi": math.nan,
        "order_correct": float(order == tuple(range(len(order)))),
    }
    if quality:
        values = [
            enhancement_metrics(ordered[j], references[j], sample_rate,
                                metrics=["pesq", "stoi"])  # fmt: skip
            for j in range(references.shape[0])
        ]
        for name in ("pesq", "stoi"):
            finite = [v[name] for v in values if math.isfinite(v[name])]
            scores[name] = float(np.mean(finite)) if finite else math.nan
    return scores


def summary_table(summary):
    """A markdown table of :func:`evaluate_methods`'s summary.

    Example
    -------
    >>> table = summary_table({"methods": {"nmf": dict.fromkeys(
    ...     SCORES + ("seconds_per_audio_second",), 1.0)}})
    >>> table.splitlines()[2]
    '| nmf | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |'
    >>> table.splitlines()[0].count("|")
    10
    """
    header = ("| method | SDR | SDRi | SI-SDR | SI-SDRi | PESQ | STOI | "
              "lips order right | s / s audio |")  # fmt: skip
    lines = [header, "|---" + "|---:" * 8 + "|"]
    keys = SCORES + ("seconds_per_audio_second",)
    for method, means in summary["methods"].items():
        cells = [
            "-" if not math.isfinite(means.get(k, math.nan))
            else f"{means[k]:.2f}"
            for k in keys
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
