#!/usr/bin/env python3
"""Why does CR move SI-SDR? Trained enhancers measured in CR's own space.

For trained enhancement runs (typically the backbone and the CR arms of
``benchmarks/cr_vs_baseline.py``, same seeds), enhance every test
utterance of the run's test manifest and measure, per utterance:

- SI-SDR of the output against the clean speech;
- in the frozen SSL space CR used (``--ssl``, its layer groups), per layer
  the mean squared distance of the output's features to the clean
  speech's (CR's numerator) and to the noisy input's (its denominator),
  and their ratio.

If CR's runs end nearer the clean speech in that space than the backbone's
while their SI-SDR is lower, the regulariser does what it is asked and the
space rewards something SI-SDR does not; if they are not nearer, CR did
not reach its own objective. Prints a table per arm (means over seeds of
per-run means) with paired differences to the backbone, and writes JSON::

    python -m benchmarks.cr_diagnosis \\
        --runs /path/cr_vs_baseline_runs/none/spectral_mask/backbone \\
               /path/cr_vs_baseline_runs/trained/spectral_mask/cr \\
        --ssl /path/to/ssl_hubert_small --seeds 1 2 3

Each ``--runs`` folder holds ``seed<N>`` run folders; the first is the
reference arm.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import json
import math
import os
import sys

import torch

from benchmarks.paired import fmt, fmt_delta, paired_interval

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def feature_distances(ssl, output, clean, noisy):
    """Per layer: MSE of the output's features to the clean and to the
    noisy speech's, in the frozen space ``ssl``.

    Example
    -------
    >>> space = lambda wav: [wav.unsqueeze(-1), 2 * wav.unsqueeze(-1)]
    >>> clean = torch.ones(1, 4)
    >>> feature_distances(space, clean, clean, torch.zeros(1, 4))
    ([0.0, 0.0], [1.0, 4.0])
    """
    with torch.no_grad():
        out_f, clean_f, noisy_f = (ssl(x) for x in (output, clean, noisy))
    to_clean = [float(((o - c) ** 2).mean()) for o, c in zip(out_f, clean_f)]
    to_noisy = [float(((o - n) ** 2).mean()) for o, n in zip(out_f, noisy_f)]
    return to_clean, to_noisy


def measure_run(folder, ssl, max_utterances=None):
    """Means over the run's test utterances (see the module docstring)."""
    from lobes.data.audio import read_audio
    from lobes.losses.waveform import si_snr
    from lobes.runs import load_trained_run

    run = load_trained_run(folder, ["enhance_model"], kind="enhancement")
    model = run.modules["enhance_model"].eval()
    manifest = os.path.join(folder, "save", "voicebank_test.csv")
    with open(manifest, encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))[:max_utterances]
    sdr, to_clean, to_noisy = [], [], []
    for row in rows:
        noisy = read_audio(row["noisy_wav"]).reshape(1, -1)
        clean = read_audio(row["clean_wav"]).reshape(1, -1)
        with torch.no_grad():
            output = model(noisy)[..., : clean.shape[-1]]
        sdr.append(float(si_snr(output, clean).mean()))
        pos, neg = feature_distances(ssl, output, clean, noisy)
        to_clean.append(pos)
        to_noisy.append(neg)
    layers = len(to_clean[0])
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {
        "folder": folder, "utterances": len(rows), "si_sdr": mean(sdr),
        "to_clean": [mean([u[i] for u in to_clean]) for i in range(layers)],
        "to_noisy": [mean([u[i] for u in to_noisy]) for i in range(layers)],
    }


def main(argv=None):
    """Run the diagnosis (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True,
                        help="arm folders holding seed<N>/ run folders; "
                        "the first is the reference")
    parser.add_argument("--ssl", required=True, help="CR's SSL model folder")
    parser.add_argument("--layer_groups", default="[[1],[2],[3],[4]]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max_utterances", type=int, default=None)
    parser.add_argument("--out", default=os.path.join(
        REPO, "benchmarks", "results", "cr_diagnosis.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from lobes.ssl_features import FrozenSSLFeatures

    ssl = FrozenSSLFeatures(args.ssl,
                            layer_groups=json.loads(args.layer_groups))
    results = {}
    for arm in args.runs:
        name = "/".join(os.path.normpath(arm).split(os.sep)[-2:])
        results[name] = {
            seed: measure_run(os.path.join(arm, f"seed{seed}"), ssl,
                              args.max_utterances)
            for seed in args.seeds
        }
        print(f"measured {name}", flush=True)
    arms = list(results)
    reference = results[arms[0]]
    layers = len(reference[args.seeds[0]]["to_clean"])
    header = ("| arm | SI-SDR | Δ SI-SDR [95 % CI] | "
              + " | ".join(f"to clean L{i + 1} (Δ %)" for i in range(layers))
              + " | to clean / to noisy, L1 |")
    lines = [header, "|---" * (4 + layers) + "|"]
    summary = {}
    for arm in arms:
        runs = results[arm]
        sdr = [runs[s]["si_sdr"] for s in args.seeds]
        delta = paired_interval(
            [a - reference[s]["si_sdr"] for a, s in zip(sdr, args.seeds)])
        cells = []
        rel = []
        for i in range(layers):
            ours = [runs[s]["to_clean"][i] for s in args.seeds]
            ref = [reference[s]["to_clean"][i] for s in args.seeds]
            change = [100 * (a / b - 1) for a, b in zip(ours, ref)]
            rel.append(sum(change) / len(change))
            cells.append(f"{sum(ours) / len(ours):.3g} ({rel[-1]:+.0f})")
        ratio = [runs[s]["to_clean"][0] / runs[s]["to_noisy"][0]
                 for s in args.seeds]
        summary[arm] = {"si_sdr": sum(sdr) / len(sdr),
                        "delta_si_sdr": delta,
                        "to_clean_change_percent": rel,
                        "ratio_layer1": sum(ratio) / len(ratio)}
        lines.append(
            f"| {arm} | {fmt(summary[arm]['si_sdr'])} | "
            + ("—" if arm == arms[0] else fmt_delta(*delta)) + " | "
            + " | ".join(cells) + f" | {summary[arm]['ratio_layer1']:.3f} |"
        )
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fout:
        json.dump({"ssl": args.ssl, "seeds": args.seeds, "runs": results,
                   "summary": summary, "table": table}, fout, indent=1,
                  default=lambda x: None if math.isnan(x) else x)
    print(f"Wrote {args.out}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
