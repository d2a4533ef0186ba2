"""Warm start of N- and N+1-output separators from a trained run."""

import os

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from lobes.errors import ModelSourceError
from lobes.models.mask_projection import output_projection
from lobes.warm_start import load_shared_state, warm_start
from tests.unit.test_nass_separator import build_from_fragment


def trained_run(folder, separator, losses=(-2.0, -5.0, -4.0)):
    """A run folder with checkpoints of the given validation losses; the
    separator's weights are perturbed before each, so they differ."""
    checkpointer = Checkpointer(os.path.join(folder, "save"),
                                {"separator": separator})
    states = {}
    for step, loss in enumerate(losses):
        with torch.no_grad():
            for param in separator.parameters():
                param.add_(0.01 * (step + 1))
        checkpointer.save_checkpoint(meta={"loss": loss})
        states[loss] = {k: v.clone() for k, v in
                        separator.state_dict().items()}
    return states[min(losses)]


@pytest.mark.parametrize("kind", ["sepformer", "dprnn", "convtasnet"])
def test_n_to_n_plus_one_copies_shared_keeps_noise_rows(tmp_path, kind):
    best = trained_run(tmp_path, build_from_fragment(kind, False, seed=1))
    fork = build_from_fragment(kind, True, seed=9, init_seed=9)
    fresh = {k: v.clone() for k, v in fork.state_dict().items()}
    report = warm_start(fork, str(tmp_path))

    name = "masknet." + output_projection(fork.masknet)[0]
    state = fork.state_dict()
    for key, value in best.items():
        if key.startswith(name + "."):
            rows = value.shape[0]
            assert torch.equal(state[key][:rows], value)
            assert torch.equal(state[key][rows:], fresh[key][rows:])
            assert report.partly_copied[key] == rows
        else:
            assert torch.equal(state[key], value), key
            assert key in report.copied
    assert set(report.copied) | set(report.partly_copied) == set(state)
    # the best checkpoint (lowest loss), not the last
    assert "CKPT" in report.source


def test_noise_rows_reproducible_across_forks(tmp_path):
    trained_run(tmp_path, build_from_fragment("sepformer", False, seed=1))
    forks = [build_from_fragment("sepformer", True, seed=4, init_seed=4)
             for _ in range(2)]
    for fork in forks:
        warm_start(fork, str(tmp_path))
    for a, b in zip(forks[0].state_dict().values(),
                    forks[1].state_dict().values()):
        assert torch.equal(a, b)


def test_n_to_n_copies_everything(tmp_path):
    best = trained_run(tmp_path, build_from_fragment("dprnn", False, seed=1))
    fork = build_from_fragment("dprnn", False, seed=2, init_seed=2)
    report = warm_start(fork, str(tmp_path))
    assert report.partly_copied == {}
    for key, value in fork.state_dict().items():
        assert torch.equal(value, best[key])
    out = fork(torch.randn(1, 400)).waveforms
    assert out.shape == (1, 400, 2)


def test_more_outputs_or_other_backbone_refused():
    nass = build_from_fragment("convtasnet", True)
    base = build_from_fragment("convtasnet", False)
    with pytest.raises(ModelSourceError, match="no more outputs"):
        load_shared_state(base, nass.state_dict())
    with pytest.raises(ModelSourceError, match="same backbone"):
        load_shared_state(base, build_from_fragment("dprnn", False)
                          .state_dict())


def test_folder_without_checkpoint_refused(tmp_path):
    with pytest.raises(ModelSourceError, match="no checkpoint"):
        warm_start(build_from_fragment("convtasnet", True), str(tmp_path))
