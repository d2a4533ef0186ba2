"""The audio-visual corpus layout, its mini version, and its mixtures.

**Layout.** The AV recipes (``recipes/NTCD-TIMIT/av_separation``) read
utterances as a 16 kHz mono wav plus a ``T x H x W`` uint8 ``.npy`` of lip
regions of interest (one grey-level image per video frame, frame ``k``
covering ``[k / fps, (k + 1) / fps)`` of the audio). Real corpora are
converted into one of two layouts (extract the lip ROIs from the videos with
any face/landmark tracker, keep the audio at 16 kHz):

NTCD-TIMIT (TCD-TIMIT video, 30 fps) -- :func:`lobes.data.av_prepare.
prepare_ntcd_timit`::

    <root>/clean/{volunteers,lipspeakers}/<speaker>/<utt>.wav
    <root>/lips/{volunteers,lipspeakers}/<speaker>/<utt>.npy

GRID (25 fps) -- :func:`lobes.data.av_prepare.prepare_grid`::

    <root>/audio/<speaker>/<utt>.wav      (e.g. audio/s1/bbaf2n.wav)
    <root>/lips/<speaker>/<utt>.npy

and, in both:

- ``<root>/noise/{train,valid,test}/*.wav``: noise recordings (16 kHz mono)
  that the preparation mixes into the two-speaker mixtures, disjoint across
  splits (e.g. NTCD-TIMIT's noise types cut into three parts);
- ``<root>/av_corpus.json`` (optional): ``{"fps": 25}`` when the lips are
  not at the corpus's usual rate;
- ``<root>/splits.json`` (optional): ``{"train": [speakers], "valid": [...],
  "test": [...]}``; without it the speakers are split by a fixed rule
  (:func:`lobes.data.av_prepare.default_splits`);
- ``<root>/mixtures/<split>/`` (optional): fixed mixtures, as
  :func:`write_mixtures` writes them (``{mix,s1,s2,noise}/<id>.wav`` and
  ``mixtures.csv``); the preparation builds them into its save folder when
  the corpus has none.

**Mini corpus.** :func:`generate_av` writes a synthetic corpus in the
NTCD-TIMIT layout (all speakers under ``volunteers``): GRID-like sentences
spoken by eSpeak NG voices, lips rendered from eSpeak's timed phonemes
(:mod:`lobes.data.lips`), 30 frames a second, 32 x 32 ROIs; speakers (and
babble voices) disjoint across splits; noise recordings from
:class:`lobes.data.noises.NoisePool`; fixed mixtures for every split. Test
speakers have more utterances than the test mixtures use; the rest serve a
speaker-dependent setting. Deterministic for a seed. Sizes: ``tiny`` (a few
utterances, seconds) and ``small`` (about 500 utterances, a few minutes).

**Mixtures** (:func:`write_mixtures`): two utterances of distinct speakers,
the second at ``-2.5 .. 2.5`` dB against the first, both starting at 0 (the
shorter one zero-padded), plus a noise excerpt at an SNR cycling through
:data:`MIXTURE_SNRS` dB against the sum of the speakers. Written as 16-bit
PCM so that ``mix = s1 + s2 + noise`` holds sample by sample.

Command line (mini corpus, or mixtures for a converted real corpus)::

    python -m lobes.data.mini_corpora --corpus av --out DIR --size tiny
    python -m lobes.data.av_prepare mix --root DIR --split test --count 100

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import json
import os

import numpy as np
import soundfile as sf

from lobes.data import lips, tts, voices
from lobes.data.audio import read_audio
from lobes.data.grid_grammar import grid_text
from lobes.data.noises import NoisePool
from lobes.errors import DataFolderError

SAMPLE_RATE = 16000
#: Video rate and ROI size of the mini corpus (TCD-TIMIT's camera is 30 fps).
MINI_FPS = 30
MINI_ROI = (32, 32)
#: Noise SNRs (dB, against the sum of the two speakers) of the mixtures.
MIXTURE_SNRS = (0.0, 5.0, 10.0)
#: Level of the second speaker against the first (dB).
SPEAKER_GAIN_DB = (-2.5, 2.5)
SPLITS = ("train", "valid", "test")
#: Columns of ``mixtures.csv``.
MIXTURE_COLUMNS = (
    "ID", "s1_utt", "s2_utt", "noise_file", "noise_offset", "snr_db",
    "s2_gain_db", "length",
)  # fmt: skip

#: Mini corpus sizes: speakers and utterances per split, fixed mixtures
#: per split, noise recordings per split, babble voices per split. Test
#: speakers have ``test_mixture_utts`` utterances for the test mixtures and
#: the rest for the speaker-dependent setting.
AV_SIZES = {
    "tiny": {
        "speakers": {"train": 4, "valid": 2, "test": 3},
        "utterances": {"train": 3, "valid": 2, "test": 4},
        "test_mixture_utts": 2,
        "mixtures": {"train": 6, "valid": 2, "test": 3},
        "noises": 2,
        "noise_seconds": 4.0,
        "babble": 2,
    },
    "small": {
        "speakers": {"train": 24, "valid": 4, "test": 6},
        "utterances": {"train": 14, "valid": 6, "test": 16},
        "test_mixture_utts": 10,
        "mixtures": {"train": 300, "valid": 24, "test": 30},
        "noises": 6,
        "noise_seconds": 8.0,
        "babble": 4,
    },
}

_SPEECH_RMS = 0.05
_PEAK = 0.9
_CORPUS_CODE = 4


def _rms(signal):
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def _write_int16(path, samples):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, samples.astype(np.int16), SAMPLE_RATE, subtype="PCM_16")


def _to_int16(signals):
    """Scale signals by one factor within the peak limit, round to int16.

    Returns integer arrays (int32) whose sums never clip.
    """
    peak = max(float(np.max(np.abs(s), initial=0.0)) for s in signals)
    total = np.sum([np.abs(s) for s in signals], axis=0)
    peak = max(peak, float(np.max(total, initial=0.0)))
    factor = min(1.0, _PEAK / peak) if peak > 0 else 1.0
    return [
        np.round(np.asarray(s, np.float64) * factor * 32768).astype(np.int32)
        for s in signals
    ]


def speaker_code(index, speaker):
    """An NTCD-TIMIT-like speaker name: number and a letter.

    Example
    -------
    >>> speaker_code(4, voices.Speaker("a", "en", "f3", 70, 50, 160))
    '05F'
    """
    return f"{index + 1:02d}{'F' if speaker.pitch >= 50 else 'M'}"


# ---------------------------------------------------------------- mixtures


def _pair_slots(slots, count, rng):
    """Pair ``(speaker, utt)`` slots of distinct speakers, each used once.

    Greedy: repeatedly take the two speakers with most slots left (ties
    broken at random), up to ``count`` pairs.
    """
    by_speaker = {}
    for speaker, utt in slots:
        by_speaker.setdefault(speaker, []).append(utt)
    pairs = []
    while len(pairs) < count:
        alive = [s for s, u in by_speaker.items() if u]
        if len(alive) < 2:
            break
        order = sorted(
            alive, key=lambda s: (-len(by_speaker[s]), float(rng.random()))
        )
        one, two = order[0], order[1]
        pairs.append(
            ((one, by_speaker[one].pop(0)), (two, by_speaker[two].pop(0)))
        )
    return pairs


def _noise_excerpt(noise, length, rng):
    """A ``length`` excerpt of a noise (tiled when shorter), and its start."""
    if noise.size >= length:
        start = int(rng.integers(0, noise.size - length + 1))
        return noise[start : start + length], start
    reps = int(np.ceil(length / noise.size))
    return np.tile(noise, reps)[:length], 0


def write_mixtures(
    utterances, noise_files, out_dir, count, seed=0, unique=False,
    snrs=MIXTURE_SNRS,
):  # fmt: skip
    """Write two-speaker noisy mixtures and their ``mixtures.csv``.

    Arguments
    ---------
    utterances : list of dict
        ``{"id": "<speaker>/<utt>", "speaker": ..., "wav": path}``.
    noise_files : list of str
        Noise recordings to draw excerpts from.
    out_dir : str
        Destination: ``{mix,s1,s2,noise}/<id>.wav`` and ``mixtures.csv``.
    count : int
        Number of mixtures.
    seed : int or sequence of int
        Seed of every draw.
    unique : bool
        Use every utterance at most once (as far as ``count`` allows; the
        first utterances of each speaker first), as for a test set;
        otherwise draw speakers and utterances at random.
    snrs : sequence of float
        Noise SNRs (dB against the two speakers' sum), used in turn.

    Returns
    -------
    str
        The path of ``mixtures.csv``.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> import torch
    >>> folder = tempfile.mkdtemp()
    >>> utts = []
    >>> for i, spk in enumerate(["a", "a", "b", "b"]):
    ...     path = f"{folder}/{spk}{i}.wav"
    ...     write_audio(path, 0.1 * torch.randn(1600), 16000)
    ...     utts.append({"id": f"{spk}/u{i}", "speaker": spk, "wav": path})
    >>> write_audio(f"{folder}/n.wav", 0.1 * torch.randn(8000), 16000)
    >>> table = write_mixtures(utts, [f"{folder}/n.wav"], f"{folder}/mix",
    ...                        2, unique=True)
    >>> rows = list(csv.DictReader(open(table)))
    >>> [sorted([r["s1_utt"][0], r["s2_utt"][0]]) for r in rows]
    [['a', 'b'], ['a', 'b']]
    >>> len({r["s1_utt"] for r in rows} | {r["s2_utt"] for r in rows})
    4
    >>> parts = [read_audio(f"{folder}/mix/{k}/{rows[0]['ID']}.wav")
    ...          for k in ("s1", "s2", "noise", "mix")]
    >>> bool(torch.allclose(parts[0] + parts[1] + parts[2], parts[3]))
    True
    """
    if count <= 0:
        raise ValueError("count must be positive")
    speakers = sorted({u["speaker"] for u in utterances})
    if len(speakers) < 2:
        raise DataFolderError(
            f"{out_dir}: mixtures need utterances of at least 2 speakers, "
            f"got {len(speakers)}; add speakers to this split"
        )
    if not noise_files:
        raise DataFolderError(
            f"{out_dir}: no noise recordings to mix; put 16 kHz mono wavs "
            "in <root>/noise/<split>/"
        )
    rng = np.random.default_rng(seed)
    by_id = {u["id"]: u for u in utterances}
    if unique:
        slots = [(u["speaker"], u["id"]) for u in utterances]
        pairs = [
            (one[1], two[1]) for one, two in _pair_slots(slots, count, rng)
        ]
    else:
        pairs = []
        by_speaker = {}
        for utt in utterances:
            by_speaker.setdefault(utt["speaker"], []).append(utt["id"])
        for _ in range(count):
            one, two = rng.choice(len(speakers), 2, replace=False)
            pairs.append(
                tuple(
                    str(rng.choice(by_speaker[speakers[k]]))
                    for k in (one, two)
                )
            )
    noises = {}
    rows = []
    for index, (first, second) in enumerate(pairs):
        s1 = read_audio(by_id[first]["wav"]).numpy().astype(np.float64)
        s2 = read_audio(by_id[second]["wav"]).numpy().astype(np.float64)
        gain_db = float(rng.uniform(*SPEAKER_GAIN_DB))
        s2 = s2 * (_rms(s1) / max(_rms(s2), 1e-12)) * 10 ** (gain_db / 20)
        length = max(s1.size, s2.size)
        s1 = np.pad(s1, (0, length - s1.size))
        s2 = np.pad(s2, (0, length - s2.size))
        noise_file = noise_files[int(rng.integers(len(noise_files)))]
        if noise_file not in noises:
            noises[noise_file] = read_audio(noise_file).numpy()
        noise, offset = _noise_excerpt(noises[noise_file], length, rng)
        snr = float(snrs[index % len(snrs)])
        noise = noise * (_rms(s1 + s2) / max(_rms(noise), 1e-12))
        noise = noise * 10 ** (-snr / 20)
        parts = _to_int16([s1, s2, noise])
        mix_id = (
            f"m{index:04d}_{first.replace('/', '-')}_"
            f"{second.replace('/', '-')}"
        )
        for name, samples in zip(("s1", "s2", "noise"), parts):
            _write_int16(os.path.join(out_dir, name, f"{mix_id}.wav"), samples)
        _write_int16(
            os.path.join(out_dir, "mix", f"{mix_id}.wav"), sum(parts)
        )
        rows.append(
            [mix_id, first, second, os.path.relpath(noise_file, out_dir),
             offset, snr, round(gain_db, 4), length]
        )  # fmt: skip
    table = os.path.join(out_dir, "mixtures.csv")
    with open(table, "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout)
        writer.writerow(MIXTURE_COLUMNS)
        writer.writerows(rows)
    return table


# ---------------------------------------------------------------- mini corpus


def generate_av(out_dir, seed=0, size="tiny"):
    """Write the mini audio-visual corpus (NTCD-TIMIT layout) into ``out_dir``.

    Arguments
    ---------
    out_dir : str
        Corpus root.
    seed : int
        Seed; the same seed gives the same files.
    size : str
        ``"tiny"`` or ``"small"`` (:data:`AV_SIZES`).

    Returns
    -------
    str
        ``out_dir``.

    Example
    -------
    >>> import tempfile
    >>> root = generate_av(tempfile.mkdtemp(), size="tiny")
    >>> sorted(os.listdir(root))  # doctest: +NORMALIZE_WHITESPACE
    ['av_corpus.json', 'clean', 'lips', 'mixtures', 'noise', 'splits.json']
    """
    config = AV_SIZES[size]
    tts.check_espeak()
    groups = dict(config["speakers"])
    for split in SPLITS:
        groups[f"babble_{split}"] = config["babble"]
    pools = voices.split_speakers(groups, seed=seed * 10 + _CORPUS_CODE)
    splits = {}
    utterances = {}
    code = 0
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, _CORPUS_CODE, split_index, 1])
        splits[split] = []
        utterances[split] = []
        for speaker in pools[split]:
            name = speaker_code(code, speaker)
            code += 1
            splits[split].append(name)
            look = lips.appearance_for(f"{seed}:{name}")
            for utt_index in range(config["utterances"][split]):
                utt = f"sx{101 + utt_index}"
                text = grid_text(rng, 1)
                wav, phones = tts.synthesize_with_phonemes(
                    text, speaker, SAMPLE_RATE
                )
                wav = wav.numpy().astype(np.float64)
                wav = wav * (_SPEECH_RMS / max(_rms(wav), 1e-12))
                samples = _to_int16([wav])[0]
                wav_path = os.path.join(
                    out_dir, "clean", "volunteers", name, f"{utt}.wav"
                )
                _write_int16(wav_path, samples)
                frames = lips.render_lips(
                    phones,
                    samples.size / SAMPLE_RATE,
                    look,
                    fps=MINI_FPS,
                    size=MINI_ROI,
                    seed=[seed, split_index, code, utt_index],
                )
                lips_path = os.path.join(
                    out_dir, "lips", "volunteers", name, f"{utt}.npy"
                )
                os.makedirs(os.path.dirname(lips_path), exist_ok=True)
                np.save(lips_path, frames)
                in_mixtures = (
                    split != "test" or utt_index < config["test_mixture_utts"]
                )
                if in_mixtures:
                    utterances[split].append(
                        {"id": f"{name}/{utt}", "speaker": name,
                         "wav": wav_path}
                    )  # fmt: skip
    for split_index, split in enumerate(SPLITS):
        pool = NoisePool(
            seed=[seed, _CORPUS_CODE, split_index, 77],
            sample_rate=SAMPLE_RATE,
            babble_speakers=pools[f"babble_{split}"],
            speak=_babble_speech,
        )
        noise_files = []
        length = int(config["noise_seconds"] * SAMPLE_RATE)
        for index in range(config["noises"]):
            noise, kind = pool.draw(length, index)
            noise = noise * _SPEECH_RMS
            path = os.path.join(
                out_dir, "noise", split, f"{kind}_{index:03d}.wav"
            )
            _write_int16(path, _to_int16([noise])[0])
            noise_files.append(path)
        write_mixtures(
            utterances[split],
            noise_files,
            os.path.join(out_dir, "mixtures", split),
            config["mixtures"][split],
            seed=[seed, _CORPUS_CODE, split_index, 5],
            unique=split == "test",
        )
    with open(os.path.join(out_dir, "splits.json"), "w") as fout:
        json.dump(splits, fout, indent=2)
        fout.write("\n")
    info = {
        "corpus": "av",
        "layout": "ntcd-timit",
        "fps": MINI_FPS,
        "roi": list(MINI_ROI),
        "sample_rate": SAMPLE_RATE,
        "seed": seed,
        "size": size,
        "generator": "lobes.data.av_corpus",
        "note": "synthetic speech (eSpeak NG), rendered lips, synthetic "
        "noises",
    }
    with open(os.path.join(out_dir, "av_corpus.json"), "w") as fout:
        json.dump(info, fout, indent=2, sort_keys=True)
        fout.write("\n")
    return out_dir


def _babble_speech(text, speaker):
    """Babble voices for the noise pools: synthesized, unit level."""
    wav = tts.synthesize(text, speaker, SAMPLE_RATE).numpy()
    rms = _rms(wav)
    return (wav / rms if rms > 0 else wav).astype(np.float32)
