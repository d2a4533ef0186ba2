"""The Brain of masked-prediction pre-training (a small HuBERT, offline).

:class:`SSLPretrainBrain` trains ``modules.hubert`` and ``modules.head``
with ``loss`` (:mod:`lobes.models.hubert_pretrain`) on batches of
:class:`~lobes.data.ssl_pretrain_data.MaskedCropBatches`, validates the
masked accuracy on held-out speakers, clean and noisy, after each epoch,
and keeps the latest checkpoint with SpeechBrain's ``Checkpointer``.

It is a :class:`~lobes.brains.base.RecipeBrain`, and so shares the
package's exact resume and graceful stop. Everything random that shapes
training is checkpointed: the batch generator and sampler (by the batches
object), and Python's, NumPy's and torch's global generators
(:class:`lobes.random_state.RandomState`, added by ``RecipeBrain``;
dropout draws from torch's). The loaders get private ``torch.Generator``
objects, so that starting an epoch's iteration draws nothing from torch's
global one. Run ``fit`` under :class:`lobes.interrupt.GracefulStop` (as
the recipe's ``train.py`` does): SIGINT or SIGTERM then stops after the
current step (or after an epoch's checkpoint) and saves an intra-epoch
checkpoint; the same command resumes from it and ends in the same state as
an uninterrupted run.
"""

import json
import logging
import os
import platform
import time

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from lobes.brains.base import RecipeBrain

logger = logging.getLogger(__name__)

#: What :meth:`SSLPretrainBrain.export` writes besides the model folder.
LOG_FILE = "pretrain_log.json"
CENTROIDS_FILE = "kmeans_targets.pt"
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


class LinearWarmupDecay:
    """Learning-rate factor: linear warm-up, then linear decay to 0.

    Arguments
    ---------
    total_steps : int
        Optimiser steps of the whole training.
    warmup_fraction : float
        Share of the steps spent warming up.

    Example
    -------
    >>> schedule = LinearWarmupDecay(100, 0.1)
    >>> [schedule(step) for step in (0, 9, 10, 55, 100)]
    [0.1, 1.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, total_steps, warmup_fraction=0.08):
        self.total_steps = int(total_steps)
        self.warmup = max(1, round(float(warmup_fraction) * self.total_steps))

    def __call__(self, step):
        """The factor of the learning rate at optimiser step ``step``."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(
            0.0,
            (self.total_steps - step) / max(1, self.total_steps - self.warmup),
        )


@register_checkpoint_hooks
class PretrainHistory:
    """Per-epoch statistics and training time, checkpointed (JSON).

    ``window`` holds the masked accuracies of the current epoch's steps.

    Example
    -------
    >>> history = PretrainHistory()
    >>> history.epochs.append({"epoch": 1, "loss": 2.0})
    >>> history.epochs
    [{'epoch': 1, 'loss': 2.0}]
    """

    def __init__(self):
        self.epochs = []
        self.window = []
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(vars(self), fout)

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        del end_of_epoch
        with open(path, encoding="utf-8") as fin:
            vars(self).update(json.load(fin))


def machine_description():
    """One line naming the CPU count, torch threads and platform.

    Example
    -------
    >>> "torch threads" in machine_description()
    True
    """
    return (
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"{platform.machine()} {platform.system()}, torch {torch.__version__}"
    )


class SSLPretrainBrain(RecipeBrain):
    """Masked prediction of k-means targets, with exact resume.

    Modules: ``hubert`` (:class:`~lobes.models.hubert_pretrain.SmallHubert`)
    and ``head`` (:class:`~lobes.models.hubert_pretrain.PredictionHead`).
    Hparams: ``loss``, ``lr``, ``weight_decay``, ``lr_schedule``
    (a factor per optimiser step), ``train_logger``. Set
    ``majority_cluster`` (the most frequent training target) to report the
    majority-class accuracy of validation. As a
    :class:`~lobes.brains.base.RecipeBrain` it checkpoints the global
    random generators and stops gracefully when ``stop`` is a
    :class:`~lobes.interrupt.GracefulStop` (``with GracefulStop() as
    brain.stop: brain.fit(...)``); its epochs' statistics, learning-rate
    schedule and checkpoints are its own.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from lobes.models.hubert_pretrain import MaskedPredictionLoss
    >>> class Hidden(torch.nn.Module):
    ...     def forward(self, wav, mask):
    ...         return wav.unsqueeze(-1).expand(-1, -1, 3)
    >>> brain = SSLPretrainBrain(
    ...     {"hubert": Hidden(), "head": torch.nn.Linear(3, 2)},
    ...     lambda groups: torch.optim.SGD(groups, lr=0.1),
    ...     hparams={"loss": MaskedPredictionLoss(0.5), "lr": 0.1,
    ...              "weight_decay": 0.0,
    ...              "lr_schedule": LinearWarmupDecay(4)})
    >>> batch = (torch.randn(2, 5), torch.zeros(2, 5, dtype=torch.long),
    ...          torch.ones(2, 5, dtype=torch.bool))
    >>> held_out = (torch.randn(1, 5), torch.randn(1, 5),
    ...             torch.zeros(1, 5, dtype=torch.long),
    ...             torch.ones(1, 5, dtype=torch.bool))
    >>> brain.fit(range(1), [batch, batch], [held_out], progressbar=False,
    ...           train_loader_kwargs={"batch_size": None},
    ...           valid_loader_kwargs={"batch_size": None})
    >>> [sorted(e["valid"])[:2] for e in brain.history.epochs]
    [['frames', 'loss']]
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.history = PretrainHistory()
        self.epochs_run = 0
        self.majority_cluster = -1
        self._clock = None
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("history", self.history)

    # ------------------------------------------------------------ set-up
    def init_optimizers(self):
        """The optimiser on two groups: weight decay on matrices only."""
        if self.opt_class is None:
            return
        params = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizer = self.opt_class([
            {"params": [p for p in params if p.dim() >= 2],
             "weight_decay": self.hparams.weight_decay},
            {"params": [p for p in params if p.dim() < 2],
             "weight_decay": 0.0},
        ])  # fmt: skip
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-",
                        **loader_kwargs):
        """``RecipeBrain``'s loader; the validation one's generator private.

        torch's ``DataLoader`` draws a seed for its workers at each
        iteration from ``generator``, by default torch's global one, which
        dropout draws from too. ``RecipeBrain`` gives the train loader its
        own; the validation loader gets one here, so that validating draws
        nothing from torch's global generator either.
        """
        if stage != sb.Stage.TRAIN:
            loader_kwargs.setdefault("generator", torch.Generator())
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``.

        Without ``valid_set`` an epoch ends (log, checkpoint) after
        training. Under a :class:`~lobes.interrupt.GracefulStop` in
        ``self.stop``, a signal stops it at the next safe point.
        """
        self._validates = valid_set is not None
        super().fit(epoch_counter, train_set, valid_set, **kwargs)

    # ------------------------------------------------------------ steps
    def compute_forward(self, batch, stage):
        """Logits of the batch (TRAIN) or of the clean and noisy input."""
        if stage == sb.Stage.TRAIN:
            wav, _, mask = (x.to(self.device) for x in batch)
            return self.modules.head(self.modules.hubert(wav, mask))
        clean, noisy, _, mask = (x.to(self.device) for x in batch)
        return tuple(
            self.modules.head(self.modules.hubert(wav, mask))
            for wav in (clean, noisy)
        )

    def compute_objectives(self, predictions, batch, stage):
        """Masked-prediction loss; accuracies gathered for the stage."""
        targets = batch[-2].to(self.device)
        mask = batch[-1].to(self.device)
        if stage == sb.Stage.TRAIN:
            loss, stats = self.hparams.loss(predictions, targets, mask)
            self.history.window.append(stats["masked_acc"])
            return loss
        loss, _ = self.hparams.loss(predictions[0], targets, mask)
        chosen = targets[mask]
        self._counts["frames"] += chosen.numel()
        for name, logits in zip(("clean", "noisy"), predictions):
            pred = logits.argmax(-1)[mask]
            self._counts[name] += int((pred == chosen).sum())
        majority = getattr(self, "majority_cluster", -1)
        self._counts["majority"] += int((chosen == majority).sum())
        return loss

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rate of this optimiser step."""
        factor = self.hparams.lr_schedule(self.optimizer_step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.hparams.lr * factor

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """On a signal: count the training time, then ``RecipeBrain``'s
        stop (an intra-epoch checkpoint, one line)."""
        if self.stop is not None and self.stop.requested:
            self._add_time()
        super().on_fit_batch_end(batch, outputs, loss, should_step)

    # ------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Reset the accuracy counters; start the training clock.

        A training stage resumed mid-epoch (``step`` restored from an
        intra-epoch checkpoint) keeps the accuracies of its first steps.
        ``RecipeBrain``'s reseeds the train loader's generator.
        """
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN and not self.step:
            self.history.window = []
        self._counts = dict.fromkeys(
            ("frames", "clean", "noisy", "majority"), 0
        )
        if stage == sb.Stage.TRAIN:
            self._clock = (time.time(), time.process_time())

    def _add_time(self):
        if self._clock is not None:
            wall, cpu = self._clock
            self.history.train_seconds += time.time() - wall
            self.history.cpu_seconds += time.process_time() - cpu
            self._clock = None

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the epoch, keep its statistics and the latest checkpoint.

        Then, on a signal, stop (the epoch's checkpoint is saved).
        """
        if stage == sb.Stage.TRAIN:
            self._add_time()
            self.epochs_run += 1
            self._train_stats = {
                "loss": stage_loss,
                "masked_acc": float(np.nanmean(self.history.window))
                if self.history.window else float("nan"),
            }  # fmt: skip
            if getattr(self, "_validates", False):
                return
        frames = max(1, self._counts["frames"])
        valid = {} if stage == sb.Stage.TRAIN else {
            "loss": stage_loss,
            "masked_acc_clean": self._counts["clean"] / frames,
            "masked_acc_noisy": self._counts["noisy"] / frames,
            "majority_acc": self._counts["majority"] / frames,
            "frames": self._counts["frames"],
        }
        lr = self.optimizer.param_groups[0]["lr"]
        self.history.epochs.append({
            "epoch": epoch, "optimizer_steps": self.optimizer_step, "lr": lr,
            "train": self._train_stats, "valid": valid,
        })  # fmt: skip
        train_logger = getattr(self.hparams, "train_logger", None)
        if train_logger is not None:
            train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": lr},
                train_stats=self._train_stats,
                valid_stats=valid or None,
            )
        saved = None
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(
                meta={"epoch": epoch}, num_to_keep=1
            )
            saved = str(self.checkpointer.checkpoints_dir)
        if self.stop is not None:
            self.stop.stop_here(epoch, save=lambda: saved)

    # ------------------------------------------------------------ export
    def export(self, folder, corpus, settings):
        """Write the hub-format model folder and the pre-training log.

        Arguments
        ---------
        folder : str
            Gets ``config.json``, ``model.safetensors``,
            ``preprocessor_config.json`` (``--ssl_source=<folder>``),
            ``pretrain_log.json`` and ``kmeans_targets.pt``.
        corpus : MaskedPredictionCorpus
            The corpus of the targets.
        settings : dict
            Recorded in the log as ``config`` (plain values).

        Returns
        -------
        dict
            The log.
        """
        self.modules.hubert.save_model_folder(folder)
        torch.save(
            {"centroids": corpus.centroids, "features": corpus.features.name},
            os.path.join(folder, CENTROIDS_FILE),
        )
        result = {
            "finished": True,
            "config": settings,
            "parameters": sum(
                p.numel() for p in self.modules.hubert.parameters()
            ),
            "train_seconds": round(self.history.train_seconds, 1),
            "cpu_seconds": round(self.history.cpu_seconds, 1),
            "machine": machine_description(),
            "training_utterances": corpus.num_utterances,
            "holdout_utterances": len(corpus.holdout),
            "target_features": corpus.features.name,
            "kmeans_mean_squared_distance": corpus.inertia,
            "cluster_share_max": max(corpus.cluster_share),
            "history": [
                {"epoch": e["epoch"], "steps": e["optimizer_steps"],
                 **e["train"]}
                for e in self.history.epochs
            ],
            "holdout": [
                {"epoch": e["epoch"], "steps": e["optimizer_steps"],
                 **e["valid"]}
                for e in self.history.epochs if e["valid"]
            ],
        }  # fmt: skip
        tmp = os.path.join(folder, LOG_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fout:
            json.dump(result, fout, indent=2, sort_keys=True)
            fout.write("\n")
        os.replace(tmp, os.path.join(folder, LOG_FILE))
        return result
