"""Anti-collapse options of the AV-VAE (issue 23 item 3) and the latent
diagnostics a Brain logs."""

import math

import pytest
import torch

from lobes.models.av_vae import AVCVAE, AudioVAE, is_elbo
from lobes.models.av_vae_diagnostics import (
    latent_diagnostics,
    lips_sensitivity,
    mean_frame_kl,
    z_sensitivity,
)


def _model(**extra):
    torch.manual_seed(0)
    return AVCVAE(9, 3, 6, visual_dim=8, trunk_hidden=7, trunk_dim=5, **extra)


def _batch():
    generator = torch.Generator().manual_seed(1)
    power = torch.rand(3, 5, 9, generator=generator) + 0.1
    lips = torch.randn(3, 5, 8, generator=generator)
    return power, lips


def test_prior_reconstruction_term_trains_the_prior_network():
    vae = _model()
    power, lips = _batch()
    out = vae(power.log(), lips)
    assert out.prior_variance.shape == power.shape
    plain = is_elbo(power, out)
    assert torch.isclose(plain.loss, plain.reconstruction + plain.kl)
    mixed = is_elbo(power, out, prior_reconstruction_weight=0.25,
                    kl_weight=0.5)  # fmt: skip
    expected = 0.75 * (mixed.reconstruction + 0.5 * mixed.kl) + (
        0.25 * mixed.prior_reconstruction
    )
    assert torch.isclose(mixed.loss, expected)
    # with w = 1 only the prior path is trained: the encoder gets nothing
    only = is_elbo(power, out, prior_reconstruction_weight=1.0)
    only.loss.backward()
    assert vae.prior_mean.weight.grad.abs().sum() > 0
    assert not vae.encoder_mean.weight.grad.any()
    with pytest.raises(ValueError, match="prior_variance"):
        is_elbo(power, out._replace(prior_variance=None),
                prior_reconstruction_weight=0.5)  # fmt: skip
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        is_elbo(power, out, prior_reconstruction_weight=1.5)


def test_audio_vae_also_decodes_a_prior_sample():
    vae = AudioVAE(9, 3, 6)
    out = vae(torch.randn(2, 9), sample=False)
    # the prior mean is 0: the prior sample's variance is the decoder at 0
    assert torch.allclose(out.prior_variance, vae.decode(torch.zeros(2, 3)))


def _grads(vae):
    return {name: p.grad for name, p in vae.named_parameters()}


@pytest.mark.parametrize("forced", [True, False])
def test_audio_freeze_stops_only_the_audio_paths_gradients(forced):
    vae = _model()
    power, lips = _batch()
    out = vae(power.log(), lips, freeze_audio=forced)
    is_elbo(power, out, prior_reconstruction_weight=0.5).loss.backward()
    grads = _grads(vae)
    for name, grad in grads.items():
        audio = name.split(".")[0] in AVCVAE.AUDIO_PATH
        if audio and forced:
            assert grad is None, name
        else:
            assert grad is not None and grad.abs().sum() > 0, name


def test_audio_freeze_probability_is_drawn_in_training_only():
    power, lips = _batch()
    always = _model(audio_freeze_prob=1.0).train()
    always(power.log(), lips).variance.sum().backward()
    assert always.encoder_audio.weight.grad is None
    assert always.decoder_video.weight.grad is not None
    evaluating = _model(audio_freeze_prob=1.0).eval()
    evaluating(power.log(), lips).variance.sum().backward()
    assert evaluating.encoder_audio.weight.grad is not None
    torch.manual_seed(3)
    sometimes = _model(audio_freeze_prob=0.5).train()
    frozen = 0
    for _ in range(200):
        sometimes.zero_grad(set_to_none=True)
        sometimes(power.log(), lips).variance.sum().backward()
        frozen += sometimes.decoder_latent.weight.grad is None
    assert 70 < frozen < 130
    with pytest.raises(ValueError, match="audio_freeze_prob"):
        _model(audio_freeze_prob=-0.1)


def test_diagnostics_tell_a_collapsed_decoder():
    vae = _model().eval()
    power, lips = _batch()
    features = power.log()
    mask = torch.tensor([[1, 1, 1, 1, 0]] * 3).bool()
    healthy = latent_diagnostics(vae, features, lips, mask,
                                 torch.Generator().manual_seed(0))
    assert healthy["z_sensitivity"] > 0 and healthy["lips_sensitivity"] > 0
    out = vae(features, lips, sample=False)
    assert math.isclose(healthy["kl"], float(is_elbo(power, out, mask).kl),
                        rel_tol=1e-5)  # fmt: skip
    with torch.no_grad():
        vae.decoder_latent.weight.zero_()  # z no longer reaches the output
    collapsed = latent_diagnostics(vae, features, lips, mask)
    assert collapsed["z_sensitivity"] == 0.0
    assert collapsed["lips_sensitivity"] > 0
    with torch.no_grad():
        vae.decoder_video.weight.zero_()  # neither do the lips
    assert lips_sensitivity(vae, features, lips, mask) == 0.0


def test_sensitivity_is_measured_on_valid_frames_only():
    vae = _model().eval()
    power, lips = _batch()
    features = power.log()
    mask = torch.tensor([[1, 1, 0, 0, 0]] * 3).bool()
    # changing a padded frame's lips changes nothing
    other = lips.clone()
    other[:, 3:] = 100.0
    assert lips_sensitivity(vae, features, lips, mask) == pytest.approx(
        lips_sensitivity(vae, features, other, mask)
    )
    first = z_sensitivity(vae, features, lips, mask,
                          torch.Generator().manual_seed(5))  # fmt: skip
    again = z_sensitivity(vae, features, other, mask,
                          torch.Generator().manual_seed(5))  # fmt: skip
    assert first == pytest.approx(again)
    assert math.isnan(latent_diagnostics(AudioVAE(9, 3, 6), features)[
        "lips_sensitivity"])
    with pytest.raises(ValueError, match="source"):
        z_sensitivity(vae, features, lips, source="encoder")


def test_mean_frame_kl_is_zero_when_posterior_is_prior():
    vae = _model().eval()
    power, lips = _batch()
    out = vae(power.log(), lips, sample=False)
    same = out._replace(mu_q=out.mu_p, logvar_q=out.logvar_p)
    assert float(mean_frame_kl(same)) == pytest.approx(0.0, abs=1e-6)
    assert float(mean_frame_kl(out)) > 0
