"""Offline HuBERT pre-training (lobes.ssl_pretrain) and its probes."""

import json
import os
import signal

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from lobes import ssl_pretrain as sp
from lobes import ssl_probe
from lobes.data import tts
from lobes.errors import DataFolderError
from lobes.ssl_features import FrozenSSLFeatures

#: A model small enough to train for a few steps in a second.
TINY = dict(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    ffn_size=64,
    conv_channels=16,
    pos_conv_kernel=8,
    pos_conv_groups=4,
    proj_dim=16,
    batch_size=4,
    crop_seconds=0.6,
    log_every=1,
    valid_every=1000,
    checkpoint_every=1000,
)


pytestmark = pytest.mark.usefixtures("one_thread")


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


def toy_data(config):
    clean, noisy = toy_speech(count=8)
    return sp.PretrainData(
        clean[2:], noisy[2:], clean[:2], noisy[:2], config, None
    )


@pytest.fixture(scope="module")
def tiny_corpus(mini_cache):
    from lobes.data.mini_corpora import ensure_mini_corpus

    return ensure_mini_corpus("voicebank", size="tiny", cache_dir=mini_cache)


@pytest.fixture(scope="module")
def trained_folder(tiny_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ssl") / "hubert")
    config = sp.PretrainConfig(
        data_folder=tiny_corpus, size="tiny", steps=3, num_clusters=8, **TINY
    )
    result = sp.pretrain(out, config, log=None)
    return out, result


def test_saved_folder_loads_and_passes_gradients(trained_folder):
    folder, result = trained_folder
    assert result["finished"] and result["training_utterances"] == 8
    assert result["holdout_utterances"] == 4  # p226 and p287, 2 each
    assert not os.path.exists(os.path.join(folder, "pretrain_checkpoint.pt"))
    ssl = FrozenSSLFeatures(folder, layers=[0, 1, 2])
    assert ssl.model.config.model_type == "hubert"
    assert ssl.normalize_waveform  # do_normalize from preprocessor_config
    wav = torch.randn(2, 8000, requires_grad=True)
    feats = ssl(wav)
    assert [tuple(f.shape) for f in feats] == [(2, 24, 32)] * 3
    sum(f.pow(2).mean() for f in feats).backward()
    assert wav.grad.abs().sum() > 0
    # The saved weights are the trained ones, not the initialisation.
    config = sp.PretrainConfig.from_dict(result["config"])
    initial, _ = sp.build_model(config)
    saved = load_file(os.path.join(folder, "model.safetensors"))
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(saved[key], initial.state_dict()[key])


def test_finished_folder_is_left_alone(trained_folder):
    folder, result = trained_folder
    before = os.path.getmtime(os.path.join(folder, "model.safetensors"))
    config = sp.PretrainConfig.from_dict(result["config"])
    again = sp.pretrain(folder, config, log=None)
    assert again["history"] == result["history"]
    assert os.path.getmtime(os.path.join(folder, "model.safetensors")) == before


def test_kmeans_targets_deterministic_per_seed():
    config = sp.PretrainConfig(num_clusters=6, **TINY)
    first, second = toy_data(config), toy_data(config)
    assert torch.equal(first.centroids, second.centroids)
    for factor in config.speed_factors:
        for a, b in zip(first.targets[factor], second.targets[factor]):
            assert torch.equal(a, b)
    other = toy_data(sp.PretrainConfig(num_clusters=6, seed=1, **TINY))
    assert not torch.equal(first.centroids, other.centroids)


def test_second_iteration_clusters_a_model_layer(trained_folder, tmp_path):
    folder, _ = trained_folder
    config = sp.PretrainConfig(
        num_clusters=4, targets_from=folder, targets_layer=1, **TINY
    )
    data = toy_data(config)
    assert data.features.name == "hubert:L1"
    assert tuple(data.centroids.shape) == (4, 32)  # the tiny model's width
    for wav, targets in zip(data.waves[1.0], data.targets[1.0]):
        assert targets.numel() == sp.num_frames(wav.numel())
    with pytest.raises(sp.PretrainError, match="no config.json"):
        sp.PretrainConfig(targets_from=str(tmp_path)).check()


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + torch.randn(40, 2, generator=gen) for c in centres])
    found, inertia = sp.kmeans(points, 3, seed=7)
    order = sorted(range(3), key=lambda i: found[i].round().tolist())
    torch.testing.assert_close(found[order], centres[[0, 2, 1]], atol=0.5,
                               rtol=0)  # fmt: skip
    assert 1.0 < inertia < 3.0  # two unit-variance dimensions
    labels = sp.assign_clusters(points, found)
    assert len(set(labels[:40].tolist())) == 1


def test_targets_follow_the_clean_speech_not_the_noisy_input():
    config = sp.PretrainConfig(num_clusters=4, noisy_prob=1.0, **TINY)
    data = toy_data(config)
    rng = np.random.default_rng(0)
    wav, targets, mask = data.batch(rng)
    assert wav.shape[0] == config.batch_size
    assert targets.shape == mask.shape
    assert targets.shape[1] == sp.num_frames(wav.shape[1])
    # Inputs are normalised, noisy (not equal to any clean crop's scale).
    torch.testing.assert_close(
        wav.std(1, unbiased=False), torch.ones(len(wav)), atol=1e-3, rtol=0
    )
    assert 0.2 < mask.float().mean() < 0.9


def test_masked_prediction_loss_falls_on_toy(tmp_path):
    config = sp.PretrainConfig(
        num_clusters=4, steps=60, lr=5e-3, noisy_prob=0.0, dropout=0.0,
        speed_factors=(1.0,), mask_length=2, unmasked_weight=0.0,
        **{**TINY, "log_every": 5},
    )  # fmt: skip
    result = sp.pretrain(str(tmp_path / "m"), config, toy_data(config), None)
    losses = [entry["loss"] for entry in result["history"]]
    assert losses[-1] < 0.65 * losses[0], losses
    # Masked tones are predicted from context, above the majority class.
    holdout = result["holdout"][-1]
    assert holdout["masked_acc_clean"] > holdout["majority_acc"] + 0.15


def test_resume_gives_the_same_state(tmp_path):
    config = sp.PretrainConfig(num_clusters=4, steps=6, **TINY)
    straight = sp.pretrain(str(tmp_path / "a"), config, toy_data(config), None)
    out = str(tmp_path / "b")
    paused = sp.pretrain(out, config, toy_data(config), stop_after=3, log=None)
    assert not paused["finished"] and paused["step"] == 3
    assert os.path.exists(os.path.join(out, "pretrain_checkpoint.pt"))
    resumed = sp.pretrain(out, config, toy_data(config), log=None)
    assert resumed["history"] == straight["history"]
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(os.path.join(out, "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_signal_stops_between_steps_and_resumes(tmp_path):
    config = sp.PretrainConfig(num_clusters=4, steps=5, **TINY)
    straight = sp.pretrain(str(tmp_path / "a"), config, toy_data(config), None)

    def interrupt_at_step_2(line):
        if line.startswith("step 2/"):
            os.kill(os.getpid(), signal.SIGINT)

    out = str(tmp_path / "b")
    # The handler in force before the call, whatever it is: Python's own, or
    # SIG_IGN when the suite runs as a background job of a shell.
    before = signal.getsignal(signal.SIGINT)
    stopped = sp.pretrain(
        out, config, toy_data(config), log=interrupt_at_step_2
    )
    assert stopped["interrupted"] and stopped["step"] == 2
    assert signal.getsignal(signal.SIGINT) == before
    resumed = sp.pretrain(out, config, toy_data(config), log=None)
    assert resumed["history"] == straight["history"]


def test_resume_refuses_other_settings(tmp_path):
    config = sp.PretrainConfig(num_clusters=4, steps=4, **TINY)
    out = str(tmp_path / "b")
    sp.pretrain(out, config, toy_data(config), stop_after=2, log=None)
    other = sp.PretrainConfig(num_clusters=4, steps=4, lr=1e-3, **TINY)
    with pytest.raises(sp.PretrainError, match="lr 0.0008 -> 0.001"):
        sp.pretrain(out, other, toy_data(other), log=None)


def test_cli_errors_are_one_line(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        sp.main(["--out", str(busy), "--data_folder", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "notes.txt" in err and "--out" in err
    with pytest.raises(SystemExit):
        sp.main(["--out", str(tmp_path / "new"), "--data_folder",
                 str(tmp_path / "nowhere")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "nowhere: data folder not found" in err and "\n" not in err
    with pytest.raises(SystemExit):
        sp.main(["--out", str(tmp_path / "x"), "--mask_prob", "2"])
    assert "--mask_prob must be in [0, 1]" in capsys.readouterr().err


def test_missing_noisy_folder(tmp_path):
    (tmp_path / "clean_trainset_28spk_wav").mkdir()
    with pytest.raises(DataFolderError, match="noisy_trainset_28spk_wav"):
        sp.read_voicebank_train(str(tmp_path), ())


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
    groups = ssl_probe.voicebank_speaker_groups("tiny", 0)
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
    train, test = ssl_probe.probe_speakers("tiny", 0, per_side=4)
    seen = {s.variant for g in ssl_probe.SEEN_GROUPS for s in groups[g]}
    probe_variants = [s.variant for s in train + test]
    assert len(set(probe_variants)) == 8
    assert seen.isdisjoint(probe_variants)


def test_pretrain_log_is_json(trained_folder):
    folder, _ = trained_folder
    with open(os.path.join(folder, "pretrain_log.json")) as fin:
        log = json.load(fin)
    assert log["config"]["num_clusters"] == 8
    assert [h["step"] for h in log["history"]] == [1, 2, 3]
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
