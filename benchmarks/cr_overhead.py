#!/usr/bin/env python3
"""What (curricular) contrastive regularization costs, and what it gives.

Three measurements on the VoiceBank enhancement recipe
(``recipes/Voicebank/enhance``, Conv-TasNet backbone):

1. Training step cost of the baseline (``convtasnet.yaml``), CR
   (``cr_wavlm_convtasnet.yaml``: noisy negative) and CCR
   (``ccr_wavlm_convtasnet.yaml``: noisy and reference negatives), with and
   without the feature cache, through the recipe's own Brain
   (``EnhancementBrain.fit_batch``: forward, loss, backward, optimizer
   step) with a small Conv-TasNet (150k parameters: the recipe's 6.5M
   take minutes per step on a 2-core CPU, and the ratios below shrink as
   the backbone grows, since CR's cost does not depend on it). Each case
   runs in a fresh process; time is the median step after a warm-up step
   (which fills the cache); memory is the peak resident set
   size (RSS, Linux ``VmHWM`` reset through ``/proc/self/clear_refs`` just
   before the steps, else ``ru_maxrss``), i.e. CPU memory of the whole
   process while stepping, model weights included. The SSL feature space is
   a WavLM of the Base+ architecture (95M parameters, 12 layers of 768)
   with *random* weights, built from ``transformers.WavLMConfig()``
   defaults (cost depends on the architecture only; the real checkpoint
   cannot be downloaded here), and the tiny WavLM of
   :func:`lobes.ssl_features.save_tiny_ssl_model`.
2. Inference: parameters and time of one forward pass of each recipe's
   ``enhance_model`` (CR and CCR add nothing at inference).
3. Quality on the ``small`` mini VoiceBank corpus: the three recipes
   trained for the same number of epochs and steps at a small Conv-TasNet
   size, several seeds, with ``train.py`` as a user runs it. CR and CCR use
   the *tiny randomly initialised* WavLM (labelled so in the table): this
   checks the pipeline and the effect of CR in a random feature space, not
   the paper's claim with a pretrained WavLM. CCR's reference is the
   baseline run of the same seed.

Prints markdown tables and writes JSON (default
``benchmarks/results/cr_overhead.json``)::

    python -m benchmarks.cr_overhead            # about 25 min on 2 cores
    python -m benchmarks.cr_overhead --quick    # smoke run, a few minutes

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RECIPE_DIR = os.path.join(REPO, "recipes", "Voicebank", "enhance")

#: Method -> recipe YAML.
RECIPES = {
    "baseline": "convtasnet.yaml",
    "cr": "cr_wavlm_convtasnet.yaml",
    "ccr": "ccr_wavlm_convtasnet.yaml",
}

#: Step-cost cases: (method, feature cache).
STEP_CASES = (
    ("baseline", None),
    ("cr", "none"),
    ("cr", "memory"),
    ("ccr", "none"),
    ("ccr", "memory"),
)

#: A Conv-TasNet small enough to step quickly on 2 CPU cores (150k
#: parameters; the recipe's is 6.5M).
SMALL_CONVTASNET = {
    "encoder_channels": 64,
    "bottleneck_channels": 64,
    "conv_channels": 128,
    "blocks_per_repeat": 4,
    "num_repeats": 2,
}

#: Smaller still (18k parameters): nine training runs fit the time budget.
QUALITY_CONVTASNET = {
    "encoder_channels": 32,
    "bottleneck_channels": 32,
    "conv_channels": 64,
    "blocks_per_repeat": 3,
    "num_repeats": 1,
}

TINY_CONVTASNET = {
    "encoder_channels": 16,
    "bottleneck_channels": 16,
    "conv_channels": 32,
    "blocks_per_repeat": 2,
    "num_repeats": 1,
}

QUALITY_METRICS = ["pesq", "stoi", "estoi", "csig", "cbak", "covl", "si_sdr"]


def ssl_overrides(ssl_folder, num_layers):
    """Overrides pointing a CR recipe at a local SSL model."""
    if num_layers == 12:
        groups = [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    else:
        groups = [[index] for index in range(1, num_layers + 1)]
    return {"ssl_source": ssl_folder, "ssl_layer_groups": groups}


def build_ssl_models(folder, with_base):
    """Write the tiny WavLM and (optionally) a random Base+-sized one."""
    from transformers import AutoModel, WavLMConfig

    from lobes.ssl_features import save_tiny_ssl_model

    models = {
        "tiny WavLM (random, 4x32)": (
            save_tiny_ssl_model("wavlm", os.path.join(folder, "tiny_wavlm")),
            4,
        )
    }
    if with_base:
        base = os.path.join(folder, "wavlm_base_size")
        if not os.path.isfile(os.path.join(base, "config.json")):
            import torch

            torch.manual_seed(0)
            AutoModel.from_config(WavLMConfig()).save_pretrained(base)
        models["WavLM Base+ size (random, 12x768)"] = (base, 12)
    return models


# ---------------------------------------------------------------------------
# 1. Training step cost, one case per child process
# ---------------------------------------------------------------------------
def _rss_mb(field):
    """``VmRSS``/``VmHWM`` of this process in MB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as fin:
            for line in fin:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False if not."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fout:
            fout.write("5")
    except OSError:
        return False
    return True


def step_child(spec):
    """Run one step-cost case and return its measurements."""
    import torch

    torch.set_num_threads(spec["threads"])
    import speechbrain as sb
    from speechbrain.dataio.batch import PaddedBatch

    from lobes.brains.enhancement import EnhancementBrain
    from lobes.overrides import load_hparams

    overrides = dict(spec["overrides"])
    overrides["output_folder"] = spec["output_folder"]
    hparams = load_hparams(
        os.path.join(RECIPE_DIR, "hparams", RECIPES[spec["method"]]),
        overrides,
    )
    reference = None
    if spec["method"] == "ccr":  # cost only: an untrained baseline will do
        baseline = load_hparams(
            os.path.join(RECIPE_DIR, "hparams", RECIPES["baseline"]),
            {**spec["size"], "output_folder": spec["output_folder"]},
        )
        reference = baseline["enhance_model"].eval()
        reference.requires_grad_(False)
    experiment = hparams
    brain = EnhancementBrain(
        modules=experiment["modules"],
        opt_class=experiment["opt_class"],
        hparams=experiment,
        run_opts={"device": "cpu"},
        checkpointer=None,
        ssl_features=hparams.get("ssl", {}).get("ssl_features"),
        reference_model=reference,
    )
    brain.init_optimizers()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    generator = torch.Generator().manual_seed(0)
    samples = int(spec["segment_seconds"] * experiment["sample_rate"])
    items = []
    for index in range(spec["batch_size"]):
        clean = 0.1 * torch.randn(samples, generator=generator)
        noise = 0.05 * torch.randn(samples, generator=generator)
        items.append(
            {
                "id": f"utt{index}",
                "noisy_sig": clean + noise,
                "clean_sig": clean,
            }
        )
    batch = PaddedBatch(items)
    rss_before = _rss_mb("VmRSS")
    exact_peak = _reset_peak_rss()
    for _ in range(spec["warmup"]):
        brain.fit_batch(batch)
    times, cpu_times = [], []
    for _ in range(spec["steps"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        brain.fit_batch(batch)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    peak = _rss_mb("VmHWM") if exact_peak else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "step_s": statistics.median(times),
        "step_cpu_s": statistics.median(cpu_times),
        "step_times_s": times,
        "step_cpu_times_s": cpu_times,
        "peak_rss_mb": peak,
        "rss_before_steps_mb": rss_before,
        "peak_measure": "VmHWM after reset" if exact_peak else "ru_maxrss",
    }


def run_step_case(spec):
    """Run :func:`step_child` in a fresh interpreter (clean memory peak)."""
    result = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--_step-child",
            json.dumps(spec),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"step case {spec['method']} failed:\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def step_costs(args, ssl_models, work):
    """Every step case for every SSL model: time, peak RSS, ratios."""
    size = TINY_CONVTASNET if args.quick else SMALL_CONVTASNET
    rows = []
    baseline = None
    for ssl_name, (ssl_folder, layers) in ssl_models.items():
        for method, cache in STEP_CASES:
            if method == "baseline" and baseline is not None:
                continue
            overrides = dict(size)
            if method != "baseline":
                overrides.update(ssl_overrides(ssl_folder, layers))
                overrides["feature_cache"] = cache
            spec = {
                "method": method,
                "overrides": overrides,
                "size": size,
                "output_folder": os.path.join(work, "steps"),
                "threads": args.threads,
                "batch_size": args.step_batch,
                "segment_seconds": args.step_seconds,
                "warmup": 1,
                "steps": 2 if args.quick else args.steps,
            }
            print(
                f"  step cost: {method} cache={cache} ssl={ssl_name}",
                flush=True,
            )
            measured = run_step_case(spec)
            row = {
                "method": method,
                "feature_cache": cache or "-",
                "ssl": "-" if method == "baseline" else ssl_name,
                **measured,
            }
            if method == "baseline":
                baseline = row
            rows.append(row)
    for row in rows:
        row["time_ratio"] = row["step_s"] / baseline["step_s"]
        row["cpu_ratio"] = row["step_cpu_s"] / baseline["step_cpu_s"]
        row["added_cpu_s"] = row["step_cpu_s"] - baseline["step_cpu_s"]
        row["memory_ratio"] = row["peak_rss_mb"] / baseline["peak_rss_mb"]
    return rows


# ---------------------------------------------------------------------------
# 2. Inference cost
# ---------------------------------------------------------------------------
def inference_costs(args, work, tiny_ssl):
    """Parameters and forward time of each recipe's enhance_model.

    The CR recipes' YAMLs also build their SSL model (a training-only
    loss); the tiny one stands in for it here since inference never runs it.
    """
    import torch

    from lobes.overrides import load_hparams

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    noisy = 0.1 * torch.randn(1, 16000 * 4, generator=generator)
    rows = []
    for method, recipe in RECIPES.items():
        overrides = {"output_folder": os.path.join(work, "inference")}
        if args.quick:
            overrides.update(TINY_CONVTASNET)
        if method != "baseline":
            overrides.update(ssl_overrides(tiny_ssl, 4))
        hparams = load_hparams(
            os.path.join(RECIPE_DIR, "hparams", recipe), overrides
        )
        model = hparams["enhance_model"].eval()
        params = sum(p.numel() for p in model.parameters())
        times = []
        with torch.no_grad():
            model(noisy)
            for _ in range(2 if args.quick else 5):
                start = time.perf_counter()
                model(noisy)
                times.append(time.perf_counter() - start)
        rows.append(
            {
                "method": method,
                "recipe": recipe,
                "parameters": params,
                "forward_4s_s": statistics.median(times),
            }
        )
    return rows


# ---------------------------------------------------------------------------
# 3. Quality on the small mini corpus
# ---------------------------------------------------------------------------
def train_recipe(method, seed, args, work, tiny_ssl):
    """Train and test one recipe with train.py; return its test means."""
    output = os.path.join(work, "quality", method, str(seed))
    overrides = {
        "seed": seed,
        "output_folder": output,
        "data_folder": "mini",
        "mini_corpus_size": "tiny" if args.quick else "small",
        "number_of_epochs": args.epochs,
        "batch_size": 8,
        "num_workers": 0,
        "segment_length": args.quality_seconds,
        "valid_metrics": ["si_sdr"],
        "test_metrics": QUALITY_METRICS,
        "n_audio_to_save": 0,
        **(TINY_CONVTASNET if args.quick else QUALITY_CONVTASNET),
    }
    if method != "baseline":
        overrides.update(ssl_overrides(tiny_ssl, 4))
    if method == "ccr":
        overrides["reference_model"] = os.path.join(
            work, "quality", "baseline", str(seed)
        )
    command = [sys.executable, "train.py", f"hparams/{RECIPES[method]}"]
    command += [
        f"--{key}={json.dumps(value) if isinstance(value, list) else value}"
        for key, value in overrides.items()
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=RECIPE_DIR,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"{method} seed {seed} failed:\n{result.stderr[-3000:]}"
        )
    with open(os.path.join(output, "test_results.csv"), encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f)]
    utterances = [row for row in rows if row["snt_id"] != "avg"]
    means = {}
    for name in QUALITY_METRICS:
        values = [float(row[name]) for row in utterances]
        finite = [v for v in values if math.isfinite(v)]
        means[name] = statistics.fmean(finite) if finite else math.nan
    return {
        "method": method,
        "seed": seed,
        "train_test_s": elapsed,
        "utterances": len(utterances),
        **means,
    }


def quality(args, work, tiny_ssl):
    """Baseline, CR and CCR for every seed (baseline first: CCR needs it)."""
    runs = []
    for seed in args.seeds:
        for method in ("baseline", "cr", "ccr"):
            print(f"  quality: {method} seed {seed}", flush=True)
            runs.append(train_recipe(method, seed, args, work, tiny_ssl))
    summary = []
    for method in RECIPES:
        mine = [run for run in runs if run["method"] == method]
        row = {"method": method, "seeds": len(mine)}
        for name in QUALITY_METRICS + ["train_test_s"]:
            values = [run[name] for run in mine]
            row[name] = statistics.fmean(values)
            row[f"{name}_std"] = (
                statistics.stdev(values) if len(values) > 1 else 0.0
            )
        summary.append(row)
    return runs, summary


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def markdown_steps(rows, args):
    lines = [
        f"Training step, batch {args.step_batch} x {args.step_seconds:g} s, "
        f"{args.threads} CPU threads, "
        f"{'tiny' if args.quick else 'small (150k parameters)'} Conv-TasNet"
        "; peak RSS "
        f"({rows[0]['peak_measure']}) of the whole process. CPU = process "
        "CPU time (user+system, all threads), less sensitive than wall "
        "time to other load on the machine",
        "",
        "| method | feature cache | SSL feature space | step CPU (s) | "
        "added CPU (s) | CPU vs baseline | step wall (s) | wall vs baseline "
        "| peak RSS (MB) | memory vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['feature_cache']} | {row['ssl']} | "
            f"{row['step_cpu_s']:.2f} | {row['added_cpu_s']:+.2f} | "
            f"{row['cpu_ratio']:.2f}x | "
            f"{row['step_s']:.2f} | {row['time_ratio']:.2f}x | "
            f"{row['peak_rss_mb']:.0f} | {row['memory_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def markdown_inference(rows):
    lines = [
        "Inference (enhance_model only, recipe size unless --quick; 4 s of "
        "audio, batch 1; wall time)",
        "",
        "| method | recipe | parameters | forward (s) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['recipe']} | {row['parameters']:,} | "
            f"{row['forward_4s_s']:.3f} |"
        )
    return "\n".join(lines)


def markdown_quality(summary, args):
    corpus = "tiny" if args.quick else "small"
    lines = [
        f"Quality on the {corpus} mini VoiceBank test split: "
        f"{args.epochs} epochs, batch 8, {args.quality_seconds:g} s segments, "
        f"{'tiny' if args.quick else 'small (18k parameters)'} Conv-TasNet,"
        f" mean ± std over seeds {args.seeds}; CR/CCR in "
        "the space of a TINY RANDOMLY INITIALISED WavLM (not WavLM Base+)",
        "",
        "| method | " + " | ".join(QUALITY_METRICS) + " | train+test (s) |",
        "|---|" + "---|" * (len(QUALITY_METRICS) + 1),
    ]
    for row in summary:
        cells = [
            f"{row[name]:.3f} ± {row[name + '_std']:.3f}"
            for name in QUALITY_METRICS
        ]
        lines.append(
            f"| {row['method']} | "
            + " | ".join(cells)
            + f" | {row['train_test_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny models, tiny corpus, 1 seed",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(REPO, "benchmarks", "results", "cr_overhead.json"),
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--steps", type=int, default=4, help="measured training steps per case"
    )
    parser.add_argument("--step_batch", type=int, default=2)
    parser.add_argument("--step_seconds", type=float, default=1.0)
    parser.add_argument("--quality_seconds", type=float, default=1.0)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["steps", "inference", "quality"],
    )
    parser.add_argument(
        "--work",
        default=None,
        help="folder for models and runs (default: temp)",
    )
    parser.add_argument(
        "--_step-child", dest="step_child", default=None, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.step_child:
        print(json.dumps(step_child(json.loads(args.step_child))))
        return None
    if args.seeds is None:
        args.seeds = [1] if args.quick else [1, 2, 3]
    if args.epochs is None:
        args.epochs = 1 if args.quick else 2

    work = args.work or tempfile.mkdtemp(prefix="cr_overhead_")
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    print(f"Building SSL models in {work}", flush=True)
    ssl_models = build_ssl_models(work, with_base=not args.quick)
    tiny_ssl = ssl_models["tiny WavLM (random, 4x32)"][0]
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "step_child"},
    }
    tables = []
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def save():  # after every part, so an interrupted run keeps its results
        report["machine"]["load_average_now"] = os.getloadavg()
        report["total_s"] = time.perf_counter() - started
        with open(args.out, "w", encoding="utf-8") as fout:
            json.dump(report, fout, indent=2)

    if "steps" not in args.skip:
        print("Training step cost", flush=True)
        report["steps"] = step_costs(args, ssl_models, work)
        tables.append(markdown_steps(report["steps"], args))
        save()
    if "inference" not in args.skip:
        print("Inference cost", flush=True)
        report["inference"] = inference_costs(args, work, tiny_ssl)
        tables.append(markdown_inference(report["inference"]))
        save()
    if "quality" not in args.skip:
        print("Quality", flush=True)
        runs, summary = quality(args, work, tiny_ssl)
        report["quality_runs"] = runs
        report["quality"] = summary
        tables.append(markdown_quality(summary, args))
    save()
    print()
    print("\n\n".join(tables))
    print(f"\nTotal {report['total_s']:.0f} s; JSON: {args.out}")
    return report


if __name__ == "__main__":
    main()
