"""What the mini corpus writers share: sizes, speakers, speech, PCM writing.

The sizes and speaker counts of every corpus (:data:`SIZES`,
:data:`SPEAKERS`), the synthesized speech (``_Speech``: eSpeak NG at 16 kHz,
unit level, cached), the seeds of each corpus and split, and the writer of
a WHAM!-like tree of sources and mixtures at 8/16 kHz in min/max modes
(``_write_mixture_set``), used by the WHAM! and LibriMix writers.

Authors
 * noise-robust-sb contributors 2025
"""

import collections
import json
import math
import os

import numpy as np
import soundfile as sf
import torch

from lobes.data import tts, voices
from lobes.data.noises import NoisePool

#: Mixtures (or utterances) per split and sentences per utterance.
SIZES = {
    "wham": {
        "tiny": {"train": 8, "valid": 4, "test": 4, "sentences": (1, 1)},
        "small": {"train": 400, "valid": 60, "test": 60, "sentences": (1, 2)},
    },
    "librimix": {
        "tiny": {
            2: {"train": 8, "valid": 4, "test": 4},
            3: {"train": 8, "valid": 4, "test": 4},
            "sentences": (1, 1),
        },
        "small": {
            2: {"train": 400, "valid": 60, "test": 60},
            3: {"train": 200, "valid": 40, "test": 40},
            "sentences": (1, 2),
        },
    },
    "voicebank": {
        # utterances per speaker; train speakers besides the valid ones
        "tiny": {
            "train_speakers": 4,
            "train": 2,
            "valid": 2,
            "test": 2,
            "sentences": (1, 1),
        },
        "small": {
            "train_speakers": 26,
            "train": 16,
            "valid": 30,
            "test": 40,
            "sentences": (1, 2),
        },
    },
}

#: Number of synthetic speakers per group and size.
SPEAKERS = {
    "tiny": {"train": 8, "valid": 4, "test": 4, "babble": 3},
    "small": {"train": 40, "valid": 10, "test": 10, "babble": 5},
}

SPLITS = ("train", "valid", "test")

BASE_RATE = 16000
#: RMS of a synthesized utterance before the mixture's gains.
SPEECH_RMS = 0.05
#: Largest absolute sample value of any written signal.
PEAK_LIMIT = 0.9

_CORPUS_CODES = {"wham": 1, "librimix": 2, "voicebank": 3}


class _Speech:
    """Synthesize at 16 kHz, trim, normalise; cache per (speaker, text).

    The cache keeps the most recent ``cache_size`` utterances; babble goes
    through :meth:`uncached` since its sentences are drawn afresh.
    """

    def __init__(self, cache_size=512):
        tts.check_espeak()
        self.cache = collections.OrderedDict()
        self.cache_size = cache_size

    def uncached(self, text, speaker):
        wav = tts.synthesize(text, speaker, BASE_RATE).numpy()
        rms = _rms(wav)
        if rms > 0:
            wav = wav * (SPEECH_RMS / rms)
        return wav.astype(np.float32)

    def __call__(self, text, speaker):
        key = (speaker, text)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        wav = self.uncached(text, speaker)
        self.cache[key] = wav
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return wav


def _rms(signal):
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def _to_8k(signal):
    wav = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
    return tts.resample(wav, BASE_RATE, 8000).numpy()


def _fit(signal, length):
    """Zero-pad or truncate to ``length``."""
    if signal.size >= length:
        return signal[:length]
    return np.concatenate([signal, np.zeros(length - signal.size, "float32")])


def _quantize(signals, peak_candidates):
    """Scale all signals by one factor and round them to the int16 grid.

    The factor keeps every candidate (sources, noise and their sums) within
    :data:`PEAK_LIMIT`, so sums of the rounded integers never clip and a
    mixture written as the sum of its written parts equals it exactly.
    """
    peak = max(float(np.max(np.abs(c))) for c in peak_candidates if c.size)
    factor = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
    return {
        name: np.round(sig.astype(np.float64) * factor * 32768).astype(np.int32)
        for name, sig in signals.items()
    }


def _write_pcm(path, samples, sample_rate):
    if np.max(np.abs(samples), initial=0) > 32767:
        raise RuntimeError(f"{path}: sample beyond int16 range")
    sf.write(path, samples.astype(np.int16), sample_rate, subtype="PCM_16")


def _num_sentences(rng, bounds):
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _speaker_groups(seed, size, corpus, extra=None):
    counts = dict(SPEAKERS[size])
    babble = counts.pop("babble")
    if extra:
        counts.update(extra)
    groups = dict(counts)
    for split in SPLITS:
        groups[f"babble_{split}"] = babble
    return voices.split_speakers(groups, seed=seed * 10 + _CORPUS_CODES[corpus])


def _noise_pools(seed, corpus, speakers, speech):
    return {
        split: NoisePool(
            seed=[seed, _CORPUS_CODES[corpus], index, 77],
            sample_rate=BASE_RATE,
            babble_speakers=speakers[f"babble_{split}"],
            speak=speech.uncached,
        )
        for index, split in enumerate(SPLITS)
    }


def _split_rng(seed, corpus, split, extra=0):
    return np.random.default_rng(
        [seed, _CORPUS_CODES[corpus], SPLITS.index(split), extra]
    )


def _write_info(out_dir, corpus, seed, size, **extra):
    info = {
        "corpus": corpus,
        "seed": seed,
        "size": size,
        **extra,
        "generator": "lobes.data.mini_corpora",
        "note": "synthetic speech (eSpeak NG) and synthetic noises",
    }
    with open(os.path.join(out_dir, "mini_corpus.json"), "w") as fout:
        json.dump(info, fout, indent=2, sort_keys=True)
        fout.write("\n")


def _path_maker(root, split_dir, name):
    """``path_of(rate, mode, folder)`` for one mixture in a WHAM!-like tree."""

    def path_of(rate, mode, folder):
        return os.path.join(
            root, f"wav{rate // 1000}k", mode, split_dir, folder, f"{name}.wav"
        )

    return path_of


def _write_mixture_set(sources, shortest, path_of, speech_names):
    """Write sources and mixtures at 8/16 kHz in min/max modes.

    ``sources`` maps folder names (speech sources and ``noise``) to 16 kHz
    signals of the max length; ``shortest`` is the min length at 16 kHz.
    Returns the written paths per (rate, mode) with the lengths.
    """
    by_rate = {BASE_RATE: sources}
    by_rate[8000] = {name: _to_8k(sig) for name, sig in sources.items()}
    candidates = []
    for signals in by_rate.values():
        speech_sum = sum(signals[name] for name in speech_names)
        candidates += list(signals.values())
        candidates += [
            speech_sum,
            speech_sum + signals["noise"],
            signals[speech_names[0]] + signals["noise"],
        ]
    flat = {
        (rate, name): sig
        for rate, signals in by_rate.items()
        for name, sig in signals.items()
    }
    quantized = _quantize(flat, candidates)
    written = {}
    for rate in (8000, BASE_RATE):
        full = {name: quantized[(rate, name)] for name in sources}
        cut = math.ceil(shortest * rate / BASE_RATE)
        for mode in ("min", "max"):
            parts = full
            if mode == "min":
                parts = {name: sig[:cut] for name, sig in full.items()}
            speech_sum = sum(parts[name] for name in speech_names)
            outputs = dict(parts)
            outputs["mix_clean"] = speech_sum
            outputs["mix_both"] = speech_sum + parts["noise"]
            outputs["mix_single"] = parts[speech_names[0]] + parts["noise"]
            paths = {}
            for folder, samples in outputs.items():
                path = path_of(rate, mode, folder)
                _write_pcm(path, samples, rate)
                paths[folder] = path
            written[(rate, mode)] = (paths, parts["noise"].size)
    return written
