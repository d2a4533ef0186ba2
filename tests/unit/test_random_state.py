"""The random state of training is checkpointed and restored exactly."""

import os
import random

import numpy as np
import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from lobes.random_state import (
    RandomState,
    capture_random_state,
    restore_random_state,
    seed_loader_generator,
)


def draw_everything():
    """Numbers from every generator the state covers."""
    draws = {
        "python": [random.random() for _ in range(5)],
        "python_gauss": random.gauss(0.0, 1.0),
        "numpy": np.random.rand(5).tolist(),
        "numpy_normal": float(np.random.standard_normal()),
        "torch": torch.rand(5).tolist(),
        "dropout": torch.nn.functional.dropout(
            torch.ones(16), 0.5, training=True
        ).tolist(),
    }
    if torch.cuda.is_available():
        draws["cuda"] = torch.rand(5, device="cuda").tolist()
    return draws


def test_save_draw_restore_draw_is_identical(tmp_path):
    random.gauss(0.0, 1.0)  # leave a cached Gaussian in Python's state
    np.random.standard_normal()  # and in NumPy's
    path = tmp_path / "random_state.ckpt"
    RandomState().save(path)
    first = draw_everything()
    for _ in range(3):  # move every generator on
        draw_everything()
    RandomState().load(path, end_of_epoch=False)
    assert draw_everything() == first


def test_file_loads_weights_only(tmp_path):
    path = tmp_path / "random_state.ckpt"
    RandomState().save(path)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"python", "numpy", "torch", "cuda"}
    assert state["torch"].dtype == torch.uint8


def test_state_is_a_copy():
    state = capture_random_state()
    expected = torch.rand(4)
    torch.rand(100)  # must not change the captured state
    restore_random_state(state)
    assert torch.equal(torch.rand(4), expected)


def test_checkpointer_round_trip(tmp_path):
    checkpointer = Checkpointer(
        str(tmp_path), recoverables={"random_state": RandomState()}
    )
    checkpointer.save_checkpoint(end_of_epoch=False)
    first = draw_everything()
    draw_everything()
    checkpointer.recover_if_possible()
    assert draw_everything() == first


def test_without_the_state_draws_differ(tmp_path):
    """The round-trip test would pass without a restore only if the draws
    did not move; they do."""
    first = draw_everything()
    assert draw_everything() != first


def test_loader_generator_repeats_epoch_and_spares_global():
    from torch.utils.data import DataLoader

    generator = torch.Generator()
    loader = DataLoader(range(8), batch_size=2, shuffle=True,
                        generator=generator)
    seed_loader_generator(generator, 7, 3)
    global_state = torch.get_rng_state()
    order = [b.tolist() for b in loader]
    assert torch.equal(torch.get_rng_state(), global_state)
    seed_loader_generator(generator, 7, 3)
    assert [b.tolist() for b in loader] == order
    seed_loader_generator(generator, 7, 4)
    assert [b.tolist() for b in loader] != order


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_state_restored(tmp_path):
    path = os.path.join(tmp_path, "rs.ckpt")
    RandomState().save(path)
    first = torch.rand(8, device="cuda")
    RandomState().load(path, end_of_epoch=True)
    assert torch.equal(torch.rand(8, device="cuda"), first)


def test_epoch_statistics_only_from_intra_epoch(tmp_path):
    from types import SimpleNamespace

    from lobes.metrics import MetricAverager
    from lobes.random_state import EpochStatistics

    brain = SimpleNamespace(stage_stats=MetricAverager())
    brain.stage_stats.append({"si_snr": 2.0, "pesq": float("nan")})
    path = tmp_path / "stats.ckpt"
    EpochStatistics(brain).save(path)
    torch.load(path, weights_only=True)  # plain data
    expected = brain.stage_stats.summarize()
    brain.stage_stats = MetricAverager()
    EpochStatistics(brain).load(path, end_of_epoch=True)
    assert brain.stage_stats.summarize() == {}
    EpochStatistics(brain).load(path, end_of_epoch=False)
    assert brain.stage_stats.summarize() == expected
    assert brain.stage_stats.failures() == {"si_snr": 0, "pesq": 1}
    brain.stage_stats.add("si_snr", 4.0)  # accumulates on
    assert brain.stage_stats.summarize()["si_snr"] == 3.0
