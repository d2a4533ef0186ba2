"""Monte Carlo EM separation of J speakers and noise with a (AV-)VAE prior.

Mixture model (Nguyen et al., MLSP 2021, after Leglaive et al., MLSP
2018), for STFT bin ``(f, n)`` of a mixture ``x``::

    x_fn ~ N_c(0, V_fn),   V_fn = sum_j g_jn sigma_f^2(z_jn, v_jn) + (WH)_fn

with ``sigma^2`` the trained decoder, ``z_jn`` the latent of speaker ``j``
at frame ``n`` (prior ``p(z | v_jn)``, or N(0, I) without video), per-frame
gains ``g`` and a rank-``K`` NMF noise variance ``WH``.

- E-step: random-walk Metropolis-Hastings on each speaker's latents in
  turn (proposal ``z' = z + sqrt(proposal_variance) * eps``; accept per
  frame with the likelihood ratio times the prior ratio), ``num_mh_steps``
  steps of which the first ``burn_in`` are discarded;
- M-step: multiplicative updates of ``W``, ``H`` and ``g`` with exponent
  1/2 (majorisation-minimisation of the Itakura-Saito cost averaged over
  the samples: each update never increases it for the kept samples);
- stop after ``num_iterations`` or when every mixture's cost changes by
  less than ``tolerance`` (relative); a last E-step gives the samples of
  the Wiener filters ``s_j = mean_r [g_j sigma_{j,r}^2 / V_r] x``.

Initialisation: ``z`` from the encoder's mean given the mixture (and each
speaker's lips), ``W`` and ``H`` uniform at random then scaled to
``noise_init`` times the mixture's mean power, ``g = 1``.

**Fallback to an audio-only model** (``fallback=`` an A-VAE; after
Sadeghi and Alameda-Pineda, "Robust unsupervised audio-visual speech
enhancement using a mixture of variational autoencoders", ICASSP 2020):
each speaker's frame comes from the audio-visual model or from the
audio-only one, a per-frame switch ``a_jn`` with prior
``P(a = AV) = switch_prior``; each model has its own gains, which start
at the scale that matches its initial variances to the mixture's mean
power (so that neither is preferred for its scale alone) and are fitted
to all of that model's samples as if it produced the frames. The posterior
is approximated by ``q(a) q(z_AV) q(z_A)``: each model's MH chains sample
its own posterior as if it produced the frame (the other speakers counted
with their switch-weighted variances), and after each E-step
``logit q(a_jn = AV) = logit switch_prior + E[log p(x_n | z_AV)]
- E[log p(x_n | z_A)]``, the expectations over each model's kept samples
(a plug-in comparison of how well each model explains the frame; the
first switch comes from the encoders' initial latents). The samples the
M-step (``W``, ``H``) and the Wiener filters average draw the switch from
``q(a)``: frames where the lips do not explain the mixture are modelled
by the audio-only VAE.
``MCEMResult.switch`` holds ``q(a = AV)`` per speaker and frame.
(Likelihood tempering by ``q(a)``, the exact mean-field update, was
tried and dropped: with two equally good models it halves the
likelihood and cost about 1 dB on the tests' toy models.)

**Noise run-away stop** (``max_noise_growth``): after each M-step the ratio
of the noise model's energy to the speech models' (valid bins, speech
averaged over the samples) is compared with the first iteration's; a
mixture whose ratio grew more than ``max_noise_growth`` times (the NMF
noise swallowing the speech) keeps the parameters of the iteration before
and takes no more updates (``MCEMResult.stopped``, its iteration in
``iterations``).

:class:`MCEM` is batched tensor code over ``(mixtures, speakers, samples,
frames, freqs)``: the only Python loops are over EM iterations, MH steps
and speakers (each speaker's update depends on the others'); several
mixtures of different lengths run at once with a frame mask; it runs on the
device of its inputs. :func:`lobes.models.mcem_reference.mcem_reference`
is the same algorithm written frame by frame, for tests and the benchmark:
with the same random draws the two agree to rounding.

What it shares with the reference (the result, the draws, the
initialisation) is in :mod:`lobes.models.mcem_common`.

Authors
 * noise-robust-sb contributors 2025
"""

import math
from typing import NamedTuple

import torch

from lobes.models.av_features import EPS
from lobes.models.mcem_common import (  # noqa: F401 (_ratio: lobes.models.nmf)
    MCEMResult,
    _Draws,
    _init_noise,
    _prepare,
    _ratio,
)


class _Chains:
    """One speech model's MH state: ``z [B, J, S, N, D]``, variances
    ``sigma [B, J, S, N, F]``, embedding and prior per speaker."""

    def __init__(self, model, z0, embedding, mu_p, logvar_p, chains):
        self.model = model
        self.z = z0[:, :, None].expand(-1, -1, chains, -1, -1).contiguous()
        self.emb = None if embedding is None else embedding[:, :, None]
        self.sigma = model.decode(self.z, self.emb)
        self.prior_mean = mu_p[:, :, None]
        self.prior_var = logvar_p.exp()[:, :, None]


def _cost(power, variance, mask):
    """Mean over valid bins and samples of ``log V + P / V`` ``[B]``.

    ``variance`` is ``[B, R, N, F]``.
    """
    terms = torch.log(variance) + power[:, None] / variance
    valid = mask[:, None, :, None].to(terms.dtype)
    count = (valid.sum((2, 3)) * terms.shape[-1]).clamp(min=1)
    return ((terms * valid).sum((2, 3)) / count).mean(1)


#: Initial gains of the MCEM (:class:`MCEM` ``gain_init``).
GAIN_INITS = ("unit", "level")


class MCEM:
    """Batched Monte Carlo EM (see the module docstring).

    Arguments
    ---------
    num_iterations : int
        Largest number of EM iterations (100 in the paper).
    num_mh_steps : int
        MH steps per E-step (40).
    burn_in : int
        Discarded MH steps (30): ``num_mh_steps - burn_in`` samples per
        chain are kept.
    proposal_variance : float
        Random-walk proposal variance (0.01).
    noise_rank : int
        NMF rank ``K`` of the noise (10).
    tolerance : float
        Relative cost change that ends the iterations (1e-5).
    num_chains : int
        Independent MH chains per speaker (samples are pooled).
    noise_init : float
        Initial noise variance as a share of the mixture's mean power.
    switch_prior : float
        With a fallback model, the prior probability that a frame comes
        from the audio-visual model.
    max_noise_growth : float, optional
        Stop a mixture whose noise-to-speech energy ratio grew more than
        this many times over the first iteration's (``None``: never).
    gain_init : str
        Initial per-frame gains ``g``: ``"unit"`` (the papers' ``g = 1``)
        or ``"level"`` (each model's gain set so that its speakers' mean
        variance matches the mixture's mean power: no model, and no run,
        starts off for its decoder's scale alone). Applies to the main
        model and to the fallback alike.

    Example
    -------
    >>> from lobes.models.av_vae import AudioVAE
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> vae = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4).eval()
    >>> mix = torch.randn(3, 9, 7, dtype=torch.cfloat)
    >>> mcem = MCEM(num_iterations=3, num_mh_steps=4, burn_in=2,
    ...             noise_rank=2)
    >>> result = mcem(vae, mix, num_speakers=2,
    ...               generator=torch.Generator().manual_seed(1))
    >>> result.sources.shape, result.noise.shape, result.costs.shape
    (torch.Size([3, 2, 9, 7]), torch.Size([3, 9, 7]), torch.Size([3, 3]))
    >>> rebuilt = result.sources.sum(1) + result.noise  # Wiener: sums to x
    >>> bool(torch.allclose(rebuilt, mix, atol=1e-4))
    True
    >>> with_fallback = mcem(vae, mix, 2, fallback=AudioVAE(9, 2, 4).eval(),
    ...                      generator=torch.Generator().manual_seed(1))
    >>> with_fallback.switch.shape
    torch.Size([3, 2, 7])
    """

    def __init__(
        self, num_iterations=100, num_mh_steps=40, burn_in=30,
        proposal_variance=0.01, noise_rank=10, tolerance=1e-5, num_chains=1,
        noise_init=0.1, switch_prior=0.5, max_noise_growth=None,
        gain_init="unit",
    ):  # fmt: skip
        if gain_init not in GAIN_INITS:
            raise ValueError(
                f"gain_init={gain_init!r} is not one of {', '.join(GAIN_INITS)}"
            )
        self.gain_init = gain_init
        if not 0 <= burn_in < num_mh_steps:
            raise ValueError("need 0 <= burn_in < num_mh_steps")
        if not 0.0 < float(switch_prior) < 1.0:
            raise ValueError(f"switch_prior={switch_prior} is not in (0, 1)")
        if max_noise_growth is not None and float(max_noise_growth) <= 1.0:
            raise ValueError(
                f"max_noise_growth={max_noise_growth} must be above 1"
            )
        self.switch_prior = float(switch_prior)
        self.max_noise_growth = (
            None if max_noise_growth is None else float(max_noise_growth)
        )
        self.num_iterations = int(num_iterations)
        self.num_mh_steps = int(num_mh_steps)
        self.burn_in = int(burn_in)
        self.proposal_variance = float(proposal_variance)
        self.noise_rank = int(noise_rank)
        self.tolerance = float(tolerance)
        self.num_chains = int(num_chains)
        self.noise_init = float(noise_init)

    @torch.no_grad()
    def __call__(self, model, mixture, num_speakers, lips=None,
                 frame_mask=None, generator=None, fallback=None):  # fmt: skip
        """Separate a batch of mixtures.

        Arguments
        ---------
        model : AudioVAE or AVCVAE
            The trained model (``embed``, ``encode``, ``prior``,
            ``decode``).
        mixture : torch.Tensor
            Complex STFTs ``[B, F, N]``.
        num_speakers : int
            ``J``.
        lips : torch.Tensor, optional
            Normalised lip ROIs per STFT frame ``[B, J, N, H*W]``
            (:func:`lobes.models.av_features.lips_per_frame`); needed by an
            audio-visual model.
        frame_mask : torch.Tensor, optional
            Valid frames ``[B, N]`` (padded mixtures).
        generator : torch.Generator, optional
            Source of every random draw (on the mixture's device).
        fallback : AudioVAE, optional
            An audio-only model that takes the frames where ``model``
            (with its lips) does not explain the mixture (the switch of
            the module docstring).

        Returns
        -------
        MCEMResult
        """
        power, mask, embedding, z0, mu_p, logvar_p = _prepare(
            model, mixture, num_speakers, lips, frame_mask
        )
        real = power.dtype
        batch, frames = power.shape[:2]
        draws = _Draws(generator, power.device, real)
        w, h = _init_noise(draws, power, mask, self.noise_rank, self.noise_init)
        chains = self.num_chains
        states = [_Chains(model, z0, embedding, mu_p, logvar_p, chains)]
        switch = None
        if fallback is not None:
            if getattr(fallback, "uses_video", False):
                raise ValueError("the fallback must be an audio-only model")
            _, _, _, z1, mu1, logvar1 = _prepare(
                fallback, mixture, num_speakers, None, frame_mask
            )
            states.append(_Chains(fallback, z1, None, mu1, logvar1, chains))
            switch = torch.full((batch, num_speakers, frames),
                                self.switch_prior, dtype=real,
                                device=power.device)  # fmt: skip
        # one gain per model [M, B, J, N] (the fallback has its own)
        gain = torch.ones(len(states), batch, num_speakers, frames,
                          dtype=real, device=power.device)  # fmt: skip
        if self.gain_init == "level":
            # each model starts at the mixture's scale (not preferred for
            # its decoder's scale alone)
            valid = mask[:, None, None, :, None].to(real)
            level = (power[:, None, None] * valid).sum((2, 3, 4))
            for m, state in enumerate(states):
                own = (state.sigma * valid).sum((2, 3, 4)) / chains
                gain[m] = (level / (num_speakers * own).clamp(min=EPS))[
                    ..., None].expand(-1, -1, frames)  # fmt: skip
        if switch is not None:  # the first switch from the encoders' latents
            noise = torch.einsum("bfk,bkn->bnf", w, h)[:, None]
            switch = self._update_switch(
                power, noise, gain[:, :, :, None, :, None],
                [[state.sigma for state in states]], switch,
            )  # fmt: skip
        accepted = torch.zeros(batch, num_speakers, dtype=real,
                               device=power.device)  # fmt: skip
        proposals = 0
        costs, costs_before, ratios = [], [], []
        done = torch.full((batch,), self.num_iterations, dtype=torch.long,
                          device=power.device)  # fmt: skip
        stopped = torch.zeros(batch, dtype=torch.bool, device=power.device)
        first_ratio = None
        for iteration in range(self.num_iterations):
            samples, pick, switch, acc = self._e_step(
                draws, power, mask, states, gain, w, h, switch
            )
            accepted += acc
            proposals += self.num_mh_steps
            old = (w, h, gain)
            w, h, gain, before, after = _m_step(power, samples, gain, w, h,
                                                mask, pick)  # fmt: skip
            ratio = _noise_ratio(samples, gain, w, h, mask, pick)
            if self.max_noise_growth is not None:
                if first_ratio is None:
                    first_ratio = ratio
                runaway = (ratio > self.max_noise_growth * first_ratio)
                newly = runaway & ~stopped
                keep = stopped | newly  # these keep their old parameters
                w = torch.where(keep[:, None, None], old[0], w)
                h = torch.where(keep[:, None, None], old[1], h)
                gain = torch.where(keep[None, :, None, None], old[2], gain)
                done = torch.where(newly & (done == self.num_iterations),
                                   torch.full_like(done, iteration), done)
                stopped = keep
                if bool(keep.any()):  # the ratio of the kept parameters
                    ratio = _noise_ratio(samples, gain, w, h, mask, pick)
            costs_before.append(before)
            costs.append(after)
            ratios.append(ratio)
            if iteration > 0:
                change = (costs[-2] - after).abs()
                change = change / costs[-2].abs().clamp(min=1e-12)
                running = done == self.num_iterations
                newly = (change < self.tolerance) & running
                done = torch.where(newly, torch.full_like(done, iteration + 1),
                                   done)  # fmt: skip
                if bool((done < self.num_iterations).all()):
                    break
        samples, pick, switch, acc = self._e_step(draws, power, mask, states,
                                                  gain, w, h, switch)
        accepted += acc
        proposals += self.num_mh_steps
        sources, noise = _wiener(mixture, samples, gain, w, h, pick)
        valid = mask.sum(1, keepdim=True).clamp(min=1).to(real)
        return MCEMResult(
            sources=sources,
            noise=noise,
            costs=torch.stack(costs),
            costs_before=torch.stack(costs_before),
            acceptance=accepted / (proposals * chains * valid * len(states)),
            iterations=done,
            noise_ratio=torch.stack(ratios),
            stopped=stopped,
            switch=switch,
        )

    def _e_step(self, draws, power, mask, states, gain, w, h, switch):
        """MH over every speaker (and model) in turn.

        Returns the samples the M-step averages ``[B, J, R, N, F]`` (with a
        fallback: each drawn from the model the switch draws), which model
        each comes from (a :class:`_Pick`; ``None`` without a fallback),
        the updated switch ``q(a = AV)`` (``None``
        without a fallback) and the accepted counts per mixture and
        speaker (summed over chains, frames and models). Updates the
        chains in ``states`` in place.
        """
        num_speakers = gain.shape[2]
        noise = torch.einsum("bfk,bkn->bnf", w, h)[:, None]  # [B, 1, N, F]
        scale = math.sqrt(self.proposal_variance)
        kept = []
        accepted = torch.zeros(gain.shape[1], num_speakers, dtype=power.dtype,
                               device=power.device)  # fmt: skip
        target = power[:, None]  # [B, 1, N, F]
        gains = gain[:, :, :, None, :, None]  # [M, B, J, 1, N, 1]
        if switch is None:
            weights = [None]
        else:
            weights = [switch[:, :, None, :], 1.0 - switch[:, :, None, :]]

        def mixed():
            """Each speaker's scaled variance as the others see it
            ``[B, J, S, N, F]``."""
            if switch is None:
                return gains[0] * states[0].sigma
            return (weights[0][..., None] * gains[0] * states[0].sigma
                    + weights[1][..., None] * gains[1] * states[1].sigma)

        for step in range(self.num_mh_steps):
            for j in range(num_speakers):
                others = [k for k in range(num_speakers) if k != j]
                for state, g in zip(states, gains):
                    eps = draws.normal(state.z[:, j].shape)
                    log_u = torch.log(draws.uniform(state.z[:, j].shape[:-1]))
                    proposal = state.z[:, j] + scale * eps
                    emb_j = None if state.emb is None else state.emb[:, j]
                    sigma_new = state.model.decode(proposal, emb_j)
                    rest = noise + EPS
                    if others:
                        rest = rest + mixed()[:, others].sum(1)
                    current = rest + g[:, j] * state.sigma[:, j]
                    ratio = current / (rest + g[:, j] * sigma_new)
                    # log(V / V') + P (1 / V - 1 / V'), with one log
                    log_ratio = (
                        torch.log(ratio) + target * (1.0 - ratio) / current
                    ).sum(-1)
                    log_ratio = log_ratio + 0.5 * (
                        (state.z[:, j] - state.prior_mean[:, j]).pow(2)
                        - (proposal - state.prior_mean[:, j]).pow(2)
                    ).div(state.prior_var[:, j]).sum(-1)
                    accept = log_u < log_ratio  # [B, S, N]
                    state.z[:, j] = torch.where(accept[..., None], proposal,
                                                state.z[:, j])  # fmt: skip
                    state.sigma[:, j] = torch.where(
                        accept[..., None], sigma_new, state.sigma[:, j]
                    )
                    counted = accept & mask[:, None]
                    accepted[:, j] += counted.to(power.dtype).sum((1, 2))
            if step >= self.burn_in:
                kept.append([state.sigma.clone() for state in states])
        if switch is None:
            samples = torch.stack([k[0] for k in kept], dim=3)
            shape = samples.shape  # [B, J, S, K, N, F]
            return (samples.reshape(shape[0], shape[1], -1, *shape[-2:]),
                    None, None, accepted)  # fmt: skip
        switch = self._update_switch(power, noise, gains, kept, switch)
        main = torch.stack([k[0] for k in kept], dim=3)
        other = torch.stack([k[1] for k in kept], dim=3)
        shape = main.shape
        main = main.reshape(shape[0], shape[1], -1, *shape[-2:])
        other = other.reshape(shape[0], shape[1], -1, *shape[-2:])
        chosen = draws.uniform(main.shape[:-1]) < switch[:, :, None]
        samples = torch.where(chosen[..., None], main, other)
        return samples, _Pick((~chosen).long(), (main, other)), switch, accepted

    def _update_switch(self, power, noise, gains, kept, switch):
        """``q(a = AV)`` from the models' expected log-likelihoods."""
        num_speakers = switch.shape[1]
        main = torch.stack([k[0] for k in kept], dim=2)  # [B,J,S,K,N,F]
        other = torch.stack([k[1] for k in kept], dim=2)
        main = gains[0] * main.flatten(2, 3)  # scaled variances
        other = gains[1] * other.flatten(2, 3)
        weight = switch[:, :, None, :, None]
        mixed = weight * main + (1.0 - weight) * other
        target = power[:, None]
        logit = math.log(self.switch_prior / (1.0 - self.switch_prior))
        updated = torch.empty_like(switch)
        for j in range(num_speakers):
            rest = noise + EPS
            others = [k for k in range(num_speakers) if k != j]
            if others:
                rest = rest + mixed[:, others].sum(1)
            difference = (_loglik(target, rest + main[:, j])
                          - _loglik(target, rest + other[:, j]))
            updated[:, j] = torch.sigmoid(logit + difference)
        return updated


def _loglik(power, total):
    """``-sum_f (log V + P / V)`` averaged over the samples ``[B, N]``."""
    return -(torch.log(total) + power / total).sum(-1).mean(1)


def _noise_ratio(samples, gain, w, h, mask, pick=None):
    """Noise-to-speech energy ratio over the valid bins ``[B]``."""
    speech, noise, _ = _variances(samples, gain, w, h, pick)
    valid = mask.to(noise.dtype)
    noise_energy = (noise.sum(-1) * valid).sum(1)
    speech_energy = (speech.mean(2).sum((1, 3)) * valid).sum(1)
    return noise_energy / speech_energy.clamp(min=EPS)


class _Pick(NamedTuple):
    """With a fallback: the model of each sample ``index [B, J, R, N]``
    and every model's own samples (``[B, J, R, N, F]`` each)."""

    index: torch.Tensor
    per_model: tuple


def _sample_gain(gain, pick):
    """The gain of every sample ``[B, J, R or 1, N, 1]`` from the gains of
    the models ``[M, B, J, N]`` and the model of each sample."""
    if pick is None:
        return gain[0][:, :, None, :, None]
    index = pick.index
    expanded = gain[:, :, :, None].expand(-1, -1, -1, index.shape[2], -1)
    return torch.gather(expanded, 0, index[None])[0][..., None]


def _variances(samples, gain, w, h, pick=None):
    """Speech ``[B, J, R, N, F]``, noise ``[B, N, F]``, total ``[B,R,N,F]``."""
    speech = _sample_gain(gain, pick) * samples
    noise = torch.einsum("bfk,bkn->bnf", w, h)
    total = speech.sum(1) + noise[:, None] + EPS
    return speech, noise, total


def _m_step(power, samples, gain, w, h, mask, pick=None):
    """Multiplicative updates of W, H, g; the cost before and after.

    With ``pick`` (a :class:`_Pick`), ``W`` and ``H`` see the picked
    samples, and each model's gains are fitted to all of its own samples
    as if that model produced its speaker's frames (the rest of the
    mixture as picked), so the model the switch does not pick keeps a
    gain at the mixture's scale.
    """
    valid = mask[:, :, None].to(power.dtype)  # [B, N, 1]
    _, _, total = _variances(samples, gain, w, h, pick)
    before = _cost(power, total, mask)

    def weights(total):
        inverse = total.reciprocal()
        numerator = (power * inverse.pow(2).mean(1)) * valid  # [B, N, F]
        denominator = inverse.mean(1) * valid
        return numerator, denominator

    numerator, denominator = weights(total)
    w = w * _ratio(
        torch.einsum("bnf,bkn->bfk", numerator, h),
        torch.einsum("bnf,bkn->bfk", denominator, h),
    )
    _, _, total = _variances(samples, gain, w, h, pick)
    numerator, denominator = weights(total)
    h = h * _ratio(
        torch.einsum("bnf,bfk->bkn", numerator, w),
        torch.einsum("bnf,bfk->bkn", denominator, w),
    )
    speech, _, total = _variances(samples, gain, w, h, pick)
    frames = valid[..., 0][:, None]
    if pick is None:
        inverse = total.reciprocal()[:, None]  # [B, 1, R, N, F]
        numerator = (samples * power[:, None, None] * inverse.pow(2)).mean(2)
        denominator = (samples * inverse).mean(2)
        gain = gain * _ratio(
            numerator.sum(-1) * frames, denominator.sum(-1) * frames
        )[None]  # fmt: skip
    else:
        updated = []
        rest = total[:, None] - speech  # [B, J, R, N, F] all but speaker j
        for model, own in enumerate(pick.per_model):
            inverse = (rest + gain[model][:, :, None, :, None] * own)
            inverse = inverse.reciprocal()
            numerator = (own * power[:, None, None] * inverse.pow(2)).mean(2)
            denominator = (own * inverse).mean(2)
            updated.append(gain[model] * _ratio(
                numerator.sum(-1) * frames, denominator.sum(-1) * frames
            ))  # fmt: skip
        gain = torch.stack(updated)
    _, _, total = _variances(samples, gain, w, h, pick)
    after = _cost(power, total, mask)
    return w, h, gain, before, after


def _wiener(mixture, samples, gain, w, h, pick=None):
    """Posterior-mean estimates averaged over the samples."""
    speech, noise, total = _variances(samples, gain, w, h, pick)
    masks = (speech / total[:, None]).mean(2)  # [B, J, N, F]
    noise_mask = (noise[:, None] / total).mean(1)  # [B, N, F]
    sources = masks.transpose(-1, -2) * mixture[:, None]
    return sources, noise_mask.transpose(-1, -2) * mixture

