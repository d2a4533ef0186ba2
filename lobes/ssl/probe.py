"""Does a self-supervised model's space carry speech, and does noise move it?

Two measures for the frozen feature spaces that contrastive regularization
uses (METHODS.md section 2), run by ``python -m lobes.ssl.probe DIR
[DIR ...]``:

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

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

from lobes.data.mini_corpora import ensure_mini_corpus
from lobes.errors import DataFolderError, exit_on_user_error
from lobes.ssl.probe_data import (
    NOISY_PROBE_SNR_DB,
    PROBE_WORDS,
    probe_data,
    read_test_pairs,
)
from lobes.ssl.targets import MFCCFrames, normalize_waveform
from lobes.ssl_features import (
    FrozenSSLFeatures,
    save_random_model,
)

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
    """The fraction of ``x`` that ``probe`` labels as ``y``.

    Example
    -------
    >>> probe = logistic_probe(np.array([[0.0], [1.0]]), np.array([0, 1]))
    >>> accuracy(probe, np.array([[-1.0], [2.0]]), np.array([0, 0]))
    0.5
    """
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

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> wavs = [torch.randn(4000, generator=gen) for _ in range(4)]
    >>> data = {"train_wavs": wavs, "train_labels": np.array([0, 1, 0, 1]),
    ...         "test_wavs": wavs, "test_labels": np.array([0, 1, 0, 1]),
    ...         "noisy_test_wavs": wavs}
    >>> rows = measure(MFCCLayers(13, True), data, list(zip(wavs, wavs)))
    >>> rows[0]["layer"], rows[0]["probe_1nn"], rows[0]["invariance"]
    ('-', 1.0, 0.0)
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

    Example
    -------
    >>> evaluate(["model"], "/no/such/voicebank")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/voicebank/clean_testset_wav: ...
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


def _warn_other_corpus(folder, data_folder, corpus_size):
    """Say so when ``folder`` was pre-trained on another corpus.

    The word probe avoids the voices of the mini corpus given on the
    command line; a model pre-trained on another one may have heard its
    speakers.
    """
    path = os.path.join(folder, "pretrain_log.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fin:
        config = json.load(fin).get("config", {})
    saved = (config.get("data_folder"), config.get("mini_corpus_size"))
    if saved != (data_folder, corpus_size):
        print(
            f"warning: {folder} was pre-trained with --data_folder="
            f"{saved[0]} --mini_corpus_size={saved[1]}; pass the same "
            "options so that the probe's speakers are unheard",
            file=sys.stderr,
        )


def build_parser():
    """The command line of ``python -m lobes.ssl.probe``.

    Example
    -------
    >>> build_parser().parse_args(["m"]).mini_corpus_size
    'small'
    """
    parser = argparse.ArgumentParser(
        prog="python -m lobes.ssl.probe",
        description="Word probe and noise invariance of SSL model folders, "
        "against a random init of the first and MFCCs.",
    )
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="SSL model folders (save_pretrained layout)")
    parser.add_argument("--data_folder", default="mini",
                        help="VoiceBank-DEMAND root, or mini (default)")
    parser.add_argument("--mini_corpus_size", default="small",
                        choices=("tiny", "small"))
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="write the results here")
    return parser


@exit_on_user_error
def main(argv=None):
    """Print the probe's table of the folders (and write ``--json``)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for folder in args.folders:
        _warn_other_corpus(folder, args.data_folder, args.mini_corpus_size)
    if args.data_folder == "mini":
        data_folder = ensure_mini_corpus("voicebank", args.mini_corpus_size)
    else:
        data_folder = os.path.expanduser(args.data_folder)
        if not os.path.isdir(data_folder):
            raise DataFolderError(
                f"{data_folder}: data folder not found; pass --data_folder="
                "<a VoiceBank-DEMAND root> or leave it out for the mini corpus"
            )
    results = evaluate(
        args.folders,
        data_folder=data_folder,
        corpus_size=args.mini_corpus_size,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fout:
            json.dump(results, fout, indent=2, sort_keys=True)
            fout.write("\n")
    return results


if __name__ == "__main__":
    main()
