"""NoiseAwareSeparator with tiny SepFormer, DPRNN and Conv-TasNet masknets."""

import pytest
import torch
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import (
    Decoder,
    Dual_Path_Model,
    Encoder,
    SBRNNBlock,
    SBTransformerBlock,
)

from lobes.errors import HparamsError
from lobes.models import (
    MaskCountError,
    NoiseAwareSeparator,
    inference_parameter_count,
)

CHANNELS = 16
KERNEL = 16


def make_masknet(kind, num_masks, channels=CHANNELS):
    """A tiny masking network of the given kind emitting num_masks masks."""
    if kind == "sepformer":
        return Dual_Path_Model(
            channels,
            channels,
            SBTransformerBlock(1, channels, 2, d_ffn=channels),
            SBTransformerBlock(1, channels, 2, d_ffn=channels),
            num_layers=1,
            K=20,
            num_spks=num_masks,
        )
    if kind == "dprnn":
        return Dual_Path_Model(
            channels,
            channels,
            SBRNNBlock(channels, 8, 1),
            SBRNNBlock(channels, 8, 1),
            num_layers=1,
            K=20,
            num_spks=num_masks,
        )
    if kind == "convtasnet":
        return MaskNet(channels, 8, 8, 3, 2, 1, C=num_masks)
    raise AssertionError(kind)


def make_separator(kind, num_spks=2, noise_output=True, channels=CHANNELS):
    """Encoder + tiny masknet + shared decoder."""
    torch.manual_seed(0)
    masknet = make_masknet(kind, num_spks + int(noise_output), channels)
    return NoiseAwareSeparator(
        Encoder(kernel_size=KERNEL, out_channels=channels),
        masknet,
        Decoder(channels, 1, kernel_size=KERNEL, stride=KERNEL // 2),
        num_spks=num_spks,
        noise_output=noise_output,
    )


KINDS = ["sepformer", "dprnn", "convtasnet"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_spks", [2, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes_with_noise_last(kind, num_spks, batch):
    separator = make_separator(kind, num_spks).eval()  # no dropout
    mix = torch.randn(batch, 803)  # odd length: exercises the padding
    out = separator(mix)
    frames = separator.encode(mix).shape[-1]
    assert separator.num_outputs == num_spks + 1
    assert separator.noise_output and separator.num_spks == num_spks
    assert out.waveforms.shape == (batch, 803, num_spks + 1)
    assert out.masked_features.shape == (num_spks + 1, batch, CHANNELS, frames)
    assert out.mix_features.shape == (batch, CHANNELS, frames)
    # h_b = m_b * h_x: each masked map is the mixture features times a mask
    masks = separator.masknet(out.mix_features)
    torch.testing.assert_close(out.masked_features, masks * out.mix_features)
    # The noise is the last output: decoding the last masked map gives it.
    noise_wave = separator.decoder(out.masked_features[-1])
    noise_wave = noise_wave.reshape(batch, -1)[:, :803]
    torch.testing.assert_close(
        out.waveforms[:, : noise_wave.shape[1], -1], noise_wave
    )


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_has_n_outputs(kind):
    separator = make_separator(kind, 2, noise_output=False)
    out = separator(torch.randn(2, 640))
    assert separator.num_outputs == 2
    assert out.waveforms.shape == (2, 640, 2)
    assert out.masked_features.shape[0] == 2


def test_trims_to_input_length():
    separator = make_separator("convtasnet")
    for length in (640, 641, 647, 648):
        assert separator(torch.randn(1, length)).waveforms.shape[1] == length


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("noise_output", [True, False])
def test_wrong_mask_count_raises_naming_the_key(kind, noise_output):
    wrong = 2 + int(not noise_output)  # N for NASS, N + 1 for the baseline
    with pytest.raises(ValueError, match="num_spks") as info:
        NoiseAwareSeparator(
            Encoder(KERNEL, CHANNELS),
            make_masknet(kind, wrong),
            Decoder(CHANNELS, 1, kernel_size=KERNEL, stride=KERNEL // 2),
            num_spks=2,
            noise_output=noise_output,
        )
    assert isinstance(info.value, HparamsError)
    assert str(2 + int(noise_output)) in str(info.value)


class _UndeclaredMaskNet(torch.nn.Module):
    """A masknet without num_spks/C attributes emitting `count` masks."""

    def __init__(self, count):
        super().__init__()
        self.count = count
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, features):
        return torch.sigmoid(self.scale * features).expand(
            self.count, *features.shape
        )


def test_undeclared_mask_count_checked_at_forward():
    def build(count):
        return NoiseAwareSeparator(
            Encoder(KERNEL, CHANNELS),
            _UndeclaredMaskNet(count),
            Decoder(CHANNELS, 1, kernel_size=KERNEL, stride=KERNEL // 2),
            num_spks=2,
        )

    assert build(3)(torch.randn(2, 400)).waveforms.shape == (2, 400, 3)
    with pytest.raises(MaskCountError, match="num_spks"):
        build(2)(torch.randn(2, 400))


def test_wrong_mask_layout_raises():
    class BatchFirst(_UndeclaredMaskNet):
        def forward(self, features):
            return super().forward(features).transpose(0, 1)

    separator = NoiseAwareSeparator(
        Encoder(KERNEL, CHANNELS),
        BatchFirst(3),
        Decoder(CHANNELS, 1, kernel_size=KERNEL, stride=KERNEL // 2),
        num_spks=2,
    )
    with pytest.raises(ValueError, match="sources, batch"):
        separator(torch.randn(2, 400))


def _overhead(kind, channels, num_spks=2):
    nass = make_separator(kind, num_spks, True, channels)
    base = make_separator(kind, num_spks, False, channels)
    return inference_parameter_count(nass) - inference_parameter_count(base)


@pytest.mark.parametrize("kind", ["sepformer", "dprnn"])
def test_dual_path_overhead_is_the_widened_projection(kind):
    # Dual_Path_Model's conv2d C -> C * S (with bias) gains C * C + C.
    assert _overhead(kind, CHANNELS) == CHANNELS * CHANNELS + CHANNELS


def test_convtasnet_overhead_is_the_widened_projection():
    # MaskNet's mask_conv1x1 B -> S * N (no bias) gains B * N; B = 8 here.
    assert _overhead("convtasnet", CHANNELS) == 8 * CHANNELS


def test_overhead_at_paper_size_under_100k():
    # SepFormer / DPRNN with 256 channels: 256 * 256 + 256 = 65,792.
    masknets = [
        Dual_Path_Model(
            256,
            256,
            SBTransformerBlock(1, 256, 8, d_ffn=256),
            SBTransformerBlock(1, 256, 8, d_ffn=256),
            num_layers=1,
            num_spks=s,
        )
        for s in (2, 3)
    ]
    overhead = inference_parameter_count(
        masknets[1]
    ) - inference_parameter_count(masknets[0])
    assert overhead == 65_792 < 100_000
    # Conv-TasNet paper size (N=512, B=128): 128 * 512 = 65,536.
    tasnets = [MaskNet(512, 128, 512, 3, 1, 1, C=s) for s in (2, 3)]
    overhead = inference_parameter_count(
        tasnets[1]
    ) - inference_parameter_count(tasnets[0])
    assert overhead == 65_536 < 100_000


def test_gradients_reach_masknet_through_noise_output():
    separator = make_separator("sepformer")
    out = separator(torch.randn(2, 480))
    out.waveforms[..., -1].pow(2).mean().backward()
    grads = [p.grad for p in separator.masknet.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


# Paired initialisation (issue 21, build 5) --------------------------------

FRAGMENT_SIZES = {
    "sepformer": {
        "encoder_channels": 16, "num_dual_path_blocks": 1,
        "num_transformer_layers": 1, "num_heads": 2, "d_ffn": 16,
        "chunk_size": 20,
    },
    "dprnn": {
        "encoder_channels": 16, "num_dual_path_blocks": 1,
        "chunk_size": 20,
    },
    "convtasnet": {
        "encoder_channels": 16, "bottleneck_channels": 8,
        "conv_channels": 8, "blocks_per_repeat": 2, "num_repeats": 1,
    },
}


def build_from_fragment(kind, noise_output, seed=3, init_seed=3):
    """The backbone as the recipes build it (its YAML, seeded first)."""
    import pathlib

    from hyperpyyaml import load_hyperpyyaml

    path = (pathlib.Path(__file__).parents[2] / "hparams" / "separation"
            / f"{kind}.yaml")
    overrides = dict(FRAGMENT_SIZES[kind], num_outputs=2 + int(noise_output))
    torch.manual_seed(seed)
    with open(path, encoding="utf-8") as fin:
        parts = load_hyperpyyaml(fin, overrides)
    return NoiseAwareSeparator(
        parts["encoder"], parts["masknet"], parts["decoder"], num_spks=2,
        noise_output=noise_output, init_seed=init_seed,
    )


def shared_differences(base, nass):
    """Names of the shared tensors (first N masks of the projection
    included) that differ between the N- and N+1-output separators."""
    from lobes.models.mask_projection import output_projection

    projection = "masknet." + output_projection(nass.masknet)[0]
    base_state, nass_state = base.state_dict(), nass.state_dict()
    assert set(base_state) == set(nass_state)
    differ = []
    for key, value in base_state.items():
        other = nass_state[key]
        if key.startswith(projection + "."):
            assert other.shape[0] == value.shape[0] * 3 // 2
            other = other[: value.shape[0]]
        else:
            assert other.shape == value.shape, key
        if not torch.equal(value, other):
            differ.append(key)
    return differ


@pytest.mark.parametrize("kind", ["sepformer", "dprnn", "convtasnet"])
def test_paired_init_shares_every_layer_bit_for_bit(kind):
    base = build_from_fragment(kind, noise_output=False)
    after_base = torch.rand(4)
    nass = build_from_fragment(kind, noise_output=True)
    after_nass = torch.rand(4)
    assert shared_differences(base, nass) == []
    # and the runs' next random draws (PatchNCE sampler, dropout) agree
    assert torch.equal(after_base, after_nass)


@pytest.mark.parametrize("kind", ["sepformer", "dprnn"])
def test_without_paired_init_the_later_layers_differ(kind):
    """The defect paired initialisation removes (the check can fail)."""
    base = build_from_fragment(kind, noise_output=False, init_seed=None)
    nass = build_from_fragment(kind, noise_output=True, init_seed=None)
    differ = shared_differences(base, nass)
    assert "decoder.weight" in differ
    assert "masknet.end_conv1x1.weight" in differ
    assert "masknet.conv2d.bias" in differ
    assert "encoder.conv1d.weight" not in differ


@pytest.mark.parametrize("kind", ["sepformer", "convtasnet"])
def test_noise_rows_reproducible_and_seed_dependent(kind):
    from lobes.models.mask_projection import output_projection

    def noise_rows(seed):
        nass = build_from_fragment(kind, True, seed=seed, init_seed=seed)
        weight = output_projection(nass.masknet)[1].weight
        return weight[weight.shape[0] * 2 // 3:].detach().clone()

    first = noise_rows(5)
    assert torch.equal(first, noise_rows(5))
    assert not torch.equal(first, noise_rows(6))
    # the noise mask is not a copy of a speaker mask
    nass = build_from_fragment(kind, True, seed=5, init_seed=5)
    weight = output_projection(nass.masknet)[1].weight.detach()
    rows = weight.shape[0] // 3
    assert not torch.equal(weight[:rows], first)


def test_paired_init_keeps_construction_scale():
    """Re-drawn layers keep PyTorch's initialisation (same bounds)."""
    nass = build_from_fragment("sepformer", True)
    fan_in = 16
    bound = 1 / fan_in ** 0.5
    for tensor in (nass.masknet.conv2d.weight, nass.masknet.conv2d.bias,
                   nass.masknet.output[0].bias, nass.decoder.weight):
        assert 0 < tensor.abs().max() <= bound + 1e-7


def test_paired_init_unknown_masknet_is_refused():
    from lobes.models.mask_projection import paired_init

    class Plain(torch.nn.Module):
        num_spks = 3

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv1d(4, 12, 1)

    separator = NoiseAwareSeparator(
        Encoder(kernel_size=KERNEL, out_channels=4), Plain(),
        Decoder(4, 1, kernel_size=KERNEL, stride=KERNEL // 2), num_spks=2,
    )
    with pytest.raises(MaskCountError, match="output projection"):
        paired_init(separator, 1)
    Plain.output_projection = "proj"
    result = paired_init(separator, 1)
    assert result["rows"] == 4 and result["noise"] == ["masknet.proj.weight",
                                                       "masknet.proj.bias"]
