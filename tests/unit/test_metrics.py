"""Enhancement and separation metrics on synthetic speech-like signals."""

import math
import sys

import numpy as np
import pytest
import torch

from lobes.metrics import (
    BREAKDOWN_METRICS,
    ENHANCEMENT_METRICS,
    FAST_ENHANCEMENT_METRICS,
    MetricAverager,
    MetricUnavailableError,
    average_error_breakdown,
    enhancement_metrics,
    error_breakdown,
    separation_metrics,
    source_error_breakdown,
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


# Error breakdown (issue 21): BSS Eval's projections, zero-delay gains.


def orthogonal_signals(count, length=4000, seed=0):
    """``count`` mutually orthogonal signals ``[length]``, each of energy
    ``length`` (unit power), as columns of a ``[length, count]`` array."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((length, count)))
    return basis * math.sqrt(length)


def test_breakdown_of_constructed_estimates():
    """target + 0.1 x other speaker + 0.01 x noise + orthogonal junk."""
    s1, s2, noise, junk1, junk2 = orthogonal_signals(5).T
    speakers = np.stack([s1, s2], 1)
    estimates = np.stack(
        [
            s1 + 0.1 * s2 + 0.01 * noise + math.sqrt(1e-3) * junk1,
            # Another gain on the target: only ratios to it count.
            2.0 * (s2 + 0.3 * s1 + 0.1 * noise + 0.1 * junk2),
        ],
        1,
    )
    parts = source_error_breakdown(estimates, speakers, noise)
    assert set(parts) == set(BREAKDOWN_METRICS)
    expected = {
        "interference_db": [-20.0, 10 * math.log10(0.09)],
        "noise_db": [-40.0, -20.0],
        "artifact_db": [-30.0, -20.0],
    }
    for key, values in expected.items():
        np.testing.assert_allclose(parts[key], values, atol=1e-6)
    mean = error_breakdown(torch.from_numpy(estimates), speakers, noise)
    assert mean == pytest.approx(
        {key: float(np.mean(v)) for key, v in expected.items()}
    )
    assert all(isinstance(v, float) for v in mean.values())


def test_breakdown_projects_noise_that_overlaps_the_speakers():
    """The part of the noise inside the speakers' span is interference.

    noise = 0.5 x speaker 2 + w: an estimate s1 + 0.1 x noise has
    interference 0.05 x s2 (-26 dB) and noise 0.1 x w (-20 dB); counting
    all of 0.1 x noise as noise would give -18.1 dB.
    """
    s1, s2, w = orthogonal_signals(3, seed=1).T
    noise = 0.5 * s2 + w
    speakers = np.stack([s1, s2], 1)
    estimates = np.stack([s1 + 0.1 * noise, s2], 1)
    parts = source_error_breakdown(estimates, speakers, noise)
    assert parts["interference_db"][0] == pytest.approx(
        20 * math.log10(0.05), abs=1e-6
    )
    assert parts["noise_db"][0] == pytest.approx(-20.0, abs=1e-6)
    # Nothing outside the span: artifacts and, for the clean second
    # estimate, every error clamp at -150 dB.
    assert parts["artifact_db"][0] == -150.0
    assert list(parts["interference_db"][1:]) == [-150.0]
    # Without the noise, its residual counts as artifacts.
    no_noise = error_breakdown(estimates[:, :1], speakers[:, :1])
    assert set(no_noise) == {"interference_db", "artifact_db"}


def test_breakdown_on_speech_like_signals():
    """Non-orthogonal speech-like sources: close to the nominal levels."""
    speakers = two_speakers(1.0).numpy().astype(np.float64)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(speakers.shape[0])
    noise *= np.sqrt(np.mean(speakers[:, 0] ** 2) / np.mean(noise**2))
    junk = rng.standard_normal(speakers.shape)
    junk *= math.sqrt(1e-3) * np.sqrt(np.mean(speakers**2, 0))
    other = speakers[:, ::-1] * np.sqrt(
        np.mean(speakers**2, 0) / np.mean(speakers[:, ::-1] ** 2, 0)
    )
    estimates = speakers + 0.1 * other + 0.01 * noise[:, None] + junk
    parts = source_error_breakdown(estimates, speakers, noise)
    np.testing.assert_allclose(parts["interference_db"], -20.0, atol=0.5)
    np.testing.assert_allclose(parts["noise_db"], -40.0, atol=0.5)
    np.testing.assert_allclose(parts["artifact_db"], -30.0, atol=0.5)
    # More interference, more interference_db; the rest unchanged.
    worse = source_error_breakdown(
        estimates + 0.2 * other, speakers, noise
    )
    assert np.all(worse["interference_db"] > parts["interference_db"] + 5)
    np.testing.assert_allclose(
        worse["noise_db"], parts["noise_db"], atol=1.0
    )


def test_breakdown_degenerate_cases_are_nan_and_counted():
    s1, s2, noise = orthogonal_signals(3, seed=3).T
    speakers = np.stack([s1, s2], 1)
    good = np.stack([s1 + 0.1 * s2 + 0.1 * noise, s2 + 0.1 * s1], 1)
    silent_speaker = speakers.copy()
    silent_speaker[:, 1] = 0.0
    parts = source_error_breakdown(good, silent_speaker, noise)
    assert np.isfinite(parts["interference_db"][0])
    assert all(np.isnan(parts[key][1]) for key in BREAKDOWN_METRICS)
    silent_estimate = good.copy()
    silent_estimate[:, 0] = 0.0
    rows = [
        error_breakdown(good, speakers, noise),
        error_breakdown(good, silent_speaker, noise),
        error_breakdown(silent_estimate, speakers, noise),
        error_breakdown(good, speakers, np.zeros_like(noise)),
    ]
    assert all(math.isnan(v) for v in rows[1].values())
    assert all(math.isnan(v) for v in rows[2].values())
    assert math.isnan(rows[3]["noise_db"])
    assert rows[3]["interference_db"] == pytest.approx(-20.0, abs=1e-6)
    summary = average_error_breakdown(rows)
    assert summary["mixtures"] == 4
    assert summary["interference_db_nan"] == 2
    assert summary["noise_db_nan"] == 3
    assert summary["artifact_db_nan"] == 2
    assert summary["interference_db"] == pytest.approx(-20.0, abs=1e-6)
    assert summary["noise_db"] == pytest.approx(rows[0]["noise_db"])
    # Wholly the other speaker: clamped at +150 dB, not NaN.
    swapped = source_error_breakdown(speakers[:, ::-1], speakers, noise)
    assert list(swapped["interference_db"]) == [150.0, 150.0]


def test_average_error_breakdown_means_over_mixtures():
    rows = [
        {"interference_db": -10.0, "noise_db": -30.0, "artifact_db": -5.0},
        {"interference_db": -20.0, "noise_db": -20.0, "artifact_db": -7.0},
    ]
    summary = average_error_breakdown(rows)
    assert summary["interference_db"] == -15.0
    assert summary["noise_db"] == -25.0
    assert summary["artifact_db"] == -6.0
    assert summary["noise_db_nan"] == 0 and summary["mixtures"] == 2


def test_breakdown_bad_shapes():
    speakers = orthogonal_signals(2)
    with pytest.raises(ValueError, match="differ in length"):
        error_breakdown(speakers[:-5], speakers, speakers[:, 0])
    with pytest.raises(ValueError, match="noise .* differ in length"):
        error_breakdown(speakers, speakers, speakers[:-5, 0])
    with pytest.raises(ValueError, match="sources"):
        error_breakdown(speakers[:, :1], speakers, speakers[:, 0])
