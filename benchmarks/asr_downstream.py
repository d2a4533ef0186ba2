#!/usr/bin/env python3
"""Does enhancement help a recogniser? Downstream WER on the mini corpora.

Every run is a recipe of this package in a subprocess (one CPU thread), on
the ``small`` mini corpora, at the CPU sizes of :mod:`lobes.cpu_settings`;
for each seed:

1. the front ends: the VoiceBank enhancers ``backbone`` (Conv-TasNet,
   ``convtasnet.yaml``), ``cr`` (``cr_wavlm_convtasnet.yaml``), ``ccr``
   (``ccr_hubert_convtasnet.yaml``, the same seed's backbone as reference,
   quality curriculum) and ``cmcr_net`` (``cmcr_net.yaml``), CR in the
   package-trained SSL space (``--trained_ssl``); and the WHAM! separators
   ``nass_sepformer`` and ``sepformer``;
2. the CTC recogniser of ``recipes/Voicebank/ASR`` on: ``clean`` (trained
   and tested on clean speech: the upper bound), ``noisy``, each enhancer
   frozen in front (``enhanced_<enhancer>``), and ``joint`` (the backbone
   enhancer fine-tuned with the recogniser, its waveform loss and CR as
   regularisers, ``ctc_joint.yaml``'s weights);
3. ``recipes/WHAM/separation/evaluate_asr.py``: the seed's clean recogniser
   trained with half its utterances band-limited to 4 kHz
   (``clean_narrowband``, ``--narrowband_prob=0.5``) on each separated
   speaker of the mini WHAM! test mixtures (PIT order, 8 kHz resampled to
   16 kHz), on the mixtures and on the true sources.

Every arm of a seed shares the seed (initialisation, data order), so the
tables give the mean and std over seeds and the paired difference to
``noisy`` (VoiceBank) or to ``sepformer`` (WHAM!) with a 95 % t-interval,
the training steps and the wall time. Writes JSON after every run
(``--out``) and resumes from it::

    python -m benchmarks.asr_downstream --trained_ssl /path/to/ssl_hubert_small
    python -m benchmarks.asr_downstream --quick --trained_ssl ...  # smoke run

``--wham_only`` evaluates separators and a recogniser trained elsewhere
(e.g. the runs of ``benchmarks/nass_vs_baseline.py``) and nothing else.
``--enhancers`` puts enhancers trained elsewhere (e.g. the runs of
``benchmarks/cr_vs_baseline.py``) in front of the recogniser instead of
training them; ``--voicebank_only`` leaves the WHAM! part out; ``--arms``
runs some recogniser arms only (a later call with the same options adds
the others to the same JSON).

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import json
import math
import os
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
    ENHANCEMENT,
    ENHANCEMENT_TRAINING,
    PATCH_NCE,
    SEPARATION,
    SEPARATION_TRAINING,
)
from lobes.transcription import read_error_rate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENHANCE = os.path.join(REPO, "recipes", "Voicebank", "enhance")
ASR = os.path.join(REPO, "recipes", "Voicebank", "ASR")
WHAM = os.path.join(REPO, "recipes", "WHAM", "separation")

#: Enhancers: name -> (recipe YAML stem, backbone of lobes.cpu_settings,
#: uses CR's SSL space).
ENHANCERS = {
    "backbone": ("convtasnet", "convtasnet", False),
    "cr": ("cr_wavlm_convtasnet", "convtasnet", True),
    "ccr": ("ccr_hubert_convtasnet", "convtasnet", True),
    "cmcr_net": ("cmcr_net", "cmcr_net", True),
}

#: Separators: name -> recipe YAML stem (SepFormer at the CPU size).
SEPARATORS = {"nass_sepformer": "nass_sepformer", "sepformer": "sepformer"}

#: Recogniser arms: name -> (recipe YAML stem, enhancer in front, extra
#: overrides). ``clean_narrowband`` hears a half of its training utterances
#: band-limited to 4 kHz: the recogniser of the WHAM! evaluation (8 kHz).
ASR_ARMS = {
    "clean": ("ctc_clean", None, {}),
    "noisy": ("ctc_noisy", None, {}),
    **{f"enhanced_{name}": ("ctc_enhanced", name, {}) for name in ENHANCERS},
    "joint": ("ctc_joint", "backbone", {}),
    "clean_narrowband": ("ctc_clean", None, {"narrowband_prob": 0.5}),
}

#: Tiny recogniser of the smoke run (the recipe tests' sizes).
TINY_RECOGNIZER = {"cnn_channels": 8, "rnn_layers": 1, "rnn_neurons": 16,
                   "dnn_neurons": 16}

FULL = {
    "corpus_size": "small", "asr_epochs": 30, "asr_batch_size": 8,
    "enhancer_epochs": ENHANCEMENT_TRAINING["number_of_epochs"],
    "separator_epochs": SEPARATION_TRAINING["number_of_epochs"],
    "seeds": [1, 2, 3],
}
QUICK = {
    "corpus_size": "tiny", "asr_epochs": 1, "asr_batch_size": 4,
    "enhancer_epochs": 1, "separator_epochs": 1, "seeds": [1],
}


def run_script(recipe_dir, script, yaml, overrides, threads=1):
    """:func:`paired.run_recipe` for any script of a recipe folder."""
    return run_recipe(recipe_dir, yaml, overrides, threads, script=script)


def training_steps(folder, manifest, batch_size):
    """Epochs in ``train_log.txt`` and the steps they took.

    Steps: epochs x batches of the training manifest (``save/<manifest>``).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, "train_log.txt"), "w").write(
    ...     "epoch: 1, lr: 1e-3 - train loss: 2\\nepoch: 2, lr: 1e-3 - x\\n")
    >>> os.makedirs(os.path.join(folder, "save"))
    >>> _ = open(os.path.join(folder, "save", "train.csv"), "w").write(
    ...     "ID,duration\\n" + "".join(f"u{i},1.0\\n" for i in range(17)))
    >>> training_steps(folder, "train.csv", 8)
    (2, 6)
    """
    with open(os.path.join(folder, "train_log.txt"), encoding="utf-8") as f:
        epochs = sum(1 for line in f if line.startswith("epoch:"))
    with open(os.path.join(folder, "save", manifest), encoding="utf-8") as f:
        examples = sum(1 for line in f if line.strip()) - 1
    return epochs, epochs * math.ceil(examples / int(batch_size))


def job_id(job):
    """The key of one run in the JSON (and its folder under the work
    folder)."""
    return f"{job['kind']}/{job['name']}/seed{job['seed']}"


def run_enhancer(job, setup, work, ssl, threads):
    """Train and test one enhancer with its recipe."""
    stem, backbone, uses_cr = ENHANCERS[job["name"]]
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        **ENHANCEMENT[backbone],
        "seed": job["seed"], "output_folder": out,
        "mini_corpus_size": setup["corpus_size"],
        "number_of_epochs": setup["enhancer_epochs"],
        "batch_size": ENHANCEMENT_TRAINING["batch_size"],
        "segment_length": ENHANCEMENT_TRAINING["segment_length"],
        "num_workers": 0, "n_audio_to_save": 0,
        "valid_metrics": ["pesq", "si_sdr"],
        "test_metrics": ["pesq", "si_sdr"],
    }
    if uses_cr:
        overrides["ssl_source"] = ssl
        overrides["ssl_layer_groups"] = [[1], [2], [3], [4]]
    if job["name"] == "ccr":
        overrides["curriculum"] = "quality"
        overrides["reference_model"] = os.path.join(
            work, job_id({**job, "name": "backbone"})
        )
    wall = run_script(ENHANCE, "train.py", f"{stem}.yaml", overrides,
                      threads)
    average, _ = read_average(os.path.join(out, "test_results.csv"))
    epochs, steps = training_steps(out, "voicebank_train.csv",
                                   overrides["batch_size"])
    return {"id": job_id(job), **job, "yaml": f"{stem}.yaml",
            "pesq": average.get("pesq", math.nan),
            "si_sdr": average.get("si_sdr", math.nan),
            "epochs": epochs, "steps": steps, "wall_seconds": wall}


def run_separator(job, setup, work, threads):
    """Train and test one WHAM! separator with its recipe."""
    stem = SEPARATORS[job["name"]]
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        **SEPARATION["sepformer"],
        **(PATCH_NCE if stem.startswith("nass") else {}),
        "seed": job["seed"], "output_folder": out,
        "mini_corpus_size": setup["corpus_size"],
        "number_of_epochs": setup["separator_epochs"],
        "batch_size": SEPARATION_TRAINING["batch_size"],
        "segment_seconds": SEPARATION_TRAINING["segment_seconds"],
        "speed_perturb": SEPARATION_TRAINING["speed_perturb"],
        "num_workers": 0, "save_audio": False,
    }
    wall = run_script(WHAM, "train.py", f"{stem}.yaml", overrides, threads)
    average, _ = read_average(os.path.join(out, "test_results.csv"))
    epochs, steps = training_steps(out, "wham_train.csv",
                                   overrides["batch_size"])
    return {"id": job_id(job), **job, "yaml": f"{stem}.yaml",
            "si-snr_i": average.get("si-snr_i", math.nan),
            "epochs": epochs, "steps": steps, "wall_seconds": wall}


def asr_overrides(setup, encoder, ssl, quick):
    """The recogniser's options common to every arm."""
    overrides = {
        "mini_corpus_size": setup["corpus_size"],
        "number_of_epochs": setup["asr_epochs"],
        "batch_size": setup["asr_batch_size"],
        "num_workers": 0, "encoder": encoder,
    }
    if encoder == "ssl":
        overrides["ssl_source"] = ssl
    elif quick:
        overrides.update(TINY_RECOGNIZER)
    return overrides


def enhancer_folder(name, seed, work, trained=None):
    """The trained enhancer ``name`` of ``seed``: this benchmark's run, or
    the folder ``trained[name]`` (``--enhancers``, ``{seed}`` filled in).

    Example
    -------
    >>> enhancer_folder("cr", 2, "/w")
    '/w/enhancer/cr/seed2'
    >>> enhancer_folder("cr", 2, "/w", {"cr": "/cr/runs/seed{seed}"})
    '/cr/runs/seed2'
    """
    if trained:
        return trained[name].format(seed=seed)
    return os.path.join(work, job_id(
        {"kind": "enhancer", "name": name, "seed": seed}))


def run_asr(job, setup, work, ssl, encoder, threads, quick):
    """Train and test one recogniser arm with the ASR recipe."""
    stem, enhancer, extra = ASR_ARMS[job["name"]]
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {**asr_overrides(setup, encoder, ssl, quick), **extra,
                 "seed": job["seed"], "output_folder": out}
    if enhancer is not None:
        overrides["enhancer"] = enhancer_folder(
            enhancer, job["seed"], work, setup.get("trained_enhancers"))
    if stem == "ctc_joint":  # CR's space: the package-trained SSL model
        overrides["ssl_source"] = ssl
        overrides["ssl_layer_groups"] = [[1], [2], [3], [4]]
        if setup.get("cr_weight") is not None:
            overrides["cr_weight"] = setup["cr_weight"]
    wall = run_script(ASR, "train.py", f"{stem}.yaml", overrides, threads)
    epochs, steps = training_steps(out, "voicebank_train.csv",
                                   overrides["batch_size"])
    return {"id": job_id(job), **job, "arm": job["name"],
            "yaml": f"{stem}.yaml", "enhancer": enhancer,
            "WER": read_error_rate(os.path.join(out, "wer_test.txt")),
            "CER": read_error_rate(os.path.join(out, "cer_test.txt")),
            "epochs": epochs, "steps": steps, "wall_seconds": wall}


def run_separation_asr(job, setup, work, threads, trained=None):
    """The seed's narrow-band clean recogniser on the seed's separated
    speakers.

    ``trained`` (``--wham_only``) names runs trained elsewhere instead:
    ``{"recognizer": folder, "separators": {name: folder with {seed}}}``.
    """
    seed = job["seed"]
    out = os.path.join(work, job_id(job))
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        "output_folder": out, "mini_corpus_size": setup["corpus_size"],
        "recognizer": os.path.join(work, job_id(
            {"kind": "asr", "name": "clean_narrowband", "seed": seed})),
        "separators": {
            name: os.path.join(work, job_id(
                {"kind": "separator", "name": name, "seed": seed}))
            for name in SEPARATORS
        },
    }
    if trained:
        overrides["recognizer"] = trained["recognizer"]
        overrides["separators"] = {
            name: folder.format(seed=seed)
            for name, folder in trained["separators"].items()
        }
    wall = run_script(WHAM, "evaluate_asr.py", "evaluate_asr.yaml",
                      overrides, threads)
    with open(os.path.join(out, "asr_results.json"), encoding="utf-8") as f:
        results = json.load(f)
    return {"id": job_id(job), **job, "results": results["results"],
            "mixtures": results["setup"]["mixtures"], "wall_seconds": wall}


def separation_runs(runs):
    """One pseudo-run per seed and condition of the WHAM! evaluations."""
    rows = []
    for run in runs:
        if run["kind"] != "separation_asr":
            continue
        for condition, result in run["results"].items():
            rows.append({"arm": condition, "seed": run["seed"],
                         "WER": result["WER"], "CER": result["CER"],
                         "si_snr": result["si_snr"]})
    return rows


def summaries(runs):
    """The VoiceBank and WHAM! summaries (paired differences by seed)."""
    asr = [r for r in runs if r["kind"] == "asr"]
    voicebank = summarize(asr, (), ("WER", "CER", "steps", "wall_seconds"),
                          lambda run: {"arm": "noisy"})
    order = list(ASR_ARMS)
    voicebank.sort(key=lambda row: order.index(row["arm"]))
    wham = summarize(separation_runs(runs), (), ("WER", "CER", "si_snr"),
                     lambda run: {"arm": "sepformer"})
    order = ["sources", "mixture", *SEPARATORS]
    wham.sort(key=lambda row: order.index(row["arm"])
              if row["arm"] in order else len(order))
    return voicebank, wham


def _mean_std(row, key, digits=2):
    if math.isnan(row[f"{key}_std"]):
        return fmt(row[key], digits)
    return f"{fmt(row[key], digits)} ± {fmt(row[f'{key}_std'], digits)}"


def markdown_tables(voicebank, wham, runs):
    """The two tables of the READMEs."""
    front = {r["name"]: r for r in runs if r["kind"] == "enhancer"}
    lines = [
        "| recogniser hears | seeds | WER (%) | CER (%) | Δ WER vs noisy "
        "[95 % CI] | Δ CER vs noisy [95 % CI] | steps | wall min |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for row in voicebank:
        is_noisy = row["arm"] == "noisy"
        lines.append(
            f"| {row['arm']} | {len(row['seeds'])} | {_mean_std(row, 'WER')} "
            f"| {_mean_std(row, 'CER')} "
            f"| {'—' if is_noisy else fmt_delta(row['delta_WER'], row['delta_WER_ci95'])} "  # noqa: E501
            f"| {'—' if is_noisy else fmt_delta(row['delta_CER'], row['delta_CER_ci95'])} "  # noqa: E501
            f"| {fmt(row['steps'], 0)} | {row['wall_seconds'] / 60:.1f} |"
        )
    lines += [
        "",
        "| WHAM! test speakers heard as | seeds | WER (%) | CER (%) "
        "| SI-SNR (dB) | Δ WER vs sepformer [95 % CI] |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in wham:
        delta = "—"
        if row["arm"] == "nass_sepformer":
            delta = fmt_delta(row["delta_WER"], row["delta_WER_ci95"])
        lines.append(
            f"| {row['arm']} | {len(row['seeds'])} | {_mean_std(row, 'WER')} "
            f"| {_mean_std(row, 'CER')} | {_mean_std(row, 'si_snr')} "
            f"| {delta} |"
        )
    if front:
        lines += ["", "Front ends (last seed's test scores): " + ", ".join(
            f"{name} PESQ {fmt(run.get('pesq', math.nan))} SI-SDR "
            f"{fmt(run.get('si_sdr', math.nan))} dB"
            for name, run in sorted(front.items())
        )]
    return "\n".join(lines)


def jobs_by_phase(seeds):
    """The runs in the order their inputs exist."""
    def job(kind, name, seed):
        return {"kind": kind, "name": name, "seed": seed}

    phases = [[], [], []]
    for seed in seeds:
        phases[0] += [job("enhancer", "backbone", seed),
                      job("asr", "clean", seed), job("asr", "noisy", seed),
                      job("asr", "clean_narrowband", seed)]
        phases[0] += [job("separator", name, seed) for name in SEPARATORS]
        phases[1] += [job("enhancer", name, seed) for name in ENHANCERS
                      if name != "backbone"]
        phases[1] += [job("asr", "enhanced_backbone", seed),
                      job("asr", "joint", seed),
                      job("separation_asr", "evaluate_asr", seed)]
        phases[2] += [job("asr", f"enhanced_{name}", seed)
                      for name in ENHANCERS if name != "backbone"]
    return phases


def select_jobs(phases, trained_enhancers=None, voicebank_only=False,
                arms=None, wham_only=False):
    """The jobs left once enhancers come from elsewhere
    (``trained_enhancers``: no enhancer runs, and only the ``enhanced_``
    arms of the enhancers named), without the WHAM! part
    (``voicebank_only``), with the recogniser arms ``arms`` only, or with
    the WHAM! evaluation only (``wham_only``: ``--wham_only``).

    Example
    -------
    >>> phases = select_jobs(jobs_by_phase([1]), {"backbone": "/b{seed}"},
    ...                      voicebank_only=True)
    >>> sorted(job["name"] for phase in phases for job in phase)
    ['clean', 'enhanced_backbone', 'joint', 'noisy']
    >>> phases = select_jobs(jobs_by_phase([1]), arms=["noisy"])
    >>> sorted(job_id(job) for phase in phases for job in phase
    ...        if job["kind"] == "asr")
    ['asr/noisy/seed1']
    >>> [job_id(job) for phase in select_jobs(jobs_by_phase([1]),
    ...                                       wham_only=True) for job in phase]
    ['separation_asr/evaluate_asr/seed1']
    """
    def keep(job):
        if wham_only:
            return job["kind"] == "separation_asr"
        if voicebank_only and job["kind"] in ("separator", "separation_asr"):
            return False
        if job["kind"] == "separation_asr":
            return arms is None or "clean_narrowband" in arms
        if job["kind"] == "enhancer":
            return trained_enhancers is None
        if job["kind"] != "asr":
            return True
        if voicebank_only and job["name"] == "clean_narrowband":
            return False
        if arms is not None and job["name"] not in arms:
            return False
        enhancer = ASR_ARMS[job["name"]][1]
        return (trained_enhancers is None or enhancer is None
                or enhancer in trained_enhancers)

    return [[job for job in phase if keep(job)] for phase in phases]


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny corpora, one epoch, one seed")
    parser.add_argument("--trained_ssl", required=True,
                        help="folder of recipes/Voicebank/ssl_pretrain (CR's "
                        "space; the recogniser's with --encoder ssl)")
    parser.add_argument("--encoder", choices=("fbank", "ssl"),
                        default="fbank", help="the recogniser's encoder")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--asr_epochs", type=int, default=None)
    parser.add_argument(
        "--enhancers", default=None, metavar="JSON",
        help="enhancers trained elsewhere, not here: '{\"backbone\": DIR, "
        "\"cr\": DIR, ...}' (each DIR with {seed})")
    parser.add_argument("--voicebank_only", action="store_true",
                        help="leave the WHAM! separators out")
    parser.add_argument("--arms", nargs="+", default=None,
                        choices=list(ASR_ARMS),
                        help="these recogniser arms only")
    parser.add_argument("--cr_weight", type=float, default=None,
                        help="CR's weight in the joint arm (default: "
                        "ctc_joint.yaml's)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs side by side (processes)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per run")
    parser.add_argument(
        "--out", default=os.path.join(REPO, "benchmarks", "results",
                                      "asr_downstream.json"),
        help="JSON output (resumed from when it exists)",
    )
    parser.add_argument(
        "--wham_only", default=None, metavar="JSON",
        help="only the WHAM! evaluation, of runs trained elsewhere: "
        '\'{"recognizer": DIR, "separators": {"nass_sepformer": DIR, '
        '"sepformer": DIR}}\' (each separator DIR with {seed}, e.g. the '
        "NASS benchmark's runs)",
    )
    args = parser.parse_args(argv)
    trained = json.loads(args.wham_only) if args.wham_only else None
    if trained and set(trained.get("separators", {})) != set(SEPARATORS):
        parser.error(f"--wham_only: name the separators {list(SEPARATORS)}"
                     " and a recognizer")
    setup = dict(QUICK if args.quick else FULL)
    if args.seeds:
        setup["seeds"] = args.seeds
    if args.asr_epochs:
        setup["asr_epochs"] = args.asr_epochs
    if args.cr_weight is not None:
        setup["cr_weight"] = args.cr_weight
    if args.enhancers:
        setup["trained_enhancers"] = json.loads(args.enhancers)
        unknown = set(setup["trained_enhancers"]) - set(ENHANCERS)
        if unknown or "backbone" not in setup["trained_enhancers"]:
            parser.error(f"--enhancers: name the backbone and any of "
                         f"{list(ENHANCERS)}, not {sorted(unknown)}")
    if not os.path.isfile(os.path.join(args.trained_ssl, "config.json")):
        parser.error(f"{args.trained_ssl}: no trained SSL model; make one "
                     "with recipes/Voicebank/ssl_pretrain/train.py")
    ssl = os.path.abspath(args.trained_ssl)
    work = os.path.splitext(os.path.abspath(args.out))[0] + "_runs"
    runs = ResumableRuns(args.out, {
        "training": setup, "encoder": args.encoder, "threads": args.threads,
        "trained_ssl": ssl, "enhancers": ENHANCEMENT,
        "separator": SEPARATION["sepformer"], "trained_elsewhere": trained,
    })
    done = runs.done()
    phases = select_jobs(jobs_by_phase(setup["seeds"]),
                         setup.get("trained_enhancers"), args.voicebank_only,
                         args.arms, wham_only=bool(trained))
    phases = [[j for j in phase if job_id(j) not in done]
              for phase in phases]
    print(f"{len(done)} runs done, {sum(map(len, phases))} to go",
          flush=True)
    begin = time.perf_counter()

    def work_on(job):
        if job["kind"] == "enhancer":
            return run_enhancer(job, setup, work, ssl, args.threads)
        if job["kind"] == "separator":
            return run_separator(job, setup, work, args.threads)
        if job["kind"] == "asr":
            return run_asr(job, setup, work, ssl, args.encoder,
                           args.threads, args.quick)
        return run_separation_asr(job, setup, work, args.threads, trained)

    def finished(job, run):
        voicebank, wham = summaries(runs.runs + [run])
        runs.add(run, voicebank=voicebank, wham=wham,
                 table=markdown_tables(voicebank, wham, runs.runs + [run]),
                 total_wall_seconds=time.perf_counter() - begin)
        scores = ", ".join(
            f"{key} {run[key]:.2f}" for key in ("WER", "CER", "pesq",
                                                "si_sdr", "si-snr_i")
            if key in run
        )
        print(f"[{run['id']}] {scores} {run['wall_seconds'] / 60:.1f} min "
              f"({(time.perf_counter() - begin) / 60:.0f} min so far)",
              flush=True)

    run_in_phases(phases, work_on, args.jobs, finished)
    print()
    print(runs.data.get("table", ""))
    print(f"\nWrote {args.out} ({(time.perf_counter() - begin) / 60:.1f} "
          "min this time)")
    return runs.data


if __name__ == "__main__":
    main(sys.argv[1:])
