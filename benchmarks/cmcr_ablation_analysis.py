"""The CMCR-Net ablation's analysis: the validation choice, the test
stage's paired effects, step 7's reading and the tables.

Pure functions of the results JSON of :mod:`benchmarks.cmcr_ablation`
(the design is in its docstring and in
``recipes/Voicebank/enhance/README.md``, step 7): :func:`seed_deltas` and
:func:`choose_contrast` (the contrast weight of best validation PESQ
among those within ``MARGIN_DB`` of ``full``'s SI-SDR),
:func:`summarize_test` (each test arm against ``full``: per-utterance
paired differences with mixed-model intervals over utterances and seeds,
Holm over the arms' PESQ p-values), :func:`read_arm` (step 7's rule) and
the renderer :func:`markdown_table`.

Authors
 * noise-robust-sb contributors 2025
"""

import math

from benchmarks.cr_protocol_analysis import (
    GUARD,
    MARGIN_DB,
    PRIMARY,
    SCORES,
    effect_summary,
    mean_scores,
    paired_table,
)
from benchmarks.cr_protocol_tables import interval_cell
from benchmarks.power import holm

#: The contrast term's weights tried on validation. The term sits inside
#: the pull, which the recipe weighs by ``branch_pull_weight`` (0.01), and
#: a squared cosine (about 0.1 early in training) moves far less than the
#: pull's SI-SNR terms in dB: at the first grid, 0.03, its gradient was
#: 1.5e-4 to 2.2e-4 of the waveform loss's in the first two epochs
#: (``contrast_grad_ratio``, seed 1), so 0.03 to 0.3 could not move the
#: network. Amended before any contrast run was scored: 3, 10 and 30, a
#: gradient share of about 0.02, 0.07 and 0.2 at that rate (it is linear
#: in the weight; it grows as the waveform loss's gradient shrinks).
CONTRAST_WEIGHTS = (3, 10, 30)

#: The test stage's arms: name -> (recipe YAML, extra overrides);
#: ``contrast`` takes the weight chosen on validation.
ARMS = {
    "full": ("cmcr_net.yaml", {}),
    "no_cr": ("cmcr_net_nocr.yaml", {}),
    "no_contrastive_attention": (
        "cmcr_net.yaml", {"contrastive_attention": False}
    ),
    "no_interactive_attention": (
        "cmcr_net.yaml", {"interactive_attention": False}
    ),
    "no_branch_pull": ("cmcr_net.yaml", {"branch_pull_weight": 0.0}),
    "contrast": ("cmcr_net.yaml", {"branch_contrast_weight": None}),
}
BASELINE = "full"

#: The test stage's fresh seeds (the validation stage's are 1-3).
TEST_SEEDS = [4, 5, 6, 7, 8]

#: The gradient shares every run's train log keeps (last epoch).
SHARES = ("cr_grad_cosine", "branch_pull_grad_cosine",
          "contrast_grad_cosine")


def contrast_arm(weight):
    """The validation arm of one contrast weight.

    Example
    -------
    >>> contrast_arm(0.1), contrast_weight_of(contrast_arm(0.1))
    ('contrast/0.1', 0.1)
    """
    return f"contrast/{weight:g}"


def contrast_weight_of(arm):
    """The contrast weight of a :func:`contrast_arm` name.

    Example
    -------
    >>> contrast_weight_of("contrast/3")
    3.0
    """
    return float(arm.split("/")[1])


def by_seed(data, stage, arm):
    """``{seed: items}`` of an arm's runs in a stage.

    Example
    -------
    >>> data = {"runs": [{"stage": "test", "arm": "full", "seed": 4,
    ...                   "items": {"u": {"pesq": 2.0}}}]}
    >>> by_seed(data, "test", "full"), by_seed(data, "validation", "full")
    ({4: {'u': {'pesq': 2.0}}}, {})
    """
    return {run["seed"]: run["items"] for run in data.get("runs", [])
            if run["stage"] == stage and run["arm"] == arm}


def seed_deltas(data, stage, arm, base=BASELINE):
    """Mean over seeds of the arm's mean score minus the base's (same
    seed), per score; ``{score}_by_seed`` keeps each seed's difference.

    Example
    -------
    >>> def run(arm, seed, pesq):
    ...     return {"stage": "validation", "arm": arm, "seed": seed,
    ...             "items": {"u": {"pesq": pesq, "estoi": 0.8,
    ...                             "si_sdr": 1.0}}}
    >>> data = {"runs": [run("full", 1, 2.0), run("c", 1, 2.5),
    ...                  run("full", 2, 2.0), run("c", 2, 2.1)]}
    >>> deltas = seed_deltas(data, "validation", "c")
    >>> round(deltas["pesq"], 2), [round(d, 2) for d in deltas["pesq_by_seed"]]
    (0.3, [0.5, 0.1])
    """
    arm, base = (by_seed(data, stage, a) for a in (arm, base))
    seeds = sorted(set(arm) & set(base))
    out = {}
    for score in SCORES:
        diffs = [mean_scores(arm[s], [score])[score]
                 - mean_scores(base[s], [score])[score] for s in seeds]
        out[score] = sum(diffs) / len(diffs) if diffs else math.nan
        out[f"{score}_by_seed"] = diffs
    return out


def choose_contrast(deltas, margin=MARGIN_DB):
    """The validation choice of the contrast weight.

    Arguments
    ---------
    deltas : dict
        :func:`contrast_arm` name -> :func:`seed_deltas` against ``full``.
    margin : float
        SI-SDR may be at most this much (dB) below ``full``'s.

    Returns
    -------
    dict
        ``weight``, ``passed`` (False: no weight met the margin; the one
        that lost least SI-SDR is tested, and no gain can be claimed) and
        ``why``. PESQ equal to 0.001 is a tie, which goes to the smaller
        weight.

    Example
    -------
    >>> choose_contrast({"contrast/0.03": {"pesq": 0.02, "si_sdr": 0.1},
    ...                  "contrast/0.1": {"pesq": 0.05, "si_sdr": -0.2},
    ...                  "contrast/0.3": {"pesq": 0.09, "si_sdr": -0.5}}
    ...                 )["weight"]
    0.1
    """
    eligible = [n for n in deltas if deltas[n][GUARD] >= -margin]
    if eligible:
        best = max(eligible, key=lambda n: (round(deltas[n][PRIMARY], 3),
                                            -contrast_weight_of(n)))
        return {"weight": contrast_weight_of(best), "passed": True,
                "why": (f"{best}: best validation PESQ "
                        f"({deltas[best][PRIMARY]:+.3f} vs full) of the "
                        f"{len(eligible)} weights whose SI-SDR is within "
                        f"{margin} dB of full")}
    best = max(deltas, key=lambda n: deltas[n][GUARD])
    return {"weight": contrast_weight_of(best), "passed": False,
            "why": (f"no weight kept SI-SDR within {margin} dB of full; "
                    f"{best} lost least: tested, no gain claimed")}


def summarize_test(data):
    """Each test arm against ``full``: paired effects per score, Holm over
    the arms' PESQ p-values; means, parameters and the runs' last-epoch
    training statistics (``trains``); and,
    once every arm has every test seed, :func:`read_arm`'s reading.

    Example
    -------
    >>> def run(arm, seed, pesq):
    ...     items = {f"u{k}": {"pesq": pesq + 0.01 * k, "estoi": 0.8,
    ...                        "si_sdr": 10.0} for k in range(4)}
    ...     return {"stage": "test", "arm": arm, "seed": seed,
    ...             "items": items, "means": mean_scores(items),
    ...             "parameters": 10, "train": {}}
    >>> data = {"runs": [run("full", s, 2.0) for s in (4, 5)]
    ...         + [run("no_cr", s, 1.9) for s in (4, 5)]}
    >>> full, no_cr = summarize_test(data)
    >>> "effects" in full, round(no_cr["effects"]["pesq"]["mean"], 3)
    (False, -0.1)
    >>> "reading" in no_cr  # four arms and three seeds still to run
    False
    """
    base = by_seed(data, "test", BASELINE)
    rows = []
    for arm in ARMS:
        mine = by_seed(data, "test", arm)
        if not mine:
            continue
        runs = [r for r in data["runs"]
                if r["stage"] == "test" and r["arm"] == arm]
        row = {"arm": arm, "seeds": len(mine),
               "means": {s: sum(r["means"][s] for r in runs) / len(runs)
                         for s in SCORES},
               "parameters": runs[0]["parameters"],
               "trains": [r["train"] for r in runs]}
        if arm != BASELINE and set(mine) & set(base):  # a seed of full's
            tables = {s: paired_table(mine, base, s) for s in SCORES}
            row["utterances"] = tables[PRIMARY].shape[1]
            row["effects"] = {s: effect_summary(t)
                              for s, t in tables.items()}
        rows.append(row)
    tested = [r for r in rows if "effects" in r
              and math.isfinite(r["effects"][PRIMARY]["p"])]
    for row, p in zip(tested, holm([r["effects"][PRIMARY]["p"]
                                    for r in tested])):
        row["p_holm"] = p
    seeds = sorted(_test_seeds(data))
    if sorted(r["arm"] for r in rows) == sorted(ARMS) and all(
            sorted(by_seed(data, "test", r["arm"])) == seeds for r in rows):
        for row in rows[1:]:
            row["reading"] = read_arm(row)
    return rows


def _test_seeds(data):
    """The file's test seeds (the full design's where it names none)."""
    return data.get("training", {}).get("test_seeds", TEST_SEEDS)


def read_arm(row, margin=MARGIN_DB):
    """Step 7's rule, written before any test run was scored, on one arm.

    A ``no_*`` arm (a part removed): ``part helps`` where its PESQ
    interval against ``full`` is below zero with a Holm-adjusted p below
    0.05, ``part hurts`` where above zero with such a p. ``contrast`` (a
    term added): ``gain`` where its PESQ interval is above zero with such
    a p and its SI-SDR interval's low end is above ``-margin`` dB,
    ``term hurts`` where its PESQ interval is below zero with such a p.
    Anything else is ``null``, read with the arm's MDE.

    Example
    -------
    >>> def row(arm, low, high, p, si_sdr_low=0.0):
    ...     return {"arm": arm, "p_holm": p, "effects": {
    ...         "pesq": {"low": low, "high": high},
    ...         "si_sdr": {"low": si_sdr_low}}}
    >>> read_arm(row("no_cr", -0.2, -0.05, 0.01))
    'part helps'
    >>> read_arm(row("no_cr", -0.2, -0.05, 0.2))
    'null'
    >>> read_arm(row("contrast", 0.02, 0.1, 0.01))
    'gain'
    >>> read_arm(row("contrast", 0.02, 0.1, 0.01, si_sdr_low=-0.5))
    'null'
    """
    effects = row["effects"]
    low, high = effects[PRIMARY]["low"], effects[PRIMARY]["high"]
    if not row.get("p_holm", 1.0) < 0.05:
        return "null"
    added = row["arm"] == "contrast"
    if high < 0:
        return "term hurts" if added else "part helps"
    if low > 0:
        if not added:
            return "part hurts"
        return "gain" if effects[GUARD]["low"] > -margin else "null"
    return "null"


def markdown_table(data):
    """The validation choice and the test ablation (a results file).

    Example
    -------
    >>> text = markdown_table({"runs": [], "choice": None})
    >>> text.splitlines()[0]
    '| validation arm | seeds | PESQ | eSTOI | SI-SDR | Δ PESQ | ...'
    """
    lines = ["| validation arm | seeds | PESQ | eSTOI | SI-SDR | Δ PESQ "
             "| Δ PESQ per seed | Δ eSTOI | Δ SI-SDR | cos² (speech "
             "branch, noise) | contrast/main gradient |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    noisy = data.get("noisy_valid")
    if noisy:
        lines.append(f"| noisy input | — | {noisy['pesq']:.2f} "
                     f"| {noisy['estoi']:.3f} | {noisy['si_sdr']:.2f} "
                     "| — | — | — | — | — | — |")
    for arm in [BASELINE] + [contrast_arm(w) for w in CONTRAST_WEIGHTS]:
        mine = by_seed(data, "validation", arm)
        if not mine:
            continue
        means = mean_scores({f"{s}/{u}": v for s, items in mine.items()
                             for u, v in items.items()})
        cells = ["—"] * 4
        if arm != BASELINE:
            d = seed_deltas(data, "validation", arm)
            cells = [f"{d['pesq']:+.3f}", ", ".join(
                f"{v:+.3f}" for v in d["pesq_by_seed"]) or "—",
                f"{d['estoi']:+.3f}", f"{d['si_sdr']:+.2f}"]
        trains = [r["train"] for r in data["runs"]
                  if r["stage"] == "validation" and r["arm"] == arm]
        cells += [_stat(trains, "branch_contrast", "{:.2e}"),
                  _stat(trains, "contrast_grad_ratio", "{:.3f}")]
        lines.append(f"| {arm} | {len(mine)} | {means['pesq']:.2f} "
                     f"| {means['estoi']:.3f} | {means['si_sdr']:.2f} | "
                     + " | ".join(cells) + " |")
    choice = data.get("choice")
    lines += ["", "Δ: against `full` (contrast off) of the same seed, each "
              "seed's mean on the validation speakers; the mean over seeds "
              "and each seed's. cos² and the contrast term's gradient "
              "against the waveform loss's: the last epoch's training "
              "means, averaged over seeds (cos² is measured with the term "
              "off too). Choice: "
              + (choice["why"] if choice else "not made yet") + "."]
    rows = summarize_test(data)
    if not rows:
        return "\n".join(lines)
    noisy = data.get("noisy_test") or {}
    lines += ["", "| test arm | seeds × utterances | PESQ | eSTOI | SI-SDR "
              "| Δ PESQ [95 % CI] | p (Holm) | MDE | Δ eSTOI [95 % CI] "
              "| Δ SI-SDR [95 % CI] | parameters | gradient cosine to the "
              "waveform loss (CR, pull, contrast) | cos² (speech branch, "
              "noise) | contrast/main gradient | step 7 reading |",
              "|---|---|---:|---:|---:|---|---:|---:|---|---|---:|---|---:"
              "|---:|---|"]
    for row in rows:
        effects = row.get("effects", {})
        cosines = " / ".join(_stat(row["trains"], k, "{:+.2f}")
                             for k in SHARES)
        lines.append(
            f"| {row['arm']} | {row['seeds']} × {row.get('utterances', '—')}"
            f" | {row['means']['pesq']:.2f} | {row['means']['estoi']:.3f} "
            f"| {row['means']['si_sdr']:.2f} "
            f"| {interval_cell(effects.get('pesq'), 3)} "
            f"| {_number(row.get('p_holm'))} "
            f"| {_number(effects.get('pesq', {}).get('mde'))} "
            f"| {interval_cell(effects.get('estoi'), 3)} "
            f"| {interval_cell(effects.get('si_sdr'))} "
            f"| {row['parameters']:,} | {cosines} "
            f"| {_stat(row['trains'], 'branch_contrast', '{:.3f}')} "
            f"| {_stat(row['trains'], 'contrast_grad_ratio', '{:.3f}')} "
            f"| {row.get('reading', '—')} |")
    if noisy:
        lines += ["", f"Noisy input (test): PESQ {noisy['pesq']:.2f}, eSTOI "
                  f"{noisy['estoi']:.3f}, SI-SDR {noisy['si_sdr']:.2f} dB."]
    per_seed = []
    for row in rows:
        if "effects" in row:
            deltas = seed_deltas(data, "test", row["arm"])["pesq_by_seed"]
            per_seed.append(
                f"{row['arm']} " + ", ".join(f"{v:+.3f}" for v in deltas)
                + f" (p {_number(row['effects'][PRIMARY]['p'])})")
    if per_seed:
        lines += ["", "Δ PESQ against `full` per seed (in seed order) and "
                  "the p before Holm: " + "; ".join(per_seed) + "."]
    seeds = len(_test_seeds(data))
    done = sum(row["seeds"] for row in rows)
    if "reading" in rows[-1]:
        reading = "Reading (step 7's rule, from the table): " + "; ".join(
            f"{r['arm']}: {r['reading']}" + (
                f" (MDE {r['effects'][PRIMARY]['mde']:.3f} PESQ)"
                if r["reading"] == "null" else "") for r in rows[1:]) + "."
        if noisy:
            gate = noisy["estoi"] - 0.01
            estoi = rows[0]["means"]["estoi"]
            reading += " " + (
                f"`full`'s test eSTOI, {estoi:.3f}, is more than 0.01 "
                "below the noisy input's: every effect is one on an "
                "enhancer that has not learned intelligibility."
                if estoi < gate else
                f"`full`'s test eSTOI, {estoi:.3f}, meets step 2's gate "
                f"(at least {gate:.3f}).")
        lines += ["", reading]
    if done < seeds * len(ARMS):
        lines += ["", f"Test stage under way: {done} of {seeds * len(ARMS)} "
                  f"runs. The rule of step 7 is read once every arm has its "
                  f"{seeds} seeds; an interval over fewer is not the "
                  "design's (over one seed it leaves out the seed-to-seed "
                  "spread); a Δ without an interval has too few seeds "
                  "for one (under one degree of freedom)."]
    cost = cost_line(data)
    return "\n".join(lines + (["", cost] if cost else []))


def cost_line(data):
    """What the runs cost, from their records' ``wall_seconds`` (one
    thread a run); None where no run records it.

    Example
    -------
    >>> def run(stage, arm, minutes, resumed=False):
    ...     return {"stage": stage, "arm": arm, "resumed": resumed,
    ...             "wall_seconds": 60.0 * minutes}
    >>> print(cost_line({"runs": [run("test", "full", 30),
    ...     run("test", "full", 5, resumed=True), run("test", "no_cr", 18)]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    Cost (the records' `wall_seconds`, one thread a run; a resumed run may
    count only its last start): test: 3 runs, 0.9 CPU-hours; a run not
    resumed: with CR 30 to 30 min, `no_cr` 18 to 18 min.
    """
    parts = []
    for stage in ("validation", "test"):
        runs = [r for r in data.get("runs", [])
                if r["stage"] == stage and "wall_seconds" in r]
        if not runs:
            continue
        fresh = [r for r in runs if not r.get("resumed")]
        spans = []
        for label, with_cr in (("with CR", True), ("`no_cr`", False)):
            minutes = [r["wall_seconds"] / 60 for r in fresh
                       if (r["arm"] != "no_cr") == with_cr]
            if minutes:
                spans.append(f"{label} {min(minutes):.0f} to "
                             f"{max(minutes):.0f} min")
        hours = sum(r["wall_seconds"] for r in runs) / 3600
        parts.append(f"{stage}: {len(runs)} runs, {hours:.1f} CPU-hours"
                     + ("; a run not resumed: " + ", ".join(spans)
                        if spans else ""))
    if not parts:
        return None
    return ("Cost (the records' `wall_seconds`, one thread a run; a resumed "
            "run may count only its last start): " + "; ".join(parts) + ".")


def _stat(trains, key, form):
    """A train statistic's mean over runs, formatted; "—" where no run
    logged it."""
    values = [t[key] for t in trains if key in t]
    return form.format(sum(values) / len(values)) if values else "—"


def _number(value, form="{:.3f}"):
    """``value`` formatted; "—" where there is none (no paired seed)."""
    if value is None or not math.isfinite(value):
        return "—"
    return form.format(value)
