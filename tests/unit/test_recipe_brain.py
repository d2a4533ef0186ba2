"""RecipeBrain, the bookkeeping every recipe shares."""

import logging

import pytest
import speechbrain as sb
import torch

from lobes.brains.base import TIMED_STEPS, RecipeBrain
from lobes.errors import HparamsError


class Regression(RecipeBrain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch[0])

    def compute_objectives(self, predictions, batch, stage):
        loss = torch.nn.functional.mse_loss(predictions, batch[1])
        self.add_stat("mse", loss)
        if stage != sb.Stage.TRAIN:
            self.add_stat("broken", float("nan"))
        return loss


def data(count):
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(2, 3, generator=generator),
         torch.randn(2, 1, generator=generator))
        for _ in range(count)
    ]


def test_logs_device_and_time_per_epoch_once(caplog):
    brain = Regression({"model": torch.nn.Linear(3, 1)},
                       lambda p: torch.optim.SGD(p, 0.01))
    with caplog.at_level(logging.INFO, logger="lobes.brains.base"):
        brain.fit(range(2), data(TIMED_STEPS + 3), progressbar=False)
    lines = [r.getMessage() for r in caplog.records
             if "per step" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Training on cpu")
    assert f"per epoch of {TIMED_STEPS + 3} steps" in lines[0]


def test_no_estimate_before_enough_steps(caplog):
    brain = Regression({"model": torch.nn.Linear(3, 1)},
                       lambda p: torch.optim.SGD(p, 0.01))
    with caplog.at_level(logging.INFO, logger="lobes.brains.base"):
        brain.fit(range(1), data(TIMED_STEPS - 1), progressbar=False)
    assert not any("per step" in r.getMessage() for r in caplog.records)


def test_stage_statistics_and_nan_counting():
    brain = Regression({"model": torch.nn.Linear(3, 1)},
                       lambda p: torch.optim.SGD(p, 0.01))
    brain.fit(range(1), data(2), data(2), progressbar=False)
    stats = brain.last_stage_stats
    assert set(stats) == {"loss", "mse", "broken"}
    assert stats["mse"] == pytest.approx(stats["loss"], rel=1e-5)
    assert brain.stage_stats.failures()["broken"] == 2


@pytest.mark.parametrize("clip", [0, -1.0])
def test_non_positive_clipping_is_a_one_line_error(clip):
    with pytest.raises(HparamsError, match="max_grad_norm must be positive"):
        Regression({"model": torch.nn.Linear(3, 1)},
                   hparams={"max_grad_norm": clip})


class FixedValidLoss(Regression):
    """Validation losses that stop improving after the first epoch."""

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.VALID:
            stage_loss = 1.0 + epoch  # worse every epoch
        super().on_stage_end(stage, stage_loss, epoch)


def test_the_scheduler_anneals_the_rate_the_optimiser_trains_at(tmp_path):
    # SpeechBrain's ReduceLROnPlateau only computes the next rate: a brain
    # that logs it without giving it to the optimiser trains at the first
    # rate for ever (the log then alternates between the two)
    log = tmp_path / "train_log.txt"
    scheduler = sb.nnet.schedulers.ReduceLROnPlateau(
        factor=0.5, patience=0, dont_halve_until_epoch=1)
    hparams = {
        "lr_scheduler": scheduler,
        "train_logger": sb.utils.train_logger.FileTrainLogger(str(log)),
        "epoch_counter": range(1, 5),
    }
    def brain():
        checkpointer = sb.utils.checkpoints.Checkpointer(
            str(tmp_path / "save"), recoverables={"scheduler": scheduler})
        return FixedValidLoss({"model": torch.nn.Linear(3, 1)},
                              lambda p: torch.optim.SGD(p, 0.08),
                              hparams=hparams, checkpointer=checkpointer)

    trained = brain()
    trained.fit(range(1, 5), data(2), data(2), progressbar=False)
    # epochs 2, 3 and 4 are worse than epoch 1: each halves the rate
    assert trained.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    resumed = brain()  # a run resumed from its last checkpoint
    resumed.on_fit_start()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    logged = [line.split("lr: ")[1].split(" ")[0]
              for line in log.read_text().splitlines()]
    # each epoch logs the rate it trained at
    assert [float(lr) for lr in logged] == [0.08, 0.08, 0.04, 0.02]
