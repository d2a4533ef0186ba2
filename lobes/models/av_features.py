"""The inputs of the AV-VAE: the recipes' STFT, log-power, lips per frame.

:class:`SineSTFT` is the analysis/synthesis of the recipes (sine window,
1024 samples at 16 kHz, hop 256: 62.5 frames a second), :func:`log_power`
the encoder's input (``log(|x|^2 + eps)``), and :func:`lips_per_frame`
picks for every STFT frame the video frame that covers its centre and
normalises it. The models are in :mod:`lobes.models.av_vae`, which
re-exports these names.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import torch
from torch import nn

#: Floor added to powers before the log, and to variances.
EPS = 1e-8


class SineSTFT(nn.Module):
    """STFT with a sine window and its inverse (weighted overlap-add).

    Arguments
    ---------
    n_fft : int
        Window and FFT length.
    hop_length : int
        Hop in samples.

    Example
    -------
    >>> stft = SineSTFT(256, 64)
    >>> wav = torch.randn(2, 1600)
    >>> spec = stft(wav)
    >>> spec.shape, spec.dtype
    (torch.Size([2, 129, 26]), torch.complex64)
    >>> torch.allclose(stft.inverse(spec, 1600), wav, atol=1e-4)
    True
    """

    def __init__(self, n_fft=1024, hop_length=256):
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        window = torch.sin(math.pi * (torch.arange(self.n_fft) + 0.5) / n_fft)
        self.register_buffer("window", window, persistent=False)

    @property
    def num_freqs(self):
        """Number of frequency bins ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples):
        """Frames of a signal of ``num_samples`` (centred frames).

        Example
        -------
        >>> SineSTFT(1024, 256).num_frames(16000)
        63
        """
        return 1 + int(num_samples) // self.hop_length

    def forward(self, wav):
        """``[..., time]`` -> complex ``[..., F, N]``."""
        shape = wav.shape
        spec = torch.stft(
            wav.reshape(-1, shape[-1]),
            self.n_fft,
            self.hop_length,
            window=self.window.to(wav.device, wav.dtype),
            center=True,
            return_complex=True,
        )
        return spec.reshape(*shape[:-1], *spec.shape[-2:])

    def inverse(self, spec, length):
        """Complex ``[..., F, N]`` -> ``[..., length]``."""
        shape = spec.shape
        real = spec.real.dtype
        wav = torch.istft(
            spec.reshape(-1, *shape[-2:]),
            self.n_fft,
            self.hop_length,
            window=self.window.to(spec.device, real),
            center=True,
            length=int(length),
        )
        return wav.reshape(*shape[:-2], wav.shape[-1])


def log_power(power):
    """Encoder input: ``log(power + EPS)``.

    Example
    -------
    >>> float(log_power(torch.tensor([1.0])))
    0.0
    """
    return torch.log(power + EPS)


def lips_per_frame(lips, lips_frames, num_frames, hop_length, sample_rate,
                   fps, valid_frames=None):  # fmt: skip
    """The normalised lip ROI of every STFT frame.

    STFT frame ``n`` is centred at ``n * hop / sample_rate`` seconds and
    gets the video frame covering that instant (the last frame past the
    video's end; the tools check beforehand that the video lasts as long
    as the audio, :func:`lobes.data.lip_input.check_duration`). Each
    utterance's ROIs are scaled to [0, 1] (uint8 divided by 255, float
    taken as is), the mean image is subtracted (what stays is the motion,
    not the speaker's static look) and the result divided by its standard
    deviation; both statistics are taken over the utterance's valid STFT
    frames only: padding (of the video or of the batch's longest audio)
    counts in neither, so an utterance gets the same frames alone or in
    any batch, and lips already at the STFT's rate
    (:func:`lobes.data.lip_input.to_frame_rate`) the same as at the video's.

    Arguments
    ---------
    lips : torch.Tensor
        ``[B, T, H, W]`` (uint8 in [0, 255] or float in [0, 1]),
        zero-padded.
    lips_frames : torch.Tensor or list
        Valid video frames of each item ``[B]``.
    num_frames : int
        STFT frames ``N``.
    hop_length : int
        STFT hop.
    sample_rate : int
        Audio rate.
    fps : float or torch.Tensor or list
        Video rate (one, or one per item).
    valid_frames : torch.Tensor or list, optional
        Valid STFT frames of each item ``[B]`` (e.g. the audio's frame
        mask summed); default: the frames whose centre lies in the video,
        ``ceil(lips_frames / fps * sample_rate / hop)``, at most
        ``num_frames``.

    Returns
    -------
    torch.Tensor
        ``[B, N, H * W]`` float.

    Example
    -------
    >>> lips = torch.zeros(1, 30, 2, 2, dtype=torch.uint8)
    >>> lips[0, 15:] = 200
    >>> frames = lips_per_frame(lips, [30], 63, 256, 16000, 30)
    >>> frames.shape
    torch.Size([1, 63, 4])
    >>> bool(frames[0, 10, 0] < 0 < frames[0, 50, 0])
    True
    >>> padded = torch.cat([lips, torch.zeros_like(lips)], dim=1)  # batch pad
    >>> same = lips_per_frame(padded, [30], 126, 256, 16000, 30)
    >>> bool(torch.allclose(same[:, :63], frames))
    True
    """
    batch = lips.shape[0]
    device = lips.device
    counts = torch.as_tensor(lips_frames, device=device).long().reshape(-1)
    rates = torch.as_tensor(fps, device=device, dtype=torch.float64)
    rates = rates.reshape(-1).expand(batch)
    times = torch.arange(num_frames, device=device, dtype=torch.float64)
    times = times * hop_length / sample_rate
    index = torch.floor(times[None, :] * rates[:, None] + 1e-9).long()
    index = torch.minimum(index, (counts - 1).clamp(min=0)[:, None])
    flat = lips.reshape(batch, lips.shape[1], -1).float()
    if lips.dtype == torch.uint8:
        flat = flat / 255.0
    picked = torch.gather(
        flat, 1, index[:, :, None].expand(-1, -1, flat.shape[-1])
    )
    if valid_frames is None:
        seconds = counts.double() / rates
        valid_frames = torch.ceil(seconds * sample_rate / hop_length - 1e-9)
    used = torch.as_tensor(valid_frames, device=device).long().reshape(-1)
    used = used.expand(batch).clamp(1, num_frames)
    inside = times.new_ones(num_frames).cumsum(0)[None] <= used[:, None]
    inside = inside.to(picked.dtype)[:, :, None]
    count = inside.sum(1, keepdim=True)
    mean = (picked * inside).sum(1, keepdim=True) / count
    centred = picked - mean
    power = (centred.pow(2) * inside).sum(dim=(1, 2), keepdim=True)
    spread = (power / (count * flat.shape[-1])).sqrt()
    return centred / (spread + 1e-3)
