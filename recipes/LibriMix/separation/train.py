#!/usr/bin/env python3
"""Train and test a speech separator on LibriMix (noisy 2- or 3-speaker mix).

NASS (noise-aware separation: N + 1 outputs, the last for the noise, and a
patch-wise contrastive loss) or the plain backbone, depending on the YAML:

    python train.py hparams/nass_sepformer.yaml       # mini Libri2Mix
    python train.py hparams/nass_sepformer.yaml --num_spks=3  # Libri3Mix
    python train.py hparams/nass_sepformer.yaml \\
        --data_folder=/path/to/LibriMix
    torchrun --nproc_per_node=4 train.py hparams/nass_sepformer.yaml \\
        --data_folder=/path/to/LibriMix

All the training logic lives in ``lobes.brains.separation.SeparationBrain``;
the experiment (separator, objectives, optimiser, training loop) is wired
in the YAML itself, from the parameter blocks of ``hparams/separation/``.

Authors
 * noise-robust-sb contributors 2025
"""

import sys

from lobes.brains.separation import SeparationBrain
from lobes.data.prepare import prepare_librimix
from lobes.data.separation_data import separation_datasets
from lobes.errors import exit_on_user_error
from lobes.recipe import fit_and_test, prepare_corpus, start_experiment


@exit_on_user_error
def main(argv=None):
    """Prepare LibriMix, train, then test the best checkpoint."""
    hparams, _, run_opts = start_experiment(argv)
    manifests = prepare_corpus(
        prepare_librimix, hparams, "librimix",
        num_spks=hparams["num_spks"],
        train_split=hparams["train_split"],
        sample_rate=hparams["sample_rate"],
        mode=hparams["mode"],
        mixture=hparams["mixture"],
    )
    datasets = separation_datasets(
        manifests, hparams, hparams["seed"], hparams["mixture"]
    )

    brain = SeparationBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    return fit_and_test(brain, datasets, hparams)


if __name__ == "__main__":
    main(sys.argv[1:])
