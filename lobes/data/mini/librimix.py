"""The mini LibriMix writer (Libri2Mix and Libri3Mix, with their metadata).

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import os

from lobes.data.grid_grammar import grid_text
from lobes.data.mini.common import (
    SIZES,
    SPLITS,
    _fit,
    _noise_pools,
    _num_sentences,
    _path_maker,
    _rms,
    _speaker_groups,
    _split_rng,
    _write_info,
    _write_mixture_set,
)

LIBRIMIX_SPLITS = {"train": "train-100", "valid": "dev", "test": "test"}


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
