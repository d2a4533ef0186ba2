"""SeparationBrain: resuming, batch sizes, threshold, skipped batches, tests.

Every test drives the real recipe YAML (shrunk by overrides) on the tiny
mini WHAM! corpus through the Brain API.
"""

import csv
import os

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch

from lobes.brains.separation import SeparationBrain
from lobes.data.mini_corpora import ensure_mini_corpus
from lobes.data.prepare import prepare_wham
from lobes.data.separation_data import separation_datasets
from lobes.overrides import load_hparams

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
HPARAMS = os.path.join(REPO, "recipes", "WHAM", "separation", "hparams")
TINY = {
    "mini_corpus_size": "tiny",
    "num_workers": 0,
    "segment_seconds": 0.5,
    "eval_max_seconds": 1.0,
    "n_audio_to_save": 1,
    "encoder_channels": 16,
    "num_dual_path_blocks": 1,
    "num_transformer_layers": 1,
    "num_heads": 2,
    "d_ffn": 32,
    "chunk_size": 20,
}
NCE = {"nce_num_patches": 16, "nce_embed_dim": 16}


@pytest.fixture(scope="module")
def manifests(mini_cache, tmp_path_factory):
    root = ensure_mini_corpus("wham", "tiny", cache_dir=mini_cache)
    return prepare_wham(root, str(tmp_path_factory.mktemp("manifests")))


def make_brain(folder, manifests, yaml="nass_sepformer", brain_class=None,
               **overrides):
    """The recipe's hparams, datasets and Brain, as train.py builds them."""
    values = {**TINY, "output_folder": str(folder), **overrides}
    if yaml.startswith("nass"):
        values = {**NCE, **values}
    hparams = load_hparams(os.path.join(HPARAMS, f"{yaml}.yaml"), values)
    datasets = separation_datasets(
        manifests, hparams, hparams["seed"], hparams["mixture"]
    )
    brain = (brain_class or SeparationBrain)(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=hparams["checkpointer"],
    )
    return brain, hparams, datasets


def fit(brain, hparams, datasets):
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )


class Interrupted(Exception):
    """Stands for a job killed in the middle of training."""


class RecordingBrain(SeparationBrain):
    """Records the epochs it trains and its parameters once recovered."""

    interrupt_at_epoch = None

    def on_fit_start(self):
        super().on_fit_start()
        self.recovered = {
            k: v.detach().clone()
            for k, v in self.separator.state_dict().items()
        }
        self.epochs = []

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            if epoch == self.interrupt_at_epoch:
                raise Interrupted(epoch)
            self.epochs.append(epoch)
        super().on_stage_start(stage, epoch)


def test_interrupted_training_resumes_from_its_checkpoint(
    manifests, tmp_path
):
    brain, hparams, datasets = make_brain(
        tmp_path, manifests, brain_class=RecordingBrain,
        number_of_epochs=3, batch_size=4,
    )
    brain.interrupt_at_epoch = 2
    with pytest.raises(Interrupted):
        fit(brain, hparams, datasets)
    assert brain.epochs == [1]
    trained = {
        k: v.detach().clone() for k, v in brain.separator.state_dict().items()
    }
    steps_done = brain.optimizer.state_dict()["state"][0]["step"]

    # A new process: the same YAML, fresh objects, a later epoch limit.
    brain2, hparams2, datasets2 = make_brain(
        tmp_path, manifests, brain_class=RecordingBrain,
        number_of_epochs=3, batch_size=4,
    )
    fresh = {
        k: v.detach().clone()
        for k, v in brain2.separator.state_dict().items()
    }
    fit(brain2, hparams2, datasets2)
    assert brain2.epochs == [2, 3], "resumes at epoch 2, not 1"
    assert hparams2["epoch_counter"].current == 3
    for key, value in trained.items():
        assert torch.equal(brain2.recovered[key], value), key
    assert any(
        not torch.equal(fresh[k], trained[k]) for k in trained
    ), "training changed the parameters, so the check above means something"
    assert steps_done == 2  # 8 training mixtures, batches of 4
    assert brain2.optimizer.state_dict()["state"][0]["step"] == 2 + 4
    with open(os.path.join(tmp_path, "train_log.txt")) as fin:
        epochs = [line.split(",")[0] for line in fin if line.strip()]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_training_and_test_at_batch_sizes(manifests, tmp_path, batch_size):
    brain, hparams, datasets = make_brain(
        tmp_path, manifests, number_of_epochs=1, batch_size=batch_size,
        dynamic_mixing=True,
    )
    fit(brain, hparams, datasets)
    stats = brain.train_stats
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert {"si-snr", "noise_si-snr", "nce", "seconds"} <= set(stats)
    # the gradient share on the separator's parameters, at step 1
    assert 0 < stats["nce_param_share"] < 1
    assert -1 <= stats["nce_pit_cosine"] <= 1
    brain.evaluate(
        datasets["test"], min_key="loss",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    with open(os.path.join(tmp_path, "test_results.csv")) as fin:
        rows = list(csv.DictReader(fin))
    columns = ["sdr", "sdr_i", "si-snr", "si-snr_i", "noise_si-snr",
               "interference_db", "noise_db", "artifact_db"]
    assert list(rows[0]) == ["snt_id", *columns,
                             *(f"{c}_oracle" for c in columns)]
    assert len(rows) == 4 + 1 and rows[-1]["snt_id"] == "avg"
    for row in rows:
        assert all(
            torch.isfinite(torch.tensor(float(row[k])))
            for k in list(row)[1:]
        )
    audio = os.listdir(os.path.join(tmp_path, "audio_results"))
    assert any(name.endswith("_noise_estimate.wav") for name in audio)


def test_batches_are_cropped_to_their_shortest_item(manifests, tmp_path):
    brain, _, datasets = make_brain(
        tmp_path, manifests, batch_size=4, segment_seconds=None,
        eval_max_seconds=None,
    )
    items = [datasets["valid"][i] for i in range(4)]
    lengths = [item["mix_sig"].shape[0] for item in items]
    assert len(set(lengths)) > 1
    batch = PaddedBatch(items)
    step = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert step.output.waveforms.shape == (4, min(lengths), 3)
    assert step.targets.shape == (4, min(lengths), 3)
    # evaluation keeps each item's own length
    step = brain.compute_forward(batch, sb.Stage.VALID)
    assert step.lengths.tolist() == lengths


def test_examples_past_the_threshold_are_left_out(manifests, tmp_path):
    brain, hparams, datasets = make_brain(tmp_path, manifests, batch_size=2)
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    batch = PaddedBatch([datasets["train"][0], datasets["train"][1]])
    step = brain.compute_forward(batch, sb.Stage.TRAIN)
    # Replace the estimates: item 0 perfect (> 30 dB), item 1 poor.
    perfect = step.targets.clone()
    perfect[1] = torch.randn_like(perfect[1])
    output = step.output._replace(waveforms=perfect.requires_grad_())
    loss = brain.compute_objectives(
        step._replace(output=output), batch, sb.Stage.TRAIN
    )
    per_item, _ = hparams["objectives"]["pit_loss"](perfect, step.targets)
    assert per_item[0] < -30 < per_item[1]
    assert brain._batch_status == "step"
    assert loss.item() == pytest.approx(
        per_item[1].item() + 2.0 * brain.stage_stats.sums["nce"], rel=1e-4
    )
    # all items perfect: nothing to learn, the step is skipped
    output = step.output._replace(waveforms=step.targets.clone() * 2)
    brain.compute_objectives(
        step._replace(output=output), batch, sb.Stage.TRAIN
    )
    assert brain._batch_status == "nothing_kept"


class NaNBrain(SeparationBrain):
    """Every loss is NaN (a diverged step)."""

    def compute_objectives(self, predictions, batch, stage):
        loss = super().compute_objectives(predictions, batch, stage)
        return loss * float("nan")


def test_non_finite_losses_skip_the_update(manifests, tmp_path):
    brain, hparams, datasets = make_brain(
        tmp_path, manifests, brain_class=NaNBrain, number_of_epochs=1,
        batch_size=4,
    )
    before = {
        k: v.detach().clone() for k, v in brain.separator.state_dict().items()
    }
    fit(brain, hparams, datasets)
    assert brain.nonfinite_count == 2
    for key, value in brain.separator.state_dict().items():
        assert torch.equal(before[key], value), key


def test_baseline_reports_the_residual_as_noise(manifests, tmp_path):
    brain, hparams, datasets = make_brain(
        tmp_path, manifests, yaml="sepformer", number_of_epochs=1,
        batch_size=4,
    )
    assert brain.separator.num_outputs == 2
    fit(brain, hparams, datasets)
    brain.evaluate(
        datasets["test"], min_key="loss",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    with open(os.path.join(tmp_path, "test_results.csv")) as fin:
        rows = list(csv.DictReader(fin))
    assert all(float(row["noise_si-snr"]) == float(row["noise_si-snr"])
               for row in rows)  # not NaN
    assert "noise_si-snr" in brain.last_stage_stats


def test_validation_loss_counts_the_speakers_only(manifests, tmp_path):
    brain, hparams, datasets = make_brain(tmp_path, manifests, batch_size=2)
    batch = PaddedBatch([datasets["valid"][i] for i in range(2)])
    step = brain.compute_forward(batch, sb.Stage.VALID)
    targets = step.targets
    # Perfect speakers in swapped order, garbage in the noise output: the
    # validation loss ignores the noise output entirely.
    perfect = targets[..., [1, 0, 2]].clone()
    perfect[..., 2] = torch.randn_like(perfect[..., 2])
    output = step.output._replace(waveforms=perfect)
    brain.on_stage_start(sb.Stage.VALID, 1)
    loss = brain.compute_objectives(
        step._replace(output=output), batch, sb.Stage.VALID
    )
    per_item, _ = hparams["objectives"]["pit_loss"](perfect, targets)
    # PIT over N + 1 averages in the noise output's poor SI-SNR
    assert loss.item() < per_item.mean().item() - 10


def test_test_columns_follow_the_inference_noise_slot(manifests, tmp_path):
    brain, hparams, datasets = make_brain(
        tmp_path, manifests, batch_size=1, noise_slot="fixed"
    )
    assert brain.inference_noise_index() == 2  # fixed: the last output
    tracker = brain.noise_tracker
    brain_pit, _, _ = make_brain(tmp_path / "pit", manifests, batch_size=1)
    brain_pit.noise_tracker.update(torch.tensor([0, 0, 1]))
    assert brain_pit.inference_noise_index() == 0
    assert int(tracker.counts.sum()) == 0
