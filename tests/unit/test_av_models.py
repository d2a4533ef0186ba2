"""A-VAE / AV-VAE models, the IS-ELBO, lips per frame and the AV Brain."""

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch

from lobes.brains.av_vae import AVVAEBrain, training_mixture
from lobes.errors import HparamsError
from lobes.models.av_features import SineSTFT, lips_per_frame
from lobes.models.av_vae import AVCVAE, AudioVAE, VAEOutput, is_elbo


def test_stft_round_trip_and_frame_count():
    stft = SineSTFT(1024, 256)
    wav = torch.randn(3, 16000)
    spec = stft(wav)
    assert spec.shape == (3, 513, stft.num_frames(16000))
    assert torch.allclose(stft.inverse(spec, 16000), wav, atol=1e-4)


@pytest.mark.parametrize("fps", [25, 30])
def test_lips_per_frame_picks_the_covering_video_frame(fps):
    frames = 2 * fps
    lips = torch.arange(frames, dtype=torch.float64)[None, :, None, None]
    lips = lips.expand(1, frames, 1, 2).contiguous()
    out = lips_per_frame(lips * 4, [frames], 125, 256, 16000, fps)
    # undo the normalisation: the pixel value is 4 * the video frame index
    index = out[0, :, 0]
    index = (index - index.min()) / (index.max() - index.min()) * (frames - 1)
    times = torch.arange(125) * 256 / 16000
    expected = torch.clamp(torch.floor(times * fps), max=frames - 1)
    assert torch.allclose(index, expected.float(), atol=1e-4)


def test_lips_normalisation_removes_the_static_look():
    motion = torch.rand(1, 20, 4, 4)
    bright = (motion * 40 + 150).to(torch.uint8)
    dark = (motion * 40 + 60).to(torch.uint8)
    one = lips_per_frame(bright, [20], 40, 256, 16000, 30)
    two = lips_per_frame(dark, [20], 40, 256, 16000, 30)
    assert torch.allclose(one, two, atol=0.05)


def test_elbo_parts():
    power = torch.rand(5, 7) + 0.1
    zeros = torch.zeros(5, 3)
    exact = VAEOutput(power, zeros, zeros, zeros, zeros, zeros)
    terms = is_elbo(power, exact)
    assert torch.isclose(terms.kl, torch.tensor(0.0))
    assert torch.isclose(terms.reconstruction,
                         (power.log() + 1).sum(-1).mean(), rtol=1e-5)
    # the IS term is smallest at variance = power
    for factor in (0.5, 2.0):
        worse = exact._replace(variance=power * factor)
        assert is_elbo(power, worse).loss > terms.loss
    # KL grows with the distance between q and p; masks drop frames
    shifted = exact._replace(mu_q=zeros + 1.0)
    assert torch.isclose(is_elbo(power, shifted).kl, torch.tensor(1.5))
    mask = torch.tensor([1, 1, 0, 0, 0])
    masked = is_elbo(power, exact, mask)
    assert torch.isclose(masked.reconstruction,
                         (power[:2].log() + 1).sum(-1).mean(), rtol=1e-5)


def test_priors():
    torch.manual_seed(0)  # a random ReLU trunk may be dead for some seeds
    audio = AudioVAE(num_freqs=9, latent_dim=2, hidden_dim=4)
    out = audio(torch.randn(4, 9))
    assert torch.equal(out.mu_p, torch.zeros(4, 2))
    visual = AVCVAE(9, 2, 4, visual_dim=6, trunk_hidden=5, trunk_dim=3)
    lips = torch.randn(4, 6)
    one = visual(torch.randn(4, 9), lips)
    two = visual(torch.randn(4, 9), lips * 3)
    assert not torch.allclose(one.mu_p, two.mu_p)  # the prior reads the lips
    assert visual.uses_video and not audio.uses_video


def _items(count=4, pixels=4):
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(count):
        length = 3200 + 320 * i
        t = torch.arange(length) / 16000
        wav = torch.sin(2 * torch.pi * (200 + 50 * i) * t)
        wav = wav * (1 + torch.sin(2 * torch.pi * 3 * t))
        lips = torch.randint(0, 255, (length * 30 // 16000 + 1, pixels,
                                      pixels), generator=generator,
                             dtype=torch.uint8)  # fmt: skip
        items.append({"id": f"u{i}", "wav_sig": wav, "lips_sig": lips,
                      "fps": 30.0})  # fmt: skip
    return items


def _brain(vae, **extra):
    settings = {"encoder_input": "mixture", "interferer_gain_db": [-5, 5],
                "noise_snr_db": [0, 20], **extra}  # fmt: skip
    # the training settings both flat and as the vae_training namespace
    hparams = {"vae": vae, "stft": SineSTFT(256, 64), "sample_rate": 16000,
               "seed": 1, "vae_training": settings, **settings}  # fmt: skip
    return AVVAEBrain({"vae": vae}, lambda p: torch.optim.Adam(p, 3e-3),
                      hparams, run_opts={"device": "cpu"})  # fmt: skip


def test_brain_training_lowers_the_elbo():
    torch.manual_seed(0)
    vae = AVCVAE(129, 4, 16, visual_dim=16, trunk_hidden=8, trunk_dim=4)
    brain = _brain(vae)
    data = torch.utils.data.DataLoader(_items(), batch_size=2,
                                       collate_fn=PaddedBatch)  # fmt: skip
    brain.fit(range(1), data, data, progressbar=False)
    first = brain.last_stage_stats["loss"]
    brain.fit(range(2, 12), data, data, progressbar=False)
    assert brain.last_stage_stats["loss"] < 0.8 * first
    # evaluation is deterministic (seeded mixtures, posterior mean)
    one = brain.evaluate(data, progressbar=False)
    assert brain.evaluate(data, progressbar=False) == one


def test_brain_checks_its_inputs():
    vae = AVCVAE(129, 2, 4, visual_dim=9, trunk_hidden=4, trunk_dim=2)
    with pytest.raises(HparamsError, match="encoder_input"):
        _brain(vae, encoder_input="noisy")
    brain = _brain(vae)
    data = torch.utils.data.DataLoader(_items(2), batch_size=2,
                                       collate_fn=PaddedBatch)  # fmt: skip
    with pytest.raises(HparamsError, match="roi_pixels: 16"):
        brain.evaluate(data, progressbar=False)


def test_training_mixture_levels():
    wav = torch.randn(4, 1600)
    mask = torch.ones(4, 1600)
    mask[1, 800:] = 0
    wav = wav * mask

    def mix(snr):
        generator = torch.Generator().manual_seed(0)
        return training_mixture(wav, mask, (0, 0), (snr, snr), generator)

    speech = mix(200.0)
    assert torch.equal(speech[1, 800:], torch.zeros(800))
    # same draws, 10 dB SNR: unit-variance white noise 10 dB below
    noise = mix(10.0) - speech
    snr = 10 * torch.log10(speech.pow(2).sum(1) / noise.pow(2).sum(1))
    assert torch.allclose(snr, torch.full((4,), 10.0), atol=0.3)
    # the interferer is the previous item of the batch, scaled to the
    # item's level over the samples where both are active
    other = speech - wav
    both = mask * mask.roll(1, 0)
    ratio = (other * both).pow(2).sum(1) / (wav.roll(1, 0) * both).pow(2).sum(1)
    target = (wav.pow(2) * mask).sum(1) / mask.sum(1)
    target = target / ((wav.roll(1, 0) * both).pow(2).sum(1) / both.sum(1))
    assert torch.allclose(ratio, target, rtol=1e-4)
