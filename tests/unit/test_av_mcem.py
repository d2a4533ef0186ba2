"""Monte Carlo EM separation, its frame-by-frame reference, and NMF."""

import math

import pytest
import torch

from lobes.models.av_vae import AVCVAE, AudioVAE
from lobes.models.mcem import MCEM
from lobes.models.mcem_reference import mcem_reference
from lobes.models.nmf import NMFSeparator, learn_dictionary


class ToyModel(torch.nn.Module):
    """A known generative model: ``sigma^2(z, v) = (v B) exp(A z)``.

    The "lips" ``v`` are a one-hot speaker code selecting a spectral shape
    ``B_j``; the latent rescales spectral regions through ``A``. The encoder
    returns zeros and the prior is N(0, I).
    """

    uses_video = True

    def __init__(self, bases, mixing):
        super().__init__()
        self.bases, self.mixing = bases, mixing

    def embed(self, lips):
        return lips

    def encode(self, features, embedding):
        shape = (*features.shape[:-1], self.mixing.shape[1])
        return torch.zeros(shape, dtype=features.dtype), None

    def prior(self, embedding, like=None):
        shape = (*embedding.shape[:-1], self.mixing.shape[1])
        zeros = torch.zeros(shape, dtype=embedding.dtype)
        return zeros, zeros

    def decode(self, z, embedding):
        return (embedding @ self.bases) * torch.exp(z @ self.mixing.t())


def _complex_normal(variance, generator):
    real = torch.randn(variance.shape, generator=generator, dtype=torch.float64)
    imag = torch.randn(variance.shape, generator=generator, dtype=torch.float64)
    return (real + 1j * imag) * (variance / 2).sqrt()


def toy(seed=0, batch=2, speakers=2, freqs=24, frames=60, latent=3):
    """Mixtures drawn from the toy model, with their true sources."""
    gen = torch.Generator().manual_seed(seed)
    bases = torch.rand(speakers, freqs, generator=gen, dtype=torch.float64)
    bases = bases**4 * 10 + 0.01
    mixing = torch.randn(freqs, latent, generator=gen, dtype=torch.float64)
    model = ToyModel(bases, 0.7 * mixing)
    z = torch.randn(batch, speakers, frames, latent, generator=gen,
                    dtype=torch.float64)  # fmt: skip
    lips = torch.eye(speakers, dtype=torch.float64)[None, :, None]
    lips = lips.expand(batch, speakers, frames, speakers)
    sources = _complex_normal(model.decode(z, lips), gen).transpose(-1, -2)
    noise = _complex_normal(
        torch.full((batch, freqs, frames), 0.05, dtype=torch.float64), gen
    )
    return model, sources.sum(1) + noise, lips, sources


def _snr(estimates, sources):
    error = (estimates - sources).abs().pow(2).sum((-1, -2))
    return 10 * torch.log10(sources.abs().pow(2).sum((-1, -2)) / error)


def test_mcem_cost_never_increases_beyond_tolerance():
    model, mixture, lips, sources = toy()
    mcem = MCEM(num_iterations=25, num_mh_steps=20, burn_in=10,
                noise_rank=2, tolerance=0.0)  # fmt: skip
    result = mcem(model, mixture, 2, lips=lips,
                  generator=torch.Generator().manual_seed(1))  # fmt: skip
    # the M-step is a majorisation-minimisation: never up for its samples
    assert bool((result.costs <= result.costs_before + 1e-9).all())
    # from one iteration to the next only the Monte Carlo noise can raise it
    rises = (result.costs[1:] - result.costs[:-1]) / result.costs[:-1].abs()
    assert float(rises.max()) < 0.01
    assert bool((result.costs[-1] < result.costs[0] - 0.2).all())
    # and it separates the known sources
    gain = _snr(result.sources, sources) - _snr(
        mixture[:, None].expand_as(sources), sources
    )
    assert float(gain.min()) > 4.0, gain
    assert bool((result.acceptance > 0.2).all())


def test_wrong_lips_separate_worse():
    """With the speakers' lips swapped, the estimates swap too."""
    model, mixture, lips, sources = toy(seed=2)
    mcem = MCEM(num_iterations=10, num_mh_steps=10, burn_in=5, noise_rank=2)
    right = mcem(model, mixture, 2, lips=lips,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    swapped = mcem(model, mixture, 2, lips=lips.flip(1),
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert float(_snr(right.sources, sources).mean()) > float(
        _snr(swapped.sources, sources).mean()
    ) + 3


@pytest.mark.parametrize("gain_init", ["unit", "level"])
def test_batched_equals_frame_by_frame_reference(gain_init):
    torch.manual_seed(0)
    vae = AVCVAE(num_freqs=9, latent_dim=3, hidden_dim=5, visual_dim=4,
                 trunk_hidden=6, trunk_dim=3).double()  # fmt: skip
    mixture = torch.randn(2, 9, 6, dtype=torch.cdouble)
    lips = torch.randn(2, 2, 6, 4, dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mcem = MCEM(num_iterations=3, num_mh_steps=4, burn_in=2, noise_rank=2,
                num_chains=2, gain_init=gain_init)  # fmt: skip
    fast = mcem(vae, mixture, 2, lips=lips, frame_mask=mask,
                generator=torch.Generator().manual_seed(3))  # fmt: skip
    slow = mcem_reference(mcem, vae, mixture, 2, lips=lips, frame_mask=mask,
                          generator=torch.Generator().manual_seed(3))
    assert torch.allclose(fast.sources, slow.sources, rtol=1e-9, atol=1e-12)
    assert torch.allclose(fast.costs, slow.costs, rtol=1e-10)
    assert torch.allclose(fast.acceptance, slow.acceptance)
    assert torch.equal(fast.iterations, slow.iterations)


def test_several_mixtures_at_once_with_padding():
    vae = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4).eval()
    mixture = torch.randn(3, 9, 10, dtype=torch.cfloat)
    mask = torch.arange(10)[None] < torch.tensor([10, 7, 4])[:, None]
    mixture = mixture * mask[:, None]
    mcem = MCEM(num_iterations=4, num_mh_steps=4, burn_in=2, noise_rank=2)
    result = mcem(vae, mixture, 3, frame_mask=mask,
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert result.sources.shape == (3, 3, 9, 10)
    assert torch.isfinite(result.costs).all()
    assert torch.allclose(result.sources.sum(1) + result.noise, mixture,
                          atol=1e-4)  # fmt: skip


def test_audio_visual_model_needs_lips():
    vae = AVCVAE(9, 2, 4, 4, 4, 2)
    with pytest.raises(ValueError, match="lips"):
        MCEM(num_iterations=1, num_mh_steps=2, burn_in=1)(
            vae, torch.randn(1, 9, 3, dtype=torch.cfloat), 2
        )
    with pytest.raises(ValueError, match="burn_in"):
        MCEM(num_mh_steps=5, burn_in=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_mcem_on_gpu_matches_cpu():
    vae = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4).double()
    mixture = torch.randn(2, 9, 8, dtype=torch.cdouble)
    mcem = MCEM(num_iterations=2, num_mh_steps=3, burn_in=1, noise_rank=2)
    gpu = mcem(vae.cuda(), mixture.cuda(), 2,
               generator=torch.Generator("cuda").manual_seed(0))  # fmt: skip
    assert gpu.sources.device.type == "cuda"
    assert torch.isfinite(gpu.costs).all()


def test_nmf_baseline_is_monotone_and_uses_the_dictionary():
    model, mixture, _, sources = toy(seed=4, speakers=2)
    power = sources.abs().pow(2).sum(1).mean(0)  # [F, N]
    dictionary = learn_dictionary(power, 4, 50,
                                  torch.Generator().manual_seed(0))
    nmf = NMFSeparator(noise_rank=2, num_iterations=40, dictionary=dictionary)
    result = nmf(mixture, 2, generator=torch.Generator().manual_seed(0))
    assert bool((result.costs[1:] <= result.costs[:-1] + 1e-9).all())
    assert result.sources.shape == sources.shape
    assert torch.allclose(result.sources.sum(1) + result.noise, mixture,
                          atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("gain_init", ["unit", "level"])
def test_level_gains_make_mcem_blind_to_the_decoders_scale(gain_init):
    """With ``gain_init="level"`` a decoder whose variances are all 100
    times larger gives the same estimates (the gains absorb the scale);
    with the papers' unit gains it does not."""
    from lobes.models.av_vae import AudioVAE
    from lobes.models.mcem import MCEM

    torch.manual_seed(0)
    vae = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4).eval()
    louder = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4).eval()
    louder.load_state_dict(vae.state_dict())
    with torch.no_grad():
        louder.decoder_output.bias += math.log(100.0)
    mix = torch.randn(2, 9, 12, dtype=torch.cfloat)
    mcem = MCEM(num_iterations=3, num_mh_steps=4, burn_in=2, noise_rank=2,
                gain_init=gain_init)
    out = [mcem(model, mix, 1, generator=torch.Generator().manual_seed(3))
           for model in (vae, louder)]  # fmt: skip
    same = torch.allclose(out[0].sources, out[1].sources, rtol=1e-3,
                          atol=1e-4)
    assert same == (gain_init == "level")


def test_unknown_gain_init_is_refused():
    from lobes.models.mcem import MCEM

    with pytest.raises(ValueError, match="gain_init='ones'"):
        MCEM(gain_init="ones")
