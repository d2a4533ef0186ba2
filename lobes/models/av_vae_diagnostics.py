"""Posterior-collapse diagnostics of the A-VAE / AV-VAE.

A collapsed AV-VAE (issue 23: KL 0.57 nat/frame against 13 for the A-VAE)
has a decoder that barely reads ``z``: it regresses spectra from the lips,
and MCEM's sampling of ``z`` has little to do. Three numbers tell it,
each on a batch of validation frames:

- :func:`mean_frame_kl`: ``KL(q(z | x, v) || p(z | v))`` in nat per frame
  (near 0: the posterior is the prior, ``z`` carries nothing);
- :func:`z_sensitivity`: the mean absolute change of the decoder's
  log-variance when ``z`` is redrawn (from the prior by default, the
  distribution MCEM starts from), the lips held;
- :func:`lips_sensitivity`: the same when the lips are swapped with another
  utterance's of the batch, ``z`` held (the posterior mean given the true
  lips).

:func:`latent_diagnostics` returns all three as floats for a Brain to log.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import torch

from lobes.models.av_vae import VAEOutput, frame_kl


def _masked_mean(values, mask):
    """Mean of ``values [B, N, ...]`` over the frames where ``mask [B, N]``."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    while mask.dim() < values.dim():
        mask = mask[..., None]
    weight = mask.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def mean_frame_kl(output, mask=None):
    """KL between posterior and prior in nat per (valid) frame.

    Arguments
    ---------
    output : lobes.models.av_vae.VAEOutput
        A VAE's output ``[B, N, ...]``.
    mask : torch.Tensor, optional
        Valid frames ``[B, N]``.

    Returns
    -------
    torch.Tensor
        A scalar.

    Example
    -------
    >>> from lobes.models.av_vae import VAEOutput
    >>> z = torch.zeros(1, 2, 3)
    >>> out = VAEOutput(z, z + torch.tensor([[[1.0], [3.0]]]), z, z, z, z)
    >>> float(mean_frame_kl(out)), float(mean_frame_kl(out, torch.tensor(
    ...     [[True, False]])))
    (7.5, 1.5)
    """
    return _masked_mean(frame_kl(output), mask)


def _inputs(model, features, lips):
    embedding = model.embed(lips) if model.uses_video else None
    mu_q, logvar_q = model.encode(features, embedding)
    mu_p, logvar_p = model.prior(embedding, like=mu_q)
    return embedding, mu_q, logvar_q, mu_p, logvar_p


def _draw(mean, logvar, generator):
    noise = torch.randn(mean.shape, generator=generator, device=mean.device,
                        dtype=mean.dtype)  # fmt: skip
    return mean + torch.exp(0.5 * logvar) * noise


@torch.no_grad()
def z_sensitivity(model, features, lips=None, mask=None, generator=None,
                  source="prior"):  # fmt: skip
    """Mean ``|log sigma^2(z1, v) - log sigma^2(z2, v)|`` for two draws.

    ``z1`` and ``z2`` are independent draws of ``source`` (``"prior"``:
    ``p(z | v)``, N(0, I) for the A-VAE; ``"posterior"``: ``q(z | x, v)``),
    the lips held; the mean is over the valid frames and the frequencies.
    A decoder that ignores ``z`` gives 0.

    Arguments
    ---------
    model : lobes.models.av_vae.AudioVAE or lobes.models.av_vae.AVCVAE
        The VAE.
    features : torch.Tensor
        Encoder input ``[B, N, F]``
        (:func:`lobes.models.av_features.log_power`).
    lips : torch.Tensor, optional
        Normalised lips ``[B, N, H*W]`` (an audio-visual model).
    mask : torch.Tensor, optional
        Valid frames ``[B, N]``.
    generator : torch.Generator, optional
        Source of the draws.
    source : str
        ``"prior"`` or ``"posterior"``.

    Returns
    -------
    float

    Example
    -------
    >>> from lobes.models.av_vae import AudioVAE
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> vae = AudioVAE(num_freqs=5, latent_dim=2, hidden_dim=4)
    >>> x = torch.randn(2, 6, 5)
    >>> z_sensitivity(vae, x, generator=torch.Generator().manual_seed(0)) > 0
    True
    >>> with torch.no_grad():
    ...     _ = vae.decoder_hidden.weight.zero_()  # a decoder blind to z
    >>> z_sensitivity(vae, x)
    0.0
    """
    if source not in ("prior", "posterior"):
        raise ValueError(f"source={source!r} is not 'prior' or 'posterior'")
    embedding, mu_q, logvar_q, mu_p, logvar_p = _inputs(model, features, lips)
    mean, logvar = (mu_p, logvar_p) if source == "prior" else (mu_q, logvar_q)
    one = model.decode(_draw(mean, logvar, generator), embedding)
    two = model.decode(_draw(mean, logvar, generator), embedding)
    change = (torch.log(one) - torch.log(two)).abs()
    return float(_masked_mean(change, mask))


@torch.no_grad()
def lips_sensitivity(model, features, lips, mask=None):
    """Mean ``|log sigma^2(z, v) - log sigma^2(z, v')|``, lips swapped.

    ``v'`` is the lips of the next utterance of the batch (rolled by one),
    ``z`` the posterior mean given the true lips; the mean is over the
    frames valid in both utterances and the frequencies. NaN for a model
    without lips or a batch of one utterance.

    Arguments
    ---------
    model : lobes.models.av_vae.AudioVAE or lobes.models.av_vae.AVCVAE
        The VAE.
    features : torch.Tensor
        Encoder input ``[B, N, F]``.
    lips : torch.Tensor
        Normalised lips ``[B, N, H*W]``.
    mask : torch.Tensor, optional
        Valid frames ``[B, N]``.

    Returns
    -------
    float

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> vae = AVCVAE(5, 2, 4, visual_dim=6, trunk_hidden=8, trunk_dim=3)
    >>> x, lips = torch.randn(2, 4, 5), torch.randn(2, 4, 6)
    >>> lips_sensitivity(vae, x, lips) > 0
    True
    >>> lips_sensitivity(vae, x, lips[[0, 0]])  # the same lips twice
    0.0
    >>> lips_sensitivity(vae, x[:1], lips[:1])
    nan
    """
    if not getattr(model, "uses_video", False) or features.shape[0] < 2:
        return math.nan
    embedding, mu_q, _, _, _ = _inputs(model, features, lips)
    swapped = embedding.roll(1, dims=0)
    own = model.decode(mu_q, embedding)
    other = model.decode(mu_q, swapped)
    change = (torch.log(own) - torch.log(other)).abs()
    if mask is not None:
        mask = mask.bool() & mask.bool().roll(1, dims=0)
    return float(_masked_mean(change, mask))


@torch.no_grad()
def latent_diagnostics(model, features, lips=None, mask=None,
                       generator=None):  # fmt: skip
    """KL per frame and the decoder's sensitivity to ``z`` and to the lips.

    Arguments
    ---------
    model : lobes.models.av_vae.AudioVAE or lobes.models.av_vae.AVCVAE
        The VAE (its mode is left as it is: call it in eval mode).
    features : torch.Tensor
        Encoder input ``[B, N, F]``.
    lips : torch.Tensor, optional
        Normalised lips ``[B, N, H*W]``.
    mask : torch.Tensor, optional
        Valid frames ``[B, N]``.
    generator : torch.Generator, optional
        Source of the draws of ``z``.

    Returns
    -------
    dict
        ``kl`` (nat per frame, posterior mean of the encoder),
        ``z_sensitivity``, ``lips_sensitivity`` (NaN without lips or for
        a batch of one).

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE
    >>> vae = AVCVAE(5, 2, 4, visual_dim=6, trunk_hidden=8, trunk_dim=3)
    >>> stats = latent_diagnostics(vae.eval(), torch.randn(3, 4, 5),
    ...                            torch.randn(3, 4, 6))
    >>> sorted(stats)
    ['kl', 'lips_sensitivity', 'z_sensitivity']
    """
    embedding, mu_q, logvar_q, mu_p, logvar_p = _inputs(model, features, lips)
    output = VAEOutput(None, mu_q, logvar_q, mu_p, logvar_p, mu_q)
    return {
        "kl": float(mean_frame_kl(output, mask)),
        "z_sensitivity": z_sensitivity(model, features, lips, mask,
                                       generator),  # fmt: skip
        "lips_sensitivity": lips_sensitivity(model, features, lips, mask),
    }
