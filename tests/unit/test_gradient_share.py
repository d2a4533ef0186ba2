"""gradient_share: norms, shares and cosine of two losses' gradients."""

import math

import pytest
import torch

from lobes.losses.gradient_share import gradient_share


def _model_and_losses(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)
    )
    inputs = torch.randn(8, 6)
    out = model(inputs)
    first = out.pow(2).mean()
    second = 0.3 * (out[:, 0] - out[:, 1]).abs().mean()
    return model, first, second


def _flat_gradient(loss, parameters):
    for p in parameters:
        p.grad = None
    loss.backward(retain_graph=True)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    for p in parameters:
        p.grad = None
    return flat


def test_matches_separate_backward_passes():
    model, first, second = _model_and_losses()
    params = list(model.parameters())
    share = gradient_share(first, second, params)
    g1, g2 = (_flat_gradient(loss, params) for loss in (first, second))
    n1, n2 = g1.norm().item(), g2.norm().item()
    assert share["first_norm"] == pytest.approx(n1, rel=1e-5)
    assert share["second_norm"] == pytest.approx(n2, rel=1e-5)
    assert share["first_share"] == pytest.approx(n1 / (n1 + n2), rel=1e-5)
    assert share["first_share"] + share["second_share"] == pytest.approx(1)
    assert share["second_to_first"] == pytest.approx(n2 / n1, rel=1e-5)
    cosine = torch.nn.functional.cosine_similarity(g1, g2, dim=0).item()
    assert share["cosine"] == pytest.approx(cosine, abs=1e-5)
    assert all(isinstance(v, float) for v in share.values())


def test_no_side_effects_and_backward_still_works():
    model, first, second = _model_and_losses(1)
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 7.0)  # a stale gradient
    gradient_share(first, second, params)
    assert torch.equal(params[0].grad, torch.full_like(params[0], 7.0))
    assert all(p.grad is None for p in params[1:])
    (first + second).backward()  # the graph was retained
    assert all(p.grad is not None for p in params)


def test_only_the_listed_parameters_count():
    model, first, second = _model_and_losses(2)
    last = list(model[2].parameters())
    share = gradient_share(first, second, last)
    g1 = _flat_gradient(first, last)
    assert share["first_norm"] == pytest.approx(g1.norm().item(), rel=1e-5)
    whole = gradient_share(first, second, model.parameters())
    assert whole["first_norm"] > share["first_norm"]


def test_aligned_opposed_orthogonal_and_absent():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    base = (weight * torch.tensor([1.0, 2.0, 3.0])).sum()
    aligned = gradient_share(base, 3 * base, [weight])
    assert aligned["cosine"] == pytest.approx(1.0)
    assert aligned["second_share"] == pytest.approx(0.75)
    opposed = gradient_share(base, -base, [weight])
    assert opposed["cosine"] == pytest.approx(-1.0)
    orthogonal = (weight * torch.tensor([2.0, -1.0, 0.0])).sum()
    assert gradient_share(base, orthogonal, [weight])["cosine"] == (
        pytest.approx(0.0, abs=1e-7)
    )
    # A term that does not reach the parameters pushes with zero force.
    other = torch.nn.Parameter(torch.tensor(2.0))
    absent = gradient_share(base, other**2, [weight])
    assert absent["second_norm"] == 0.0 and absent["first_share"] == 1.0
    assert math.isnan(absent["cosine"])
    constant = gradient_share(base, torch.tensor(3.0), [weight])
    assert constant["second_to_first"] == 0.0
    frozen = torch.ones(3, requires_grad=False)
    with pytest.raises(ValueError, match="requires_grad"):
        gradient_share(base, base, [frozen])
    with pytest.raises(ValueError, match="scalar"):
        gradient_share(weight * 2, base, [weight])
