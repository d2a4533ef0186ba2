"""FrozenSSLFeatures: frozen, eval-mode, differentiable in the input."""

import json
import os

import pytest
import torch
import torchaudio

from lobes.errors import HparamsError, ModelSourceError
from lobes.ssl_features import (
    FrozenSSLFeatures,
    load_ssl_model,
    save_tiny_ssl_model,
)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ssl")
    return {
        kind: save_tiny_ssl_model(kind, str(root / kind))
        for kind in ("wavlm", "hubert", "wav2vec2")
    }


@pytest.mark.parametrize("kind", ["wavlm", "hubert", "wav2vec2"])
def test_gradient_reaches_input_not_weights(tiny_folders, kind):
    ssl = FrozenSSLFeatures(tiny_folders[kind], layers=[0, 2, 4])
    wav = torch.randn(2, 8000, requires_grad=True)
    features = ssl(wav)
    assert [tuple(f.shape) for f in features] == [(2, 24, 32)] * 3
    sum(f.pow(2).mean() for f in features).backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in ssl.parameters())
    assert all(p.grad is None for p in ssl.parameters())


def test_model_class_follows_config(tiny_folders):
    names = {
        kind: type(load_ssl_model(folder)[0]).__name__
        for kind, folder in tiny_folders.items()
    }
    assert names == {
        "wavlm": "WavLMModel",
        "hubert": "HubertModel",
        "wav2vec2": "Wav2Vec2Model",
    }


def test_tiny_model_is_tiny(tiny_folders):
    for folder in tiny_folders.values():
        size = sum(
            os.path.getsize(os.path.join(folder, name))
            for name in os.listdir(folder)
        )
        assert size < 1_000_000


def test_stays_in_eval_mode_inside_a_training_parent(tiny_folders):
    ssl = FrozenSSLFeatures(tiny_folders["wavlm"])
    # Dropout would be active in train mode: make it large to be visible.
    for module in ssl.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    parent = torch.nn.ModuleDict({"ssl": ssl, "head": torch.nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training and ssl.training
    assert not any(m.training for m in ssl.model.modules())
    wav = torch.randn(1, 4000)
    first, second = ssl(wav), ssl(wav)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # The same model switched to train mode really is stochastic.
    ssl.model.train()
    assert not torch.equal(ssl(wav)[-1], ssl(wav)[-1])


def test_resampling_from_8khz(tiny_folders):
    ssl8 = FrozenSSLFeatures(tiny_folders["hubert"], input_sample_rate=8000)
    ssl16 = FrozenSSLFeatures(tiny_folders["hubert"])
    wav8 = torch.randn(1, 8000, requires_grad=True)
    wav16 = torchaudio.functional.resample(wav8.detach(), 8000, 16000)
    out8, out16 = ssl8(wav8), ssl16(wav16)
    assert out8[0].shape == (1, 49, 32)
    torch.testing.assert_close(out8, out16)
    out8[-1].sum().backward()
    assert wav8.grad.abs().sum() > 0


def test_layer_groups_sum_hidden_states(tiny_folders):
    folder = tiny_folders["wavlm"]
    single = FrozenSSLFeatures(folder, layers=[1, 2, 3, 4])
    grouped = FrozenSSLFeatures(folder, layer_groups=[[1, 2], [3, 4]])
    wav = torch.randn(2, 4000)
    layers, groups = single(wav), grouped(wav)
    torch.testing.assert_close(groups[0], layers[0] + layers[1])
    torch.testing.assert_close(groups[1], layers[2] + layers[3])


def test_dropping_unused_layers_changes_nothing(tiny_folders):
    folder = tiny_folders["wavlm"]
    shallow = FrozenSSLFeatures(folder, layers=[0, 2])
    full = FrozenSSLFeatures(folder, layers=[0, 2, 4])
    assert len(shallow.model.encoder.layers) == 2
    wav = torch.randn(1, 4000)
    torch.testing.assert_close(shallow(wav), full(wav)[:2])


def test_wav2vec2_normalises_the_waveform(tiny_folders):
    ssl = FrozenSSLFeatures(tiny_folders["wav2vec2"])
    assert ssl.normalize_waveform
    assert not FrozenSSLFeatures(tiny_folders["wavlm"]).normalize_waveform
    wav = torch.randn(1, 4000)
    torch.testing.assert_close(ssl(wav), ssl(3.0 * wav + 0.1))


def test_missing_folder_is_one_line_error(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ModelSourceError) as info:
        FrozenSSLFeatures(missing)
    message = str(info.value)
    assert "\n" not in message
    assert "--ssl_source=" in message and missing in message


def test_folder_without_config_is_one_line_error(tmp_path):
    with pytest.raises(ModelSourceError, match="--ssl_source=") as info:
        FrozenSSLFeatures(str(tmp_path))
    assert "config.json" in str(info.value) and "\n" not in str(info.value)


def test_unsupported_model_type(tmp_path):
    with open(tmp_path / "config.json", "w") as fout:
        json.dump({"model_type": "bert"}, fout)
    with pytest.raises(ModelSourceError, match="model type 'bert'"):
        FrozenSSLFeatures(str(tmp_path))


def test_uncached_hub_id_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="--ssl_source=") as info:
        FrozenSSLFeatures("microsoft/wavlm-base-plus", save_path=str(tmp_path))
    assert "\n" not in str(info.value)


def test_layer_out_of_range(tiny_folders):
    with pytest.raises(HparamsError, match="layer 7 does not exist"):
        FrozenSSLFeatures(tiny_folders["hubert"], layers=[1, 7])
    with pytest.raises(HparamsError, match="either layers or layer_groups"):
        FrozenSSLFeatures(tiny_folders["hubert"], [1], [[1]])
