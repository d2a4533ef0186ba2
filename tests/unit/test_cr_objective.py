"""ContrastiveObjective on its own (no Brain): the gradient path, the
feature cache, the ramp, CCR's reference negative and the curriculum's
statistics, with a tiny random WavLM."""

import pytest
import speechbrain as sb
import torch

from lobes.data.enhancement_data import FeatureCache
from lobes.errors import HparamsError, ModelSourceError
from lobes.losses.contrastive_regularization import ContrastiveRegularization
from lobes.losses.curriculum import SimilarityCurriculum, UniformCurriculum
from lobes.objectives import ContrastiveObjective
from lobes.ssl_features import FrozenSSLFeatures, save_tiny_ssl_model

SEGMENT = 3200  # 0.2 s at 16 kHz


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    return save_tiny_ssl_model("wavlm", str(tmp_path_factory.mktemp("wavlm")))


def make_objective(folder, negatives=("noisy",), reference=None,
                   curriculum=None, cache="memory", **kwargs):
    objective = ContrastiveObjective(
        ContrastiveRegularization(layer_weights=[2.0, 1.0], distance="mse"),
        1.0, list(negatives),
        ssl_features=FrozenSSLFeatures(folder, layer_groups=[[1, 2], [3, 4]]),
        curriculum=curriculum,
        feature_cache=FeatureCache(cache, dtype="float32"),
        reference_model=reference, **kwargs,
    )
    objective.setup("cpu")
    return objective


def signals(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clean = 0.1 * torch.randn(batch, SEGMENT, generator=generator)
    noisy = clean + 0.05 * torch.randn(batch, SEGMENT, generator=generator)
    enhanced = clean + 0.02 * torch.randn(batch, SEGMENT, generator=generator)
    return enhanced, clean, noisy, torch.ones(batch)


def count_forwards(module):
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_gradient_reaches_the_enhanced_signal_only(tiny_wavlm):
    objective = make_objective(tiny_wavlm)
    enhanced, clean, noisy, lengths = signals()
    enhanced.requires_grad_(True)
    clean.requires_grad_(True)
    noisy.requires_grad_(True)
    term, stats = objective.loss(enhanced, clean, noisy, lengths, ["a", "b"])
    term.backward()
    assert enhanced.grad is not None and enhanced.grad.abs().sum() > 0
    assert clean.grad is None and noisy.grad is None
    assert all(not p.requires_grad and p.grad is None
               for p in objective.ssl.parameters())
    assert not objective.ssl.model.training
    assert list(stats) == ["cr", "cr_gap_noisy", "cr_weight"]
    assert float(stats["cr"]) > 0 and stats["cr_weight"] == 1.0


def test_a_cache_hit_serves_the_features_computed_before(tiny_wavlm):
    objective = make_objective(tiny_wavlm)
    _, clean, noisy, lengths = signals()
    ssl_calls = count_forwards(objective.ssl)
    first = objective.target_features(noisy, clean, lengths, ["a", "b"])
    assert len(ssl_calls) == 1  # clean and noisy in one pass
    second = objective.target_features(noisy, clean, lengths, ["a", "b"])
    assert len(ssl_calls) == 1  # served from the cache
    assert objective.feature_cache.hits == 2 * 2
    for kind in ("clean", "noisy"):
        assert all(torch.equal(a, b)
                   for a, b in zip(first[kind], second[kind]))
    with torch.no_grad():
        fresh = objective.ssl(clean)
    assert all(torch.allclose(a, b, atol=1e-5)
               for a, b in zip(second["clean"], fresh))


def test_the_weight_ramps_up_over_the_first_epochs(tiny_wavlm):
    objective = make_objective(tiny_wavlm, ramp_epochs=2)
    values = [
        objective.ramp(epoch, step, 10)
        for epoch, step in ((1, 0), (1, 5), (2, 0), (2, 10), (3, 4))
    ]
    assert values == [0.0, 0.25, 0.5, 1.0, 1.0]
    enhanced, clean, noisy, lengths = signals()
    ids = ["a", "b"]
    term, stats = objective.loss(enhanced, clean, noisy, lengths, ids,
                                 epoch=1, step=5, steps=10)
    full, _ = make_objective(tiny_wavlm).loss(
        enhanced, clean, noisy, lengths, ids
    )
    assert stats["cr_weight"] == 0.25
    torch.testing.assert_close(term, 0.25 * full)


def test_ccr_negative_is_the_reference_output_computed_once(tiny_wavlm):
    torch.manual_seed(0)
    reference = torch.nn.Conv1d(1, 1, 5, padding=2)
    forward = reference.forward
    reference.forward = lambda x: forward(x.unsqueeze(1)).squeeze(1)
    reference_calls = count_forwards(reference)
    objective = make_objective(
        tiny_wavlm, negatives=("noisy", "reference"), reference=reference,
        curriculum=SimilarityCurriculum(["noisy", "reference"],
                                        ramp_epochs=2),
    )
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    objective.start_stage(sb.Stage.TRAIN, 1)
    enhanced, clean, noisy, lengths = signals()
    for _ in range(2):
        _, stats = objective.loss(enhanced, clean, noisy, lengths,
                                  ["a", "b"], epoch=1)
    assert len(reference_calls) == 1  # then cached
    assert {"cr_gap_noisy", "cr_gap_reference"} <= set(stats)
    targets = objective.target_features(noisy, clean, lengths, ["a", "b"])
    with torch.no_grad():
        expected = objective.ssl(reference(noisy))
    assert all(torch.allclose(a, b, atol=1e-5)
               for a, b in zip(targets["reference"], expected))
    gammas = objective.end_stage(sb.Stage.TRAIN, 1)
    assert set(gammas) == {"gamma_noisy", "gamma_reference"}
    assert sum(gammas.values()) == pytest.approx(1.0)
    assert objective.curriculum.distance_count == 2


def test_reference_negative_needs_a_reference_model(tiny_wavlm, tmp_path):
    experiment = {
        "objectives": {"cr_negatives": ["noisy", "reference"],
                       "cr_weight": 1.0, "reference_model": None},
        "reference_hparams": "hparams/convtasnet.yaml",
    }
    objective = ContrastiveObjective(
        ContrastiveRegularization(), 1.0, ["noisy", "reference"],
        ssl_features=FrozenSSLFeatures(tiny_wavlm, layer_groups=[[1]]),
    )
    with pytest.raises(ModelSourceError, match="needs a baseline"):
        objective.setup("cpu", experiment=experiment)


def test_setup_refuses_unknown_negatives_and_a_missing_space(tiny_wavlm):
    with pytest.raises(HparamsError, match="some of noisy, reference"):
        make_objective(tiny_wavlm, negatives=("clean",))
    with pytest.raises(HparamsError, match="lists a negative twice"):
        make_objective(tiny_wavlm, negatives=("noisy", "noisy"))
    objective = ContrastiveObjective(
        ContrastiveRegularization(), 1.0, ["noisy"],
        curriculum=UniformCurriculum(["noisy"]),
    )
    with pytest.raises(HparamsError, match="needs a feature space"):
        objective.setup("cpu")


def test_gradient_ratio_every_few_steps(tiny_wavlm):
    objective = make_objective(tiny_wavlm, grad_ratio_every=2)
    weight = torch.nn.Parameter(torch.ones(()))
    enhanced, clean, noisy, lengths = signals()
    main = (weight * enhanced - clean).pow(2).mean()
    total, stats = objective.regularize(
        main, weight * enhanced, clean, noisy, lengths, ["a", "b"],
        [weight], step=1,
    )
    ratio = stats["cr_grad_ratio"]
    term = total - main
    main_grad, = torch.autograd.grad(main, weight, retain_graph=True)
    term_grad, = torch.autograd.grad(term, weight, retain_graph=True)
    assert ratio == pytest.approx(float(term_grad.abs() / main_grad.abs()),
                                  rel=1e-5)
    assert stats["cr_grad_cosine"] == pytest.approx(
        float(torch.sign(term_grad * main_grad)), abs=1e-6
    )  # one parameter: the gradients are parallel or opposite
    _, stats = objective.regularize(
        main, weight * enhanced, clean, noisy, lengths, ["a", "b"],
        [weight], step=2,
    )
    assert "cr_grad_ratio" not in stats


def test_gradient_ratio_every_step(tiny_wavlm):
    objective = make_objective(tiny_wavlm, grad_ratio_every=1)
    weight = torch.nn.Parameter(torch.ones(()))
    enhanced, clean, noisy, lengths = signals()
    main = (weight * enhanced - clean).pow(2).mean()
    for step in (1, 2, 3):
        _, stats = objective.regularize(
            main, weight * enhanced, clean, noisy, lengths, ["a", "b"],
            [weight], step=step,
        )
        assert "cr_grad_ratio" in stats, step
