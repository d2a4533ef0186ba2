"""Enhancement backbones: shapes, gradients and configuration errors."""

import pytest
import torch
from speechbrain.lobes.models.conv_tasnet import MaskNet
from speechbrain.lobes.models.dual_path import Decoder, Encoder
from speechbrain.lobes.models.transformer.TransformerSE import (
    CNNTransformerSE,
)
from speechbrain.processing.features import ISTFT, STFT

from lobes.models.enhancement import MaskingEnhancer, SpectralMaskEnhancer


def masking_enhancer(sources=1):
    return MaskingEnhancer(
        Encoder(kernel_size=32, out_channels=8),
        MaskNet(N=8, B=8, H=8, P=3, X=1, R=1, C=sources),
        Decoder(8, 1, kernel_size=32, stride=16, bias=False),
    )


def spectral_enhancer():
    return SpectralMaskEnhancer(
        STFT(16000, win_length=32, hop_length=16, n_fft=512),
        ISTFT(16000, win_length=32, hop_length=16, n_fft=512),
        CNNTransformerSE(d_model=257, output_size=257, nhead=1,
                         num_layers=1, d_ffn=16, dropout=0.0, causal=False,
                         output_activation=torch.nn.Sigmoid),
    )


@pytest.mark.parametrize("build", [masking_enhancer, spectral_enhancer])
@pytest.mark.parametrize("shape", [(1, 1601), (3, 4000)])
def test_backbones_keep_batch_and_length(build, shape):
    enhancer = build()
    noisy = torch.randn(*shape, requires_grad=True)
    enhanced = enhancer(noisy)
    assert enhanced.shape == noisy.shape
    enhanced.pow(2).sum().backward()
    assert noisy.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enhancer.parameters()
               if p.requires_grad)


def test_spectral_mask_of_ones_returns_the_input():
    class Ones(torch.nn.Module):
        def forward(self, magnitude):
            return torch.ones_like(magnitude)

    enhancer = SpectralMaskEnhancer(
        STFT(16000, win_length=32, hop_length=16, n_fft=512),
        ISTFT(16000, win_length=32, hop_length=16, n_fft=512),
        Ones(),
    )
    noisy = torch.randn(2, 8000)
    # The centred STFT with a Hamming window at 50% overlap inverts exactly
    # away from the edges.
    enhanced = enhancer(noisy)
    assert torch.allclose(enhanced[:, 512:-512], noisy[:, 512:-512],
                          atol=1e-4)


def test_masking_enhancer_rejects_several_masks():
    with pytest.raises(ValueError, match="C: 1"):
        masking_enhancer(sources=2)


def test_spectral_mask_size_mismatch_is_explained():
    enhancer = SpectralMaskEnhancer(
        STFT(16000, win_length=32, hop_length=16, n_fft=512),
        ISTFT(16000, win_length=32, hop_length=16, n_fft=512),
        torch.nn.Linear(257, 100),
    )
    with pytest.raises(ValueError, match="n_fft // 2 \\+ 1"):
        enhancer(torch.randn(1, 4000))


def test_waveform_input_must_be_batched():
    with pytest.raises(ValueError, match="batch, time"):
        masking_enhancer()(torch.randn(4000))
