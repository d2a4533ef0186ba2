"""Enhancement and separation metrics on synthetic speech-like signals."""

import math
import sys

import numpy as np
import pytest
import torch

from lobes.metrics import (
    ENHANCEMENT_METRICS,
    FAST_ENHANCEMENT_METRICS,
    MetricAverager,
    MetricUnavailableError,
    enhancement_metrics,
    separation_metrics,
)

RATE = 16000
INTRUSIVE = ("pesq", "stoi", "estoi", "csig", "cbak", "covl", "si_sdr")


def voiced(seconds, f0=130.0, seed=0, rate=RATE):
    """A harmonic, syllable-modulated signal: speech-like enough for PESQ."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.1 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / rate
    tone = sum(torch.sin(k * phase) / k for k in range(1, 25))
    syllables = torch.sin(2 * math.pi * 2.5 * t).clamp(min=0).sqrt()
    breath = 0.01 * torch.randn(t.shape, generator=g)
    return 0.2 * tone * syllables + breath


def noisy_version(clean, snr_db, seed=1):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=g)
    scale = clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()
    return clean + scale * 10 ** (-snr_db / 20) * noise


@pytest.fixture(scope="module")
def scores():
    clean = voiced(2.0)
    return {
        "clean": enhancement_metrics(clean, clean, RATE, INTRUSIVE),
        "15dB": enhancement_metrics(
            noisy_version(clean, 15), clean, RATE, INTRUSIVE
        ),
        "0dB": enhancement_metrics(
            noisy_version(clean, 0), clean, RATE, INTRUSIVE
        ),
    }


def test_clean_against_itself_scores_top(scores):
    top = scores["clean"]
    assert top["pesq"] > 4.4
    assert top["stoi"] > 0.99 and top["estoi"] > 0.99
    assert top["csig"] == top["covl"] == 5.0 and top["cbak"] > 4.5
    assert top["si_sdr"] > 100


@pytest.mark.parametrize("metric", INTRUSIVE)
def test_more_noise_scores_lower(scores, metric):
    clean, mild, strong = (scores[k][metric] for k in ("clean", "15dB", "0dB"))
    assert clean >= mild >= strong
    assert clean > strong


def test_si_sdr_matches_the_snr_of_white_noise(scores):
    assert scores["15dB"]["si_sdr"] == pytest.approx(15, abs=0.5)
    assert scores["0dB"]["si_sdr"] == pytest.approx(0, abs=0.5)


def test_resampled_input_and_metric_subset():
    clean = voiced(2.0, rate=8000)
    out = enhancement_metrics(
        noisy_version(clean, 10).numpy(), clean, 8000, ["si_sdr", "pesq"]
    )
    assert list(out) == ["si_sdr", "pesq"]
    assert 1.0 < out["pesq"] < 4.0
    with pytest.raises(ValueError, match="unknown enhancement metrics"):
        enhancement_metrics(clean, clean, 8000, ["pesq_nb"])
    with pytest.raises(ValueError, match="differ in length"):
        enhancement_metrics(clean[:-1], clean, 8000, ["pesq"])


def test_degenerate_inputs_give_nan_and_are_counted():
    speech = voiced(1.5)
    blip = speech[: RATE // 10]  # too short for PESQ and STOI
    silent = torch.zeros(RATE)
    averager = MetricAverager()
    for enhanced, clean in ((speech, speech), (blip, blip), (silent, silent)):
        averager.append(
            enhancement_metrics(enhanced, clean, RATE, FAST_ENHANCEMENT_METRICS)
        )
    assert averager.failures() == {
        "pesq": 2,
        "stoi": 2,
        "estoi": 2,
        "si_sdr": 1,
    }
    means = averager.summarize()
    assert means["pesq"] > 4.4  # the NaNs are not averaged in
    assert "NaN: pesq 2, stoi 2, estoi 2, si_sdr 1" in averager.describe()


def test_dnsmos_prefers_clean_speech():
    clean = voiced(4.6)  # tiled to 9.2 s by DNSMOS: one window
    names = ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"]
    tidy = enhancement_metrics(clean, clean, RATE, names)
    noisy = enhancement_metrics(noisy_version(clean, 0), clean, RATE, names)
    assert all(1.0 <= value <= 5.0 for value in tidy.values())
    assert tidy["dnsmos_bak"] > noisy["dnsmos_bak"] + 0.5
    # Out-of-range samples are scaled into [-1, 1] rather than rejected.
    loud = enhancement_metrics(4 * clean, clean, RATE, names)
    assert all(math.isfinite(v) for v in loud.values())


def test_dnsmos_without_its_dependency_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "speechmos", None)
    with pytest.raises(MetricUnavailableError, match="pip install speechmos"):
        enhancement_metrics(voiced(1.0), voiced(1.0), RATE, ["dnsmos_sig"])


def test_all_metric_names_are_known():
    assert set(FAST_ENHANCEMENT_METRICS) <= set(ENHANCEMENT_METRICS)
    assert len(set(ENHANCEMENT_METRICS)) == 10


def two_speakers(seconds=1.0):
    first = voiced(seconds, f0=110.0, seed=3)
    second = voiced(seconds, f0=210.0, seed=4).roll(RATE // 5)
    return torch.stack([first, second], dim=1)  # [time, 2]


def test_separation_perfect_and_permuted():
    refs = two_speakers()
    mix = refs.sum(1)
    perfect = separation_metrics(refs, refs, mix)
    swapped = separation_metrics(refs.flip(1), refs, mix)
    assert perfect["si_snr"] > 100 and perfect["sdr"] > 100
    assert swapped == pytest.approx(perfect)
    assert perfect["si_snr_i"] == pytest.approx(
        perfect["si_snr"]
        - separation_metrics(torch.stack([mix, mix], 1), refs, mix)["si_snr"]
    )


def test_separation_mixture_gains_nothing_and_noise_hurts():
    refs = two_speakers()
    mix = refs.sum(1)
    unprocessed = separation_metrics(torch.stack([mix, mix], 1), refs, mix)
    assert unprocessed["sdr_i"] == pytest.approx(0.0, abs=1e-6)
    assert unprocessed["si_snr_i"] == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(5)
    mild = separation_metrics(
        refs + 0.01 * torch.randn(refs.shape, generator=g), refs, mix
    )
    strong = separation_metrics(
        refs + 0.1 * torch.randn(refs.shape, generator=g), refs, mix
    )
    for key in ("sdr", "sdr_i", "si_snr", "si_snr_i"):
        assert mild[key] > strong[key] > unprocessed[key]


def test_separation_degenerate_and_bad_shapes():
    refs = two_speakers()
    refs[:, 1] = 0.0
    out = separation_metrics(refs, refs, refs.sum(1))
    assert all(np.isnan(v) for v in out.values())
    with pytest.raises(ValueError, match="differ in length"):
        separation_metrics(refs[:-5], refs, refs.sum(1))
    with pytest.raises(ValueError, match="sources"):
        separation_metrics(refs[:, :1], refs, refs.sum(1))
