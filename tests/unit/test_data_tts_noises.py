"""Speech synthesis, speaker pools, noises, grammar and cropping."""

import numpy as np
import pytest
import torch

from lobes.data import noises, tts, voices
from lobes.data.grid_grammar import GridGrammar, to_transcript
from lobes.data.mini_corpora import SPEAKERS
from lobes.data.pipelines import random_crop
from lobes.errors import UserError


def test_synthesis_is_independent_of_history():
    one, two = voices.make_speaker_pool(2, seed=5)
    first = tts.synthesize("set red by b four soon", one, 16000)
    tts.synthesize("lay green with z nine again", two, 16000)
    assert torch.equal(first, tts.synthesize("set red by b four soon", one))
    other = tts.synthesize("set red by b four soon", two, 16000)
    assert first.shape != other.shape or not torch.equal(first, other)


def test_synthesis_rates_levels_and_trimming():
    speaker = voices.make_speaker_pool(1, seed=2)[0]
    wide = tts.synthesize("bin white at c seven now", speaker, 16000)
    narrow = tts.synthesize("bin white at c seven now", speaker, 8000)
    assert abs(wide.numel() / 2 - narrow.numel()) <= 1
    assert wide.dtype == torch.float32 and wide.abs().max() <= 1.0
    # trimmed: speech starts within 50 ms
    loud = torch.nonzero(wide.abs() > 0.05 * wide.abs().max())
    assert loud[0].item() < 800 and wide.numel() - loud[-1].item() < 800


def test_speaker_voices_are_distinct():
    pools = voices.split_speakers({"a": 3}, seed=0)
    waves = [tts.synthesize("place blue in a one please", s, 8000)
             for s in pools["a"]]  # fmt: skip
    lengths = {w.numel() for w in waves}
    assert len(lengths) > 1 or not torch.equal(waves[0], waves[1])


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_speaker_groups_disjoint(size):
    counts = dict(SPEAKERS[size])
    babble = counts.pop("babble")
    groups = dict(counts, babble_train=babble, babble_test=babble)
    groups["babble_valid"] = babble
    pools = voices.split_speakers(groups, seed=0)
    assert {k: len(v) for k, v in pools.items()} == groups
    names = [s.name for pool in pools.values() for s in pool]
    assert len(names) == len(set(names))
    variants = {k: {s.variant for s in v} for k, v in pools.items()}
    keys = list(variants)
    for i, one in enumerate(keys):
        for two in keys[i + 1 :]:
            assert variants[one].isdisjoint(variants[two]), (one, two)
    assert pools == voices.split_speakers(groups, seed=0)
    assert pools != voices.split_speakers(groups, seed=1)


def test_unknown_accent_or_variant_is_a_user_error():
    bad_accent = voices.Speaker("x1", "xx-none", "m1", 50, 50, 170)
    with pytest.raises(UserError, match="xx-none"):
        tts.synthesize("bin blue", bad_accent)
    bad_variant = voices.Speaker("x2", "en", "no_such_variant", 50, 50, 170)
    with pytest.raises(UserError, match="no_such_variant"):
        tts.synthesize("bin blue", bad_variant)


def test_missing_espeak_is_one_line(monkeypatch):
    import espeakng_loader

    def broken():
        raise RuntimeError("data path not exists at /nowhere")

    monkeypatch.setattr(espeakng_loader, "get_data_path", broken)
    with pytest.raises(UserError) as excinfo:
        tts._Espeak()
    message = str(excinfo.value)
    assert "\n" not in message and "espeakng-loader" in message


def _frame_energy(signal, frame=400):
    frames = signal[: signal.size // frame * frame].reshape(-1, frame)
    return np.mean(frames**2, axis=1)


def test_noise_kinds():
    rng = np.random.default_rng(0)
    rate, length = 16000, 32000
    made = {
        "white": noises.coloured_noise(length, rng, 0.0),
        "pink": noises.coloured_noise(length, rng, 1.0),
        "brown": noises.coloured_noise(length, rng, 2.0),
        "modulated": noises.modulated_noise(length, rate, rng),
        "hum": noises.hum(length, rate, rng),
        "clicks": noises.clicks(length, rate, rng),
    }
    for name, noise in made.items():
        assert noise.shape == (length,) and noise.dtype == np.float32, name
        assert np.all(np.isfinite(noise))
        assert np.sqrt(np.mean(noise.astype(np.float64) ** 2)) == (
            pytest.approx(1.0, rel=1e-3)
        )
    slopes = {}
    for name in ("white", "pink", "brown"):
        spec = np.abs(np.fft.rfft(made[name])) ** 2
        slopes[name] = spec[100:1000].mean() / spec[8000:16000].mean()
    assert slopes["white"] < slopes["pink"] < slopes["brown"]
    assert 0.5 < slopes["white"] < 2.0
    # non-stationary kinds vary much more from frame to frame than white
    spread = {n: np.std(np.log(_frame_energy(made[n]) + 1e-9)) for n in made}
    assert spread["modulated"] > 2 * spread["white"]
    assert spread["clicks"] > 2 * spread["white"]
    # hum: energy at multiples of 50 or 60 Hz (2 s -> 0.5 Hz bins)
    spec = np.abs(np.fft.rfft(made["hum"])) ** 2
    peak_hz = np.argmax(spec) / 2
    assert min(peak_hz % 50, 50 - peak_hz % 50, peak_hz % 60,
               60 - peak_hz % 60) < 1.5  # fmt: skip


def test_noise_pools_are_split_specific():
    heard = []

    def speak(text, speaker):
        heard.append(speaker)
        return np.random.default_rng(len(text)).standard_normal(4000)

    train = noises.NoisePool([0, 1], 8000, ["train_a", "train_b"], speak)
    test = noises.NoisePool([0, 2], 8000, ["test_a"], speak)
    kinds = set()
    for index in range(30):
        one, kind = train.draw(2000, index)
        kinds.add(kind)
        assert not np.array_equal(one, test.draw(2000, index)[0])
        np.testing.assert_array_equal(one, train.draw(2000, index)[0])
    assert kinds == set(noises.NOISE_KINDS)
    heard_train = [s for s in heard if s.startswith("train")]
    assert heard_train and "test_a" in heard
    assert set(heard) <= {"train_a", "train_b", "test_a"}


def test_grid_grammar_and_transcripts():
    grammar = GridGrammar(seed=4)
    sentences = [grammar.sentence() for _ in range(20)]
    assert sentences == [GridGrammar(seed=4).sentence() for _ in range(1)] + (
        sentences[1:]
    )
    assert len(set(sentences)) > 15
    assert all(len(s.split()) == 6 for s in sentences)
    assert "w" not in {s.split()[3] for s in sentences}
    assert to_transcript("lay red with k zero soon") == (
        "Lay red with K zero soon."
    )


def test_random_crop():
    mix = torch.arange(100.0)
    sources = [mix * 2, mix * 3]
    gen = torch.Generator().manual_seed(1)
    crops = random_crop([mix, *sources], 30, gen)
    assert all(c.shape == (30,) for c in crops)
    assert torch.equal(crops[1], crops[0] * 2)
    assert torch.equal(crops[2], crops[0] * 3)
    offsets = {
        int(random_crop([mix], 30, torch.Generator().manual_seed(s))[0][0])
        for s in range(20)
    }
    assert len(offsets) > 5 and max(offsets) <= 70
    again = random_crop([mix, *sources], 30, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], crops[0])
    padded = random_crop([torch.ones(10), torch.ones(10)], 16)
    assert padded[0].tolist() == [1.0] * 10 + [0.0] * 6
    assert random_crop([mix], 0)[0] is mix
