"""Speech enhancement backbones: noisy waveform ``[B, T]`` in, enhanced out.

Both backbones are compositions of SpeechBrain lobes configured in YAML:

- :class:`MaskingEnhancer`, Conv-TasNet style: a learned encoder
  (``speechbrain.lobes.models.dual_path.Encoder``), a masking network with
  one output (``speechbrain.lobes.models.conv_tasnet.MaskNet`` with
  ``C: 1``, or any network returning masks ``[1, B, C, L]``) and a decoder
  (``speechbrain.lobes.models.dual_path.Decoder``); the mask multiplies the
  encoder features of the noisy input.
- :class:`SpectralMaskEnhancer`: a magnitude mask predicted from the
  log-compressed noisy magnitude spectrogram by any network mapping
  ``[B, frames, freqs]`` to ``[B, frames, freqs]`` (e.g. SpeechBrain's
  ``CNNTransformerSE``, the model of its VoiceBank spectral-mask recipe),
  applied to the noisy STFT (so the noisy phase is kept) and turned back
  into a waveform with the inverse STFT
  (``speechbrain.processing.features.STFT``/``ISTFT``).

Authors
 * noise-robust-sb contributors 2025
"""

import torch
import torch.nn.functional as F


def match_length(wav, length):
    """Zero-pad or trim waveforms ``[B, T']`` to ``[B, length]``.

    Example
    -------
    >>> match_length(torch.ones(2, 5), 7).shape
    torch.Size([2, 7])
    >>> match_length(torch.ones(2, 5), 3).shape
    torch.Size([2, 3])
    """
    if wav.shape[-1] < length:
        return F.pad(wav, (0, length - wav.shape[-1]))
    return wav[..., :length]


def _check_input(noisy, name):
    if noisy.dim() != 2:
        raise ValueError(
            f"{name} expects noisy waveforms [batch, time], got shape "
            f"{tuple(noisy.shape)}"
        )


class MaskingEnhancer(torch.nn.Module):
    """Conv-TasNet-style enhancer: encoder -> one mask -> decoder.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps ``[B, T]`` to non-negative features ``[B, C, L]``.
    masknet : torch.nn.Module
        Maps ``[B, C, L]`` to masks ``[1, B, C, L]`` (one source).
    decoder : torch.nn.Module
        Maps masked features ``[B, C, L]`` back to waveforms ``[B, T']``.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> enhancer = MaskingEnhancer(
    ...     Encoder(kernel_size=16, out_channels=8),
    ...     MaskNet(N=8, B=4, H=4, P=3, X=1, R=1, C=1),
    ...     Decoder(8, 1, kernel_size=16, stride=8, bias=False),
    ... )
    >>> enhancer(torch.randn(2, 800)).shape
    torch.Size([2, 800])
    >>> enhancer(torch.randn(1, 801)).shape
    torch.Size([1, 801])
    """

    def __init__(self, encoder, masknet, decoder):
        super().__init__()
        self.encoder = encoder
        self.masknet = masknet
        self.decoder = decoder
        sources = getattr(masknet, "C", getattr(masknet, "num_spks", 1))
        if isinstance(sources, int) and sources != 1:
            raise ValueError(
                f"the enhancer's masking network emits {sources} masks; set "
                "`C: 1` (conv_tasnet.MaskNet) or `num_spks: 1` in the YAML"
            )

    def forward(self, noisy):
        """Enhance ``noisy [B, T]``; returns ``[B, T]``."""
        _check_input(noisy, type(self).__name__)
        features = self.encoder(noisy)
        masks = self.masknet(features)
        if masks.dim() != 4 or masks.shape[0] != 1:
            raise ValueError(
                f"the masking network must return masks [1, batch, "
                f"channels, frames]; got shape {tuple(masks.shape)}"
            )
        decoded = self.decoder(masks[0] * features)
        # SpeechBrain's Decoder squeezes the batch axis away when B == 1.
        decoded = decoded.reshape(noisy.shape[0], -1)
        return match_length(decoded, noisy.shape[-1])


class SpectralMaskEnhancer(torch.nn.Module):
    """Magnitude-mask enhancer working on the STFT of the noisy input.

    Arguments
    ---------
    compute_stft : torch.nn.Module
        ``[B, T]`` -> ``[B, frames, freqs, 2]`` (real, imaginary), e.g.
        ``speechbrain.processing.features.STFT``.
    compute_istft : torch.nn.Module
        The inverse, called as ``compute_istft(spec, sig_length=T)``, e.g.
        ``speechbrain.processing.features.ISTFT``.
    mask_model : torch.nn.Module
        ``[B, frames, freqs]`` log-compressed magnitudes -> mask of the same
        shape (a sigmoid or ReLU output layer keeps it non-negative).

    Example
    -------
    >>> from speechbrain.processing.features import ISTFT, STFT
    >>> enhancer = SpectralMaskEnhancer(
    ...     STFT(16000, win_length=32, hop_length=16, n_fft=512),
    ...     ISTFT(16000, win_length=32, hop_length=16, n_fft=512),
    ...     torch.nn.Sequential(torch.nn.Linear(257, 257),
    ...                         torch.nn.Sigmoid()),
    ... )
    >>> enhancer(torch.randn(2, 4000)).shape
    torch.Size([2, 4000])
    """

    def __init__(self, compute_stft, compute_istft, mask_model):
        super().__init__()
        self.compute_stft = compute_stft
        self.compute_istft = compute_istft
        self.mask_model = mask_model

    @staticmethod
    def compressed_magnitude(spec, eps=1e-14):
        """``log1p`` of the magnitude of ``[..., 2]`` real/imag spectra.

        Example
        -------
        >>> spec = torch.tensor([[[3.0, 4.0]]])
        >>> SpectralMaskEnhancer.compressed_magnitude(spec)
        tensor([[1.7918]])
        """
        return torch.log1p(torch.sqrt(spec.pow(2).sum(-1) + eps))

    def forward(self, noisy):
        """Enhance ``noisy [B, T]``; returns ``[B, T]``."""
        _check_input(noisy, type(self).__name__)
        spec = self.compute_stft(noisy)
        mask = self.mask_model(self.compressed_magnitude(spec))
        if mask.shape != spec.shape[:-1]:
            raise ValueError(
                f"the mask model returned shape {tuple(mask.shape)} for a "
                f"spectrogram of shape {tuple(spec.shape[:-1])}; set its "
                "output size to n_fft // 2 + 1 in the YAML"
            )
        enhanced = self.compute_istft(
            spec * mask.unsqueeze(-1), sig_length=noisy.shape[-1]
        )
        return match_length(enhanced.reshape(noisy.shape[0], -1),
                           noisy.shape[-1])
