"""Fixed training segments and the enhancement datasets."""

import pytest
import torch

from lobes.data.audio import write_audio
from lobes.data.enhancement_data import (
    FeatureCache,
    enhancement_datasets,
    fixed_segment,
)
from lobes.errors import AudioFileError, HparamsError


def test_fixed_segment_is_a_function_of_the_utterance():
    noisy, clean = torch.randn(16000), torch.randn(16000)
    first = fixed_segment([noisy, clean], 4000, "p232_001")
    again = fixed_segment([noisy, clean], 4000, "p232_001")
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # The two signals are cut at the same place.
    start = int((noisy == first[0][0]).nonzero()[0])
    assert torch.equal(clean[start:start + 4000], first[1])
    offsets = {
        int((noisy == fixed_segment([noisy], 4000, f"u{i}")[0][0])
            .nonzero()[0])
        for i in range(20)
    }
    assert len(offsets) > 1  # different utterances, different crops
    other_seed = fixed_segment([noisy], 4000, "p232_001", seed=1)[0]
    assert not torch.equal(other_seed, first[0])


def test_fixed_segment_keeps_short_utterances_whole():
    """No zero padding: a batch pads them, with their true lengths."""
    (whole,) = fixed_segment([torch.ones(100)], 160, "u")
    assert whole.shape == (100,) and whole.eq(1).all()


def _corpus(tmp_path, rate=16000):
    rows = ["ID,duration,noisy_wav,clean_wav,spk_id,transcript"]
    for index, samples in enumerate((24000, 8000)):
        noisy = tmp_path / f"n{index}.wav"
        clean = tmp_path / f"c{index}.wav"
        write_audio(str(noisy), 0.1 * torch.randn(samples), rate)
        write_audio(str(clean), 0.1 * torch.randn(samples), rate)
        rows.append(f"u{index},{samples / rate},{noisy},{clean},p1,HI")
    path = tmp_path / "set.csv"
    path.write_text("\n".join(rows) + "\n")
    return {"train": str(path), "valid": str(path), "test": str(path)}


def test_datasets_fixed_train_segments_whole_eval_utterances(tmp_path):
    sets = enhancement_datasets(_corpus(tmp_path), 16000, 1.0)
    first = [sets["train"][i]["noisy_sig"] for i in range(2)]
    again = [sets["train"][i]["noisy_sig"] for i in range(2)]
    assert [s.shape[0] for s in first] == [16000, 8000]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert sets["test"][0]["clean_sig"].shape[0] == 24000
    assert sets["valid"][1]["noisy_sig"].shape[0] == 8000


def test_datasets_check_the_sample_rate(tmp_path):
    sets = enhancement_datasets(_corpus(tmp_path, rate=8000), 16000, 1.0)
    with pytest.raises(AudioFileError, match="expected 16000 Hz"):
        sets["train"][0]


def test_cache_modes_and_errors(tmp_path):
    with pytest.raises(HparamsError, match="memory, disk, none"):
        FeatureCache("ram")
    disk = FeatureCache("disk", folder=str(tmp_path), dtype=torch.float16)
    features = [torch.randn(2, 5, 3)]
    disk.store("clean", ["a/b", "c"], features)
    reopened = FeatureCache("disk", folder=str(tmp_path))
    loaded = reopened.load("clean", ["a/b", "c"], dtype=torch.float32)
    assert torch.allclose(loaded[0], features[0], atol=1e-2)
    assert reopened.load("clean", ["a/b", "missing"]) is None
    # Utterances with fewer frames come back zero-padded to the longest.
    disk.store("noisy", ["a/b", "c"], features, frames=[5, 2])
    mixed = reopened.load("noisy", ["a/b", "c"], dtype=torch.float32)[0]
    assert mixed.shape == (2, 5, 3) and mixed[1, 2:].eq(0).all()
    none = FeatureCache("none")
    none.store("clean", ["a"], features)
    assert none.load("clean", ["a"]) is None
