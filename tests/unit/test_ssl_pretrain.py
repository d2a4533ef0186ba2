"""Offline HuBERT pre-training (recipes/Voicebank/ssl_pretrain) and probes.

The recipe runs in-process on the tiny mini corpus; the Brain also trains on
toy speech (tones) built from the recipe's own YAML.
"""

import glob
import importlib.util
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from speechbrain.utils.checkpoints import torch_recovery

import lobes.recipe
from lobes.brains.ssl_pretrain import SSLPretrainBrain
from lobes.data import tts
from lobes.data.ssl_pretrain_data import (
    HeldOutUtterances,
    MaskedCropBatches,
    MaskedPredictionCorpus,
    read_clean_noisy,
)
from lobes.errors import DataFolderError, HparamsError
from lobes.interrupt import GracefulStop, TrainingInterrupted
from lobes.models.hubert_pretrain import SmallHubert
from lobes.overrides import load_hparams
from lobes.ssl import probe as ssl_probe
from lobes.ssl import probe_data
from lobes.ssl.targets import (
    assign_clusters,
    kmeans,
    num_frames,
    target_features,
)
from lobes.ssl_features import FrozenSSLFeatures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(REPO, "recipes", "Voicebank", "ssl_pretrain")
YAML = os.path.join(RECIPE, "hparams", "hubert_small.yaml")

#: A model small enough to train for a few steps in a second.
SIZES = dict(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    ffn_size=64,
    conv_channels=16,
    pos_conv_kernel=8,
    pos_conv_groups=4,
    proj_dim=16,
)
TINY = dict(SIZES, batch_size=4, crop_seconds=0.6)

pytestmark = pytest.mark.usefixtures("one_thread")


def _train_module():
    spec = importlib.util.spec_from_file_location(
        "voicebank_ssl_pretrain_train", os.path.join(RECIPE, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _train_module()


def run_recipe(out, corpus, *flags):
    """``python train.py hparams/hubert_small.yaml`` on the tiny corpus.

    In this process: the output folder's lock, which a recipe holds until
    its process exits, is released when ``main`` returns, as if it had.
    """
    locks = []
    original = lobes.recipe.lock_output_folder

    def keep(folder, **kwargs):
        locks.append(original(folder, **kwargs))
        return locks[-1]

    argv = [
        YAML, f"--output_folder={out}", f"--data_folder={corpus}",
        "--num_clusters=8", "--number_of_epochs=1", "--steps_per_epoch=3",
        "--noprogressbar", *[f"--{k}={v}" for k, v in TINY.items()], *flags,
    ]  # fmt: skip
    lobes.recipe.lock_output_folder = keep
    try:
        return TRAIN.main(argv)
    finally:
        lobes.recipe.lock_output_folder = original
        for lock in locks:
            lock.release()


def toy_speech(count=6, seconds=1.0, seed=0):
    """Utterances of 100 ms tones cycling through four pitches, noisy copies.

    MFCC clusters are near-perfect tone labels. The cycle starts at a random
    pitch, so a masked tone is predictable from its context alone.
    """
    rng = np.random.default_rng(seed)
    time = np.arange(1600) / 16000
    pitches = [300, 800, 1800, 3500]
    clean, noisy = [], []
    for _ in range(count):
        first = int(rng.integers(4))
        tones = [
            np.sin(2 * np.pi * pitches[(first + i) % 4] * time)
            for i in range(int(seconds * 10))
        ]
        wav = torch.tensor(np.concatenate(tones), dtype=torch.float32) * 0.1
        clean.append(wav)
        noise = torch.tensor(rng.standard_normal(wav.numel()) * 0.02)
        noisy.append(wav + noise.float())
    return clean, noisy


def toy_corpus(num_clusters=4, seed=0, speed_factors=(0.9, 1.0, 1.1),
               features=None):  # fmt: skip
    clean, noisy = toy_speech(count=8)
    return MaskedPredictionCorpus(
        clean[2:], noisy[2:], clean[:2], noisy[:2],
        features or target_features(), num_clusters=num_clusters,
        speed_factors=speed_factors, seed=seed,
    )  # fmt: skip


def toy_brain(out, brain_class=SSLPretrainBrain, **overrides):
    """The recipe's YAML and Brain on toy speech: ``(brain, fit)``."""
    os.makedirs(out, exist_ok=True)
    values = {"output_folder": out, "num_clusters": 4, "number_of_epochs": 2,
              "steps_per_epoch": 3, **TINY, **overrides}  # fmt: skip
    hparams = load_hparams(YAML, values)
    corpus = toy_corpus(values["num_clusters"], hparams["seed"],
                        hparams["speed_factors"])  # fmt: skip
    hparams["batches"].attach(corpus)
    brain = brain_class(
        modules=hparams["modules"], opt_class=hparams["opt_class"],
        hparams=hparams, run_opts={"noprogressbar": True},
        checkpointer=hparams["checkpointer"],
    )  # fmt: skip
    brain.majority_cluster = corpus.majority_cluster
    held_out = HeldOutUtterances(
        corpus, hparams["mask_prob"], hparams["mask_length"], hparams["seed"]
    )

    def fit():
        brain.fit(
            hparams["epoch_counter"], hparams["batches"], held_out,
            train_loader_kwargs=hparams["train_dataloader_opts"],
            valid_loader_kwargs=hparams["valid_dataloader_opts"],
        )  # fmt: skip
        return brain

    return brain, fit


def losses(brain):
    return [(e["train"], e["valid"]) for e in brain.history.epochs]


def weights(brain):
    return {k: v.clone() for k, v in brain.modules.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def tiny_corpus(mini_cache):
    from lobes.data.mini_corpora import ensure_mini_corpus

    return ensure_mini_corpus("voicebank", size="tiny", cache_dir=mini_cache)


@pytest.fixture(scope="module")
def trained_folder(tiny_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ssl") / "hubert")
    run_recipe(out, tiny_corpus)
    with open(os.path.join(out, "pretrain_log.json")) as fin:
        return out, json.load(fin)


def test_saved_folder_loads_and_passes_gradients(trained_folder):
    folder, result = trained_folder
    assert result["finished"] and result["training_utterances"] == 8
    assert result["holdout_utterances"] == 4  # p226 and p287, 2 each
    ssl = FrozenSSLFeatures(folder, layers=[0, 1, 2])
    assert ssl.model.config.model_type == "hubert"
    assert ssl.normalize_waveform  # do_normalize from preprocessor_config
    wav = torch.randn(2, 8000, requires_grad=True)
    feats = ssl(wav)
    assert [tuple(f.shape) for f in feats] == [(2, 24, 32)] * 3
    sum(f.pow(2).mean() for f in feats).backward()
    assert wav.grad.abs().sum() > 0
    # The saved weights are the trained ones, not the initialisation.
    torch.manual_seed(result["config"]["seed"])
    sizes = {k: v for k, v in SIZES.items() if k != "proj_dim"}
    initial = SmallHubert(**sizes).model.state_dict()
    saved = load_file(os.path.join(folder, "model.safetensors"))
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(saved[key], initial[key])
    assert saved[key].shape == initial[key].shape


def test_same_seed_gives_bit_identical_weights(trained_folder, tiny_corpus,
                                               tmp_path):  # fmt: skip
    folder, result = trained_folder
    again = str(tmp_path / "hubert")
    run_recipe(again, tiny_corpus)
    first = load_file(os.path.join(folder, "model.safetensors"))
    second = load_file(os.path.join(again, "model.safetensors"))
    assert_same_weights(first, second)
    with open(os.path.join(again, "pretrain_log.json")) as fin:
        log = json.load(fin)
    assert log["history"] == result["history"]
    assert log["holdout"] == result["holdout"]
    # Another seed: other weights.
    other = str(tmp_path / "other")
    run_recipe(other, tiny_corpus, "--seed=1")
    third = load_file(os.path.join(other, "model.safetensors"))
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(first[key], third[key])


def test_finished_folder_is_left_alone(trained_folder, tiny_corpus):
    folder, result = trained_folder
    before = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    run_recipe(folder, tiny_corpus)
    with open(os.path.join(folder, "pretrain_log.json")) as fin:
        assert json.load(fin)["history"] == result["history"]
    assert os.path.getmtime(os.path.join(folder, "model.safetensors")) == before


def test_checkpoints_are_read_weights_only(trained_folder, tmp_path):
    folder, _ = trained_folder
    # SpeechBrain 1.1.2 reads module and optimiser checkpoints with
    # torch.load(path, map_location=...), weights-only by torch's default
    # (torch >= 2.6): a pickle that would run code is refused.
    assert torch.__version__ >= "2.6"
    evil = tmp_path / "evil.ckpt"
    torch.save({"weight": torch.zeros(1), "code": TrainingInterrupted("x")},
               evil)  # fmt: skip
    with pytest.raises(pickle.UnpicklingError):
        torch_recovery(torch.nn.Linear(1, 1), evil, True)
    # Every checkpoint file the recipe writes loads weights-only (the
    # global generators' state: lobes.random_state.RandomState) or is text
    # (the batch generator's and the history's states are JSON).
    files = glob.glob(os.path.join(folder, "save", "CKPT*", "*"))
    assert any(f.endswith("hubert.ckpt") for f in files)
    assert any(f.endswith("random_state.ckpt") for f in files)
    for path in files:
        if path.endswith(".ckpt") and not path.endswith(
            ("batches.ckpt", "history.ckpt",
             "brain.ckpt", "counter.ckpt", "dataloader-TRAIN.ckpt")
        ):  # fmt: skip
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.endswith((".ckpt", ".yaml")):
            with open(path, encoding="utf-8") as fin:
                fin.read()
    torch.load(os.path.join(folder, "kmeans_targets.pt"), weights_only=True)


def test_kmeans_targets_deterministic_per_seed():
    first, second = toy_corpus(6), toy_corpus(6)
    assert torch.equal(first.centroids, second.centroids)
    for factor in first.speed_factors:
        for a, b in zip(first.targets[factor], second.targets[factor]):
            assert torch.equal(a, b)
    other = toy_corpus(6, seed=1)
    assert not torch.equal(first.centroids, other.centroids)


def test_second_iteration_clusters_a_model_layer(trained_folder, tmp_path):
    folder, _ = trained_folder
    corpus = toy_corpus(
        4, features=target_features(targets_from=folder, targets_layer=1)
    )
    assert corpus.features.name == "hubert:L1"
    assert tuple(corpus.centroids.shape) == (4, 32)  # the tiny model's width
    for wav, targets in zip(corpus.waves[1.0], corpus.targets[1.0]):
        assert targets.numel() == num_frames(wav.numel())
    with pytest.raises(HparamsError, match="no config.json"):
        target_features(targets_from=str(tmp_path))


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + torch.randn(40, 2, generator=gen) for c in centres])
    found, inertia = kmeans(points, 3, seed=7)
    order = sorted(range(3), key=lambda i: found[i].round().tolist())
    torch.testing.assert_close(found[order], centres[[0, 2, 1]], atol=0.5,
                               rtol=0)  # fmt: skip
    assert 1.0 < inertia < 3.0  # two unit-variance dimensions
    labels = assign_clusters(points, found)
    assert len(set(labels[:40].tolist())) == 1


def test_targets_follow_the_clean_speech_not_the_noisy_input():
    batches = MaskedCropBatches(noisy_prob=1.0, batch_size=4,
                                crop_seconds=0.6)  # fmt: skip
    batches.attach(toy_corpus(4))
    wav, targets, mask = batches[0]
    assert wav.shape[0] == 4
    assert targets.shape == mask.shape
    assert targets.shape[1] == num_frames(wav.shape[1])
    # Inputs are normalised, noisy (not equal to any clean crop's scale).
    torch.testing.assert_close(
        wav.std(1, unbiased=False), torch.ones(len(wav)), atol=1e-3, rtol=0
    )
    assert 0.2 < mask.float().mean() < 0.9


def test_masked_prediction_loss_falls_on_toy(tmp_path):
    brain, fit = toy_brain(
        str(tmp_path / "m"), number_of_epochs=12, steps_per_epoch=5,
        lr=5e-3, noisy_prob=0.0, dropout=0.0, speed_factors=[1.0],
        mask_length=2, unmasked_weight=0.0,
    )  # fmt: skip
    fit()
    train = [e["train"]["loss"] for e in brain.history.epochs]
    assert train[-1] < 0.65 * train[0], train
    # Masked tones are predicted from context, above the majority class.
    valid = brain.history.epochs[-1]["valid"]
    assert valid["masked_acc_clean"] > valid["majority_acc"] + 0.15


def test_resume_after_a_crash_gives_the_same_state(tmp_path):
    straight, fit = toy_brain(str(tmp_path / "a"))
    fit()

    class Crash(SSLPretrainBrain):
        def on_stage_start(self, stage, epoch=None):
            if epoch == 2:
                raise RuntimeError("crash")
            super().on_stage_start(stage, epoch)

    out = str(tmp_path / "b")
    crashed, fit = toy_brain(out, Crash)
    with pytest.raises(RuntimeError, match="crash"):
        fit()
    assert len(crashed.history.epochs) == 1
    resumed, fit = toy_brain(out)
    fit()
    assert losses(resumed) == losses(straight)
    assert_same_weights(weights(resumed), weights(straight))


def test_signal_stops_between_steps_and_resumes(tmp_path):
    straight, fit = toy_brain(str(tmp_path / "a"))
    fit()

    class Interrupt(SSLPretrainBrain):
        def on_fit_batch_end(self, batch, outputs, loss, should_step):
            if self.optimizer_step == 4:  # mid-epoch 2
                os.kill(os.getpid(), signal.SIGINT)
            super().on_fit_batch_end(batch, outputs, loss, should_step)

    out = str(tmp_path / "b")
    # The handler in force before the call, whatever it is: Python's own, or
    # SIG_IGN when the suite runs as a background job of a shell.
    before = signal.getsignal(signal.SIGINT)
    stopped, fit = toy_brain(out, Interrupt)
    line = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        with GracefulStop(stream=line) as stopped.stop:
            fit()
    assert exit_info.value.code == 130
    assert line.getvalue().startswith(
        "stopped by SIGINT after step 1 of 3 of epoch 2; checkpoint saved"
    )
    assert line.getvalue().count("\n") == 1
    assert signal.getsignal(signal.SIGINT) == before
    assert stopped.optimizer_step == 4
    resumed, fit = toy_brain(out)
    fit()
    assert losses(resumed) == losses(straight)
    assert_same_weights(weights(resumed), weights(straight))


def test_recipe_errors_are_one_line(tiny_corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_recipe(str(tmp_path / "a"), tiny_corpus, "--mask_prob=2")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "--mask_prob=2" in err
    assert "[0, 1]" in err
    with pytest.raises(SystemExit):
        run_recipe(str(tmp_path / "b"), str(tmp_path / "nowhere"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nowhere: data folder not found" in err
    (tmp_path / "half" / "clean_trainset_28spk_wav").mkdir(parents=True)
    with pytest.raises(SystemExit):
        run_recipe(str(tmp_path / "c"), str(tmp_path / "half"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "_trainset_28spk" in err
    with pytest.raises(DataFolderError, match="manifest not found"):
        read_clean_noisy(str(tmp_path / "none.csv"))
    with pytest.raises(SystemExit) as exit_info:
        ssl_probe.main([str(tmp_path), "--data_folder", str(tmp_path / "no")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "data folder not found" in err


def test_real_sigint_saves_prints_one_line_and_resumes(tiny_corpus,
                                                       tmp_path):  # fmt: skip
    """Ctrl-C on the command line: one line, exit 130, then a resume."""
    out = str(tmp_path / "run")
    argv = [
        sys.executable, "train.py", os.path.relpath(YAML, RECIPE),
        f"--output_folder={out}", f"--data_folder={tiny_corpus}",
        "--num_clusters=8", "--number_of_epochs=1", "--steps_per_epoch=150",
        "--noprogressbar", *[f"--{k}={v}" for k, v in TINY.items()],
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(argv, cwd=RECIPE, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            restore_signals=True)  # fmt: skip
    log = os.path.join(out, "log.txt")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(log) and "Going into epoch 1" in open(log).read():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGINT")
    assert "run the same command to resume" in stderr
    assert glob.glob(os.path.join(out, "save", "CKPT*", "dataloader-TRAIN*"))
    done = subprocess.run(argv, cwd=RECIPE, env=env, text=True,
                          capture_output=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with open(os.path.join(out, "pretrain_log.json")) as fin:
        assert json.load(fin)["config"]["steps"] == 150


def test_probe_measures_on_hand_made_toys():
    # Three classes on a line; the last test point is labelled wrongly.
    train_x = np.array([[0.0], [0.2], [5.0], [5.2], [10.0], [10.2]])
    train_y = np.array([0, 0, 1, 1, 2, 2])
    test_x = np.array([[0.1], [5.1], [9.9]])
    test_y = np.array([0, 1, 1])
    probe = ssl_probe.logistic_probe(train_x, train_y)
    assert ssl_probe.accuracy(probe, test_x, test_y) == pytest.approx(2 / 3)
    assert ssl_probe.nearest_neighbour_accuracy(
        train_x, train_y, test_x, test_y
    ) == pytest.approx(2 / 3)
    # Noisy = clean + 1 everywhere; neighbours differ by 2, 2 and 4.
    clean = [torch.full((5, 3), v) for v in (0.0, 2.0, 4.0)]
    noisy = [c + 1.0 for c in clean]
    assert ssl_probe.invariance_ratio(clean, noisy) == pytest.approx(
        1.0 / (8.0 / 3.0)
    )
    assert ssl_probe.invariance_ratio(clean, clean) == 0.0


def test_probe_speakers_are_unheard(tiny_corpus):
    groups = probe_data.voicebank_speaker_groups("tiny", 0)
    # The rebuilt speaker draw is the corpus's: the first training
    # transcript, spoken by the rebuilt speaker, is the corpus file.
    txt = os.path.join(tiny_corpus, "trainset_28spk_txt", "p227_001.txt")
    with open(txt) as fin:
        text = fin.read().strip().rstrip(".").lower()
    wav, _ = sf.read(
        os.path.join(tiny_corpus, "clean_trainset_28spk_wav", "p227_001.wav")
    )

    def similarity(speaker):
        synth = tts.synthesize(text, speaker, 16000).numpy()
        size = min(synth.size, wav.size)
        return abs(np.corrcoef(synth[:size], wav[:size])[0, 1])

    assert similarity(groups["train"][0]) > 0.99
    assert similarity(groups["train"][1]) < 0.9
    train, test = probe_data.probe_speakers("tiny", 0, per_side=4)
    seen = {s.variant for g in probe_data.SEEN_GROUPS for s in groups[g]}
    probe_variants = [s.variant for s in train + test]
    assert len(set(probe_variants)) == 8
    assert seen.isdisjoint(probe_variants)


def test_pretrain_log_is_json(trained_folder):
    folder, _ = trained_folder
    with open(os.path.join(folder, "pretrain_log.json")) as fin:
        log = json.load(fin)
    assert log["config"]["num_clusters"] == 8
    assert log["config"]["steps"] == 3
    assert [h["steps"] for h in log["history"]] == [3]
    assert 0.0 <= log["holdout"][-1]["masked_acc_clean"] <= 1.0


def test_evaluate_tables_every_feature_set(trained_folder, tiny_corpus):
    folder, _ = trained_folder
    results = ssl_probe.evaluate([folder], tiny_corpus, "tiny", per_side=1)
    rows = results["rows"]
    assert [(r["model"], r["layer"]) for r in rows] == [
        ("MFCC-20", "-"), ("MFCC-39", "-"),
        ("random init", "L0"), ("random init", "L1"), ("random init", "L2"),
        ("hubert", "L0"), ("hubert", "L1"), ("hubert", "L2"),
    ]  # fmt: skip
    for row in rows:
        for key in ("probe_lr", "probe_1nn", "probe_lr_noisy"):
            assert 0.0 <= row[key] <= 1.0
        assert row["invariance"] > 0.0
    # MFCCs of an unseen speaker's words are far above chance (1/51).
    assert rows[1]["probe_lr"] > 0.2
    assert results["setup"]["pretraining"]["hubert"]["steps"] == 3
    table = ssl_probe.format_table(results)
    assert table.count("\n") == len(rows) + 2
    # The probe is deterministic: the same folder, the same numbers.
    again = ssl_probe.evaluate([folder], tiny_corpus, "tiny", per_side=1)
    assert again["rows"] == rows
