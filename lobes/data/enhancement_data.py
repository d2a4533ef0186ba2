"""Datasets and feature caches of the speech enhancement recipes.

Contrastive regularization compares the enhanced speech with the clean
speech and with negatives (the noisy input, a reference model's output) in
the feature space of a frozen self-supervised model. Those three feature
sets depend only on the training example, so when every utterance always
gives the *same* training segment they can be computed once and reused in
every epoch. :func:`fixed_segment` makes the segment a deterministic
function of the utterance id (a fixed crop of long utterances; short ones
stay whole: no zero padding enters a loss, and the batch's relative
lengths tell the true length of each item); the Brain computes each
utterance's features on its own samples, so they do not depend on which
utterances share its batch; :class:`FeatureCache` keeps them in memory or
on disk, under a fingerprint of everything they depend on
(:func:`cache_fingerprint`).

Authors
 * noise-robust-sb contributors 2025
"""

import hashlib
import json
import os
import zlib

import speechbrain as sb
import torch
import torch.nn.functional as F

from lobes.data.audio import check_same_length, read_audio
from lobes.data.pipelines import random_crop
from lobes.errors import HparamsError

#: Values of the ``feature_cache`` hparam.
CACHE_MODES = ("memory", "disk", "none")


def utterance_seed(utt_id, seed=0):
    """A stable 31-bit seed for an utterance id (same in every process).

    Example
    -------
    >>> utterance_seed("p232_001") == utterance_seed("p232_001")
    True
    >>> utterance_seed("p232_001") != utterance_seed("p232_001", seed=1)
    True
    """
    return zlib.crc32(f"{seed}:{utt_id}".encode()) & 0x7FFFFFFF


def fixed_segment(signals, length, utt_id, seed=0):
    """Cut aligned signals to ``length`` samples, the same way every epoch.

    Longer signals are cropped at an offset drawn with a generator seeded
    by the utterance id (``lobes.data.pipelines.random_crop``); shorter ones
    are kept whole (a batch pads them, with their true relative length).

    Arguments
    ---------
    signals : list of torch.Tensor
        Aligned signals ``[time]`` of equal length (noisy, clean).
    length : int
        Segment length in samples.
    utt_id : str
        The utterance id that fixes the crop.
    seed : int
        Changes every crop at once.

    Returns
    -------
    list of torch.Tensor
        The segments, each ``[min(length, time)]``.

    Example
    -------
    >>> noisy, clean = torch.arange(10.0), torch.arange(10.0) * 2
    >>> a = fixed_segment([noisy, clean], 4, "utt1")
    >>> b = fixed_segment([noisy, clean], 4, "utt1")
    >>> torch.equal(a[0], b[0]), torch.equal(a[1], 2 * a[0])
    (True, True)
    >>> fixed_segment([torch.ones(3)], 5, "utt1")[0]
    tensor([1., 1., 1.])
    """
    length = int(length)
    if signals[0].shape[-1] > length:
        generator = torch.Generator().manual_seed(utterance_seed(utt_id, seed))
        return list(random_crop(list(signals), length, generator=generator))
    return list(signals)


def enhancement_datasets(
    csv_files,
    sample_rate,
    segment_length,
    crop_seed=0,
):
    """Build the train/valid/test datasets of an enhancement recipe.

    Arguments
    ---------
    csv_files : dict
        ``{"train": path, "valid": path, "test": path}``: CSVs with the
        columns ``ID, duration, noisy_wav, clean_wav`` (as written by
        ``lobes.data.prepare.prepare_voicebank``).
    sample_rate : int
        Expected sample rate of every file (a mismatch is a one-line error).
    segment_length : float
        Longest training example in seconds (a fixed crop per utterance,
        see :func:`fixed_segment`); validation and test use whole
        utterances.
    crop_seed : int
        Seed of the fixed training crops.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` ->
        ``speechbrain.dataio.dataset.DynamicItemDataset`` with the keys
        ``id``, ``noisy_sig`` and ``clean_sig``.

    Example
    -------
    >>> import tempfile, csv
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("n", "c"):
    ...     write_audio(f"{folder}/{name}.wav", torch.rand(1600) - .5, 16000)
    >>> path = f"{folder}/set.csv"
    >>> with open(path, "w", newline="") as fout:
    ...     _ = fout.write("ID,duration,noisy_wav,clean_wav\\n")
    ...     _ = fout.write(f"u1,0.1,{folder}/n.wav,{folder}/c.wav\\n")
    >>> sets = enhancement_datasets(
    ...     {"train": path, "valid": path, "test": path}, 16000, 0.05)
    >>> sets["train"][0]["noisy_sig"].shape, sets["test"][0]["clean_sig"].shape
    (torch.Size([800]), torch.Size([1600]))
    """
    segment_samples = int(round(float(segment_length) * int(sample_rate)))
    if segment_samples <= 0:
        raise HparamsError(
            f"segment_length must be positive (seconds), got {segment_length}"
        )

    def read_pair(noisy_wav, clean_wav):
        noisy = read_audio(noisy_wav, sample_rate=sample_rate)
        clean = read_audio(clean_wav, sample_rate=sample_rate)
        check_same_length([noisy, clean], [noisy_wav, clean_wav])
        return noisy, clean

    @sb.utils.data_pipeline.takes("id", "noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def train_pipeline(utt_id, noisy_wav, clean_wav):
        noisy, clean = read_pair(noisy_wav, clean_wav)
        noisy, clean = fixed_segment(
            [noisy, clean], segment_samples, utt_id, crop_seed
        )
        yield noisy
        yield clean

    @sb.utils.data_pipeline.takes("noisy_wav", "clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def full_pipeline(noisy_wav, clean_wav):
        noisy, clean = read_pair(noisy_wav, clean_wav)
        yield noisy
        yield clean

    datasets = {}
    for split in ("train", "valid", "test"):
        pipeline = train_pipeline if split == "train" else full_pipeline
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=csv_files[split],
            dynamic_items=[pipeline],
            output_keys=["id", "noisy_sig", "clean_sig"],
        )
    return datasets


def pad_frames(tensors):
    """Stack ``[frames, ...]`` tensors, zero-padding to the longest.

    Example
    -------
    >>> pad_frames([torch.ones(3, 2), torch.ones(1, 2)])[:, :, 0]
    tensor([[1., 1., 1.],
            [1., 0., 0.]])
    """
    frames = max(t.shape[0] for t in tensors)
    return torch.stack([
        F.pad(t, (0, 0) * (t.dim() - 1) + (0, frames - t.shape[0]))
        for t in tensors
    ])


def manifest_fingerprint(data):
    """A short hash of a dataset's manifest content (ids, paths, durations).

    Arguments
    ---------
    data : dict
        ``DynamicItemDataset.data``: utterance id -> its CSV row.

    Example
    -------
    >>> a = manifest_fingerprint({"u1": {"noisy_wav": "/mini/u1.wav"}})
    >>> a != manifest_fingerprint({"u1": {"noisy_wav": "/real/u1.wav"}})
    True
    """
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cache_fingerprint(settings):
    """A short hash of everything the cached features depend on.

    Example
    -------
    >>> a = cache_fingerprint({"ssl_source": "x", "segment_length": 4.0})
    >>> a == cache_fingerprint({"segment_length": 4.0, "ssl_source": "x"})
    True
    >>> len(a)
    12
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _safe_name(utt_id):
    """A file name for an utterance id (path separators replaced)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in utt_id)
    digest = hashlib.sha1(utt_id.encode()).hexdigest()[:8]
    return f"{name}_{digest}"


class FeatureCache:
    """Per-utterance feature lists, kept in memory, on disk or not at all.

    An entry is what a feature extractor returns for one utterance: a list
    of tensors (one per SSL layer group), stored without the batch axis.
    :meth:`get_or_compute` serves a whole batch from the cache when every
    utterance of the batch is there, else computes the batch once and
    stores each utterance.

    Arguments
    ---------
    mode : str
        ``"memory"``, ``"disk"`` or ``"none"`` (always compute).
    folder : str, optional
        Where ``"disk"`` writes ``<folder>/<kind>/<utterance>.pt``; see
        :meth:`bind` for a subfolder per set of settings.
    dtype : torch.dtype or str, optional
        Storage type, e.g. ``torch.float16`` or ``"float16"`` to halve the
        cache size; features come back in the dtype they were computed in.

    Example
    -------
    >>> cache = FeatureCache("memory")
    >>> calls = []
    >>> def compute():
    ...     calls.append(1)
    ...     return [torch.ones(2, 3, 4)]
    >>> first = cache.get_or_compute("clean", ["a", "b"], compute)
    >>> second = cache.get_or_compute("clean", ["a", "b"], compute)
    >>> len(calls), torch.equal(first[0], second[0]), cache.hits
    (1, True, 2)
    """

    def __init__(self, mode="memory", folder=None, dtype=None):
        if mode not in CACHE_MODES:
            raise HparamsError(
                f"feature_cache must be one of {', '.join(CACHE_MODES)}, "
                f"got '{mode}'"
            )
        if mode == "disk" and not folder:
            raise HparamsError("feature_cache: disk needs a cache folder")
        if isinstance(dtype, str):
            name = dtype
            dtype = getattr(torch, name, None)
            if not isinstance(dtype, torch.dtype):
                raise HparamsError(
                    f"feature_cache_dtype must be a torch dtype name such as "
                    f"float32 or float16, got '{name}'"
                )
        self.mode = mode
        self.root = folder
        self.folder = folder
        self.dtype = dtype
        self._memory = {}
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self):
        """Whether anything is stored."""
        return self.mode != "none"

    def bind(self, settings):
        """Store under ``<folder>/<fingerprint of settings>`` (disk mode).

        ``settings`` names everything the features depend on (the
        manifest's content, the SSL model's config and weights, its input
        normalisation and layers, the crops, a reference model's weights,
        the storage type), so features computed under other settings are
        never read. When the folder is new while another one exists, the
        returned line says which settings changed (the recipe logs it).

        Returns
        -------
        str or None
            A log line when a cache is built anew next to an older one.

        Example
        -------
        >>> import tempfile
        >>> cache = FeatureCache("disk", folder=tempfile.mkdtemp())
        >>> cache.bind({"corpus": "mini", "layers": 4}) is None
        True
        >>> print(cache.bind({"corpus": "real", "layers": 4}))
        Feature cache: new features in ... (corpus changed since ...)
        """
        if self.mode != "disk":
            return None
        fingerprint = cache_fingerprint(settings)
        self.folder = os.path.join(self.root, fingerprint)
        record = os.path.join(self.folder, "settings.json")
        if os.path.isfile(record):
            return None
        others = []
        if os.path.isdir(self.root):
            for name in sorted(os.listdir(self.root)):
                path = os.path.join(self.root, name, "settings.json")
                if name != fingerprint and os.path.isfile(path):
                    others.append((os.path.getmtime(path), path))
        os.makedirs(self.folder, exist_ok=True)
        with open(record, "w", encoding="utf-8") as fout:
            json.dump(settings, fout, indent=1, sort_keys=True, default=str)
        if not others:
            return None
        latest = max(others)[1]
        with open(latest, encoding="utf-8") as fin:
            previous = json.load(fin)
        changed = sorted(
            key for key in set(settings) | set(previous)
            if json.dumps(settings.get(key), default=str)
            != json.dumps(previous.get(key), default=str)
        )
        return (
            f"Feature cache: new features in {self.folder} "
            f"({', '.join(changed) or 'settings'} changed since "
            f"{os.path.dirname(latest)})"
        )

    def _path(self, kind, utt_id):
        return os.path.join(self.folder, kind, _safe_name(utt_id) + ".pt")

    def get(self, kind, utt_id):
        """One utterance's feature list (CPU tensors), or ``None``."""
        if self.mode == "memory":
            return self._memory.get((kind, utt_id))
        if self.mode == "disk":
            path = self._path(kind, utt_id)
            if os.path.isfile(path):
                return torch.load(path, map_location="cpu", weights_only=True)
        return None

    def put(self, kind, utt_id, features):
        """Store one utterance's feature list."""
        if not self.enabled:
            return
        stored = [
            f.detach().to("cpu", self.dtype or f.dtype).clone()
            for f in features
        ]
        if self.mode == "memory":
            self._memory[(kind, utt_id)] = stored
        else:
            path = self._path(kind, utt_id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            torch.save(stored, tmp)
            os.replace(tmp, path)

    def load(self, kind, ids, device=None, dtype=None):
        """A batch's features if every utterance is cached, else ``None``.

        Arguments
        ---------
        kind : str
            What the features are of (``"clean"``, ``"noisy"``,
            ``"reference"``).
        ids : list of str
            Utterance ids of the batch, in batch order.
        device : torch.device, optional
            Where the features are moved.
        dtype : torch.dtype, optional
            The dtype they are returned in (default: as stored).

        Returns
        -------
        list of torch.Tensor or None
            One ``[B, frames, ...]`` tensor per layer group; utterances with
            fewer frames are zero-padded at the end.
        """
        if not self.enabled:
            return None
        entries = []
        for utt_id in ids:
            entry = self.get(kind, utt_id)
            if entry is None:
                return None
            entries.append(entry)
        self.hits += len(ids)
        return [
            pad_frames([e[i] for e in entries]).to(device=device, dtype=dtype)
            for i in range(len(entries[0]))
        ]

    def store(self, kind, ids, features, frames=None):
        """Store a batch's features (``[B, frames, ...]`` tensors) per
        utterance, each cut to its ``frames[i]`` valid frames if given."""
        self.misses += len(ids)
        for index, utt_id in enumerate(ids):
            end = None if frames is None else int(frames[index])
            self.put(kind, utt_id, [f[index, :end] for f in features])

    def get_or_compute(self, kind, ids, compute, device=None, dtype=None):
        """Return the batch's features, computing them on a cache miss.

        Arguments
        ---------
        kind : str
            What the features are of.
        ids : list of str
            Utterance ids of the batch, in batch order.
        compute : callable
            Returns the batch's features: a list of ``[B, ...]`` tensors.
        device, dtype : optional
            As for :meth:`load`.

        Returns
        -------
        list of torch.Tensor
            One ``[B, ...]`` tensor per layer group, without gradient.
        """
        cached = self.load(kind, ids, device, dtype)
        if cached is not None:
            return cached
        with torch.no_grad():
            features = [f.detach() for f in compute()]
        self.store(kind, ids, features)
        return features

    def size_bytes(self):
        """Bytes held in memory (``"memory"`` mode), for the log.

        Example
        -------
        >>> cache = FeatureCache("memory")
        >>> cache.put("clean", "a", [torch.zeros(2, 3)])
        >>> cache.size_bytes()
        24
        """
        return sum(
            t.numel() * t.element_size()
            for entry in self._memory.values()
            for t in entry
        )
