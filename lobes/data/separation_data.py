"""Separation datasets: manifests -> SpeechBrain ``DynamicItemDataset``.

A separation manifest (written by :mod:`lobes.data.prepare`) has the columns
``ID, duration, mix_wav, s1_wav, s2_wav[, s3_wav], noise_wav``. Every item
of the datasets built here provides

- ``mix_sig``: the mixture ``[time]``;
- ``sources_sig``: the speakers ``[time, num_spks]``;
- ``noise_sig``: the noise ``[time]``.

Training items are random segments of ``segment_seconds``. Optionally they
are *dynamically mixed*: the speakers come from ``num_spks`` distinct
training mixtures and the noise from a random one, remixed on the fly with
random gains in WHAM!-like ranges (speaker levels within a few dB of each
other, noise at -6 to +3 dB SNR against the loudest speaker), so that the
mixture is exactly the sum of the returned parts. Optional speed
perturbation resamples each source and the noise independently (then the
mixture is re-summed as well). Both are :mod:`lobes.data.dynamic_mixing`.

Every random draw of a training item comes from a generator seeded with
``(seed, epoch, item id)``: an epoch is reproducible, a resumed run sees the
same data as an uninterrupted one, and under DDP each rank draws different
data because SpeechBrain's ``DistributedSampler`` hands it different items.
The Brain calls :meth:`SeparationDataset.set_epoch` at the start of each
training epoch, before the data loader starts its workers.

Validation and test items are whole utterances (optionally capped at
``eval_max_seconds``), unaltered.

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import zlib

import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from lobes.data.audio import check_same_length, read_audio
from lobes.data.dynamic_mixing import (  # noqa: F401 (YAMLs of older runs)
    DynamicMixer,
    SpeedPerturbation,
    fit_length,
    random_index,
)
from lobes.data.pipelines import random_crop
from lobes.errors import DataFolderError, HparamsError

#: Keys every separation item provides.
OUTPUT_KEYS = ["id", "mix_sig", "sources_sig", "noise_sig"]


def source_columns(num_spks):
    """Manifest columns holding the speakers: ``s1_wav`` ... ``sN_wav``.

    Example
    -------
    >>> source_columns(3)
    ['s1_wav', 's2_wav', 's3_wav']
    """
    return [f"s{i + 1}_wav" for i in range(int(num_spks))]


def read_manifest(csv_path, num_spks):
    """Read a separation manifest and check its columns.

    Arguments
    ---------
    csv_path : str
        The manifest.
    num_spks : int
        Number of speakers the recipe separates.

    Returns
    -------
    list of dict
        One dict per row.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration,mix_wav,s1_wav,s2_wav,noise_wav\\n"
    ...     "a,1.0,m.wav,1.wav,2.wav,n.wav\\n")
    >>> read_manifest(path, 2)[0]["s2_wav"]
    '2.wav'
    >>> read_manifest(path, 3)
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: ...m.csv: no column s3_wav...
    """
    try:
        with open(csv_path, newline="", encoding="utf-8") as fin:
            reader = csv.DictReader(fin)
            rows = list(reader)
            fields = reader.fieldnames or []
    except FileNotFoundError:
        raise DataFolderError(
            f"{csv_path}: manifest not found; re-run the data preparation "
            "(remove --skip_prep)"
        ) from None
    needed = ["ID", "mix_wav", *source_columns(num_spks), "noise_wav"]
    for column in needed:
        if column not in fields:
            raise DataFolderError(
                f"{csv_path}: no column {column} (has {', '.join(fields)}); "
                f"is num_spks={num_spks} right for this corpus? Otherwise "
                "re-run the data preparation"
            )
    if not rows:
        raise DataFolderError(
            f"{csv_path}: manifest has no rows; check the data folder"
        )
    return rows


class EpochSeed:
    """Seeds per-item random generators from ``(seed, epoch, item id)``.

    Arguments
    ---------
    seed : int
        The experiment seed.

    Example
    -------
    >>> state = EpochSeed(1)
    >>> a = torch.rand(1, generator=state.generator("utt1"))
    >>> b = torch.rand(1, generator=state.generator("utt1"))
    >>> state.epoch = 2
    >>> c = torch.rand(1, generator=state.generator("utt1"))
    >>> bool(a == b), bool(a == c)
    (True, False)
    """

    def __init__(self, seed):
        self.seed = int(seed)
        self.epoch = 0

    def generator(self, key):
        """A fresh ``torch.Generator`` for one item of the current epoch."""
        text = f"{self.seed}:{self.epoch}:{key}".encode()
        return torch.Generator().manual_seed(zlib.crc32(text))


class SeparationDataset(DynamicItemDataset):
    """A ``DynamicItemDataset`` whose random draws follow the epoch.

    Built by :func:`separation_datasets`; :meth:`set_epoch` changes the
    random segments and dynamic mixtures of the next pass.

    Example
    -------
    >>> data = SeparationDataset({"a": {"x": 1}}, output_keys=["id"])
    >>> data.epoch_seed = EpochSeed(0)
    >>> data.set_epoch(3); data.epoch_seed.epoch
    3
    """

    epoch_seed = None

    def set_epoch(self, epoch):
        """Draw the data of training epoch ``epoch`` from now on."""
        if self.epoch_seed is not None:
            self.epoch_seed.epoch = int(epoch)


class SeparationItems:
    """Turns manifest rows into separation examples (picklable, per stage).

    Arguments
    ---------
    num_spks : int
        Number of speakers ``N``.
    sample_rate : int
        Expected sample rate of every file.
    training : bool
        Random segments, dynamic mixing and speed perturbation apply only
        in training.
    segment_seconds : float, optional
        Training segment length (``None``: whole utterances).
    pool : list of dict, optional
        Manifest rows of the training set (the source and noise pools of
        dynamic mixing).
    speed_perturbation : SpeedPerturbation, optional
        Applied to training examples when given.
    dynamic_mixer : DynamicMixer, optional
        When given, training examples are remixed on the fly from the pool.
    max_seconds : float, optional
        Cap on the length of validation/test utterances.
    epoch_seed : EpochSeed, optional
        Source of the per-item generators (training only).
    noise_in_mixture : bool
        False for clean mixtures (``mix_clean``): the noise is then returned
        as zeros, and dynamic mixing adds none.

    Example
    -------
    >>> items = SeparationItems(num_spks=2, sample_rate=8000, training=False)
    >>> items.training
    False
    """

    def __init__(
        self,
        num_spks,
        sample_rate,
        training,
        segment_seconds=None,
        pool=None,
        speed_perturbation=None,
        dynamic_mixer=None,
        max_seconds=None,
        epoch_seed=None,
        noise_in_mixture=True,
    ):
        self.num_spks = int(num_spks)
        self.noise_in_mixture = bool(noise_in_mixture)
        self.sample_rate = int(sample_rate)
        self.training = bool(training)
        self.segment = (
            int(round(segment_seconds * self.sample_rate))
            if segment_seconds else None
        )
        self.dynamic_mixer = dynamic_mixer if self.training else None
        self.pool = pool or []
        self.speed_perturbation = speed_perturbation
        self.max_samples = (
            int(round(max_seconds * self.sample_rate)) if max_seconds else None
        )
        self.epoch_seed = epoch_seed or EpochSeed(0)
        if self.dynamic_mixer is not None and not self.pool:
            raise HparamsError(
                "dynamic_mixing needs the training manifest as source pool"
            )

    def _read(self, path):
        return read_audio(path, sample_rate=self.sample_rate)

    def _read_row(self, paths):
        """Mixture, sources and noise of a row (zeros for a clean mix)."""
        if self.noise_in_mixture:
            signals = [self._read(path) for path in paths]
            check_same_length(signals, paths)
            return signals
        signals = [self._read(path) for path in paths[:-1]]
        check_same_length(signals, paths[:-1])
        return [*signals, torch.zeros_like(signals[0])]

    def _crop(self, signals, generator):
        """One random segment of aligned signals (shorter ones kept whole)."""
        if self.segment is None:
            return signals
        length = min(self.segment, min(sig.shape[0] for sig in signals))
        return random_crop(signals, length, generator=generator)

    def __call__(self, utt_id, *paths):
        """Return ``(mix [T], sources [T, N], noise [T])`` for one row.

        ``paths`` are the row's ``mix_wav``, ``s1_wav`` ... ``sN_wav`` and
        ``noise_wav``.
        """
        paths = list(paths)
        if not self.training:
            mix, sources, noise = self._evaluation_example(paths)
        else:
            generator = self.epoch_seed.generator(utt_id)
            if self.dynamic_mixer is not None:
                mix, sources, noise = self._dynamic_example(generator)
            else:
                mix, sources, noise = self._static_example(paths, generator)
        if not self.noise_in_mixture:
            noise = torch.zeros_like(noise)
        return mix, sources, noise

    def _evaluation_example(self, paths):
        signals = self._read_row(paths)
        if self.max_samples is not None:
            signals = [sig[: self.max_samples] for sig in signals]
        mix, *sources, noise = signals
        return mix, torch.stack(sources, dim=-1), noise

    def _static_example(self, paths, generator):
        signals = self._read_row(paths)
        if self.speed_perturbation is not None:
            # Each source (and the noise) at its own speed; the mixture is
            # the sum of the perturbed parts.
            parts = self.speed_perturbation(
                signals[1:-1], signals[-1], generator
            )
            length = min(part.shape[0] for part in parts)
            parts = [part[:length] for part in parts]
            parts = self._crop(parts, generator)
            *sources, noise = parts
            if not self.noise_in_mixture:
                noise = torch.zeros_like(noise)
            mix = torch.stack([*sources, noise], dim=0).sum(dim=0)
            return mix, torch.stack(sources, dim=-1), noise
        signals = self._crop(signals, generator)
        mix, *sources, noise = signals
        return mix, torch.stack(sources, dim=-1), noise

    def draw_sources(self, generator):
        """Choose the files of one dynamic mixture.

        Returns
        -------
        sources : list of (int, str)
            ``(pool row, column)`` of each speaker; the rows are distinct
            whenever the pool has at least ``num_spks`` mixtures.
        noise_row : int
            The pool row whose noise is used.

        Example
        -------
        >>> pool = [{"s1_wav": "a", "s2_wav": "b"}] * 3
        >>> items = SeparationItems(2, 8000, True, pool=pool,
        ...                         dynamic_mixer=DynamicMixer())
        >>> sources, _ = items.draw_sources(torch.Generator().manual_seed(0))
        >>> len({row for row, _ in sources})
        2
        """
        count = len(self.pool)
        if count >= self.num_spks:
            rows = torch.randperm(count, generator=generator)[: self.num_spks]
        else:  # tiny pools: mixtures may repeat
            rows = torch.randint(count, (self.num_spks,), generator=generator)
        columns = source_columns(self.num_spks)
        sources = [
            (row, columns[random_index(generator, self.num_spks)])
            for row in rows.tolist()
        ]
        return sources, random_index(generator, count)

    def _dynamic_example(self, generator):
        """Speakers of distinct mixtures plus a random noise, remixed."""
        chosen, noise_row = self.draw_sources(generator)
        perturb = self.speed_perturbation
        sources = [self._read(self.pool[row][column]) for row, column in chosen]
        if perturb is not None:
            sources = [perturb.perturb(sig, generator) for sig in sources]
        if self.noise_in_mixture:
            noise = self._read(self.pool[noise_row]["noise_wav"])
            if perturb is not None and perturb.perturb_noise:
                noise = perturb.perturb(noise, generator)
        else:
            noise = torch.zeros_like(sources[0])

        length = min(sig.shape[0] for sig in sources)
        if self.segment is not None:
            length = min(length, self.segment)
        sources = [fit_length(sig, length, generator) for sig in sources]
        noise = fit_length(noise, length, generator)
        if not self.noise_in_mixture:
            noise = torch.zeros_like(noise)
        parts = self.dynamic_mixer(sources, noise, generator)
        mix = parts.sum(dim=0)
        return mix, parts[:-1].t().contiguous(), parts[-1].clone()


def _dataset(csv_path, num_spks, items):
    """Wrap one manifest in a :class:`SeparationDataset`."""
    read_manifest(csv_path, num_spks)  # checks columns and rows
    dataset = SeparationDataset.from_csv(csv_path)
    dataset.epoch_seed = items.epoch_seed
    columns = ["mix_wav", *source_columns(num_spks), "noise_wav"]
    dataset.add_dynamic_item(
        items,  # a picklable callable, for any DataLoader start method
        takes=["id", *columns],
        provides=["mix_sig", "sources_sig", "noise_sig"],
    )
    dataset.set_output_keys(OUTPUT_KEYS)
    return dataset


def separation_datasets(manifests, experiment, seed, mixture="mix_both"):
    """Build the train, valid and test datasets of a separation recipe.

    Arguments
    ---------
    manifests : dict
        ``{"train", "valid", "test"}`` manifest paths (data preparation).
    experiment : dict
        The recipe's experiment (the recipe YAML's hparams):
        ``num_spks``, ``sample_rate``, ``noise_aware`` and the ``examples``
        namespace (``segment_seconds``, ``eval_max_seconds``,
        ``speed_perturb`` with ``speed_perturbation``, ``dynamic_mixing``
        with ``dynamic_mixer``).
    seed : int
        The experiment seed (random segments and mixtures per epoch).
    mixture : str
        ``mix_both`` (speech + noise) or ``mix_clean`` (no noise).

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` :class:`SeparationDataset` objects.

    Example
    -------
    >>> import os, tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> lines = ["ID,duration,mix_wav,s1_wav,s2_wav,noise_wav"]
    >>> for utt in ("a", "b", "c"):
    ...     parts = {k: torch.randn(1600) * 0.1 for k in ("s1", "s2", "n")}
    ...     parts["m"] = parts["s1"] + parts["s2"] + parts["n"]
    ...     for k, sig in parts.items():
    ...         write_audio(f"{folder}/{utt}_{k}.wav", sig, 8000, "FLOAT")
    ...     lines.append(f"{utt},0.2,{folder}/{utt}_m.wav,{folder}/{utt}_s1"
    ...                  f".wav,{folder}/{utt}_s2.wav,{folder}/{utt}_n.wav")
    >>> _ = open(f"{folder}/m.csv", "w").write("\\n".join(lines) + "\\n")
    >>> manifests = dict.fromkeys(["train", "valid", "test"], f"{folder}/m.csv")
    >>> examples = {"segment_seconds": 0.1, "dynamic_mixing": True,
    ...             "dynamic_mixer": DynamicMixer(), "speed_perturb": False}
    >>> experiment = {"num_spks": 2, "sample_rate": 8000,
    ...               "examples": examples}
    >>> data = separation_datasets(manifests, experiment, seed=1)
    >>> item = data["train"][0]
    >>> item["mix_sig"].shape, item["sources_sig"].shape
    (torch.Size([800]), torch.Size([800, 2]))
    >>> parts = item["sources_sig"].sum(-1) + item["noise_sig"]
    >>> bool(torch.allclose(item["mix_sig"], parts))
    True
    >>> data["test"][0]["mix_sig"].shape
    torch.Size([1600])
    """
    num_spks = int(experiment["num_spks"])
    sample_rate = int(experiment["sample_rate"])
    examples = experiment["examples"]
    noise_in_mixture = mixture != "mix_clean"
    if not noise_in_mixture and experiment.get("noise_aware"):
        raise HparamsError(
            "mixture: mix_clean has no noise for the noise output of NASS "
            "(noise_aware: True); use mixture: mix_both or a baseline YAML"
        )
    speed = None
    if examples.get("speed_perturb"):
        speed = examples["speed_perturbation"]
    mixer = None
    if examples.get("dynamic_mixing"):
        mixer = examples["dynamic_mixer"]
    epoch_seed = EpochSeed(seed)
    pool = read_manifest(manifests["train"], num_spks) if mixer else []
    train_items = SeparationItems(
        num_spks,
        sample_rate,
        training=True,
        segment_seconds=examples.get("segment_seconds"),
        pool=pool,
        speed_perturbation=speed,
        dynamic_mixer=mixer,
        epoch_seed=epoch_seed,
        noise_in_mixture=noise_in_mixture,
    )
    eval_items = SeparationItems(
        num_spks,
        sample_rate,
        training=False,
        max_seconds=examples.get("eval_max_seconds"),
        noise_in_mixture=noise_in_mixture,
    )
    return {
        "train": _dataset(manifests["train"], num_spks, train_items),
        "valid": _dataset(manifests["valid"], num_spks, eval_items),
        "test": _dataset(manifests["test"], num_spks, eval_items),
    }
