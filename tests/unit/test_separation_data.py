"""Separation datasets: segments, dynamic mixing, speed perturbation, seeds."""

import math
import os

import pytest
import torch
from torch.utils.data import DistributedSampler

from lobes.data.dynamic_mixing import (
    DynamicMixer,
    SpeedPerturbation,
    speed_perturb,
)
from lobes.data.mini_corpora import ensure_mini_corpus
from lobes.data.prepare import prepare_wham
from lobes.data.separation_data import (
    SeparationItems,
    read_manifest,
    separation_datasets,
)
from lobes.errors import DataFolderError, HparamsError

SAMPLE_RATE = 8000


@pytest.fixture(scope="module")
def wham_manifests(mini_cache, tmp_path_factory):
    root = ensure_mini_corpus("wham", "tiny", cache_dir=mini_cache)
    save = str(tmp_path_factory.mktemp("wham_manifests"))
    return prepare_wham(root, save)


def _datasets(manifests, num_spks=2, mixture="mix_both", noise_aware=False,
              speed_factors=(95, 100, 105), perturb_noise=True, **examples):
    """The datasets a separation experiment with these settings builds."""
    examples = {
        "segment_seconds": 0.5,
        "dynamic_mixing": False,
        "dynamic_mixer": DynamicMixer(),
        "speed_perturb": False,
        "speed_perturbation": SpeedPerturbation(speed_factors, perturb_noise),
        **examples,
    }
    experiment = {"num_spks": num_spks, "sample_rate": SAMPLE_RATE,
                  "noise_aware": noise_aware, "examples": examples}
    return separation_datasets(manifests, experiment, seed=7, mixture=mixture)


def _assert_sum_of_parts(item):
    parts = item["sources_sig"].sum(dim=-1) + item["noise_sig"]
    assert torch.allclose(item["mix_sig"], parts, atol=1e-6)


def test_static_training_segments_are_aligned_crops(wham_manifests):
    data = _datasets(wham_manifests)
    rows = read_manifest(wham_manifests["train"], 2)
    for index in range(3):
        item = data["train"][index]
        assert item["mix_sig"].shape[0] == int(0.5 * SAMPLE_RATE)
        assert item["sources_sig"].shape == (int(0.5 * SAMPLE_RATE), 2)
        assert item["id"] == rows[index]["ID"]
        # the mini WHAM! mixture is the sum of its (16-bit) parts
        parts = item["sources_sig"].sum(dim=-1) + item["noise_sig"]
        assert (item["mix_sig"] - parts).abs().max() < 1e-3


def test_evaluation_items_are_whole_utterances(wham_manifests):
    from lobes.data.audio import read_audio

    data = _datasets(wham_manifests)
    row = read_manifest(wham_manifests["test"], 2)[0]
    item = data["test"][0]
    expected = read_audio(row["mix_wav"], SAMPLE_RATE)
    assert torch.equal(item["mix_sig"], expected)
    assert item["sources_sig"].shape == (expected.shape[0], 2)
    capped = _datasets(wham_manifests, eval_max_seconds=0.25)
    assert capped["valid"][0]["mix_sig"].shape[0] == 2000


def test_dynamic_mixing_sums_its_parts_and_follows_epochs(wham_manifests):
    data = _datasets(wham_manifests, dynamic_mixing=True, speed_perturb=True)
    train = data["train"]
    first = [train[i] for i in range(4)]
    for item in first:
        _assert_sum_of_parts(item)
        assert item["mix_sig"].abs().max() <= 0.9 + 1e-6
        assert item["mix_sig"].shape[0] <= int(0.5 * SAMPLE_RATE)
    # same epoch, same data; a new epoch, new mixtures
    again = train[0]
    assert torch.equal(again["mix_sig"], first[0]["mix_sig"])
    train.set_epoch(2)
    changed = train[0]
    assert not torch.equal(changed["mix_sig"][:100], first[0]["mix_sig"][:100])
    train.set_epoch(0)
    assert torch.equal(train[0]["mix_sig"], first[0]["mix_sig"])


def test_dynamic_mixing_draws_speakers_of_distinct_mixtures(wham_manifests):
    pool = read_manifest(wham_manifests["train"], 2)
    items = SeparationItems(
        2, SAMPLE_RATE, training=True, dynamic_mixer=DynamicMixer(),
        pool=pool,
    )
    pairs = set()
    for seed in range(50):
        sources, noise_row = items.draw_sources(
            torch.Generator().manual_seed(seed)
        )
        rows = [row for row, _ in sources]
        assert len(set(rows)) == 2, "speakers of distinct mixtures"
        assert 0 <= noise_row < len(pool)
        pairs.add(tuple(sorted(rows)))
    assert len(pairs) > 10, "many different speaker pairs"


def test_distributed_ranks_get_different_data(wham_manifests):
    train = _datasets(wham_manifests, dynamic_mixing=True)["train"]
    train.set_epoch(1)
    batches = []
    for rank in (0, 1):
        sampler = DistributedSampler(
            train, num_replicas=2, rank=rank, shuffle=True, seed=3
        )
        sampler.set_epoch(1)
        batches.append([train[i]["mix_sig"] for i in sampler])
    assert len(batches[0]) == len(batches[1]) == 4
    for a in batches[0]:
        for b in batches[1]:
            assert a.shape != b.shape or not torch.equal(a, b)


def test_speed_perturbation_changes_length():
    signal = torch.randn(2000)
    assert speed_perturb(signal, 100) is signal
    assert speed_perturb(signal, 95).shape[0] == math.ceil(2000 * 100 / 95)
    assert speed_perturb(signal, 105).shape[0] == math.ceil(2000 * 100 / 105)


def test_static_speed_perturbation_remixes(wham_manifests):
    data = _datasets(wham_manifests, speed_perturb=True,
                     speed_factors=[90, 110])
    for index in range(3):
        _assert_sum_of_parts(data["train"][index])


def test_noise_is_copied_unchanged_unless_perturb_noise(wham_manifests):
    from lobes.data.audio import read_audio

    row = read_manifest(wham_manifests["train"], 2)[0]
    noise = read_audio(row["noise_wav"], SAMPLE_RATE)
    kept = _datasets(wham_manifests, speed_perturb=True, speed_factors=[90],
                     perturb_noise=False, segment_seconds=None)
    item = kept["train"][0]
    # speakers at 90 % speed are longer; the noise is the file's own
    # samples (the example ends with the shortest part: the noise)
    assert torch.equal(item["noise_sig"], noise[: item["noise_sig"].shape[0]])
    _assert_sum_of_parts(item)
    moved = _datasets(wham_manifests, speed_perturb=True, speed_factors=[90],
                      perturb_noise=True, segment_seconds=None)
    assert moved["train"][0]["noise_sig"].shape[0] > noise.shape[0]


def test_clean_mixtures_have_zero_noise(wham_manifests):
    data = _datasets(wham_manifests, mixture="mix_clean")
    item = data["test"][0]
    assert float(item["noise_sig"].abs().max()) == 0.0
    with pytest.raises(HparamsError, match="mix_clean"):
        _datasets(wham_manifests, mixture="mix_clean", noise_aware=True)


def test_wrong_speaker_count_is_one_line(wham_manifests):
    with pytest.raises(DataFolderError) as err:
        _datasets(wham_manifests, num_spks=3)
    message = str(err.value)
    assert "s3_wav" in message and "\n" not in message
    assert os.path.basename(wham_manifests["train"]) in message
