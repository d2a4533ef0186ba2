#!/usr/bin/env python3
"""CMCR-Net part by part: its contrast term chosen on validation, then an
ablation scored once on the test set.

Every run is the VoiceBank recipe itself (``recipes/Voicebank/enhance/
train.py`` in a subprocess, one CPU thread) at the CPU size of CMCR-Net
(:mod:`lobes.cpu_settings`), on the ``small`` mini VoiceBank-DEMAND corpus,
at the recipe's defaults (CR's form and weight as ``cmcr_net.yaml`` ships
them; each run records the form and weight it used). CR's space is
``--trained_ssl`` (``recipes/Voicebank/ssl_pretrain``). Two stages, in the
order of ``recipes/Voicebank/enhance/README.md``'s protocol:

1. ``validation`` (seeds 1-3, validation speakers only,
   ``--evaluate_on=valid``): ``full`` (the recipe, the branch pull's
   contrast term off) and the contrast term on at each of
   :data:`CONTRAST_WEIGHTS` (``--branch_contrast_weight``: the contrastive
   attention's own contrastive signal). :func:`choose_contrast` keeps the
   weight of best validation PESQ among those whose SI-SDR is at most
   0.3 dB below ``full``'s (the CR protocol's rule).
2. ``test`` (fresh seeds 4-8, scored once on the test speakers): ``full``,
   ``no_cr``, ``no_contrastive_attention``, ``no_interactive_attention``,
   ``no_branch_pull`` and ``contrast`` (the chosen weight), each against
   ``full``: per-utterance paired differences over seeds and utterances,
   the two-way mixed-model 95 % interval and the minimum detectable effect
   (:mod:`benchmarks.power`), Holm over the arms' PESQ p-values; the noisy
   input's scores beside, so that a model that has not learned shows.

Every run's train log keeps each loss term's gradient share against the
waveform loss (``cr_grad_*``, ``branch_pull_grad_*``, ``contrast_grad_*``).
Writes JSON after every run and resumes from it; a run stopped midway
goes on from its checkpoint when its overrides and the code it imports
are unchanged (:func:`benchmarks.paired.start_or_resume`). Ctrl-C keeps
the checkpoints of each run it stopped in
``benchmarks/models/cmcr_ablation/<run>.unfinished.safetensors``
(:func:`benchmarks.run_archive.keep_stopped`): committed, the run
goes on from them on another machine, whose run folders start empty::

    python -m benchmarks.cmcr_ablation          # validation stage
    python -m benchmarks.cmcr_ablation --stage test
    python -m benchmarks.cmcr_ablation --quick --out /tmp/cmcr.json  # smoke

``--trained_ssl`` (default: the committed ``benchmarks/models/
ssl_hubert_small``) names another SSL folder.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import math
import os
import sys
import time

from benchmarks import provenance
from benchmarks.cr_protocol_analysis import (
    GUARD,
    MARGIN_DB,
    PRIMARY,
    SCORES,
    _cell,
    effect_summary,
    mean_scores,
    noisy_scores,
    paired_table,
    read_per_utterance,
    valid_losses,
)
from benchmarks.cr_protocol_jobs import models_folder
from benchmarks.cr_vs_baseline import (
    TEST_METRICS,
    TRAINED_SSL,
    recipe_overrides,
    ssl_overrides,
    ssl_weights_sha256,
)
from benchmarks.paired import (
    ResumableRuns,
    effective_hparam,
    last_epoch_stats,
    run_in_phases,
    run_recipe,
    start_or_resume,
    timed_run,
)
from benchmarks.power import holm
from benchmarks.run_archive import (
    discard_kept,
    keep_stopped,
    resume_kept,
    unfinished_path,
)
from lobes.cpu_settings import ENHANCEMENT, ENHANCEMENT_TRAINING

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE = os.path.join(REPO, "recipes", "Voicebank", "enhance")

#: CMCR-Net at a CPU size (the fragment's defaults are the paper-ish
#: 9.6M-parameter network) and the authors' learning rate.
SIZE = ENHANCEMENT["cmcr_net"]

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

#: The gradient shares every run's train log keeps (last epoch).
SHARES = ("cr_grad_cosine", "branch_pull_grad_cosine",
          "contrast_grad_cosine")

FULL = {"corpus_size": "small",
        "epochs": ENHANCEMENT_TRAINING["number_of_epochs"],
        "batch_size": ENHANCEMENT_TRAINING["batch_size"],
        "segment_length": ENHANCEMENT_TRAINING["segment_length"],
        "valid_seeds": [1, 2, 3], "test_seeds": [4, 5, 6, 7, 8]}
QUICK = {"corpus_size": "tiny", "epochs": 1, "batch_size": 2,
         "segment_length": 1.0, "valid_seeds": [1], "test_seeds": [4]}


def contrast_arm(weight):
    """The validation arm of one contrast weight.

    Example
    -------
    >>> contrast_arm(0.1), contrast_weight_of(contrast_arm(0.1))
    ('contrast/0.1', 0.1)
    """
    return f"contrast/{weight:g}"


def contrast_weight_of(arm):
    """The contrast weight of a :func:`contrast_arm` name."""
    return float(arm.split("/")[1])


def arm_spec(arm, chosen=None):
    """The recipe YAML and overrides of an arm.

    Example
    -------
    >>> arm_spec("contrast/0.3")
    ('cmcr_net.yaml', {'branch_contrast_weight': 0.3})
    >>> arm_spec("contrast", chosen=0.1)
    ('cmcr_net.yaml', {'branch_contrast_weight': 0.1})
    """
    if arm.startswith("contrast/"):
        return "cmcr_net.yaml", {"branch_contrast_weight":
                                 contrast_weight_of(arm)}
    yaml, extra = ARMS[arm]
    return yaml, {k: (chosen if v is None else v) for k, v in extra.items()}


def job_id(job):
    """The key of one run in the JSON (and its folder).

    Example
    -------
    >>> job_id({"stage": "validation", "arm": "contrast/0.1", "seed": 2})
    'validation/contrast_0.1/seed2'
    """
    return f"{job['stage']}/{job['arm'].replace('/', '_')}/seed{job['seed']}"


def parameters(arm):
    """Inference parameters of an arm's network at the benchmark size
    (CR, the pull and its contrast are training objectives only)."""
    import torch

    from lobes.overrides import load_hparams

    _, extra = arm_spec(arm, chosen=0.0)
    overrides = {k: v for k, v in {**SIZE, **extra}.items()
                 if k not in ("lr", "branch_pull_weight",
                              "branch_contrast_weight")}
    path = os.path.join(RECIPE, "hparams", "cmcr_net_nocr.yaml")
    with torch.random.fork_rng(devices=[]):
        experiment = load_hparams(path, overrides)
    return sum(p.numel() for p in experiment["enhance_model"].parameters())


def unfinished_archive(models, job):
    """Where Ctrl-C keeps the checkpoints of a run it stopped (None: not
    kept; :func:`benchmarks.run_archive.unfinished_path`).

    Example
    -------
    >>> unfinished_archive("/m", {"stage": "test", "arm": "full", "seed": 4})
    '/m/test_full_seed4.unfinished.safetensors'
    """
    return unfinished_path(models, job_id(job))


def archive_stopped(jobs, work, models):
    """Keep the checkpoints of the runs among ``jobs`` that Ctrl-C stopped
    after their first checkpoint, for another machine; the files written.
    """
    return keep_stopped([(os.path.join(work, job_id(job)),
                          unfinished_archive(models, job)) for job in jobs])


def run_arm(job, setup, work, ssl_folder, threads, quick, models=None):
    """Train one arm with the recipe and score its best checkpoint on the
    stage's split; its per-utterance scores and training statistics.
    A run stopped on another machine goes on from the checkpoints kept in
    ``models`` (:func:`archive_stopped`)."""
    yaml, extra = arm_spec(job["arm"], setup.get("contrast_weight"))
    out = os.path.join(work, job_id(job))
    unfinished = unfinished_archive(models, job)
    resume_kept(unfinished, out)  # a run stopped on another machine
    split = "valid" if job["stage"] == "validation" else "test"
    metrics = SCORES if split == "valid" or quick else TEST_METRICS
    overrides = {
        **SIZE, **extra, **recipe_overrides(setup, job["seed"], out, quick),
        "evaluate_on": split, "test_metrics": list(metrics),
    }
    if yaml == "cmcr_net.yaml":
        overrides.update(ssl_overrides(ssl_folder))
    # a run stopped midway goes on from its checkpoint; any other starts
    # in an empty folder
    resumed = start_or_resume(out, {
        "overrides": overrides, "threads": threads,
        "code": provenance.code_identity()})
    code = provenance.code_state()
    wall = timed_run(out, lambda: run_recipe(RECIPE, yaml, overrides,
                                             threads))
    items = read_per_utterance(os.path.join(out, f"{split}_results.csv"))
    discard_kept(unfinished)
    return {
        "id": job_id(job), **job, "yaml": yaml, "overrides": overrides,
        "split": split, "items": items, "means": mean_scores(items),
        "train": last_epoch_stats(os.path.join(out, "train_log.txt")),
        "valid_losses": valid_losses(os.path.join(out, "train_log.txt")),
        **{key: effective_hparam(out, key)
           for key in ("cr_weight", "cr_form")},
        "parameters": parameters(job["arm"]), "wall_seconds": wall,
        "code": code, **({"resumed": True} if resumed else {}),
    }


def by_seed(data, stage, arm):
    """``{seed: items}`` of an arm's runs in a stage."""
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
    the arms' PESQ p-values; means, parameters and gradient shares."""
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
               "shares": {k: [r["train"].get(k) for r in runs]
                          for k in SHARES}}
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
    return data.get("training", {}).get("test_seeds", FULL["test_seeds"])


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
              "waveform loss (CR, pull, contrast) | step 7 reading |",
              "|---|---|---:|---:|---:|---|---:|---:|---|---|---:|---|---|"]
    for row in rows:
        effects = row.get("effects", {})
        cosines = " / ".join(
            "—" if not [v for v in row["shares"][k] if v is not None]
            else f"{_mean(row['shares'][k]):+.2f}" for k in SHARES)
        lines.append(
            f"| {row['arm']} | {row['seeds']} × {row.get('utterances', '—')}"
            f" | {row['means']['pesq']:.2f} | {row['means']['estoi']:.3f} "
            f"| {row['means']['si_sdr']:.2f} "
            f"| {_cell(effects.get('pesq'), 3)} "
            f"| {_number(row.get('p_holm'))} "
            f"| {_number(effects.get('pesq', {}).get('mde'))} "
            f"| {_cell(effects.get('estoi'), 3)} "
            f"| {_cell(effects.get('si_sdr'))} | {row['parameters']:,} "
            f"| {cosines} | {row.get('reading', '—')} |")
    if noisy:
        lines += ["", f"Noisy input (test): PESQ {noisy['pesq']:.2f}, eSTOI "
                  f"{noisy['estoi']:.3f}, SI-SDR {noisy['si_sdr']:.2f} dB."]
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
    return "\n".join(lines)


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


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values)


def main(argv=None):
    """Run a stage (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("validation", "test"),
                        default="validation")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpus, one epoch, one seed")
    parser.add_argument("--trained_ssl", default=TRAINED_SSL,
                        help="folder of recipes/Voicebank/ssl_pretrain "
                        "(default: the committed small HuBERT)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(
        REPO, "benchmarks", "results", "cmcr_ablation.json"))
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.trained_ssl, "config.json")):
        parser.error(f"{args.trained_ssl}: no trained SSL model; make one "
                     "with recipes/Voicebank/ssl_pretrain/train.py")
    setup = dict(QUICK if args.quick else FULL)
    block = provenance.start(
        [__file__, *argv], placeholders={args.trained_ssl: "<trained SSL>"},
        corpus="mini VoiceBank-DEMAND", corpus_size=setup["corpus_size"],
        threads=args.threads)
    work = os.path.splitext(args.out)[0] + "_runs"
    runs = ResumableRuns(args.out, {
        "training": setup, "size": SIZE, "threads": args.threads,
        "trained_ssl_sha256": ssl_weights_sha256(args.trained_ssl)})
    data = runs.data
    if args.stage == "test":
        if not data.get("choice"):
            raise SystemExit(f"error: {args.out}: no validation choice; run "
                             "--stage validation first")
        setup["contrast_weight"] = data["choice"]["weight"]
        arms, seeds = list(ARMS), setup["test_seeds"]
    else:
        arms = [BASELINE] + [contrast_arm(w) for w in CONTRAST_WEIGHTS]
        seeds = setup["valid_seeds"]
    done = runs.done()
    jobs = [{"stage": args.stage, "arm": arm, "seed": seed}
            for seed in seeds for arm in arms
            if job_id({"stage": args.stage, "arm": arm, "seed": seed})
            not in done]
    print(f"{len(done)} runs done, {len(jobs)} to go", flush=True)
    begin = time.perf_counter()

    def finished(job, run):
        runs.add(run)
        split = "valid" if args.stage == "validation" else "test"
        if f"noisy_{split}" not in data:  # the input the arms must beat
            data[f"noisy_{split}"] = mean_scores(noisy_scores(os.path.join(
                work, job_id(job), "save", f"voicebank_{split}.csv")))
        runs.save(table=markdown_table(data),
                  provenance=provenance.finish(block))
        print(f"[{run['id']}] PESQ {run['means']['pesq']:.2f}, SI-SDR "
              f"{run['means']['si_sdr']:.2f} dB, "
              f"{run['wall_seconds'] / 60:.1f} min "
              f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
              flush=True)

    models = models_folder(args.out)
    try:
        run_in_phases(
            [jobs],
            lambda job: run_arm(job, setup, work,
                                os.path.abspath(args.trained_ssl),
                                args.threads, args.quick, models),
            args.jobs, finished,
        )
    except KeyboardInterrupt:
        done = runs.done()
        kept = archive_stopped([j for j in jobs if job_id(j) not in done],
                               work, models)
        raise SystemExit(
            f"stopped by Ctrl-C: the finished runs are in {args.out}; run "
            "the same command to resume the others from their checkpoints"
            + "".join(f"; {os.path.relpath(path, REPO)} keeps an unfinished "
                      "run's (commit it to go on on another machine)"
                      for path in kept)) from None
    if args.stage == "validation" and not data.get("choice"):
        data["choice"] = choose_contrast({
            contrast_arm(w): seed_deltas(data, "validation", contrast_arm(w))
            for w in CONTRAST_WEIGHTS})
    runs.save(table=markdown_table(data), provenance=provenance.finish(block))
    print(data["table"])
    print(f"\nWrote {args.out}")
    return data


if __name__ == "__main__":
    main()
