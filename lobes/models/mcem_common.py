"""What the batched MCEM and its frame-by-frame reference share.

:class:`MCEMResult` (what both return), the random draws in a fixed order
(``_Draws``), the preparation of the inputs (power, mask, the prior and the
encoder's initial latents: ``_prepare``), the noise initialisation
(``_init_noise``) and the multiplicative update ratio (``_ratio``) of
:class:`lobes.models.mcem.MCEM` and
:func:`lobes.models.mcem_reference.mcem_reference`.

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch

from lobes.models.av_features import EPS, log_power


class MCEMResult(NamedTuple):
    """What :class:`MCEM` returns.

    Attributes
    ----------
    sources : torch.Tensor
        Speaker STFTs ``[B, J, F, N]`` (complex), in the order of the lips.
    noise : torch.Tensor
        Noise STFT ``[B, F, N]``.
    costs : torch.Tensor
        Cost after each M-step ``[iterations, B]``.
    costs_before : torch.Tensor
        Cost of the same samples before each M-step ``[iterations, B]``.
    acceptance : torch.Tensor
        MH acceptance rate per mixture and speaker ``[B, J]``.
    iterations : torch.Tensor
        EM iterations until each mixture met the tolerance, or whose
        parameters a stopped mixture kept ``[B]`` (the maximum when
        neither).
    noise_ratio : torch.Tensor or None
        Noise-to-speech energy ratio after each M-step ``[iterations, B]``
        (of the parameters kept: a stopped mixture's stay put).
    stopped : torch.Tensor or None
        Mixtures stopped because that ratio ran away ``[B]`` (bool).
    switch : torch.Tensor or None
        With a fallback model: ``q(a = AV)`` per speaker and frame
        ``[B, J, N]`` (the last E-step's).

    Example
    -------
    >>> t = torch.zeros(1)
    >>> MCEMResult(t, t, t, t, t, t).switch is None
    True
    """

    sources: torch.Tensor
    noise: torch.Tensor
    costs: torch.Tensor
    costs_before: torch.Tensor
    acceptance: torch.Tensor
    iterations: torch.Tensor
    noise_ratio: torch.Tensor = None
    stopped: torch.Tensor = None
    switch: torch.Tensor = None


class _Draws:
    """Random numbers in a fixed order, shared by both implementations."""

    def __init__(self, generator, device, dtype):
        self.generator = generator
        self.device = device
        self.dtype = dtype

    def uniform(self, shape):
        return torch.rand(
            shape, generator=self.generator, device=self.device,
            dtype=self.dtype,
        )  # fmt: skip

    def normal(self, shape):
        return torch.randn(
            shape, generator=self.generator, device=self.device,
            dtype=self.dtype,
        )  # fmt: skip


def _prepare(model, mixture, num_speakers, lips, frame_mask):
    """Power, mask, visual embeddings, prior and initial latents."""
    power = mixture.abs().pow(2).transpose(1, 2)  # [B, N, F]
    batch, frames, _ = power.shape
    if frame_mask is None:
        frame_mask = torch.ones(batch, frames, dtype=torch.bool,
                                device=power.device)  # fmt: skip
    frame_mask = frame_mask.to(power.device).bool()
    power = power * frame_mask[..., None]
    embedding = None
    if getattr(model, "uses_video", False):
        if lips is None or lips.shape[1] != num_speakers:
            raise ValueError(
                f"an audio-visual model needs lips [B, {num_speakers}, N, "
                "pixels] for every speaker"
            )
        embedding = model.embed(lips.to(power.dtype))  # [B, J, N, E]
    features = log_power(power)[:, None].expand(-1, num_speakers, -1, -1)
    mu_q, _ = model.encode(features, embedding)  # [B, J, N, D]
    mu_p, logvar_p = model.prior(embedding, like=mu_q)
    return power, frame_mask, embedding, mu_q, mu_p, logvar_p


def _init_noise(draws, power, mask, rank, share):
    """Random ``W [B, F, K]`` and ``H [B, K, N]``, scaled to the mixture."""
    batch, frames, freqs = power.shape
    w = draws.uniform((batch, freqs, rank)) + 0.05
    h = draws.uniform((batch, rank, frames)) + 0.05
    noise = torch.einsum("bfk,bkn->bnf", w, h)
    valid = mask[..., None].to(power.dtype)
    count = (valid.sum((1, 2)) * freqs).clamp(min=1)
    target = (power * valid).sum((1, 2)) / count * share
    current = (noise * valid).sum((1, 2)) / count
    h = h * (target / current.clamp(min=EPS)).clamp(min=EPS)[:, None, None]
    return w, h


def _ratio(numerator, denominator):
    """``sqrt(num / den)``, 1 where the denominator vanishes."""
    ok = denominator > 0
    safe = torch.where(ok, denominator, torch.ones_like(denominator))
    return torch.where(ok, numerator / safe, torch.ones_like(numerator)).sqrt()
