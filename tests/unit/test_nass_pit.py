"""Batched PIT SI-SNR against brute-force references."""

import itertools

import pytest
import torch
from speechbrain.nnet.losses import cal_si_snr, get_si_snr_with_pitwrapper

from lobes.errors import HparamsError
from lobes.losses import (
    PITLoss,
    best_permutation,
    pairwise_neg_sisnr,
    reorder,
    reorder_features,
)


def brute_force_pit(estimates, targets, speaker_slots=None):
    """Loop over items and permutations with SpeechBrain's cal_si_snr.

    speaker_slots: if given, only the first speaker_slots outputs are
    permuted and the rest stay in place (fixed noise slot).
    """
    batch, _, num = targets.shape
    permuted = num if speaker_slots is None else speaker_slots
    losses, perms = [], []
    for b in range(batch):
        best = None
        for head in itertools.permutations(range(permuted)):
            perm = list(head) + list(range(permuted, num))
            values = []
            for j, i in enumerate(perm):
                ref = targets[b, :, j].reshape(-1, 1, 1).clone()
                est = estimates[b, :, i].reshape(-1, 1, 1).clone()
                values.append(cal_si_snr(ref, est).item())
            loss = sum(values) / num
            if best is None or loss < best[0]:
                best = (loss, perm)
        losses.append(best[0])
        perms.append(best[1])
    return torch.tensor(losses), torch.tensor(perms)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("num_sources", [3, 4])
def test_matches_brute_force_on_random_inputs(batch, num_sources):
    torch.manual_seed(batch * 10 + num_sources)
    targets = torch.randn(batch, 160, num_sources)
    estimates = torch.randn(batch, 160, num_sources) + 0.5 * targets.flip(-1)
    loss, perm = PITLoss(num_sources - 1, noise_slot="pit")(
        estimates, targets
    )
    ref_loss, ref_perm = brute_force_pit(estimates, targets)
    torch.testing.assert_close(loss, ref_loss, atol=1e-4, rtol=1e-4)
    assert torch.equal(perm, ref_perm)
    # The same as SpeechBrain's PitWrapper-based loss (batch-mean aside).
    sb_loss = get_si_snr_with_pitwrapper(targets, estimates)
    torch.testing.assert_close(loss, sb_loss, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("num_sources", [3, 4])
def test_fixed_slot_matches_brute_force_and_keeps_noise_last(
    batch, num_sources
):
    torch.manual_seed(7 + batch + num_sources)
    targets = torch.randn(batch, 160, num_sources)
    # Estimates whose last output resembles a speaker, not the noise, so
    # that a full search would move the noise slot.
    estimates = torch.randn(batch, 160, num_sources) + targets.roll(1, -1)
    pit = PITLoss(num_sources - 1, noise_output=True, noise_slot="fixed")
    loss, perm = pit(estimates, targets)
    ref_loss, ref_perm = brute_force_pit(estimates, targets, num_sources - 1)
    torch.testing.assert_close(loss, ref_loss, atol=1e-4, rtol=1e-4)
    assert torch.equal(perm, ref_perm)
    assert (perm[:, -1] == num_sources - 1).all()
    full_loss, full_perm = PITLoss(num_sources - 1, noise_slot="pit")(
        estimates, targets
    )
    assert (full_perm[:, -1] != num_sources - 1).any()
    assert (full_loss <= loss + 1e-5).all()


@pytest.mark.parametrize("noise_slot", ["pit", "fixed"])
@pytest.mark.parametrize("batch", [1, 4])
def test_shuffled_perfect_estimates(noise_slot, batch):
    torch.manual_seed(batch)
    num_spks = 3
    targets = torch.randn(batch, 400, num_spks + 1)
    # A different speaker permutation per item; noise stays last.
    speaker_perms = [torch.randperm(num_spks) for _ in range(batch)]
    while batch > 1 and all(
        torch.equal(p, speaker_perms[0]) for p in speaker_perms
    ):
        speaker_perms[1] = torch.randperm(num_spks)
    order = torch.stack(
        [torch.cat([p, torch.tensor([num_spks])]) for p in speaker_perms]
    )
    # estimates[b, :, order[b, k]] = gain * targets[b, :, k]
    estimates = torch.empty_like(targets)
    for b in range(batch):
        estimates[b, :, order[b]] = targets[b] * (1.0 + b)
    loss, perm = PITLoss(num_spks, noise_slot=noise_slot)(estimates, targets)
    assert torch.equal(perm, order)
    assert (loss < -60).all()
    torch.testing.assert_close(reorder(estimates, perm), targets * (
        1.0 + torch.arange(batch).reshape(-1, 1, 1)
    ))


def test_baseline_without_noise_output():
    targets = torch.randn(2, 200, 2)
    loss, perm = PITLoss(2, noise_output=False)(targets.flip(-1), targets)
    assert perm.tolist() == [[1, 0], [1, 0]]
    assert (loss < -60).all()
    with pytest.raises(ValueError, match="2\\]"):
        PITLoss(2, noise_output=False)(torch.randn(2, 200, 3), targets)


def test_pairwise_matrix_entries():
    torch.manual_seed(0)
    est, ref = torch.randn(3, 120, 3), torch.randn(3, 120, 3)
    matrix = pairwise_neg_sisnr(est, ref)
    assert matrix.shape == (3, 3, 3)
    for b, i, j in [(0, 0, 0), (1, 2, 0), (2, 1, 2)]:
        expected = cal_si_snr(
            ref[b, :, j].reshape(-1, 1, 1).clone(),
            est[b, :, i].reshape(-1, 1, 1).clone(),
        )
        torch.testing.assert_close(matrix[b, i, j], expected.squeeze())


def test_best_permutation_convention():
    # estimate 2 fits reference 0, estimate 0 fits 1, estimate 1 fits 2
    matrix = torch.full((1, 3, 3), 10.0)
    matrix[0, 2, 0] = matrix[0, 0, 1] = matrix[0, 1, 2] = 0.0
    min_loss, perm = best_permutation(matrix)
    assert perm.tolist() == [[2, 0, 1]]
    assert min_loss.item() == 0.0


def test_reorder_features_matches_waveform_order():
    torch.manual_seed(1)
    features = torch.randn(3, 4, 5, 6)
    perm = torch.stack([torch.randperm(3) for _ in range(4)])
    out = reorder_features(features, perm)
    for b in range(4):
        for j in range(3):
            assert torch.equal(out[j, b], features[perm[b, j], b])
    waves = torch.randn(4, 10, 3)
    out = PITLoss.reorder(waves, perm)
    for b in range(4):
        assert torch.equal(out[b], waves[b][:, perm[b]])


def test_gradient_flows_and_bad_slot_rejected():
    est = torch.randn(2, 100, 3, requires_grad=True)
    loss, _ = PITLoss(2)(est, torch.randn(2, 100, 3))
    loss.mean().backward()
    assert est.grad.abs().sum() > 0
    with pytest.raises(HparamsError, match="noise_slot"):
        PITLoss(2, noise_slot="last")


def test_float32_under_autocast():
    targets = torch.randn(2, 3000, 3) * 100
    estimates = (targets + torch.randn_like(targets)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, perm = PITLoss(2)(estimates, targets.bfloat16())
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    assert perm.tolist() == [[0, 1, 2], [0, 1, 2]]


# noise_loss_weight (issue 21, build 3) ------------------------------------


def weighted_brute_force(estimates, targets, weight, speaker_slots=None):
    """Every permutation, the noise reference's term weighted by weight."""
    batch, _, num = targets.shape
    n = num - 1
    permuted = num if speaker_slots is None else speaker_slots
    matrix = pairwise_neg_sisnr(estimates, targets)
    losses, perms = [], []
    for b in range(batch):
        best = None
        for head in itertools.permutations(range(permuted)):
            perm = list(head) + list(range(permuted, num))
            terms = [matrix[b, i, j].item() for j, i in enumerate(perm)]
            loss = (sum(terms[:n]) + weight * terms[n]) / (n + weight)
            if best is None or loss < best[0] - 1e-9:
                best = (loss, perm)
        losses.append(best[0])
        perms.append(best[1])
    return torch.tensor(losses), torch.tensor(perms)


@pytest.mark.parametrize("noise_slot", ["pit", "fixed"])
@pytest.mark.parametrize("weight", [0.0, 0.25, 3.0])
def test_noise_loss_weight_matches_brute_force(noise_slot, weight):
    torch.manual_seed(4)
    estimates, targets = torch.randn(6, 120, 3), torch.randn(6, 120, 3)
    pit = PITLoss(2, noise_slot=noise_slot, noise_loss_weight=weight)
    loss, perm = pit(estimates, targets)
    slots = 2 if noise_slot == "fixed" else None
    want_loss, want_perm = weighted_brute_force(
        estimates, targets, weight, slots
    )
    assert torch.allclose(loss, want_loss.float(), atol=1e-4)
    assert torch.equal(perm, want_perm)


@pytest.mark.parametrize("noise_slot", ["pit", "fixed"])
def test_noise_loss_weight_one_is_the_paper_bit_for_bit(noise_slot):
    torch.manual_seed(5)
    estimates, targets = torch.randn(3, 100, 3), torch.randn(3, 100, 3)
    default = PITLoss(2, noise_slot=noise_slot)(estimates, targets)
    one = PITLoss(2, noise_slot=noise_slot, noise_loss_weight=1)(
        estimates, targets
    )
    assert torch.equal(default[0], one[0]) and torch.equal(default[1], one[1])


def test_noise_loss_weight_zero_ignores_the_noise_reference():
    torch.manual_seed(6)
    targets = torch.randn(2, 100, 3)
    estimates = targets.clone()
    estimates[:, :, 2] = torch.randn(2, 100)  # a useless noise estimate
    loss, _ = PITLoss(2, noise_slot="fixed", noise_loss_weight=0)(
        estimates, targets
    )
    loss_paper, _ = PITLoss(2, noise_slot="fixed")(estimates, targets)
    speakers, _ = PITLoss(2, noise_output=False)(
        estimates[:, :, :2], targets[:, :, :2]
    )
    assert torch.allclose(loss, speakers)
    assert bool((loss < loss_paper - 20).all())


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf")])
def test_bad_noise_loss_weight_rejected(weight):
    with pytest.raises(HparamsError, match="noise_loss_weight"):
        PITLoss(2, noise_loss_weight=weight)
