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


# ---------------------------------------------------------------- enhancers


def enhancer_run(folder, seed=5):
    """A finished enhancement run: its YAML and two checkpoints, the best
    (lowest validation loss) first; returns the best weights."""
    from tests.unit.test_enhancement_brain import ENHANCER_YAML, make_enhancer

    (folder / "hyperparams.yaml").write_text(ENHANCER_YAML)
    best, worse = make_enhancer(seed=seed), make_enhancer(seed=seed + 1)
    checkpointer = Checkpointer(str(folder / "save"),
                                {"enhance_model": best})
    checkpointer.save_checkpoint(meta={"loss": 1.0})
    checkpointer.recoverables["enhance_model"] = worse
    checkpointer.save_checkpoint(meta={"loss": 2.0})
    return {k: v.clone() for k, v in best.state_dict().items()}


def test_warm_started_enhancer_has_the_runs_best_weights(tmp_path):
    import random

    from lobes.warm_start import warm_start_module
    from tests.unit.test_enhancement_brain import make_enhancer

    best = enhancer_run(tmp_path)
    fresh = make_enhancer(seed=9)
    random.seed(3)
    expected = random.random()
    random.seed(3)
    report = warm_start_module(fresh, str(tmp_path))
    assert random.random() == expected  # its YAML's seeding undone
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, best[key]), key
    assert report.partly_copied == {} and set(report.copied) == set(best)
    assert "CKPT" in report.source and "enhance_model.ckpt" in report.source


def test_enhancement_brain_warm_starts_from_init_from(tmp_path):
    from lobes.brains.enhancement import EnhancementBrain
    from lobes.losses.waveform import mse_loss
    from tests.unit.test_enhancement_brain import make_enhancer

    (tmp_path / "run").mkdir()
    best = enhancer_run(tmp_path / "run")
    brain = EnhancementBrain(
        {"enhance_model": make_enhancer(seed=9)},
        lambda params: torch.optim.Adam(params, 1e-3),
        hparams={"sample_rate": 16000, "init_from": str(tmp_path / "run"),
                 "objectives": {"compute_waveform_loss": mse_loss,
                                "cr_weight": 0.0},
                 "training": {"valid_metrics": []}},
    )
    brain.on_fit_start()
    for key, value in brain.modules.enhance_model.state_dict().items():
        assert torch.equal(value, best[key]), key


def test_a_run_with_its_own_checkpoint_is_not_warm_started(tmp_path):
    from lobes.brains.enhancement import EnhancementBrain
    from lobes.losses.waveform import mse_loss
    from tests.unit.test_enhancement_brain import make_enhancer

    (tmp_path / "run").mkdir()
    best = enhancer_run(tmp_path / "run")

    def brain(model, init_from):
        return EnhancementBrain(
            {"enhance_model": model},
            lambda params: torch.optim.Adam(params, 1e-3),
            hparams={"sample_rate": 16000, "init_from": init_from,
                     "objectives": {"compute_waveform_loss": mse_loss,
                                    "cr_weight": 0.0},
                     "training": {"valid_metrics": []}},
            checkpointer=Checkpointer(str(tmp_path / "save"),
                                      {"enhance_model": model}),
        )

    first = brain(make_enhancer(seed=9), None)  # a run, interrupted
    first.on_fit_start()
    first.checkpointer.save_checkpoint(meta={"loss": 0.5})
    mine = first.modules.enhance_model.state_dict()
    again = brain(make_enhancer(seed=11), str(tmp_path / "run"))
    calls = []
    again.warm_start = calls.append
    again.on_fit_start()  # the same command again
    assert calls == []  # its own checkpoint, recovered, is what it holds
    weights = again.modules.enhance_model.state_dict()
    assert all(torch.equal(weights[k], mine[k]) for k in mine)
    assert not all(torch.equal(weights[k], best[k]) for k in best)


@pytest.mark.parametrize("folder", ["absent", "empty", "empty_yaml",
                                    "other_model"])
def test_bad_init_from_fails_in_one_line(tmp_path, folder):
    from lobes.warm_start import warm_start_module
    from tests.unit.test_enhancement_brain import make_enhancer

    source = tmp_path / folder
    if folder.startswith("empty"):
        source.mkdir()
    if folder == "empty_yaml":
        (source / "hyperparams.yaml").write_text("")
    if folder == "other_model":
        source.mkdir()
        enhancer_run(source)
    fresh = (torch.nn.Linear(2, 2) if folder == "other_model"
             else make_enhancer())
    with pytest.raises(ModelSourceError) as err:
        warm_start_module(fresh, str(source))
    message = str(err.value)
    assert "\n" not in message and message.startswith("init_from: ")
    assert str(source) in message


def test_init_from_is_a_checked_hparam(tmp_path):
    from lobes.errors import HparamsError
    from lobes.hparam_checks import check_override_values

    recipe = tmp_path / "r.yaml"
    recipe.write_text("init_from: null\nevaluate_on: test\n")
    enhancer_run(tmp_path)
    check_override_values(str(recipe), f"init_from: {tmp_path}")
    check_override_values(str(recipe), "evaluate_on: valid")
    for bad, what in ((f"init_from: {tmp_path / 'nothing'}", "init_from"),
                      ("evaluate_on: train", "valid or test")):
        with pytest.raises(HparamsError, match=what) as err:
            check_override_values(str(recipe), bad)
        assert "\n" not in str(err.value)
