"""The CR protocol's tables: markdown renderers of the results JSON of
:mod:`benchmarks.cr_protocol` (the numbers are
:mod:`benchmarks.cr_protocol_analysis`'s): :func:`backbone_table` (the
backbones against the noisy input), :func:`sweep_table` (the validation
sweep and its choice), :func:`heldout_table` (the test once) and
:func:`markdown_table` (all of them).

Authors
 * noise-robust-sb contributors 2025
"""

import math

from benchmarks.cr_protocol_analysis import (
    MARGIN_DB,
    PRIMARY,
    _runs,
    summarize_sweep,
    summarize_test,
)
from benchmarks.paired import fmt


def interval_cell(effect, digits=2):
    """A paired effect as ``mean [low, high]``; the mean alone where it has
    no interval (too few seeds), "—" where there is none.

    Example
    -------
    >>> interval_cell({"mean": 0.1, "low": -0.02, "high": 0.22})
    '+0.10 [-0.02, +0.22]'
    >>> nan = float("nan")
    >>> interval_cell({"mean": 0.1, "low": nan, "high": nan}, 3)
    '+0.100'
    >>> interval_cell(None)
    '—'
    """
    if effect is None or not math.isfinite(effect["mean"]):
        return "—"
    if not math.isfinite(effect["low"]):
        return f"{effect['mean']:+.{digits}f}"
    return (f"{effect['mean']:+.{digits}f} [{effect['low']:+.{digits}f}, "
            f"{effect['high']:+.{digits}f}]")


def backbone_table(data):
    """The backbones against the noisy input, on the validation speakers.

    Example
    -------
    >>> data = {"noisy_valid": {"pesq": 1.2, "estoi": 0.7, "si_sdr": 7.0},
    ...         "backbone_summary": [{"backbone": "b", "seed": 1,
    ...             "best_epoch": 30, "epochs": 40, "plateaued": True,
    ...             "means": {"pesq": 1.5, "estoi": 0.69, "si_sdr": 12.0},
    ...             "above_noisy": False}]}
    >>> print(backbone_table(data).splitlines()[-1])
    | b | 1 | 30 / 40 | yes | 1.50 | 0.690 | 12.00 | no |
    """
    noisy = data.get("noisy_valid") or {}
    lines = [
        "| backbone | seed | best epoch / epochs | plateaued | PESQ "
        "| eSTOI | SI-SDR | passes the gate |", "|---|---:|---|---|---:|"
        "---:|---:|---|",
        f"| noisy input | — | — | — | {fmt(noisy.get('pesq'))} "
        f"| {fmt(noisy.get('estoi'), 3)} | {fmt(noisy.get('si_sdr'))} "
        "| — |"]
    for row in data.get("backbone_summary") or []:
        means = row["means"]
        lines.append(
            f"| {row['backbone']} | {row['seed']} | {row['best_epoch']} "
            f"/ {row['epochs']} | {'yes' if row['plateaued'] else 'no'} "
            f"| {fmt(means['pesq'])} | {fmt(means['estoi'], 3)} "
            f"| {fmt(means['si_sdr'])} "
            f"| {'yes' if row['above_noisy'] else 'no'} |")
    return "\n".join(lines)


def sweep_table(data):
    """The validation tables: backbones against the noisy input, then each
    setting's paired difference to ``continued`` (mean and per seed) and
    the choice.

    The differences are computed from the file's runs when it has them
    (:func:`summarize_sweep`), else taken from its stored ``sweep``.

    Example
    -------
    >>> data = {"sweep": {"x": {"seeds": [1], "continued": {}, "settings": {
    ...     "ratio/0.01/shallow": {"seeds": [1], "pesq": 0.1, "estoi": 0.01,
    ...         "si_sdr": -0.1, "worst_si_sdr": -0.1, "cr": 0.9,
    ...         "pesq_by_seed": [0.1], "cr_grad_ratio": 0.2,
    ...         "cr_grad_cosine": 0.1}},
    ...     "choice": {"setting": "ratio/0.01/shallow", "passed": True,
    ...                "excluded": [], "why": "best"}}}}
    >>> print(sweep_table(data).splitlines()[-3])
    | x | ratio/0.01/shallow | 1 | +0.100 | +0.100 | +0.010 | -0.10 | ...
    """
    lines = []
    if data.get("backbone_summary"):
        lines += [backbone_table(data), ""]
    lines += ["| backbone | setting (form/weight/order) | seeds | Δ PESQ "
              "| Δ PESQ per seed | Δ eSTOI | Δ SI-SDR | worst seed Δ SI-SDR "
              "| CR | CR/main gradient | CR·main cosine | choice |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    whys = []
    sweeps = (summarize_sweep(data) if _runs(data, stage="sweep")
              else data.get("sweep") or {})
    for backbone, sweep in sweeps.items():
        choice = sweep.get("choice") or {}
        for name, row in sweep["settings"].items():
            mark = ("chosen" if name == choice.get("setting") else
                    f"SI-SDR < -{MARGIN_DB} dB"
                    if name in choice.get("excluded", []) else "")
            per_seed = ", ".join(f"{d:+.3f}"
                                 for d in row.get("pesq_by_seed", []))
            lines.append(
                f"| {backbone} | {name} | {len(row['seeds'])} "
                f"| {row['pesq']:+.3f} | {per_seed or '—'} "
                f"| {row['estoi']:+.3f} "
                f"| {row['si_sdr']:+.2f} | {row['worst_si_sdr']:+.2f} "
                f"| {fmt(row['cr'], 3)} | {fmt(row['cr_grad_ratio'], 3)} "
                f"| {fmt(row['cr_grad_cosine'], 2)} | {mark} |")
        if choice:
            whys.append(f"- {backbone}: {choice['why']}.")
        else:
            whys.append(f"- {backbone}: no choice yet: not every form x "
                        "weight has every seed.")
    return "\n".join(lines + ([""] + whys if whys else []))


def heldout_table(data):
    """The test table: means, paired differences to ``continued`` and to
    the random-space control, and whether a gain is claimed.

    Computed from the file's runs when it has them
    (:func:`summarize_test`), else taken from its stored ``test``.

    Example
    -------
    >>> effect = {"mean": 0.1, "low": 0.05, "high": 0.15, "p": 0.01,
    ...           "mde": 0.04}
    >>> row = {"seeds": [4], "means": {"pesq": 2.1, "estoi": .8,
    ...        "si_sdr": 9.0}, "vs_continued": dict.fromkeys(
    ...        ("pesq", "estoi", "si_sdr"), effect),
    ...        "vs_random": dict.fromkeys(("pesq", "estoi", "si_sdr"),
    ...        effect), "claimed": True, "holm_p": 0.02}
    >>> print(heldout_table({"test": {"x": {"cr": row}}}).splitlines()[-1])
    | x | cr | 1 | 2.10 | 0.800 | 9.00 | +0.10 [+0.05, +0.15] | ... | yes |

    The noisy input's test scores, when the file has them, come first:

    >>> data = {"test": {"x": {"cr": row}}, "noisy_test_utterances": 40,
    ...         "noisy_test": {"pesq": 1.3, "estoi": .7, "si_sdr": 8.0}}
    >>> print(heldout_table(data).splitlines()[2])
    | noisy input (40 utterances) | — | — | 1.30 | 0.700 | 8.00 | — | ...
    """
    lines = ["| backbone | arm | seeds | PESQ | eSTOI | SI-SDR "
             "| Δ PESQ vs continued [95 % CI] | Δ eSTOI | Δ SI-SDR "
             "| Δ PESQ vs random space | MDE PESQ | Holm p (PESQ) "
             "| gain claimed |",
             "|---|---|---:|---:|---:|---:|---|---|---|---|---:|---:|---|"]
    noisy = data.get("noisy_test")
    if noisy:
        lines.append(
            f"| noisy input ({data.get('noisy_test_utterances', '?')} "
            f"utterances) | — | — | {fmt(noisy['pesq'])} "
            f"| {fmt(noisy['estoi'], 3)} | {fmt(noisy['si_sdr'])} "
            "| — | — | — | — | — | — | — |")
    tests = (summarize_test(data) if _runs(data, stage="test")
             else data.get("test") or {})
    for backbone, rows in tests.items():
        for arm, row in rows.items():
            versus = row.get("vs_continued") or {}
            random_ = (row.get("vs_random") or {}).get(PRIMARY)
            claimed = {True: "yes", False: "no"}.get(row.get("claimed"), "—")
            means = row["means"]
            cells = [interval_cell(versus.get(s), d) for s, d in
                     (("pesq", 2), ("estoi", 3), ("si_sdr", 2))]
            lines.append(
                f"| {backbone} | {arm} | {len(row['seeds'])} "
                f"| {fmt(means['pesq'])} | {fmt(means['estoi'], 3)} "
                f"| {fmt(means['si_sdr'])} | " + " | ".join(cells)
                + f" | {interval_cell(random_)} "
                f"| {fmt((versus.get('pesq') or {}).get('mde'), 3)} "
                f"| {fmt(row.get('holm_p'), 3)} | {claimed} |")
    return "\n".join(lines)


def markdown_table(data):
    """The sweep tables, then the test table.

    Example
    -------
    >>> print(markdown_table({}).splitlines()[0])
    | backbone | setting (form/weight/order) | seeds | Δ PESQ | ...
    """
    return sweep_table(data) + "\n\n" + heldout_table(data)
