"""eSpeak NG phoneme events and the synthetic lips rendered from them."""

import numpy as np
import pytest
import torch

from lobes.data import lips, tts, voices

TEXTS = (
    "bin blue at f two now",
    "lay green with z nine again",
    "set red by b four soon",
    "place white in a one please",
    "bin red at s six now",
    "lay white by q three soon",
)


@pytest.fixture(scope="module")
def utterances():
    """(wav, phonemes, speaker) of six sentences by six speakers."""
    pool = voices.make_speaker_pool(len(TEXTS), seed=3)
    return [
        (*tts.synthesize_with_phonemes(text, spk, 16000), spk)
        for text, spk in zip(TEXTS, pool)
    ]


def test_phoneme_events_leave_the_audio_unchanged(utterances):
    wav, phones, spk = utterances[0]
    assert torch.equal(wav, tts.synthesize(TEXTS[0], spk, 16000))
    names = [p[0].strip("',") for p in phones]
    assert names[:3] == ["b", "I", "n"]
    starts = [p[1] for p in phones]
    assert starts == sorted(starts) and starts[0] >= 0
    assert phones[-1][2] <= wav.numel() / 16000 + 1e-6
    assert all(end > start for _, start, end in phones)


def test_rendering_is_deterministic_and_seeded(utterances):
    wav, phones, spk = utterances[1]
    duration = wav.numel() / 16000
    look = lips.appearance_for(spk.name)
    one = lips.render_lips(phones, duration, look, fps=30, seed=5)
    two = lips.render_lips(phones, duration, look, fps=30, seed=5)
    assert one.dtype == np.uint8 and one.shape[1:] == (32, 32)
    assert one.shape[0] == lips.num_video_frames(duration, 30)
    assert np.array_equal(one, two)
    other_seed = lips.render_lips(phones, duration, look, fps=30, seed=6)
    assert not np.array_equal(one, other_seed)
    other_look = lips.render_lips(
        phones, duration, lips.appearance_for("someone else"), fps=30, seed=5
    )
    assert not np.array_equal(one, other_look)


@pytest.mark.parametrize(
    "closed, opened",
    [("m", "a:"), ("p", "aI"), ("f", "E"), ("_", "O:")],
)
def test_frames_change_with_the_viseme(closed, opened):
    look = lips.LipAppearance(jitter=0.0, noise=0.0)
    shut = lips.render_lips([(closed, 0.0, 0.4)], 0.4, look, fps=25)
    wide = lips.render_lips([(opened, 0.0, 0.4)], 0.4, look, fps=25)
    assert not np.array_equal(shut[5], wide[5])
    measure = lips.mouth_opening_measure
    assert measure(wide[5:])[0] > measure(shut[5:])[0] + 5
    # rounding narrows the mouth: "u:" is narrower than "i:"
    track_u = lips.articulation([("u:", 0.0, 0.4)], 0.4)
    track_i = lips.articulation([("i:", 0.0, 0.4)], 0.4)
    assert track_u["width"][5] < track_i["width"][5]


def test_coarticulation_smooths_the_transitions():
    phones = [("m", 0.0, 0.2), ("a:", 0.2, 0.4)]
    sharp = lips.articulation(phones, 0.4, fps=100, coarticulation=0.0)
    smooth = lips.articulation(phones, 0.4, fps=100, coarticulation=0.03)
    assert sharp["opening"][19] < 0.05 < 0.95 < sharp["opening"][20]
    # the mouth starts opening before the vowel and is not yet wide open
    assert 0.05 < smooth["opening"][18] < smooth["opening"][21] < 0.95


def _envelope(wav, frames, fps):
    hop = 16000 / fps
    values = []
    for k in range(frames):
        part = wav[int(k * hop) : int((k + 1) * hop)]
        values.append(float(np.sqrt(np.mean(part**2))) if part.size else 0.0)
    return np.array(values)


def test_mouth_opening_follows_the_audio_envelope(utterances):
    """Pearson correlation, per video frame, between the mouth opening and
    the RMS of the audio: of the articulatory track and of the opening
    measured in the rendered images (dark cavity pixels)."""
    track_corr, image_corr = [], []
    for wav, phones, spk in utterances:
        wav = wav.numpy()
        duration = wav.size / 16000
        frames = lips.render_lips(
            phones, duration, lips.appearance_for(spk.name), fps=30, seed=0
        )
        envelope = _envelope(wav, len(frames), 30)
        track = lips.articulation(phones, duration, fps=30)["opening"]
        measured = lips.mouth_opening_measure(frames)
        track_corr.append(np.corrcoef(track, envelope)[0, 1])
        image_corr.append(np.corrcoef(measured, envelope)[0, 1])
        # the images show the track
        assert np.corrcoef(measured, track)[0, 1] > 0.6
    assert np.mean(track_corr) > 0.35, track_corr
    assert np.mean(image_corr) > 0.25, image_corr
    assert min(track_corr) > 0.1, track_corr


def test_phoneme_to_viseme_table():
    assert lips.phoneme_visemes("b") == ("bilabial",)
    assert lips.phoneme_visemes(",oU") == ("mid", "rounded")
    assert lips.phoneme_visemes("_!") == ("rest",)
    assert lips.phoneme_visemes("Q9") == ("alveolar",)  # unknown consonant
    assert lips.phoneme_visemes("a2") == ("open",)
    for shapes in lips.PHONEME_VISEMES.values():
        for shape in shapes if isinstance(shapes, tuple) else (shapes,):
            assert shape in lips.VISEMES
