#!/usr/bin/env python3
"""What each part of NASS is worth: a four-arm comparison on mini WHAM!.

Every run is the WHAM! recipe itself (``recipes/WHAM/separation/train.py``
in a subprocess, one CPU thread) at a CPU size, on the ``small`` mini WHAM!
corpus, tested on its test split. Parts:

- ``sepformer``: the SepFormer backbone (``sepformer.yaml``); the backbone
  with a noise output and ``nce_weight: 0`` (``nass_sepformer.yaml``,
  PIT over N + 1 only); NASS with the authors' ``value`` patches; NASS
  with ``vector`` patches (the recipes' default);
- ``dprnn``: the DPRNN backbone against NASS-vector;
- ``fixed_slot``: NASS-vector with ``noise_slot: fixed`` (the noise is the
  last output, PIT over the speakers only), against the SepFormer backbone;
- ``low_snr``: the SepFormer backbone against NASS-vector on a copy of the
  corpus whose noise is ``--low_snr_gain_db`` louder (WHAM!'s levels are
  -6 to +3 dB SNR; the copy's -12 to -3 dB).

Every arm of a backbone runs with the same seeds, so each seed gives a
paired difference to the backbone (same initialisation of the shared
layers, same data order); the table reports per arm the mean over seeds
and the mean paired difference with a 95 % t-interval. SI-SNRi and SDRi
drop the output that inference takes as the noise; ``(oracle)`` drops the
one PIT matched to the true noise. The last epoch's NCE loss is given
beside its chance level ln K, with the ratio of the gradient norms that
NCE and PIT send to the masked features.

Writes JSON after every run (``--out``) and resumes from it: an
interrupted benchmark continues where it stopped. Prints a markdown
table::

    python -m benchmarks.nass_vs_baseline                 # about 2 h, 2 cores
    python -m benchmarks.nass_vs_baseline --parts sepformer --seeds 1
    python -m benchmarks.nass_vs_baseline --quick         # smoke run, tiny

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import math
import os
import re
import shutil
import sys
import time

from benchmarks.paired import (
    ResumableRuns,
    fmt,
    fmt_delta,
    read_average,
    run_in_phases,
    run_recipe,
    summarize,
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

#: Arms: name -> (YAML stem pattern, extra overrides).
ARMS = {
    "backbone": ("{backbone}", {}),
    "noise_output": ("nass_{backbone}", {"nce_weight": 0.0}),
    "nass_value": ("nass_{backbone}", {"nce_patch": "value"}),
    "nass_vector": ("nass_{backbone}", {"nce_patch": "vector"}),
    "nass_vector_fixed": (
        "nass_{backbone}", {"nce_patch": "vector", "noise_slot": "fixed"}
    ),
}

#: Parts: name -> (condition, backbone, arms).
PARTS = {
    "sepformer": (
        "wham", "sepformer",
        ["backbone", "noise_output", "nass_value", "nass_vector"],
    ),
    "dprnn": ("wham", "dprnn", ["backbone", "nass_vector"]),
    "fixed_slot": ("wham", "sepformer", ["backbone", "nass_vector_fixed"]),
    "low_snr": ("low_snr", "sepformer", ["backbone", "nass_vector"]),
}

#: The training of every run.
FULL = {
    "corpus_size": "small",
    "epochs": SEPARATION_TRAINING["number_of_epochs"],
    "batch_size": SEPARATION_TRAINING["batch_size"],
    "segment_seconds": SEPARATION_TRAINING["segment_seconds"],
    "seeds": [1, 2, 3],
}
QUICK = {
    "corpus_size": "tiny", "epochs": 1, "batch_size": 4,
    "segment_seconds": 0.5, "seeds": [1],
}

#: Test-set columns kept from each run (the ``avg`` row).
RESULT_KEYS = ("si-snr_i", "sdr_i", "noise_si-snr", "si-snr_i_oracle",
               "sdr_i_oracle", "noise_si-snr_oracle")


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


def job_id(job):
    """The key of one run in the JSON."""
    return (f"{job['condition']}/{job['backbone']}/{job['arm']}/"
            f"seed{job['seed']}")


def run_arm(job, setup, work, data_folders, threads):
    """Train and test one arm with the recipe; return its measurements."""
    stem, extra = ARMS[job["arm"]]
    stem = stem.format(backbone=job["backbone"])
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        **SIZES[job["backbone"]],
        **(NCE_SIZE if stem.startswith("nass") else {}),
        **extra,
        "seed": job["seed"],
        "output_folder": out,
        "data_folder": data_folders[job["condition"]],
        "number_of_epochs": setup["epochs"],
        "batch_size": setup["batch_size"],
        "segment_seconds": setup["segment_seconds"],
        "speed_perturb": False,
        "num_workers": 0,
        "save_audio": False,
    }
    wall = run_recipe(RECIPE, f"{stem}.yaml", overrides, threads)
    average, utterances = read_average(
        os.path.join(out, "test_results.csv")
    )
    results = {key: average.get(key, math.nan) for key in RESULT_KEYS}
    if job["arm"] == "backbone":  # no noise output: nothing to choose
        for key in ("si-snr_i", "sdr_i", "noise_si-snr"):
            results[f"{key}_oracle"] = results[key]
    train = last_epoch_stats(os.path.join(out, "train_log.txt"))
    with open(os.path.join(out, "save", "wham_train.csv"),
              encoding="utf-8") as fin:
        mixtures = sum(1 for _ in fin) - 1
    steps = setup["epochs"] * math.ceil(mixtures / setup["batch_size"])
    return {
        "id": job_id(job), **job, "yaml": f"{stem}.yaml",
        "overrides": overrides, **results,
        "nce": train.get("nce", math.nan),
        "nce_chance": train.get("nce_chance", math.nan),
        "nce_grad_ratio": train.get("nce_grad_ratio", math.nan),
        "train_loss": train.get("loss", math.nan),
        "epochs": train.get("epoch"), "steps": steps,
        "wall_seconds": wall, "test_utterances": utterances,
    }


#: What the table averages and compares.
METRICS = (*RESULT_KEYS, "nce", "nce_chance", "nce_grad_ratio",
           "wall_seconds", "steps")


def summarize_runs(runs):
    """Per condition, backbone and arm: means, and paired differences to
    the backbone of the same condition and seed."""
    return summarize(
        runs, ("condition", "backbone"), METRICS,
        lambda run: {"condition": run["condition"],
                     "backbone": run["backbone"], "arm": "backbone"},
    )


def markdown_table(summary):
    """The summary as a markdown table."""
    lines = [
        "| condition | backbone | arm | seeds | SI-SNRi | Δ SI-SNRi [95 % CI]"
        " | SDRi | Δ SDRi [95 % CI] | SI-SNRi (oracle) | noise SI-SNR "
        "| NCE (ln K) | NCE/PIT gradient | steps | wall min |",
        "|---|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        baseline = row["arm"] == "backbone"
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


def parameter_overheads():
    """NASS's inference parameters over its backbone's, bench and paper size."""
    import torch

    from lobes.models.noise_aware import inference_parameter_count
    from lobes.recipe import load_hparams

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


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpus, one epoch, one seed")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated subset of " + ", ".join(PARTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs trained side by side (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run")
    parser.add_argument("--low_snr_gain_db", type=float, default=6.0)
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "nass_vs_baseline.json"),
        help="JSON output (resumed from when it exists)",
    )
    args = parser.parse_args(argv)
    setup = dict(QUICK if args.quick else FULL)
    if args.seeds:
        setup["seeds"] = args.seeds
    if args.epochs:
        setup["epochs"] = args.epochs
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {list(PARTS)}")

    from lobes.data.mini_corpora import ensure_mini_corpus

    begin = time.perf_counter()
    work = os.path.splitext(args.out)[0] + "_runs"
    wham = ensure_mini_corpus("wham", size=setup["corpus_size"])
    data_folders = {"wham": wham}
    if "low_snr" in parts:
        data_folders["low_snr"] = louder_noise_corpus(
            wham, f"{wham}_noise{args.low_snr_gain_db:+g}dB",
            args.low_snr_gain_db,
        )
    runs = ResumableRuns(args.out, {
        "training": setup, "sizes": SIZES, "nce_size": NCE_SIZE,
        "threads": args.threads, "low_snr_gain_db": args.low_snr_gain_db,
    })
    if "parameters" not in runs.data:
        runs.save(parameters=parameter_overheads())
    jobs, seen = [], runs.done()
    for seed in setup["seeds"]:  # a seed's arms side by side
        for part in parts:
            condition, backbone, arms = PARTS[part]
            for arm in arms:
                job = {"condition": condition, "backbone": backbone,
                       "arm": arm, "seed": seed}
                if job_id(job) not in seen:
                    seen.add(job_id(job))
                    jobs.append(job)
    print(f"{len(runs.done())} runs done, {len(jobs)} to go", flush=True)

    def finished(job, run):
        summary = summarize_runs(runs.runs + [run])
        runs.add(run, summary=summary, table=markdown_table(summary))
        print(f"[{run['id']}] SI-SNRi {run['si-snr_i']:.2f} dB "
              f"(oracle {run['si-snr_i_oracle']:.2f}), NCE "
              f"{run['nce']:.2f}/{run['nce_chance']:.2f}, "
              f"{run['wall_seconds'] / 60:.1f} min "
              f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
              flush=True)

    run_in_phases(
        [jobs],
        lambda job: run_arm(job, setup, work, data_folders, args.threads),
        args.jobs, finished,
    )
    print()
    print(runs.data.get("table", ""))
    print(f"\nWrote {args.out}")
    return runs.data


if __name__ == "__main__":
    main(sys.argv[1:])
