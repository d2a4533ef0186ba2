"""Brain logic shared by the separation and enhancement recipes.

``RecipeBrain`` keeps the bookkeeping every recipe repeats in SpeechBrain:
stage statistics, learning-rate annealing on the validation loss, logging,
checkpoints that keep the best model, and test-time result files. Subclasses
write ``compute_forward``/``compute_objectives`` and may add statistics by
overriding :meth:`RecipeBrain.stage_statistics`.
"""

import csv
import math
import os

import speechbrain as sb
import torch

from lobes.data.audio import write_audio


class RecipeBrain(sb.Brain):
    """A Brain with the stage bookkeeping shared by all recipes.

    Hparams it reads when present: ``lr_scheduler`` (a SpeechBrain
    ``ReduceLROnPlateau``-like annealer called with the validation loss),
    ``train_logger``, ``checkpointer`` and ``epoch_counter``.

    Example
    -------
    >>> class Linear(RecipeBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch[0])
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch[1])
    >>> model = torch.nn.Linear(2, 1)
    >>> brain = Linear({"model": model}, lambda p: torch.optim.SGD(p, 0.1))
    >>> data = [(torch.randn(4, 2), torch.randn(4, 1))]
    >>> brain.fit(range(1), data, data, progressbar=False)
    >>> round(brain.last_stage_stats["loss"], 6) >= 0
    True
    """

    def on_stage_start(self, stage, epoch=None):
        """Reset the extra statistics gathered during a stage."""
        self.extra_stats = {}

    def add_stat(self, name, value):
        """Accumulate a scalar statistic to report at the end of the stage.

        Example
        -------
        >>> brain = RecipeBrain({"m": torch.nn.Linear(1, 1)})
        >>> brain.on_stage_start(sb.Stage.TRAIN)
        >>> brain.add_stat("si_snr", 1.0); brain.add_stat("si_snr", 3.0)
        >>> brain.stage_statistics(sb.Stage.TRAIN)
        {'si_snr': 2.0}
        """
        value = float(value.detach()) if torch.is_tensor(value) else value
        total, count = self.extra_stats.get(name, (0.0, 0))
        self.extra_stats[name] = (total + float(value), count + 1)

    def stage_statistics(self, stage):
        """Mean of each statistic added with :meth:`add_stat`."""
        return {
            name: total / max(count, 1)
            for name, (total, count) in self.extra_stats.items()
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Anneal the learning rate, log, and keep the best checkpoint."""
        stats = {"loss": stage_loss, **self.stage_statistics(stage)}
        self.last_stage_stats = stats
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        hparams = getattr(self, "hparams", None)
        logger = getattr(hparams, "train_logger", None)
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch}
            scheduler = getattr(hparams, "lr_scheduler", None)
            if scheduler is not None and self.optimizer is not None:
                _, next_lr = scheduler(
                    [self.optimizer], current_epoch=epoch,
                    current_loss=stage_loss,
                )
                meta["lr"] = next_lr
            if logger is not None:
                logger.log_stats(
                    stats_meta=meta,
                    train_stats=getattr(self, "train_stats", None),
                    valid_stats=stats,
                )
            checkpointer = getattr(self, "checkpointer", None)
            if checkpointer is not None:
                checkpointer.save_and_keep_only(
                    meta={"loss": stage_loss}, min_keys=["loss"]
                )
        elif stage == sb.Stage.TEST and logger is not None:
            counter = getattr(hparams, "epoch_counter", None)
            logger.log_stats(
                stats_meta={
                    "Epoch loaded": getattr(counter, "current", None)
                },
                test_stats=stats,
            )


def write_results_csv(path, rows, average_row=True):
    """Write per-utterance results, plus a final row of column means.

    Arguments
    ---------
    path : str
        Destination CSV.
    rows : list of dict
        One dict per utterance; the first key should be the utterance id.
    average_row : bool
        Append a row whose id is ``avg`` holding the mean of each numeric
        column (NaN values skipped).

    Returns
    -------
    dict
        The column means.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.csv")
    >>> write_results_csv(path, [{"snt_id": "a", "sdr": 1.0},
    ...                          {"snt_id": "b", "sdr": 3.0}])
    {'sdr': 2.0}
    >>> open(path).read().splitlines()[-1]
    'avg,2.0'
    """
    if not rows:
        raise ValueError(f"no results to write to {path}")
    fields = list(rows[0].keys())
    means = {}
    for key in fields[1:]:
        values = [
            float(r[key]) for r in rows
            if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])
        ]
        if values:
            means[key] = sum(values) / len(values)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        if average_row:
            writer.writerow({fields[0]: "avg", **means})
    return means


def save_examples(folder, utt_id, signals, sample_rate):
    """Save named signals of one utterance as ``<folder>/<utt_id>_<name>.wav``.

    Each signal is peak-normalised to 0.9 when it would clip.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_examples(folder, "u1", {"mix": torch.zeros(80)}, 8000)
    >>> sorted(os.listdir(folder))
    ['u1_mix.wav']
    """
    for name, signal in signals.items():
        signal = signal.detach().float().cpu().reshape(-1)
        peak = float(signal.abs().max()) if signal.numel() else 0.0
        if peak > 1.0:
            signal = signal / peak * 0.9
        write_audio(
            os.path.join(folder, f"{utt_id}_{name}.wav"), signal, sample_rate
        )
