"""Masked-prediction data: clean k-means targets, noisy crops, span masks.

HuBERT's first iteration with WavLM's denoising twist (Chen et al., 2022):

* targets: k-means cluster ids (:mod:`lobes.ssl.targets`) of the *clean*
  speech of the training manifest;
* input: the clean speech or, with probability ``noisy_prob``, the clean
  speech plus a segment of the corpus's training noise (noisy minus clean)
  at a random SNR; the targets stay those of the clean speech;
* speed perturbation (resampling: tempo *and* formants) of the clean
  speech, whose targets are the perturbed speech's own clusters;
* span masks as HuBERT/wav2vec 2.0 draw them (:func:`span_mask`).

:class:`MaskedPredictionCorpus` computes every target once;
:class:`MaskedCropBatches` draws training batches from one numpy generator
and checkpoints it with its sampler position (exact resume);
:class:`HeldOutUtterances` gives the held-out speakers' utterances with
fixed masks for validation.
"""

import csv
import json
import math
import time
from fractions import Fraction

import numpy as np
import torch
import torchaudio
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from lobes.data.audio import read_audio
from lobes.errors import DataFolderError, HparamsError
from lobes.ssl.targets import (
    FRAME_HOP,
    FRAME_WINDOW,
    assign_clusters,
    kmeans,
    normalize_waveform,
    num_frames,
)
from lobes.ssl_features import SSL_SAMPLE_RATE


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


def read_clean_noisy(manifest):
    """The clean and noisy waveforms of a VoiceBank manifest, in its order.

    Arguments
    ---------
    manifest : str
        A CSV of :func:`lobes.data.prepare.prepare_voicebank` (columns
        ``clean_wav`` and ``noisy_wav``).

    Returns
    -------
    clean, noisy : list of torch.Tensor
        Float32 ``[time]`` waveforms at 16 kHz.

    Example
    -------
    >>> read_clean_noisy("/no/such.csv")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such.csv: manifest not found; ...
    """
    try:
        with open(manifest, encoding="utf-8", newline="") as fin:
            rows = list(csv.DictReader(fin))
    except FileNotFoundError:
        raise DataFolderError(
            f"{manifest}: manifest not found; rerun without --skip_prep"
        ) from None
    clean, noisy = [], []
    for row in rows:
        clean.append(read_audio(row["clean_wav"], SSL_SAMPLE_RATE))
        noisy.append(read_audio(row["noisy_wav"], SSL_SAMPLE_RATE))
        if clean[-1].numel() != noisy[-1].numel():
            raise DataFolderError(
                f"{row['noisy_wav']}: {noisy[-1].numel()} samples but the "
                f"clean version has {clean[-1].numel()}; re-create the corpus"
            )
    return clean, noisy


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


def _rms(wav):
    return float(wav.pow(2).mean().sqrt())


def _check(name, ok, why, value):
    if not ok:
        raise HparamsError(f"--{name}={value!r} {why}; fix it in the YAML "
                           "or on the command line")  # fmt: skip


class MaskedPredictionCorpus:
    """Every speed version of the training speech with its cluster ids.

    Arguments
    ---------
    train_clean, train_noisy : list of torch.Tensor
        Training utterances; their differences form the noise pool.
    holdout_clean, holdout_noisy : list of torch.Tensor
        Held-out utterances (may be empty).
    features : callable
        ``[time]`` waveform -> ``[frames, dim]`` (with a ``name``), e.g.
        :func:`lobes.ssl.targets.target_features`.
    num_clusters : int
        K of the k-means targets.
    speed_factors : sequence of float
        Speed perturbation factors.
    kmeans_iterations, kmeans_max_frames : int
        Lloyd iterations and the most frames k-means is fitted on.
    seed : int
        Seed of the k-means frame subset and initialisation.
    log : callable, optional
        Receives progress lines.

    Example
    -------
    >>> from lobes.ssl.targets import target_features
    >>> gen = torch.Generator().manual_seed(0)
    >>> clean = [torch.randn(8000, generator=gen) for _ in range(3)]
    >>> noisy = [c + 0.1 * torch.randn(8000, generator=gen) for c in clean]
    >>> corpus = MaskedPredictionCorpus(clean, noisy, [], [],
    ...     target_features(), num_clusters=4)
    >>> tuple(corpus.centroids.shape), corpus.num_utterances
    ((4, 39), 3)
    """

    def __init__(
        self, train_clean, train_noisy, holdout_clean, holdout_noisy,
        features, num_clusters=50, speed_factors=(0.9, 1.0, 1.1),
        kmeans_iterations=100, kmeans_max_frames=200000, seed=0, log=None,
    ):  # fmt: skip
        _check("num_clusters", num_clusters >= 2, "must be at least 2",
               num_clusters)  # fmt: skip
        _check("speed_factors", len(speed_factors) > 0 and all(
            0.5 <= f <= 2.0 for f in speed_factors),
            "must be factors in [0.5, 2]", speed_factors)  # fmt: skip
        log = log or (lambda line: None)
        self.features = features
        self.speed_factors = tuple(float(f) for f in speed_factors)
        self.num_clusters = int(num_clusters)
        fastest = max(self.speed_factors)
        pairs = [
            (c.float(), n.float())
            for c, n in zip(train_clean, train_noisy)
            if num_frames(c.numel() / fastest) >= 2
        ]
        if not pairs:
            raise DataFolderError(
                "no training utterance is long enough (0.05 s) to pre-train"
            )
        clean = [normalize_waveform(c) for c, _ in pairs]
        self.noise = [n - c for c, n in pairs]
        self.waves, feats = {}, {}
        for factor in self.speed_factors:
            self.waves[factor] = [
                w if factor == 1.0
                else normalize_waveform(speed_perturb(w, factor))
                for w in clean
            ]  # fmt: skip
            feats[factor] = [features(w) for w in self.waves[factor]]
        # k-means on the unperturbed speech.
        frames = torch.cat(feats.get(1.0) or [features(w) for w in clean])
        gen = torch.Generator().manual_seed(int(seed))
        if frames.shape[0] > kmeans_max_frames:
            keep = torch.randperm(frames.shape[0], generator=gen)
            frames = frames[keep[:kmeans_max_frames]]
        start = time.time()
        self.centroids, self.inertia = kmeans(
            frames, self.num_clusters, kmeans_iterations, seed
        )
        counts = torch.bincount(
            assign_clusters(frames, self.centroids),
            minlength=self.num_clusters,
        )
        self.cluster_share = (counts.double() / counts.sum()).tolist()
        self.majority_cluster = int(counts.argmax())
        log(
            f"k-means: {self.num_clusters} clusters of {frames.shape[0]} "
            f"{features.name} frames in {time.time() - start:.1f} s "
            f"(mean squared distance {self.inertia:.1f}, largest cluster "
            f"{max(self.cluster_share):.1%})"
        )
        self.targets = {
            factor: [assign_clusters(f, self.centroids) for f in fs]
            for factor, fs in feats.items()
        }
        self.holdout = [
            (normalize_waveform(c.float()), normalize_waveform(n.float()))
            for c, n in zip(holdout_clean, holdout_noisy)
            if num_frames(c.numel()) >= 1
        ]
        self.holdout_targets = [
            assign_clusters(features(c), self.centroids)
            for c, _ in self.holdout
        ]
        self.num_utterances = len(clean)


@register_checkpoint_hooks
class MaskedCropBatches(torch.utils.data.Dataset):
    """Training batches of random crops, drawn from one numpy generator.

    Item ``i`` is the next batch of the generator (``i`` itself is
    ignored): load it with ``batch_size: null`` and no shuffling, in the
    main process. Utterances are visited in a fresh random order at each
    pass. The generator and the sampler's position are checkpointed
    (JSON), so a resumed run draws the same batches as an uninterrupted one.

    Arguments
    ---------
    batch_size : int
        Crops per batch.
    crop_seconds : float
        The longest crop (a batch is cut to its shortest utterance).
    noisy_prob : float
        Probability that a crop's input is noisy (targets stay clean).
    snr_range : sequence of float
        SNR range (dB) of the added noise.
    mask_prob, mask_length : float, int
        Span masking (:func:`span_mask`).
    steps_per_epoch : int
        Batches per epoch (the dataset's length).
    seed : int
        Seed of the generator.

    Example
    -------
    >>> from lobes.ssl.targets import target_features
    >>> gen = torch.Generator().manual_seed(0)
    >>> clean = [torch.randn(8000, generator=gen) for _ in range(3)]
    >>> noisy = [c + 0.1 * torch.randn(8000, generator=gen) for c in clean]
    >>> batches = MaskedCropBatches(batch_size=2, crop_seconds=0.3)
    >>> batches.attach(MaskedPredictionCorpus(clean, noisy, [], [],
    ...     target_features(), num_clusters=4))
    >>> wav, targets, mask = batches[0]
    >>> tuple(wav.shape), tuple(targets.shape), mask.dtype
    ((2, 4560), (2, 14), torch.bool)
    """

    def __init__(
        self, batch_size=8, crop_seconds=2.0, noisy_prob=0.5,
        snr_range=(-5.0, 20.0), mask_prob=0.8, mask_length=10,
        steps_per_epoch=100, seed=0,
    ):  # fmt: skip
        _check("batch_size", batch_size >= 1, "must be at least 1",
               batch_size)  # fmt: skip
        _check("crop_seconds", crop_seconds * SSL_SAMPLE_RATE >= FRAME_WINDOW,
               "must be at least 0.025", crop_seconds)  # fmt: skip
        _check("noisy_prob", 0 <= noisy_prob <= 1, "must be in [0, 1]",
               noisy_prob)  # fmt: skip
        _check("snr_range", len(snr_range) == 2
               and snr_range[0] <= snr_range[1], "must be [low, high]",
               snr_range)  # fmt: skip
        _check("mask_prob", 0 <= mask_prob <= 1, "must be in [0, 1]",
               mask_prob)  # fmt: skip
        _check("mask_length", mask_length >= 1, "must be at least 1",
               mask_length)  # fmt: skip
        _check("steps_per_epoch", steps_per_epoch >= 1, "must be at least 1",
               steps_per_epoch)  # fmt: skip
        self.batch_size = int(batch_size)
        self.crop_seconds = float(crop_seconds)
        self.noisy_prob = float(noisy_prob)
        self.snr_range = tuple(float(v) for v in snr_range)
        self.mask_prob = float(mask_prob)
        self.mask_length = int(mask_length)
        self.steps_per_epoch = int(steps_per_epoch)
        self.rng = np.random.default_rng([int(seed), 2024])
        self.order = np.zeros(0, dtype=np.int64)
        self.position = 0
        self.corpus = None

    def attach(self, corpus):
        """Draw from ``corpus`` (a :class:`MaskedPredictionCorpus`)."""
        self.corpus = corpus

    def __len__(self):
        return self.steps_per_epoch

    def __getitem__(self, index):
        return self.draw()

    def _next_indices(self, count):
        picks = []
        while len(picks) < count:
            if self.position >= len(self.order):
                self.order = self.rng.permutation(self.corpus.num_utterances)
                self.position = 0
            picks.append(int(self.order[self.position]))
            self.position += 1
        return picks

    def draw(self):
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
        corpus, rng = self.corpus, self.rng
        indices = self._next_indices(self.batch_size)
        speeds = corpus.speed_factors
        factors = [speeds[int(rng.integers(len(speeds)))] for _ in indices]
        lengths = [
            corpus.targets[f][i].numel() for f, i in zip(factors, indices)
        ]
        crop = min([num_frames(self.crop_seconds * SSL_SAMPLE_RATE)]
                   + lengths)  # fmt: skip
        samples = (crop - 1) * FRAME_HOP + FRAME_WINDOW
        wavs, targets = [], []
        for factor, index, length in zip(factors, indices, lengths):
            first = int(rng.integers(0, length - crop + 1))
            wav = corpus.waves[factor][index]
            wav = wav[first * FRAME_HOP : first * FRAME_HOP + samples]
            targets.append(corpus.targets[factor][index][first : first + crop])
            if rng.random() < self.noisy_prob:
                wav = wav + self._noise(samples, _rms(wav))
            wavs.append(normalize_waveform(wav))
        mask = span_mask(
            self.batch_size, crop, self.mask_prob, self.mask_length, rng
        )
        return torch.stack(wavs), torch.stack(targets), mask

    def _noise(self, samples, speech_rms):
        """A noise-pool segment of ``samples`` at a random SNR."""
        rng, pool = self.rng, self.corpus.noise
        noise = pool[int(rng.integers(len(pool)))]
        if noise.numel() < samples:
            noise = noise.repeat(math.ceil(samples / noise.numel()))
        first = int(rng.integers(0, noise.numel() - samples + 1))
        noise = noise[first : first + samples]
        noise_rms = _rms(noise)
        if noise_rms == 0.0:
            return torch.zeros(samples)
        snr = float(rng.uniform(*self.snr_range))
        return noise * (speech_rms / noise_rms / 10 ** (snr / 20))

    def state_dict(self):
        """The generator's state and the sampler's position (JSON-ready)."""
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "position": self.position,
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position = int(state["position"])

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(self.state_dict(), fout)

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        del end_of_epoch
        with open(path, encoding="utf-8") as fin:
            self.load_state_dict(json.load(fin))


class HeldOutUtterances(torch.utils.data.Dataset):
    """The held-out utterances with masks fixed once (validation).

    Each item is ``(clean, noisy, targets, mask)`` with a batch axis of 1.

    Arguments
    ---------
    corpus : MaskedPredictionCorpus
        Holds the held-out utterances and their clean targets.
    mask_prob, mask_length : float, int
        Span masking (:func:`span_mask`).
    seed : int
        Seed of the masks.

    Example
    -------
    >>> from lobes.ssl.targets import target_features
    >>> clean = [torch.randn(8000) for _ in range(3)]
    >>> corpus = MaskedPredictionCorpus(clean, clean, clean[:1], clean[:1],
    ...     target_features(), num_clusters=4)
    >>> items = HeldOutUtterances(corpus, 0.8, 10)
    >>> len(items), tuple(items[0][3].shape)
    (1, (1, 24))
    """

    def __init__(self, corpus, mask_prob=0.8, mask_length=10, seed=0):
        rng = np.random.default_rng([int(seed), 5151])
        self.items = []
        for (clean, noisy), targets in zip(corpus.holdout,
                                           corpus.holdout_targets):
            mask = span_mask(1, targets.numel(), mask_prob, mask_length, rng)
            self.items.append((clean.unsqueeze(0), noisy.unsqueeze(0),
                               targets.unsqueeze(0), mask))  # fmt: skip

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]
