"""PatchNCE and NASS's noise-aware contrastive term."""

import pytest
import torch
from speechbrain.lobes.models.dual_path import (
    Decoder,
    Dual_Path_Model,
    Encoder,
    SBTransformerBlock,
)

from lobes.errors import HparamsError
from lobes.losses import (
    NoiseAwareContrastiveLoss,
    PatchNCELoss,
    PatchSampler,
    PITLoss,
    reorder_features,
)
from lobes.models import NoiseAwareSeparator

C = 8


def tiny_separator(num_spks=2):
    torch.manual_seed(0)
    return NoiseAwareSeparator(
        Encoder(kernel_size=16, out_channels=C),
        Dual_Path_Model(
            C,
            C,
            SBTransformerBlock(1, C, 2, d_ffn=C),
            SBTransformerBlock(1, C, 2, d_ffn=C),
            num_layers=1,
            K=10,
            num_spks=num_spks + 1,
        ),
        Decoder(C, 1, kernel_size=16, stride=8),
        num_spks=num_spks,
    )


def nce_loss(patch="value", num_patches=32):
    return PatchNCELoss(
        num_patches=num_patches, embed_dim=16, patch=patch, channels=C
    )


@pytest.mark.parametrize("patch", ["value", "vector"])
@pytest.mark.parametrize("batch", [1, 4])
def test_gradients_reach_masknet_and_loss_modules_only(patch, batch):
    separator = tiny_separator()
    contrastive = NoiseAwareContrastiveLoss(nce_loss(patch), num_spks=2)
    mix = torch.randn(batch, 480)
    sources = torch.randn(batch, 480, 3)
    out = separator(mix)
    _, perm = PITLoss(2)(out.waveforms, sources)
    masked = reorder_features(out.masked_features, perm)
    masked.retain_grad()
    reference = separator.encode(
        sources[..., :2].permute(2, 0, 1).reshape(2 * batch, -1)
    ).reshape(2, batch, C, -1)
    reference.retain_grad()
    loss = contrastive(masked, reference)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    # The query branch carries gradient into the masking network.
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0
        for p in separator.masknet.parameters()
    )
    # ... and into the training-only sampler and MLP.
    for module in (contrastive.patch_nce.sampler, contrastive.patch_nce.mlp):
        assert any(p.grad.abs().sum() > 0 for p in module.parameters())
    # Positive branch: nothing flows back into the reference features.
    assert reference.grad is None or reference.grad.abs().sum() == 0
    # Negative branch: the noise features get no gradient from NCE.
    assert masked.grad[:2].abs().sum() > 0
    assert masked.grad[-1].abs().sum() == 0


@pytest.mark.parametrize("patch", ["value", "vector"])
def test_no_gradient_into_positive_and_negative(patch):
    torch.manual_seed(0)
    query = torch.randn(2, C, 30, requires_grad=True)
    positive = torch.randn(2, C, 30, requires_grad=True)
    negative = torch.randn(2, C, 30, requires_grad=True)
    nce_loss(patch)(query, positive, negative).backward()
    assert query.grad.abs().sum() > 0
    assert positive.grad is None
    assert negative.grad is None


@pytest.mark.parametrize("patch", ["value", "vector"])
@pytest.mark.parametrize("batch", [1, 4])
def test_loss_lower_when_query_equals_positive(patch, batch):
    torch.manual_seed(3)
    loss_fn = nce_loss(patch)
    positive = torch.rand(batch, C, 40) * 2
    negative = torch.rand(batch, C, 40) * 2
    matched = [loss_fn(positive, positive, negative) for _ in range(5)]
    random = [
        loss_fn(torch.rand(batch, C, 40) * 2, positive, negative)
        for _ in range(5)
    ]
    assert sum(matched) < sum(random)


@pytest.mark.parametrize("patch", ["value", "vector"])
def test_fewer_positions_than_patches_uses_all(patch):
    torch.manual_seed(0)
    loss_fn = nce_loss(patch, num_patches=256)
    query = torch.randn(2, C, 3, requires_grad=True)
    loss = loss_fn(query, torch.randn(2, C, 3), torch.randn(2, C, 3))
    assert torch.isfinite(loss)
    positions = loss_fn._positions(query)
    expected = C * 3 if patch == "value" else 3
    assert positions.shape == (2, expected)
    assert positions.sort(dim=1).values.tolist() == [list(range(expected))] * 2
    loss.backward()
    assert query.grad.abs().sum() > 0


@pytest.mark.parametrize("patch", ["value", "vector"])
def test_matches_explicit_formula_at_shared_positions(patch):
    # Recompute the loss by hand: the same positions in the three maps,
    # logits [cos(q_k, p_k), cos(q_k, n_j) for j != k] / T, target 0.
    loss_fn = nce_loss(patch, num_patches=6)
    query, positive, negative = torch.randn(3, 2, C, 12).unbind(0)
    torch.manual_seed(5)
    loss = loss_fn(query, positive, negative)
    torch.manual_seed(5)
    positions = loss_fn._positions(query)
    q, p, n = (
        loss_fn._embed(x, positions) for x in (query, positive, negative)
    )
    expected = 0.0
    for b in range(2):
        for k in range(6):
            logits = [torch.dot(q[b, k], p[b, k])] + [
                torch.dot(q[b, k], n[b, j]) for j in range(6) if j != k
            ]
            logits = torch.stack(logits) / 0.07
            expected = expected - torch.log_softmax(logits, 0)[0]
    torch.testing.assert_close(loss, expected / 12)


def test_contrastive_checks_shapes():
    contrastive = NoiseAwareContrastiveLoss(nce_loss(), num_spks=2)
    with pytest.raises(ValueError, match="3 masked"):
        contrastive(torch.rand(2, 1, C, 10), torch.rand(2, 1, C, 10))
    with pytest.raises(ValueError, match="reference_features"):
        contrastive(torch.rand(3, 1, C, 10), torch.rand(2, 1, C, 11))
    with pytest.raises(HparamsError, match="patch"):
        PatchNCELoss(patch="pixel")


def test_contrastive_averages_speakers():
    torch.manual_seed(0)
    patch_nce = nce_loss("vector", num_patches=8)
    contrastive = NoiseAwareContrastiveLoss(patch_nce, num_spks=2)
    # Maps with fewer positions than K: all positions, no randomness.
    masked = torch.rand(3, 2, C, 8)
    reference = torch.rand(2, 2, C, 8)
    per_speaker = [
        patch_nce(masked[i], reference[i], masked[-1]) for i in range(2)
    ]
    torch.testing.assert_close(
        contrastive(masked, reference), sum(per_speaker) / 2
    )


@pytest.mark.parametrize("patch", ["value", "vector"])
def test_sampler_at_positions_equals_full_map(patch):
    # The loss filters only the drawn patches; it must equal filtering the
    # whole map (zero padding at every border included), values and grads.
    torch.manual_seed(0)
    sampler = PatchSampler()
    with torch.no_grad():  # random, non-trivial weights and biases
        for conv in (sampler.layers[0], sampler.layers[2]):
            conv.weight.normal_()
            conv.bias.normal_()
    features = torch.randn(2, 5, 7, requires_grad=True)
    if patch == "value":
        positions = torch.tensor([[0, 6, 28, 34, 17], [3, 7, 13, 21, 33]])
        full = sampler(features).flatten(1).gather(1, positions)
    else:
        positions = torch.tensor([[0, 6, 3], [1, 5, 0]])
        full = torch.stack(
            [sampler(features)[b, :, positions[b]].t() for b in range(2)]
        )
    partial = sampler.at(features, positions, patch)
    torch.testing.assert_close(partial, full)
    weights = torch.randn_like(full)
    grads_full = torch.autograd.grad(
        (full * weights).sum(), [features, *sampler.parameters()]
    )
    grads_partial = torch.autograd.grad(
        (partial * weights).sum(), [features, *sampler.parameters()]
    )
    for a, b in zip(grads_full, grads_partial):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------
# Inputs of realistic scale and sign: masked encoder features are small and
# non-negative (about 0.02 +- 0.04), not randn.
def masked_like(generator, batch=4, channels=64, frames=200):
    """Features shaped like masked encoder outputs ``[B, C, L]``."""
    return torch.relu(
        0.02 + 0.04 * torch.randn(batch, channels, frames, generator=generator)
    )


@pytest.mark.parametrize("feature_norm", ["map", "none"])
def test_loss_falls_well_below_chance_when_queries_can_match(feature_norm):
    """Learnable queries near their positives: the loss must leave ln K.

    With raw features the zero-bias one-channel sampler collapses to
    exactly ln K (all embeddings zero); normalised maps keep it learning.
    """
    import math

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    positive, negative = masked_like(generator), masked_like(generator)
    query = torch.nn.Parameter(
        positive + 0.02 * torch.randn(positive.shape, generator=generator)
    )
    loss_fn = PatchNCELoss(num_patches=64, embed_dim=64, channels=64,
                           feature_norm=feature_norm)
    optimizer = torch.optim.Adam([query, *loss_fn.parameters()], 1.5e-4)
    for _ in range(150):
        loss = loss_fn(query, positive, negative)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    chance = math.log(64)
    if feature_norm == "map":
        assert loss.item() < 0.2 * chance
    else:
        assert loss.item() == pytest.approx(chance, abs=1e-3)


@pytest.mark.parametrize("patch", ["value", "vector"])
def test_no_relu_is_dead_at_initialisation_for_20_seeds(patch):
    from lobes.losses.patch_nce import normalize_maps

    generator = torch.Generator().manual_seed(1)
    features = masked_like(generator, batch=2)
    for seed in range(20):
        torch.manual_seed(seed)
        loss_fn = PatchNCELoss(num_patches=64, embed_dim=64, channels=64,
                               patch=patch)
        conv = loss_fn.sampler.layers[0]
        assert float(conv.bias.abs().max()) == 0.0  # CUT: zero biases
        hidden = conv(normalize_maps(features).unsqueeze(1))
        alive = float((hidden > 0).float().mean())
        assert 0.05 < alive < 0.95, f"seed {seed}: sampler ReLU {alive:.2f}"
        positions = loss_fn._positions(features)
        patches = loss_fn.sampler.at(
            normalize_maps(features), positions, patch
        )
        if patch == "value":
            patches = patches.unsqueeze(-1)
        units = torch.relu(loss_fn.mlp[0](patches))
        active_units = float((units.amax(dim=(0, 1)) > 0).float().mean())
        assert active_units > 0.2, f"seed {seed}: MLP units {active_units}"
        embeddings = loss_fn._embed(features, positions)
        spread = float(embeddings.std(dim=1).mean())
        assert spread > 1e-3, f"seed {seed}: every embedding points one way"


def test_nce_gradient_reaches_the_separator_at_realistic_scale():
    separator = tiny_separator()
    nce = NoiseAwareContrastiveLoss(
        PatchNCELoss(num_patches=32, embed_dim=16, channels=C), num_spks=2
    )
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(1600) / 8000
    speech = torch.stack([0.1 * torch.sin(2 * torch.pi * f * t)
                          for f in (140.0, 230.0)], -1)
    sources = speech.unsqueeze(0).repeat(2, 1, 1)
    noise = 0.05 * torch.randn(2, 1600, generator=generator)
    out = separator(sources.sum(-1) + noise)
    masked = out.masked_features
    assert float(masked.min()) >= 0 and float(masked.mean()) < 1.0
    positives = separator.encode(
        sources.permute(2, 0, 1).reshape(4, 1600)
    ).reshape(2, 2, C, -1).detach()
    loss = nce(masked, positives)
    loss.backward()
    masknet_grad = sum(
        float(p.grad.abs().sum()) for p in separator.masknet.parameters()
        if p.grad is not None
    )
    assert masknet_grad > 0
    assert all(p.grad is None for p in separator.decoder.parameters())
