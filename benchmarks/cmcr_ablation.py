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
   attention's own contrastive signal).
   :func:`benchmarks.cmcr_ablation_analysis.choose_contrast` keeps the
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
import os
import sys
import time

from benchmarks import provenance
from benchmarks.cmcr_ablation_analysis import (
    ARMS,
    BASELINE,
    CONTRAST_WEIGHTS,
    TEST_SEEDS,
    choose_contrast,
    contrast_arm,
    contrast_weight_of,
    markdown_table,
    seed_deltas,
)
from benchmarks.cr_protocol_analysis import (
    SCORES,
    mean_scores,
    noisy_scores,
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

FULL = {"corpus_size": "small",
        "epochs": ENHANCEMENT_TRAINING["number_of_epochs"],
        "batch_size": ENHANCEMENT_TRAINING["batch_size"],
        "segment_length": ENHANCEMENT_TRAINING["segment_length"],
        "valid_seeds": [1, 2, 3], "test_seeds": TEST_SEEDS}
QUICK = {"corpus_size": "tiny", "epochs": 1, "batch_size": 2,
         "segment_length": 1.0, "valid_seeds": [1], "test_seeds": [4]}


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
