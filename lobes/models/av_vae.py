"""Audio-only VAE and audio-visual conditional VAE of clean speech spectra.

Generative model of one STFT frame ``s_n`` (F frequency bins) of clean
speech, as in Sadeghi et al. (IEEE TASLP 2020) and Nguyen et al. (MLSP
2021)::

    z_n ~ p(z | v_n)                     (A-VAE: N(0, I))
    s_fn | z_n, v_n ~ N_c(0, sigma_f^2(z_n, v_n))

- :class:`AudioVAE` (A-VAE): encoder ``q(z | x)`` and decoder
  ``sigma^2(z)``, one hidden layer each (tanh), the decoder's output is the
  exponential of a linear layer (a variance);
- :class:`AVCVAE` (AV-VAE): a shared visual trunk maps a lip ROI to an
  embedding (:class:`VisualTrunk`, 2 ReLU layers, ``H*W -> 512 -> 128``);
  the prior network ``p(z | v)``, the encoder ``q(z | x, v)`` and the
  decoder ``sigma^2(z, v)`` all read it. The encoder input ``x`` may be the
  clean frame or a mixture (Nguyen et al. feed the encoder the mixture and
  the lips).

The encoder reads log-power spectra (``log(|x|^2 + eps)``), the decoder
returns variances. :func:`is_elbo` is the training loss: the Itakura-Saito
reconstruction ``sum_f [log sigma^2 + |s|^2 / sigma^2]`` plus
``KL(q || p)``, per frame (:func:`frame_kl`).

Against posterior collapse (a decoder that ignores ``z`` and regresses
spectra from the lips), the two remedies of the authors' training code
(``avse-vae/train_CVAE.py``), both off by default:

- a second reconstruction term decoded from a sample of the prior
  ``p(z | v)`` (``VAEOutput.prior_variance``), mixed in by
  ``is_elbo(..., prior_reconstruction_weight=w)`` as
  ``(1 - w) (recon + KL) + w recon_prior`` (the authors' ``beta = 1 - w``);
- random freezing of the audio path (``AVCVAE(audio_freeze_prob=p)``):
  in a training forward pass, with probability ``p``, the layers that read
  the audio or the latent (the encoder's audio input, mean and
  log-variance layers, the decoder's latent input) get no gradient, so the
  batch trains only the visual trunk, the prior and the decoder's visual
  and output layers (the authors' ``SwitchGradParam``, ``pgrad = 0.2``).

:mod:`lobes.models.av_vae_diagnostics` measures collapse (KL per frame,
the decoder's sensitivity to ``z`` and to the lips).

:class:`SineSTFT` (the analysis/synthesis of the recipes),
:func:`log_power` (the encoder's input) and :func:`lips_per_frame` (the
video frame of every STFT frame) live in :mod:`lobes.models.av_features`
and are importable from here too.

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch
from torch import nn

from lobes.models.av_features import (  # noqa: F401 (re-exported: YAMLs)
    EPS,
    SineSTFT,
    lips_per_frame,
    log_power,
)

#: Range of the decoder's log-variance (keeps exp finite).
LOG_VAR_RANGE = (-30.0, 30.0)


class VAEOutput(NamedTuple):
    """What a VAE's ``forward`` returns (all ``[..., dim]``).

    Attributes
    ----------
    variance : torch.Tensor
        Decoder variances from the posterior sample ``z`` ``[..., F]``.
    mu_q, logvar_q : torch.Tensor
        Posterior ``q(z | x[, v])`` ``[..., D]``.
    mu_p, logvar_p : torch.Tensor
        Prior ``p(z[ | v])`` ``[..., D]``.
    z : torch.Tensor
        The posterior sample (or mean) decoded ``[..., D]``.
    prior_variance : torch.Tensor or None
        Decoder variances from a sample of the prior ``[..., F]`` (the
        anti-collapse term of :func:`is_elbo`); ``None`` when not computed.

    Example
    -------
    >>> z = torch.zeros(2, 3)
    >>> VAEOutput(torch.ones(2, 4), z, z, z, z, z).prior_variance is None
    True
    """

    variance: torch.Tensor
    mu_q: torch.Tensor
    logvar_q: torch.Tensor
    mu_p: torch.Tensor
    logvar_p: torch.Tensor
    z: torch.Tensor
    prior_variance: torch.Tensor = None


def _reparameterize(mu, logvar, sample):
    if not sample:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _variance(logits):
    return torch.exp(logits.clamp(*LOG_VAR_RANGE))


def _linear(layer, inputs, frozen):
    """``layer(inputs)``; with ``frozen`` its weights get no gradient (the
    gradient still flows through it to ``inputs``)."""
    if not frozen:
        return layer(inputs)
    bias = None if layer.bias is None else layer.bias.detach()
    return nn.functional.linear(inputs, layer.weight.detach(), bias)


class AudioVAE(nn.Module):
    """A-VAE: encoder ``q(z | x)``, decoder ``sigma^2(z)``, prior N(0, I).

    Arguments
    ---------
    num_freqs : int
        Frequency bins ``F``.
    latent_dim : int
        ``D`` (32 in the paper).
    hidden_dim : int
        Hidden units of the encoder and decoder (128, tanh).

    Example
    -------
    >>> vae = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4)
    >>> out = vae(torch.randn(3, 5, 9))
    >>> out.variance.shape, out.z.shape, bool((out.variance > 0).all())
    (torch.Size([3, 5, 9]), torch.Size([3, 5, 2]), True)
    >>> vae.uses_video
    False
    """

    uses_video = False

    def __init__(self, num_freqs=513, latent_dim=32, hidden_dim=128):
        super().__init__()
        self.num_freqs = int(num_freqs)
        self.latent_dim = int(latent_dim)
        self.encoder_hidden = nn.Linear(num_freqs, hidden_dim)
        self.encoder_mean = nn.Linear(hidden_dim, latent_dim)
        self.encoder_logvar = nn.Linear(hidden_dim, latent_dim)
        self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder_output = nn.Linear(hidden_dim, num_freqs)

    def embed(self, lips):
        """No visual input: ``None``."""
        return None

    def encode(self, features, embedding=None):
        """``q(z | x)``: mean and log-variance ``[..., D]``."""
        hidden = torch.tanh(self.encoder_hidden(features))
        return self.encoder_mean(hidden), self.encoder_logvar(hidden)

    def prior(self, embedding=None, like=None):
        """Standard normal prior, zeros shaped like ``like``."""
        zeros = torch.zeros_like(like)
        return zeros, zeros

    def decode(self, z, embedding=None):
        """``sigma^2(z)``: variances ``[..., F]``."""
        hidden = torch.tanh(self.decoder_hidden(z))
        return _variance(self.decoder_output(hidden))

    def forward(self, features, lips=None, sample=True):
        """Encode, draw ``z`` (or take the mean), decode.

        Arguments
        ---------
        features : torch.Tensor
            Encoder input ``[..., F]``
            (:func:`lobes.models.av_features.log_power`).
        lips : None
            Unused (no video).
        sample : bool
            Draw ``z`` from ``q`` (and a prior sample for
            ``prior_variance``); otherwise use the means.

        Returns
        -------
        VAEOutput
        """
        mu_q, logvar_q = self.encode(features)
        z = _reparameterize(mu_q, logvar_q, sample)
        mu_p, logvar_p = self.prior(like=mu_q)
        z_p = _reparameterize(mu_p, logvar_p, sample)
        return VAEOutput(self.decode(z), mu_q, logvar_q, mu_p, logvar_p, z,
                         self.decode(z_p))  # fmt: skip


class VisualTrunk(nn.Module):
    """Lip ROI -> embedding: ``H*W -> hidden -> output``, ReLU after each.

    Example
    -------
    >>> VisualTrunk(16, 8, 4)(torch.randn(2, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(self, input_dim=1024, hidden_dim=512, output_dim=128):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
            nn.ReLU(),
        )

    def forward(self, lips):
        """``[..., H*W]`` -> ``[..., output_dim]``."""
        return self.layers(lips)


class AVCVAE(nn.Module):
    """AV-VAE: conditional VAE with lips in the prior, encoder and decoder.

    ``p(z | v) = N(mu_p(v), diag exp(logvar_p(v)))``, ``q(z | x, v)``,
    ``sigma^2(z, v)``; each network adds a linear map of the shared visual
    embedding to its own input layer.

    Arguments
    ---------
    num_freqs : int
        Frequency bins ``F``.
    latent_dim : int
        ``D``.
    hidden_dim : int
        Hidden units (tanh) of the prior, encoder and decoder.
    visual_dim : int
        Pixels of a lip ROI ``H * W``.
    trunk_hidden : int
        Hidden units of the visual trunk.
    trunk_dim : int
        Size of the visual embedding.
    audio_freeze_prob : float
        Probability that a training forward pass freezes the audio path
        (see the module docstring; the authors use 0.2); 0: never.

    Example
    -------
    >>> vae = AVCVAE(num_freqs=9, latent_dim=2, hidden_dim=4, visual_dim=6,
    ...              trunk_hidden=5, trunk_dim=3)
    >>> lips = torch.randn(3, 5, 6)
    >>> out = vae(torch.randn(3, 5, 9), lips)
    >>> out.variance.shape, out.mu_p.shape
    (torch.Size([3, 5, 9]), torch.Size([3, 5, 2]))
    >>> emb = vae.embed(lips)
    >>> vae.decode(torch.randn(3, 4, 5, 2), emb[:, None]).shape  # broadcast
    torch.Size([3, 4, 5, 9])
    >>> out = vae(torch.randn(3, 5, 9), lips, freeze_audio=True)
    >>> out.variance.sum().backward()
    >>> grads = vae.encoder_audio.weight.grad, vae.trunk.layers[0].weight.grad
    >>> grads[0] is None, grads[1] is not None  # audio path frozen
    (True, True)
    """

    uses_video = True
    #: Layers of the audio path (encoder and latent input of the decoder).
    AUDIO_PATH = ("encoder_audio", "encoder_mean", "encoder_logvar",
                  "decoder_latent")  # fmt: skip

    def __init__(
        self, num_freqs=513, latent_dim=32, hidden_dim=128, visual_dim=1024,
        trunk_hidden=512, trunk_dim=128, audio_freeze_prob=0.0,
    ):  # fmt: skip
        super().__init__()
        if not 0.0 <= float(audio_freeze_prob) <= 1.0:
            raise ValueError(
                f"audio_freeze_prob={audio_freeze_prob} is not in [0, 1]"
            )
        self.audio_freeze_prob = float(audio_freeze_prob)
        self.num_freqs = int(num_freqs)
        self.latent_dim = int(latent_dim)
        self.trunk = VisualTrunk(visual_dim, trunk_hidden, trunk_dim)
        self.encoder_audio = nn.Linear(num_freqs, hidden_dim)
        self.encoder_video = nn.Linear(trunk_dim, hidden_dim)
        self.encoder_mean = nn.Linear(hidden_dim, latent_dim)
        self.encoder_logvar = nn.Linear(hidden_dim, latent_dim)
        self.prior_hidden = nn.Linear(trunk_dim, hidden_dim)
        self.prior_mean = nn.Linear(hidden_dim, latent_dim)
        self.prior_logvar = nn.Linear(hidden_dim, latent_dim)
        self.decoder_latent = nn.Linear(latent_dim, hidden_dim)
        self.decoder_video = nn.Linear(trunk_dim, hidden_dim)
        self.decoder_output = nn.Linear(hidden_dim, num_freqs)

    def embed(self, lips):
        """Visual embedding ``[..., trunk_dim]`` of ROIs ``[..., H*W]``."""
        return self.trunk(lips)

    def encode(self, features, embedding, frozen=False):
        """``q(z | x, v)``: mean and log-variance (``frozen``: no gradient
        to the audio path's weights)."""
        hidden = torch.tanh(
            _linear(self.encoder_audio, features, frozen)
            + self.encoder_video(embedding)
        )
        return (_linear(self.encoder_mean, hidden, frozen),
                _linear(self.encoder_logvar, hidden, frozen))  # fmt: skip

    def prior(self, embedding, like=None):
        """``p(z | v)``: mean and log-variance."""
        hidden = torch.tanh(self.prior_hidden(embedding))
        return self.prior_mean(hidden), self.prior_logvar(hidden)

    def decode(self, z, embedding, frozen=False):
        """``sigma^2(z, v)``; ``z`` and ``embedding`` broadcast."""
        hidden = torch.tanh(
            _linear(self.decoder_latent, z, frozen)
            + self.decoder_video(embedding)
        )
        return _variance(self.decoder_output(hidden))

    def forward(self, features, lips, sample=True, freeze_audio=None):
        """Embed the lips, encode, draw ``z``, decode; also the prior.

        Arguments
        ---------
        features : torch.Tensor
            Encoder input ``[..., F]``.
        lips : torch.Tensor
            Normalised lip ROIs of the same frames ``[..., H*W]``.
        sample : bool
            Draw ``z`` from ``q`` (and a prior sample for
            ``prior_variance``); otherwise use the means.
        freeze_audio : bool, optional
            Freeze the audio path in this pass; default: in training mode
            with probability ``audio_freeze_prob`` (one draw per call, from
            torch's global generator), never in eval mode.

        Returns
        -------
        VAEOutput
        """
        if freeze_audio is None:
            freeze_audio = (
                self.training and self.audio_freeze_prob > 0
                and float(torch.rand(())) < self.audio_freeze_prob
            )  # fmt: skip
        frozen = bool(freeze_audio)
        embedding = self.embed(lips)
        mu_q, logvar_q = self.encode(features, embedding, frozen)
        z = _reparameterize(mu_q, logvar_q, sample)
        mu_p, logvar_p = self.prior(embedding)
        variance = self.decode(z, embedding, frozen)
        z_p = _reparameterize(mu_p, logvar_p, sample)
        prior_variance = self.decode(z_p, embedding, frozen)
        return VAEOutput(variance, mu_q, logvar_q, mu_p, logvar_p, z,
                         prior_variance)  # fmt: skip


class ELBOTerms(NamedTuple):
    """Negative ELBO per frame (mean over valid frames) and its parts.

    Attributes
    ----------
    loss : torch.Tensor
        What to minimise (see :func:`is_elbo`).
    reconstruction : torch.Tensor
        IS reconstruction from the posterior sample, per frame.
    kl : torch.Tensor
        ``KL(q || p)`` in nat per frame.
    prior_reconstruction : torch.Tensor or None
        IS reconstruction from the prior sample, per frame (``None``
        without ``VAEOutput.prior_variance``).

    Example
    -------
    >>> ELBOTerms(*torch.ones(3)).prior_reconstruction is None
    True
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    prior_reconstruction: torch.Tensor = None


def frame_kl(output):
    """``KL(q(z | x, v) || p(z | v))`` of every frame, summed over ``z``.

    Arguments
    ---------
    output : VAEOutput
        ``mu_q``, ``logvar_q``, ``mu_p``, ``logvar_p`` ``[..., D]``.

    Returns
    -------
    torch.Tensor
        ``[...]`` in nat.

    Example
    -------
    >>> z = torch.zeros(2, 3)
    >>> out = VAEOutput(z, z + 1.0, z, z, z, z)  # means 1 apart, unit vars
    >>> frame_kl(out)
    tensor([1.5000, 1.5000])
    """
    return 0.5 * (
        output.logvar_p
        - output.logvar_q
        + (output.logvar_q.exp() + (output.mu_q - output.mu_p).pow(2))
        / output.logvar_p.exp()
        - 1.0
    ).sum(-1)


def _is_terms(power, variance):
    variance = variance + EPS
    return (torch.log(variance) + power / variance).sum(-1)


def is_elbo(power, output, mask=None, prior_reconstruction_weight=0.0,
            kl_weight=1.0):  # fmt: skip
    """Negative ELBO with the Itakura-Saito reconstruction term.

    ``sum_f [log sigma_f^2 + |s_f|^2 / sigma_f^2]`` (the complex Gaussian's
    negative log-likelihood up to ``F log pi``) plus
    ``KL(N(mu_q, var_q) || N(mu_p, var_p))`` summed over the latent
    dimensions (:func:`frame_kl`), averaged over the valid frames. With a
    ``prior_reconstruction_weight`` ``w > 0`` (the authors' anti-collapse
    term, their ``beta = 1 - w``) the loss is
    ``(1 - w) (recon + kl_weight KL) + w recon_prior``, ``recon_prior``
    the same IS term for the decoder's variance from a sample of the prior
    (``output.prior_variance``): the decoder must also explain the speech
    from ``p(z | v)`` alone, which keeps the prior informative.

    Arguments
    ---------
    power : torch.Tensor
        Clean speech power ``|s|^2`` ``[..., F]``.
    output : VAEOutput
        The VAE's output for those frames.
    mask : torch.Tensor, optional
        Valid frames ``[...]`` (bool or 0/1).
    prior_reconstruction_weight : float
        ``w`` in [0, 1]; 0 (default): the plain ELBO.
    kl_weight : float
        Weight of the KL term (a warm-up); 1 by default.

    Returns
    -------
    ELBOTerms

    Example
    -------
    >>> power = torch.rand(4, 9)
    >>> z = torch.zeros(4, 2)
    >>> perfect = VAEOutput(power, z, z, z, z, z)
    >>> terms = is_elbo(power, perfect)
    >>> round(float(terms.kl), 6), bool(torch.isclose(
    ...     terms.reconstruction, (power.log() + 1).sum(-1).mean()))
    (0.0, True)
    >>> both = perfect._replace(prior_variance=2 * power)
    >>> terms = is_elbo(power, both, prior_reconstruction_weight=0.5)
    >>> bool(torch.isclose(terms.loss, 0.5 * terms.reconstruction
    ...                    + 0.5 * terms.prior_reconstruction))
    True
    """
    weight = float(prior_reconstruction_weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(
            f"prior_reconstruction_weight={weight} is not in [0, 1]"
        )
    if weight > 0 and output.prior_variance is None:
        raise ValueError(
            "prior_reconstruction_weight > 0 needs the model's "
            "prior_variance (VAEOutput from AudioVAE/AVCVAE.forward)"
        )
    recon = _is_terms(power, output.variance)
    kl = frame_kl(output)
    if mask is None:
        mask = torch.ones_like(recon)
    mask = mask.to(recon.dtype)
    count = mask.sum().clamp(min=1.0)
    recon = (recon * mask).sum() / count
    kl = (kl * mask).sum() / count
    prior_recon = None
    if output.prior_variance is not None:
        prior_recon = _is_terms(power, output.prior_variance)
        prior_recon = (prior_recon * mask).sum() / count
    loss = recon + float(kl_weight) * kl
    if weight > 0:
        loss = (1.0 - weight) * loss + weight * prior_recon
    return ELBOTerms(loss, recon, kl, prior_recon)
