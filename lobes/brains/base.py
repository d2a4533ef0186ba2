"""Brain logic shared by every recipe.

``RecipeBrain`` keeps the bookkeeping every recipe repeats in SpeechBrain:
stage statistics, learning-rate annealing on the validation loss, logging,
checkpoints that keep the best model, test-time result files, the check of
``max_grad_norm`` (SpeechBrain clips the gradients) and, after the first
training steps, one log line with the device and the estimated time per
epoch. Subclasses write ``compute_forward``/``compute_objectives`` and what
is truly theirs.

The training loop's objects are the recipe YAML's own (wired at its top
level from the parameters of its ``training`` fragment): ``lr_scheduler``
(a SpeechBrain ``ReduceLROnPlateau``-like annealer called with the
validation loss), ``train_logger`` and ``epoch_counter``.
"""

import csv
import logging
import os
import time

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from lobes.data.audio import write_audio
from lobes.errors import HparamsError
from lobes.interrupt import brain_saver
from lobes.metrics import MetricAverager
from lobes.random_state import (
    EpochStatistics,
    RandomState,
    seed_loader_generator,
)

logger = logging.getLogger(__name__)

#: Training steps timed before the time-per-epoch estimate is logged.
TIMED_STEPS = 5

#: The training loop's objects a recipe YAML wires at its top level.
LOOP_OBJECTS = ("lr_scheduler", "train_logger", "epoch_counter")


def _duration(seconds):
    """``'1.7 h'``, ``'12 min'`` or ``'40 s'``.

    Example
    -------
    >>> _duration(6120), _duration(720), _duration(40.2)
    ('1.7 h', '12 min', '40 s')
    """
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


class RecipeBrain(sb.Brain):
    """A Brain with the stage bookkeeping shared by all recipes.

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_stats = MetricAverager()
        self.train_batches = None
        self._timing = None
        self.stop = None  # a lobes.interrupt.GracefulStop during fit
        # Exact resume: the train loader shuffles with its own generator,
        # seeded per epoch; every global random state and the statistics
        # of an interrupted epoch are checkpointed.
        self.loader_generator = torch.Generator()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("random_state", RandomState())
            self.checkpointer.add_recoverable(
                "epoch_statistics", EpochStatistics(self)
            )
        hparams = vars(self.hparams) if hasattr(self, "hparams") else {}
        # SpeechBrain applies max_grad_norm from the command line or, when
        # not given there, from the YAML; both must be positive.
        for clip in (hparams.get("max_grad_norm"), self.max_grad_norm):
            if clip is not None and not float(clip) > 0:
                raise HparamsError(
                    f"max_grad_norm must be positive, got {clip}: fix "
                    "`max_grad_norm` in the YAML or on the command line"
                )

    @property
    def training_loop(self):
        """The recipe's training-loop objects that it has, by name.

        Example
        -------
        >>> brain = RecipeBrain({"m": torch.nn.Linear(1, 1)},
        ...                     hparams={"epoch_counter": range(2)})
        >>> brain.training_loop
        {'epoch_counter': range(0, 2)}
        """
        hparams = getattr(self, "hparams", None)
        values = vars(hparams) if hparams is not None else {}
        return {
            name: values[name] for name in LOOP_OBJECTS if name in values
        }

    # ------------------------------------------------------------------
    # Statistics
    def on_stage_start(self, stage, epoch=None):
        """Reset the statistics gathered during a stage.

        A training stage also reseeds the train loader's generator from the
        seed and the epoch; an epoch resumed mid-way keeps the statistics
        its checkpoint restored.
        """
        if stage == sb.Stage.TRAIN:
            seed = getattr(getattr(self, "hparams", None), "seed", 0)
            seed_loader_generator(self.loader_generator, seed or 0,
                                  epoch or 0)
            if self.step > 0:
                return
        self.stage_stats = MetricAverager()

    def add_stat(self, name, value):
        """Accumulate a scalar statistic to report at the end of the stage.

        Non-finite values are counted apart, not averaged.

        Example
        -------
        >>> brain = RecipeBrain({"m": torch.nn.Linear(1, 1)})
        >>> brain.on_stage_start(sb.Stage.TRAIN)
        >>> brain.add_stat("si_snr", 1.0); brain.add_stat("si_snr", 3.0)
        >>> brain.stage_statistics(sb.Stage.TRAIN)
        {'si_snr': 2.0}
        """
        self.stage_stats.add(name, value)

    def stage_statistics(self, stage):
        """Mean of each statistic added with :meth:`add_stat`."""
        return self.stage_stats.summarize()

    # ------------------------------------------------------------------
    # Time per epoch
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-",
                        **loader_kwargs):
        """SpeechBrain's loader; remembers the batches of a train epoch."""
        if stage == sb.Stage.TRAIN:
            loader_kwargs.setdefault("generator", self.loader_generator)
        loader = super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )
        if stage == sb.Stage.TRAIN:
            try:
                self.train_batches = len(loader)
            except TypeError:  # an iterable dataset
                self.train_batches = None
        return loader

    def on_fit_start(self):
        """Warm-start from ``init_from`` (a finished run, when the YAML
        names one: :meth:`warm_start`) unless this run has a checkpoint of
        its own, which SpeechBrain's set-up then recovers (a resumed or
        re-tested run continues from where it was, and its log says so);
        then start timing the first steps."""
        init_from = getattr(getattr(self, "hparams", None), "init_from",
                            None)
        own = (self.checkpointer is not None
               and self.checkpointer.find_checkpoint() is not None)
        if init_from and own:
            if if_main_process():
                logger.info("init_from=%s not applied: this run resumes "
                            "its own checkpoint", init_from)
        elif init_from:
            report = self.warm_start(init_from)
            if if_main_process():
                logger.info("Warm start from %s: %s", init_from,
                            report.summary())
        super().on_fit_start()
        self._timing = {"steps": 0, "start": None}

    def warm_start(self, source):
        """Load the trained weights of run ``source`` into the model this
        Brain trains; a Brain whose recipes take ``init_from`` says how.

        Returns
        -------
        lobes.warm_start.WarmStart
            What was copied.
        """
        raise HparamsError(
            f"init_from={source}: {type(self).__name__} cannot warm-start; "
            "remove init_from"
        )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Stop here on a signal; log the device and time per epoch once."""
        if self.stop is not None and should_step:
            counter = self.training_loop.get("epoch_counter")
            self.stop.stop_here(
                epoch=getattr(counter, "current", "?"), step=self.step,
                steps=self.train_batches, save=brain_saver(self, loss),
            )
        timing = self._timing
        if timing is None:
            return
        timing["steps"] += 1
        if timing["steps"] == 1:
            timing["start"] = time.time()  # the first step warms up
            return
        if timing["steps"] <= TIMED_STEPS:
            return
        self._timing = None
        per_step = (time.time() - timing["start"]) / (TIMED_STEPS - 1)
        if not if_main_process():
            return
        where = str(self.device)
        if where.startswith("cpu"):
            where = f"cpu ({torch.get_num_threads()} threads)"
        line = f"Training on {where}: {per_step:.2f} s per step"
        if self.train_batches:
            epoch = per_step * self.train_batches
            line += (
                f", about {_duration(epoch)} per epoch of "
                f"{self.train_batches} steps"
            )
            if where.startswith("cpu") and epoch > 1800:
                line += (
                    "; this is a GPU-size model: for a CPU run use the "
                    "smaller sizes in the README ('Running on a CPU')"
                )
        logger.info(line)

    # ------------------------------------------------------------------
    # Stage ends
    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Anneal the learning rate, log, and keep the best checkpoint."""
        stats = {"loss": stage_loss, **self.stage_statistics(stage)}
        self.last_stage_stats = stats
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        loop = self.training_loop
        train_logger = loop.get("train_logger")
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch}
            scheduler = loop.get("lr_scheduler")
            if scheduler is not None and self.optimizer is not None:
                # SpeechBrain's ReduceLROnPlateau only computes the next
                # rate; the optimiser (checkpointed with it) gets it here
                lr, next_lr = scheduler(
                    [self.optimizer], current_epoch=epoch,
                    current_loss=stage_loss,
                )
                sb.nnet.schedulers.update_learning_rate(self.optimizer,
                                                        next_lr)
                meta["lr"] = lr  # the rate this epoch trained at
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta=meta,
                    train_stats=getattr(self, "train_stats", None),
                    valid_stats=stats,
                )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stage_loss}, min_keys=["loss"]
                )
            if self.stop is not None:
                saved = self.checkpointer is not None and str(
                    self.checkpointer.checkpoints_dir
                )
                self.stop.stop_here(epoch, save=lambda: saved or None)
        elif stage == sb.Stage.TEST and train_logger is not None:
            counter = loop.get("epoch_counter")
            train_logger.log_stats(
                stats_meta={
                    "Epoch loaded": getattr(counter, "current", None)
                },
                test_stats=stats,
            )

    def write_test_results(self, path, rows):
        """Write per-utterance test results (main process) and log where.

        Returns the column means (``{}`` on other DDP ranks or without
        rows).
        """
        if not rows or not if_main_process():
            return {}
        means = write_results_csv(path, rows)
        summary = ", ".join(f"{k}: {v:.2f}" for k, v in means.items())
        logger.info("Test results (%d utterances) written to %s; mean %s",
                    len(rows), path, summary)
        return means


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
    >>> import tempfile
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
    averager = MetricAverager()
    for row in rows:
        averager.append({
            key: row[key] for key in fields[1:]
            if isinstance(row.get(key), (int, float))
        })
    means = {
        key: value for key, value in averager.summarize().items()
        if averager.counts[key]
    }
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
