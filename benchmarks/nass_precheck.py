"""The NASS benchmark's noise-level pre-check: where can NASS act?

With the backbone only, on validation mixtures: the error of its speaker
outputs split into the interfering speaker, residual noise and artifacts
(:func:`lobes.metrics.error_breakdown`), per mixture SNR; the smallest
noise gain where residual noise is at least as loud as interference
(:func:`pick_noise_gain`). ``python -m benchmarks.nass_vs_baseline
--noise_snr`` runs it.

Authors
 * noise-robust-sb contributors 2025
"""

import math
import os

from benchmarks.paired import fmt

#: The error breakdown's columns (:func:`lobes.metrics.error_breakdown`),
#: dB relative to the target speaker.
BREAKDOWN_KEYS = ("interference_db", "noise_db", "artifact_db")

def mixture_snr_db(speakers, noise):
    """Mean speaker power over noise power, dB.

    Example
    -------
    >>> import numpy as np
    >>> round(mixture_snr_db(np.ones((10, 2)), 0.5 * np.ones(10)), 2)
    6.02
    """
    import numpy as np

    speech = float(np.mean(np.asarray(speakers, dtype=float) ** 2))
    noise_power = float(np.mean(np.asarray(noise, dtype=float) ** 2))
    return 10 * math.log10(max(speech, 1e-20) / max(noise_power, 1e-20))


def noise_breakdown(separator, data_root, split="cv", limit=None):
    """Error breakdown of a separator's speaker outputs, per mixture.

    Arguments
    ---------
    separator : lobes.models.noise_aware.NoiseAwareSeparator
        A trained separator (``N`` outputs, or ``N + 1``: the output PIT
        matches to the true noise is dropped).
    data_root : str
        A WHAM! root (``wav8k/min/<split>/{mix_both,s1,s2,noise}``).
    split : str
        ``cv`` (validation: the pre-check never reads ``tt``).
    limit : int, optional
        Only the first mixtures (by name).

    Returns
    -------
    list of dict
        ``mixture``, ``snr_db`` (:func:`mixture_snr_db`) and
        :func:`lobes.metrics.error_breakdown`'s ``interference_db``,
        ``noise_db``, ``artifact_db`` (speakers in PIT order).
    """
    import soundfile as sf
    import torch

    from lobes.losses.pit import best_permutation, pairwise_neg_sisnr, reorder
    from lobes.metrics import error_breakdown

    base = os.path.join(data_root, "wav8k", "min", split)
    names = sorted(os.listdir(os.path.join(base, "mix_both")))[:limit]
    separator.eval()
    rows = []
    with torch.no_grad():
        for name in names:
            parts = {
                folder: torch.from_numpy(sf.read(
                    os.path.join(base, folder, name), dtype="float32")[0])
                for folder in ("mix_both", "s1", "s2", "noise")
            }
            speakers = torch.stack([parts["s1"], parts["s2"]], dim=1)
            noise = parts["noise"]
            estimates = separator(parts["mix_both"][None]).waveforms[0]
            num_spks = speakers.shape[1]
            references = speakers
            if estimates.shape[1] > num_spks:
                references = torch.cat([speakers, noise[:, None]], dim=1)
            _, perm = best_permutation(
                pairwise_neg_sisnr(estimates[None], references[None])
            )
            ordered = reorder(estimates[None], perm)[0, :, :num_spks]
            rows.append({
                "mixture": os.path.splitext(name)[0],
                "snr_db": mixture_snr_db(speakers.numpy(), noise.numpy()),
                **error_breakdown(ordered, speakers, noise),
            })
    return rows


def breakdown_by_snr(rows, width=3.0):
    """Mean error breakdown per mixture-SNR bin, and over all mixtures.

    Arguments
    ---------
    rows : list of dict
        From :func:`noise_breakdown`.
    width : float
        Bin width, dB (bins ``[k * width, (k + 1) * width)``).

    Returns
    -------
    dict
        ``bins``: list of ``{snr_low, snr_high, mixtures, interference_db,
        noise_db, artifact_db, noise_minus_interference}``, low SNR first;
        ``overall``: the same over every mixture.

    Example
    -------
    >>> rows = [{"snr_db": -5.0, "interference_db": -3.0, "noise_db": -2.0,
    ...          "artifact_db": -9.0},
    ...         {"snr_db": 1.0, "interference_db": -3.0, "noise_db": -8.0,
    ...          "artifact_db": -9.0}]
    >>> out = breakdown_by_snr(rows)
    >>> [(b["snr_low"], b["noise_minus_interference"]) for b in out["bins"]]
    [(-6.0, 1.0), (0.0, -5.0)]
    >>> out["overall"]["noise_db"], out["overall"]["mixtures"]
    (-5.0, 2)
    """
    def mean_of(members):
        out = {"mixtures": len(members)}
        for key in BREAKDOWN_KEYS:
            values = [m[key] for m in members if math.isfinite(m[key])]
            out[key] = sum(values) / len(values) if values else math.nan
        out["noise_minus_interference"] = (
            out["noise_db"] - out["interference_db"]
        )
        return out

    bins = {}
    for row in rows:
        bins.setdefault(math.floor(row["snr_db"] / width), []).append(row)
    return {
        "bins": [
            {"snr_low": k * width, "snr_high": (k + 1) * width,
             **mean_of(members)}
            for k, members in sorted(bins.items())
        ],
        "overall": mean_of(rows),
    }


def pick_noise_gain(levels):
    """The smallest noise gain where residual noise >= interference.

    Arguments
    ---------
    levels : list of dict
        One per gain: ``gain_db`` and ``overall`` from
        :func:`breakdown_by_snr`.

    Returns
    -------
    float or None
        The gain, or None when no level reaches it.

    Example
    -------
    >>> pick_noise_gain([
    ...     {"gain_db": 12.0, "overall": {"noise_minus_interference": 2.0}},
    ...     {"gain_db": 0.0, "overall": {"noise_minus_interference": -7.0}},
    ...     {"gain_db": 6.0, "overall": {"noise_minus_interference": 0.5}},
    ... ])
    6.0
    """
    reached = [level["gain_db"] for level in levels
               if level["overall"]["noise_minus_interference"] >= 0]
    return min(reached) if reached else None


def precheck_table(results):
    """The noise-level pre-check (a results file) as markdown.

    Example
    -------
    >>> level = {"gain_db": 6.0, "backbone": "sepformer", "seed": 1,
    ...          "overall": {"snr_low": None, "mixtures": 4,
    ...                      "interference_db": -3.0, "noise_db": -2.5,
    ...                      "artifact_db": -9.0,
    ...                      "noise_minus_interference": 0.5},
    ...          "bins": []}
    >>> text = precheck_table({"noise_precheck": {"levels": [level],
    ...                                           "pick_gain_db": 6.0}})
    >>> "| +6.0 | all | 4 | -3.00 | -2.50 | -9.00 | +0.50 | n/a |" in text
    True
    """
    precheck = results["noise_precheck"]
    quality = {run["gain_db"]: run.get("valid_si-snr_i", math.nan)
               for run in results.get("runs", [])}  # fmt: skip
    lines = [
        "| noise gain dB | mixture SNR dB | mixtures | interference dB "
        "| noise dB | artifacts dB | noise - interference "
        "| backbone SI-SNRi dB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in precheck["levels"]:
        for label, row in [("all", level["overall"])] + [
            (f"[{b['snr_low']:+g}, {b['snr_high']:+g})", b)
            for b in level["bins"]
        ]:
            score = (quality.get(level["gain_db"], math.nan)
                     if label == "all" else None)
            lines.append(
                f"| {fmt(level['gain_db'], 1, sign=True)} | {label} "
                f"| {row['mixtures']} | {fmt(row['interference_db'])} "
                f"| {fmt(row['noise_db'])} | {fmt(row['artifact_db'])} "
                f"| {fmt(row['noise_minus_interference'], sign=True)} "
                f"| {'' if score is None else fmt(score)} |"
            )
    pick = precheck.get("pick_gain_db")
    lines += ["", (
        f"Chosen on validation: noise {pick:+g} dB (the smallest gain where "
        "residual noise is at least as loud as the interfering speaker)."
        if pick is not None else
        "No gain tried puts residual noise at the interfering speaker's "
        "level: try louder noise."
    )]
    return "\n".join(lines)
