#!/usr/bin/env python3
"""Does NASS help a trained backbone? Warm-started, paired arms on mini WHAM!.

Issue 21's design, every run the WHAM! recipe itself
(``recipes/WHAM/separation/train.py`` in a subprocess, one CPU thread, the
CPU sizes of :mod:`lobes.cpu_settings`):

1. **Backbones** (phase 1): one backbone per seed (``sepformer.yaml``,
   ``dprnn.yaml``) trained for ``--backbone_epochs`` (a stated step budget:
   ``epochs * ceil(train mixtures / batch)``); its checkpoint of lowest
   validation loss, i.e. where validation stopped improving within the
   budget, is what the arms start from. Phase-1 runs see the training and
   validation mixtures only (their own end-of-run test is pointed at the
   validation split), so one set of backbones serves both stages.
2. **Arms** (phase 2): each backbone forked into arms trained for the same
   further ``--fork_epochs`` at ``--fork_lr``, each started from the
   backbone's weights with ``--init_from=<backbone run folder>``
   (:func:`lobes.warm_start.warm_start`; the noise mask's rows of the
   ``N + 1``-output arms initialised from the seed): ``backbone`` (the
   backbone continued), ``noise_output`` (``N + 1`` outputs, PIT over
   ``N + 1``, ``nce_weight: 0``), ``nass`` (vector PatchNCE, PIT over
   ``N + 1``), ``nass_fixed`` (the noise in the last output), optionally
   ``nass_noise_weight`` (``noise_loss_weight: --noise_loss_weight``).
3. **Comparison**: per-mixture paired differences (arm minus backbone
   continued, same seed, same mixture) in SI-SNRi and SDRi, with the noise
   output chosen as deployed (the validation majority) and by the oracle
   (PIT against the true noise); a two-way random-effects t-interval over
   seeds and mixtures, Holm's adjustment over the comparisons reported
   together, and the minimum detectable effect of the design
   (:mod:`benchmarks.power`).

Choices are made on validation: ``--stage validation`` (the default)
trains the arms and scores them on the validation mixtures (the recipe's
test split pointed at them); ``--stage test`` then scores those trained
arms (their best checkpoint by validation loss, not trained again) once on
a wider test split: mini WHAM! with ``--test_mixtures`` (360) test
mixtures, the same training and validation mixtures, its own 60 first.
``--noise_snr`` is the noise-level pre-check: with the backbone only
(phase 1 at each ``--gains``), on validation mixtures, the error breakdown
of the speaker outputs (:func:`lobes.metrics.error_breakdown`) per mixture
SNR, and the smallest noise gain where residual noise is at least as loud as the
interfering speaker.

Its parts: :mod:`benchmarks.nass_stages` (the corpora, the runs' keys,
the checks between stages), :mod:`benchmarks.nass_analysis` (reading,
pairing, tables) and :mod:`benchmarks.nass_precheck` (the pre-check's
breakdown); this module runs the recipe.

Writes JSON after every run (``--out``, resumed from when it exists) with
a provenance block and per-mixture values; ``python -m benchmarks.report``
renders :func:`benchmarks.nass_analysis.markdown_table` from it::

    python -m benchmarks.nass_vs_baseline --noise_snr --gains 0 6 12
    python -m benchmarks.nass_vs_baseline --gain_db 6           # validation
    python -m benchmarks.nass_vs_baseline --gain_db 6 --stage test
    python -m benchmarks.nass_vs_baseline --quick               # smoke run

The recipes must read ``init_from`` (see :mod:`lobes.warm_start`) for
phase 2 to run.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import math
import os
import shutil
import sys
import time

from benchmarks import provenance
from benchmarks.nass_analysis import (
    BASELINE_ARM,
    RESULT_KEYS,
    TRAIN_KEYS,
    arm_means,
    compare,
    markdown_table,
    pack_results,
    read_per_mixture,
    repack_results,
    rounded,
    unpack_results,
    with_oracle,
)
from benchmarks.nass_precheck import (
    BREAKDOWN_KEYS,
    breakdown_by_snr,
    noise_breakdown,
    pick_noise_gain,
    precheck_table,
)
from benchmarks.nass_stages import (
    backbone_id,
    check_arms_trained,
    check_chosen_on_validation,
    check_rebuilt,
    gain_label,
    job_id,
    louder_noise_corpus,
    parameter_overheads,
    trained_arm,
    validation_view,
    widen_arms,
)
from benchmarks.paired import (
    ResumableRuns,
    last_epoch_stats,
    read_average,
    run_in_phases,
    run_recipe,
)
from lobes.cpu_settings import (
    PATCH_NCE,
    SEPARATION,
    SEPARATION_TRAINING,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")

#: CPU sizes and learning rates of the backbones, and PatchNCE's (the
#: YAML defaults are the papers' sizes, for a GPU): lobes.cpu_settings.
SIZES = SEPARATION
NCE_SIZE = PATCH_NCE

#: Phase-2 arms: name -> (YAML stem pattern, extra overrides). The value
#: None is filled from the command line (``--noise_loss_weight``).
ARMS = {
    "backbone": ("{backbone}", {}),
    "noise_output": ("nass_{backbone}", {"nce_weight": 0.0}),
    "nass": ("nass_{backbone}", {"nce_patch": "vector"}),
    "nass_fixed": (
        "nass_{backbone}", {"nce_patch": "vector", "noise_slot": "fixed"}
    ),
    "nass_noise_weight": (
        "nass_{backbone}", {"nce_patch": "vector", "noise_loss_weight": None}
    ),
}
DEFAULT_ARMS = ("backbone", "noise_output", "nass", "nass_fixed")


STAGES = ("validation", "test")


#: Test mixtures of the test stage (mini WHAM!'s own test split is 60):
#: the same training and validation mixtures, the 60 first.
TEST_MIXTURES = 360
#: The same for ``--quick`` (the tiny corpus has 4).
QUICK_TEST_MIXTURES = 6

#: The training of every run: phase 1, then phase 2 (epochs of 100 steps
#: on the small corpus at batch 4).
FULL = {
    "corpus_size": "small",
    "backbone_epochs": SEPARATION_TRAINING["number_of_epochs"],
    "fork_epochs": 10,
    "batch_size": SEPARATION_TRAINING["batch_size"],
    "segment_seconds": SEPARATION_TRAINING["segment_seconds"],
    "seeds": [1, 2, 3, 4, 5],
    "backbones": ["sepformer", "dprnn"],
}
QUICK = {
    "corpus_size": "tiny", "backbone_epochs": 1, "fork_epochs": 1,
    "batch_size": 4, "segment_seconds": 0.5, "seeds": [1],
    "backbones": ["sepformer"],
}


def train_steps(run_folder, epochs, batch_size):
    """Optimiser steps of a run: epochs x batches of its training manifest."""
    with open(os.path.join(run_folder, "save", "wham_train.csv"),
              encoding="utf-8") as fin:
        mixtures = sum(1 for _ in fin) - 1
    return epochs * math.ceil(mixtures / batch_size)


def arm_spec(arm, noise_loss_weight):
    """The YAML stem pattern and overrides of an arm.

    Example
    -------
    >>> arm_spec("nass_noise_weight", 0.25)
    ('nass_{backbone}', {'nce_patch': 'vector', 'noise_loss_weight': 0.25})
    """
    stem, extra = ARMS[arm]
    extra = {key: (noise_loss_weight if value is None else value)
             for key, value in extra.items()}
    return stem, extra


def recipe_overrides(backbone, stem, setup, seed, output_folder,
                     data_folder, epochs):
    """The overrides every run of the benchmark passes to the recipe."""
    return {
        **SIZES[backbone],
        **(NCE_SIZE if stem.startswith("nass") else {}),
        "seed": seed,
        "output_folder": output_folder,
        "data_folder": data_folder,
        "number_of_epochs": epochs,
        "batch_size": setup["batch_size"],
        "segment_seconds": setup["segment_seconds"],
        "speed_perturb": False,
        "num_workers": 0,
        "save_audio": False,
    }


def run_backbone(job, setup, work, views, threads):
    """Phase 1: train one backbone (or reuse a finished run); its record.

    It trains and validates on the corpus at ``job["gain_db"]`` and is
    tested on its validation view: the test split is never read.
    """
    folder = os.path.join(work, backbone_id(job["backbone"], job["seed"],
                                            job["gain_db"]))
    overrides = recipe_overrides(
        job["backbone"], job["backbone"], setup, job["seed"], folder,
        views[job["gain_db"]], setup["backbone_epochs"],
    )
    results = os.path.join(folder, "test_results.csv")
    wall, code = math.nan, None
    if not os.path.isfile(results):  # not trained yet, or interrupted
        code = provenance.code_state()
        shutil.rmtree(folder, ignore_errors=True)
        wall = run_recipe(RECIPE, f"{job['backbone']}.yaml", overrides,
                          threads)
    average, utterances = read_average(results)
    return {
        "id": backbone_id(job["backbone"], job["seed"], job["gain_db"]),
        "phase": "backbone", "folder": folder,
        **{key: value for key, value in job.items() if key != "rebuild"},
        "overrides": overrides,
        "valid_si-snr_i": average.get("si-snr_i", math.nan),
        "valid_sdr_i": average.get("sdr_i", math.nan),
        "valid_utterances": utterances,
        "steps": train_steps(folder, setup["backbone_epochs"],
                             setup["batch_size"]),
        "wall_seconds": wall, "code": code,
    }


def arm_overrides(job, setup, out, data_folder, backbone_folder):
    """The recipe YAML and overrides of one arm's run."""
    stem, extra = arm_spec(job["arm"], setup.get("noise_loss_weight"))
    stem = stem.format(backbone=job["backbone"])
    overrides = recipe_overrides(
        job["backbone"], stem, setup, job["seed"], out, data_folder,
        setup["fork_epochs"],
    )
    overrides.update(extra)
    overrides["init_from"] = backbone_folder
    if setup.get("fork_lr") is not None:
        overrides["lr"] = setup["fork_lr"]
    return f"{stem}.yaml", overrides


def run_arm(job, setup, work, folders, threads):
    """Phase 2: fork a backbone into one arm; train, score, measure."""
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    return _run_arm_recipe(job, setup, work, out,
                           folders[job["stage"]][job["gain_db"]], out,
                           threads)


def run_arm_test(job, setup, work, test_root, threads):
    """Test stage: score a trained arm, once, on the test mixtures.

    The arm is not trained again: the checkpoints of its validation-stage
    run (same seed, backbone and settings; the best one by validation
    loss is what gets scored) are copied into a fresh folder, and the
    recipe runs there with the same overrides on ``test_root``. Its epoch
    counter is already at the end, so it only tests.
    """
    trained = os.path.join(work, job_id(trained_arm(job)))
    out = os.path.join(work, job_id(job))
    checkpoints = sorted(
        name for name in os.listdir(os.path.join(trained, "save"))
        if name.startswith("CKPT")
    )
    if not checkpoints:
        raise SystemExit(f"error: {trained}/save: no checkpoint to test; "
                         "run --stage validation first")
    shutil.rmtree(out, ignore_errors=True)
    for name in checkpoints:
        shutil.copytree(os.path.join(trained, "save", name),
                        os.path.join(out, "save", name))
    return _run_arm_recipe(job, setup, work, out, test_root, trained,
                           threads)


def _run_arm_recipe(job, setup, work, out, data_folder, trained, threads):
    """Run an arm's recipe into ``out`` on ``data_folder``; its record,
    with the code the run imported."""
    yaml, overrides = arm_overrides(
        job, setup, out, data_folder,
        os.path.join(work, backbone_id(job["backbone"], job["seed"],
                                       job["gain_db"])),
    )
    code = provenance.code_state()
    wall = run_recipe(RECIPE, yaml, overrides, threads)
    return {**arm_record(job, setup, yaml, overrides, out, trained, wall),
            "code": code}


def arm_record(job, setup, yaml, overrides, out, trained, wall):
    """One arm's record: scores of ``out``, training statistics of
    ``trained`` (the same folder, but in the test stage)."""
    results = os.path.join(out, "test_results.csv")
    average, utterances = read_average(results)
    average = with_oracle(average)
    train = last_epoch_stats(os.path.join(trained, "train_log.txt"))
    return {
        "id": job_id(job), "phase": "arm", **job, "yaml": yaml,
        "overrides": overrides,
        **{key: average.get(key, math.nan)
           for key in RESULT_KEYS + BREAKDOWN_KEYS if key in average},
        "per_mixture": rounded(with_oracle(read_per_mixture(results))),
        **{key: train.get(key, math.nan) for key in TRAIN_KEYS},
        "train_loss": train.get("loss", math.nan),
        "epochs": train.get("epoch"),
        "steps": train_steps(trained, setup["fork_epochs"],
                             setup["batch_size"]),
        "wall_seconds": wall, "test_utterances": utterances,
    }




def default_out(stage, noise_snr=False):
    """Where a stage's results go (the test stage's is the committed one).

    Example
    -------
    >>> os.path.basename(default_out("validation"))
    'nass_vs_baseline_validation.json'
    >>> os.path.basename(default_out("test"))
    'nass_vs_baseline.json'
    """
    name = ("nass_noise_precheck" if noise_snr else
            "nass_vs_baseline" if stage == "test" else
            f"nass_vs_baseline_{stage}")
    return os.path.join(REPO, "benchmarks", "results", f"{name}.json")


def parse_args(argv):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpus, one epoch per phase, "
                        "one seed, SepFormer")
    parser.add_argument("--stage", choices=STAGES, default="validation",
                        help="score the arms on the validation mixtures "
                        "(choices) or, once, on the test mixtures")
    parser.add_argument("--noise_snr", action="store_true",
                        help="the noise-level pre-check: backbone only, "
                        "validation mixtures, error breakdown per SNR")
    parser.add_argument("--gains", type=float, nargs="+",
                        default=[0.0, 6.0, 12.0],
                        help="noise gains (dB) the pre-check tries")
    parser.add_argument("--gain_db", type=float, default=0.0,
                        help="noise gain (dB) of the comparison's corpus "
                        "(the pre-check's pick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--backbones", nargs="+", default=None,
                        choices=sorted(SIZES))
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS),
                        choices=list(ARMS))
    parser.add_argument("--backbone_epochs", type=int, default=None)
    parser.add_argument("--fork_epochs", type=int, default=None)
    parser.add_argument("--fork_lr", type=float, default=None,
                        help="learning rate of the arms (default: the "
                        "backbone's CPU-size rate)")
    parser.add_argument("--noise_loss_weight", type=float, default=0.5,
                        help="noise_loss_weight of the nass_noise_weight arm")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--repack", action="store_true",
                        help="rewrite --out (or the stage's file) packed, "
                        "per-mixture values rounded, comparisons redone")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs trained side by side (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run")
    parser.add_argument("--test_mixtures", type=int, default=None,
                        help="test stage: mixtures of the wider test split "
                        f"(default {TEST_MIXTURES}; mini WHAM!'s own 60 "
                        "first)")
    parser.add_argument("--out", default=None,
                        help="JSON output (resumed from when it exists)")
    parser.add_argument("--validation_out", default=None,
                        help="test stage: the validation results file whose "
                        "trained arms it scores (default: the committed "
                        "one's path)")
    parser.add_argument("--work", default=os.path.join(
        REPO, "benchmarks", "results", "nass_vs_baseline_runs"),
        help="run folders (backbones shared by the stages)")
    args = parser.parse_args(argv)
    if BASELINE_ARM not in args.arms and not args.noise_snr:
        parser.error(f"--arms must include {BASELINE_ARM!r}, the baseline")
    return args


def make_setup(args):
    """The training setup the command line asks for."""
    setup = dict(QUICK if args.quick else FULL)
    for key in ("seeds", "backbones", "backbone_epochs", "fork_epochs"):
        if getattr(args, key):
            setup[key] = getattr(args, key)
    setup["fork_lr"] = args.fork_lr
    setup["arms"] = list(args.arms)
    setup["noise_loss_weight"] = (
        args.noise_loss_weight if "nass_noise_weight" in args.arms else None
    )
    return setup


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.repack:
        return repack_results(args.out or default_out(args.stage),
                              args.bootstrap)
    setup = make_setup(args)
    block = provenance.start(
        [__file__, *argv], seeds=setup["seeds"], corpus="mini WHAM!",
        corpus_size=setup["corpus_size"], threads=args.threads,
    )

    from lobes.data.mini_corpora import ensure_mini_corpus

    wham = ensure_mini_corpus("wham", size=setup["corpus_size"])
    work = args.work

    def corpus_at(gain):
        if gain == 0:
            return wham
        return louder_noise_corpus(wham, f"{wham}_{gain_label(gain)}", gain)

    def view_at(gain):
        return validation_view(
            corpus_at(gain), os.path.join(work, "views", gain_label(gain))
        )

    if args.noise_snr:
        return noise_precheck(args, setup, block, work, corpus_at, view_at)

    gain = args.gain_db
    record = {"training": setup, "stage": args.stage, "gain_db": gain,
              "sizes": SIZES, "nce_size": NCE_SIZE, "threads": args.threads}
    test = args.stage == "test"
    if test:
        record["test_mixtures"] = args.test_mixtures or (
            QUICK_TEST_MIXTURES if args.quick else TEST_MIXTURES)
        validated = args.validation_out or default_out("validation")
        if not args.quick:
            check_chosen_on_validation(validated, record)
    out = args.out or default_out(args.stage)
    widen_arms(out, record)
    runs = ResumableRuns(out, record, pack=pack_results,
                         unpack=unpack_results)
    if "parameters" not in runs.data:
        runs.save(parameters=parameter_overheads(SIZES, RECIPE))
    views = {gain: view_at(gain)}
    test_root = None
    if test:  # a wider test split; training and validation mixtures kept
        wide = ensure_mini_corpus("wham", size=setup["corpus_size"],
                                  test_mixtures=record["test_mixtures"])
        test_root = (wide if gain == 0 else louder_noise_corpus(
            wide, f"{wide}_{gain_label(gain)}", gain))
    done = runs.done()
    backbones, arms = [], []
    for seed in setup["seeds"]:
        for backbone in setup["backbones"]:
            job = {"backbone": backbone, "seed": seed, "gain_db": gain}
            forks = [
                {"stage": args.stage, "gain_db": gain, "backbone": backbone,
                 "arm": arm, "seed": seed} for arm in setup["arms"]
            ]
            forks = [fork for fork in forks if job_id(fork) not in done]
            arms += forks
            if test:
                continue
            if backbone_id(backbone, seed, gain) not in done:
                backbones.append(job)
            elif forks and not os.path.isfile(os.path.join(
                    work, backbone_id(backbone, seed, gain),
                    "test_results.csv")):
                # recorded, but its folder is gone (another machine):
                # trained again, and it must score as recorded
                backbones.append({**job, "rebuild": True})
    if test:
        check_arms_trained(validated, arms)
    print(f"{len(done)} runs done; {len(backbones)} backbones and "
          f"{len(arms)} arms to go", flush=True)
    begin = time.perf_counter()

    def work_on(job):
        if test:
            return run_arm_test(job, setup, work, test_root, args.threads)
        if "arm" in job:
            return run_arm(job, setup, work, {"validation": views},
                           args.threads)
        return run_backbone(job, setup, work, views, args.threads)

    def finished(job, run):
        if job.get("rebuild"):
            check_rebuilt(runs, run)
            return
        everything = runs.runs + [run]
        runs.data["runs"] = everything
        runs.save(
            comparisons=compare(everything, args.bootstrap),
            arms=arm_means(everything),
            provenance=provenance.finish(block),
        )
        runs.save(table=markdown_table(runs.data))
        score = run.get("si-snr_i", run.get("valid_si-snr_i", math.nan))
        print(f"[{run['id']}] SI-SNRi {score:.2f} dB, "
              f"{(time.perf_counter() - begin) / 60:.0f} min so far",
              flush=True)

    run_in_phases([backbones, arms], work_on, args.jobs, finished)
    if "table" not in runs.data:
        runs.save(comparisons=compare(runs.runs, args.bootstrap),
                  arms=arm_means(runs.runs),
                  provenance=provenance.finish(block))
        runs.save(table=markdown_table(runs.data))
    print()
    print(runs.data["table"])
    print(f"\nWrote {out}")
    return runs.data


def noise_precheck(args, setup, block, work, corpus_at, view_at):
    """``--noise_snr``: the backbone's error breakdown per noise gain.

    Trains (or reuses) the phase-1 backbone of the first seed and backbone
    at each gain, separates that gain's validation mixtures and reports
    the error breakdown per mixture SNR; picks the smallest gain where
    residual noise is at least as loud as interference.
    """
    from lobes.runs import load_trained_run

    backbone, seed = setup["backbones"][0], setup["seeds"][0]
    out = args.out or default_out("validation", noise_snr=True)
    runs = ResumableRuns(out, {
        "training": {k: setup[k] for k in
                     ("corpus_size", "backbone_epochs", "batch_size",
                      "segment_seconds")},
        "backbone": backbone, "seed": seed,
        "sizes": SIZES, "threads": args.threads,
    })  # the gains are the runs: more can be added to the same file
    views = {gain: view_at(gain) for gain in args.gains}
    jobs = [{"backbone": backbone, "seed": seed, "gain_db": gain}
            for gain in args.gains
            if backbone_id(backbone, seed, gain) not in runs.done()]
    run_in_phases(
        [jobs], lambda job: run_backbone(job, setup, work, views,
                                         args.threads),
        args.jobs, lambda job, run: runs.add(run),
    )
    levels = []
    for gain in args.gains:
        folder = os.path.join(work, backbone_id(backbone, seed, gain))
        separator = load_trained_run(folder, ["separator"],
                                     kind="separation").modules["separator"]
        rows = noise_breakdown(separator, corpus_at(gain), split="cv")
        levels.append({"gain_db": gain, "backbone": backbone, "seed": seed,
                       "per_mixture": rows, **breakdown_by_snr(rows)})
    runs.save(gains=sorted({*runs.data.get("gains", []), *args.gains}))
    runs.save(noise_precheck={"levels": levels,
                              "pick_gain_db": pick_noise_gain(levels)},
              provenance=provenance.finish(block))
    runs.save(table=precheck_table(runs.data))
    print(runs.data["table"])
    print(f"\nWrote {out}")
    return runs.data


if __name__ == "__main__":
    main(sys.argv[1:])
