#!/usr/bin/env python3
"""NASS versus its backbone on the mini WHAM! corpus, several seeds.

For SepFormer, DPRNN and Conv-TasNet (small sizes that train on a CPU) this
trains the WHAM! recipe's NASS YAML and its baseline YAML for the same
number of steps with the recipe's own Brain
(:class:`lobes.brains.separation.SeparationBrain`), data preparation and
datasets, then tests each on the test split (SI-SNRi, SDRi over the
speakers, and the SI-SNR of the noise estimate: NASS's noise output, or
``mix - sum(speakers)`` for the baseline). It also reports the
inference-time parameter overhead of NASS at the benchmark size and at the
recipes' default (paper) size, and the training step time ratio.

Prints a markdown table and writes JSON (default
``benchmarks/results/nass_vs_baseline.json``)::

    python benchmarks/nass_vs_baseline.py          # see the timing below
    python benchmarks/nass_vs_baseline.py --quick  # smoke run, < 2 min

Timing of the full run (2 runs side by side, one thread each): 300 steps
per run, 18 runs, about 11 min of training CPU time per core plus data
loading and testing, i.e. an estimated 15 to 20 min on two idle cores; it
took 48 min on a shared machine at load average 4 to 9. ``--epochs`` (100
steps each) and ``--seeds`` trade accuracy of the comparison for time.

The mini corpus is generated on first use (cached; ``NRSB_CACHE``).

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import concurrent.futures
import json
import logging
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)

from lobes.brains.separation import SeparationBrain  # noqa: E402
from lobes.data.mini_corpora import ensure_mini_corpus  # noqa: E402
from lobes.data.prepare import prepare_wham  # noqa: E402
from lobes.data.separation_data import separation_datasets  # noqa: E402
from lobes.models.noise_aware import inference_parameter_count  # noqa: E402
from lobes.recipe import load_hparams  # noqa: E402

HPARAMS_DIR = os.path.join(REPO, "recipes", "WHAM", "separation", "hparams")

#: Backbone -> (baseline YAML stem, size overrides of the benchmark).
BACKBONES = {
    "sepformer": (
        "sepformer",
        {
            "encoder_channels": 64,
            "num_dual_path_blocks": 1,
            "num_transformer_layers": 1,
            "num_heads": 4,
            "d_ffn": 128,
            "chunk_size": 50,
        },
    ),
    "dprnn": (
        "dprnn",
        {"encoder_channels": 64, "num_dual_path_blocks": 1, "chunk_size": 50},
    ),
    "convtasnet": (
        "convtasnet",
        {
            "encoder_channels": 64,
            "bottleneck_channels": 64,
            "conv_channels": 128,
            "blocks_per_repeat": 4,
            "num_repeats": 1,
        },
    ),
}

#: Training setup shared by every run (both variants, all backbones).
FULL = {
    "corpus_size": "small",
    "epochs": 3,
    "batch_size": 4,
    "segment_seconds": 1.0,
    "lr": 0.001,
    "eval_max_seconds": 3.0,
    "seeds": [1, 2, 3],
}
QUICK = {
    "corpus_size": "tiny",
    "epochs": 2,
    "batch_size": 4,
    "segment_seconds": 0.5,
    "lr": 0.001,
    "eval_max_seconds": 2.0,
    "seeds": [1],
}


class TimedSeparationBrain(SeparationBrain):
    """The recipe's Brain, timing each training step (forward to update)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_seconds = []
        self.step_cpu_seconds = []

    def fit_batch(self, batch):
        """Time :meth:`SeparationBrain.fit_batch` (data loading excluded)."""
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = super().fit_batch(batch)
        self.step_seconds.append(time.perf_counter() - start)
        self.step_cpu_seconds.append(time.process_time() - start_cpu)
        return loss


def yaml_path(stem):
    """Path of a WHAM! separation recipe YAML."""
    return os.path.join(HPARAMS_DIR, f"{stem}.yaml")


def parameter_overhead(backbone, sizes):
    """Inference parameters of baseline and NASS for the given sizes.

    Returns ``(baseline, nass, training_only)`` where training_only counts
    NASS's PatchNCE sampler and MLP.
    """
    stem = BACKBONES[backbone][0]
    counts = {}
    training_only = 0
    for variant, name in (("baseline", stem), ("nass", f"nass_{stem}")):
        experiment = load_hparams(yaml_path(name), dict(sizes))["experiment"]
        counts[variant] = inference_parameter_count(experiment["separator"])
        if variant == "nass":
            training_only = inference_parameter_count(
                experiment["objectives"]["contrastive_loss"]
            )
    return counts["baseline"], counts["nass"], training_only


def train_and_test(backbone, variant, seed, setup, data_folder, prep_folder):
    """Train one YAML for the benchmark's steps and test it; a dict."""
    stem = BACKBONES[backbone][0]
    name = stem if variant == "baseline" else f"nass_{stem}"
    with tempfile.TemporaryDirectory(prefix="nass_bench_") as output_folder:
        overrides = {
            **BACKBONES[backbone][1],
            "seed": seed,
            "output_folder": output_folder,
            "data_folder": data_folder,
            "number_of_epochs": setup["epochs"],
            "batch_size": setup["batch_size"],
            "segment_seconds": setup["segment_seconds"],
            "lr": setup["lr"],
            "eval_max_seconds": setup["eval_max_seconds"],
            "num_workers": 0,
            "speed_perturb": False,
            "dynamic_mixing": False,
            "save_audio": False,
        }
        hparams = load_hparams(yaml_path(name), overrides)
        experiment = hparams["experiment"]
        manifests = prepare_wham(
            data_folder,
            prep_folder,
            sample_rate=hparams["sample_rate"],
            mode=hparams["mode"],
            mixture=hparams["mixture"],
        )
        datasets = separation_datasets(manifests, experiment, seed)
        brain = TimedSeparationBrain(
            modules=experiment["modules"],
            opt_class=experiment["training"]["opt_class"],
            hparams=experiment,
            run_opts={"device": "cpu", "precision": "fp32"},
        )
        start = time.perf_counter()
        brain.fit(
            experiment["training"]["epoch_counter"],
            datasets["train"],
            None,
            train_loader_kwargs={
                "batch_size": experiment["training"]["batch_size"],
                "shuffle": True,
                "num_workers": 0,
            },
            progressbar=False,
        )
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        brain.evaluate(
            datasets["test"],
            test_loader_kwargs={"batch_size": 1, "num_workers": 0},
            progressbar=False,
        )
        test_seconds = time.perf_counter() - start
        rows = brain.test_rows

    def mean_of(key):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        return statistics.fmean(values) if values else float("nan")

    steps = brain.step_seconds
    return {
        "backbone": backbone,
        "variant": variant,
        "seed": seed,
        "steps": len(steps),
        "step_seconds_median": statistics.median(steps[1:] or steps),
        "step_cpu_seconds_median": statistics.median(
            brain.step_cpu_seconds[1:] or brain.step_cpu_seconds
        ),
        "train_seconds": train_seconds,
        "test_seconds": test_seconds,
        "test_utterances": len(rows),
        "si-snr_i": mean_of("si-snr_i"),
        "sdr_i": mean_of("sdr_i"),
        "si-snr": mean_of("si-snr"),
        "noise_si-snr": mean_of("noise_si-snr"),
        "inference_parameters": inference_parameter_count(
            experiment["separator"]
        ),
    }


def _run_job(job):
    """Worker entry point: one ``train_and_test`` with its own threads."""
    threads = job.pop("threads")
    torch.set_num_threads(threads)
    _quiet_logs()
    return train_and_test(**job)


def _quiet_logs():
    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    logging.getLogger("lobes").setLevel(logging.WARNING)


def mean_std(values):
    """Mean and sample standard deviation (0 for a single value)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def summarize(runs, overheads):
    """Per-backbone summary rows from the individual runs."""
    summary = []
    for backbone in BACKBONES:
        mine = [r for r in runs if r["backbone"] == backbone]
        if not mine:
            continue
        row = {"backbone": backbone}
        for variant in ("baseline", "nass"):
            group = [r for r in mine if r["variant"] == variant]
            for key in ("si-snr_i", "sdr_i", "noise_si-snr"):
                row[f"{variant}_{key}"] = mean_std([r[key] for r in group])
        # Paired by seed: NASS minus baseline.
        by_seed = {}
        for r in mine:
            by_seed.setdefault(r["seed"], {})[r["variant"]] = r
        pairs = [p for p in by_seed.values() if len(p) == 2]
        for key in ("si-snr_i", "sdr_i"):
            row[f"delta_{key}"] = mean_std(
                [p["nass"][key] - p["baseline"][key] for p in pairs]
            )
        for clock in ("step_seconds", "step_cpu_seconds"):
            row[f"{clock}_ratio"] = mean_std(
                [
                    p["nass"][f"{clock}_median"]
                    / p["baseline"][f"{clock}_median"]
                    for p in pairs
                ]
            )
        row["steps"] = mine[0]["steps"]
        row.update(overheads[backbone])
        summary.append(row)
    return summary


def _fmt(pair, digits=2):
    mean, spread = pair
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def markdown_table(summary, num_seeds):
    """The summary as a markdown table."""
    lines = [
        f"Mean ± sample std over {num_seeds} seed(s); Δ = NASS − baseline, "
        "paired by seed. Noise SI-SNR: NASS's noise output vs. the "
        "baseline's residual mix − Σ speakers.",
        "",
        "| backbone | steps | SI-SNRi base | SI-SNRi NASS | Δ SI-SNRi "
        "| SDRi base | SDRi NASS | Δ SDRi | noise SI-SNR base | "
        "noise SI-SNR NASS | overhead (bench) | overhead (paper) | "
        "step time NASS/base (wall; CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['backbone']} | {row['steps']} "
            f"| {_fmt(row['baseline_si-snr_i'])} "
            f"| {_fmt(row['nass_si-snr_i'])} "
            f"| {_fmt(row['delta_si-snr_i'])} "
            f"| {_fmt(row['baseline_sdr_i'])} "
            f"| {_fmt(row['nass_sdr_i'])} "
            f"| {_fmt(row['delta_sdr_i'])} "
            f"| {_fmt(row['baseline_noise_si-snr'])} "
            f"| {_fmt(row['nass_noise_si-snr'])} "
            f"| {row['bench_overhead']:,} of {row['bench_baseline']:,} "
            f"| {row['paper_overhead']:,} of {row['paper_baseline']:,} "
            f"| {_fmt(row['step_seconds_ratio'])}; "
            f"{_fmt(row['step_cpu_seconds_ratio'])} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke run: tiny corpus, 2 short epochs, one seed",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(REPO, "benchmarks", "results",
                             "nass_vs_baseline.json"),
        help="JSON output file",
    )
    parser.add_argument(
        "--backbones", default=",".join(BACKBONES),
        help="comma-separated subset of " + ", ".join(BACKBONES),
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs trained in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per run")
    args = parser.parse_args(argv)

    setup = dict(QUICK if args.quick else FULL)
    if args.seeds:
        setup["seeds"] = args.seeds
    if args.epochs:
        setup["epochs"] = args.epochs
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        parser.error(f"unknown backbones {unknown}; choose from "
                     f"{', '.join(BACKBONES)}")
    torch.set_num_threads(args.threads)
    _quiet_logs()

    begin = time.perf_counter()
    data_folder = ensure_mini_corpus("wham", size=setup["corpus_size"])
    overheads = {}
    for backbone in backbones:
        bench = parameter_overhead(backbone, BACKBONES[backbone][1])
        paper = parameter_overhead(backbone, {})
        overheads[backbone] = {
            "bench_baseline": bench[0],
            "bench_overhead": bench[1] - bench[0],
            "bench_training_only": bench[2],
            "paper_baseline": paper[0],
            "paper_overhead": paper[1] - paper[0],
            "paper_training_only": paper[2],
        }
        print(f"[{backbone}] inference parameter overhead: "
              f"{overheads[backbone]['bench_overhead']:,} (benchmark size), "
              f"{overheads[backbone]['paper_overhead']:,} (paper size)",
              flush=True)

    runs = []
    with tempfile.TemporaryDirectory(prefix="nass_bench_prep_") as prep:
        prepare_wham(data_folder, prep)  # once, before any worker reads it
        # Baseline and NASS of one seed are neighbours in the queue, so
        # with two jobs they train side by side under the same load.
        jobs = [
            {
                "backbone": backbone,
                "variant": variant,
                "seed": seed,
                "setup": setup,
                "data_folder": data_folder,
                "prep_folder": prep,
                "threads": args.threads,
            }
            for backbone in backbones
            for seed in setup["seeds"]
            for variant in ("baseline", "nass")
        ]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=context
        ) as pool:
            futures = [pool.submit(_run_job, dict(job)) for job in jobs]
            for future in futures:
                run = future.result()
                runs.append(run)
                print(
                    f"[{run['backbone']} {run['variant']} seed "
                    f"{run['seed']}] SI-SNRi {run['si-snr_i']:.2f} dB, "
                    f"SDRi {run['sdr_i']:.2f} dB, noise SI-SNR "
                    f"{run['noise_si-snr']:.2f} dB, {run['steps']} steps, "
                    f"{run['step_seconds_median'] * 1000:.0f} ms/step, "
                    f"train {run['train_seconds']:.0f} s, test "
                    f"{run['test_seconds']:.0f} s "
                    f"({time.perf_counter() - begin:.0f} s so far)",
                    flush=True,
                )

    summary = summarize(runs, overheads)
    table = markdown_table(summary, len(setup["seeds"]))
    print()
    print(table)
    result = {
        "setup": {**setup, "backbones": backbones,
                  "sizes": {b: BACKBONES[b][1] for b in backbones},
                  "jobs": args.jobs, "threads": args.threads,
                  "torch": torch.__version__,
                  "machine": platform.platform(),
                  "total_seconds": time.perf_counter() - begin},
        "summary": summary,
        "runs": runs,
        "table": table,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump(result, fout, indent=2)
    print(f"\nWrote {args.out} ({time.perf_counter() - begin:.0f} s in all)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
