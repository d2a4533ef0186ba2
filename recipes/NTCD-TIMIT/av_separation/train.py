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

A YAML that includes the VAE experiment (``hparams/av/vae_experiment.yaml``)
trains the A-VAE or AV-VAE on clean utterances
(``lobes.brains.av_vae.AVVAEBrain``); ``supervised.yaml`` trains the
supervised mask-based baseline on the corpus's mixtures
(``lobes.brains.av_vae.MixtureSeparatorBrain``).

Authors
 * noise-robust-sb contributors 2025
"""

import sys

from lobes.brains.av_vae import AVVAEBrain, MixtureSeparatorBrain
from lobes.data.av_prepare import PREPARE, av_datasets, mixture_datasets
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
    if "experiment" in hparams:  # a VAE (hparams/av/vae_experiment.yaml)
        experiment = hparams["experiment"]
        manifests = prepare(hparams, experiment["save_folder"])
        datasets = av_datasets(experiment, manifests)
        brain = AVVAEBrain(
            modules=experiment["modules"],
            opt_class=experiment["training"]["opt_class"],
            hparams=experiment,
            run_opts=run_opts,
            checkpointer=experiment["checkpointer"],
        )
    else:  # the supervised baseline
        experiment = hparams
        manifests = prepare(hparams, hparams["save_folder"])
        datasets = mixture_datasets(hparams, manifests)
        brain = MixtureSeparatorBrain(
            modules=hparams["modules"],
            opt_class=hparams["training"]["opt_class"],
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=hparams["checkpointer"],
        )
        brain.train_items = datasets["train"].mixture_items
    return fit_and_test(brain, datasets, experiment)


if __name__ == "__main__":
    main(sys.argv[1:])
