#!/usr/bin/env python3
"""Enhance noisy speech (one speaker) or separate noisy two-speaker
mixtures with AV-VAE, A-VAE, NMF and the supervised baseline, and evaluate
them.

On the corpus's test mixtures (the default: single-speaker enhancement,
each speaker of a test mixture with the noise alone, ``num_speakers: 1``;
``--num_speakers=2`` separates the two-speaker mixtures), after training
the models with train.py:

    python separate.py hparams/separate.yaml \\
        --av_vae_folder=results/av_vae/1234 --a_vae_folder=results/a_vae/1234 \\
        --supervised_folder=results/supervised/1234

writes ``results.csv`` (SDR, SI-SDR, their gains over the unprocessed
mixture, PESQ, STOI per mixture and method), ``summary.json``,
``summary.md`` and example wavs into ``--output_folder``. A single mixture
with each speaker's lips (a comma-separated list of ``.npy`` files, or a
folder of them, one per speaker in order):

    python separate.py hparams/separate.yaml --mixture=mix.wav \\
        --lips=spk1.npy,spk2.npy --fps=30 \\
        --av_vae_folder=results/av_vae/1234 --a_vae_folder=results/a_vae/1234

writes ``<output_folder>/separated/<mixture>_<method>_s<j>.wav``; with
``--references=s1.wav,s2.wav`` it also evaluates them. One speaker
(single-speaker enhancement of a noisy recording) takes one lips file:

    python separate.py hparams/separate.yaml --mixture=noisy.wav \\
        --lips=lips.npy --fps=30 --av_vae_folder=results/av_vae/1234 \\
        --a_vae_folder=results/a_vae/1234

A lips file (``.npy`` or ``.mat``) is ``T x H x W`` or the authors'
``(H*W) x T`` layout, one column-major column per frame (a 2-D array
whose first dimension is a perfect square larger than its second), uint8
or float in [0, 1]; it is resized to the model's ROI, converted to the
STFT's frame rate, and refused in one line when its duration is more than
0.5 s (or 10 % of the audio) from the mixture's
(``lobes.data.lip_input``). With ``lips_fallback: True`` (the default,
which needs ``--a_vae_folder``), AV-VAE falls back to the A-VAE on the
frames its lips do not explain (a per-frame switch in the MCEM) and
prints one line per mixture whose lips explain fewer than half of a
speaker's frames, and the A-VAE alone enhances an item whose lips do not
move (``min_lip_motion``); an MCEM with ``max_noise_growth`` prints one
line per mixture it stopped because the noise model swallowed the speech.
The logic is in ``lobes.separation_mcem``.

Authors
 * noise-robust-sb contributors 2025
"""

import json
import os
import sys

import torch
from train import prepare

from lobes.data.audio import read_audio
from lobes.data.av_data import read_rows
from lobes.data.lip_corruption import CORRUPTIONS, corrupt_lips
from lobes.data.lip_input import load_lips
from lobes.errors import DataFolderError, HparamsError, exit_on_user_error
from lobes.recipe import load_recipe, setup_experiment
from lobes.separation_mcem import (
    AVMixture,
    Separators,
    evaluate_methods,
    lips_paths,
    load_test_mixtures,
    summary_table,
)
from lobes.separation_mcem.pipeline import _write_wavs


def one_mixture(hparams):
    """The ``--mixture``/``--lips``/``--references`` item, checked.

    One lips file: single-speaker enhancement; several: separation. Each
    file goes through :func:`lobes.data.lip_input.load_lips` (``T x H x
    W`` or ``(H*W) x T`` column-major, uint8 or float in [0, 1], at
    ``--fps``): its duration is checked against the mixture's and its
    frames are converted to the STFT's frame rate (the size to each
    model's in :meth:`Separators.run`).
    """
    rate = int(hparams["sample_rate"])
    if not hparams["lips"]:
        raise DataFolderError(
            f"{hparams['mixture']}: no lips given; pass --lips=<file> (one "
            "lips file per speaker, comma-separated; one file: enhancement)"
        )
    mixture = read_audio(hparams["mixture"], rate)
    stft = hparams["stft"]
    lips = [
        load_lips(
            path, fps=float(hparams["fps"]),
            layout=hparams.get("lips_layout") or "auto",
            audio_seconds=mixture.numel() / rate,
            rate=rate / stft.hop_length,
            num_frames=stft.num_frames(mixture.numel()),
        ).frames
        for path in lips_paths(hparams["lips"])
    ]  # fmt: skip
    if not lips:
        raise DataFolderError(
            f"{hparams['lips']}: no lips files; pass one per speaker"
        )
    fps = rate / stft.hop_length
    references = None
    if hparams["references"]:
        refs = [read_audio(p, rate) for p in lips_paths(hparams["references"])]
        if len(refs) != len(lips) or any(
            r.numel() != mixture.numel() for r in refs
        ):
            raise DataFolderError(
                f"{hparams['references']}: need one reference per speaker, "
                "each as long as the mixture"
            )
        references = torch.stack(refs)
    stem = os.path.splitext(os.path.basename(hparams["mixture"]))[0]
    return AVMixture(stem, mixture, lips, fps, references)


@exit_on_user_error
def main(argv=None):
    """Separate the test mixtures (or one mixture) with every method."""
    hparams, hparams_file, run_opts, overrides = load_recipe(argv)
    device = run_opts.get("device", "cpu")
    item = one_mixture(hparams) if hparams["mixture"] else None
    if int(hparams["num_speakers"]) not in (1, 2):
        raise HparamsError(
            f"num_speakers={hparams['num_speakers']} is not 1 (enhancement) "
            "or 2 (separation)"
        )
    if hparams["lips_corruption"] not in CORRUPTIONS:
        raise HparamsError(
            f"lips_corruption={hparams['lips_corruption']!r} is not one of "
            f"{', '.join(CORRUPTIONS)}"
        )
    setup_experiment(hparams, hparams_file, run_opts, overrides)
    manifests = prepare(hparams, hparams["save_folder"])
    train_wavs = [row["wav"] for row in read_rows(manifests["train"])]
    separators = Separators(hparams, train_wavs, device)
    for method in separators.skipped:
        print(f"notice: {method} skipped (no --{method}_folder given)")
    speakers = len(item.lips) if item is not None else int(
        hparams["num_speakers"]
    )
    if "supervised" in separators.methods:
        outputs = separators.models["supervised"][0].num_spks
        if outputs != speakers:
            separators.methods.remove("supervised")
            print(f"notice: supervised skipped (it separates {outputs} "
                  f"speakers, the task has {speakers})")
    output = hparams["output_folder"]
    if item is not None:
        folder = os.path.join(output, "separated")
        for method in separators.methods:
            estimates = separators.run(method, [item])[0]
            paths = _write_wavs(folder, f"{item.id}_{method}", estimates,
                                int(hparams["sample_rate"]))  # fmt: skip
            print(f"{method}: {', '.join(paths)}")
        if item.references is None:
            return None
        items = [item]
    else:
        split = hparams["eval_split"]
        if split not in ("valid", "test"):
            raise HparamsError(
                f"eval_split={split!r} is not one of valid, test"
            )
        items = load_test_mixtures(
            manifests[f"mix_{split}"], hparams["max_test_mixtures"],
            num_speakers=speakers,
        )
        items = corrupt_lips(items, hparams["lips_corruption"],
                             seed=int(hparams["seed"]))  # fmt: skip
    summary = evaluate_methods(
        separators, items, output,
        batch_size=int(hparams["batch_mixtures"]),
        quality=bool(hparams["quality_metrics"]),
        n_audio=int(hparams["n_audio_to_save"]),
    )  # fmt: skip
    summary["settings"] = {
        key: hparams.get(key)
        for key in ("seed", "av_vae_folder", "a_vae_folder",
                    "supervised_folder", "max_test_mixtures", "eval_split",
                    "av_vae_iterations", "a_vae_iterations", "lips_fallback",
                    "num_speakers", "lips_corruption")
    }  # fmt: skip
    with open(os.path.join(output, "summary.json"), "w") as fout:
        json.dump(summary, fout, indent=2, sort_keys=True)
        fout.write("\n")
    table = summary_table(summary)
    with open(os.path.join(output, "summary.md"), "w") as fout:
        fout.write(table + "\n")
    print(table)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
