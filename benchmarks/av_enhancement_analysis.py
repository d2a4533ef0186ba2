"""The AV enhancement benchmark's analysis: paired effects and tables.

What :mod:`benchmarks.av_enhancement` reports from its results file: per
test seed and item, the paired differences between methods
(:func:`paired_table`), their mixed-model intervals and minimum detectable
effects (:mod:`benchmarks.power`), the corrupted-lips comparison against
the A-VAE (:func:`summarize`), and the tables (:func:`markdown_table`, for
``python -m benchmarks.report``).

Authors
 * noise-robust-sb contributors 2025
"""

import math

import numpy as np

from benchmarks.power import observed_mde, paired_effect

#: The fallback stays on when it costs less than this (dB SDR, correct
#: lips, validation); the unreliable-lips criterion uses the same margin.
FALLBACK_MARGIN_DB = 0.3
#: The noise run-away stop tried on validation (``max_noise_growth``): kept
#: when it raises both VAEs' SDR by :data:`GUARD_GAIN_DB` or more at the
#: chosen iterations; its effect at the grid's longest run is reported.
NOISE_GUARD = 10.0
#: Test-set methods, and the paired differences reported.
METHODS = ("mixture", "av_vae", "a_vae", "nmf", "supervised")
PAIRS = (("av_vae", "a_vae"), ("av_vae", "mixture"), ("a_vae", "mixture"),
         ("av_vae", "nmf"), ("av_vae", "supervised"))  # fmt: skip
SCORES = ("sdr", "si_sdr", "pesq", "stoi")
CORRUPTED = ("none", "other_speaker", "rotated", "frozen", "noise",
             "resized")  # fmt: skip


def paired_table(seeds, first, second, score="sdr"):
    """``[seeds, items]`` differences ``first - second`` (dicts of
    ``{seed: {item: {score: value}}}``), on the items both have.

    Example
    -------
    >>> one = {1: {"a": {"sdr": 3.0}, "b": {"sdr": 1.0}}}
    >>> two = {1: {"a": {"sdr": 1.0}, "b": {"sdr": 2.0}}}
    >>> paired_table([1], one, two).tolist()
    [[2.0, -1.0]]
    """
    rows = []
    for seed in seeds:
        ids = sorted(set(first[seed]) & set(second[seed]))
        rows.append([first[seed][i][score] - second[seed][i][score]
                     for i in ids])  # fmt: skip
    width = min(len(r) for r in rows)
    return np.asarray([r[:width] for r in rows], dtype=float)


def _effect_cell(table):
    finite = table[:, np.isfinite(table).all(0)]
    if finite.size == 0:
        return "-", math.nan
    effect = paired_effect(finite, bootstrap=0)
    mde = observed_mde(finite) if finite.shape[0] > 1 else math.nan
    if not (math.isfinite(effect.low) and effect.df >= 1):
        return f"{effect.mean:+.2f} (df < 1)", mde
    return f"{effect.mean:+.2f} [{effect.low:+.2f}, {effect.high:+.2f}]", mde


def summarize(data):
    """The comparisons of the test runs present (see the module doc)."""
    runs = {int(s): r for s, r in data.get("test", {}).items()}
    seeds = sorted(runs)
    if not seeds:
        return {}
    by_method = {m: {s: runs[s]["items"][m] for s in seeds}
                 for m in METHODS if all(m in runs[s]["items"]
                                         for s in seeds)}  # fmt: skip
    means = {
        m: {score: float(np.nanmean([v[score] for s in seeds
                                     for v in by_method[m][s].values()]))
            for score in SCORES}
        for m in by_method
    }  # fmt: skip
    pairs = {}
    for one, two in PAIRS:
        if one in by_method and two in by_method:
            pairs[f"{one} - {two}"] = {
                score: _effect_cell(paired_table(seeds, by_method[one],
                                                 by_method[two], score))
                for score in SCORES
            }  # fmt: skip
    corrupted = {}
    for key in runs[seeds[0]]["corrupted"]:
        arm = {s: runs[s]["corrupted"][key] for s in seeds}
        table = paired_table(seeds, arm, by_method["a_vae"])
        cell, mde = _effect_cell(table)
        corrupted[key] = {"vs_a_vae": cell, "mde": mde,
                          "mean": float(np.nanmean(table)),
                          "passes": bool(np.nanmean(table)
                                         > -FALLBACK_MARGIN_DB)}
    latent = {}
    variant = data.get("validation", {}).get("variant", "none")
    # the remedy's model and the one without (the same when none is kept)
    for key in ("av_vae_none",) if variant == "none" else ("av_vae_none",
                                                           "av_vae"):
        stats = [runs[s]["training"][key].get("latent", {}) for s in seeds]
        latent[key] = {
            name: float(np.mean([st[name] for st in stats if name in st]))
            for name in ("kl", "z_sensitivity", "lips_sensitivity")
            if any(name in st for st in stats)
        }
    items = len(next(iter(by_method["a_vae"].values())))
    return {"seeds": seeds, "items": items, "means": means, "pairs": pairs,
            "corrupted": corrupted, "latent": latent}  # fmt: skip


def markdown_table(data):
    """The README tables: validation choices, test means, paired
    differences, unreliable lips, latent statistics."""
    choice = data.get("validation", {})
    lines = []
    if "fallback" in choice:
        lines += ["Chosen on validation (seed "
                  f"{choice['seed']}): anti-collapse variant "
                  f"`{choice['variant']}`, initial gains "
                  f"`{choice['gain_init']}`, EM iterations AV-VAE "
                  f"{choice['av_vae_iterations']} / A-VAE "
                  f"{choice['a_vae_iterations']}, fallback "
                  f"{'on' if choice['fallback'] else 'off'}"
                  + (f", noise stop x{choice['max_noise_growth']:g}"
                     if choice.get("max_noise_growth") else "")
                  + (f", MCEM sampling `{choice['mcem_sampling']}`"
                     if choice.get("mcem_sampling") else "")
                  + ".", ""]
    if choice.get("variants"):
        lines += ["| variant (validation) | SDR (dB) | KL (nat/frame) "
                  "| z sensitivity | lips sensitivity |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, record in choice["variants"].items():
            lat = record["training"].get("latent", {})
            lines.append(
                f"| {name} | {record['sdr']:.2f} | "
                + " | ".join(f"{lat.get(k, math.nan):.2f}" for k in
                             ("kl", "z_sensitivity", "lips_sensitivity"))
                + " |"
            )
        lines.append("")
    if choice.get("gain_init_sdr"):
        lines += ["| initial gains (validation) | AV-VAE SDR | A-VAE SDR |",
                  "|---|---:|---:|"]
        for init, sdr in choice["gain_init_sdr"].items():
            lines.append(f"| {init} | {sdr['av_vae']:.2f} | "
                         f"{sdr['a_vae']:.2f} |")
        lines.append("")
    if choice.get("sampling"):
        lines += ["| MCEM sampling (validation) | MH steps / burn-in | noise "
                  "rank | AV-VAE SDR | A-VAE SDR |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, row in choice["sampling"].items():
            cfg = row["settings"]
            lines.append(f"| {name} | {cfg['num_mh_steps']} / "
                         f"{cfg['burn_in']} | {cfg['noise_rank']} | "
                         f"{row['av_vae']:.2f} | {row['a_vae']:.2f} |")
        lines.append("")
    if choice.get("noise_guard"):
        lines += [f"| noise stop x{NOISE_GUARD:g} (validation) | AV-VAE SDR "
                  "| A-VAE SDR | notices |", "|---|---:|---:|---:|"]
        for label, row in choice["noise_guard"].items():
            lines.append(f"| {label} | {row['av_vae']:.2f} | "
                         f"{row['a_vae']:.2f} | {row['notices']} |")
        lines.append("")
    if choice.get("iterations"):
        lines += ["| EM iterations (validation) | AV-VAE SDR | A-VAE SDR |",
                  "|---:|---:|---:|"]
        for count, sdr in sorted(choice["iterations"].items(),
                                 key=lambda kv: int(kv[0])):
            lines.append(f"| {count} | {sdr['av_vae']:.2f} | "
                         f"{sdr['a_vae']:.2f} |")
        lines.append("")
    summary = data.get("summary") or {}
    if not summary:
        return "\n".join(lines + ["(no test runs yet)"])
    lines += [f"Test: {summary['items']} items x {len(summary['seeds'])} "
              f"seeds ({', '.join(map(str, summary['seeds']))}).", "",
              "| method | SDR | SI-SDR | PESQ | STOI |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for method, means in summary["means"].items():
        lines.append(f"| {method} | " + " | ".join(
            f"{means[s]:.2f}" for s in SCORES) + " |")
    lines += ["", "| paired difference [95 % CI] | SDR | SI-SDR | PESQ | "
              "STOI | MDE (SDR) |", "|---|---:|---:|---:|---:|---:|"]
    for pair, cells in summary["pairs"].items():
        lines.append(f"| {pair} | " + " | ".join(
            cells[s][0] for s in SCORES) + f" | {cells['sdr'][1]:.2f} |")
    lines += ["", "| lips (AV-VAE) | minus A-VAE, SDR [95 % CI] | MDE | "
              f"within {FALLBACK_MARGIN_DB} dB |", "|---|---:|---:|---|"]
    order = [f"{kind}/{arm}" for arm in ("fallback", "plain")
             for kind in CORRUPTED]  # fmt: skip
    for key in sorted(summary["corrupted"], key=lambda k: (
            order.index(k) if k in order else len(order), k)):
        cell = summary["corrupted"][key]
        lines.append(f"| {key} | {cell['vs_a_vae']} | {cell['mde']:.2f} | "
                     f"{'yes' if cell['passes'] else 'no'} |")
    lines += ["", "| AV-VAE (test seeds, best epoch) | KL (nat/frame) | "
              "z sensitivity | lips sensitivity |", "|---|---:|---:|---:|"]
    names = {"av_vae_none": "without anti-collapse terms",
             "av_vae": f"with `{choice.get('variant')}`"}
    for key, stats in summary["latent"].items():
        lines.append(f"| {names.get(key, key)} | " + " | ".join(
            f"{stats.get(k, math.nan):.2f}" for k in
            ("kl", "z_sensitivity", "lips_sensitivity")) + " |")
    return "\n".join(lines)
