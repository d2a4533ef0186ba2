"""The MCEM of :class:`lobes.models.mcem.MCEM` written frame by frame.

:func:`mcem_reference` is a straightforward transcription of the batched
algorithm, for the tests and the benchmark: with the same random draws the
two agree to rounding.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import torch

from lobes.models.av_features import EPS
from lobes.models.mcem_common import (
    MCEMResult,
    _Draws,
    _init_noise,
    _prepare,
    _ratio,
)


@torch.no_grad()
def mcem_reference(mcem, model, mixture, num_speakers, lips=None,
                   frame_mask=None, generator=None):  # fmt: skip
    """The algorithm of :class:`lobes.models.mcem.MCEM`, one frame at a time.

    Without the fallback model and the run-away stop (``max_noise_growth``
    must be ``None``). A straightforward transcription: the decoder runs on
    one frame's latent
    at a time, acceptance, M-step sums and Wiener masks are computed frame
    by frame in Python loops. With a generator in the same state it draws
    the same random numbers as :class:`lobes.models.mcem.MCEM`; the
    benchmark and the tests compare the two.

    Arguments
    ---------
    mcem : lobes.models.mcem.MCEM
        Its settings are used.
    model, mixture, num_speakers, lips, frame_mask, generator
        As :meth:`lobes.models.mcem.MCEM.__call__`.

    Returns
    -------
    MCEMResult

    Example
    -------
    >>> from lobes.models.av_vae import AudioVAE
    >>> from lobes.models.mcem import MCEM
    >>> vae = AudioVAE(num_freqs=5, latent_dim=2, hidden_dim=3).double()
    >>> mix = torch.randn(2, 5, 4, dtype=torch.cdouble)
    >>> mcem = MCEM(num_iterations=2, num_mh_steps=3, burn_in=1,
    ...             noise_rank=2)
    >>> fast = mcem(vae, mix, 2, generator=torch.Generator().manual_seed(0))
    >>> slow = mcem_reference(mcem, vae, mix, 2,
    ...                       generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(fast.sources, slow.sources))
    True
    """
    if mcem.max_noise_growth is not None:
        raise ValueError(
            "mcem_reference has no run-away stop: set max_noise_growth=None"
        )
    power, mask, embedding, z0, mu_p, logvar_p = _prepare(
        model, mixture, num_speakers, lips, frame_mask
    )
    batch, frames, freqs = power.shape
    real = power.dtype
    draws = _Draws(generator, power.device, real)
    w, h = _init_noise(draws, power, mask, mcem.noise_rank, mcem.noise_init)
    chains = mcem.num_chains
    z = z0[:, :, None].expand(-1, -1, chains, -1, -1).clone()
    sigma = torch.zeros(batch, num_speakers, chains, frames, freqs, dtype=real)
    for b in range(batch):
        for j in range(num_speakers):
            for s in range(chains):
                for n in range(frames):
                    emb = None if embedding is None else embedding[b, j, n]
                    sigma[b, j, s, n] = model.decode(z[b, j, s, n], emb)
    gain = torch.ones(batch, num_speakers, frames, dtype=real)
    if mcem.gain_init == "level":  # each speaker at the mixture's power
        for b in range(batch):
            level = sum(float(power[b, n].sum()) for n in range(frames)
                        if mask[b, n])  # fmt: skip
            for j in range(num_speakers):
                own = sum(float(sigma[b, j, s, n].sum())
                          for s in range(chains) for n in range(frames)
                          if mask[b, n]) / chains  # fmt: skip
                gain[b, j] = level / max(num_speakers * own, 1e-12)
    prior_var = logvar_p.exp()
    accepted = torch.zeros(batch, num_speakers, dtype=real)
    costs, costs_before = [], []
    done = torch.full((batch,), mcem.num_iterations, dtype=torch.long)
    scale = math.sqrt(mcem.proposal_variance)
    proposals = 0

    def e_step():
        kept = []
        noise = torch.einsum("bfk,bkn->bnf", w, h)
        for step in range(mcem.num_mh_steps):
            for j in range(num_speakers):
                eps = draws.normal((batch, chains, frames, z.shape[-1]))
                log_u = torch.log(draws.uniform((batch, chains, frames)))
                for b in range(batch):
                    for s in range(chains):
                        for n in range(frames):
                            emb = (None if embedding is None
                                   else embedding[b, j, n])  # fmt: skip
                            proposal = z[b, j, s, n] + scale * eps[b, s, n]
                            new_sigma = model.decode(proposal, emb)
                            rest = noise[b, n] + EPS
                            for k in range(num_speakers):
                                if k != j:
                                    rest = rest + gain[b, k, n] * sigma[
                                        b, k, s, n]
                            current = rest + gain[b, j, n] * sigma[b, j, s, n]
                            new = rest + gain[b, j, n] * new_sigma
                            ratio = float(
                                (torch.log(current) - torch.log(new)
                                 + power[b, n] * (1 / current - 1 / new)).sum()
                            )  # fmt: skip
                            mean, var = mu_p[b, j, n], prior_var[b, j, n]
                            ratio += float(
                                0.5 * (((z[b, j, s, n] - mean) ** 2
                                        - (proposal - mean) ** 2) / var).sum()
                            )  # fmt: skip
                            if float(log_u[b, s, n]) < ratio:
                                z[b, j, s, n] = proposal
                                sigma[b, j, s, n] = new_sigma
                                accepted[b, j] += int(mask[b, n])
            if step >= mcem.burn_in:
                kept.append(sigma.clone())
        stacked = torch.stack(kept, dim=3)
        return stacked.reshape(batch, num_speakers, -1, frames, freqs)

    def totals(samples):
        noise = torch.einsum("bfk,bkn->bnf", w, h)
        total = torch.zeros(batch, samples.shape[2], frames, freqs, dtype=real)
        for b in range(batch):
            for n in range(frames):
                value = noise[b, n] + EPS
                for j in range(num_speakers):
                    value = value + gain[b, j, n] * samples[b, j, :, n]
                total[b, :, n] = value
        return noise, total

    def cost(total):
        values = torch.zeros(batch, dtype=real)
        for b in range(batch):
            acc, count = 0.0, 0
            for n in range(frames):
                if mask[b, n]:
                    acc = acc + (torch.log(total[b, :, n])
                                 + power[b, n] / total[b, :, n]).sum(-1)
                    count += freqs
            values[b] = (acc / max(count, 1)).mean()
        return values

    def frame_weights(total):
        num = torch.zeros(batch, frames, freqs, dtype=real)
        den = torch.zeros(batch, frames, freqs, dtype=real)
        for b in range(batch):
            for n in range(frames):
                if mask[b, n]:
                    inverse = 1.0 / total[b, :, n]
                    num[b, n] = power[b, n] * inverse.pow(2).mean(0)
                    den[b, n] = inverse.mean(0)
        return num, den

    for iteration in range(mcem.num_iterations):
        samples = e_step()
        proposals += mcem.num_mh_steps
        _, total = totals(samples)
        costs_before.append(cost(total))
        num, den = frame_weights(total)
        w = w * _ratio(torch.einsum("bnf,bkn->bfk", num, h),
                       torch.einsum("bnf,bkn->bfk", den, h))  # fmt: skip
        _, total = totals(samples)
        num, den = frame_weights(total)
        h = h * _ratio(torch.einsum("bnf,bfk->bkn", num, w),
                       torch.einsum("bnf,bfk->bkn", den, w))  # fmt: skip
        _, total = totals(samples)
        new_gain = gain.clone()
        for b in range(batch):
            for j in range(num_speakers):
                for n in range(frames):
                    if not mask[b, n]:
                        continue
                    inverse = 1.0 / total[b, :, n]
                    top = (samples[b, j, :, n] * power[b, n] * inverse**2)
                    bottom = samples[b, j, :, n] * inverse
                    new_gain[b, j, n] = gain[b, j, n] * _ratio(
                        top.mean(0).sum(), bottom.mean(0).sum()
                    )
        gain = new_gain
        _, total = totals(samples)
        costs.append(cost(total))
        if iteration > 0:
            change = (costs[-2] - costs[-1]).abs()
            change = change / costs[-2].abs().clamp(min=1e-12)
            newly = (change < mcem.tolerance) & (done == mcem.num_iterations)
            done[newly] = iteration + 1
            if bool((done < mcem.num_iterations).all()):
                break
    samples = e_step()
    proposals += mcem.num_mh_steps
    noise, total = totals(samples)
    sources = torch.zeros(batch, num_speakers, freqs, frames,
                          dtype=mixture.dtype)  # fmt: skip
    noise_stft = torch.zeros(batch, freqs, frames, dtype=mixture.dtype)
    for b in range(batch):
        for n in range(frames):
            for j in range(num_speakers):
                speech = gain[b, j, n] * samples[b, j, :, n]
                masks = (speech / total[b, :, n]).mean(0)
                sources[b, j, :, n] = masks * mixture[b, :, n]
            noise_mask = (noise[b, n] / total[b, :, n]).mean(0)
            noise_stft[b, :, n] = noise_mask * mixture[b, :, n]
    valid = mask.sum(1, keepdim=True).clamp(min=1).to(real)
    return MCEMResult(
        sources=sources,
        noise=noise_stft,
        costs=torch.stack(costs),
        costs_before=torch.stack(costs_before),
        acceptance=accepted / (proposals * chains * valid),
        iterations=done,
    )
