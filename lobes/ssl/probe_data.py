"""The word probe's data: unheard speakers, their words, noisy test pairs.

Each of the 51 words of the GRID vocabulary (:mod:`lobes.data.grid_grammar`)
is synthesised in isolation with eSpeak NG by speakers built on voice
variants that the VoiceBank mini corpus never uses for training or
validation speech or babble (its test speakers' variants included). Half
the variants train the probes, the other half test them, so every test
speaker is new to both the self-supervised model and the probe
(:mod:`lobes.ssl.probe`). The noisy test words add the corpus's test noises
at :data:`NOISY_PROBE_SNR_DB`.
"""

import glob
import os

import numpy as np
import torch

from lobes.data import grid_grammar, tts, voices
from lobes.data import mini_corpora as mc
from lobes.data.audio import read_audio
from lobes.errors import DataFolderError
from lobes.ssl_features import SSL_SAMPLE_RATE

#: The probe's classes: the GRID vocabulary.
PROBE_WORDS = (
    grid_grammar.COMMANDS
    + grid_grammar.COLOURS
    + grid_grammar.PREPOSITIONS
    + grid_grammar.LETTERS
    + grid_grammar.DIGITS
    + grid_grammar.ADVERBS
)
#: Speaker groups of the VoiceBank mini corpus whose voices a model
#: pre-trained on its training folder may have heard.
SEEN_GROUPS = ("train", "valid", "babble_train", "babble_valid")
#: SNR of the noisy word probe.
NOISY_PROBE_SNR_DB = 5.0


def voicebank_speaker_groups(size="small", seed=0):
    """The eSpeak speakers of the VoiceBank mini corpus, by group.

    Rebuilds the speaker draw of :mod:`lobes.data.mini_corpora` (the same
    group sizes and seed), so the probe knows which voice variants a model
    pre-trained on the corpus's training folder has heard.

    Example
    -------
    >>> groups = voicebank_speaker_groups("tiny")
    >>> [len(groups[g]) for g in ("train", "valid", "test")]
    [4, 2, 2]
    """
    config = mc.SIZES["voicebank"][size]
    groups = {
        "train": config["train_speakers"],
        "valid": len(mc.VOICEBANK_VALID_SPEAKERS),
        "test": len(mc.VOICEBANK_TEST_SPEAKERS),
    }
    for split in mc.SPLITS:
        groups[f"babble_{split}"] = mc.SPEAKERS[size]["babble"]
    return voices.split_speakers(
        groups, seed=seed * 10 + mc._CORPUS_CODES["voicebank"]
    )


def probe_speakers(size="small", seed=0, per_side=8):
    """Speakers on voice variants unheard in pre-training, split in two.

    Arguments
    ---------
    size, seed : str, int
        The VoiceBank mini corpus the model was pre-trained on.
    per_side : int
        The most speakers on each side (one per variant).

    Returns
    -------
    train, test : list of Speaker
        The probe's training and test speakers; no variant is shared
        between the two sides or with the corpus's seen groups.

    Example
    -------
    >>> train, test = probe_speakers("tiny", per_side=3)
    >>> len(train), len(test)
    (3, 3)
    >>> {s.variant for s in train}.isdisjoint(s.variant for s in test)
    True
    """
    groups = voicebank_speaker_groups(size, seed)
    seen = {spk.variant for name in SEEN_GROUPS for spk in groups[name]}
    unseen = [variant for variant in voices.VARIANTS if variant not in seen]
    sides = (unseen[0::2][:per_side], unseen[1::2][:per_side])
    if not all(sides):
        raise ValueError("too few unseen voice variants for a probe")
    return tuple(
        voices.make_speaker_pool(
            len(variants),
            variants=variants,
            seed=seed * 100 + 61 + index,
            prefix=f"probe_{name}_",
        )
        for index, (name, variants) in enumerate(zip(("train", "test"), sides))
    )


def synthesize_words(speakers, words=PROBE_WORDS):
    """Every word spoken in isolation by every speaker, at 16 kHz.

    Returns
    -------
    wavs : list of torch.Tensor
        ``[time]`` waveforms (at least one 25 ms frame long).
    labels : numpy.ndarray
        The index of each waveform's word in ``words``.

    Example
    -------
    >>> wavs, labels = synthesize_words(voices.make_speaker_pool(1), ("bin",))
    >>> len(wavs), labels.tolist(), wavs[0].numel() > 3200
    (1, [0], True)
    """
    wavs, labels = [], []
    for speaker in speakers:
        for index, word in enumerate(words):
            wav = tts.synthesize(word, speaker, SSL_SAMPLE_RATE)
            if wav.numel() < 400:
                wav = torch.nn.functional.pad(wav, (0, 400 - wav.numel()))
            wavs.append(wav)
            labels.append(index)
    return wavs, np.asarray(labels)


def read_test_pairs(root):
    """Clean and noisy test utterances of a VoiceBank-DEMAND folder.

    Returns
    -------
    list of (torch.Tensor, torch.Tensor)
        ``(clean, noisy)`` in file-name order.

    Example
    -------
    >>> read_test_pairs("/no/such/voicebank")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/voicebank/clean_testset_wav: ...
    """
    folders = []
    for kind in ("clean", "noisy"):
        folder = os.path.join(root, f"{kind}_testset_wav_16k")
        if not os.path.isdir(folder):
            folder = os.path.join(root, f"{kind}_testset_wav")
        if not os.path.isdir(folder):
            raise DataFolderError(
                f"{folder}: missing; the noise-invariance measure reads "
                "{clean,noisy}_testset_wav of a VoiceBank-DEMAND root"
            )
        folders.append(folder)
    names = sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(folders[0], "*"))
    )
    names = [name for name in names if name.endswith(".wav")]
    if len(names) < 2:
        raise DataFolderError(f"{folders[0]}: fewer than 2 .wav files")
    return [
        (
            read_audio(os.path.join(folders[0], name), SSL_SAMPLE_RATE),
            read_audio(os.path.join(folders[1], name), SSL_SAMPLE_RATE),
        )
        for name in names
    ]


def add_noise(wavs, noises, snr_db, seed=0):
    """Add a segment of a noise (drawn in turn) to each waveform at an SNR.

    Example
    -------
    >>> noisy = add_noise([torch.ones(100)], [torch.randn(50)], 0.0)
    >>> round(float((noisy[0] - 1).pow(2).mean()), 3)
    1.0
    """
    rng = np.random.default_rng([seed, 3030])
    out = []
    for wav in wavs:
        noise = noises[int(rng.integers(len(noises)))]
        if noise.numel() < wav.numel():
            noise = noise.repeat(-(-wav.numel() // noise.numel()))
        first = int(rng.integers(0, noise.numel() - wav.numel() + 1))
        noise = noise[first : first + wav.numel()]
        gain = wav.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt().clamp_min(
            1e-8
        )
        out.append(wav + noise * gain / 10 ** (snr_db / 20))
    return out


def probe_data(corpus_size="small", corpus_seed=0, per_side=8, noises=()):
    """Synthesise the word probe's clean and noisy waveforms.

    Arguments
    ---------
    corpus_size, corpus_seed : str, int
        The mini corpus whose unheard voice variants the speakers use.
    per_side : int
        Speakers on each side of the probe.
    noises : sequence of torch.Tensor
        Noise recordings for the noisy test words.

    Returns
    -------
    dict
        ``train_wavs``, ``train_labels``, ``test_wavs``, ``test_labels``,
        ``noisy_test_wavs`` and the speakers' names.

    Example
    -------
    >>> data = probe_data("tiny", per_side=1, noises=[torch.randn(8000)])
    >>> len(data["train_wavs"]) == len(PROBE_WORDS) == len(data["test_wavs"])
    True
    """
    train_speakers, test_speakers = probe_speakers(
        corpus_size, corpus_seed, per_side
    )
    train_wavs, train_labels = synthesize_words(train_speakers)
    test_wavs, test_labels = synthesize_words(test_speakers)
    noisy = add_noise(test_wavs, list(noises), NOISY_PROBE_SNR_DB, corpus_seed)
    return {
        "train_wavs": train_wavs,
        "train_labels": train_labels,
        "test_wavs": test_wavs,
        "test_labels": test_labels,
        "noisy_test_wavs": noisy,
        "train_speakers": [s.name + ":" + s.variant for s in train_speakers],
        "test_speakers": [s.name + ":" + s.variant for s in test_speakers],
    }
