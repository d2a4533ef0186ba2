"""``make demo``: NASS-SepFormer against its baseline on the mini WHAM! corpus.

From a fresh clone, on a 2-core laptop CPU, in about a quarter of an hour
(including the generation of the mini corpus), this

1. generates the ``small`` mini WHAM! corpus (synthetic speech and noise in
   the WHAM! layout; cached for later runs);
2. trains NASS-SepFormer and the plain SepFormer with the WHAM! recipe
   (``recipes/WHAM/separation/train.py`` and its YAMLs with their defaults,
   shrunk to the CPU size of :mod:`lobes.cpu_settings` by command-line
   overrides: the same code as a full run), side by side, one CPU thread
   each, 2,000 steps from scratch, at the corpus's own noise level (the
   backbone stage of ``benchmarks/nass_vs_baseline.py``, with the noise
   18 dB louder and its arms forked from trained backbones, is what says
   whether NASS helps: ``recipes/WHAM/separation/README.md``);
3. tests both on the mini test set and prints a table (SI-SNRi, SDRi, the
   noise estimate's SI-SNR, parameters at inference, training seconds),
   written as ``results.md`` and ``results.json``;
4. saves spectrograms (mixture, references, estimates, noise estimate) as
   PNG and example wavs of a test mixture.

Numbers from the mini corpus (synthetic eSpeak NG speech, short training)
only show that the pipeline works; they are not comparable with published
WHAM! results.

Command line::

    python -m lobes.demo --out demo_output [--epochs N] [--quick]

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

import torch

from lobes.cpu_settings import PATCH_NCE, SEPARATION, SEPARATION_TRAINING
from lobes.data.audio import read_audio, write_audio
from lobes.data.mini_corpora import ensure_mini_corpus
from lobes.data.prepare import prepare_wham
from lobes.data.separation_data import read_manifest
from lobes.errors import UserError, exit_on_user_error
from lobes.losses.pit import best_permutation, pairwise_neg_sisnr
from lobes.overrides import FragmentTree
from lobes.pretrained import NoiseAwareSeparation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")

#: The two models compared: (name in the table, recipe YAML).
MODELS = (
    ("NASS-SepFormer", "nass_sepformer"),
    ("SepFormer (baseline)", "sepformer"),
)

#: Overrides of the recipe YAMLs (the paper-size model would take days on a
#: CPU): the CPU-size SepFormer and training of lobes.cpu_settings.
DEMO_OVERRIDES = {
    **SEPARATION["sepformer"],
    **PATCH_NCE,
    **{key: value for key, value in SEPARATION_TRAINING.items()
       if key != "number_of_epochs"},
    "num_workers": 0,
    "n_audio_to_save": 3,
}

#: ``--quick``: the tiny corpus and a tiny model, for tests (seconds).
QUICK_OVERRIDES = {
    "mini_corpus_size": "tiny",
    "encoder_channels": 16,
    "num_transformer_layers": 1,
    "num_heads": 2,
    "d_ffn": 32,
    "chunk_size": 20,
    "nce_num_patches": 16,
    "nce_embed_dim": 16,
    "segment_seconds": 0.5,
    "eval_max_seconds": 1.0,
}


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.demo``."""
    parser = argparse.ArgumentParser(
        prog="python -m lobes.demo",
        description="Train and compare NASS-SepFormer and SepFormer on the "
        "mini WHAM! corpus.",
    )
    parser.add_argument("--out", default="demo_output",
                        help="folder for the table, plots and wavs")
    epochs = SEPARATION_TRAINING["number_of_epochs"]
    parser.add_argument("--epochs", type=int, default=epochs,
                        help=f"training epochs per model (default {epochs})")
    parser.add_argument("--seed", type=int, default=1,
                        help="the experiment seed (1: the benchmark's first)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny corpus and model (a smoke test)")
    return parser.parse_args(argv)


def _train_log_epochs(path):
    """Epoch lines written so far to a recipe's ``train_log.txt``."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as fin:
        return [line for line in fin if line.startswith("epoch:")]


def _stat(line, stage, name):
    """Value of ``<stage> <name>: <value>`` in a train-log line, or None."""
    match = re.search(
        rf"{stage} {re.escape(name)}: ([-+0-9.eE]+)", line
    )
    return float(match.group(1)) if match else None


class RecipeRun:
    """One run of the WHAM! recipe (``train.py``) in a subprocess.

    The process gets one CPU thread: the demo trains its two models side
    by side, one per core, which on a small machine is faster than one
    after the other with two threads each.

    Arguments
    ---------
    stem : str
        Recipe YAML name (``hparams/<stem>.yaml``).
    run_folder : str
        The run's ``--output_folder``.
    overrides : dict
        Command-line overrides (those neither the YAML nor a fragment it
        includes declares are left out).
    epochs : int
        ``--number_of_epochs``.
    """

    #: ``SB_LOG_LEVEL`` for the recipe process (None: SpeechBrain's own).
    log_level = None

    def __init__(self, stem, run_folder, overrides, epochs):
        self.stem = stem
        self.folder = run_folder
        declared = FragmentTree(
            os.path.join(RECIPE, "hparams", f"{stem}.yaml")
        ).all_keys()
        flags = [
            f"--{key}={value}" for key, value in overrides.items()
            if key in declared
        ]
        self.cmd = [
            sys.executable, "train.py", f"hparams/{stem}.yaml",
            f"--output_folder={run_folder}", f"--number_of_epochs={epochs}",
            "--noprogressbar", *flags,
        ]
        self.log_path = os.path.join(run_folder, "demo_stdout.txt")
        self.train_log = os.path.join(run_folder, "train_log.txt")
        self.proc = None
        self._log = None

    def start(self):
        """Start the training process."""
        os.makedirs(self.folder, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.pop("SB_LOG_LEVEL", None)
        if self.log_level is not None:
            env["SB_LOG_LEVEL"] = self.log_level
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.cmd, cwd=RECIPE, env=env, stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def epochs(self):
        """Epoch lines of ``train_log.txt`` written so far."""
        return _train_log_epochs(self.train_log)

    def running(self):
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def finish(self):
        """Wait for the process; return its training seconds.

        Training seconds: the sum of the recipe's per-epoch training times.
        """
        self.proc.wait()
        self._log.close()
        if self.proc.returncode != 0:
            with open(self.log_path, encoding="utf-8") as fin:
                tail = fin.read()[-2000:]
            raise RuntimeError(
                f"training {self.stem} failed (exit {self.proc.returncode}); "
                f"see {self.log_path}:\n{tail}"
            )
        return sum(
            _stat(line, "train", "seconds") or 0.0 for line in self.epochs()
        )

    def stop(self):
        """End the process if it still runs (after a failure elsewhere)."""
        if self.running():
            self.proc.terminate()
            self.proc.wait()


def train_side_by_side(runs, progress):
    """Run recipes concurrently, advancing ``progress`` once per epoch.

    Returns
    -------
    list of float
        Training seconds of each run.
    """
    done = 0
    try:
        for run in runs:
            run.start()
        while any(run.running() for run in runs):
            time.sleep(1.0)
            logs = [run.epochs() for run in runs]
            count = sum(len(lines) for lines in logs)
            if count > done:
                progress.update(count - done)
                done = count
                parts = []
                for run, lines in zip(runs, logs):
                    if not lines:
                        continue
                    sisnr = _stat(lines[-1], "valid", "si-snr")
                    if sisnr is not None:
                        parts.append(f"{run.stem} {sisnr:.1f}")
                if parts:
                    progress.set_postfix_str(
                        "valid SI-SNR (dB): " + ", ".join(parts)
                    )
        seconds = [run.finish() for run in runs]
    finally:
        for run in runs:
            run.stop()
    count = sum(len(run.epochs()) for run in runs)
    progress.update(max(count - done, 0))
    return seconds


def read_test_averages(run_folder):
    """The ``avg`` row of a run's ``test_results.csv`` as floats."""
    with open(os.path.join(run_folder, "test_results.csv"),
              encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    average = next(row for row in rows if row["snt_id"] == "avg")
    return {k: float(v) for k, v in average.items() if k != "snt_id"}, rows


def results_table(results):
    """Markdown table of the demo results.

    Example
    -------
    >>> table = results_table([{"model": "m", "si-snr_i": 1.0, "sdr_i": 2.0,
    ...     "noise_si-snr": 3.0, "inference_parameters": 1000,
    ...     "train_seconds": 4.0, "noise_output": False}])
    >>> print(table.splitlines()[-1])
    | m | 1.00 | 2.00 | 3.00 (residual) | 1,000 | 4 |
    """
    lines = [
        "| model | SI-SNRi (dB) | SDRi (dB) | noise SI-SNR (dB) | "
        "parameters at inference | training seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        noise = f"{row['noise_si-snr']:.2f}"
        if not row["noise_output"]:
            noise += " (residual)"
        lines.append(
            f"| {row['model']} | {row['si-snr_i']:.2f} | {row['sdr_i']:.2f} "
            f"| {noise} | {row['inference_parameters']:,} "
            f"| {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def _spectrogram(signal, sample_rate):
    """Log-magnitude STFT (dB) of a signal ``[T]``."""
    n_fft = 256 if sample_rate <= 8000 else 512
    spec = torch.stft(
        signal.float(), n_fft=n_fft, hop_length=n_fft // 4,
        window=torch.hann_window(n_fft), return_complex=True,
    ).abs()
    return 20 * torch.log10(spec + 1e-5)


def plot_spectrograms(path, rows, sample_rate, title, row_labels=None):
    """Save a grid of spectrograms, one row per list of (label, signal).

    Each panel is scaled to its own maximum (0 dB) with a 60 dB range, so
    that estimates of any scale compare with the references.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(3.6 * columns, 2.7 * len(rows)),
        squeeze=False, sharex=True, sharey=True,
    )
    image = None
    for r, row in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            if c >= len(row):
                axis.axis("off")
                continue
            label, signal = row[c]
            spec = _spectrogram(signal, sample_rate)
            spec = (spec - spec.max()).numpy()
            seconds = signal.shape[0] / sample_rate
            image = axis.imshow(
                spec, origin="lower", aspect="auto", cmap="magma",
                vmin=-60, vmax=0,
                extent=[0, seconds, 0, sample_rate / 2000],
            )
            axis.set_title(label, fontsize=10)
            if c == 0:
                name = row_labels[r] if row_labels else ""
                axis.set_ylabel(f"{name}\nkHz" if name else "kHz")
            if r == len(rows) - 1:
                axis.set_xlabel("s")
    fig.suptitle(title, fontsize=12)
    fig.colorbar(image, ax=axes, shrink=0.8, label="dB (re panel maximum)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _pit_order(estimates, references):
    """Put estimates ``[T, S]`` in the order of references ``[T, S]``."""
    loss = pairwise_neg_sisnr(estimates.unsqueeze(0), references.unsqueeze(0))
    _, perm = best_permutation(loss)
    return estimates[:, perm[0]]


def examples(out, runs, manifest, sample_rate, count=2):
    """Spectrogram PNGs and wavs of the first test mixtures.

    Returns
    -------
    list of str
        The PNG files written.
    """
    models = {
        name: NoiseAwareSeparation.from_source(folder, chunk_seconds=60.0)
        for name, folder in runs.items()
    }
    pngs = []
    for row in read_manifest(manifest, 2)[:count]:
        utt = row["ID"]
        mix = read_audio(row["mix_wav"], sample_rate)
        refs = torch.stack(
            [read_audio(row[f"s{i}_wav"], sample_rate) for i in (1, 2)], 1
        )
        noise = read_audio(row["noise_wav"], sample_rate)
        wav_dir = os.path.join(out, "examples")
        signals = {"mixture": mix, "s1": refs[:, 0], "s2": refs[:, 1],
                   "noise": noise}
        grid = [[("mixture", mix), ("reference s1", refs[:, 0]),
                 ("reference s2", refs[:, 1]), ("reference noise", noise)]]
        for model in models.values():
            result = model.separate(mix)
            speakers = _pit_order(result["speakers"], refs)
            tag = "nass" if model.noise_index is not None else "baseline"
            if result["noise"] is not None:
                noise_est, noise_label = result["noise"], "noise estimate"
            else:
                noise_est = mix - speakers.sum(dim=1)
                noise_label = "residual: mix - s1 - s2"
            grid.append([
                ("s1 estimate", speakers[:, 0]),
                ("s2 estimate", speakers[:, 1]),
                (noise_label, noise_est),
            ])
            signals[f"{tag}_s1"] = speakers[:, 0]
            signals[f"{tag}_s2"] = speakers[:, 1]
            signals[f"{tag}_noise"] = noise_est
        peak = max(float(sig.abs().max()) for sig in signals.values())
        scale = 0.99 / peak if peak > 0.99 else 1.0
        for key, sig in signals.items():
            write_audio(os.path.join(wav_dir, f"{utt}_{key}.wav"),
                        sig * scale, sample_rate)
        png = os.path.join(out, f"spectrograms_{utt}.png")
        plot_spectrograms(png, grid, sample_rate, f"mini WHAM! test {utt}",
                          row_labels=["references", *models])
        pngs.append(png)
    return pngs


@exit_on_user_error
def main(argv=None):
    """Run the demo; returns the results (list of dict)."""
    from tqdm import tqdm

    args = parse_args(argv)
    # Quiet SpeechBrain's INFO/warnings in this process; the recipe runs
    # keep the level they would have had (RecipeRun restores it).
    RecipeRun.log_level = os.environ.get("SB_LOG_LEVEL")
    os.environ["SB_LOG_LEVEL"] = "ERROR"
    if args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    start = time.time()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    overrides = dict(DEMO_OVERRIDES, seed=args.seed)
    if args.quick:
        overrides.update(QUICK_OVERRIDES)
    size = overrides.get("mini_corpus_size", "small")

    print(f"[1/4] mini WHAM! corpus ({size}) ...", flush=True)
    corpus = ensure_mini_corpus("wham", size=size, seed=0)
    corpus_seconds = time.time() - start

    print(f"[2/4] training {len(MODELS)} models side by side, {args.epochs} "
          "epochs each (the WHAM! recipe; logs in runs/<model>/)", flush=True)
    runs = {
        name: RecipeRun(stem, os.path.join(out, "runs", stem), overrides,
                        args.epochs)
        for name, stem in MODELS
    }
    with tqdm(total=len(MODELS) * args.epochs, unit="epoch",
              desc="training", dynamic_ncols=True) as progress:
        seconds = train_side_by_side(list(runs.values()), progress)
    train_seconds = dict(zip(runs, seconds))
    runs = {name: run.folder for name, run in runs.items()}

    print("[3/4] results on the mini WHAM! test set", flush=True)
    results = []
    for name, stem in MODELS:
        averages, _ = read_test_averages(runs[name])
        model = NoiseAwareSeparation.from_source(runs[name])
        results.append({
            "model": name,
            "recipe": f"recipes/WHAM/separation/hparams/{stem}.yaml",
            "si-snr_i": averages["si-snr_i"],
            "sdr_i": averages["sdr_i"],
            "si-snr": averages["si-snr"],
            "sdr": averages["sdr"],
            "noise_si-snr": averages["noise_si-snr"],
            "noise_output": model.noise_index is not None,
            "inference_parameters": sum(
                p.numel() for p in model.separator.parameters()
            ),
            "train_seconds": train_seconds[name],
        })
    table = results_table(results)
    print(table, flush=True)

    print("[4/4] spectrograms and example wavs", flush=True)
    save = os.path.join(runs[MODELS[0][0]], "save")
    manifest = prepare_wham(corpus, save, skip_prep=True)["test"]
    pngs = examples(out, runs, manifest, sample_rate=8000)
    total = time.time() - start
    note = (
        "Mini WHAM! corpus (synthetic eSpeak NG speech and noises), "
        f"{args.epochs} epochs (100 steps each) of CPU-size models "
        "(lobes.cpu_settings) trained side by side, one CPU thread each, "
        f"seed {args.seed}: one run, not comparable with published WHAM! "
        "results, and not a test of whether NASS helps: that is the "
        "warm-started, paired comparison of benchmarks/nass_vs_baseline.py "
        "(recipes/WHAM/separation/README.md). For the baseline, the noise "
        "column is the SI-SNR of the residual mixture - sum(speakers)."
    )
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(f"# NASS demo on the mini WHAM! corpus\n\n{table}\n\n{note}\n"
                f"\nOverrides of the recipe YAMLs: `{overrides}`.\n"
                f"Wall time: {total:.0f} s in all (corpus {corpus_seconds:.0f}"
                " s).\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({
            "results": results, "epochs": args.epochs,
            "overrides": overrides, "corpus": corpus,
            "wall_seconds": total, "corpus_seconds": corpus_seconds,
            "spectrograms": pngs, "note": note,
        }, f, indent=2)
    print(f"Done in {total / 60:.1f} min: {out}/results.md, results.json, "
          f"{len(pngs)} spectrogram PNGs, examples/*.wav", flush=True)
    return results


if __name__ == "__main__":
    main()
