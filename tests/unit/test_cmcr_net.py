"""CMCR-Net: shapes, ablation switches, gradients, branch pull, YAML, cost."""

import importlib.util
import math
import os

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from lobes.losses.branch_pull import BranchPullLoss
from lobes.models.cmcr_net import CMCRNet, CollaborationModule

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
FRAGMENT = os.path.join(REPO, "hparams", "enhancement", "cmcr_net.yaml")

TINY = {
    "n_fft": 64,
    "hop_length": 32,
    "encoder_channels": [4, 8],
    "rnn_hidden_size": 8,
    "rnn_layers": 1,
    "fusion_hidden_channels": 8,
}


def tiny_model(**switches):
    torch.manual_seed(0)
    return CMCRNet(**TINY, **switches)


def count(module):
    return sum(p.numel() for p in module.parameters())


def branch_grads(model):
    """Summed absolute gradient of each attention branch's parameters."""
    cm = model.collaboration
    return [
        sum(float(p.grad.abs().sum()) if p.grad is not None else 0.0
            for p in branch.parameters())
        for branch in (cm.relevant_attention, cm.irrelevant_attention)
    ]


@pytest.mark.parametrize("length", [1, 31, 801, 1603])
def test_output_has_the_input_length(length):
    model = tiny_model().eval()
    noisy = torch.randn(3, length)
    assert model(noisy).shape == (3, length)
    out = model.forward_with_branches(noisy)
    assert [tuple(wav.shape) for wav in out] == [(3, length)] * 3
    assert torch.allclose(out.enhanced, model(noisy), atol=1e-6)


def test_rejects_inputs_that_are_not_batch_by_time():
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        tiny_model()(torch.randn(800))


def test_too_many_encoder_layers_for_the_fft_fail_in_one_line():
    with pytest.raises(ValueError, match="leave no bins"):
        CMCRNet(n_fft=16, encoder_channels=[2, 2, 2, 2])


def test_the_network_is_causal_beyond_one_fft():
    model = tiny_model().eval()
    noisy = torch.randn(2, 1600)
    changed = noisy.clone()
    start = 1200
    changed[:, start:] = torch.randn(2, 400)
    with torch.no_grad():
        before, after = model(noisy), model(changed)
    keep = start - TINY["n_fft"]
    assert torch.equal(before[:, :keep], after[:, :keep])
    assert not torch.allclose(before[:, start:], after[:, start:])


def test_each_switch_removes_exactly_its_module():
    full = tiny_model()
    no_contrast = tiny_model(contrastive_attention=False)
    no_interaction = tiny_model(interactive_attention=False)
    neither = tiny_model(contrastive_attention=False,
                         interactive_attention=False)
    gate = count(full.collaboration.gate)
    fusion = count(full.collaboration.fusion)
    assert gate > 0 and fusion > 0
    assert no_contrast.collaboration.gate is None
    assert no_interaction.collaboration.fusion is None
    assert count(full) - count(no_contrast) == gate
    assert count(full) - count(no_interaction) == fusion
    assert count(full) - count(neither) == gate + fusion


@pytest.mark.parametrize("contrastive", [True, False])
def test_without_the_gate_both_branches_take_the_same_query(contrastive):
    torch.manual_seed(0)
    module = CollaborationModule(6, 8, contrastive_attention=contrastive)
    module.irrelevant_attention.load_state_dict(
        module.relevant_attention.state_dict()
    )
    out = module.eval()(torch.randn(2, 6, 5, 7))
    # Identical attention weights: the branches differ only by their query.
    same = torch.allclose(out.relevant, out.irrelevant)
    assert same is not contrastive
    if contrastive:
        assert bool(((out.gate > 0) & (out.gate < 1)).all())


@pytest.mark.parametrize("interactive", [True, False])
def test_interactive_attention_replaces_the_plain_sum(interactive):
    torch.manual_seed(0)
    module = CollaborationModule(6, 8, interactive_attention=interactive)
    out = module.eval()(torch.randn(2, 6, 5, 7))
    summed = out.relevant + out.irrelevant
    assert torch.allclose(out.fused, summed) is not interactive
    if interactive:  # a per-channel convex combination of the branches
        low = torch.minimum(out.relevant, out.irrelevant) - 1e-5
        high = torch.maximum(out.relevant, out.irrelevant) + 1e-5
        assert bool(((out.fused >= low) & (out.fused <= high)).all())


@pytest.mark.parametrize("interactive", [True, False])
def test_enhanced_output_trains_both_attention_branches(interactive):
    model = tiny_model(interactive_attention=interactive)
    model(torch.randn(2, 1600)).pow(2).mean().backward()
    relevant, irrelevant = branch_grads(model)
    assert relevant > 0 and irrelevant > 0
    assert float(model.collaboration.gate[0].weight.grad.abs().sum()) > 0


def test_branch_pull_trains_each_branch_through_its_own_estimate():
    clean, noise = torch.randn(2, 2, 1600).unbind(0)
    pull = BranchPullLoss()

    def grads_after(select):
        model = tiny_model()
        out = model.forward_with_branches(clean + noise)
        loss, _ = pull(out.relevant, out.irrelevant, clean, clean + noise)
        select(out, loss).backward()
        return branch_grads(model), model.collaboration.gate[0].weight.grad

    # The relevant estimate depends on the relevant branch only, and back.
    (relevant, irrelevant), gate = grads_after(
        lambda out, _: out.relevant.pow(2).mean()
    )
    assert relevant > 0 and irrelevant == 0 and gate.abs().sum() > 0
    (relevant, irrelevant), _ = grads_after(
        lambda out, _: out.irrelevant.pow(2).mean()
    )
    assert relevant == 0 and irrelevant > 0
    (relevant, irrelevant), gate = grads_after(lambda _, loss: loss)
    assert relevant > 0 and irrelevant > 0 and gate.abs().sum() > 0


def test_pull_is_lowest_at_the_targets_and_scale_free():
    torch.manual_seed(0)
    clean, noise, other = torch.randn(3, 2, 800).unbind(0)
    noisy = clean + noise
    pull = BranchPullLoss(contrast_weight=0.5)
    at_targets, _ = pull(clean, noise, clean, noisy)
    near, details = pull(clean + 0.3 * other, noise - 0.3 * other, clean,
                         noisy)
    swapped, _ = pull(noise, clean, clean, noisy)
    assert at_targets < -60 < near < 0 < swapped
    assert 5 < details["relevant_si_snr"] < 15
    scaled, _ = pull(-4 * (clean + 0.3 * other),
                     0.01 * (noise - 0.3 * other), 2 * clean, 2 * noisy)
    assert torch.isclose(scaled, near, atol=1e-3)


def test_contrast_term_is_the_squared_cosine_with_the_noise():
    noise = torch.randn(1, 400)
    orthogonal = torch.randn(1, 400)
    orthogonal = orthogonal - orthogonal.mean()
    centred = noise - noise.mean()
    orthogonal -= (orthogonal * centred).sum() / centred.pow(2).sum() * centred
    clean = torch.randn(1, 400)
    pull = BranchPullLoss(contrast_weight=1.0)
    _, aligned = pull(2 * noise, noise, clean, clean + noise)
    _, apart = pull(orthogonal, noise, clean, clean + noise)
    assert aligned["contrast"] == pytest.approx(1.0, abs=1e-5)
    assert apart["contrast"] == pytest.approx(0.0, abs=1e-5)
    off, details = BranchPullLoss()(2 * noise, noise, clean, clean + noise)
    on, _ = pull(2 * noise, noise, clean, clean + noise)
    assert details["contrast"] == pytest.approx(1.0, abs=1e-5)  # measured
    assert details["contrast_term"] is None  # but not in the loss
    assert float(on - off) == pytest.approx(1.0, abs=1e-4)


def test_contrast_off_gives_no_gradient_through_it():
    from lobes.losses.pit import pairwise_neg_sisnr

    torch.manual_seed(0)
    clean, noise = torch.randn(2, 1, 400).unbind(0)
    relevant = (2 * noise + 0.1 * clean).requires_grad_()
    loss, _ = BranchPullLoss()(relevant, noise, clean, clean + noise)
    grad_off, = torch.autograd.grad(loss, relevant)
    sisnr = pairwise_neg_sisnr(relevant.reshape(1, -1, 1),
                               clean.reshape(1, -1, 1), 1e-8)
    grad_sisnr, = torch.autograd.grad(sisnr.sum(), relevant)
    assert torch.allclose(grad_off, grad_sisnr, atol=1e-6)
    loss_on, _ = BranchPullLoss(contrast_weight=1.0)(relevant, noise, clean,
                                                     clean + noise)
    grad_on, = torch.autograd.grad(loss_on, relevant)
    assert not torch.allclose(grad_on, grad_off, atol=1e-6)


def test_pull_ignores_samples_beyond_each_length():
    torch.manual_seed(0)
    clean, noise, relevant, irrelevant = torch.randn(4, 2, 800).unbind(0)
    lengths = torch.tensor([1.0, 0.5])
    pull = BranchPullLoss(contrast_weight=1.0)
    first, _ = pull(relevant, irrelevant, clean, clean + noise, lengths)
    relevant[1, 400:] = 100.0
    irrelevant[1, 400:] = -3.0
    second, _ = pull(relevant, irrelevant, clean, clean + noise, lengths)
    third, _ = pull(relevant, irrelevant, clean, clean + noise)
    assert torch.equal(first, second) and not torch.isclose(first, third)


def test_fragment_loads_and_its_parameters_override(tmp_path):
    with open(FRAGMENT, encoding="utf-8") as fin:
        default = load_hyperpyyaml(fin)
    assert count(default["enhance_model"]) == count(CMCRNet())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "contrastive_attention: False\n"
        f"model: !include:{FRAGMENT}\n"
        "  contrastive_attention: !ref <contrastive_attention>\n"
        + "".join(f"  {key}: {value}\n" for key, value in TINY.items())
        + "enhance_model: !ref <model[enhance_model]>\n"
    )
    with open(recipe, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin)
    model = hparams["enhance_model"]
    assert isinstance(model, CMCRNet)
    assert model.collaboration.gate is None
    assert model.collaboration.fusion is not None
    assert count(model) == count(tiny_model(contrastive_attention=False))


@pytest.fixture(scope="module")
def benchmark():
    return importlib.import_module("benchmarks.enhancement_cost")


def test_cost_counts_the_lstm_once_from_its_sizes(benchmark):
    model = tiny_model().eval()
    noisy = torch.randn(1, 1600)
    macs = benchmark.count_macs(model, noisy)
    frames = 1600 // TINY["hop_length"] + 1
    assert macs["recurrent_macs_added"] == benchmark.recurrent_macs(
        model.rnn, frames
    )
    assert macs["counted_macs"] > 0
    assert macs["macs"] == macs["counted_macs"] + macs["recurrent_macs_added"]
    ablated = benchmark.count_macs(
        tiny_model(contrastive_attention=False).eval(), noisy
    )
    assert 0 < ablated["counted_macs"] < macs["counted_macs"]


def test_cost_does_not_count_a_gru_twice(benchmark):
    gru = torch.nn.GRU(10, 20, batch_first=True)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = gru

        def forward(self, x):
            return self.rnn(x)[0]

    macs = benchmark.count_macs(Head(), torch.randn(2, 5, 10))
    # GRU decomposes into matrix products that FlopCounterMode sees.
    assert macs["recurrent_macs_added"] == 0
    assert macs["counted_macs"] == benchmark.recurrent_macs(gru, 10)


def test_brain_logs_the_gradient_share_of_the_pull_and_its_contrast():
    import speechbrain as sb

    from lobes.brains.enhancement import EnhancementBrain
    from lobes.losses.waveform import mse_loss
    from tests.unit.test_enhancement_brain import _Batch

    def shares(contrast_weight):
        brain = EnhancementBrain(
            {"enhance_model": tiny_model()},
            lambda params: torch.optim.Adam(params, 1e-3),
            hparams={"sample_rate": 16000,
                     "branch_pull": BranchPullLoss(contrast_weight),
                     "branch_pull_weight": 0.1,
                     "objectives": {"compute_waveform_loss": mse_loss,
                                    "cr_weight": 0.0,
                                    "cr_grad_ratio_every": 1},
                     "training": {"valid_metrics": []}},
            run_opts={"device": "cpu"},
        )
        clean, noise = torch.randn(2, 2, 1600).unbind(0)
        batch = _Batch(["a", "b"], clean + noise, clean, torch.ones(2))
        brain.on_stage_start(sb.Stage.TRAIN, 1)
        brain.step = 1
        brain.compute_objectives(
            brain.compute_forward(batch, sb.Stage.TRAIN), batch,
            sb.Stage.TRAIN,
        )
        return brain.stage_statistics(sb.Stage.TRAIN)

    stats = shares(0.5)
    assert stats["branch_pull_grad_ratio"] > 0
    assert -1 <= stats["branch_pull_grad_cosine"] <= 1
    assert stats["contrast_grad_ratio"] > 0
    off = shares(0.0)
    assert "contrast_grad_ratio" not in off
    # each part of the pull is logged, the contrast's value even when off
    for key in ("branch_relevant_si_snr", "branch_irrelevant_si_snr"):
        assert math.isfinite(off[key]) and math.isfinite(stats[key])
    assert 0 < off["branch_contrast"] <= 1
