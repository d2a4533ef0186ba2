"""Does a self-supervised model's space carry speech, and does noise move it?

Two measures for the frozen feature spaces that contrastive regularization
uses (METHODS.md section 2), run by ``python -m lobes.ssl_pretrain
--evaluate DIR [DIR ...]``:

* **Word probe on unseen speakers.** Each of the 51 words of the GRID
  vocabulary (:mod:`lobes.data.grid_grammar`) is synthesised in isolation
  with eSpeak NG by speakers built on voice variants that the VoiceBank mini
  corpus never uses for training or validation speech or babble (its test
  speakers' variants included). Half the variants train the probes, the
  other half test them, so every test speaker is new to both the
  self-supervised model and the probe. Each layer's hidden states are
  averaged over time; a logistic regression (standardised features,
  scikit-learn, L2, C = 1) and a 1-nearest-neighbour classifier (Euclidean
  distance on standardised features) predict the word. ``probe_lr_noisy``
  tests the clean-trained logistic regression on the test speakers' words
  with test-split noise added at 5 dB SNR. Chance is 1/51.
* **Noise invariance.** On the corpus's test split (clean and noisy versions
  of the same utterances), per layer: the mean L1 distance between the
  frames of a clean utterance and of its noisy version, divided by the mean
  L1 distance between the frames of a clean utterance and of another clean
  utterance (the next one in file order, cut to the shorter length). 0 means
  noise does not move the features at all; 1 means noise moves them as far
  as changing the utterance does.

Both are computed for the given model folders, for a randomly initialised
model of the first folder's architecture, and for MFCC-20 (20 coefficients)
and MFCC-39 (13 coefficients with deltas and delta-deltas) on the same
20 ms frames. Every waveform is normalised to zero mean and unit variance
before the MFCCs; the SSL models normalise as their
``preprocessor_config.json`` says
(:class:`~lobes.ssl_features.FrozenSSLFeatures`).
"""

import glob
import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from lobes.data import grid_grammar, tts
from lobes.data.audio import read_audio
from lobes.errors import DataFolderError
from lobes.ssl_features import SSL_SAMPLE_RATE, FrozenSSLFeatures
from lobes.ssl_pretrain import MFCCFrames, normalize_waveform

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
    from lobes.data import mini_corpora as mc

    config = mc.SIZES["voicebank"][size]
    groups = {
        "train": config["train_speakers"],
        "valid": len(mc.VOICEBANK_VALID_SPEAKERS),
        "test": len(mc.VOICEBANK_TEST_SPEAKERS),
    }
    for split in mc.SPLITS:
        groups[f"babble_{split}"] = mc.SPEAKERS[size]["babble"]
    return tts.split_speakers(
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
    unseen = [variant for variant in tts.VARIANTS if variant not in seen]
    sides = (unseen[0::2][:per_side], unseen[1::2][:per_side])
    if not all(sides):
        raise ValueError("too few unseen voice variants for a probe")
    return tuple(
        tts.make_speaker_pool(
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
    >>> wavs, labels = synthesize_words(tts.make_speaker_pool(1), ("bin",))
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


# ---------------------------------------------------------------- features


class SSLLayers:
    """Every hidden state (0 .. L) of a frozen SSL model folder.

    Example
    -------
    >>> import tempfile
    >>> from lobes.ssl_features import save_tiny_ssl_model
    >>> layers = SSLLayers(save_tiny_ssl_model("hubert", tempfile.mkdtemp()))
    >>> [tuple(f.shape) for f in layers(torch.randn(4000))][:2]
    [(12, 32), (12, 32)]
    >>> layers.names
    ['L0', 'L1', 'L2', 'L3', 'L4']
    """

    def __init__(self, folder):
        from transformers import AutoConfig

        depth = AutoConfig.from_pretrained(folder).num_hidden_layers
        self.ssl = FrozenSSLFeatures(folder, layers=list(range(depth + 1)))
        self.names = [f"L{i}" for i in range(depth + 1)]

    @torch.no_grad()
    def __call__(self, wav):
        """``[frames, dim]`` per layer for a ``[time]`` waveform."""
        return [f[0] for f in self.ssl(wav.unsqueeze(0))]


class MFCCLayers:
    """MFCC frames of the normalised waveform, as a one-layer feature set.

    Example
    -------
    >>> [tuple(f.shape) for f in MFCCLayers(20, False)(torch.randn(4000))]
    [(12, 20)]
    """

    def __init__(self, n_mfcc, deltas):
        self.mfcc = MFCCFrames(n_mfcc, deltas)
        self.names = ["-"]

    def __call__(self, wav):
        """``[[frames, dim]]`` for a ``[time]`` waveform."""
        return [self.mfcc(normalize_waveform(wav))]


def save_random_init(folder, out, seed=0):
    """Save a randomly initialised model of ``folder``'s architecture.

    The preprocessor config is copied, so it normalises like the original.

    Example
    -------
    >>> import tempfile
    >>> from lobes.ssl_features import save_tiny_ssl_model
    >>> src = save_tiny_ssl_model("hubert", tempfile.mkdtemp())
    >>> sorted(os.listdir(save_random_init(src, tempfile.mkdtemp())))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from transformers import AutoConfig

    from lobes.ssl_features import save_random_model

    save_random_model(AutoConfig.from_pretrained(folder), out, seed)
    preprocessor = os.path.join(folder, "preprocessor_config.json")
    if os.path.isfile(preprocessor):
        shutil.copy(preprocessor, out)
    return out


# ---------------------------------------------------------------- measures


def _standardize(train, *others):
    mean = train.mean(0, keepdims=True)
    std = train.std(0, keepdims=True) + 1e-8
    return [(x - mean) / std for x in (train, *others)]


def nearest_neighbour_accuracy(train_x, train_y, test_x, test_y):
    """1-NN accuracy, Euclidean distance on train-standardised features.

    Example
    -------
    >>> train_x = np.array([[-1.0, -1.0], [-1.2, -0.8], [1, 1], [0.8, 1.2]])
    >>> train_y = np.array([0, 0, 1, 1])
    >>> test_x = np.array([[-0.9, -1.0], [1.0, 0.9], [0.9, 1.1], [-1, -1]])
    >>> nearest_neighbour_accuracy(train_x, train_y, test_x,
    ...                            np.array([0, 1, 1, 1]))
    0.75
    """
    train_x, test_x = _standardize(
        np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    )
    dist = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    pred = np.asarray(train_y)[dist.argmin(1)]
    return float(np.mean(pred == np.asarray(test_y)))


def logistic_probe(train_x, train_y, seed=0):
    """Fit the logistic-regression probe (standardised features, C = 1).

    Example
    -------
    >>> x = np.array([[0.0], [0.1], [1.0], [1.1]])
    >>> probe = logistic_probe(x, np.array([0, 0, 1, 1]))
    >>> probe.predict(np.array([[-0.5], [1.5]])).tolist()
    [0, 1]
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=3000, random_state=seed),
    )
    return probe.fit(np.asarray(train_x, np.float64), np.asarray(train_y))


def accuracy(probe, x, y):
    """The fraction of ``x`` that ``probe`` labels as ``y``."""
    return float(np.mean(probe.predict(np.asarray(x, np.float64)) == y))


def invariance_ratio(clean_feats, noisy_feats):
    """Mean L1 distance clean-vs-noisy over clean-vs-other-utterance.

    Arguments
    ---------
    clean_feats, noisy_feats : list of torch.Tensor
        ``[frames, dim]`` per utterance (same frames for a pair). The other
        utterance of ``i`` is ``i + 1`` (the last one's is the first), both
        cut to the shorter length.

    Example
    -------
    >>> clean = [torch.full((4, 2), float(i)) for i in range(3)]
    >>> noisy = [c + 0.5 for c in clean]
    >>> invariance_ratio(clean, noisy)  # 0.5 / mean(1, 1, 2)
    0.375
    """
    same, other = [], []
    count = len(clean_feats)
    for index, (clean, noisy) in enumerate(zip(clean_feats, noisy_feats)):
        frames = min(clean.shape[0], noisy.shape[0])
        same.append(float((clean[:frames] - noisy[:frames]).abs().mean()))
        neighbour = clean_feats[(index + 1) % count]
        frames = min(clean.shape[0], neighbour.shape[0])
        other.append(float((clean[:frames] - neighbour[:frames]).abs().mean()))
    return float(np.mean(same) / np.mean(other))


def _pooled(extractor, wavs):
    """``[layers][utterances, dim]`` time-averaged features."""
    per_layer = None
    for wav in wavs:
        layers = [f.double().mean(0).numpy() for f in extractor(wav)]
        if per_layer is None:
            per_layer = [[] for _ in layers]
        for store, vector in zip(per_layer, layers):
            store.append(vector)
    return [np.stack(store) for store in per_layer]


def _framewise(extractor, wavs):
    """``[layers][utterances]`` of ``[frames, dim]`` features."""
    per_layer = None
    for wav in wavs:
        layers = extractor(wav)
        if per_layer is None:
            per_layer = [[] for _ in layers]
        for store, feats in zip(per_layer, layers):
            store.append(feats.float())
    return per_layer


def measure(extractor, probe_data, pairs, seed=0):
    """Probe accuracies and invariance ratio of each layer of a feature set.

    Arguments
    ---------
    extractor : callable
        ``[time]`` waveform -> list (one per layer) of ``[frames, dim]``,
        with a ``names`` attribute naming the layers.
    probe_data : dict
        ``train_wavs``, ``train_labels``, ``test_wavs``, ``test_labels``,
        ``noisy_test_wavs``.
    pairs : list of (torch.Tensor, torch.Tensor)
        Clean and noisy test utterances.

    Returns
    -------
    list of dict
        One row per layer: ``layer``, ``probe_lr``, ``probe_1nn``,
        ``probe_lr_noisy``, ``invariance``.
    """
    train = _pooled(extractor, probe_data["train_wavs"])
    test = _pooled(extractor, probe_data["test_wavs"])
    noisy = _pooled(extractor, probe_data["noisy_test_wavs"])
    clean_frames = _framewise(extractor, [c for c, _ in pairs])
    noisy_frames = _framewise(extractor, [n for _, n in pairs])
    rows = []
    for index, name in enumerate(extractor.names):
        y_train = probe_data["train_labels"]
        y_test = probe_data["test_labels"]
        probe = logistic_probe(train[index], y_train, seed)
        rows.append(
            {
                "layer": name,
                "probe_lr": accuracy(probe, test[index], y_test),
                "probe_1nn": nearest_neighbour_accuracy(
                    train[index], y_train, test[index], y_test
                ),
                "probe_lr_noisy": accuracy(probe, noisy[index], y_test),
                "invariance": invariance_ratio(
                    clean_frames[index], noisy_frames[index]
                ),
            }
        )
    return rows


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


def evaluate(
    folders, data_folder, corpus_size="small", corpus_seed=0, per_side=8,
    log=None,
):  # fmt: skip
    """Word probe and noise invariance of SSL folders, random init and MFCC.

    Arguments
    ---------
    folders : list of str
        SSL model folders (``save_pretrained`` layout).
    data_folder : str
        A VoiceBank-DEMAND root whose test split measures noise invariance
        (and whose test noises make the noisy probe).
    corpus_size, corpus_seed : str, int
        The mini corpus the models were pre-trained on (which voice variants
        the probe must avoid).
    per_side : int
        Probe speakers on each side.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    dict
        ``setup`` (what was measured) and ``rows`` (one per feature set and
        layer, with ``model``, ``layer``, ``probe_lr``, ``probe_1nn``,
        ``probe_lr_noisy``, ``invariance``).
    """
    log = log or (lambda line: None)
    start = time.time()
    pairs = read_test_pairs(data_folder)
    noises = [noisy - clean for clean, noisy in pairs]
    data = probe_data(corpus_size, corpus_seed, per_side, noises)
    log(
        f"probe: {len(data['train_wavs'])} training and "
        f"{len(data['test_wavs'])} test words synthesised in "
        f"{time.time() - start:.0f} s; {len(pairs)} test pairs"
    )
    feature_sets = [
        ("MFCC-20", MFCCLayers(20, False)),
        ("MFCC-39", MFCCLayers(13, True)),
    ]
    scratch = tempfile.mkdtemp(prefix="ssl_probe_")
    try:
        random_folder = save_random_init(
            folders[0], os.path.join(scratch, "random_init")
        )
        feature_sets.append(("random init", SSLLayers(random_folder)))
        for folder in folders:
            name = os.path.basename(os.path.normpath(folder))
            feature_sets.append((name, SSLLayers(folder)))
        rows = []
        for name, extractor in feature_sets:
            begin = time.time()
            for row in measure(extractor, data, pairs):
                rows.append({"model": name, **row})
            log(f"measured {name} in {time.time() - begin:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "setup": {
            "folders": [os.path.abspath(f) for f in folders],
            "pretraining": {
                os.path.basename(os.path.normpath(f)): _pretraining(f)
                for f in folders
            },
            "data_folder": os.path.abspath(data_folder),
            "corpus_size": corpus_size,
            "corpus_seed": corpus_seed,
            "words": len(PROBE_WORDS),
            "chance": 1 / len(PROBE_WORDS),
            "probe_train_speakers": data["train_speakers"],
            "probe_test_speakers": data["test_speakers"],
            "noisy_probe_snr_db": NOISY_PROBE_SNR_DB,
            "invariance_pairs": len(pairs),
            "seconds": round(time.time() - start, 1),
        },
        "rows": rows,
    }


def _pretraining(folder):
    """A summary of ``pretrain_log.json`` in ``folder`` (``{}`` if none)."""
    path = os.path.join(folder, "pretrain_log.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fin:
        log = json.load(fin)
    keep = (
        "parameters", "train_seconds", "cpu_seconds", "machine",
        "target_features", "training_utterances", "holdout_utterances",
    )  # fmt: skip
    summary = {key: log[key] for key in keep if key in log}
    summary["steps"] = log.get("config", {}).get("steps")
    summary["seed"] = log.get("config", {}).get("seed")
    if log.get("holdout"):
        summary["holdout_final"] = log["holdout"][-1]
    return summary


def format_table(results):
    """A markdown table of :func:`evaluate`'s rows.

    Example
    -------
    >>> print(format_table({"setup": {"chance": 0.02}, "rows": [
    ...     {"model": "m", "layer": "L1", "probe_lr": 0.5, "probe_1nn": 0.25,
    ...      "probe_lr_noisy": 0.125, "invariance": 0.3333}]}))
    | features | layer | word probe LR | word probe 1-NN | LR, noisy test (5 dB) | noise invariance (lower is better) |
    |---|---|---:|---:|---:|---:|
    | m | L1 | 0.50 | 0.25 | 0.12 | 0.333 |
    chance 0.02
    """  # noqa: E501
    lines = [
        "| features | layer | word probe LR | word probe 1-NN | "
        "LR, noisy test (5 dB) | noise invariance (lower is better) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']} | {row['layer']} | {row['probe_lr']:.2f} | "
            f"{row['probe_1nn']:.2f} | {row['probe_lr_noisy']:.2f} | "
            f"{row['invariance']:.3f} |"
        )
    lines.append(f"chance {results['setup']['chance']:.2f}")
    return "\n".join(lines)
