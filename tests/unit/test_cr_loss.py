"""ContrastiveRegularization in the space of a tiny frozen SSL model.

The loss takes feature lists; ``ssl`` (a tiny random WavLM) computes them.
"""

import math

import pytest
import torch

from lobes.errors import HparamsError
from lobes.losses.contrastive_regularization import (
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
