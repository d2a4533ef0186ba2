#!/usr/bin/env python3
"""Does contrastive regularization help? Baseline, CR and CCR on mini VoiceBank.

Every run is the VoiceBank recipe itself (``recipes/Voicebank/enhance/
train.py`` in a subprocess, one CPU thread) at a CPU size, on the
``small`` mini VoiceBank-DEMAND corpus, tested on its test split. For each
backbone (Conv-TasNet, spectral mask) and seed:

- ``backbone``: the waveform loss alone (``<backbone>.yaml``);
- ``cr``: + CR with the noisy input as negative (``cr_wavlm_<backbone>``);
- ``ccr_quality``: + curricular CR, negatives the noisy input and the
  same seed's backbone run, C2PNet's quality curriculum
  (``ccr_hubert_<backbone>``, the recipes' default);
- ``ccr_similarity``: the same with this package's similarity curriculum.

CR's feature space is ``--trained_ssl``, the small HuBERT that
``recipes/Voicebank/ssl_pretrain`` trains on the mini corpora's training
speech (no weights can be downloaded here), and for reference a tiny
*random* WavLM of the same depth (``--spaces trained,random``), in which CR
measures nothing about speech. The tables give per arm the mean over
seeds of PESQ (wide band), eSTOI, SI-SDR, CSIG, CBAK, COVL and DNSMOS, the
paired difference to the backbone of the same seed with a 95 % t-interval,
the worst seed's SI-SDR difference (a collapse shows there), the last
epoch's CR value and CR/waveform-loss gradient ratio, steps and wall time.

Writes JSON after every run (``--out``) and resumes from it::

    (cd recipes/Voicebank/ssl_pretrain && python train.py \\
        hparams/hubert_small.yaml --output_folder=/path/to/ssl_hubert_small)
    python -m benchmarks.cr_vs_baseline --trained_ssl /path/to/ssl_hubert_small
    python -m benchmarks.cr_vs_baseline --quick --trained_ssl ...  # smoke run

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import math
import os
import shutil
import sys
import time

from benchmarks.paired import (
    ResumableRuns,
    fmt,
    fmt_delta,
    last_epoch_stats,
    read_average,
    run_in_phases,
    run_recipe,
    summarize,
)
from benchmarks.provenance import file_sha256
from lobes.cpu_settings import (
    ENHANCEMENT,
    ENHANCEMENT_TRAINING,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECIPE = os.path.join(REPO, "recipes", "Voicebank", "enhance")

#: CPU sizes and learning rates of the backbones (lobes.cpu_settings; the
#: YAML defaults are the recipes' full sizes, the rates the recipes').
SIZES = {name: ENHANCEMENT[name] for name in ("convtasnet", "spectral_mask")}

#: Arms: name -> (YAML stem pattern, extra overrides).
ARMS = {
    "backbone": ("{backbone}", {}),
    "cr": ("cr_wavlm_{backbone}", {}),
    "ccr_quality": ("ccr_hubert_{backbone}", {"curriculum": "quality"}),
    "ccr_similarity": (
        "ccr_hubert_{backbone}", {"curriculum": "similarity"}
    ),
}

#: Arms run in each SSL space (the backbone needs none).
SPACE_ARMS = {
    "trained": ("cr", "ccr_quality", "ccr_similarity"),
    "random": ("cr",),
}

#: Test metrics (lobes.metrics), in table order.
TEST_METRICS = ["pesq", "estoi", "si_sdr", "csig", "cbak", "covl",
                "dnsmos_ovrl"]

FULL = {
    "corpus_size": "small",
    "epochs": ENHANCEMENT_TRAINING["number_of_epochs"],
    "batch_size": ENHANCEMENT_TRAINING["batch_size"],
    "segment_length": ENHANCEMENT_TRAINING["segment_length"],
    "seeds": [1, 2, 3],
}
QUICK = {
    "corpus_size": "tiny", "epochs": 1, "batch_size": 2,
    "segment_length": 1.0, "seeds": [1],
}


def job_id(job):
    """The key of one run in the JSON."""
    return (f"{job['space']}/{job['backbone']}/{job['arm']}/"
            f"seed{job['seed']}")


def run_folder(work, job):
    """Where a run writes (the backbone's is CCR's reference model)."""
    return os.path.join(work, job_id(job))


def recipe_overrides(setup, seed, out, quick):
    """The options every enhancement run of the benchmarks shares.

    Example
    -------
    >>> options = recipe_overrides(QUICK, 2, "/tmp/run", quick=True)
    >>> options["seed"], options["number_of_epochs"], options["test_metrics"]
    (2, 1, ['pesq', 'estoi', 'si_sdr'])
    """
    return {
        "seed": seed,
        "output_folder": out,
        "mini_corpus_size": setup["corpus_size"],
        "number_of_epochs": setup["epochs"],
        "batch_size": setup["batch_size"],
        "segment_length": setup["segment_length"],
        "num_workers": 0,
        "n_audio_to_save": 0,
        "valid_metrics": ["pesq", "si_sdr", "stoi"],
        "test_metrics": TEST_METRICS[:3] if quick else TEST_METRICS,
    }


#: CR's space in the benchmarks: the small HuBERT of
#: ``benchmarks/results/ssl_hubert_small.json`` (its weights' SHA-256 is
#: there), committed so that no run has to train it first.
TRAINED_SSL = os.path.join(REPO, "benchmarks", "models", "ssl_hubert_small")


def ssl_weights_sha256(folder):
    """SHA-256 of an SSL folder's ``model.safetensors`` (None without one).

    Example
    -------
    >>> import tempfile
    >>> ssl_weights_sha256(tempfile.mkdtemp()) is None
    True
    """
    path = os.path.join(folder, "model.safetensors")
    return file_sha256(path) if os.path.isfile(path) else None


def ssl_overrides(folder):
    """CR's space: a package-trained (4-layer) SSL folder, every layer."""
    return {"ssl_source": folder, "ssl_layer_groups": [[1], [2], [3], [4]]}


def run_arm(job, setup, work, ssl_folders, threads, quick):
    """Train and test one arm with the recipe; return its measurements.

    ``setup["cr_weight"]``, when not None, replaces the recipes' CR weight.
    """
    stem, extra = ARMS[job["arm"]]
    stem = stem.format(backbone=job["backbone"])
    out = run_folder(work, job)
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        **SIZES[job["backbone"]],
        **extra,
        **recipe_overrides(setup, job["seed"], out, quick),
    }
    if job["arm"] != "backbone":
        overrides.update(ssl_overrides(ssl_folders[job["space"]]))
        if setup.get("cr_weight") is not None:
            overrides["cr_weight"] = setup["cr_weight"]
    if job["arm"].startswith("ccr"):
        overrides["reference_model"] = run_folder(
            work, {**job, "space": "none", "arm": "backbone"}
        )
    wall = run_recipe(RECIPE, f"{stem}.yaml", overrides, threads)
    average, utterances = read_average(
        os.path.join(out, "test_results.csv")
    )
    train = last_epoch_stats(os.path.join(out, "train_log.txt"))
    return {
        "id": job_id(job), **job, "yaml": f"{stem}.yaml",
        "overrides": overrides,
        **{m: average.get(m, math.nan) for m in TEST_METRICS},
        "cr": train.get("cr", math.nan),
        "cr_grad_ratio": train.get("cr_grad_ratio", math.nan),
        "waveform_loss": train.get("waveform_loss", train.get("loss")),
        "epochs": train.get("epoch"), "wall_seconds": wall,
        "test_utterances": utterances,
    }


#: What the table averages and compares.
METRICS = (*TEST_METRICS, "cr", "cr_grad_ratio", "wall_seconds")


def summarize_runs(runs):
    """Per space, backbone and arm: means, paired differences to the
    backbone of the same seed, and the worst seed's SI-SDR difference."""
    rows = summarize(
        runs, ("space", "backbone"), METRICS,
        lambda run: {"space": "none", "backbone": run["backbone"],
                     "arm": "backbone"},
    )
    base = {(r["backbone"], r["seed"]): r for r in runs
            if r["arm"] == "backbone"}
    for row in rows:
        diffs = [
            r["si_sdr"] - base[(r["backbone"], r["seed"])]["si_sdr"]
            for r in runs
            if (r["space"], r["backbone"], r["arm"])
            == (row["space"], row["backbone"], row["arm"])
            and (r["backbone"], r["seed"]) in base
        ]
        row["worst_delta_si_sdr"] = (
            min(diffs) if diffs and row["arm"] != "backbone" else math.nan
        )
    return rows


def markdown_table(summary):
    """The summary as a markdown table."""
    lines = [
        "| space | backbone | arm | seeds | PESQ | Δ PESQ [95 % CI] | eSTOI "
        "| Δ eSTOI [95 % CI] | SI-SDR | Δ SI-SDR [95 % CI] | worst seed Δ "
        "SI-SDR | CSIG | CBAK | COVL | DNSMOS | CR | CR/main gradient "
        "| wall min |",
        "|---|---|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|---:|"
        "---:|---:|---:|---:|",
    ]
    for row in summary:
        def delta(key, digits=2, row=row):
            if row["arm"] == "backbone":
                return "—"
            return fmt_delta(row[f"delta_{key}"], row[f"delta_{key}_ci95"],
                             digits)

        lines.append(
            f"| {row['space']} | {row['backbone']} | {row['arm']} "
            f"| {len(row['seeds'])} | {fmt(row['pesq'])} | {delta('pesq')} "
            f"| {fmt(row['estoi'], 3)} | {delta('estoi', 3)} "
            f"| {fmt(row['si_sdr'])} | {delta('si_sdr')} "
            f"| {fmt(row['worst_delta_si_sdr'], sign=True)} "
            f"| {fmt(row['csig'])} | {fmt(row['cbak'])} | {fmt(row['covl'])}"
            f" | {fmt(row['dnsmos_ovrl'])} | {fmt(row['cr'], 3)} "
            f"| {fmt(row['cr_grad_ratio'], 3)} "
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
    parser.add_argument("--spaces", default="trained,random",
                        help="comma-separated subset of trained, random")
    parser.add_argument("--backbones", default=",".join(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--arms", default=None,
                        help="comma-separated CR arms to run (default: "
                        "every arm of each space)")
    parser.add_argument("--cr_weight", type=float, default=None,
                        help="CR's weight in every CR arm (default: the "
                        "recipes')")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs trained side by side (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run")
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "cr_vs_baseline.json"),
        help="JSON output (resumed from when it exists)",
    )
    args = parser.parse_args(argv)
    setup = dict(QUICK if args.quick else FULL)
    if args.seeds:
        setup["seeds"] = args.seeds
    if args.epochs:
        setup["epochs"] = args.epochs
    if args.cr_weight is not None:
        setup["cr_weight"] = args.cr_weight
    spaces = [s for s in args.spaces.split(",") if s]
    backbones = [b for b in args.backbones.split(",") if b]
    arms = args.arms.split(",") if args.arms else list(ARMS)
    if (set(spaces) - set(SPACE_ARMS) or set(backbones) - set(SIZES)
            or set(arms) - set(ARMS)):
        parser.error(f"spaces among {list(SPACE_ARMS)}, backbones among "
                     f"{list(SIZES)}, arms among {list(ARMS)}")
    if not os.path.isfile(os.path.join(args.trained_ssl, "config.json")):
        parser.error(f"{args.trained_ssl}: no trained SSL model; make one "
                     "with recipes/Voicebank/ssl_pretrain/train.py")

    from lobes.ssl_features import save_tiny_ssl_model

    begin = time.perf_counter()
    work = os.path.splitext(args.out)[0] + "_runs"
    ssl_folders = {
        "trained": os.path.abspath(args.trained_ssl),
        "random": save_tiny_ssl_model(
            "wavlm", os.path.join(work, "tiny_random_wavlm")
        ),
    }
    runs = ResumableRuns(args.out, {
        "training": setup, "sizes": SIZES, "threads": args.threads,
        "trained_ssl": ssl_folders["trained"],
    })
    done = runs.done()
    # The backbones first (CCR's reference models), then arm by arm, every
    # seed of an arm before the next arm (a stopped run leaves whole arms)
    phases = [
        [{"space": "none", "backbone": backbone, "arm": "backbone",
          "seed": seed}
         for backbone in backbones for seed in setup["seeds"]],
        [{"space": space, "backbone": backbone, "arm": arm, "seed": seed}
         for backbone in backbones for space in spaces
         for arm in SPACE_ARMS[space] for seed in setup["seeds"]
         if arm in arms],
    ]
    phases = [[j for j in phase if job_id(j) not in done] for phase in phases]
    print(f"{len(done)} runs done, {sum(map(len, phases))} to go",
          flush=True)

    def finished(job, run):
        summary = summarize_runs(runs.runs + [run])
        runs.add(run, summary=summary, table=markdown_table(summary))
        print(f"[{run['id']}] PESQ {run['pesq']:.2f}, SI-SDR "
              f"{run['si_sdr']:.2f} dB, CR {run['cr']:.3f}, "
              f"{run['wall_seconds'] / 60:.1f} min "
              f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
              flush=True)

    run_in_phases(
        phases,
        lambda job: run_arm(job, setup, work, ssl_folders, args.threads,
                            args.quick),
        args.jobs, finished,
    )
    print()
    print(runs.data.get("table", ""))
    print(f"\nWrote {args.out}")
    return runs.data


if __name__ == "__main__":
    main(sys.argv[1:])
