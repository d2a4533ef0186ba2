"""The mini VoiceBank-DEMAND writer: its speakers, SNRs and six folders.

Authors
 * noise-robust-sb contributors 2025
"""

import os

from lobes.data import voices
from lobes.data.grid_grammar import grid_text, to_transcript
from lobes.data.mini.common import (
    _CORPUS_CODES,
    BASE_RATE,
    SIZES,
    SPEAKERS,
    SPLITS,
    _noise_pools,
    _num_sentences,
    _quantize,
    _rms,
    _split_rng,
    _write_info,
    _write_pcm,
)

VOICEBANK_TRAIN_SPEAKERS = (
    "p226 p227 p228 p230 p231 p233 p236 p239 p243 p244 p250 p254 p256 p258 "
    "p259 p267 p268 p269 p270 p273 p274 p276 p277 p278 p279 p282 p286 p287"
).split()
VOICEBANK_VALID_SPEAKERS = ("p226", "p287")
VOICEBANK_TEST_SPEAKERS = ("p232", "p257")
VOICEBANK_TRAIN_SNRS = (0.0, 5.0, 10.0, 15.0)
VOICEBANK_TEST_SNRS = (2.5, 7.5, 12.5, 17.5)


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
    speakers = voices.split_speakers(
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
