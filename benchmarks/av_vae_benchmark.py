#!/usr/bin/env python3
"""AV-VAE benchmark: MCEM speed, and A-VAE / AV-VAE / NMF / supervised
two-speaker separation quality on the small mini AV corpus over paired
seeds (the extension; single-speaker enhancement, the papers' task, is
:mod:`benchmarks.av_enhancement`).

1. **Speed.** The batched MCEM (:class:`lobes.models.mcem.MCEM`) against
   the straightforward frame-by-frame implementation
   (:func:`lobes.models.mcem_reference.mcem_reference`) on the same test
   mixture, the same AV-VAE (paper size, untrained: the cost does not
   depend on the weights) and the same random draws, in float64: the
   estimates must agree to ``1e-6`` (relative), and the wall time per
   second of audio of both and their ratio are reported, from one run.
   Also the batched MCEM on all test mixtures at once (float32).
2. **Quality.** For each seed, the recipe's own scripts as a user runs
   them: ``train.py`` with ``hparams/a_vae.yaml``, ``hparams/av_vae.yaml``
   and ``hparams/supervised.yaml`` (benchmark sizes below), then
   ``separate.py`` on the test mixtures (SDR, SI-SDR, their gains over the
   unprocessed mixture, PESQ, STOI). The seed sets the models'
   initialisation, the training order and MCEM's draws; the corpus is the
   same (mini corpus seed 0). Paired differences (AV-VAE minus A-VAE,
   etc.) get a 95 % t-interval over the seeds. Two settings of the MCEM:
   a fixed ``--em_iterations`` (30) for both VAEs, and the number of EM
   iterations of each VAE chosen on the *validation* mixtures with the
   first seed's models (``--tune_grid``; more iterations lower the MCEM
   cost but, on the mini corpus, let the NMF noise model take over the
   speech).

Every run writes into ``--workdir`` and the JSON (default
``benchmarks/results/av_vae_benchmark.json``) is rewritten after each
part, so an interrupted benchmark resumes where it stopped. Prints a
markdown table.

    python -m benchmarks.av_vae_benchmark            # about 60-90 min, 1 core
    python -m benchmarks.av_vae_benchmark --quick    # smoke run, tiny corpus

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

from benchmarks import provenance
from benchmarks.av_mcem_speed import speed_benchmark, speed_lines, speed_table
from lobes.data.mini_corpora import ensure_mini_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE = os.path.join(REPO, "recipes", "NTCD-TIMIT", "av_separation")
METHODS = ("mixture", "av_vae", "a_vae", "nmf", "supervised")
SCORES = ("sdr", "sdr_i", "si_sdr", "si_sdr_i", "pesq", "stoi")
#: Paired differences reported: (minuend, subtrahend).
PAIRS = (
    ("av_vae", "a_vae"),
    ("av_vae", "mixture"),
    ("av_vae", "nmf"),
    ("av_vae", "supervised"),
    ("a_vae", "mixture"),
)
#: Student t quantiles (0.975) by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
         7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}  # fmt: skip

#: Benchmark sizes (command-line overrides of the recipe YAMLs).
VAE_FLAGS = ["--number_of_epochs={epochs}", "--patience=10", "--lr=0.001"]
SUPERVISED_FLAGS = [
    "--number_of_epochs={epochs}", "--encoder_channels=64",
    "--bottleneck_channels=64", "--conv_channels=128",
    "--blocks_per_repeat=4", "--num_repeats=2", "--segment_seconds=2.0",
    "--batch_size=4", "--lr=0.001",
]  # fmt: skip


# ---------------------------------------------------------------- statistics


def mean_interval(values):
    """Mean and half-width of the 95 % t-interval (NaN for one value).

    Example
    -------
    >>> mean, half = mean_interval([1.0, 2.0, 3.0])
    >>> mean, round(half, 3)
    (2.0, 2.484)
    """
    values = [float(v) for v in values if math.isfinite(float(v))]
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    quantile = T_975.get(len(values) - 1, 1.96)
    return mean, quantile * statistics.stdev(values) / math.sqrt(len(values))


def summarize(runs):
    """Per-method means over seeds and paired differences.

    Arguments
    ---------
    runs : dict
        ``seed -> {method -> {score -> mean over the test mixtures}}``.

    Returns
    -------
    dict
        ``methods``: ``method -> score -> (mean, half-width)``;
        ``pairs``: ``"a - b" -> score -> (mean, half-width)`` over the
        seeds' paired differences; ``seeds``.

    Example
    -------
    >>> runs = {1: {"av_vae": {"sdr": 2.0}, "a_vae": {"sdr": 1.0}},
    ...         2: {"av_vae": {"sdr": 3.0}, "a_vae": {"sdr": 1.0}}}
    >>> out = summarize(runs)
    >>> out["pairs"]["av_vae - a_vae"]["sdr"][0]
    1.5
    """
    seeds = sorted(runs)
    methods = {}
    for method in METHODS:
        present = [s for s in seeds if method in runs[s]]
        if not present:
            continue
        methods[method] = {
            score: mean_interval(
                [runs[s][method].get(score, math.nan) for s in present]
            )
            for score in SCORES + ("order_correct",)
        }
    pairs = {}
    for one, two in PAIRS:
        both = [s for s in seeds if one in runs[s] and two in runs[s]]
        if not both:
            continue
        pairs[f"{one} - {two}"] = {
            score: mean_interval(
                [runs[s][one].get(score, math.nan)
                 - runs[s][two].get(score, math.nan) for s in both]
            )  # fmt: skip
            for score in SCORES
        }
    return {"methods": methods, "pairs": pairs, "seeds": seeds}


def _cell(pair, digits=2):
    mean, half = pair
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def markdown_tables(summary, speed=None):
    """The quality table, the paired differences and the speed table.

    Example
    -------
    >>> s = summarize({1: {"av_vae": {"sdr": 2.0}, "a_vae": {"sdr": 1.0}}})
    >>> "| av_vae - a_vae | 1.00 |" in markdown_tables(s)
    True
    """
    names = ("SDR", "SDRi", "SI-SDR", "SI-SDRi", "PESQ", "STOI")
    lines = ["| method | " + " | ".join(names) + " | lips order right |",
             "|---" + "|---:" * (len(names) + 1) + "|"]  # fmt: skip
    for method, scores in summary["methods"].items():
        cells = [_cell(scores[s]) for s in SCORES]
        order = scores.get("order_correct", (math.nan, math.nan))
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {_cell(order)} |")  # fmt: skip
    lines += ["", "| paired difference | " + " | ".join(names) + " |",
              "|---" + "|---:" * len(names) + "|"]  # fmt: skip
    for pair, scores in summary["pairs"].items():
        lines.append(f"| {pair} | "
                     + " | ".join(_cell(scores[s]) for s in SCORES) + " |")
    if speed:
        lines += ["", speed_lines(speed)]
    return "\n".join(lines)


# ---------------------------------------------------------------- speed


# ---------------------------------------------------------------- quality


def _run(command, log_path):
    """Run a recipe script with one thread; raise with the log's tail."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH",
                                                             ""))
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(command, cwd=RECIPE, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        with open(log_path) as fin:
            tail = fin.read()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")
    return time.time() - start


def _training_facts(folder):
    """Epochs run, best epoch and parameter count of a training run."""
    facts = {}
    try:
        with open(os.path.join(folder, "train_log.txt")) as fin:
            text = fin.read()
        epochs = re.findall(r"^epoch: (\d+)", text, re.M)
        facts["epochs"] = int(epochs[-1]) if epochs else 0
        best = re.findall(r"Epoch loaded: (\d+)", text)
        facts["best_epoch"] = int(best[-1]) if best else None
        with open(os.path.join(folder, "log.txt")) as fin:
            count = re.findall(r"Total Number of Trainable Parameters: (\S+)",
                               fin.read())  # fmt: skip
        facts["parameters"] = count[-1] if count else None
    except OSError:
        pass
    return facts


def _train_all(seed, args, workdir):
    """Train the three models of one seed (skipped when done)."""
    python = sys.executable
    size = "tiny" if args.quick else "small"
    folders, facts = {}, {}
    plan = {
        "a_vae": ("a_vae.yaml", VAE_FLAGS, args.vae_epochs),
        "av_vae": ("av_vae.yaml", VAE_FLAGS, args.vae_epochs),
        "supervised": ("supervised.yaml", SUPERVISED_FLAGS,
                       args.supervised_epochs),
    }  # fmt: skip
    for method, (yaml_file, flags, epochs) in plan.items():
        folder = os.path.join(workdir, f"{method}_seed{seed}")
        folders[method] = folder
        done = os.path.join(folder, "benchmark_done.json")
        if not os.path.isfile(done):
            os.makedirs(folder, exist_ok=True)
            command = [python, "train.py", f"hparams/{yaml_file}",
                       f"--output_folder={folder}", f"--seed={seed}",
                       f"--mini_corpus_size={size}",
                       *[f.format(epochs=epochs) for f in flags]]
            if method == "supervised":  # two outputs: the separation task
                command.append("--num_spks=2")
            seconds = _run(command, os.path.join(folder, "benchmark.log"))
            with open(done, "w") as fout:
                json.dump({"seconds": seconds}, fout)
        with open(done) as fin:
            facts[method] = {**json.load(fin), **_training_facts(folder)}
    return folders, facts


#: separate.py settings of the papers' MCEM, which this benchmark measures
#: whatever separate.yaml ships (AV-VAE alone, one iteration count for
#: both VAEs, no noise stop, 40 MH steps of which 30 burn-in); a run's
#: own flags come after and win.
PAPERS_MCEM = ("--lips_fallback=False", "--av_vae_iterations=null",
               "--a_vae_iterations=null", "--max_noise_growth=null",
               "--num_mh_steps=40", "--burn_in=30")


def _separate(seed, args, folders, out, flags):
    """``separate.py`` with the seed's models (skipped when done)."""
    command = [
        sys.executable, "separate.py", "hparams/separate.yaml",
        f"--output_folder={out}", f"--seed={seed}",
        f"--mini_corpus_size={'tiny' if args.quick else 'small'}",
        f"--av_vae_folder={folders['av_vae']}",
        f"--a_vae_folder={folders['a_vae']}",
        f"--supervised_folder={folders['supervised']}",
        "--num_speakers=2", *PAPERS_MCEM, *flags,
    ]
    separate_once(command, out, args.quick)
    with open(os.path.join(out, "summary.json")) as fin:
        return json.load(fin)


#: Where separate_once records the arguments a run folder was made with.
COMMAND_FILE = "benchmark_command.json"


def separate_once(command, out, quick=False):
    """Run a ``separate.py`` ``command`` whose output folder is ``out``
    (logged to ``out/benchmark.log``; ``quick``: few MH steps and NMF
    iterations) and add its wall time to ``out/summary.json``, unless
    ``out`` already holds a finished run of the same arguments.

    A finished folder made with other arguments (a choice changed since)
    is run again, never reused; one without a record of its arguments
    (made before the record existed) is kept.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> write = ("import json; json.dump({}, open('%s/summary.json', 'w'))"
    ...          % out)
    >>> separate_once([sys.executable, "-c", write], out)
    >>> json.load(open(os.path.join(out, COMMAND_FILE)))[0]
    '-c'
    >>> separate_once([sys.executable, "-c", write], out)  # done: skipped
    >>> separate_once([sys.executable, "-c", "pass"], out)  # other: rerun
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...summary.json...
    """
    if quick:
        command = [*command, "--num_mh_steps=4", "--burn_in=2",
                   "--nmf_iterations=10", "--dictionary_iterations=10"]
    summary_path = os.path.join(out, "summary.json")
    record_path = os.path.join(out, COMMAND_FILE)
    arguments = list(command[1:])  # not the interpreter's path
    if os.path.isfile(summary_path):
        if not os.path.isfile(record_path):
            return
        with open(record_path) as fin:
            if json.load(fin) == arguments:
                return
        os.remove(summary_path)
    os.makedirs(out, exist_ok=True)
    seconds = _run(command, os.path.join(out, "benchmark.log"))
    with open(summary_path) as fin:
        summary = json.load(fin)
    summary["separation_seconds"] = seconds
    with open(summary_path, "w") as fout:
        json.dump(summary, fout, indent=2, sort_keys=True)
    with open(record_path, "w") as fout:
        json.dump(arguments, fout, indent=1)


def tune_iterations(args, workdir):
    """EM iterations of each VAE method, chosen on the validation mixtures.

    The first seed's models separate the validation mixtures with every
    number of iterations of ``--tune_grid``; each method keeps the one of
    best mean SDR. The test mixtures play no part.
    """
    folders, _ = _train_all(args.seeds[0], args, workdir)
    scores = {}
    for count in args.tune_grid:
        out = os.path.join(workdir, f"tune_valid_em{count}")
        summary = _separate(
            args.seeds[0], args, folders, out,
            [f"--num_iterations={count}", "--eval_split=valid",
             "--methods=[mixture,av_vae,a_vae]", "--quality_metrics=False",
             "--n_audio_to_save=0"],
        )  # fmt: skip
        scores[count] = {
            method: {k: summary["methods"][method][k]
                     for k in ("sdr", "sdr_i", "si_sdr", "si_sdr_i")}
            for method in ("av_vae", "a_vae")
        }  # fmt: skip
    chosen = {
        method: max(args.tune_grid, key=lambda c: scores[c][method]["sdr"])
        for method in ("av_vae", "a_vae")
    }
    return {"seed": args.seeds[0], "grid": list(args.tune_grid),
            "validation": scores, "chosen": chosen}  # fmt: skip


# ---------------------------------------------------------------- main


def _save(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fout:
        json.dump(data, fout, indent=2, sort_keys=True)
        fout.write("\n")
    os.replace(tmp, path)


def speed_only(args, argv):
    """The speed part alone, with its provenance, into its own file."""
    out = (args.out if args.out and "av_vae_benchmark" not in args.out
           else os.path.join(REPO, "benchmarks", "results", "mcem_speed.json"))
    size = "tiny" if args.quick else "small"
    run = provenance.start(
        None if argv is None else [__file__, *argv], threads=1,
        corpus=f"mini AV corpus ({size}, seed 0), test split",
        model="AV-VAE at paper size, untrained (the cost does not depend "
        "on the weights), seed 0",
    )
    corpus = ensure_mini_corpus("av", size, 0)
    data = {"speed": speed_benchmark(corpus, args.speed_iterations,
                                     args.quick)}
    data["provenance"] = provenance.finish(run)
    _save(out, data)
    print(speed_table(data))
    return data


def main(argv=None):
    """Run the speed part, then each seed; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--vae_epochs", type=int, default=60)
    parser.add_argument("--supervised_epochs", type=int, default=15)
    parser.add_argument("--em_iterations", type=int, default=30)
    parser.add_argument("--speed_iterations", type=int, default=3)
    parser.add_argument("--tune_grid", type=int, nargs="+",
                        default=[1, 2, 3, 5, 10, 20, 30])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--speed_only", action="store_true",
                        help="only the MCEM speed part, written to "
                        "benchmarks/results/mcem_speed.json")
    parser.add_argument("--out", default=None, help="JSON results")
    parser.add_argument("--workdir", default=None, help="training runs")
    args = parser.parse_args(argv)
    results = os.path.join(REPO, "benchmarks", "results")
    suffix = "_quick" if args.quick else ""
    args.out = args.out or os.path.join(
        results, f"av_vae_benchmark{suffix}.json"
    )
    args.workdir = args.workdir or os.path.join(results, f"av_vae{suffix}")
    if args.quick:
        args.vae_epochs = args.supervised_epochs = 1
        args.em_iterations = 2
        args.tune_grid = [1, 2]
        args.seeds = args.seeds[:2]
    torch.set_num_threads(1)
    if args.speed_only:
        return speed_only(args, argv)
    data = {}
    if os.path.isfile(args.out):
        with open(args.out) as fin:
            data = json.load(fin)
    data["provenance"] = {
        "corpus": f"mini AV corpus ({'tiny' if args.quick else 'small'}, "
        "seed 0)",
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, one "
        "thread per process, shared with other jobs",
        "torch": torch.__version__,
        "vae": "paper size: latent 32, hidden 128 tanh, visual trunk "
        "1024-512-128; lr 1e-3, batches of 8 utterances, early stopping "
        f"(patience 10), at most {args.vae_epochs} epochs",
        "supervised": "Conv-TasNet N=64 B=64 H=128 X=4 R=2, 2 s crops with "
        f"dynamic mixing, batch 4, lr 1e-3, {args.supervised_epochs} epochs",
        "mcem": f"{args.em_iterations} EM iterations (paper: up to 100), 40 "
        "MH steps with 30 burn-in, proposal variance 0.01, K = 10",
        "seeds": args.seeds,
        "command": " ".join(["python", "-m", "benchmarks.av_vae_benchmark",
                             *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    os.makedirs(args.workdir, exist_ok=True)
    corpus = ensure_mini_corpus("av", "tiny" if args.quick else "small", 0)
    if "speed" not in data or args.quick:
        start = time.time()
        data["speed"] = speed_benchmark(corpus, args.speed_iterations,
                                        args.quick)  # fmt: skip
        data["speed"]["load_average"] = os.getloadavg()
        data["speed"]["benchmark_seconds"] = time.time() - start
        _save(args.out, data)
        print(markdown_tables({"methods": {}, "pairs": {}}, data["speed"]))
    if "runs" in data and "runs_em30" not in data:  # results of old runs
        data["runs_em30"] = data.pop("runs")
    fixed = data.setdefault("runs_em30", {})
    for seed in args.seeds:  # the papers' MCEM with a fixed 30 iterations
        if str(seed) in fixed:
            continue
        start = time.time()
        folders, facts = _train_all(seed, args, args.workdir)
        separation = _separate(
            seed, args, folders,
            os.path.join(args.workdir, f"separate_seed{seed}"),
            [f"--num_iterations={args.em_iterations}"],
        )  # fmt: skip
        fixed[str(seed)] = {"training": facts, "separation": separation,
                            "wall_seconds": time.time() - start,
                            "load_average": os.getloadavg()}  # fmt: skip
        _save(args.out, data)
        print(f"seed {seed} done in {time.time() - start:.0f} s", flush=True)
    if "tuning" not in data:
        start = time.time()
        data["tuning"] = tune_iterations(args, args.workdir)
        data["tuning"]["seconds"] = time.time() - start
        _save(args.out, data)
    chosen = data["tuning"]["chosen"]
    print(f"EM iterations chosen on the validation mixtures: {chosen}")
    tuned = data.setdefault("runs_tuned", {})
    for seed in args.seeds:
        if str(seed) in tuned:
            continue
        start = time.time()
        folders, facts = _train_all(seed, args, args.workdir)
        separation = _separate(
            seed, args, folders,
            os.path.join(args.workdir, f"separate_seed{seed}_tuned"),
            [f"--av_vae_iterations={chosen['av_vae']}",
             f"--a_vae_iterations={chosen['a_vae']}"],
        )  # fmt: skip
        tuned[str(seed)] = {"training": facts, "separation": separation,
                            "wall_seconds": time.time() - start,
                            "load_average": os.getloadavg()}  # fmt: skip
        _save(args.out, data)

    def means(runs):
        return {
            int(seed): run["separation"]["methods"]
            for seed, run in runs.items() if int(seed) in args.seeds
        }

    data["summary"] = summarize(means(tuned))
    data["summary_em30"] = summarize(means(fixed))
    tables = [
        f"EM iterations chosen on the validation mixtures: {chosen}",
        markdown_tables(data["summary"], data.get("speed")),
        f"With {args.em_iterations} EM iterations for both VAEs:",
        markdown_tables(data["summary_em30"]),
    ]
    data["table"] = "\n\n".join(tables)
    _save(args.out, data)
    print(data["table"])
    return data


if __name__ == "__main__":
    main()
