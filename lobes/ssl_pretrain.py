"""Pre-train a small HuBERT on the mini corpora's training speech, offline.

Contrastive regularization (METHODS.md section 2) needs a frozen
self-supervised speech model. Where the hub cannot be reached, the tests use
tiny *random* models (:mod:`lobes.ssl_features`), in whose space a CR
benchmark means nothing. This module trains a small but speech-trained
HuBERT here, on the training split of the VoiceBank-DEMAND mini corpus, and
saves it like a hub model, so that recipes take it with
``--ssl_source=<folder>``.

The recipe is HuBERT's first iteration (Hsu et al., 2021) with WavLM's
denoising twist (Chen et al., 2022):

* targets: k-means cluster ids (:attr:`PretrainConfig.num_clusters`) of
  39-dimensional MFCC frames (13 coefficients, deltas and delta-deltas,
  25 ms windows every 20 ms, the model's frame rate) of the *clean* speech;
* input: the clean speech or, with probability
  :attr:`PretrainConfig.noisy_prob`, the clean speech plus a noise segment
  of the corpus's training noises at a random SNR; the targets stay those
  of the clean speech, so the model learns to see through the noise;
* speed perturbation (0.9, 1.0, 1.1; resampling changes tempo *and*
  formants) of the clean speech, whose targets are the perturbed speech's
  own clusters: more apparent speakers from the corpus's 26;
* loss: cross-entropy of the predictions at masked frames (spans of 10
  frames, start probability 0.8, as in HuBERT) plus
  :attr:`PretrainConfig.unmasked_weight` times that at unmasked frames;
  predictions are cosine similarities between a projection of the last
  layer and learnt cluster embeddings over a temperature of 0.1 (HuBERT);
* AdamW with linear warm-up and linear decay, gradient clipping.

Every waveform is normalised to zero mean and unit variance before the model
(``do_normalize: true`` in the saved ``preprocessor_config.json``, which
:class:`~lobes.ssl_features.FrozenSSLFeatures` reads) and before the MFCCs
of the targets, so targets and features ignore the recording's gain.

All defaults are the fields of :class:`PretrainConfig`; each is a
command-line option of the same name.

Command line::

    python -m lobes.ssl_pretrain --out DIR [--corpus voicebank]
        [--size small] [--data_folder ROOT] [--steps N] [--seed S]
        [--stop_after N] [--<any PretrainConfig field> VALUE]
    python -m lobes.ssl_pretrain --evaluate DIR [DIR ...] [--json PATH]

An interrupted pre-training leaves a checkpoint in ``DIR``: Ctrl-C or
``kill`` (SIGTERM) stops after the current step and saves one,
``--stop_after N`` stops after step N, and a checkpoint is written every
``checkpoint_every`` steps in case of a crash. The same command continues
from it and ends in the same state as an uninterrupted run.

``DIR`` finally holds ``config.json``, ``model.safetensors``,
``preprocessor_config.json`` (load it with
``HubertModel.from_pretrained`` or ``--ssl_source=DIR``),
``pretrain_log.json`` (settings, loss and accuracy history, timings) and
``kmeans_targets.pt`` (the cluster centroids). ``--evaluate`` runs the word
probe and the noise-invariance measure of :mod:`lobes.ssl_probe`.
"""

import argparse
import dataclasses
import glob
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from lobes.data.audio import read_audio
from lobes.errors import DataFolderError, UserError, exit_on_user_error
from lobes.ssl_features import SSL_SAMPLE_RATE, _quiet_transformers

#: Samples per model frame (the product of the conv strides) at 16 kHz.
FRAME_HOP = 320
#: Receptive field of the conv front end in samples (a 25 ms window).
FRAME_WINDOW = 400
#: Conv front end of HuBERT/wav2vec 2.0 Base: kernels and strides.
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)

_CHECKPOINT = "pretrain_checkpoint.pt"
_CONFIG = "pretrain_config.json"
_LOG = "pretrain_log.json"
_CENTROIDS = "kmeans_targets.pt"
_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
#: Fields that do not change the result; they may differ on resume.
_RUN_FIELDS = ("log_every", "valid_every", "checkpoint_every")


class PretrainError(UserError):
    """An ``--out`` folder or an option that pre-training cannot use."""


@dataclasses.dataclass
class PretrainConfig:
    """Every setting of a pre-training, with its default.

    Attributes
    ----------
    corpus : str
        The mini corpus to generate when ``data_folder`` is not given (only
        ``"voicebank"``: 16 kHz speech with its noisy versions).
    size : str
        Mini corpus size, ``"tiny"`` or ``"small"``.
    corpus_seed : int
        Mini corpus seed.
    data_folder : str
        A VoiceBank-DEMAND root (real or mini) instead of the cached mini
        corpus; only ``{clean,noisy}_trainset_28spk_wav`` are read.
    holdout_speakers : tuple of str
        Training-folder speakers kept out of pre-training to measure
        held-out masked accuracy (the recipes' validation speakers).
    num_clusters : int
        K of the k-means targets.
    n_mfcc, n_mels : int
        MFCC coefficients (before deltas) and mel bands.
    targets_from, targets_layer : str, int
        HuBERT's second iteration: cluster hidden state ``targets_layer``
        of the model in folder ``targets_from`` (a first-iteration model)
        instead of the MFCCs. Empty: MFCC targets (first iteration).
    kmeans_iterations, kmeans_max_frames : int
        Lloyd iterations and the most frames k-means is fitted on.
    hidden_size, num_layers, num_heads, ffn_size : int
        Transformer width, depth, heads and feed-forward width.
    conv_channels : int
        Channels of each of the 7 conv layers (kernels and strides of
        HuBERT Base: 20 ms frames, 25 ms receptive field).
    pos_conv_kernel, pos_conv_groups : int
        The convolutional relative position embedding.
    dropout : float
        Hidden, attention and activation dropout.
    proj_dim, logit_temperature : int, float
        Prediction head: projection size and cosine-similarity temperature.
    mask_prob, mask_length : float, int
        Span masking: a frame starts a span of ``mask_length`` frames with
        probability ``mask_prob / mask_length`` (spans may overlap).
    unmasked_weight : float
        Weight of the cross-entropy at unmasked frames.
    noisy_prob : float
        Probability that an example's input is noisy (targets stay clean).
    snr_range : tuple of float
        SNR range (dB) of the added training noise.
    speed_factors : tuple of float
        Speed perturbation factors, drawn uniformly per example.
    steps, batch_size, crop_seconds : int, int, float
        Optimiser steps, examples per batch and the longest crop.
    lr, warmup_fraction, weight_decay, grad_clip : float
        AdamW peak learning rate, warm-up share of the steps (then linear
        decay to 0), weight decay and gradient-norm clipping.
    seed : int
        Seed of initialisation, k-means, batches, noise and masks.
    log_every, valid_every, checkpoint_every : int
        Steps between log lines, held-out evaluations and checkpoints.

    Example
    -------
    >>> PretrainConfig().num_clusters, PretrainConfig(steps=5).steps
    (50, 5)
    """

    corpus: str = "voicebank"
    size: str = "small"
    corpus_seed: int = 0
    data_folder: str = ""
    holdout_speakers: tuple = ("p226", "p287")
    num_clusters: int = 50
    n_mfcc: int = 13
    n_mels: int = 40
    targets_from: str = ""
    targets_layer: int = 3
    kmeans_iterations: int = 100
    kmeans_max_frames: int = 200000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ffn_size: int = 1024
    conv_channels: int = 128
    pos_conv_kernel: int = 64
    pos_conv_groups: int = 16
    dropout: float = 0.1
    proj_dim: int = 128
    logit_temperature: float = 0.1
    mask_prob: float = 0.8
    mask_length: int = 10
    unmasked_weight: float = 0.5
    noisy_prob: float = 0.5
    snr_range: tuple = (-5.0, 20.0)
    speed_factors: tuple = (0.9, 1.0, 1.1)
    steps: int = 1600
    batch_size: int = 8
    crop_seconds: float = 2.0
    lr: float = 8e-4
    warmup_fraction: float = 0.08
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    seed: int = 0
    log_every: int = 50
    valid_every: int = 250
    checkpoint_every: int = 100

    def check(self):
        """Raise :class:`PretrainError` on an unusable value.

        Example
        -------
        >>> PretrainConfig(mask_prob=1.5).check()
        Traceback (most recent call last):
        ...
        lobes.ssl_pretrain.PretrainError: --mask_prob must be in [0, 1]...
        """
        rules = [
            ("corpus", self.corpus == "voicebank", "must be voicebank"),
            ("size", self.size in ("tiny", "small"), "must be tiny or small"),
            ("mask_prob", 0 <= self.mask_prob <= 1, "must be in [0, 1]"),
            ("noisy_prob", 0 <= self.noisy_prob <= 1, "must be in [0, 1]"),
            ("num_clusters", self.num_clusters >= 2, "must be at least 2"),
            ("steps", self.steps >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("mask_length", self.mask_length >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            (
                "snr_range",
                len(self.snr_range) == 2
                and self.snr_range[0] <= self.snr_range[1],
                "must be LOW,HIGH",
            ),
            (
                "speed_factors",
                len(self.speed_factors) > 0
                and all(0.5 <= f <= 2.0 for f in self.speed_factors),
                "must be factors in [0.5, 2]",
            ),
            (
                "hidden_size",
                self.hidden_size % self.num_heads == 0
                and self.hidden_size % self.pos_conv_groups == 0,
                "must be divisible by num_heads and pos_conv_groups",
            ),
            (
                "crop_seconds",
                self.crop_seconds * SSL_SAMPLE_RATE >= FRAME_WINDOW,
                "must be at least 0.025",
            ),
        ]
        if self.targets_from and not os.path.isfile(
            os.path.join(os.path.expanduser(self.targets_from), "config.json")
        ):
            raise PretrainError(
                f"--targets_from {self.targets_from}: not a model folder (no "
                "config.json); give a folder written by a pre-training"
            )
        for name, ok, why in rules:
            if not ok:
                raise PretrainError(
                    f"--{name} {why} (got {getattr(self, name)!r})"
                )
        return self

    def to_dict(self):
        """JSON-ready settings (tuples as lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values):
        """The inverse of :meth:`to_dict` (unknown keys are an error)."""
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise PretrainError(
                f"unknown pre-training settings {', '.join(unknown)}"
            )
        return cls(
            **{
                key: tuple(value) if isinstance(value, list) else value
                for key, value in values.items()
            }
        )


# ---------------------------------------------------------------- features


def normalize_waveform(wav, eps=1e-7):
    """Zero mean, unit variance along the last axis (``do_normalize``).

    Example
    -------
    >>> x = normalize_waveform(3 * torch.randn(2, 1000) + 1)
    >>> bool(x.mean(-1).abs().max() < 1e-5), bool(
    ...     torch.allclose(x.std(-1, unbiased=False), torch.ones(2)))
    (True, True)
    """
    mean = wav.mean(dim=-1, keepdim=True)
    var = wav.var(dim=-1, keepdim=True, unbiased=False)
    return (wav - mean) / torch.sqrt(var + eps)


class MFCCFrames(torch.nn.Module):
    """MFCC frames aligned with the model's frames (25 ms every 20 ms).

    Frame ``t`` covers samples ``[320 t, 320 t + 400)``, exactly the
    receptive field of model frame ``t``, so a waveform of ``n`` samples
    gives ``(n - 400) // 320 + 1`` frames in both.

    Arguments
    ---------
    n_mfcc : int
        Cepstral coefficients.
    deltas : bool
        Append deltas and delta-deltas (``3 * n_mfcc`` dimensions).
    n_mels : int
        Mel bands.

    Example
    -------
    >>> mfcc = MFCCFrames(13, deltas=True)
    >>> tuple(mfcc(torch.randn(32080)).shape)
    (100, 39)
    """

    def __init__(self, n_mfcc=13, deltas=True, n_mels=40):
        super().__init__()
        self.deltas = bool(deltas)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=SSL_SAMPLE_RATE,
            n_mfcc=int(n_mfcc),
            melkwargs={
                "n_fft": FRAME_WINDOW,
                "win_length": FRAME_WINDOW,
                "hop_length": FRAME_HOP,
                "n_mels": int(n_mels),
                "center": False,
                "f_min": 20.0,
            },
        )

    @property
    def dim(self):
        """Dimension of a frame."""
        return self.mfcc.n_mfcc * (3 if self.deltas else 1)

    @torch.no_grad()
    def forward(self, wav):
        """Return ``[frames, dim]`` for a ``[time]`` waveform."""
        coeffs = self.mfcc(wav.float())  # [n_mfcc, frames]
        if self.deltas:
            delta = torchaudio.functional.compute_deltas(coeffs)
            delta2 = torchaudio.functional.compute_deltas(delta)
            coeffs = torch.cat([coeffs, delta, delta2], dim=0)
        return coeffs.transpose(0, 1).contiguous()


def num_frames(num_samples):
    """Model (and MFCC) frames of a waveform of ``num_samples`` samples.

    Example
    -------
    >>> num_frames(32080), num_frames(399)
    (100, 0)
    """
    return max(0, (int(num_samples) - FRAME_WINDOW) // FRAME_HOP + 1)


def kmeans(features, num_clusters, iterations=100, seed=0):
    """k-means++ initialisation then Lloyd iterations, deterministic per seed.

    Computed in float64 so that the thread count cannot flip an assignment.
    A cluster left empty is re-seeded with the point farthest from its
    centroid.

    Arguments
    ---------
    features : torch.Tensor
        ``[points, dim]``.
    num_clusters : int
        K (at most the number of points).
    iterations : int
        The most Lloyd iterations (it stops when assignments settle).
    seed : int
        Seed of the k-means++ draws.

    Returns
    -------
    centroids : torch.Tensor
        ``[K, dim]``, float32.
    inertia : float
        Mean squared distance of a point to its centroid.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> blobs = torch.cat([torch.randn(50, 2, generator=gen) * 0.1 + c
    ...                    for c in (-5.0, 0.0, 5.0)])
    >>> centroids, _ = kmeans(blobs, 3, seed=1)
    >>> sorted(round(v) for v in centroids[:, 0].tolist())
    [-5, 0, 5]
    """
    points = features.double()
    count = points.shape[0]
    if not 1 <= num_clusters <= count:
        raise ValueError(
            f"k-means needs 1 <= K <= points, got K={num_clusters}, {count}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(count, (1,), generator=gen))
    centroids = points[first : first + 1]
    nearest = ((points - centroids[0]) ** 2).sum(1)
    for _ in range(1, num_clusters):
        weights = nearest.clamp_min(0)
        if float(weights.sum()) <= 0:
            pick = int(torch.randint(count, (1,), generator=gen))
        else:
            pick = int(torch.multinomial(weights, 1, generator=gen))
        centroids = torch.cat([centroids, points[pick : pick + 1]])
        nearest = torch.minimum(nearest, ((points - points[pick]) ** 2).sum(1))
    assign = None
    for _ in range(int(iterations)):
        dist = torch.cdist(points, centroids) ** 2
        new_assign = dist.argmin(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        sizes = torch.bincount(assign, minlength=num_clusters).double()
        centroids = sums / sizes.clamp_min(1).unsqueeze(1)
        for empty in torch.nonzero(sizes == 0).flatten().tolist():
            own = dist.gather(1, assign.unsqueeze(1)).squeeze(1)
            far = int(own.argmax())
            centroids[empty] = points[far]
            assign[far] = empty
    dist = torch.cdist(points, centroids) ** 2
    inertia = float(dist.min(1).values.mean())
    return centroids.float(), inertia


def assign_clusters(features, centroids):
    """Nearest-centroid ids of ``[frames, dim]`` features.

    Example
    -------
    >>> assign_clusters(torch.tensor([[0.1], [4.0]]),
    ...                 torch.tensor([[0.0], [5.0]])).tolist()
    [0, 1]
    """
    dist = torch.cdist(features.double(), centroids.double())
    return dist.argmin(1)


# ---------------------------------------------------------------- data


def speed_perturb(wav, factor):
    """Play ``wav`` ``factor`` times faster by resampling (pitch follows).

    Example
    -------
    >>> speed_perturb(torch.randn(16000), 1.1).shape
    torch.Size([14546])
    """
    if factor == 1.0:
        return wav
    ratio = Fraction(float(factor)).limit_denominator(100)
    return torchaudio.functional.resample(
        wav, ratio.numerator, ratio.denominator
    )


def read_voicebank_train(root, holdout_speakers):
    """Read the clean and noisy training utterances of a VoiceBank folder.

    Arguments
    ---------
    root : str
        Holds ``clean_trainset_28spk_wav`` and ``noisy_trainset_28spk_wav``
        (or their ``*_16k`` copies) at 16 kHz.
    holdout_speakers : sequence of str
        Speakers (file-name prefixes) returned apart.

    Returns
    -------
    dict
        ``{"train": (clean, noisy), "holdout": (clean, noisy)}``, lists of
        float32 ``[time]`` tensors, in file-name order.
    """
    if not os.path.isdir(root):
        raise DataFolderError(
            f"{root}: data folder not found; point --data_folder at a "
            "VoiceBank-DEMAND root or leave it out to use the mini corpus"
        )
    folders = {}
    for kind in ("clean", "noisy"):
        name = f"{kind}_trainset_28spk_wav"
        folder = os.path.join(root, f"{name}_16k")
        if not os.path.isdir(folder):
            folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise DataFolderError(
                f"{folder}: missing; the VoiceBank-DEMAND layout has "
                f"{{clean,noisy}}_trainset_28spk_wav under {root}"
            )
        folders[kind] = folder
    names = sorted(
        os.path.basename(path)
        for path in glob.glob(os.path.join(folders["clean"], "*.wav"))
    )
    if not names:
        raise DataFolderError(f"{folders['clean']}: no .wav files")
    holdout = set(holdout_speakers)
    out = {"train": ([], []), "holdout": ([], [])}
    for name in names:
        noisy_path = os.path.join(folders["noisy"], name)
        if not os.path.isfile(noisy_path):
            raise DataFolderError(
                f"{noisy_path}: missing noisy version of "
                f"{os.path.join(folders['clean'], name)}"
            )
        clean = read_audio(
            os.path.join(folders["clean"], name), SSL_SAMPLE_RATE
        )
        noisy = read_audio(noisy_path, SSL_SAMPLE_RATE)
        if clean.numel() != noisy.numel():
            raise DataFolderError(
                f"{noisy_path}: {noisy.numel()} samples but the clean "
                f"version has {clean.numel()}; re-create the corpus"
            )
        part = "holdout" if name.split("_")[0] in holdout else "train"
        out[part][0].append(clean)
        out[part][1].append(noisy)
    if not out["train"][0]:
        raise DataFolderError(
            f"{folders['clean']}: every utterance belongs to a hold-out "
            "speaker; change --holdout_speakers"
        )
    return out


def resolve_data_folder(config):
    """The corpus root: ``data_folder`` or the cached mini corpus."""
    if config.data_folder:
        return os.path.abspath(os.path.expanduser(config.data_folder))
    from lobes.data.mini_corpora import ensure_mini_corpus

    return ensure_mini_corpus(config.corpus, config.size, config.corpus_seed)


def _rms(wav):
    return float(wav.pow(2).mean().sqrt())


class SSLLayerFrames:
    """One hidden state of a frozen SSL model folder, as target features.

    Arguments
    ---------
    folder : str
        A model folder (e.g. a first-iteration pre-training).
    layer : int
        The hidden state (0: before the transformer).
    """

    def __init__(self, folder, layer):
        from lobes.ssl_features import FrozenSSLFeatures

        self.ssl = FrozenSSLFeatures(folder, layers=[int(layer)])
        self.name = f"{os.path.basename(os.path.normpath(folder))}:L{layer}"

    @torch.no_grad()
    def __call__(self, wav):
        """``[frames, dim]`` of a ``[time]`` waveform (20 ms frames)."""
        feats = self.ssl(wav.unsqueeze(0))[0][0]
        if feats.shape[0] != num_frames(wav.numel()):
            raise PretrainError(
                f"--targets_from {self.ssl.source}: {feats.shape[0]} frames "
                f"for {wav.numel()} samples, expected "
                f"{num_frames(wav.numel())} (20 ms frames)"
            )
        return feats


def target_features(config):
    """The features that k-means clusters into targets (MFCC-39 or a layer).

    Example
    -------
    >>> target_features(PretrainConfig()).name
    'MFCC-39'
    """
    if config.targets_from:
        return SSLLayerFrames(
            os.path.expanduser(config.targets_from), config.targets_layer
        )
    features = MFCCFrames(config.n_mfcc, True, config.n_mels)
    features.name = f"MFCC-{features.dim}"
    return features


class PretrainData:
    """Training crops with clean k-means targets, and held-out batches.

    Arguments
    ---------
    train_clean, train_noisy : list of torch.Tensor
        Training utterances; their differences form the noise pool.
    holdout_clean, holdout_noisy : list of torch.Tensor
        Held-out utterances (may be empty).
    config : PretrainConfig
        Settings (clusters, MFCC, speeds, crops, masking, noise).
    log : callable
        Receives progress lines.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> clean = [torch.randn(8000, generator=gen) for _ in range(3)]
    >>> noisy = [c + 0.1 * torch.randn(8000, generator=gen) for c in clean]
    >>> data = PretrainData(clean, noisy, [], [], PretrainConfig(
    ...     num_clusters=4, batch_size=2, crop_seconds=0.3), log=None)
    >>> wav, targets, mask = data.batch(np.random.default_rng(0))
    >>> tuple(wav.shape), tuple(targets.shape), mask.dtype
    ((2, 4560), (2, 14), torch.bool)
    """

    def __init__(
        self, train_clean, train_noisy, holdout_clean, holdout_noisy, config,
        log=print,
    ):  # fmt: skip
        self.config = config
        log = log or (lambda line: None)
        self.features = target_features(config)
        fastest = max(config.speed_factors)
        pairs = [
            (c.float(), n.float())
            for c, n in zip(train_clean, train_noisy)
            if num_frames(c.numel() / fastest) >= 2
        ]
        if not pairs:
            raise PretrainError(
                "no training utterance is long enough (0.05 s) to pre-train"
            )
        clean = [normalize_waveform(c) for c, _ in pairs]
        self.noise = [n - c for c, n in pairs]
        # Every speed version of every utterance, with its features.
        self.waves, features = {}, {}
        for factor in config.speed_factors:
            self.waves[factor] = [
                w
                if factor == 1.0
                else normalize_waveform(speed_perturb(w, factor))
                for w in clean
            ]
            features[factor] = [self.features(w) for w in self.waves[factor]]
        # k-means on the unperturbed speech.
        fit_on = features.get(1.0) or [self.features(w) for w in clean]
        frames = torch.cat(fit_on)
        gen = torch.Generator().manual_seed(config.seed)
        if frames.shape[0] > config.kmeans_max_frames:
            keep = torch.randperm(frames.shape[0], generator=gen)
            frames = frames[keep[: config.kmeans_max_frames]]
        start = time.time()
        self.centroids, self.inertia = kmeans(
            frames, config.num_clusters, config.kmeans_iterations, config.seed
        )
        counts = torch.bincount(
            assign_clusters(frames, self.centroids),
            minlength=config.num_clusters,
        )
        self.cluster_share = (counts.double() / counts.sum()).tolist()
        log(
            f"k-means: {config.num_clusters} clusters of {frames.shape[0]} "
            f"{self.features.name} frames in {time.time() - start:.1f} s "
            f"(mean squared distance {self.inertia:.1f}, largest cluster "
            f"{max(self.cluster_share):.1%})"
        )
        self.targets = {
            factor: [assign_clusters(f, self.centroids) for f in feats]
            for factor, feats in features.items()
        }
        self.holdout = [
            (normalize_waveform(c.float()), normalize_waveform(n.float()))
            for c, n in zip(holdout_clean, holdout_noisy)
            if num_frames(c.numel()) >= 1
        ]
        self.holdout_targets = [
            assign_clusters(self.features(c), self.centroids)
            for c, _ in self.holdout
        ]
        self.num_utterances = len(clean)
        self.order = np.zeros(0, dtype=np.int64)
        self.position = 0

    def state_dict(self):
        """The sampler's position (the rng is saved by the caller)."""
        return {"order": self.order.tolist(), "position": self.position}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`."""
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position = int(state["position"])

    def _next_indices(self, rng, count):
        picks = []
        while len(picks) < count:
            if self.position >= len(self.order):
                self.order = rng.permutation(self.num_utterances)
                self.position = 0
            picks.append(int(self.order[self.position]))
            self.position += 1
        return picks

    def batch(self, rng):
        """Draw a training batch.

        Returns
        -------
        wav : torch.Tensor
            ``[batch, samples]`` normalised inputs (clean or noisy).
        targets : torch.Tensor
            ``[batch, frames]`` cluster ids of the clean speech.
        mask : torch.Tensor
            ``[batch, frames]`` bool, the masked frames.
        """
        config = self.config
        indices = self._next_indices(rng, config.batch_size)
        factors = [
            config.speed_factors[int(rng.integers(len(config.speed_factors)))]
            for _ in indices
        ]
        lengths = [self.targets[f][i].numel() for f, i in zip(factors, indices)]
        crop = min(
            [num_frames(config.crop_seconds * SSL_SAMPLE_RATE)] + lengths
        )
        samples = (crop - 1) * FRAME_HOP + FRAME_WINDOW
        wavs, targets = [], []
        for factor, index, length in zip(factors, indices, lengths):
            first = int(rng.integers(0, length - crop + 1))
            wav = self.waves[factor][index]
            wav = wav[first * FRAME_HOP : first * FRAME_HOP + samples]
            targets.append(self.targets[factor][index][first : first + crop])
            if rng.random() < config.noisy_prob:
                wav = wav + self._noise(rng, samples, _rms(wav))
            wavs.append(normalize_waveform(wav))
        mask = span_mask(
            config.batch_size, crop, config.mask_prob, config.mask_length, rng
        )
        return torch.stack(wavs), torch.stack(targets), mask

    def _noise(self, rng, samples, speech_rms):
        """A noise-pool segment of ``samples`` at a random SNR."""
        noise = self.noise[int(rng.integers(len(self.noise)))]
        if noise.numel() < samples:
            noise = noise.repeat(math.ceil(samples / noise.numel()))
        first = int(rng.integers(0, noise.numel() - samples + 1))
        noise = noise[first : first + samples]
        noise_rms = _rms(noise)
        if noise_rms == 0.0:
            return torch.zeros(samples)
        snr = float(rng.uniform(*self.config.snr_range))
        return noise * (speech_rms / noise_rms / 10 ** (snr / 20))


def span_mask(batch, frames, mask_prob, mask_length, rng):
    """HuBERT/wav2vec 2.0 span masking with a numpy generator.

    ``round(mask_prob * frames / mask_length + u)`` spans (``u`` uniform in
    [0, 1)) of ``mask_length`` frames start at distinct random frames; they
    may overlap, so fewer than ``mask_prob`` of the frames end up masked
    (about half for 0.8 and spans of 10). At least one span per row.

    Example
    -------
    >>> mask = span_mask(2, 100, 0.8, 10, np.random.default_rng(0))
    >>> mask.shape, 0.3 < mask.float().mean().item() < 0.8
    (torch.Size([2, 100]), True)
    """
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    span = min(int(mask_length), frames)
    starts_max = frames - span + 1
    for row in range(batch):
        count = int(mask_prob * frames / span + rng.random())
        count = min(max(count, 1), starts_max)
        for start in rng.choice(starts_max, count, replace=False):
            mask[row, int(start) : int(start) + span] = True
    return mask


# ---------------------------------------------------------------- model


def hubert_config(config):
    """The ``transformers.HubertConfig`` of a :class:`PretrainConfig`.

    Layer-norm conv front end and pre-layer-norm ("stable") transformer,
    as HuBERT Large; no layer drop; no bias in the convs, so the front end
    ignores the input's gain. Pre-training masks through
    ``mask_time_indices``; the config keeps transformers' fine-tuning
    defaults (``mask_time_prob`` 0.05).

    Example
    -------
    >>> cfg = hubert_config(PretrainConfig())
    >>> cfg.model_type, cfg.hidden_size, cfg.do_stable_layer_norm
    ('hubert', 256, True)
    """
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.ffn_size,
        hidden_dropout=config.dropout,
        attention_dropout=config.dropout,
        activation_dropout=config.dropout,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        conv_dim=(config.conv_channels,) * len(CONV_KERNELS),
        conv_kernel=CONV_KERNELS,
        conv_stride=CONV_STRIDES,
        conv_bias=False,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=config.pos_conv_kernel,
        num_conv_pos_embedding_groups=config.pos_conv_groups,
    )


class PredictionHead(torch.nn.Module):
    """HuBERT's target prediction: cosine similarity over a temperature.

    Arguments
    ---------
    hidden_size, proj_dim, num_clusters : int
        Input width, projection width and number of targets.
    temperature : float
        Divides the cosine similarities.

    Example
    -------
    >>> head = PredictionHead(8, 4, 5)
    >>> tuple(head(torch.randn(2, 3, 8)).shape)
    (2, 3, 5)
    """

    def __init__(self, hidden_size, proj_dim, num_clusters, temperature=0.1):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, proj_dim)
        self.embeddings = torch.nn.Parameter(
            torch.randn(num_clusters, proj_dim) * proj_dim**-0.5
        )
        self.temperature = float(temperature)

    def forward(self, hidden):
        """Logits ``[..., num_clusters]`` of ``[..., hidden_size]``."""
        proj = F.normalize(self.proj(hidden), dim=-1)
        codes = F.normalize(self.embeddings, dim=-1)
        return proj @ codes.t() / self.temperature


def masked_prediction_loss(logits, targets, mask, unmasked_weight):
    """Cross-entropy at masked frames plus a weight times that at the rest.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    stats : dict
        ``masked_acc`` and ``unmasked_acc`` (floats, NaN if no such frame).

    Example
    -------
    >>> logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]])
    >>> targets = torch.tensor([[0, 0]])
    >>> mask = torch.tensor([[True, False]])
    >>> loss, stats = masked_prediction_loss(logits, targets, mask, 0.5)
    >>> stats["masked_acc"], stats["unmasked_acc"]
    (1.0, 0.0)
    """
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        reduction="none",
    ).reshape(targets.shape)
    correct = logits.argmax(-1) == targets
    loss = logits.new_zeros(())
    stats = {}
    for name, where, weight in (
        ("masked", mask, 1.0),
        ("unmasked", ~mask, unmasked_weight),
    ):
        if where.any():
            if weight:
                loss = loss + weight * ce[where].mean()
            stats[f"{name}_acc"] = float(correct[where].float().mean())
        else:
            stats[f"{name}_acc"] = float("nan")
    return loss, stats


def build_model(config):
    """A randomly initialised ``HubertModel`` and prediction head (seeded).

    Example
    -------
    >>> model, head = build_model(PretrainConfig(
    ...     hidden_size=32, num_layers=1, num_heads=2, ffn_size=32,
    ...     conv_channels=8, pos_conv_kernel=8, pos_conv_groups=2))
    >>> type(model).__name__, head.embeddings.shape[0]
    ('HubertModel', 50)
    """
    from transformers import HubertModel

    restore = _quiet_transformers()
    try:
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed)
        try:
            model = HubertModel(hubert_config(config))
            head = PredictionHead(
                config.hidden_size,
                config.proj_dim,
                config.num_clusters,
                config.logit_temperature,
            )
        finally:
            torch.random.set_rng_state(rng_state)
    finally:
        restore()
    return model, head


def _lr_factor(step, config):
    """Linear warm-up over ``warmup_fraction`` of the steps, linear decay."""
    warmup = max(1, round(config.warmup_fraction * config.steps))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (config.steps - step) / max(1, config.steps - warmup))


@torch.no_grad()
def holdout_accuracy(model, head, data, seed=0):
    """Masked accuracy on the held-out utterances, clean and noisy input.

    The masks are drawn from ``seed`` (the same at every call); the model is
    put back in the mode it was in. Returns ``{}`` without held-out data.
    """
    if not data.holdout:
        return {}
    was_training = model.training
    model.eval()
    rng = np.random.default_rng([seed, 5151])
    correct = {"clean": 0, "noisy": 0}
    total = 0
    counts = torch.zeros(data.config.num_clusters, dtype=torch.long)
    try:
        for (clean, noisy), targets in zip(data.holdout, data.holdout_targets):
            frames = targets.numel()
            mask = span_mask(
                1, frames, data.config.mask_prob, data.config.mask_length, rng
            )
            chosen = targets[mask[0]]
            total += chosen.numel()
            counts += torch.bincount(chosen, minlength=counts.numel())
            for name, wav in (("clean", clean), ("noisy", noisy)):
                hidden = model(
                    wav.unsqueeze(0), mask_time_indices=mask
                ).last_hidden_state
                pred = head(hidden).argmax(-1)[mask]
                correct[name] += int((pred == chosen).sum())
    finally:
        model.train(was_training)
    train_counts = torch.bincount(
        torch.cat(data.targets[1.0 if 1.0 in data.targets else
                               data.config.speed_factors[0]]),
        minlength=counts.numel(),
    )  # fmt: skip
    majority = int(train_counts.argmax())
    return {
        "masked_acc_clean": correct["clean"] / total,
        "masked_acc_noisy": correct["noisy"] / total,
        "majority_acc": int(counts[majority]) / total,
        "frames": total,
    }


# ---------------------------------------------------------------- folders


def _check_out_folder(out, config):
    """Decide what to do with ``out``: ``"start"``, ``"resume"``, ``"done"``.

    Raises :class:`PretrainError` when it holds something else, or a
    pre-training with other settings.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise PretrainError(f"{out}: --out exists and is not a folder")
    if not os.path.isdir(out):
        return "start"
    entries = sorted(os.listdir(out))
    if not entries:
        return "start"
    ours = set(_MODEL_FILES) | {_CHECKPOINT, _CONFIG, _LOG, _CENTROIDS}
    foreign = [name for name in entries if name not in ours]
    if foreign or _CONFIG not in entries:
        shown = ", ".join((foreign or entries)[:3])
        raise PretrainError(
            f"{out}: --out already holds other files ({shown}); give a new "
            "or empty folder"
        )
    with open(os.path.join(out, _CONFIG), encoding="utf-8") as fin:
        try:
            saved = PretrainConfig.from_dict(json.load(fin))
        except (ValueError, TypeError) as err:
            raise PretrainError(
                f"{os.path.join(out, _CONFIG)}: unreadable ({err}); give a "
                "new --out"
            ) from None
    differences = [
        f"{key} {getattr(saved, key)!r} -> {getattr(config, key)!r}"
        for key in (f.name for f in dataclasses.fields(PretrainConfig))
        if key not in _RUN_FIELDS
        and getattr(saved, key) != getattr(config, key)
    ]
    if differences:
        raise PretrainError(
            f"{out}: holds a pre-training with other settings "
            f"({'; '.join(differences[:3])}); repeat its options or give a "
            "new --out"
        )
    if _LOG in entries and all(name in entries for name in _MODEL_FILES):
        return "done"
    return "resume" if _CHECKPOINT in entries else "start"


class _StopRequest:
    """Turn SIGINT and SIGTERM into a flag that the loop checks per step.

    The training loop then stops between two steps and saves a consistent
    checkpoint; a second signal interrupts at once (the last periodic
    checkpoint remains). Outside the main thread, signals are left alone.

    Example
    -------
    >>> with _StopRequest() as stop:
    ...     stop.signal is None
    True
    """

    def __init__(self):
        self.signal = None
        self.previous = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _atomic_save(obj, path):
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(obj, path):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fout:
        json.dump(obj, fout, indent=2, sort_keys=True)
        fout.write("\n")
    os.replace(tmp, path)


def machine_description():
    """One line naming the CPU count, torch threads and platform.

    Example
    -------
    >>> "torch threads" in machine_description()
    True
    """
    return (
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"{platform.machine()} {platform.system()}, torch {torch.__version__}"
    )


def save_model_folder(model, out):
    """``save_pretrained`` plus a 16 kHz, ``do_normalize`` feature extractor.

    Example
    -------
    >>> import tempfile
    >>> model, _ = build_model(PretrainConfig(
    ...     hidden_size=32, num_layers=1, num_heads=2, ffn_size=32,
    ...     conv_channels=8, pos_conv_kernel=8, pos_conv_groups=2))
    >>> folder = save_model_folder(model, tempfile.mkdtemp())
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from transformers import Wav2Vec2FeatureExtractor

    restore = _quiet_transformers()
    try:
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out)
        Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=SSL_SAMPLE_RATE,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=False,
        ).save_pretrained(out)
    finally:
        restore()
    return out


# ---------------------------------------------------------------- training


def pretrain(out, config, data=None, stop_after=None, log=print):
    """Pre-train (or resume, or find finished) a small HuBERT into ``out``.

    Arguments
    ---------
    out : str
        The model folder (see the module docstring for its contents).
    config : PretrainConfig
        The settings.
    data : PretrainData, optional
        Ready data (tests); default: read the corpus of ``config``.
    stop_after : int, optional
        Stop once this many steps are done in total, leaving a checkpoint
        (the same call without it continues).
    log : callable
        Receives progress lines (``None``: silent).

    Returns
    -------
    dict
        The log written to ``pretrain_log.json`` (or, when stopped early,
        the state so far with ``"finished": False``).
    """
    config.check()
    log = log or (lambda line: None)
    out = os.path.abspath(os.path.expanduser(out))
    action = _check_out_folder(out, config)
    if action == "done":
        with open(os.path.join(out, _LOG), encoding="utf-8") as fin:
            result = json.load(fin)
        log(f"{out}: pre-training already finished; nothing to do")
        return result
    os.makedirs(out, exist_ok=True)
    _write_json(config.to_dict(), os.path.join(out, _CONFIG))
    start_wall = time.time()
    if data is None:
        root = resolve_data_folder(config)
        log(f"reading {root}")
        parts = read_voicebank_train(root, config.holdout_speakers)
        data = PretrainData(*parts["train"], *parts["holdout"], config, log)
    setup_seconds = time.time() - start_wall
    model, head = build_model(config)
    params = list(model.parameters()) + list(head.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, config)
    )
    rng = np.random.default_rng([config.seed, 2024])
    step, history, valid_history = 0, [], []
    elapsed, cpu = 0.0, 0.0
    ckpt_path = os.path.join(out, _CHECKPOINT)
    if action == "resume":
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        torch.random.set_rng_state(state["torch_rng"])
        data.load_state_dict(state["sampler"])
        step, history = state["step"], state["history"]
        valid_history = state["valid_history"]
        elapsed, cpu = state["train_seconds"], state["cpu_seconds"]
        log(f"resuming {out} at step {step}/{config.steps}")
    else:
        torch.manual_seed(config.seed + 1)
    num_params = sum(p.numel() for p in model.parameters())
    log(
        f"HuBERT {num_params / 1e6:.2f}M parameters, {config.steps} steps "
        f"of {config.batch_size} x {config.crop_seconds} s; "
        f"{data.num_utterances} training utterances"
    )

    def save_checkpoint():
        _atomic_save(
            {
                "model": model.state_dict(),
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.random.get_rng_state(),
                "sampler": data.state_dict(),
                "step": step,
                "history": history,
                "valid_history": valid_history,
                "train_seconds": elapsed,
                "cpu_seconds": cpu,
            },
            ckpt_path,
        )

    model.train()
    head.train()
    window = []
    last_time, last_cpu = time.time(), time.process_time()
    target = (
        config.steps
        if stop_after is None
        else min(config.steps, int(stop_after))
    )
    with _StopRequest() as stop:
        while step < target and stop.signal is None:
            wav, targets, mask = data.batch(rng)
            hidden = model(wav, mask_time_indices=mask).last_hidden_state
            logits = head(hidden)
            loss, stats = masked_prediction_loss(
                logits, targets, mask, config.unmasked_weight
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            now, now_cpu = time.time(), time.process_time()
            window.append((loss.item(), stats["masked_acc"], now - last_time))
            elapsed += now - last_time
            cpu += now_cpu - last_cpu
            last_time, last_cpu = now, now_cpu
            if step % config.log_every == 0 or step == config.steps:
                mean_loss = float(np.mean([w[0] for w in window]))
                mean_acc = float(np.nanmean([w[1] for w in window]))
                history.append(
                    {"step": step, "loss": mean_loss, "masked_acc": mean_acc}
                )
                log(
                    f"step {step}/{config.steps} loss {mean_loss:.3f} "
                    f"masked acc {mean_acc:.3f} lr "
                    f"{scheduler.get_last_lr()[0]:.2e} "
                    f"({np.mean([w[2] for w in window]):.2f} s/step)"
                )
                window = []
            if step % config.valid_every == 0 or step == config.steps:
                scores = holdout_accuracy(model, head, data, config.seed)
                if scores:
                    valid_history.append({"step": step, **scores})
                    log(
                        "  held-out masked acc clean "
                        f"{scores['masked_acc_clean']:.3f} noisy "
                        f"{scores['masked_acc_noisy']:.3f} (majority "
                        f"{scores['majority_acc']:.3f})"
                    )
            if step % config.checkpoint_every == 0 and step < config.steps:
                save_checkpoint()
    if step < config.steps:
        save_checkpoint()
        why = "interrupted" if stop.signal is not None else "stopped"
        log(f"{why} at step {step}; rerun the command to resume")
        return {
            "finished": False,
            "interrupted": stop.signal is not None,
            "step": step,
            "history": history,
        }
    save_model_folder(model, out)
    torch.save(
        {"centroids": data.centroids, "features": data.features.name},
        os.path.join(out, _CENTROIDS),
    )
    result = {
        "finished": True,
        "config": config.to_dict(),
        "parameters": num_params,
        "train_seconds": round(elapsed, 1),
        "cpu_seconds": round(cpu, 1),
        "setup_seconds_last_run": round(setup_seconds, 1),
        "machine": machine_description(),
        "training_utterances": data.num_utterances,
        "holdout_utterances": len(data.holdout),
        "target_features": data.features.name,
        "kmeans_mean_squared_distance": data.inertia,
        "cluster_share_max": max(data.cluster_share),
        "history": history,
        "holdout": valid_history,
    }
    _write_json(result, os.path.join(out, _LOG))
    if os.path.exists(ckpt_path):
        os.remove(ckpt_path)
    log(f"saved {out} ({elapsed:.0f} s of training)")
    return result


# ---------------------------------------------------------------- CLI


def _parse_tuple(kind):
    def parse(text):
        try:
            return tuple(kind(x) for x in str(text).split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated values, got {text!r}"
            ) from None

    return parse


def _warn_other_corpus(folder, config):
    """Say so when ``folder`` was pre-trained on another mini corpus.

    The word probe avoids the voices of the corpus given on the command
    line; a model pre-trained on another one may have heard its speakers.
    """
    path = os.path.join(folder, _CONFIG)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fin:
        saved = json.load(fin)
    keys = ("data_folder", "size", "corpus_seed")
    if any(saved.get(key) != getattr(config, key) for key in keys):
        shown = ", ".join(f"--{key} {saved.get(key)!r}" for key in keys)
        print(
            f"warning: {folder} was pre-trained with {shown}; pass the same "
            "options so that the probe's speakers are unheard",
            file=sys.stderr,
        )


def build_parser():
    """The argument parser: one option per :class:`PretrainConfig` field."""
    parser = argparse.ArgumentParser(
        prog="python -m lobes.ssl_pretrain",
        description="Pre-train a small HuBERT on a mini corpus (offline), "
        "or evaluate SSL model folders (--evaluate).",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", help="model folder to write (or resume)")
    action.add_argument(
        "--evaluate",
        nargs="+",
        metavar="DIR",
        help="SSL model folders to probe (with random init and MFCC)",
    )
    parser.add_argument(
        "--stop_after", type=int, help="stop after this many steps in total"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="--evaluate: write results here")
    defaults = PretrainConfig()
    for field in dataclasses.fields(PretrainConfig):
        default = getattr(defaults, field.name)
        if isinstance(default, tuple):
            kind = _parse_tuple(type(default[0]) if default else str)
            shown = ",".join(str(v) for v in default)
        else:
            kind, shown = type(default), default
        parser.add_argument(
            f"--{field.name}",
            type=kind,
            default=default,
            help=f"(default: {shown})",
        )
    return parser


@exit_on_user_error
def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    values = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(PretrainConfig)
    }
    config = PretrainConfig(**values).check()
    if args.evaluate:
        from lobes import ssl_probe

        for folder in args.evaluate:
            _warn_other_corpus(folder, config)
        results = ssl_probe.evaluate(
            args.evaluate,
            data_folder=resolve_data_folder(config),
            corpus_size=config.size,
            corpus_seed=config.corpus_seed,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        print(ssl_probe.format_table(results))
        if args.json:
            _write_json(results, args.json)
        return results
    result = pretrain(
        args.out,
        config,
        stop_after=args.stop_after,
        log=lambda line: print(line, flush=True),
    )
    if result.get("interrupted"):
        raise SystemExit(130)
    return None


if __name__ == "__main__":
    main()
