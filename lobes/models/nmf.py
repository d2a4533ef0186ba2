"""NMF-only separation of J speakers and noise (a baseline of the AV-VAE).

Itakura-Saito NMF of the mixture's power spectrogram with the components
split into groups, one per speaker and one for the noise::

    |x_fn|^2 ~ V_fn = sum_j (W_j H_j)_fn + (W_noise H_noise)_fn

Speakers share a speech dictionary ``W_s`` learned beforehand on clean
training speech (:func:`learn_dictionary`, the same data the VAEs see) and
kept fixed; each speaker has its own activations. The noise dictionary and
activations are learned on the mixture. Without a dictionary every group
is learned on the mixture from a random start. Updates are the
multiplicative ones with exponent 1/2 (monotone for the IS divergence);
each source is recovered with its Wiener filter. Nothing tells the
speakers apart but the random start: this is the audio-only, model-free
reference point of the benchmark.

Batched over mixtures (``[B, F, N]``) with a frame mask; runs on the
device of its inputs.

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch

from lobes.models.mcem_common import _ratio

EPS = 1e-8


class NMFResult(NamedTuple):
    """What :class:`NMFSeparator` returns.

    Attributes
    ----------
    sources : torch.Tensor
        Speaker STFTs ``[B, J, F, N]`` (complex).
    noise : torch.Tensor
        Noise STFT ``[B, F, N]``.
    costs : torch.Tensor
        IS cost after each update ``[iterations, B]``.

    Example
    -------
    >>> t = torch.zeros(1)
    >>> NMFResult(t, t, t).costs
    tensor([0.])
    """

    sources: torch.Tensor
    noise: torch.Tensor
    costs: torch.Tensor


def _is_cost(power, variance, mask):
    terms = torch.log(variance) + power / variance  # [B, F, N]
    valid = mask[:, None, :].to(terms.dtype)
    return (terms * valid).sum((1, 2)) / (valid.sum((1, 2)) * terms.shape[1])


def _update(power, w, h, mask, update_w):
    """One multiplicative update of H (all columns) then of W's free ones."""
    valid = mask[:, None, :].to(power.dtype)
    variance = w @ h + EPS
    numerator = power * variance.pow(-2) * valid
    h = h * _ratio(
        w.transpose(1, 2) @ numerator,
        w.transpose(1, 2) @ (variance.reciprocal() * valid),
    )
    variance = w @ h + EPS
    numerator = power * variance.pow(-2) * valid
    factor = _ratio(
        numerator @ h.transpose(1, 2),
        (variance.reciprocal() * valid) @ h.transpose(1, 2),
    )
    w = torch.where(update_w[None, None, :], w * factor, w)
    return w, h


def learn_dictionary(power, rank, num_iterations=100, generator=None):
    """IS-NMF dictionary ``[F, rank]`` of power spectra ``[F, N]``.

    Columns are scaled to unit mean.

    Example
    -------
    >>> basis = torch.rand(6, 2)
    >>> power = basis @ torch.rand(2, 40) + 1e-3
    >>> w = learn_dictionary(power, 2, 200, torch.Generator().manual_seed(0))
    >>> w.shape
    torch.Size([6, 2])
    """
    freqs, frames = power.shape
    w = torch.rand(1, freqs, rank, generator=generator, dtype=power.dtype,
                   device=power.device) + 0.1  # fmt: skip
    h = torch.rand(1, rank, frames, generator=generator, dtype=power.dtype,
                   device=power.device) + 0.1  # fmt: skip
    h = h * power.mean() / (w @ h).mean()
    mask = torch.ones(1, frames, dtype=torch.bool, device=power.device)
    free = torch.ones(rank, dtype=torch.bool, device=power.device)
    for _ in range(num_iterations):
        w, h = _update(power[None], w, h, mask, free)
    w = w[0]
    return w / w.mean(0, keepdim=True).clamp(min=EPS)


class NMFSeparator:
    """IS-NMF separation (see the module docstring).

    Arguments
    ---------
    speech_rank : int
        Components per speaker (ignored with a dictionary: its width).
    noise_rank : int
        Noise components.
    num_iterations : int
        Multiplicative updates.
    dictionary : torch.Tensor, optional
        Fixed speech dictionary ``[F, K_s]`` shared by the speakers.

    Example
    -------
    >>> mix = torch.randn(2, 9, 12, dtype=torch.cfloat)
    >>> nmf = NMFSeparator(speech_rank=3, noise_rank=2, num_iterations=20)
    >>> out = nmf(mix, num_speakers=2,
    ...           generator=torch.Generator().manual_seed(0))
    >>> out.sources.shape, bool(torch.allclose(
    ...     out.sources.sum(1) + out.noise, mix, atol=1e-4))
    (torch.Size([2, 2, 9, 12]), True)
    >>> bool((out.costs[1:] <= out.costs[:-1] + 1e-5).all())  # monotone
    True
    """

    def __init__(self, speech_rank=16, noise_rank=10, num_iterations=200,
                 dictionary=None):  # fmt: skip
        self.speech_rank = int(speech_rank)
        self.noise_rank = int(noise_rank)
        self.num_iterations = int(num_iterations)
        self.dictionary = dictionary

    @torch.no_grad()
    def __call__(self, mixture, num_speakers, frame_mask=None,
                 generator=None):  # fmt: skip
        """Separate complex STFTs ``[B, F, N]`` into ``num_speakers``."""
        power = mixture.abs().pow(2)
        batch, freqs, frames = power.shape
        real = power.dtype
        device = power.device
        if frame_mask is None:
            frame_mask = torch.ones(batch, frames, dtype=torch.bool,
                                    device=device)  # fmt: skip
        mask = frame_mask.to(device).bool()
        power = power * mask[:, None, :]

        def rand(*shape):
            return torch.rand(shape, generator=generator, dtype=real,
                              device=device) + 0.05  # fmt: skip

        if self.dictionary is not None:
            speech = self.dictionary.to(device, real)
            rank = speech.shape[1]
            speech_w = speech[None].expand(batch, -1, -1)
            speech_w = speech_w.repeat(1, 1, num_speakers)
            free_speech = torch.zeros(rank * num_speakers, dtype=torch.bool)
        else:
            rank = self.speech_rank
            speech_w = rand(batch, freqs, rank * num_speakers)
            free_speech = torch.ones(rank * num_speakers, dtype=torch.bool)
        w = torch.cat([speech_w, rand(batch, freqs, self.noise_rank)], dim=2)
        free = torch.cat(
            [free_speech, torch.ones(self.noise_rank, dtype=torch.bool)]
        ).to(device)
        h = rand(batch, w.shape[2], frames)
        valid = mask[:, None, :].to(real)
        scale = (power * valid).sum((1, 2)) / (
            (w @ h) * valid).sum((1, 2)).clamp(min=EPS)  # fmt: skip
        h = h * scale[:, None, None]
        costs = []
        for _ in range(self.num_iterations):
            w, h = _update(power, w, h, mask, free)
            costs.append(_is_cost(power, w @ h + EPS, mask))
        total = w @ h + EPS
        groups = [
            slice(j * rank, (j + 1) * rank) for j in range(num_speakers)
        ]
        sources = torch.stack(
            [(w[:, :, g] @ h[:, g]) / total * mixture for g in groups], dim=1
        )
        tail = slice(rank * num_speakers, None)
        noise = (w[:, :, tail] @ h[:, tail]) / total * mixture
        return NMFResult(sources, noise, torch.stack(costs))
