#!/usr/bin/env python3
"""Train the speech models of unsupervised audio-visual separation.

AV-VAE (Nguyen, Sadeghi, Ricci & Alameda-Pineda, MLSP 2021) learns a
generative model of *clean* speech spectra conditioned on the lips; at test
time ``separate.py`` separates noisy multi-speaker mixtures with it by Monte
Carlo EM, without having seen a mixture in training:

    python train.py hparams/av_vae.yaml         # AV-VAE, mini AV corpus
    python train.py hparams/a_vae.yaml          # A-VAE (audio only)
    python train.py hparams/supervised.yaml     # supervised baseline
    python train.py hparams/av_vae.yaml --data_folder=/path/to/ntcd-timit
    python train.py hparams/av_vae.yaml --speaker_dependent=True

A YAML that wires a ``vae`` (``av_vae.yaml``, ``a_vae.yaml``) trains the
A-VAE or AV-VAE on clean utterances
(``lobes.brains.av_vae.AVVAEBrain``); ``supervised.yaml`` trains the
supervised mask-based baseline on the corpus's mixtures
(``lobes.brains.av_vae.MixtureSeparatorBrain``).

Authors
 * noise-robust-sb contributors 2025
"""

import sys

from lobes.brains.av_vae import AVVAEBrain, MixtureSeparatorBrain
from lobes.data.av_data import av_datasets, mixture_datasets
from lobes.data.av_prepare import PREPARE
from lobes.errors import HparamsError, exit_on_user_error
from lobes.recipe import (
    MINI_MARKERS,
    fit_and_test,
    prepare_corpus,
    start_experiment,
)


def prepare(hparams, save_folder):
    """Check the corpus and write the manifests (see lobes.data.av_prepare)."""
    corpus = hparams["corpus"]
    if corpus not in PREPARE:
        raise HparamsError(
            f"corpus={corpus!r} is not one of {', '.join(PREPARE)}"
        )
    if hparams["data_folder"] in MINI_MARKERS and corpus != "ntcd-timit":
        raise HparamsError(
            "the mini AV corpus is in the NTCD-TIMIT layout; use "
            "corpus: ntcd-timit or pass --data_folder"
        )
    return prepare_corpus(
        PREPARE[corpus], dict(hparams, save_folder=save_folder), "av",
        num_mixtures=hparams["num_mixtures"],
        seed=hparams["mixture_seed"],
    )  # fmt: skip


@exit_on_user_error
def main(argv=None):
    """Prepare the corpus, train, then test the best checkpoint."""
    hparams, _, run_opts = start_experiment(argv)
    manifests = prepare(hparams, hparams["save_folder"])
    if "vae" in hparams:  # a VAE (av_vae.yaml, a_vae.yaml)
        datasets = av_datasets(hparams["vae_training"], manifests)
        brain_class = AVVAEBrain
    else:  # the supervised baseline
        datasets = mixture_datasets(hparams, manifests)
        brain_class = MixtureSeparatorBrain
    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if "vae" not in hparams:
        brain.train_items = datasets["train"].mixture_items
    return fit_and_test(brain, datasets, hparams)


if __name__ == "__main__":
    main(sys.argv[1:])
