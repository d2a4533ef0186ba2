#!/usr/bin/env python3
"""Pre-train a small HuBERT on VoiceBank-DEMAND's training speech, offline.

Where the hub cannot be reached, contrastive regularization needs a frozen
self-supervised model trained here. This recipe trains one on the training
folders (the mini corpus by default) and writes it to its output folder as
a hub model, which the CR recipes take as ``--ssl_source=<output_folder>``:

    python train.py hparams/hubert_small.yaml
    python train.py hparams/hubert_small.yaml --data_folder=/path/to/voicebank
    python -m lobes.ssl.probe results/hubert_small/0   # word probe

The training logic is ``lobes.brains.ssl_pretrain.SSLPretrainBrain``; the
targets ``lobes.ssl.targets``, the batches
``lobes.data.ssl_pretrain_data``, the model and its loss
``lobes.models.hubert_pretrain``. Ctrl-C (or SIGTERM) stops after the
current step with a checkpoint (``lobes.interrupt.GracefulStop``, as every
recipe); the same command resumes and ends in the same state as an
uninterrupted run. A finished folder is left as it is.

Authors
 * noise-robust-sb contributors 2025
"""

import glob
import logging
import os
import sys

import torch
from speechbrain.utils.distributed import if_main_process

from lobes.brains.ssl_pretrain import MODEL_FILES, SSLPretrainBrain
from lobes.data.prepare import prepare_voicebank
from lobes.data.ssl_pretrain_data import (
    HeldOutUtterances,
    MaskedPredictionCorpus,
    read_clean_noisy,
)
from lobes.errors import UserError, exit_on_user_error
from lobes.interrupt import GracefulStop
from lobes.recipe import prepare_corpus, start_experiment

logger = logging.getLogger(__name__)


def settings_of(hparams):
    """The plain-valued hparams (numbers, strings, lists), for the log.

    Example
    -------
    >>> settings_of({"lr": 0.1, "model": object(), "__set_seed": None})
    {'lr': 0.1}
    """
    return {
        key: value for key, value in hparams.items()
        if not key.startswith("__")
        and isinstance(value, (bool, int, float, str, list))
    }  # fmt: skip


def check_checkpoint_format(save_folder):
    """Refuse, in one line, a checkpoint of the recipe's former format.

    Before the recipe shared the package's ``RandomState`` (a weights-only
    torch file), its checkpoints held the random state as JSON; they
    cannot be resumed.

    Arguments
    ---------
    save_folder : str
        The checkpointer's folder (``save_folder``).

    Raises
    ------
    UserError
        A ``random_state.ckpt`` there is JSON.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_checkpoint_format(folder)
    >>> os.makedirs(os.path.join(folder, "CKPT+1"))
    >>> _ = open(os.path.join(folder, "CKPT+1", "random_state.ckpt"),
    ...          "w").write('{"python": []}')
    >>> check_checkpoint_format(folder)
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: ...former format...
    """
    pattern = os.path.join(str(save_folder), "CKPT+*", "random_state.ckpt")
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as fin:
            if fin.read(1) == b"{":
                raise UserError(
                    f"{path}: a checkpoint of the recipe's former format "
                    "(random state as JSON), which cannot be resumed; "
                    "delete its folder to start over, or pass another "
                    "--output_folder"
                )


@exit_on_user_error
def main(argv=None):
    """Prepare the corpus, compute the targets, train, export the model."""
    hparams, _, run_opts = start_experiment(argv)
    check_checkpoint_format(hparams["save_folder"])
    # Deterministic on CPU: one thread count, deterministic kernels.
    torch.set_num_threads(hparams["num_threads"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    manifests = prepare_corpus(
        prepare_voicebank, hparams, "voicebank",
        valid_speakers=hparams["valid_speakers"],
    )  # fmt: skip
    corpus = MaskedPredictionCorpus(
        *read_clean_noisy(manifests["train"]),
        *read_clean_noisy(manifests["valid"]),
        features=hparams["target_features"],
        num_clusters=hparams["num_clusters"],
        speed_factors=hparams["speed_factors"],
        kmeans_iterations=hparams["kmeans_iterations"],
        kmeans_max_frames=hparams["kmeans_max_frames"],
        seed=hparams["seed"],
        log=logger.info,
    )
    hparams["batches"].attach(corpus)
    held_out = HeldOutUtterances(
        corpus, hparams["mask_prob"], hparams["mask_length"], hparams["seed"]
    )
    brain = SSLPretrainBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.majority_cluster = corpus.majority_cluster
    # Ctrl-C or SIGTERM: stop at the next safe point with a checkpoint and
    # one line saying that the same command resumes (exit 128 + signal).
    with GracefulStop(announce=if_main_process()) as brain.stop:
        brain.fit(
            hparams["epoch_counter"],
            hparams["batches"],
            held_out if len(held_out) else None,
            train_loader_kwargs=hparams["train_dataloader_opts"],
            valid_loader_kwargs=hparams["valid_dataloader_opts"],
        )
    brain.stop = None
    out = hparams["output_folder"]
    exported = all(os.path.isfile(os.path.join(out, f)) for f in MODEL_FILES)
    if brain.epochs_run or not exported:
        settings = settings_of(hparams)
        settings["steps"] = brain.optimizer_step
        brain.export(out, corpus, settings)
        logger.info("Saved the model folder %s (--ssl_source=%s)", out, out)
    else:
        logger.info("%s: pre-training already finished; nothing to do", out)
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
