#!/usr/bin/env python3
"""AV-VAE single-speaker enhancement on the mini AV corpus: choices on
validation, then AV-VAE vs A-VAE vs NMF vs supervised on the test items
(5 seeds, paired per item), unreliable lips, and the latent statistics.

Every run is the NTCD-TIMIT recipe as a user runs it
(``recipes/NTCD-TIMIT/av_separation``: ``train.py`` then ``separate.py
--num_speakers=1``, one CPU thread), at the benchmark sizes of
:data:`benchmarks.av_vae_benchmark.VAE_FLAGS`. The items are each test
mixture's two speakers, each with the noise alone (``s + noise``, 60 test
and 48 validation items on the small mini corpus).

1. **Validation** (models of the first seed, validation items only):

   - the anti-collapse settings of the AV-VAE (:data:`VARIANTS`: none,
     the authors' prior-decoded reconstruction term, audio-path freezing,
     both): each variant's latent statistics (KL per frame, the decoder's
     sensitivity to ``z`` and to the lips, at its best epoch) and its
     enhancement SDR at ``--probe_iterations``; the variant of best SDR is
     kept;
   - the MCEM's initial gains (``gain_init``: the papers' ``unit`` or
     ``level``), by the mean SDR of the kept AV-VAE and the A-VAE;
   - the MCEM iterations of the kept AV-VAE and of the A-VAE, each the
     count of best SDR in ``--iteration_grid``;
   - the lips fallback (A-VAE on the frames the lips do not explain): on
     if it costs less than :data:`FALLBACK_MARGIN_DB` SDR with the correct
     lips;
   - the noise run-away stop (``max_noise_growth`` :data:`NOISE_GUARD`):
     kept if it raises the SDR of both VAEs by at least
     :data:`GUARD_GAIN_DB` at the chosen iterations (else left off, as an
     option); what it saves at the grid's longest run is reported;
   - the MCEM's sampling (:data:`SAMPLING`: MH chain length and burn-in,
     the noise rank), at the chosen iterations, by :func:`choose_sampling`.

   Every run states the settings it measures: runs that do not test the
   fallback, the per-method iterations or the noise stop pass the papers'
   values (:data:`PAPERS_MCEM`), whatever ``separate.yaml`` ships.

2. **Test** (``--seeds``, scored once with the choices above): per seed,
   the A-VAE, the kept AV-VAE and the one-output supervised Conv-TasNet
   trained; ``separate.py`` on the test items (mixture, AV-VAE, A-VAE,
   NMF, supervised); then the AV-VAE with the fallback on corrupted lips
   (:data:`lobes.data.lip_corruption.CORRUPTIONS`; ``--plain``: without
   it too). Paired
   differences per item (same seed, same item) get a mixed-model
   t-interval over seeds and items and the design's minimum detectable
   effect (:mod:`benchmarks.power`); the unreliable-lips criterion is
   AV-VAE (with fallback) minus A-VAE above ``-0.3`` dB SDR.

The JSON (``--out``) is rewritten after every run with a provenance block
and per-item values; an interrupted benchmark resumes where it stopped.
``python -m benchmarks.report`` renders
:func:`benchmarks.av_enhancement_analysis.markdown_table`::

    python -m benchmarks.av_enhancement                # hours, 2 jobs
    python -m benchmarks.av_enhancement --quick        # smoke run, tiny

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks import provenance
from benchmarks.av_enhancement_analysis import (
    CORRUPTED,
    FALLBACK_MARGIN_DB,
    NOISE_GUARD,
    markdown_table,
    summarize,
)
from benchmarks.av_vae_benchmark import (
    PAPERS_MCEM,
    SUPERVISED_FLAGS,
    VAE_FLAGS,
    _run,
    _training_facts,
    separate_once,
)
from lobes.models.mcem import GAIN_INITS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: AV-VAE anti-collapse variants: name -> overrides of av_vae.yaml.
VARIANTS = {
    "none": {"prior_reconstruction_weight": 0.0, "audio_freeze_prob": 0.0},
    "prior_reconstruction": {"prior_reconstruction_weight": 0.5,
                             "audio_freeze_prob": 0.0},
    "audio_freeze": {"prior_reconstruction_weight": 0.0,
                     "audio_freeze_prob": 0.2},
    "both": {"prior_reconstruction_weight": 0.5, "audio_freeze_prob": 0.2},
}  # fmt: skip


#: The noise stop (av_enhancement_analysis.NOISE_GUARD) is kept when it
#: raises both VAEs' SDR by this much or more at the chosen iterations.
GUARD_GAIN_DB = 0.1


#: MCEM sampling settings tried on validation at the chosen iterations,
#: one change from the papers' at a time (a chain of half the burn-in that
#: keeps 10 samples, one twice as long that keeps 20; the noise rank);
#: another set than the papers' is kept only if it raises both VAEs' mean
#: SDR by SAMPLING_GAIN_DB or more.
SAMPLING = {
    "paper": {"num_mh_steps": 40, "burn_in": 30, "noise_rank": 10},
    "short_chain": {"num_mh_steps": 20, "burn_in": 10, "noise_rank": 10},
    "long_chain": {"num_mh_steps": 80, "burn_in": 60, "noise_rank": 10},
    "rank5": {"num_mh_steps": 40, "burn_in": 30, "noise_rank": 5},
    "rank20": {"num_mh_steps": 40, "burn_in": 30, "noise_rank": 20},
}
SAMPLING_GAIN_DB = 0.1


# ---------------------------------------------------------------- runs


def read_items(path, methods=None):
    """Per-item scores of a ``separate.py`` ``results.csv``.

    Returns ``{method: {item id: {score: value}}}``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.csv")
    >>> _ = open(path, "w").write("id,method,sdr,pesq\\nm_s1,av_vae,3.5,nan\\n")
    >>> read_items(path)
    {'av_vae': {'m_s1': {'sdr': 3.5, 'pesq': nan}}}
    """
    out = {}
    with open(path, newline="", encoding="utf-8") as fin:
        for row in csv.DictReader(fin):
            if methods and row["method"] not in methods:
                continue
            out.setdefault(row["method"], {})[row["id"]] = {
                key: float(value) for key, value in row.items()
                if key not in ("id", "method") and value not in ("", None)
            }
    return out


def latent_stats(folder):
    """The latent statistics the training logged at its best epoch.

    The epoch of lowest validation loss (the checkpoint the tools load);
    keys ``kl``, ``z_sensitivity``, ``lips_sensitivity`` (``latent_*`` of
    :class:`lobes.brains.av_vae.AVVAEBrain`'s validation stats).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "train_log.txt"), "w").write(
    ...     "epoch: 1 - train loss: 2 - valid loss: 5, valid latent_kl: 9\\n"
    ...     "epoch: 2 - train loss: 1 - valid loss: 4, valid latent_kl: 3\\n")
    >>> latent_stats(folder)
    {'epoch': 2, 'kl': 3.0}
    """
    best = None
    with open(os.path.join(folder, "train_log.txt"), encoding="utf-8") as fin:
        for line in fin:
            if not line.startswith("epoch:") or "valid loss" not in line:
                continue
            valid = line.split("valid loss:", 1)[1]
            loss = float(valid.split(",")[0])
            if best is None or loss < best[0]:
                stats = {"epoch": int(re.match(r"epoch: (\d+)", line)[1])}
                for key, value in re.findall(
                    r"valid latent_(\w+): ([-+\d.e]+)", line
                ):
                    stats[key] = float(value)
                best = (loss, stats)
    return best[1] if best else {}


class Runner:
    """Trains and separates into ``work``, each run once (resumable)."""

    def __init__(self, args):
        self.args = args
        self.size = "tiny" if args.quick else "small"
        self.recipe = os.path.join(REPO, "recipes", "NTCD-TIMIT",
                                   "av_separation")  # fmt: skip

    def train(self, method, seed, overrides=None, tag=None):
        """A training run's folder (trained unless done), and its facts."""
        args = self.args
        yaml_file, flags, epochs = {
            "a_vae": ("a_vae.yaml", VAE_FLAGS, args.vae_epochs),
            "av_vae": ("av_vae.yaml", VAE_FLAGS, args.vae_epochs),
            "supervised": ("supervised.yaml", SUPERVISED_FLAGS,
                           args.supervised_epochs),
        }[method]  # fmt: skip
        name = f"{method}{'_' + tag if tag else ''}_seed{seed}"
        folder = os.path.join(args.work, name)
        done = os.path.join(folder, "benchmark_done.json")
        if not os.path.isfile(done):
            os.makedirs(folder, exist_ok=True)
            command = [
                sys.executable, "train.py", f"hparams/{yaml_file}",
                f"--output_folder={folder}", f"--seed={seed}",
                f"--mini_corpus_size={self.size}",
                *[f.format(epochs=epochs) for f in flags],
                *[f"--{k}={v}" for k, v in (overrides or {}).items()],
            ]
            if method == "supervised":
                command.append("--num_spks=1")
            seconds = _run(command, os.path.join(folder, "benchmark.log"))
            with open(done, "w") as fout:
                json.dump({"seconds": seconds}, fout)
        with open(done) as fin:
            facts = {**json.load(fin), **_training_facts(folder)}
        if method == "av_vae":
            facts["latent"] = latent_stats(folder)
        return folder, facts

    def separate(self, name, seed, folders, flags):
        """``separate.py --num_speakers=1`` into ``work/name`` (once);
        returns per-item scores and the summary."""
        out = os.path.join(self.args.work, name)
        summary_path = os.path.join(out, "summary.json")
        command = [
            sys.executable, "separate.py", "hparams/separate.yaml",
            f"--output_folder={out}", f"--seed={seed}",
            f"--mini_corpus_size={self.size}", "--num_speakers=1",
            "--n_audio_to_save=0", *PAPERS_MCEM,
            *[f"--{key}_folder={folder}" for key, folder in folders.items()],
            *flags,
        ]  # fmt: skip
        separate_once(command, out, self.args.quick)
        with open(summary_path) as fin:
            summary = json.load(fin)
        with open(os.path.join(out, "benchmark.log")) as fin:
            notices = [line.strip() for line in fin
                       if line.startswith("notice:")]  # fmt: skip
        return {"items": read_items(os.path.join(out, "results.csv")),
                "summary": summary["methods"],
                "seconds": summary.get("separation_seconds"),
                "notices": len(notices)}  # fmt: skip


# ---------------------------------------------------------------- phases


def mean_sdr(items):
    """Mean SDR over the items of one method (``{id: scores}``)."""
    values = [s["sdr"] for s in items.values() if math.isfinite(s["sdr"])]
    return float(np.mean(values)) if values else math.nan


def validation(runner, data, save, jobs):
    """Phase 1: the anti-collapse variant, iterations and fallback."""
    args = runner.args
    seed = args.seeds[0]
    block = data.setdefault("validation", {"seed": seed})
    variants = block.setdefault("variants", {})

    def one_variant(name):
        folder, facts = runner.train("av_vae", seed, VARIANTS[name], name)
        result = runner.separate(
            f"valid_variant_{name}", seed, {"av_vae": folder},
            ["--eval_split=valid", "--methods=[av_vae]",
             f"--num_iterations={args.probe_iterations}",
             "--quality_metrics=False"],
        )  # fmt: skip
        return name, {"overrides": VARIANTS[name], "training": facts,
                      "sdr": mean_sdr(result["items"]["av_vae"])}

    todo = [name for name in VARIANTS if name not in variants]
    with ThreadPoolExecutor(jobs) as pool:
        for name, record in pool.map(one_variant, todo):
            variants[name] = record
            save()
    chosen = max(VARIANTS, key=lambda n: variants[n]["sdr"])
    block["variant"] = chosen
    a_vae, _ = runner.train("a_vae", seed)
    av_vae, _ = runner.train("av_vae", seed, VARIANTS[chosen], chosen)
    gains = block.setdefault("gain_init_sdr", {})

    def one_gain(init):
        result = runner.separate(
            f"valid_{chosen}_gain_{init}", seed,
            {"av_vae": av_vae, "a_vae": a_vae},
            ["--eval_split=valid", "--methods=[av_vae,a_vae]",
             f"--num_iterations={args.probe_iterations}",
             f"--gain_init={init}", "--quality_metrics=False"],
        )  # fmt: skip
        return init, {m: mean_sdr(result["items"][m])
                      for m in ("av_vae", "a_vae")}  # fmt: skip

    todo = [init for init in GAIN_INITS if init not in gains]
    with ThreadPoolExecutor(jobs) as pool:
        for init, record in pool.map(one_gain, todo):
            gains[init] = record
            save()
    block["gain_init"] = max(
        GAIN_INITS, key=lambda i: gains[i]["av_vae"] + gains[i]["a_vae"]
    )
    gain_flag = f"--gain_init={block['gain_init']}"
    grid = block.setdefault("iterations", {})

    def one_count(count):
        result = runner.separate(
            f"valid_{chosen}_em{count}", seed,
            {"av_vae": av_vae, "a_vae": a_vae},
            ["--eval_split=valid", "--methods=[av_vae,a_vae]",
             f"--num_iterations={count}", "--quality_metrics=False",
             gain_flag],
        )  # fmt: skip
        return count, {m: mean_sdr(result["items"][m])
                       for m in ("av_vae", "a_vae")}  # fmt: skip

    todo = [c for c in args.iteration_grid if str(c) not in grid]
    with ThreadPoolExecutor(jobs) as pool:
        for count, record in pool.map(one_count, todo):
            grid[str(count)] = record
            save()
    counts = [c for c in args.iteration_grid]
    block["av_vae_iterations"] = max(counts,
                                     key=lambda c: grid[str(c)]["av_vae"])
    block["a_vae_iterations"] = max(counts,
                                    key=lambda c: grid[str(c)]["a_vae"])
    if "fallback_sdr" not in block:
        result = runner.separate(
            f"valid_{chosen}_fallback", seed,
            {"av_vae": av_vae, "a_vae": a_vae},
            ["--eval_split=valid", "--methods=[av_vae]",
             f"--num_iterations={block['av_vae_iterations']}",
             "--lips_fallback=True", "--quality_metrics=False", gain_flag],
        )  # fmt: skip
        block["fallback_sdr"] = mean_sdr(result["items"]["av_vae"])
    plain = grid[str(block["av_vae_iterations"])]["av_vae"]
    block["fallback"] = bool(
        block["fallback_sdr"] > plain - FALLBACK_MARGIN_DB
    )
    save()
    guard = block.setdefault("noise_guard", {})
    longest = max(args.iteration_grid)
    for label, flags in (
        ("chosen", [f"--av_vae_iterations={block['av_vae_iterations']}",
                    f"--a_vae_iterations={block['a_vae_iterations']}"]),
        (f"em{longest}", [f"--num_iterations={longest}"]),
    ):  # fmt: skip
        if label in guard:
            continue
        result = runner.separate(
            f"valid_{chosen}_guard{NOISE_GUARD:g}_{label}", seed,
            {"av_vae": av_vae, "a_vae": a_vae},
            ["--eval_split=valid", "--methods=[av_vae,a_vae]",
             f"--max_noise_growth={NOISE_GUARD}",
             "--quality_metrics=False", gain_flag, *flags],
        )  # fmt: skip
        guard[label] = {
            **{m: mean_sdr(result["items"][m]) for m in ("av_vae", "a_vae")},
            "notices": result["notices"],
        }
        save()
    unguarded = {m: grid[str(block[f"{m}_iterations"])][m]
                 for m in ("av_vae", "a_vae")}  # fmt: skip
    block["noise_guard_gain"] = {
        m: guard["chosen"][m] - unguarded[m] for m in unguarded
    }
    block["max_noise_growth"] = NOISE_GUARD if all(
        gain >= GUARD_GAIN_DB for gain in block["noise_guard_gain"].values()
    ) else None
    save()
    sampling = block.setdefault("sampling", {})
    sampling.setdefault("paper", {**unguarded, "settings": SAMPLING["paper"]})
    iteration_flags = [f"--av_vae_iterations={block['av_vae_iterations']}",
                       f"--a_vae_iterations={block['a_vae_iterations']}"]

    def one_sampling(name):
        result = runner.separate(
            f"valid_{chosen}_sampling_{name}", seed,
            {"av_vae": av_vae, "a_vae": a_vae},
            ["--eval_split=valid", "--methods=[av_vae,a_vae]",
             "--quality_metrics=False", gain_flag, *iteration_flags,
             *[f"--{key}={value}" for key, value in SAMPLING[name].items()]],
        )  # fmt: skip
        return name, {**{m: mean_sdr(result["items"][m])
                         for m in ("av_vae", "a_vae")},
                      "settings": SAMPLING[name]}  # fmt: skip

    todo = [name for name in SAMPLING if name not in sampling]
    with ThreadPoolExecutor(jobs) as pool:
        for name, record in pool.map(one_sampling, todo):
            sampling[name] = record
            save()
    block["mcem_sampling"] = choose_sampling(sampling)
    save()
    return block


def choose_sampling(sampling):
    """The MCEM sampling settings kept: the papers' unless another set
    raises the mean SDR of both VAEs by :data:`SAMPLING_GAIN_DB` or more.

    Example
    -------
    >>> runs = {"paper": {"av_vae": 5.0, "a_vae": 1.0},
    ...         "rank5": {"av_vae": 5.1, "a_vae": 1.0},
    ...         "rank20": {"av_vae": 5.5, "a_vae": 0.9}}
    >>> choose_sampling(runs)
    'rank20'
    >>> runs["rank20"]["a_vae"] = 0.4
    >>> choose_sampling(runs)
    'paper'
    """
    def score(name):
        return (sampling[name]["av_vae"] + sampling[name]["a_vae"]) / 2

    best = max(sampling, key=score)
    return best if score(best) >= score("paper") + SAMPLING_GAIN_DB else (
        "paper")


def score_test_seed(runner, seed, choice):
    """Phase 2 for one seed: train, score every method, corrupted lips."""
    variant = choice["variant"]
    a_vae, a_facts = runner.train("a_vae", seed)
    av_vae, av_facts = runner.train("av_vae", seed, VARIANTS[variant],
                                    variant)  # fmt: skip
    plain_folder, plain_facts = (av_vae, av_facts)
    if variant != "none":  # the latent statistics before the remedy
        plain_folder, plain_facts = runner.train(
            "av_vae", seed, VARIANTS["none"], "none"
        )
    supervised, sup_facts = runner.train("supervised", seed)
    folders = {"av_vae": av_vae, "a_vae": a_vae, "supervised": supervised}
    iterations = [f"--av_vae_iterations={choice['av_vae_iterations']}",
                  f"--a_vae_iterations={choice['a_vae_iterations']}",
                  f"--gain_init={choice['gain_init']}",
                  "--max_noise_growth="
                  f"{choice['max_noise_growth'] or 'null'}",
                  *[f"--{key}={value}" for key, value in SAMPLING[
                      choice.get("mcem_sampling", "paper")].items()]]
    main = runner.separate(f"test_seed{seed}", seed, folders,
                           iterations + ["--lips_fallback=False"])
    record = {
        "training": {"a_vae": a_facts, "av_vae": av_facts,
                     "av_vae_none": plain_facts, "supervised": sup_facts},
        "items": main["items"], "seconds": main["seconds"],
        "corrupted": {},
    }  # fmt: skip
    for fallback in (True, False):
        for kind in CORRUPTED:
            if not fallback and kind != "none" and not runner.args.plain:
                continue  # the plain AV-VAE on corrupted lips: --plain
            if kind == "none" and not fallback:
                scores = main["items"]["av_vae"]
            else:
                result = runner.separate(
                    f"test_seed{seed}_{kind}_fallback{int(fallback)}", seed,
                    {"av_vae": av_vae, "a_vae": a_vae},
                    iterations + [
                        "--methods=[av_vae]", f"--lips_corruption={kind}",
                        f"--lips_fallback={fallback}",
                        "--quality_metrics=False",
                    ],
                )  # fmt: skip
                scores = result["items"]["av_vae"]
            arm = f"{kind}/{'fallback' if fallback else 'plain'}"
            record["corrupted"][arm] = {
                item: {"sdr": s["sdr"]} for item, s in scores.items()
            }
    return record


# ---------------------------------------------------------------- main


def parse_args(argv):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+",
                        default=[1, 2, 3, 4, 5])
    parser.add_argument("--vae_epochs", type=int, default=60)
    parser.add_argument("--supervised_epochs", type=int, default=15)
    parser.add_argument("--plain", action="store_true",
                        help="also score the AV-VAE without its fallback "
                        "on every corrupted lips (5 more runs a seed)")
    parser.add_argument("--probe_iterations", type=int, default=10,
                        help="EM iterations of the variant choice")
    parser.add_argument("--iteration_grid", type=int, nargs="+",
                        default=[5, 10, 20, 40])
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs side by side (one thread each)")
    parser.add_argument("--stage", choices=("validation", "test"),
                        default="test", help="stop after the validation "
                        "choices, or go on to the test set")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    results = os.path.join(REPO, "benchmarks", "results")
    suffix = "_quick" if args.quick else ""
    args.out = args.out or os.path.join(results, f"av_enhancement{suffix}"
                                        ".json")
    args.work = args.work or os.path.join(results,
                                          f"av_enhancement_runs{suffix}")
    if args.quick:
        args.vae_epochs = args.supervised_epochs = 1
        args.iteration_grid = [1, 2]
        args.probe_iterations = 1
        args.seeds = args.seeds[:2]
    return args


def main(argv=None):
    """Validation choices, then the test seeds; print the tables."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    data = {}
    if os.path.isfile(args.out):
        with open(args.out) as fin:
            data = json.load(fin)
    block = provenance.start(
        [__file__, *argv], seeds=args.seeds, threads=1,
        corpus=f"mini AV corpus ({'tiny' if args.quick else 'small'}, "
        "seed 0): each test mixture's speakers with the noise alone",
    )
    data["settings"] = {k: getattr(args, k) for k in (
        "vae_epochs", "supervised_epochs", "probe_iterations",
        "iteration_grid")}  # fmt: skip
    data["settings"]["variants"] = VARIANTS

    def save():
        data["provenance"] = provenance.finish(block)
        data["summary"] = summarize(data)
        data["table"] = markdown_table(data)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fout:
            json.dump(data, fout, indent=1, sort_keys=True)
            fout.write("\n")
        os.replace(tmp, args.out)

    runner = Runner(args)
    begin = time.time()
    choice = validation(runner, data, save, args.jobs)
    chosen = {k: choice[k] for k in ("variant", "gain_init",
                                     "av_vae_iterations", "a_vae_iterations",
                                     "fallback", "mcem_sampling")}
    print(f"validation choices: {json.dumps(chosen)}", flush=True)
    if args.stage == "test":
        tests = data.setdefault("test", {})
        todo = [s for s in args.seeds if str(s) not in tests]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {s: pool.submit(score_test_seed, runner, s, choice)
                       for s in todo}  # fmt: skip
            for seed, future in futures.items():
                tests[str(seed)] = future.result()
                save()
                print(f"seed {seed} done, {(time.time() - begin) / 60:.0f} "
                      "min so far", flush=True)
    save()
    print(data["table"])
    print(f"\nWrote {args.out}")
    return data


if __name__ == "__main__":
    main()
