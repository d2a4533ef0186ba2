"""EnhancementBrain: the CR gradient path, the frozen SSL model, the feature
cache, the reference model (CCR) and resuming from a checkpoint.

Everything runs on random signals with a tiny random WavLM (a few thousand
parameters) and a tiny Conv-TasNet enhancer.
"""

import importlib.util
import os

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from lobes.brains.enhancement import EnhancementBrain
from lobes.errors import ModelSourceError
from lobes.models.enhancement import MaskingEnhancer
from lobes.objectives import load_reference_model, reference_model_for
from lobes.overrides import FragmentTree
from lobes.ssl_features import FrozenSSLFeatures, save_tiny_ssl_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(REPO, "recipes", "Voicebank", "enhance")
CR_FRAGMENT = os.path.join(REPO, "hparams", "enhancement", "cr.yaml")
TRAINING_FRAGMENT = os.path.join(
    REPO, "hparams", "enhancement", "training.yaml"
)
SEGMENT = 3200  # 0.2 s at 16 kHz


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    return save_tiny_ssl_model("wavlm", str(tmp_path_factory.mktemp("wavlm")))


#: A run's hyperparams.yaml holding :func:`make_enhancer`'s network (its
#: seeding, as a recipe's, seeds Python's, NumPy's and torch's generators).
ENHANCER_YAML = (
    "seed: 1\n"
    "__set_seed: !apply:speechbrain.utils.seed_everything [!ref <seed>]\n"
    "enhance_model: !new:lobes.models.enhancement.MaskingEnhancer\n"
    "  encoder: !new:speechbrain.lobes.models.dual_path.Encoder\n"
    "    kernel_size: 16\n    out_channels: 8\n"
    "  masknet: !new:speechbrain.lobes.models.conv_tasnet.MaskNet\n"
    "    N: 8\n    B: 8\n    H: 8\n    P: 3\n    X: 1\n    R: 1\n"
    "    C: 1\n"
    "  decoder: !new:speechbrain.lobes.models.dual_path.Decoder\n"
    "    in_channels: 8\n    out_channels: 1\n    kernel_size: 16\n"
    "    stride: 8\n    bias: False\n"
    "modules:\n  enhance_model: !ref <enhance_model>\n"
)


def make_enhancer(seed=0):
    torch.manual_seed(seed)
    return MaskingEnhancer(
        Encoder(kernel_size=16, out_channels=8),
        MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=1),
        Decoder(8, 1, kernel_size=16, stride=8, bias=False),
    )


def make_objectives(tmp_path, **overrides):
    """The objectives namespace, built from the recipes' cr.yaml fragment."""
    from hyperpyyaml import load_hyperpyyaml

    values = {
        "cr_weight": 1.0,
        "cr_ramp_epochs": 0,
        "cr_layer_weights": [2.0, 1.0],
        "cr_distance": "mse",
        "feature_cache_dtype": "float32",
        "feature_cache_folder": str(tmp_path / "feature_cache"),
        **overrides,
    }
    with open(CR_FRAGMENT, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, values)


def make_dataset(count=4, length=SEGMENT, seed=0):
    generator = torch.Generator().manual_seed(seed)
    data = {}
    for index in range(count):
        clean = 0.1 * torch.randn(length, generator=generator)
        noise = 0.05 * torch.randn(length, generator=generator)
        data[f"utt{index}"] = {"noisy_sig": clean + noise, "clean_sig": clean}
    return DynamicItemDataset(data,
                              output_keys=["id", "noisy_sig", "clean_sig"])


def make_brain(folder, tmp_path, reference=None, enhancer=None,
               checkpointer=None, **overrides):
    enhancer = enhancer if enhancer is not None else make_enhancer()
    fragment_keys = set(FragmentTree(CR_FRAGMENT).defaults)
    objectives = make_objectives(
        tmp_path,
        cr_negatives=["noisy"] + (["reference"] if reference else []),
        **{k: v for k, v in overrides.items() if k in fragment_keys},
    )
    training_keys = set(FragmentTree(TRAINING_FRAGMENT).defaults)
    training = {"valid_metrics": ["si_sdr"], "test_metrics": ["si_sdr"]}
    training.update(
        {k: v for k, v in overrides.items() if k in training_keys}
    )
    hparams = {
        "sample_rate": 16000,
        "output_folder": str(tmp_path),
        "objectives": objectives,
        "training": training,
    }
    hparams.update(
        {k: v for k, v in overrides.items()
         if k not in fragment_keys | training_keys}
    )
    return EnhancementBrain(
        modules={"enhance_model": enhancer},
        opt_class=lambda params: torch.optim.Adam(params, 1e-3),
        hparams=hparams,
        run_opts={"device": "cpu"},
        checkpointer=checkpointer,
        ssl_features=FrozenSSLFeatures(folder, layer_groups=[[1, 2], [3, 4]]),
        reference_model=reference,
    )


def count_forwards(module):
    """Attach a forward hook counting calls; returns the counter list."""
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def one_batch(dataset, size=2):
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=size)
    return next(iter(loader))


def ssl_of(brain):
    return brain.contrastive.ssl


def test_cr_gradient_reaches_enhanced_not_ssl(tiny_wavlm, tmp_path):
    brain = make_brain(tiny_wavlm, tmp_path)
    batch = one_batch(make_dataset())
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    enhanced = batch.noisy_sig[0].clone().requires_grad_(True)
    loss = brain.compute_objectives(enhanced, batch, sb.Stage.TRAIN)
    loss.backward()
    assert enhanced.grad is not None and enhanced.grad.abs().sum() > 0
    for param in ssl_of(brain).parameters():
        assert not param.requires_grad and param.grad is None
    # The CR term changes the gradient: compare with the waveform loss only.
    enhanced_mse = batch.noisy_sig[0].clone().requires_grad_(True)
    brain.contrastive.weight = 0.0
    brain.compute_objectives(enhanced_mse, batch, sb.Stage.TRAIN).backward()
    assert not torch.allclose(enhanced.grad, enhanced_mse.grad)
    stats = brain.stage_statistics(sb.Stage.TRAIN)
    assert stats["cr"] > 0 and "cr_gap_noisy" in stats


def test_ssl_stays_frozen_in_eval_mode_while_training(tiny_wavlm, tmp_path):
    brain = make_brain(tiny_wavlm, tmp_path)
    ssl = ssl_of(brain)
    before = {k: v.clone() for k, v in ssl.state_dict().items()}
    enhancer_before = [
        p.clone() for p in brain.modules.enhance_model.parameters()
    ]
    modes = []
    ssl.register_forward_hook(
        lambda module, *args: modes.append(module.model.training)
    )
    data = make_dataset()
    brain.fit(EpochCounter(1), data, data, progressbar=False,
              train_loader_kwargs={"batch_size": 2})
    assert modes and not any(modes)
    assert not ssl.model.training
    assert all(p.grad is None and not p.requires_grad
               for p in ssl.parameters())
    after = ssl.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(
        not torch.equal(a, b) for a, b in
        zip(enhancer_before, brain.modules.enhance_model.parameters())
    )
    # The SSL model is not a module of the Brain, so not in its checkpoints.
    assert "enhance_model" in brain.modules
    assert all(
        "feature_extractor" not in name
        for name, _ in brain.modules.named_parameters()
    )


@pytest.mark.parametrize(
    "mode,dtype", [("memory", "float32"), ("disk", "float16")]
)
def test_cache_serves_identical_features_without_ssl_calls(
    tiny_wavlm, tmp_path, mode, dtype
):
    brain = make_brain(tiny_wavlm, tmp_path, feature_cache=mode,
                       feature_cache_dtype=dtype)
    cr = brain.contrastive.cr
    ssl_calls = count_forwards(ssl_of(brain))
    seen = []
    original_forward = cr.forward

    def spy(enhanced, clean_features, negative_features, **kwargs):
        seen.append([f.clone() for f in clean_features]
                    + [f.clone() for f in negative_features[0]])
        return original_forward(
            enhanced, clean_features, negative_features, **kwargs
        )

    cr.forward = spy
    data = make_dataset(count=4)
    loader = {"batch_size": 2, "shuffle": False}
    brain.fit(EpochCounter(2), data, progressbar=False,
              train_loader_kwargs=loader)
    # Epoch 1: per batch one SSL call for clean + noisy, one for the
    # enhanced output; epoch 2: the enhanced output only.
    assert len(ssl_calls) == 2 * 2 + 2
    cache = brain.contrastive.feature_cache
    assert cache.misses == 2 * 4  # clean and noisy, 4 utts
    assert cache.hits == 2 * 4
    first_epoch, second_epoch = seen[:2], seen[2:]
    for one, two in zip(first_epoch, second_epoch):
        assert all(torch.equal(a, b) for a, b in zip(one, two))
    if mode == "disk":
        folder = brain.contrastive.feature_cache.folder
        assert len(os.listdir(os.path.join(folder, "clean"))) == 4
        assert len(os.listdir(os.path.join(folder, "noisy"))) == 4


def test_cached_features_equal_fresh_features(tiny_wavlm, tmp_path):
    brain = make_brain(tiny_wavlm, tmp_path)
    data = make_dataset(count=2)
    brain.fit(EpochCounter(1), data, progressbar=False,
              train_loader_kwargs={"batch_size": 2, "shuffle": False})
    batch = one_batch(data)
    cached = brain.contrastive.feature_cache.load("clean", list(batch.id))
    with torch.no_grad():
        fresh = brain.contrastive.ssl(batch.clean_sig[0])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(cached, fresh))


def test_ccr_reference_output_computed_once(tiny_wavlm, tmp_path):
    reference = make_enhancer(seed=1).eval().requires_grad_(False)
    reference_calls = count_forwards(reference)
    brain = make_brain(tiny_wavlm, tmp_path, reference=reference,
                       curriculum="similarity", curriculum_ramp_epochs=2)
    data = make_dataset(count=4)
    brain.fit(EpochCounter(2), data, progressbar=False,
              train_loader_kwargs={"batch_size": 2, "shuffle": False})
    assert len(reference_calls) == 2  # two batches, first epoch only
    assert not reference.training
    assert all(p.grad is None for p in reference.parameters())
    stats = brain.train_stats
    assert {"gamma_noisy", "gamma_reference", "cr_gap_reference"} <= set(
        stats
    )
    assert abs(stats["gamma_noisy"] + stats["gamma_reference"] - 1) < 1e-6
    assert brain.contrastive.curriculum.distance_count == 4


def test_quality_curriculum_uses_reference_quality(tiny_wavlm, tmp_path):
    reference = make_enhancer(seed=1).eval().requires_grad_(False)
    brain = make_brain(tiny_wavlm, tmp_path, reference=reference,
                       curriculum="quality",
                       curriculum_quality_metrics=["si_sdr"])
    data = make_dataset(count=2)
    brain.fit(EpochCounter(1), data, data, progressbar=False,
              train_loader_kwargs={"batch_size": 2})
    valid = brain.last_stage_stats
    assert "reference_si_sdr" in valid and "si_sdr" in valid
    assert brain.contrastive.curriculum.best_quality == {
        "si_sdr": pytest.approx(valid["si_sdr"])
    }
    weights = brain.contrastive.curriculum.current_weights
    assert sum(weights) == pytest.approx(1.0)


def test_ccr_without_reference_fails_in_one_line(tiny_wavlm, tmp_path,
                                                capsys, monkeypatch):
    monkeypatch.chdir(RECIPE)
    spec = importlib.util.spec_from_file_location(
        "voicebank_enhance_train", os.path.join(RECIPE, "train.py")
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    with pytest.raises(SystemExit) as exit_info:
        train.main([
            "hparams/ccr_wavlm_convtasnet.yaml",
            f"--output_folder={tmp_path / 'out'}",
            f"--ssl_source={tiny_wavlm}",
            "--ssl_layer_groups=[[1],[2],[3],[4]]",
            "--encoder_channels=8", "--bottleneck_channels=8",
            "--conv_channels=8", "--blocks_per_repeat=1", "--num_repeats=1",
        ])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ccr_wavlm_convtasnet.yaml needs a")
    assert "python train.py hparams/convtasnet.yaml" in err[0]
    assert "--reference_model=results/convtasnet/1986" in err[0]
    # Stopped before the experiment folder was set up.
    assert not (tmp_path / "out" / "hyperparams.yaml").exists()
    assert not (tmp_path / "out" / "log.txt").exists()


def test_reference_model_errors_name_the_fix(tmp_path):
    with pytest.raises(ModelSourceError, match="no such folder"):
        load_reference_model(str(tmp_path / "absent"))
    (tmp_path / "hyperparams.yaml").write_text("seed: 1\n")
    with pytest.raises(ModelSourceError, match="no checkpoint"):
        load_reference_model(str(tmp_path))
    experiment = {
        "objectives": {"cr_negatives": ["noisy", "reference"],
                       "cr_weight": 1.0, "reference_model": str(tmp_path)},
        "reference_hparams": "hparams/spectral_mask.yaml",
    }
    with pytest.raises(ModelSourceError) as err:
        reference_model_for(experiment, "hparams/ccr_x.yaml", seed=7)
    message = str(err.value)
    assert "\n" not in message and "no checkpoint" in message
    assert "--reference_model=results/spectral_mask/7" in message


def test_reference_model_loads_best_checkpoint_frozen(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text(ENHANCER_YAML)
    trained = make_enhancer(seed=5)
    worse = make_enhancer(seed=6)
    checkpointer = Checkpointer(str(tmp_path / "save"),
                                {"enhance_model": trained})
    checkpointer.save_checkpoint(meta={"loss": 1.0})
    checkpointer.recoverables["enhance_model"] = worse
    checkpointer.save_checkpoint(meta={"loss": 2.0})
    state = torch.random.get_rng_state()
    reference = load_reference_model(str(tmp_path))
    assert torch.equal(state, torch.random.get_rng_state())
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    for mine, theirs in zip(reference.parameters(), trained.parameters()):
        assert torch.equal(mine, theirs)


def test_resume_restores_model_and_curriculum(tiny_wavlm, tmp_path):
    save = str(tmp_path / "save")
    reference = make_enhancer(seed=1).eval().requires_grad_(False)
    data = make_dataset(count=2)

    def brain_and_counter(limit):
        counter = EpochCounter(limit)
        enhancer = make_enhancer(seed=limit)
        checkpointer = Checkpointer(
            save, {"enhance_model": enhancer, "counter": counter}
        )
        brain = make_brain(
            tiny_wavlm, tmp_path, reference=reference, enhancer=enhancer,
            checkpointer=checkpointer, curriculum="similarity",
            curriculum_ramp_epochs=3, training={"epoch_counter": counter},
        )
        # As the recipes' YAML lists it in the checkpointer.
        checkpointer.add_recoverable("curriculum", brain.contrastive.curriculum)
        return brain, counter

    first, counter = brain_and_counter(1)
    first.fit(counter, data, data, progressbar=False,
              train_loader_kwargs={"batch_size": 2})
    saved_state = first.contrastive.curriculum.state_dict()
    saved_params = [
        p.detach().clone() for p in first.modules.enhance_model.parameters()
    ]
    assert saved_state["distance_count"] == 1

    second, counter = brain_and_counter(2)
    epochs_run = []
    original = second.on_stage_start

    def record(stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            epochs_run.append(epoch)
            # Recovered before the second epoch starts.
            assert second.contrastive.curriculum.distance_count == 1
            for mine, saved in zip(
                second.modules.enhance_model.parameters(), saved_params
            ):
                assert torch.equal(mine, saved)
        return original(stage, epoch)

    second.on_stage_start = record
    second.fit(counter, data, data, progressbar=False,
               train_loader_kwargs={"batch_size": 2})
    assert epochs_run == [2]
    assert second.contrastive.curriculum.distance_count == 2
    assert second.contrastive.curriculum.epoch == 2


def test_test_stage_writes_per_utterance_results(tiny_wavlm, tmp_path):
    brain = make_brain(
        tiny_wavlm, tmp_path, test_results_file=str(tmp_path / "r.csv"),
        audio_results_folder=str(tmp_path / "audio"), n_audio_to_save=1,
        test_metrics=["si_sdr", "stoi"],
    )
    data = make_dataset(count=3, length=16000)
    brain.evaluate(data, progressbar=False,
                   test_loader_kwargs={"batch_size": 2})
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "snt_id,si_sdr,stoi"
    assert [line.split(",")[0] for line in lines[1:]] == [
        "utt0", "utt1", "utt2", "avg"
    ]
    assert sorted(os.listdir(tmp_path / "audio")) == [
        "utt0_clean.wav", "utt0_enhanced.wav", "utt0_noisy.wav"
    ]
    assert "si_sdr" in brain.last_stage_stats


class _Batch:
    """A hand-made padded batch (what PaddedBatch gives, padding chosen)."""

    def __init__(self, ids, noisy, clean, lengths):
        from speechbrain.dataio.batch import PaddedData

        self.id = ids
        self.noisy_sig = PaddedData(noisy, lengths)
        self.clean_sig = PaddedData(clean, lengths)

    def to(self, device):
        return self


def test_padding_never_counts_in_the_training_loss(tiny_wavlm, tmp_path):
    brain = make_brain(tiny_wavlm, tmp_path, feature_cache="none")
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    generator = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(2, 3200, generator=generator)
    noisy = clean + 0.05 * torch.randn(2, 3200, generator=generator)
    enhanced = clean + 0.02 * torch.randn(2, 3200, generator=generator)
    whole = brain.compute_objectives(
        enhanced, _Batch(["a", "b"], noisy, clean, torch.ones(2)),
        sb.Stage.TRAIN,
    )
    # The same utterances padded to 4800 samples, garbage in the padding
    pad = lambda x, fill: torch.cat(  # noqa: E731
        [x, torch.full((2, 1600), fill)], dim=1
    )
    padded = brain.compute_objectives(
        pad(enhanced, 0.7),
        _Batch(["a", "b"], pad(noisy, -0.3), pad(clean, 0.5),
               torch.full((2,), 3200 / 4800)),
        sb.Stage.TRAIN,
    )
    torch.testing.assert_close(padded, whole)


def test_disk_cache_is_rebuilt_when_manifest_or_model_changes(
    tiny_wavlm, tmp_path, caplog
):
    import logging

    other_model = save_tiny_ssl_model("wavlm", str(tmp_path / "w1"), seed=1)
    data = make_dataset(count=2)
    folders = []
    for folder, dataset in (
        (tiny_wavlm, data),
        (tiny_wavlm, data),  # the same: the same cache
        (tiny_wavlm, make_dataset(count=2, seed=5)),  # another corpus
        (other_model, data),  # another SSL model
    ):
        brain = make_brain(folder, tmp_path, feature_cache="disk")
        with caplog.at_level(logging.INFO,
                             logger="lobes.objectives.contrastive"):
            brain.fit(EpochCounter(1), dataset, progressbar=False,
                      train_loader_kwargs={"batch_size": 2})
        folders.append(brain.contrastive.feature_cache.folder)
    assert folders[0] == folders[1]
    assert len(set(folders)) == 3
    lines = [r.getMessage() for r in caplog.records
             if "Feature cache: new features" in r.getMessage()]
    assert "manifest changed" in lines[0]
    assert "ssl_model" in lines[1]
