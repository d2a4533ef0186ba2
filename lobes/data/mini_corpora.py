"""Mini corpora laid out exactly like WHAM!, LibriMix and VoiceBank-DEMAND.

Recipes run out of the box on these: speech is synthesized with eSpeak NG
(:mod:`lobes.data.tts`) from GRID-like sentences (so every utterance has a
transcript), noises come from :mod:`lobes.data.noises`, and the folders,
file names and level conventions follow the real corpora so that the same
preparation code (:mod:`lobes.data.prepare`) reads both.

Training, validation and test splits use disjoint speakers, disjoint babble
speakers and noises drawn from disjoint seeds. A corpus is deterministic for
a seed: generating it twice gives the same bytes.

Sizes: ``tiny`` (a few mixtures per split, seconds to generate; used by the
tests) and ``small`` (hundreds of mixtures; the demo's default).

Command line::

    python -m lobes.data.mini_corpora --corpus wham --out DIR [--seed N]
        [--size tiny|small]
"""

import argparse
import collections
import contextlib
import csv
import fcntl
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from lobes.data import tts
from lobes.data.grid_grammar import grid_text, to_transcript
from lobes.data.noises import NoisePool
from lobes.errors import UserError, exit_on_user_error

#: Corpora this module can generate (``av``: :mod:`lobes.data.av_corpus`).
CORPORA = ("wham", "librimix", "voicebank", "av")

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
WHAM_SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}
LIBRIMIX_SPLITS = {"train": "train-100", "valid": "dev", "test": "test"}

VOICEBANK_TRAIN_SPEAKERS = (
    "p226 p227 p228 p230 p231 p233 p236 p239 p243 p244 p250 p254 p256 p258 "
    "p259 p267 p268 p269 p270 p273 p274 p276 p277 p278 p279 p282 p286 p287"
).split()
VOICEBANK_VALID_SPEAKERS = ("p226", "p287")
VOICEBANK_TEST_SPEAKERS = ("p232", "p257")
VOICEBANK_TRAIN_SNRS = (0.0, 5.0, 10.0, 15.0)
VOICEBANK_TEST_SNRS = (2.5, 7.5, 12.5, 17.5)

BASE_RATE = 16000
#: RMS of a synthesized utterance before the mixture's gains.
SPEECH_RMS = 0.05
#: Largest absolute sample value of any written signal.
PEAK_LIMIT = 0.9

_CORPUS_CODES = {"wham": 1, "librimix": 2, "voicebank": 3}

#: Bumped whenever generation changes; cached corpora of another version
#: are regenerated.
GENERATOR_VERSION = 1


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
    return tts.split_speakers(groups, seed=seed * 10 + _CORPUS_CODES[corpus])


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


def _write_info(out_dir, corpus, seed, size):
    info = {
        "corpus": corpus,
        "seed": seed,
        "size": size,
        "generator": "lobes.data.mini_corpora",
        "note": "synthetic speech (eSpeak NG) and synthetic noises",
    }
    with open(os.path.join(out_dir, "mini_corpus.json"), "w") as fout:
        json.dump(info, fout, indent=2, sort_keys=True)
        fout.write("\n")


# ---------------------------------------------------------------- WHAM!


def _wsj_speaker_code(index):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return f"{index // 26:02d}{letters[index % 26]}"


#: The file of a mini WHAM! corpus (at its root) with the transcript of
#: every source utterance: one ``<utterance id> <WORDS>`` line each, upper
#: case, as in a Kaldi ``text`` file. The ids are those in the mixture
#: names (``<s1 id>_<gain>_<s2 id>_<gain>``), as WSJ0's are for WHAM!.
WHAM_TRANSCRIPTS = "transcripts.txt"


def _wham_plan(seed, size):
    """The random draws of mini WHAM!, split by split, in generation order.

    Only each split's own generator is drawn from (speech and noise
    synthesis draw from others), so the plan alone gives the names and
    transcripts of a corpus: :func:`wham_transcripts` replays it for
    corpora generated before their transcripts were written.

    Returns
    -------
    dict
        Split -> list of mixtures, each a dict with ``name``,
        ``utterances`` (the two source utterance ids), ``picks`` (indices
        into the split's speakers), ``texts`` (lower-case GRID texts),
        ``level`` and ``snr`` (dB).

    Example
    -------
    >>> plan = _wham_plan(0, "tiny")
    >>> len(plan["test"]), len(plan["test"][0]["texts"])
    (4, 2)
    """
    config = SIZES["wham"][size]
    code_offset = 0
    plan = {}
    for split in SPLITS:
        num_speakers = SPEAKERS[size][split]
        codes = [_wsj_speaker_code(code_offset + i)
                 for i in range(num_speakers)]
        code_offset += num_speakers
        utt_counts = [0] * num_speakers
        rng = _split_rng(seed, "wham", split)
        plan[split] = []
        for _ in range(config[split]):
            picks = rng.choice(num_speakers, 2, replace=False)
            utts, texts = [], []
            for pick in picks:
                utt_counts[pick] += 1
                utts.append(f"{codes[pick]}c{100 + utt_counts[pick]:04d}")
                texts.append(
                    grid_text(rng, _num_sentences(rng, config["sentences"]))
                )
            level = float(rng.uniform(0.0, 5.0)) / 2.0
            snr = float(rng.uniform(-6.0, 3.0))
            plan[split].append({
                "name": f"{utts[0]}_{level:.4f}_{utts[1]}_{-level:.4f}",
                "utterances": utts, "picks": [int(p) for p in picks],
                "texts": texts, "level": level, "snr": snr,
            })
    return plan


def _write_wham_transcripts(path, plan):
    """Write every source utterance's transcript (:data:`WHAM_TRANSCRIPTS`)."""
    lines = sorted(
        f"{utt} {text.upper()}\n"
        for mixtures in plan.values()
        for mixture in mixtures
        for utt, text in zip(mixture["utterances"], mixture["texts"])
    )
    with open(path, "w", encoding="utf-8") as fout:
        fout.writelines(lines)


def read_transcripts(path):
    """Read a ``<utterance id> <words>`` file (:data:`WHAM_TRANSCRIPTS`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "text")
    >>> _ = open(path, "w").write("01ac0101 BIN BLUE AT F TWO NOW\\n\\n")
    >>> read_transcripts(path)
    {'01ac0101': 'BIN BLUE AT F TWO NOW'}
    """
    transcripts = {}
    with open(path, encoding="utf-8") as fin:
        for number, line in enumerate(fin, 1):
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            if len(parts) < 2:
                raise UserError(
                    f"{path}:{number}: expected '<utterance id> <words>', got "
                    f"{line.strip()!r}"
                )
            transcripts[parts[0]] = " ".join(parts[1].split())
    return transcripts


def wham_transcripts(root):
    """Utterance id -> transcript of every source of a mini WHAM! corpus.

    Read from :data:`WHAM_TRANSCRIPTS`; a corpus generated before that
    file was written gets the same transcripts by replaying its random
    draws (:func:`_wham_plan`, from ``mini_corpus.json``'s seed and size),
    checked against its mixture files.

    Raises
    ------
    UserError
        One line, when ``root`` is not a mini WHAM! corpus.

    Example
    -------
    >>> wham_transcripts("/no/such/corpus")
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: /no/such/corpus: no transcripts.txt and no ...
    """
    path = os.path.join(root, WHAM_TRANSCRIPTS)
    if os.path.isfile(path):
        return read_transcripts(path)
    info = {}
    try:
        with open(os.path.join(root, "mini_corpus.json"),
                  encoding="utf-8") as fin:
            info = json.load(fin)
    except (OSError, ValueError):
        pass
    if info.get("corpus") != "wham" or info.get("size") not in SPEAKERS:
        raise UserError(
            f"{root}: no {WHAM_TRANSCRIPTS} and no mini WHAM! corpus "
            "information (mini_corpus.json); pass a transcripts file "
            "('<utterance id> <words>' lines, e.g. from WSJ0's .dot files)"
        )
    plan = _wham_plan(int(info["seed"]), info["size"])
    for split, mixtures in plan.items():
        folder = os.path.join(root, "wav8k", "min", WHAM_SPLITS[split],
                              "mix_both")
        missing = [m["name"] for m in mixtures if not os.path.isfile(
            os.path.join(folder, f"{m['name']}.wav"))]
        if missing:
            raise UserError(
                f"{folder}/{missing[0]}.wav: missing; {root} was not made by "
                "this generator, pass its transcripts file instead"
            )
    return {
        utt: text.upper()
        for mixtures in plan.values()
        for mixture in mixtures
        for utt, text in zip(mixture["utterances"], mixture["texts"])
    }


def _generate_wham(out_dir, seed, size, speech):
    speakers = _speaker_groups(seed, size, "wham")
    pools = _noise_pools(seed, "wham", speakers, speech)
    plan = _wham_plan(seed, size)
    folders = ("mix_both", "mix_clean", "mix_single", "s1", "s2", "noise")
    for split in SPLITS:
        split_speakers = speakers[split]
        for rate in ("wav8k", "wav16k"):
            for mode in ("min", "max"):
                for folder in folders:
                    os.makedirs(
                        os.path.join(
                            out_dir, rate, mode, WHAM_SPLITS[split], folder
                        ),
                        exist_ok=True,
                    )
        names = set()
        for index, mixture in enumerate(plan[split]):
            name, level, snr = (mixture["name"], mixture["level"],
                                mixture["snr"])
            waves = [
                speech(text, split_speakers[pick])
                for text, pick in zip(mixture["texts"], mixture["picks"])
            ]
            if name in names:
                raise RuntimeError(f"duplicate mixture name {name}")
            names.add(name)
            s1 = waves[0] * 10 ** (level / 20)
            s2 = waves[1] * 10 ** (-level / 20)
            longest = max(s1.size, s2.size)
            shortest = min(s1.size, s2.size)
            noise, _ = pools[split].draw(longest, index)
            noise = noise * (_rms(s1) / 10 ** (snr / 20))
            sources = {
                "s1": _fit(s1, longest),
                "s2": _fit(s2, longest),
                "noise": noise,
            }
            _write_mixture_set(
                sources,
                shortest,
                _path_maker(out_dir, WHAM_SPLITS[split], name),
                speech_names=("s1", "s2"),
            )
    _write_wham_transcripts(os.path.join(out_dir, WHAM_TRANSCRIPTS), plan)
    _write_info(out_dir, "wham", seed, size)


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


# ---------------------------------------------------------------- LibriMix


def _libri_speaker_id(index):
    return 19 + 37 * index


def _generate_librimix(out_dir, seed, size, speech, final_root=None):
    final_root = final_root or out_dir
    config = SIZES["librimix"][size]
    speakers = _speaker_groups(seed, size, "librimix")
    pools = _noise_pools(seed, "librimix", speakers, speech)
    code_offset = 0
    ids = {}
    for split in SPLITS:
        ids[split] = [
            _libri_speaker_id(code_offset + i)
            for i in range(len(speakers[split]))
        ]
        code_offset += len(speakers[split])
    for num_spks in (2, 3):
        corpus_dir = os.path.join(out_dir, f"Libri{num_spks}Mix")
        speech_names = tuple(f"s{i + 1}" for i in range(num_spks))
        folders = ("mix_both", "mix_clean", "mix_single", "noise")
        folders += speech_names
        metadata = {}
        for split in SPLITS:
            split_dir = LIBRIMIX_SPLITS[split]
            split_speakers = speakers[split]
            utt_counts = [0] * len(split_speakers)
            rng = _split_rng(seed, "librimix", split, extra=num_spks)
            for rate in ("wav8k", "wav16k"):
                for mode in ("min", "max"):
                    for folder in folders:
                        os.makedirs(
                            os.path.join(
                                corpus_dir, rate, mode, split_dir, folder
                            ),
                            exist_ok=True,
                        )
            for index in range(config[num_spks][split]):
                picks = rng.choice(len(split_speakers), num_spks, replace=False)
                utts, waves = [], []
                for pick in picks:
                    utt_counts[pick] += 1
                    spk_id = ids[split][pick]
                    chapter = 1000 + (spk_id * 7919) % 9000
                    utts.append(f"{spk_id}-{chapter}-{utt_counts[pick]:04d}")
                    text = grid_text(
                        rng, _num_sentences(rng, config["sentences"])
                    )
                    wave = speech(text, split_speakers[pick])
                    level_db = float(rng.uniform(-33.0, -25.0))
                    waves.append(wave * (10 ** (level_db / 20) / _rms(wave)))
                mixture_id = "_".join(utts)
                longest = max(w.size for w in waves)
                shortest = min(w.size for w in waves)
                noise, _ = pools[split].draw(longest, index + 100000 * num_spks)
                noise_db = float(rng.uniform(-38.0, -30.0))
                sources = {
                    name: _fit(wave, longest)
                    for name, wave in zip(speech_names, waves)
                }
                sources["noise"] = noise * 10 ** (noise_db / 20)
                written = _write_mixture_set(
                    sources,
                    shortest,
                    _path_maker(corpus_dir, split_dir, mixture_id),
                    speech_names,
                )
                for (rate, mode), (paths, length) in written.items():
                    key = (rate, mode, split_dir)
                    metadata.setdefault(key, []).append(
                        (mixture_id, paths, length)
                    )
        _write_librimix_metadata(
            corpus_dir, final_root, out_dir, metadata, speech_names
        )
    _write_info(out_dir, "librimix", seed, size)


def _write_librimix_metadata(
    corpus_dir, final_root, out_dir, metadata, speech_names
):
    """Write LibriMix's ``metadata/mixture_<split>_<mix>.csv`` files."""

    def final(path):
        return os.path.join(
            os.path.abspath(final_root), os.path.relpath(path, out_dir)
        )

    columns = {
        "mix_both": list(speech_names) + ["noise"],
        "mix_clean": list(speech_names),
        "mix_single": ["s1", "noise"],
    }
    for (rate, mode, split_dir), rows in metadata.items():
        meta_dir = os.path.join(
            corpus_dir, f"wav{rate // 1000}k", mode, "metadata"
        )
        os.makedirs(meta_dir, exist_ok=True)
        for mixture, parts in columns.items():
            header = ["mixture_ID", "mixture_path"]
            header += [
                f"source_{name[1:]}_path" for name in parts if name != "noise"
            ]
            if "noise" in parts:
                header.append("noise_path")
            header.append("length")
            path = os.path.join(meta_dir, f"mixture_{split_dir}_{mixture}.csv")
            with open(path, "w", newline="") as fout:
                writer = csv.writer(fout)
                writer.writerow(header)
                for mixture_id, paths, length in rows:
                    writer.writerow(
                        [mixture_id, final(paths[mixture])]
                        + [final(paths[name]) for name in parts]
                        + [length]
                    )


# ---------------------------------------------------------------- VoiceBank


def _generate_voicebank(out_dir, seed, size, speech):
    config = SIZES["voicebank"][size]
    others = [
        s for s in VOICEBANK_TRAIN_SPEAKERS if s not in VOICEBANK_VALID_SPEAKERS
    ]
    train_names = others[: config["train_speakers"]]
    groups = {
        "train": train_names,
        "valid": list(VOICEBANK_VALID_SPEAKERS),
        "test": list(VOICEBANK_TEST_SPEAKERS),
    }
    counts = SPEAKERS[size]
    all_groups = {split: len(names) for split, names in groups.items()}
    for split in SPLITS:
        all_groups[f"babble_{split}"] = counts["babble"]
    speakers = tts.split_speakers(
        all_groups, seed=seed * 10 + _CORPUS_CODES["voicebank"]
    )
    pools = _noise_pools(seed, "voicebank", speakers, speech)
    folders = {
        "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav",
                  "trainset_28spk_txt"),
        "test": ("clean_testset_wav", "noisy_testset_wav", "testset_txt"),
    }  # fmt: skip
    for names in folders.values():
        for name in names:
            os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for split in SPLITS:
        rng = _split_rng(seed, "voicebank", split)
        snrs = VOICEBANK_TEST_SNRS if split == "test" else VOICEBANK_TRAIN_SNRS
        clean_dir, noisy_dir, txt_dir = folders[
            "test" if split == "test" else "train"
        ]
        index = 0
        for spk_name, speaker in zip(groups[split], speakers[split]):
            for utt in range(1, config[split] + 1):
                utt_id = f"{spk_name}_{utt:03d}"
                text = grid_text(rng, _num_sentences(rng, config["sentences"]))
                clean = speech(text, speaker)
                clean = clean * 10 ** (float(rng.uniform(-6.0, 3.0)) / 20)
                snr = float(rng.choice(snrs))
                noise, _ = pools[split].draw(clean.size, index)
                index += 1
                noise = noise * (_rms(clean) / 10 ** (snr / 20))
                parts = _quantize(
                    {"clean": clean, "noise": noise},
                    [clean, noise, clean + noise],
                )
                noisy = parts["clean"] + parts["noise"]
                _write_pcm(
                    os.path.join(out_dir, clean_dir, f"{utt_id}.wav"),
                    parts["clean"],
                    BASE_RATE,
                )
                _write_pcm(
                    os.path.join(out_dir, noisy_dir, f"{utt_id}.wav"),
                    noisy,
                    BASE_RATE,
                )
                with open(
                    os.path.join(out_dir, txt_dir, f"{utt_id}.txt"), "w"
                ) as fout:
                    fout.write(to_transcript(text) + "\n")
    _write_info(out_dir, "voicebank", seed, size)


# ---------------------------------------------------------------- public API


def _check_args(corpus, size):
    if corpus not in CORPORA:
        raise UserError(
            f"unknown mini corpus {corpus!r}; choose one of "
            f"{', '.join(CORPORA)}"
        )
    if size not in ("tiny", "small"):
        raise UserError(
            f"unknown mini corpus size {size!r}; choose tiny or small"
        )


def generate(corpus, out_dir, seed=0, size="tiny", final_root=None):
    """Generate a mini corpus into ``out_dir`` (its root folder).

    Arguments
    ---------
    corpus : str
        ``"wham"``, ``"librimix"``, ``"voicebank"`` or ``"av"``.
    out_dir : str
        Root of the corpus (``wav8k/`` for WHAM!, ``Libri2Mix/`` and
        ``Libri3Mix/`` for LibriMix, the six VoiceBank folders).
    seed : int
        Seed; the same seed gives the same files.
    size : str
        ``"tiny"`` or ``"small"``.
    final_root : str, optional
        Where the corpus will finally live, for the absolute paths written
        in LibriMix's metadata (default ``out_dir``).

    Returns
    -------
    str
        ``out_dir``.

    Example
    -------
    >>> import tempfile
    >>> root = generate("voicebank", tempfile.mkdtemp(), size="tiny")
    >>> sorted(os.listdir(os.path.join(root, "testset_txt")))[:2]
    ['p232_001.txt', 'p232_002.txt']
    """
    _check_args(corpus, size)
    os.makedirs(out_dir, exist_ok=True)
    if corpus == "av":  # audio-visual: its own module and layout
        from lobes.data.av_corpus import generate_av

        with _one_thread():
            return generate_av(out_dir, seed=seed, size=size)
    speech = _Speech()
    # Many short convolutions: one thread is several times faster than a
    # pool of threads competing for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if corpus == "wham":
            _generate_wham(out_dir, seed, size, speech)
        elif corpus == "librimix":
            _generate_librimix(out_dir, seed, size, speech, final_root)
        else:
            _generate_voicebank(out_dir, seed, size, speech)
    finally:
        torch.set_num_threads(threads)
    return out_dir


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def default_cache_dir():
    """The cache folder: ``$NRSB_CACHE`` or ``~/.cache/noise_robust_sb``.

    Example
    -------
    >>> os.path.basename(default_cache_dir()) != ""
    True
    """
    return os.environ.get("NRSB_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "noise_robust_sb"
    )


def _is_complete(marker):
    """Whether a finished corpus of the current generator version is there."""
    try:
        with open(marker, encoding="utf-8") as fin:
            return json.load(fin).get("version") == GENERATOR_VERSION
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(lock_path):
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_mini_corpus(corpus, size="small", seed=0, cache_dir=None):
    """Return the folder of a cached mini corpus, generating it if needed.

    The corpus lives in ``<cache>/<corpus>_<size>_seed<seed>``. It is
    generated into a temporary sibling folder and renamed into place with a
    ``.complete`` marker, under a file lock: an interrupted generation is
    redone and concurrent callers wait for one another.

    Arguments
    ---------
    corpus : str
        ``"wham"``, ``"librimix"`` or ``"voicebank"``.
    size : str
        ``"tiny"`` or ``"small"``.
    seed : int
        Corpus seed.
    cache_dir : str, optional
        Cache folder (default :func:`default_cache_dir`).

    Returns
    -------
    str
        The corpus root folder.

    Example
    -------
    >>> import tempfile
    >>> cache = tempfile.mkdtemp()
    >>> root = ensure_mini_corpus("voicebank", "tiny", cache_dir=cache)
    >>> os.path.basename(root)
    'voicebank_tiny_seed0'
    >>> ensure_mini_corpus("voicebank", "tiny", cache_dir=cache) == root
    True
    """
    _check_args(corpus, size)
    cache = os.path.abspath(
        os.path.expanduser(cache_dir or default_cache_dir())
    )
    name = f"{corpus}_{size}_seed{int(seed)}"
    final = os.path.join(cache, name)
    marker = os.path.join(final, ".complete")
    if _is_complete(marker):
        return final
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"{cache}: cannot create the mini corpus cache ({err}); set "
            "NRSB_CACHE to a writable folder"
        ) from None
    with _locked(os.path.join(cache, f".{name}.lock")):
        if _is_complete(marker):
            return final
        # leftovers of an interrupted generation
        for entry in os.listdir(cache):
            if entry.startswith(f".{name}.tmp"):
                shutil.rmtree(os.path.join(cache, entry), ignore_errors=True)
        if os.path.isdir(final):
            shutil.rmtree(final)
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp", dir=cache)
        try:
            start = time.time()
            print(
                f"Generating the {size} mini {corpus} corpus in {final} ...",
                file=sys.stderr,
                flush=True,
            )
            generate(corpus, tmp, seed=seed, size=size, final_root=final)
            with open(os.path.join(tmp, ".complete"), "w") as fout:
                json.dump(
                    {
                        "version": GENERATOR_VERSION,
                        "seconds": round(time.time() - start, 1),
                    },
                    fout,
                )
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


@exit_on_user_error
def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Generate a synthetic mini corpus in a real layout."
    )
    parser.add_argument("--corpus", choices=CORPORA, required=True)
    parser.add_argument("--out", required=True, help="corpus root folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    args = parser.parse_args(argv)
    start = time.time()
    generate(args.corpus, args.out, seed=args.seed, size=args.size)
    print(
        f"{args.corpus} ({args.size}, seed {args.seed}) written to "
        f"{args.out} in {time.time() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
