"""What the small HuBERT of ``recipes/Voicebank/ssl_pretrain`` learned.

The offline SSL space of the CR recipes is a small HuBERT pre-trained here
(``recipes/Voicebank/ssl_pretrain``, deterministic on CPU: one command
recreates the same weights). This script reads a finished run of that
recipe (its ``pretrain_log.json`` and weights), runs the word probe and the
noise-invariance measure on it (``python -m lobes.ssl.probe``, about 150 s
on one thread) unless ``--probe_json`` gives the probe's own output, and
writes one results file with its provenance; ``python -m
benchmarks.report`` renders the enhance README's tables from it::

    (cd recipes/Voicebank/ssl_pretrain && python train.py \\
        hparams/hubert_small.yaml --output_folder=<folder>)
    python -m benchmarks.ssl_space --run <folder>

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import provenance
from benchmarks.paired import fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE_COMMAND = (
    "cd recipes/Voicebank/ssl_pretrain && python train.py "
    "hparams/hubert_small.yaml --output_folder=<folder>"
)
#: Probe settings that name paths of the machine that ran it.
LOCAL_KEYS = ("data_folder", "folders", "output_folder", "save_folder",
              "train_log")


def _portable(mapping):
    """``mapping`` without the keys that name local paths."""
    return {k: v for k, v in mapping.items() if k not in LOCAL_KEYS}


def summarize_pretraining(log):
    """The pre-training facts a table needs, from ``pretrain_log.json``.

    Example
    -------
    >>> log = {"config": {"steps": 2, "seed": 0, "output_folder": "/x"},
    ...        "train_seconds": 10.0, "cpu_seconds": 5.0, "parameters": 7,
    ...        "target_features": "MFCC-39", "holdout": [
    ...            {"steps": 1, "masked_acc_clean": 0.1,
    ...             "masked_acc_noisy": 0.1, "majority_acc": 0.05},
    ...            {"steps": 2, "masked_acc_clean": 0.2,
    ...             "masked_acc_noisy": 0.15, "majority_acc": 0.05}]}
    >>> s = summarize_pretraining(log)
    >>> s["final"]["masked_acc_clean"], s["peak_masked_acc_clean"]
    (0.2, 0.2)
    >>> "output_folder" in s["config"]
    False
    """
    holdout = log["holdout"]
    return {
        "config": _portable(log["config"]),
        "steps": holdout[-1]["steps"],
        "train_seconds": log["train_seconds"],
        "cpu_seconds": log["cpu_seconds"],
        "parameters": log["parameters"],
        "target_features": log["target_features"],
        "final": holdout[-1],
        "peak_masked_acc_clean": max(h["masked_acc_clean"] for h in holdout),
        "holdout": holdout,
    }


def pretrain_table(results):
    """README table: steps, times and held-out masked accuracy.

    Example
    -------
    >>> row = {"steps": 1600, "train_seconds": 1537.1, "cpu_seconds": 826.4,
    ...        "target_features": "MFCC-39", "final": {
    ...            "masked_acc_clean": 0.0727, "masked_acc_noisy": 0.0674,
    ...            "majority_acc": 0.0427}}
    >>> print(pretrain_table({"model": {"name": "m"}, "pretraining": row}))
    ... # doctest: +NORMALIZE_WHITESPACE
    | model | targets | steps | training wall time | training CPU time | held-out masked accuracy, clean / noisy input (majority class) |
    |---|---|---:|---:|---:|---:|
    | `m` | MFCC-39 | 1,600 | 1,537 s | 826 s | 0.073 / 0.067 (0.043) |
    """  # noqa: E501
    p = results["pretraining"]
    final = p["final"]
    return "\n".join([
        "| model | targets | steps | training wall time | training CPU "
        "time | held-out masked accuracy, clean / noisy input (majority "
        "class) |",
        "|---|---|---:|---:|---:|---:|",
        f"| `{results['model']['name']}` | {p['target_features']} "
        f"| {p['steps']:,} | {p['train_seconds']:,.0f} s "
        f"| {p['cpu_seconds']:,.0f} s | {final['masked_acc_clean']:.3f} / "
        f"{final['masked_acc_noisy']:.3f} ({final['majority_acc']:.3f}) |",
    ])


def probe_table(results):
    """README table: word probes and noise invariance, per model and layer.

    Example
    -------
    >>> rows = [{"model": "MFCC-39", "layer": "-", "probe_lr": 0.76,
    ...          "probe_1nn": 0.65, "probe_lr_noisy": 0.18,
    ...          "invariance": 0.501}]
    >>> rows += [{"model": "m", "layer": f"L{i}", "probe_lr": 0.5,
    ...           "probe_1nn": 0.4, "probe_lr_noisy": 0.3,
    ...           "invariance": 0.4} for i in range(2)]
    >>> print(probe_table({"model": {"name": "m"}, "probe": {"rows": rows}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    | features | layer | probe LR | probe 1-NN | probe LR, noisy test | noise invariance (lower is better) |
    |---|---|---:|---:|---:|---:|
    | MFCC-39 | - | 0.76 | 0.65 | 0.18 | 0.501 |
    | `m` | L0 / L1 | 0.50 / 0.50 | 0.40 / 0.40 | 0.30 / 0.30 | 0.400 / 0.400 |
    """  # noqa: E501
    groups = {}
    for row in results["probe"]["rows"]:
        groups.setdefault(row["model"], []).append(row)
    lines = [
        "| features | layer | probe LR | probe 1-NN | probe LR, noisy test "
        "| noise invariance (lower is better) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, rows in groups.items():
        name = f"`{model}`" if model == results["model"]["name"] else model
        cells = [" / ".join(r["layer"] for r in rows)]
        for key, digits in (("probe_lr", 2), ("probe_1nn", 2),
                            ("probe_lr_noisy", 2), ("invariance", 3)):
            cells.append(" / ".join(fmt(r[key], digits) for r in rows))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_probe(folder, threads):
    """``python -m lobes.ssl.probe`` on ``folder``; its JSON."""
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "probe.json")
        subprocess.run(
            [sys.executable, "-m", "lobes.ssl.probe", folder, "--threads",
             str(threads), "--json", out],
            cwd=REPO, check=True,
        )
        with open(out, encoding="utf-8") as fin:
            return json.load(fin)


def main(argv=None):
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True,
                        help="output folder of recipes/Voicebank/ssl_pretrain")
    parser.add_argument("--probe_json", default=None,
                        help="the probe's --json output for this run (else "
                        "the probe runs here)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "ssl_hubert_small.json"),
    )
    args = parser.parse_args(argv)
    run = provenance.start(
        None if argv is None else [__file__, *argv],
        placeholders={args.run: "<run folder>",
                      args.probe_json: "<probe JSON of that run>"},
        threads=args.threads, recipe_command=RECIPE_COMMAND,
    )
    folder = os.path.abspath(args.run)
    with open(os.path.join(folder, "pretrain_log.json"),
              encoding="utf-8") as fin:
        log = json.load(fin)
    if args.probe_json:
        with open(args.probe_json, encoding="utf-8") as fin:
            probe = json.load(fin)
    else:
        probe = run_probe(folder, args.threads)
    name = "ssl_hubert_small"
    local = {os.path.basename(f.rstrip("/"))
             for f in probe["setup"].get("folders", [folder])}
    for row in probe["rows"]:  # the run's folder name -> the model's name
        if row["model"] in local:
            row["model"] = name
    setup = _portable(probe["setup"])
    setup.pop("pretraining", None)  # the run's own log is kept below
    results = {
        "model": {
            "name": name,
            "weights_sha256": provenance.file_sha256(
                os.path.join(folder, "model.safetensors")),
            "machine": log.get("machine"),
        },
        "pretraining": summarize_pretraining(log),
        "probe": {"setup": setup, "rows": probe["rows"]},
    }
    results["provenance"] = provenance.finish(run)
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump(results, fout, indent=1)
    print(pretrain_table(results))
    print()
    print(probe_table(results))
    return results


if __name__ == "__main__":
    main()
