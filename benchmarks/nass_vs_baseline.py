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

Writes JSON after every run (``--out``, resumed from when it exists) with
a provenance block and per-mixture values; ``python -m benchmarks.report``
renders :func:`markdown_table` from it::

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
import csv
import math
import os
import re
import shutil
import sys
import time

from benchmarks import provenance
from benchmarks.paired import (
    ResumableRuns,
    fmt,
    fmt_delta,
    portable,
    read_average,
    run_in_phases,
    run_recipe,
    summarize,
)
from benchmarks.power import holm, observed_mde, paired_effect
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

#: The arm every other arm is compared with.
BASELINE_ARM = "backbone"

STAGES = ("validation", "test")

#: Setup keys the test stage may set differently from the validation
#: stage it follows: the stage, and the size of the wider test split.
TEST_STAGE_KEYS = ("stage", "test_mixtures")

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

#: Per-mixture columns kept from each run's ``test_results.csv`` (those
#: present; the error breakdown once the recipe writes it).
RESULT_KEYS = ("si-snr_i", "sdr_i", "noise_si-snr", "si-snr_i_oracle",
               "sdr_i_oracle", "noise_si-snr_oracle")
BREAKDOWN_KEYS = ("interference_db", "noise_db", "artifact_db")
#: Last-epoch training statistics kept from each arm's ``train_log.txt``:
#: NCE and its chance level, NCE's gradient over PIT's on the masked
#: features, and on the separator's parameters NCE's share of the two
#: gradients' norms and their cosine.
TRAIN_KEYS = ("nce", "nce_chance", "nce_grad_ratio", "nce_param_share",
              "nce_pit_cosine")

#: What the comparison reports: metric x noise choice.
COMPARED = ("si-snr_i", "sdr_i")
CHOICES = {"deployed": "", "oracle": "_oracle"}


def louder_noise_corpus(source, target, gain_db):
    """Copy a WHAM! ``wav8k/min`` tree with the noise ``gain_db`` louder.

    Speakers are kept; ``mix_both = s1 + s2 + louder noise`` (one common
    factor keeps every mixture below 0.99 in peak, so that it stays the sum
    of its parts); float wavs. Done once per target (a marker file).

    Returns
    -------
    str
        ``target`` (a WHAM! root for ``--data_folder``).
    """
    import numpy as np
    import soundfile as sf

    marker = os.path.join(target, ".complete")
    if os.path.isfile(marker):
        return target
    gain = 10 ** (gain_db / 20)
    for split in ("tr", "cv", "tt"):
        src = os.path.join(source, "wav8k", "min", split)
        dst = os.path.join(target, "wav8k", "min", split)
        for folder in ("s1", "s2", "noise", "mix_both", "mix_clean"):
            os.makedirs(os.path.join(dst, folder), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(src, "s1"))):
            parts = {
                folder: sf.read(os.path.join(src, folder, name))[0]
                for folder in ("s1", "s2", "noise")
            }
            rate = sf.info(os.path.join(src, "s1", name)).samplerate
            parts["noise"] = parts["noise"] * gain
            mix = parts["s1"] + parts["s2"] + parts["noise"]
            scale = min(1.0, 0.99 / max(np.abs(mix).max(), 1e-9))
            out = {k: v * scale for k, v in parts.items()}
            out["mix_both"] = mix * scale
            out["mix_clean"] = (parts["s1"] + parts["s2"]) * scale
            for folder, signal in out.items():
                sf.write(os.path.join(dst, folder, name),
                         signal.astype("float32"), rate, subtype="FLOAT")
    with open(marker, "w", encoding="utf-8") as fout:
        fout.write(f"noise {gain_db:+.1f} dB of {source}\n")
    return target


def last_epoch_stats(train_log):
    """The last epoch's train statistics in ``train_log.txt`` as floats.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.txt")
    >>> _ = open(path, "w").write(
    ...     "epoch: 2, lr: 3.00e-03 - train loss: 1.5, train nce: 2.1, "
    ...     "train nce_chance: 4.16 - valid loss: 1.2\\n")
    >>> last_epoch_stats(path)
    {'epoch': 2, 'loss': 1.5, 'nce': 2.1, 'nce_chance': 4.16}
    """
    with open(train_log, encoding="utf-8") as fin:
        lines = [line for line in fin if line.startswith("epoch:")]
    if not lines:
        return {}
    line = lines[-1]
    stats = {"epoch": int(re.match(r"epoch: (\d+)", line).group(1))}
    train = line.split(" - ")[1] if " - " in line else ""
    for name, value in re.findall(r"train ([\w-]+): ([-\d.e+]+)", train):
        stats[name] = float(value)
    return stats


def validation_view(root, target):
    """A WHAM! root whose test split is the validation split.

    ``<target>/wav8k/min/{tr,cv}`` link to ``root``'s and ``tt`` to its
    ``cv``: a recipe run on it trains and validates as on ``root`` and
    "tests" on the validation mixtures, never reading the test split.

    Example
    -------
    >>> import tempfile
    >>> root, view = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> for split in ("tr", "cv", "tt"):
    ...     os.makedirs(os.path.join(root, "wav8k", "min", split))
    >>> tt = os.path.join(validation_view(root, view), "wav8k", "min", "tt")
    >>> os.path.realpath(tt) == os.path.realpath(
    ...     os.path.join(root, "wav8k", "min", "cv"))
    True
    """
    base = os.path.join(root, "wav8k", "min")
    folder = os.path.join(target, "wav8k", "min")
    os.makedirs(folder, exist_ok=True)
    for split, source in (("tr", "tr"), ("cv", "cv"), ("tt", "cv")):
        link = os.path.join(folder, split)
        want = os.path.abspath(os.path.join(base, source))
        if os.path.islink(link) and os.readlink(link) == want:
            continue
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(want, link)
    return target


def gain_label(gain_db):
    """A folder-safe name of a noise gain.

    Example
    -------
    >>> gain_label(0.0), gain_label(6), gain_label(-3.5)
    ('noise+0dB', 'noise+6dB', 'noise-3.5dB')
    """
    return f"noise{gain_db:+g}dB"


def read_per_mixture(path, keys=RESULT_KEYS + BREAKDOWN_KEYS):
    """Per-mixture rows of a recipe's ``test_results.csv``.

    Arguments
    ---------
    path : str
        The CSV (``snt_id`` and one column per metric, an ``avg`` row).
    keys : tuple of str
        Columns to keep (those missing in the file are left out).

    Returns
    -------
    dict
        ``{"mixtures": [ids], key: [values]}`` in the file's order, the
        ``avg`` row left out; an empty cell is NaN.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "test_results.csv")
    >>> _ = open(path, "w").write(
    ...     "snt_id,si-snr_i,sdr_i\\na,1.5,2.0\\nb,0.5,\\navg,1.0,2.0\\n")
    >>> read_per_mixture(path)
    {'mixtures': ['a', 'b'], 'si-snr_i': [1.5, 0.5], 'sdr_i': [2.0, nan]}
    """
    with open(path, encoding="utf-8") as fin:
        rows = [row for row in csv.DictReader(fin) if row["snt_id"] != "avg"]
    present = [key for key in keys if rows and key in rows[0]]
    values = {"mixtures": [row["snt_id"] for row in rows]}
    for key in present:
        values[key] = [
            float(row[key]) if row[key] not in ("", None) else math.nan
            for row in rows
        ]
    return values


def with_oracle(values):
    """Give a run without a noise output its ``_oracle`` columns.

    A backbone has no noise output to choose: its oracle value is its
    deployed one. Works on averages and on per-mixture lists.

    Example
    -------
    >>> with_oracle({"si-snr_i": [1.0], "si-snr_i_oracle": [2.0]})
    {'si-snr_i': [1.0], 'si-snr_i_oracle': [2.0]}
    >>> with_oracle({"sdr_i": 3.0})
    {'sdr_i': 3.0, 'sdr_i_oracle': 3.0}
    """
    out = dict(values)
    for key in list(values):
        if key == "mixtures" or key.endswith("_oracle"):
            continue
        if key in ("si-snr_i", "sdr_i", "noise_si-snr"):
            out.setdefault(f"{key}_oracle", values[key])
    return out


def train_steps(run_folder, epochs, batch_size):
    """Optimiser steps of a run: epochs x batches of its training manifest."""
    with open(os.path.join(run_folder, "save", "wham_train.csv"),
              encoding="utf-8") as fin:
        mixtures = sum(1 for _ in fin) - 1
    return epochs * math.ceil(mixtures / batch_size)


def backbone_id(backbone, seed, gain_db):
    """The key of a phase-1 run (a backbone trained from scratch).

    Example
    -------
    >>> backbone_id("sepformer", 2, 6.0)
    'backbones/noise+6dB/sepformer/seed2'
    """
    return f"backbones/{gain_label(gain_db)}/{backbone}/seed{seed}"


def job_id(job):
    """The key of one phase-2 run (an arm forked from a backbone).

    Example
    -------
    >>> job_id({"stage": "validation", "gain_db": 0, "backbone": "dprnn",
    ...         "arm": "nass", "seed": 1})
    'validation/noise+0dB/dprnn/nass/seed1'
    """
    return (f"{job['stage']}/{gain_label(job['gain_db'])}/"
            f"{job['backbone']}/{job['arm']}/seed{job['seed']}")


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
    wall = math.nan
    if not os.path.isfile(results):  # not trained yet, or interrupted
        shutil.rmtree(folder, ignore_errors=True)
        wall = run_recipe(RECIPE, f"{job['backbone']}.yaml", overrides,
                          threads)
    average, utterances = read_average(results)
    return {
        "id": backbone_id(job["backbone"], job["seed"], job["gain_db"]),
        "phase": "backbone", **job, "folder": folder,
        "overrides": overrides,
        "valid_si-snr_i": average.get("si-snr_i", math.nan),
        "valid_sdr_i": average.get("sdr_i", math.nan),
        "valid_utterances": utterances,
        "steps": train_steps(folder, setup["backbone_epochs"],
                             setup["batch_size"]),
        "wall_seconds": wall,
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
    yaml, overrides = arm_overrides(
        job, setup, out, folders[job["stage"]][job["gain_db"]],
        os.path.join(work, backbone_id(job["backbone"], job["seed"],
                                       job["gain_db"])),
    )
    wall = run_recipe(RECIPE, yaml, overrides, threads)
    return arm_record(job, setup, yaml, overrides, out, out, wall)


def trained_arm(job):
    """The validation-stage job whose trained arm a test-stage job scores.

    Example
    -------
    >>> trained_arm({"stage": "test", "arm": "nass", "seed": 2})["stage"]
    'validation'
    """
    return {**job, "stage": "validation"}


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
    yaml, overrides = arm_overrides(
        job, setup, out, test_root,
        os.path.join(work, backbone_id(job["backbone"], job["seed"],
                                       job["gain_db"])),
    )
    wall = run_recipe(RECIPE, yaml, overrides, threads)
    return arm_record(job, setup, yaml, overrides, out, trained, wall)


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
        "per_mixture": with_oracle(read_per_mixture(results)),
        **{key: train.get(key, math.nan) for key in TRAIN_KEYS},
        "train_loss": train.get("loss", math.nan),
        "epochs": train.get("epoch"),
        "steps": train_steps(trained, setup["fork_epochs"],
                             setup["batch_size"]),
        "wall_seconds": wall, "test_utterances": utterances,
    }


def paired_table(arm_run, base_run, key):
    """One seed's per-mixture differences ``arm - base`` by mixture id."""
    arm = dict(zip(arm_run["per_mixture"]["mixtures"],
                   arm_run["per_mixture"].get(key, [])))
    base = dict(zip(base_run["per_mixture"]["mixtures"],
                    base_run["per_mixture"].get(key, [])))
    return {m: arm[m] - base[m] for m in arm if m in base}


def compare(runs, bootstrap=2000):
    """Every arm minus the backbone continued, per-mixture and paired.

    For each noise gain, backbone, arm, metric (SI-SNRi, SDRi) and noise
    choice (deployed, oracle): the seeds both arms ran, the mixtures every
    one of those runs scored (finite values), the table of per-mixture
    differences, its mixed-model interval and p-value, the bootstrap
    interval and the minimum detectable effect (:mod:`benchmarks.power`);
    then Holm's adjustment over all the rows.

    Arguments
    ---------
    runs : list of dict
        Phase-2 records (``phase: arm``, with ``per_mixture``); others are
        ignored.
    bootstrap : int
        Bootstrap draws per comparison.

    Returns
    -------
    list of dict
        One row per comparison, ``p_holm`` included.

    Example
    -------
    >>> def run(arm, seed):
    ...     shift = 0.5 + 0.01 * seed if arm == "nass" else 0.0
    ...     values = [m + shift + 0.1 * seed for m in range(4)]
    ...     return {"phase": "arm", "stage": "validation", "gain_db": 0,
    ...             "backbone": "b", "arm": arm, "seed": seed,
    ...             "per_mixture": with_oracle({"mixtures": list("wxyz"),
    ...                                         "si-snr_i": values,
    ...                                         "sdr_i": values})}
    >>> runs = [run(a, s) for a in ("backbone", "nass") for s in (1, 2, 3)]
    >>> rows = compare(runs, bootstrap=0)
    >>> [(r["metric"], r["choice"], r["seeds"], r["mixtures"]) for r in rows]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('si-snr_i', 'deployed', 3, 4), ('si-snr_i', 'oracle', 3, 4),
     ('sdr_i', 'deployed', 3, 4), ('sdr_i', 'oracle', 3, 4)]
    >>> round(rows[0]["mean"], 2), rows[0]["p_holm"] >= rows[0]["p"]
    (0.52, True)
    """
    arms = [r for r in runs if r.get("phase") == "arm"]
    index = {(r["stage"], r["gain_db"], r["backbone"], r["arm"], r["seed"]):
             r for r in arms}
    groups = sorted({(r["stage"], r["gain_db"], r["backbone"], r["arm"])
                     for r in arms if r["arm"] != BASELINE_ARM},
                    key=lambda g: (str(g[0]), g[1], g[2],
                                   list(ARMS).index(g[3])
                                   if g[3] in ARMS else 99))
    rows = []
    for stage, gain, backbone, arm in groups:
        seeds = sorted(
            seed for (st, g, b, a, seed) in index
            if (st, g, b, a) == (stage, gain, backbone, arm)
            and (stage, gain, backbone, BASELINE_ARM, seed) in index
        )
        for metric in COMPARED:
            for choice, suffix in CHOICES.items():
                key = metric + suffix
                per_seed = [
                    paired_table(index[(stage, gain, backbone, arm, s)],
                                 index[(stage, gain, backbone, BASELINE_ARM,
                                        s)], key)
                    for s in seeds
                ]
                mixtures = sorted(
                    set.intersection(*(set(t) for t in per_seed))
                    if per_seed else set()
                )
                mixtures = [m for m in mixtures
                            if all(math.isfinite(t[m]) for t in per_seed)]
                row = {"stage": stage, "gain_db": gain, "backbone": backbone,
                       "arm": arm, "metric": metric, "choice": choice,
                       "seeds": len(seeds), "mixtures": len(mixtures)}
                if mixtures:
                    table = [[t[m] for m in mixtures] for t in per_seed]
                    effect = paired_effect(table, bootstrap=bootstrap)
                    row.update(
                        mean=effect.mean, se=effect.se, df=effect.df,
                        low=effect.low, high=effect.high, p=effect.p,
                        boot_low=effect.boot_low, boot_high=effect.boot_high,
                        mde=observed_mde(table),
                        **effect.components._asdict(),
                    )
                rows.append(row)
    tested = [row for row in rows if "p" in row]
    for row, adjusted in zip(tested, holm([row["p"] for row in tested])):
        row["p_holm"] = adjusted
    return rows


def arm_means(runs):
    """Per stage, gain, backbone and arm: the mean over seeds of each
    average (SI-SNRi, SDRi, their oracle, the error breakdown, NCE)."""
    keys = (*RESULT_KEYS, *BREAKDOWN_KEYS, *TRAIN_KEYS, "steps",
            "wall_seconds")
    groups = {}
    for run in runs:
        if run.get("phase") == "arm":
            group = (run["stage"], run["gain_db"], run["backbone"],
                     run["arm"])
            groups.setdefault(group, []).append(run)
    rows = []
    for (stage, gain, backbone, arm), mine in groups.items():
        row = {"stage": stage, "gain_db": gain, "backbone": backbone,
               "arm": arm, "seeds": len(mine)}
        for key in keys:
            values = [r[key] for r in mine
                      if isinstance(r.get(key), (int, float))
                      and math.isfinite(r[key])]
            row[key] = sum(values) / len(values) if values else math.nan
        rows.append(row)
    return rows


def _interval(row):
    """``+0.30 [-0.10, +0.70]`` of a comparison row."""
    if "mean" not in row:
        return "n/a"
    return (f"{fmt(row['mean'], sign=True)} [{fmt(row['low'], sign=True)}, "
            f"{fmt(row['high'], sign=True)}]")


def comparison_table(results):
    """The warm-started comparison (a results file) as markdown."""
    setup = results.get("setup", {})
    training = setup.get("training", {})
    lines = [
        "| backbone | arm | noise choice | seeds × mixtures "
        "| Δ SI-SNRi [95 % CI] | p (Holm) | MDE "
        "| Δ SDRi [95 % CI] | p (Holm) | MDE |",
        "|---|---|---|---|---|---:|---:|---|---:|---:|",
    ]
    rows = {}
    for row in results.get("comparisons", []):
        key = (row["gain_db"], row["backbone"], row["arm"], row["choice"])
        rows.setdefault(key, {})[row["metric"]] = row
    for (_, backbone, arm, choice), metrics in rows.items():
        first = next(iter(metrics.values()))
        cells = []
        for metric in COMPARED:
            row = metrics.get(metric, {})
            cells += [
                _interval(row),
                fmt(row.get("p_holm", math.nan), 3),
                fmt(row.get("mde", math.nan)),
            ]
        lines.append(
            f"| {backbone} | {arm} | {choice} "
            f"| {first['seeds']} × {first['mixtures']} | "
            + " | ".join(cells) + " |"
        )
    means = results.get("arms", [])
    if means:
        lines += [
            "",
            "| backbone | arm | seeds | SI-SNRi | SDRi | SI-SNRi (oracle) "
            "| interference dB | noise dB | artifacts dB | NCE (ln K) "
            "| NCE gradient share (cosine to PIT) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in means:
            nce = share = "—"
            if not math.isnan(row["nce"]):
                nce = f"{row['nce']:.2f} ({row['nce_chance']:.2f})"
            if not math.isnan(row.get("nce_param_share", math.nan)):
                share = (f"{row['nce_param_share']:.2f} "
                         f"({row['nce_pit_cosine']:+.2f})")
            lines.append(
                f"| {row['backbone']} | {row['arm']} | {row['seeds']} "
                f"| {fmt(row['si-snr_i'])} | {fmt(row['sdr_i'])} "
                f"| {fmt(row['si-snr_i_oracle'])} "
                f"| {fmt(row['interference_db'])} | {fmt(row['noise_db'])} "
                f"| {fmt(row['artifact_db'])} | {nce} | {share} |"
            )
    gain = setup.get("gain_db")
    lines += [
        "",
        f"Stage: {setup.get('stage', '?')}; mini WHAM! "
        f"({training.get('corpus_size', '?')}"
        + (f", {setup['test_mixtures']} test mixtures"
           if setup.get("test_mixtures") else "")
        + ") with the noise "
        f"{fmt(gain, 1, sign=True) if gain is not None else '?'} dB; "
        f"backbones {training.get('backbone_epochs', '?')} epochs, then "
        f"{training.get('fork_epochs', '?')} epochs per arm from the "
        "backbone's best validation checkpoint. Δ: arm minus the backbone "
        "continued, per mixture and seed; 95 % intervals from a two-way "
        "random-effects model (seeds × mixtures, Satterthwaite df); p "
        "Holm-adjusted over the rows; MDE: the smallest effect detected "
        "with 80 % power at alpha 0.05 by this design (observed SDs).",
    ]
    return "\n".join(lines)


def markdown_table(results):
    """The table of a results file (``python -m benchmarks.report``).

    A results file of this benchmark renders as :func:`comparison_table`;
    a list of :func:`summarize_runs` rows (per-seed averages) as the
    seed-level table.

    Example
    -------
    >>> print(markdown_table({"setup": {"stage": "test"},
    ...                       "comparisons": []}).splitlines()[0][:40])
    | backbone | arm | noise choice | seeds
    """
    if isinstance(results, list):
        return seed_table(results)
    if "noise_precheck" in results and "comparisons" not in results:
        return precheck_table(results)
    return comparison_table(results)


#: What the seed-level summary averages and compares.
METRICS = (*RESULT_KEYS, "nce", "nce_chance", "nce_grad_ratio",
           "wall_seconds", "steps")


def summarize_runs(runs):
    """Per condition, backbone and arm: means over seeds, and paired
    differences of the seed averages to the backbone of the same seed
    (the coarse view; :func:`compare` pairs per mixture)."""
    return summarize(
        runs, ("condition", "backbone"), METRICS,
        lambda run: {"condition": run["condition"],
                     "backbone": run["backbone"], "arm": BASELINE_ARM},
    )


def seed_table(summary):
    """:func:`summarize_runs` rows as a markdown table."""
    lines = [
        "| condition | backbone | arm | seeds | SI-SNRi | Δ SI-SNRi [95 % CI]"
        " | SDRi | Δ SDRi [95 % CI] | SI-SNRi (oracle) | noise SI-SNR "
        "| NCE (ln K) | NCE/PIT gradient | steps | wall min |",
        "|---|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        baseline = row["arm"] == BASELINE_ARM
        nce = "—"
        if not math.isnan(row["nce"]):
            nce = f"{row['nce']:.2f} ({row['nce_chance']:.2f})"
        ratio = "—"
        if not math.isnan(row["nce_grad_ratio"]):
            ratio = f"{row['nce_grad_ratio']:.2g}"
        deltas = [
            "—" if baseline else fmt_delta(
                row[f"delta_{key}"], row[f"delta_{key}_ci95"]
            )
            for key in ("si-snr_i", "sdr_i")
        ]
        lines.append(
            f"| {row['condition']} | {row['backbone']} | {row['arm']} "
            f"| {len(row['seeds'])} | {fmt(row['si-snr_i'])} "
            f"| {deltas[0]} | {fmt(row['sdr_i'])} | {deltas[1]} "
            f"| {fmt(row['si-snr_i_oracle'])} | {fmt(row['noise_si-snr'])} "
            f"| {nce} | {ratio} | {row['steps']:.0f} "
            f"| {row['wall_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


# The noise-level pre-check ----------------------------------------------


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


def parameter_overheads():
    """NASS's inference parameters over its backbone's, bench and paper size."""
    import torch

    from lobes.models.noise_aware import inference_parameter_count
    from lobes.overrides import load_hparams

    rows = {}
    with torch.random.fork_rng(devices=[]):
        for backbone, sizes in SIZES.items():
            sizes = {k: v for k, v in sizes.items() if k != "lr"}
            for size_name, overrides in (("bench", sizes), ("paper", {})):
                counts = {}
                for stem in (backbone, f"nass_{backbone}"):
                    path = os.path.join(RECIPE, "hparams", f"{stem}.yaml")
                    experiment = load_hparams(path, dict(overrides))
                    counts[stem] = inference_parameter_count(
                        experiment["separator"]
                    )
                rows[f"{backbone}_{size_name}"] = {
                    "backbone": counts[backbone],
                    "nass": counts[f"nass_{backbone}"],
                    "overhead": counts[f"nass_{backbone}"] - counts[backbone],
                }
    return rows


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


def check_chosen_on_validation(validation_path, setup):
    """Refuse a test stage whose choices were not run on validation first.

    The validation results file must exist and hold the same setup but
    for its stage (noise gain, epochs, fork LR, arms, seeds, sizes).

    Raises
    ------
    SystemExit
        Naming the file or the settings that differ.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "v.json")
    >>> check_chosen_on_validation(path, {"stage": "test", "gain_db": 6})
    Traceback (most recent call last):
    ...
    SystemExit: error: ...v.json: no validation results; ...
    >>> _ = open(path, "w").write(json.dumps(
    ...     {"setup": {"stage": "validation", "gain_db": 0}}))
    >>> check_chosen_on_validation(path, {"stage": "test", "gain_db": 6})
    Traceback (most recent call last):
    ...
    SystemExit: error: ...: validated with other settings (gain_db); ...
    """
    import json

    if not os.path.isfile(validation_path):
        raise SystemExit(
            f"error: {validation_path}: no validation results; run "
            "--stage validation with the same settings first (choices are "
            "made on validation, the test set is scored once, after)"
        )
    with open(validation_path, encoding="utf-8") as fin:
        validated = json.load(fin).get("setup", {})
    differ = sorted(
        key for key in set(validated) | set(setup)
        if key not in TEST_STAGE_KEYS
        and validated.get(key) != setup.get(key)
    )
    if differ:
        raise SystemExit(
            f"error: {validation_path}: validated with other settings "
            f"({', '.join(differ)}); run --stage validation with these "
            "settings first"
        )
    return validated


def widen_arms(path, record):
    """Let a results file take more arms than it was started with.

    When ``path`` holds runs of the same setup but for fewer arms, its
    setup is widened to ``record``'s arms (its runs are kept, the new arms
    run next; an added ``nass_noise_weight`` arm brings its
    ``noise_loss_weight``); any other difference is left for
    :class:`benchmarks.paired.ResumableRuns` to refuse.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> _ = open(path, "w").write(json.dumps({"setup": {"training": {
    ...     "arms": ["backbone"], "seeds": [1]}}, "runs": [{"id": "a"}]}))
    >>> record = {"training": {"arms": ["backbone", "nass"], "seeds": [1]}}
    >>> widen_arms(path, record)
    True
    >>> json.load(open(path))["setup"]["training"]["arms"]
    ['backbone', 'nass']
    >>> widen_arms(path, {"training": {"arms": ["nass"], "seeds": [1]}})
    False
    """
    import json

    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as fin:
        data = json.load(fin)
    old = data.get("setup", {})
    training = dict(old.get("training", {}))
    old_arms = training.get("arms", [])
    new_arms = record["training"]["arms"]
    training["arms"] = new_arms
    if (training.get("noise_loss_weight") is None
            and "noise_loss_weight" in record["training"]):  # its arm is new
        training["noise_loss_weight"] = record["training"][
            "noise_loss_weight"]
    rest = {**old, "training": training}
    if (set(old_arms) >= set(new_arms) or not set(old_arms) <= set(new_arms)
            or rest != portable(record)):
        return False
    data["setup"] = rest
    with open(path, "w", encoding="utf-8") as fout:
        json.dump(data, fout, indent=1)
    return True


def check_arms_trained(validation_path, jobs):
    """Refuse a test stage whose arms the validation stage has not trained.

    Raises
    ------
    SystemExit
        Naming the results file and the first missing arm.

    Example
    -------
    >>> import json, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "v.json")
    >>> _ = open(path, "w").write(json.dumps({"runs": [
    ...     {"id": "validation/noise+0dB/dprnn/nass/seed1"}]}))
    >>> job = {"stage": "test", "gain_db": 0, "backbone": "dprnn",
    ...        "arm": "nass", "seed": 1}
    >>> check_arms_trained(path, [job])
    >>> check_arms_trained(path, [dict(job, seed=2)])
    Traceback (most recent call last):
    ...
    SystemExit: error: ...v.json: 1 arm(s) not trained on validation ...
    """
    import json

    try:
        with open(validation_path, encoding="utf-8") as fin:
            done = {run["id"] for run in json.load(fin).get("runs", [])}
    except OSError:
        done = set()
    missing = [job_id(trained_arm(job)) for job in jobs
               if job_id(trained_arm(job)) not in done]
    if missing:
        raise SystemExit(
            f"error: {validation_path}: {len(missing)} arm(s) not trained "
            f"on validation yet ({missing[0]}); run --stage validation "
            "with the same settings first"
        )


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
    runs = ResumableRuns(out, record)
    if "parameters" not in runs.data:
        runs.save(parameters=parameter_overheads())
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
            if backbone_id(backbone, seed, gain) not in done and not test:
                backbones.append(job)
            for arm in setup["arms"]:
                job = {"stage": args.stage, "gain_db": gain,
                       "backbone": backbone, "arm": arm, "seed": seed}
                if job_id(job) not in done:
                    arms.append(job)
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
