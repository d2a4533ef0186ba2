#!/usr/bin/env python3
"""What each part of CMCR-Net is worth on mini VoiceBank: CR, the two
attentions of the collaboration module, and the branch pull.

Every run is the VoiceBank recipe itself (``recipes/Voicebank/enhance/
train.py`` in a subprocess, one CPU thread) at a CPU size of CMCR-Net, on
the ``small`` mini VoiceBank-DEMAND corpus, tested on its test split:

- ``cmcr_cr``: CMCR-Net trained with CR (``cmcr_net.yaml``), the full model;
- ``no_cr``: without CR (``cmcr_net_nocr.yaml``);
- ``no_contrastive_attention``, ``no_interactive_attention``,
  ``no_branch_pull``: the full model less one part.

CR's feature space is ``--trained_ssl`` (``recipes/Voicebank/ssl_pretrain``).
Each arm is compared seed by seed with the full model: the mean paired
difference with a 95 % t-interval (what removing the part changes). Also
per arm: parameters at inference, PESQ, eSTOI, SI-SDR, CSIG/CBAK/COVL,
DNSMOS, wall time. Writes JSON after every run and resumes from it::

    python -m benchmarks.cmcr_ablation --trained_ssl /path/to/ssl_hubert_small

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import math
import os
import shutil
import sys
import time

from benchmarks.cr_vs_baseline import (
    TEST_METRICS,
    recipe_overrides,
    ssl_overrides,
)
from benchmarks.paired import (
    ResumableRuns,
    effective_hparam,
    fmt,
    fmt_delta,
    read_average,
    run_in_phases,
    run_recipe,
    summarize,
)
from lobes.cpu_settings import (
    ENHANCEMENT,
    ENHANCEMENT_TRAINING,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE = os.path.join(REPO, "recipes", "Voicebank", "enhance")

#: CMCR-Net at a CPU size (lobes.cpu_settings; the fragment's defaults are
#: the paper-ish 9.6M-parameter network) and the authors' learning rate.
SIZE = ENHANCEMENT["cmcr_net"]

#: Arms: name -> (recipe YAML, extra overrides).
ARMS = {
    "cmcr_cr": ("cmcr_net.yaml", {}),
    "no_cr": ("cmcr_net_nocr.yaml", {}),
    "no_contrastive_attention": (
        "cmcr_net.yaml", {"contrastive_attention": False}
    ),
    "no_interactive_attention": (
        "cmcr_net.yaml", {"interactive_attention": False}
    ),
    "no_branch_pull": ("cmcr_net.yaml", {"branch_pull_weight": 0.0}),
}


FULL = {"corpus_size": "small",
        "epochs": ENHANCEMENT_TRAINING["number_of_epochs"],
        "batch_size": ENHANCEMENT_TRAINING["batch_size"],
        "segment_length": ENHANCEMENT_TRAINING["segment_length"],
        "seeds": [1, 2, 3]}
QUICK = {"corpus_size": "tiny", "epochs": 1, "batch_size": 2,
         "segment_length": 1.0, "seeds": [1]}


def job_id(job):
    """The key of one run in the JSON."""
    return f"{job['arm']}/seed{job['seed']}"


def parameters(arm):
    """Inference parameters of an arm's network at the benchmark size.

    CR and the branch pull are training objectives: the network is the
    one of ``cmcr_net_nocr.yaml`` with the arm's structural switches.
    """
    import torch

    from lobes.overrides import load_hparams

    _, extra = ARMS[arm]
    overrides = {k: v for k, v in {**SIZE, **extra}.items()
                 if k not in ("lr", "branch_pull_weight")}
    path = os.path.join(RECIPE, "hparams", "cmcr_net_nocr.yaml")
    with torch.random.fork_rng(devices=[]):
        experiment = load_hparams(path, overrides)
    return sum(p.numel() for p in experiment["enhance_model"].parameters())


def run_arm(job, setup, work, ssl_folder, threads, quick):
    """Train and test one arm with the recipe; return its measurements."""
    yaml, extra = ARMS[job["arm"]]
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        **SIZE, **extra,
        **recipe_overrides(setup, job["seed"], out, quick),
    }
    if yaml == "cmcr_net.yaml":
        overrides.update(ssl_overrides(ssl_folder))
        if setup.get("cr_weight") is not None:
            overrides["cr_weight"] = setup["cr_weight"]
    wall = run_recipe(RECIPE, yaml, overrides, threads)
    average, utterances = read_average(
        os.path.join(out, "test_results.csv")
    )
    return {
        "id": job_id(job), **job, "yaml": yaml, "overrides": overrides,
        **{m: average.get(m, math.nan) for m in TEST_METRICS},
        "cr_weight": effective_hparam(out, "cr_weight"),
        "parameters": parameters(job["arm"]), "wall_seconds": wall,
        "test_utterances": utterances,
    }


def summarize_runs(runs):
    """Per arm: means, and paired differences to the full model."""
    for run in runs:
        run.setdefault("model", "cmcr_net")
    return summarize(
        runs, ("model",), (*TEST_METRICS, "parameters", "wall_seconds"),
        lambda run: {"model": "cmcr_net", "arm": "cmcr_cr"},
    )


def markdown_table(summary):
    """The summary as a markdown table."""
    lines = [
        "| arm | seeds | parameters | PESQ | Δ PESQ [95 % CI] | eSTOI "
        "| SI-SDR | Δ SI-SDR [95 % CI] | CSIG | CBAK | COVL | DNSMOS "
        "| wall min |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        full = row["arm"] == "cmcr_cr"
        deltas = [
            "—" if full else fmt_delta(
                row[f"delta_{key}"], row[f"delta_{key}_ci95"]
            )
            for key in ("pesq", "si_sdr")
        ]
        lines.append(
            f"| {row['arm']} | {len(row['seeds'])} "
            f"| {row['parameters']:,.0f} | {fmt(row['pesq'])} | {deltas[0]}"
            f" | {fmt(row['estoi'], 3)} | {fmt(row['si_sdr'])} "
            f"| {deltas[1]} | {fmt(row['csig'])} | {fmt(row['cbak'])} "
            f"| {fmt(row['covl'])} | {fmt(row['dnsmos_ovrl'])} "
            f"| {row['wall_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpus, one epoch, one seed")
    parser.add_argument("--trained_ssl", required=True,
                        help="folder of recipes/Voicebank/ssl_pretrain")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--cr_weight", type=float, default=None,
                        help="CR's weight in every arm with CR (default: "
                        "the recipe's; each run records the weight it used)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "cmcr_ablation.json"),
    )
    args = parser.parse_args(argv)
    setup = dict(QUICK if args.quick else FULL)
    if args.seeds:
        setup["seeds"] = args.seeds
    if args.epochs:
        setup["epochs"] = args.epochs
    if args.cr_weight is not None:
        setup["cr_weight"] = args.cr_weight
    arms = [a for a in args.arms.split(",") if a]
    if set(arms) - set(ARMS):
        parser.error(f"arms among {list(ARMS)}")
    if not os.path.isfile(os.path.join(args.trained_ssl, "config.json")):
        parser.error(f"{args.trained_ssl}: no trained SSL model; make one "
                     "with recipes/Voicebank/ssl_pretrain/train.py")
    begin = time.perf_counter()
    work = os.path.splitext(args.out)[0] + "_runs"
    runs = ResumableRuns(args.out, {
        "training": setup, "size": SIZE, "threads": args.threads,
        "trained_ssl": os.path.abspath(args.trained_ssl),
    })
    done = runs.done()
    jobs = [{"arm": arm, "seed": seed} for seed in setup["seeds"]
            for arm in arms if job_id({"arm": arm, "seed": seed}) not in done]
    print(f"{len(done)} runs done, {len(jobs)} to go", flush=True)

    def finished(job, run):
        weights = {r.get("cr_weight") for r in runs.runs + [run]
                   if r["arm"] != "no_cr"} - {None}
        if len(weights) > 1:
            raise SystemExit(
                f"error: {args.out} would mix runs at CR weights "
                f"{sorted(weights)}; pass --cr_weight or another --out"
            )
        summary = summarize_runs(runs.runs + [run])
        runs.add(run, summary=summary, table=markdown_table(summary))
        print(f"[{run['id']}] PESQ {run['pesq']:.2f}, SI-SDR "
              f"{run['si_sdr']:.2f} dB, {run['wall_seconds'] / 60:.1f} min "
              f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
              flush=True)

    run_in_phases(
        [jobs],
        lambda job: run_arm(job, setup, work,
                            os.path.abspath(args.trained_ssl), args.threads,
                            args.quick),
        args.jobs, finished,
    )
    print()
    print(runs.data.get("table", ""))
    print(f"\nWrote {args.out}")
    return runs.data


if __name__ == "__main__":
    main(sys.argv[1:])
