#!/usr/bin/env python3
"""Train and test a speech separator on WHAM! (noisy 2-speaker mixtures).

NASS (noise-aware separation: N + 1 outputs, the last for the noise, and a
patch-wise contrastive loss) or the plain backbone, depending on the YAML:

    python train.py hparams/nass_sepformer.yaml       # mini corpus
    python train.py hparams/nass_sepformer.yaml --data_folder=/path/to/wham
    torchrun --nproc_per_node=4 train.py hparams/nass_sepformer.yaml \\
        --data_folder=/path/to/wham

All the training logic lives in ``lobes.brains.separation.SeparationBrain``.

Authors
 * noise-robust-sb contributors 2025
"""

import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from lobes.brains.separation import SeparationBrain
from lobes.data.prepare import prepare_wham
from lobes.data.separation_data import separation_datasets
from lobes.errors import exit_on_user_error
from lobes.recipe import load_recipe, resolve_data_folder


@exit_on_user_error
def main(argv=None):
    """Prepare WHAM!, train, then test the best checkpoint."""
    hparams, hparams_file, run_opts, overrides = load_recipe(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    data_folder = run_on_main(
        resolve_data_folder,
        args=[hparams["data_folder"], "wham", hparams["mini_corpus_size"]],
    )
    manifests = run_on_main(
        prepare_wham,
        kwargs={
            "data_folder": data_folder,
            "save_folder": hparams["save_folder"],
            "sample_rate": hparams["sample_rate"],
            "mode": hparams["mode"],
            "mixture": hparams["mixture"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets = separation_datasets(hparams, manifests)

    brain = SeparationBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        min_key="loss",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
