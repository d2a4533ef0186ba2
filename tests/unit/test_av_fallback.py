"""MCEM's fallback to an audio-only model on unreliable lips (issue 23
item 4) and its noise run-away stop (item 5), on toy models whose truth is
known."""

import pytest
import torch

from lobes.data.lip_input import resize_frames
from lobes.models.av_features import lips_per_frame
from lobes.models.mcem import MCEM
from lobes.models.mcem_reference import mcem_reference

FREQS, LATENT, FRAMES, SIDE = 24, 3, 60, 4
#: Lips at one video frame per STFT frame (hop 256 at 16 kHz).
FPS = 16000 / 256


class ImageLipsModel(torch.nn.Module):
    """An AV model that reads mouth images: ``sigma^2(z, v) = b exp(A z)
    exp(a o(v) t)``, ``o(v)`` the normalised lips projected on a mouth
    template (how open the mouth is), ``t`` a spectral tilt. Encoder 0,
    prior N(0, I)."""

    uses_video = True

    def __init__(self, base, mixing, template, strength=2.0):
        super().__init__()
        self.base, self.mixing = base, mixing
        flat = template.reshape(-1).double()
        rms = flat.pow(2).mean().sqrt()
        self.reader = flat * rms / flat.pow(2).sum()
        self.tilt = strength * torch.linspace(-1, 1, base.numel()).double()

    def embed(self, lips):
        return (lips @ self.reader)[..., None]

    def encode(self, features, embedding=None):
        shape = (*features.shape[:-1], self.mixing.shape[1])
        return torch.zeros(shape, dtype=features.dtype), None

    def prior(self, embedding=None, like=None):
        return torch.zeros_like(like), torch.zeros_like(like)

    def decode(self, z, embedding):
        return self.base * torch.exp(z @ self.mixing.t()) * torch.exp(
            embedding * self.tilt)


class AudioOnlyModel(ImageLipsModel):
    """The same without lips (no tilt): the A-VAE of the toy."""

    uses_video = False

    def embed(self, lips):
        return None

    def decode(self, z, embedding=None):
        return self.base * torch.exp(z @ self.mixing.t())


def _complex_normal(variance, generator):
    real = torch.randn(variance.shape, generator=generator, dtype=torch.float64)
    imag = torch.randn(variance.shape, generator=generator, dtype=torch.float64)
    return (real + 1j * imag) * (variance / 2).sqrt()


def _openings(batch, generator):
    """Smooth mouth openings in [0.1, 1] per frame ``[B, FRAMES]``."""
    raw = torch.rand(batch, FRAMES + 4, generator=generator,
                     dtype=torch.float64)  # fmt: skip
    smooth = raw.unfold(1, 5, 1).mean(-1)
    smooth = smooth - smooth.min(1, keepdim=True).values
    return 0.1 + 0.9 * smooth / smooth.max(1, keepdim=True).values


def _images(openings, template):
    """Mouth images ``[B, T, SIDE, SIDE]`` in [0, 1]."""
    return 0.5 + 0.4 * openings[..., None, None] * template


def _per_frame(images):
    batch = images.shape[0]
    return lips_per_frame(images, [images.shape[1]] * batch, FRAMES, 256,
                          16000, FPS)[:, None].double()  # [B, 1, N, pixels]


def world(seed=0, batch=4):
    """The toy models, noisy single-speaker mixtures, their lips."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(FREQS, generator=gen, dtype=torch.float64) ** 4 * 10
    mixing = 0.7 * torch.randn(FREQS, LATENT, generator=gen,
                               dtype=torch.float64)  # fmt: skip
    # quadrant checker: a 90-degree rotation gives its negative
    template = torch.kron(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]),
                          torch.ones(SIDE // 2, SIDE // 2)).double()
    model = ImageLipsModel(base + 0.01, mixing, template)
    audio = AudioOnlyModel(base + 0.01, mixing, template)
    images = _images(_openings(batch, gen), template)
    z = torch.randn(batch, FRAMES, LATENT, generator=gen, dtype=torch.float64)
    variance = model.decode(z, model.embed(_per_frame(images)[:, 0]))
    speech = _complex_normal(variance, gen).transpose(-1, -2)  # [B, F, N]
    noise = _complex_normal(torch.full((batch, FREQS, FRAMES), 0.05,
                                       dtype=torch.float64), gen)  # fmt: skip
    other = _images(_openings(batch, gen), template)
    return model, audio, speech + noise, speech, images, other, gen


def _snr(estimate, source):
    error = (estimate - source).abs().pow(2).sum((-1, -2))
    return 10 * torch.log10(source.abs().pow(2).sum((-1, -2)) / error)


def _run(mcem, model, mixture, lips=None, fallback=None, seed=0):
    return mcem(model, mixture, 1, lips=lips, fallback=fallback,
                generator=torch.Generator().manual_seed(seed))


MCEM_SETTINGS = dict(num_iterations=20, num_mh_steps=10, burn_in=5,
                     noise_rank=2)  # fmt: skip


@pytest.fixture(scope="module")
def runs():
    model, audio, mixture, speech, images, other, gen = world()
    mcem = MCEM(**MCEM_SETTINGS)
    audio_only = _run(mcem, audio, mixture)
    corrupted = {
        "correct": images,
        "other speaker": other,
        "rotated 90": images.rot90(1, (-2, -1)),
        "frozen frame": images[:, :1].expand_as(images),
        "noise images": torch.rand(images.shape, generator=gen,
                                   dtype=torch.float64),  # fmt: skip
        # 8x8 frames brought back to the model's 4x4, as separate.py does
        "larger size": torch.stack([
            resize_frames(torch.kron(frames, torch.ones(2, 2,
                                                        dtype=frames.dtype)),
                          (SIDE, SIDE)) for frames in images
        ]),  # fmt: skip
    }
    results = {}
    for name, frames in corrupted.items():
        lips = _per_frame(frames)
        plain = _run(mcem, model, mixture, lips)
        robust = _run(mcem, model, mixture, lips, fallback=audio)
        results[name] = (
            float(_snr(plain.sources[:, 0], speech).mean()),
            float(_snr(robust.sources[:, 0], speech).mean()),
            float(robust.switch.mean()),
        )
    return float(_snr(audio_only.sources[:, 0], speech).mean()), results


def test_correct_lips_keep_the_audio_visual_model(runs):
    audio_snr, results = runs
    for name in ("correct", "larger size"):
        plain, robust, switch = results[name]
        assert switch > 0.7, (name, results[name])
        assert plain > audio_snr + 3  # the lips help in this world
        assert robust > plain - 1.0, (name, results[name])


@pytest.mark.parametrize("name", ["other speaker", "rotated 90",
                                  "noise images"])  # fmt: skip
def test_unreliable_lips_fall_back_to_the_audio_model(runs, name):
    audio_snr, results = runs
    plain, robust, switch = results[name]
    assert switch < results["correct"][2] - 0.2, (name, results[name])
    assert plain < audio_snr  # without the fallback the lips hurt
    assert robust > audio_snr - 1.0, (name, audio_snr, results[name])
    assert robust > plain


def test_frozen_lips_are_never_worse_than_audio_only(runs):
    # a frozen frame carries no motion: this AV model then equals the
    # audio-only one, the switch has nothing to choose
    audio_snr, results = runs
    _, robust, _ = results["frozen frame"]
    assert robust > audio_snr - 1.0, (audio_snr, results["frozen frame"])


def test_switch_is_per_frame():
    model, audio, mixture, speech, images, other, _ = world(seed=1, batch=4)
    half = images.clone()
    half[:, FRAMES // 2:] = other[:, FRAMES // 2:]  # lips wrong half the time
    mcem = MCEM(**MCEM_SETTINGS)
    robust = _run(mcem, model, mixture, _per_frame(half), fallback=audio)
    switch = robust.switch[:, 0]
    assert float(switch[:, : FRAMES // 2].mean()) > float(
        switch[:, FRAMES // 2:].mean()) + 0.2


def test_fallback_settings_and_shapes():
    model, audio, mixture, _, images, _, _ = world(batch=2)
    lips = _per_frame(images)
    mcem = MCEM(num_iterations=2, num_mh_steps=3, burn_in=1, noise_rank=2)
    result = _run(mcem, model, mixture, lips, fallback=audio)
    assert result.switch.shape == (2, 1, FRAMES)
    assert torch.allclose(result.sources.sum(1) + result.noise, mixture)
    assert _run(mcem, model, mixture, lips).switch is None
    with pytest.raises(ValueError, match="audio-only"):
        _run(mcem, model, mixture, lips, fallback=model)
    with pytest.raises(ValueError, match="switch_prior"):
        MCEM(switch_prior=1.0)
    with pytest.raises(ValueError, match="max_noise_growth"):
        MCEM(max_noise_growth=0.5)


# ---------------------------------------------------------------- run-away


def test_noise_runaway_stops_that_mixture_only():
    model, audio, mixture, _, _, _, gen = world(batch=2)
    # the second mixture has no speech: the NMF noise takes over its
    # speech model's share iteration after iteration
    noise_only = _complex_normal(torch.ones(FREQS, FRAMES,
                                            dtype=torch.float64), gen)
    batch = torch.stack([mixture[0], noise_only])
    free = MCEM(num_iterations=20, num_mh_steps=6, burn_in=3, noise_rank=2)
    watched = MCEM(num_iterations=20, num_mh_steps=6, burn_in=3,
                   noise_rank=2, max_noise_growth=4.0)  # fmt: skip
    one = _run(free, audio, batch)
    two = _run(watched, audio, batch)
    growth = one.noise_ratio / one.noise_ratio[:1]
    assert float(growth[-1, 1]) > 4.0 > float(growth[:, 0].max())
    assert two.stopped.tolist() == [False, True]
    stop = int(two.iterations[1])
    assert 0 < stop < 20
    # the stopped mixture kept its parameters from before the run-away
    assert float(two.noise_ratio[stop - 1, 1]) <= 4.0 * float(
        two.noise_ratio[0, 1])
    kept = two.noise_ratio[stop:, 1] / two.noise_ratio[0, 1]
    assert float(kept.max()) <= 4.0 * 1.05  # only the samples still move
    # the other mixture ran as without the check
    assert torch.allclose(one.sources[0], two.sources[0])
    assert int(two.iterations[0]) == 20


def test_reference_refuses_what_it_does_not_implement():
    model, audio, mixture, _, _, _, _ = world(batch=1)
    mcem = MCEM(num_iterations=2, num_mh_steps=2, burn_in=1, noise_rank=2,
                max_noise_growth=10.0)  # fmt: skip
    with pytest.raises(ValueError, match="max_noise_growth"):
        mcem_reference(mcem, audio, mixture, 1)


