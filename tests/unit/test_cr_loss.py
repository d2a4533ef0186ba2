"""ContrastiveRegularization in the space of a tiny frozen SSL model.

The loss takes feature lists; ``ssl`` (a tiny random WavLM) computes them.
"""

import math

import pytest
import torch

from lobes.errors import HparamsError
from lobes.losses.contrastive_regularization import (
    FORMS,
    ContrastiveRegularization,
    summarize_details,
)
from lobes.ssl_features import FrozenSSLFeatures, save_tiny_ssl_model


@pytest.fixture(scope="module")
def ssl(tmp_path_factory):
    folder = save_tiny_ssl_model("wavlm", str(tmp_path_factory.mktemp("w")))
    return FrozenSSLFeatures(folder, layer_groups=[[1, 2], [3, 4]])


@pytest.fixture(scope="module")
def signals():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    clean = torch.stack(
        [
            0.5 * torch.sin(2 * math.pi * f * t) * torch.sin(math.pi * 2 * t)
            for f in (180.0, 260.0)
        ]
    )
    noise = 0.3 * torch.randn(2, 8000, generator=g)
    reference = clean + 0.3 * noise  # a "baseline model output": closer
    return clean, clean + noise, reference


def test_gradient_only_reaches_the_enhanced_waveform(ssl, signals):
    clean, noisy, reference = signals
    cr = ContrastiveRegularization(layer_weights=[32.0, 16.0])
    enhanced = (0.5 * (clean + noisy)).requires_grad_(True)
    positive = clean.clone().requires_grad_(True)
    negative = noisy.clone().requires_grad_(True)
    loss, details = cr(
        ssl(enhanced), ssl(positive), [ssl(negative), ssl(reference)]
    )
    loss.backward()
    assert enhanced.grad is not None and enhanced.grad.abs().sum() > 0
    assert positive.grad is None and negative.grad is None
    assert all(p.grad is None for p in ssl.parameters())
    assert len(details["positive"]) == 2
    assert [len(row) for row in details["negatives"]] == [2, 2]


def test_value_matches_the_formula(ssl, signals):
    clean, noisy, reference = signals
    weights, gammas = [2.0, 0.5], [0.7, 0.3]
    cr = ContrastiveRegularization(weights, distance="mse", eps=1e-7)
    enhanced = 0.5 * (clean + noisy)
    out, pos = ssl(enhanced), ssl(clean)
    negs = [ssl(noisy), ssl(reference)]
    loss, _ = cr(out, pos, negs, gammas)
    expected = sum(
        w / sum(weights)  # layer weights normalised to sum to 1
        * (pos[i] - out[i]).pow(2).mean()
        / (
            sum(g * (n[i] - out[i]).pow(2).mean() for g, n in zip(gammas, negs))
            + 1e-7
        )
        for i, w in enumerate(weights)
    )
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_cr_decreases_as_output_moves_to_clean(ssl, signals, distance):
    clean, noisy, _ = signals
    cr = ContrastiveRegularization(distance=distance)
    values = [
        cr(ssl(clean + alpha * (noisy - clean)), ssl(clean), [ssl(noisy)])[0]
        for alpha in (1.0, 0.6, 0.3, 0.1, 0.0)
    ]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1].item() == pytest.approx(0.0, abs=1e-6)


def test_negative_weights_matter(ssl, signals):
    clean, noisy, reference = signals
    cr = ContrastiveRegularization()
    out, pos = ssl(0.5 * (clean + noisy)), ssl(clean)
    negs = [ssl(noisy), ssl(reference)]
    # The reference is closer to the output than the noisy input, so
    # weighting it up grows the denominator less than weighting noisy up.
    favour_noisy, d = cr(out, pos, negs, [0.9, 0.1])
    favour_reference, _ = cr(out, pos, negs, [0.1, 0.9])
    assert favour_noisy < favour_reference
    assert d["negative_weights"] == [0.9, 0.1]
    gap_noisy, gap_reference = d["negative_to_positive"]
    assert gap_noisy > gap_reference > 0


def test_detached_targets_give_the_same_loss_and_gradient(ssl, signals):
    """Cached (no-grad) clean/negative features equal freshly computed ones."""
    clean, noisy, reference = signals
    cr = ContrastiveRegularization(layer_weights=[32.0, 16.0])
    enhanced = (0.4 * clean + 0.6 * noisy).requires_grad_(True)
    fresh, fresh_details = cr(
        ssl(enhanced), ssl(clean), [ssl(noisy), ssl(reference)], [0.6, 0.4]
    )
    grad_fresh = torch.autograd.grad(fresh, enhanced)[0]
    with torch.no_grad():
        targets = [ssl(clean), ssl(noisy), ssl(reference)]
    cached, cached_details = cr(
        ssl(enhanced), targets[0], targets[1:], [0.6, 0.4]
    )
    grad_cached = torch.autograd.grad(cached, enhanced)[0]
    torch.testing.assert_close(cached, fresh)
    torch.testing.assert_close(grad_cached, grad_fresh)
    assert summarize_details(cached_details) == pytest.approx(
        summarize_details(fresh_details)
    )


def test_lengths_mask_padding(ssl, signals):
    clean, noisy, reference = signals
    cr = ContrastiveRegularization()
    enhanced = 0.5 * (clean + noisy)
    pos, negs = ssl(clean), [ssl(noisy)]
    full, _ = cr(ssl(enhanced), pos, negs, lengths=torch.ones(2))
    unmasked, _ = cr(ssl(enhanced), pos, negs)
    torch.testing.assert_close(full, unmasked)
    # Garbage past the end of a half-length utterance must not count.
    corrupted = enhanced.clone()
    corrupted[1, 4200:] = 0.0
    half = torch.tensor([1.0, 0.5])
    masked, _ = cr(ssl(enhanced), pos, negs, lengths=half)
    masked_corrupted, _ = cr(ssl(corrupted), pos, negs, lengths=half)
    assert masked != unmasked
    torch.testing.assert_close(masked, masked_corrupted, atol=0.05, rtol=0.05)


def test_bad_arguments(ssl, signals):
    clean, noisy, _ = signals
    pos, neg = ssl(clean), ssl(noisy)
    with pytest.raises(HparamsError, match="layer weights"):
        ContrastiveRegularization([1.0, 2.0, 3.0])(pos, pos, [neg])
    with pytest.raises(ValueError, match="at least one negative"):
        ContrastiveRegularization()(pos, pos, [])
    with pytest.raises(ValueError, match="negative weights"):
        ContrastiveRegularization()(pos, pos, [neg], [0.5, 0.5])
    with pytest.raises(HparamsError, match="distance"):
        ContrastiveRegularization(distance="cosine")


def test_summarize_details_names_everything(ssl, signals):
    clean, noisy, reference = signals
    _, details = ContrastiveRegularization()(
        ssl(noisy), ssl(clean), [ssl(noisy), ssl(reference)]
    )
    flat = summarize_details(details, ["noisy", "reference"])
    assert {"cr", "cr_pos_l1", "cr_neg_reference_l1", "cr_gap_noisy"} <= set(
        flat
    )
    assert flat["cr_neg_noisy_l0"] == pytest.approx(0.0, abs=1e-6)
    assert all(isinstance(v, float) for v in flat.values())


# Loss forms (issue 22). An identity feature space of two dimensions: the
# clean features at the origin, the negative's at (1, 0), the output at
# ``point``; one batch item, one frame, so every distance is exact.
CLEAN = torch.zeros(1, 1, 2)
NEGATIVE = torch.tensor([[[1.0, 0.0]]])


def _descent_step(form, distance, point, step=1e-3):
    """One normalised gradient step on CR from ``point``; the new point."""
    cr = ContrastiveRegularization(distance=distance, form=form)
    out = torch.tensor([[point]], requires_grad=True)
    loss, _ = cr([out], [CLEAN], [[NEGATIVE]])
    (grad,) = torch.autograd.grad(loss, out)
    return (out - step * grad / grad.norm()).detach().flatten()


def _ratio(distance, point):
    """P / N at ``point`` under ``distance``."""
    cr = ContrastiveRegularization(distance=distance)
    return cr([torch.tensor([[point]])], [CLEAN], [[NEGATIVE]])[0].item()


@pytest.mark.parametrize("distance", ["l1", "mse"])
@pytest.mark.parametrize(
    "form, moves_away",
    [("ratio", True), ("ratio_detached", False), ("feature_match", False)],
)
def test_one_step_distance_to_clean(distance, form, moves_away):
    """Past the negative and off the line (r > 1), the ratio runs away.

    (MSE: the ratio's step grows P exactly when the output's projection on
    the clean-negative line lies past the negative.) The other forms pull
    the output towards the clean features.
    """
    point = [1.2, 0.3]
    assert _ratio(distance, point) > 1
    before = torch.tensor(point).norm()
    after = _descent_step(form, distance, point).norm()
    assert (after > before) == moves_away
    assert abs(after - before) > 1e-4  # a real move, not rounding


@pytest.mark.parametrize("distance", ["l1", "mse"])
@pytest.mark.parametrize("form", FORMS)
def test_one_step_off_line_error(distance, form):
    """Between clean and negative, r > 1: the ratio grows the off-line
    error (the second coordinate); near the clean features (r < 1) it
    shrinks it like the other forms."""
    far, near = [0.7, 0.3], [0.2, 0.3]
    assert _ratio(distance, far) > 1 > _ratio(distance, near)
    grows = _descent_step(form, distance, far)[1] > far[1]
    assert grows == (form == "ratio")
    assert _descent_step(form, distance, near)[1] < near[1]


@pytest.mark.parametrize("distance", ["l1", "mse"])
def test_ratio_runs_away_over_many_steps(distance):
    """100 normalised steps: the ratio ends farther from the clean features
    than it started; the other forms end much closer."""
    ends = {}
    for form in FORMS:
        cr = ContrastiveRegularization(distance=distance, form=form)
        out = torch.tensor([[[1.2, 0.3]]], requires_grad=True)
        for _ in range(100):
            loss, _ = cr([out], [CLEAN], [[NEGATIVE]])
            (grad,) = torch.autograd.grad(loss, out)
            with torch.no_grad():
                out -= 1e-2 * grad / grad.norm()
        ends[form] = out.detach().norm().item()
    start = math.hypot(1.2, 0.3)
    assert ends["ratio"] > start + 0.2
    assert ends["ratio_detached"] < 0.5 * start
    assert ends["feature_match"] < 0.5 * start


def test_forms_values_and_gradients(ssl, signals):
    """ratio_detached: the ratio's value, gradient grad P / N; feature_match:
    the layer-weighted P; the layer weights and distance act on every form;
    details report the same distances and ratio whatever the form."""
    clean, noisy, reference = signals
    weights, gammas = [2.0, 0.5], [0.7, 0.3]
    enhanced = (0.5 * (clean + noisy)).requires_grad_(True)
    with torch.no_grad():
        pos, negs = ssl(clean), [ssl(noisy), ssl(reference)]
    results = {}
    for form in FORMS:
        cr = ContrastiveRegularization(weights, distance="mse", form=form)
        loss, details = cr(ssl(enhanced), pos, negs, gammas)
        (grad,) = torch.autograd.grad(loss, enhanced)
        results[form] = loss.detach(), grad, details
    out = ssl(enhanced)
    numerators = [(p - o).pow(2).mean() for p, o in zip(pos, out)]
    denominators = [
        sum(g * (n[i] - out[i]).pow(2).mean() for g, n in zip(gammas, negs))
        + 1e-7
        for i in range(2)
    ]
    norm = [w / sum(weights) for w in weights]
    matched = sum(w * p for w, p in zip(norm, numerators))
    scaled = sum(
        w * p / d.detach() for w, p, d in zip(norm, numerators, denominators)
    )
    torch.testing.assert_close(results["feature_match"][0], matched.detach())
    torch.testing.assert_close(results["ratio_detached"][0], scaled.detach())
    torch.testing.assert_close(
        results["ratio"][0], results["ratio_detached"][0]
    )
    grad_matched = torch.autograd.grad(matched, enhanced, retain_graph=True)[0]
    grad_scaled = torch.autograd.grad(scaled, enhanced)[0]
    torch.testing.assert_close(results["feature_match"][1], grad_matched)
    torch.testing.assert_close(results["ratio_detached"][1], grad_scaled)
    # The full ratio's gradient differs (it carries the push from N).
    difference = results["ratio"][1] - results["ratio_detached"][1]
    assert difference.norm() > 1e-3 * results["ratio"][1].norm()
    ratio = results["ratio"][2]["ratio"]
    for form in FORMS:
        details = results[form][2]
        assert details["ratio"] == pytest.approx(ratio)
        assert details["positive"] == pytest.approx(
            results["ratio"][2]["positive"]
        )
        assert details["cr"] == pytest.approx(results[form][0].item())
    assert ratio == pytest.approx(results["ratio"][0].item())
    assert summarize_details(results["ratio"][2])["cr_ratio"] == ratio


def test_default_form_is_the_papers_ratio():
    cr = ContrastiveRegularization()
    assert cr.form == "ratio"
    out = torch.tensor([[[0.7, 0.3]]], requires_grad=True)
    default, _ = cr([out], [CLEAN], [[NEGATIVE]])
    explicit, _ = ContrastiveRegularization(form="ratio")(
        [out], [CLEAN], [[NEGATIVE]]
    )
    grads = [torch.autograd.grad(v, out)[0] for v in (default, explicit)]
    torch.testing.assert_close(grads[0], grads[1])
    # l1: P = 1.0, N = 0.6 (means over the two dimensions).
    assert default.item() == pytest.approx(1.0 / 0.6)


def test_bad_form_fails_in_one_line_listing_the_forms():
    with pytest.raises(HparamsError) as error:
        ContrastiveRegularization(form="hinge")
    message = str(error.value)
    assert "\n" not in message and "'hinge'" in message
    assert all(form in message for form in FORMS)
