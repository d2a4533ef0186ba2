"""Datasets of the audio-visual corpora (NTCD-TIMIT, GRID, the mini AV
corpus): reading the manifests that :mod:`lobes.data.av_prepare` writes.

- :func:`check_lips` and :func:`load_lips`: a corpus lips file (``T x H x
  W`` uint8 ``.npy``), checked in one line (a user's lips file in any
  layout goes through :mod:`lobes.data.lip_input` instead);
- :func:`read_rows`: a manifest's rows;
- :func:`av_datasets` (with :func:`select_utterances` and
  :class:`UtteranceItems`): clean utterances and their lips for VAE
  training, speaker-independent (train on the training speakers) or
  speaker-dependent (train on the test speakers' utterances that no test
  mixture uses), optionally restricted to some speakers;
- :func:`mixture_datasets` (with :class:`MixtureItems`): the two-speaker
  noisy mixtures for the supervised baseline.

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import os

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from lobes.data.audio import read_audio
from lobes.errors import DataFolderError

SPLITS = ("train", "valid", "test")
SAMPLE_RATE = 16000
#: Largest difference between a lips file's frames and audio * fps.
FRAME_TOLERANCE = 3


def check_lips(path, duration=None, fps=None, roi=None):
    """Check a lips ``.npy`` (reading its header only); return its shape.

    Arguments
    ---------
    path : str
        The file.
    duration : float, optional
        Length of the matching audio; with ``fps``, the frame count must be
        within :data:`FRAME_TOLERANCE` of ``duration * fps``.
    fps : float, optional
        Video rate.
    roi : tuple, optional
        Expected ``(H, W)``.

    Returns
    -------
    tuple
        ``(T, H, W)``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.zeros((30, 8, 8), np.uint8))
    >>> check_lips(path, duration=1.0, fps=30)
    (30, 8, 8)
    >>> check_lips(path, duration=2.0, fps=30)
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: ...a.npy: 30 lip frames for 2.00 s ...
    """
    if not os.path.isfile(path):
        raise DataFolderError(
            f"{path}: no lips for this utterance; extract its lip ROIs "
            "(T x H x W uint8 .npy, one frame per video frame) next to the "
            "audio in the lips/ tree"
        )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:120]
        raise DataFolderError(
            f"{path}: not a readable .npy ({reason}); re-extract the lip ROIs"
        ) from None
    if array.ndim != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise DataFolderError(
            f"{path}: lips of shape {tuple(array.shape)} and dtype "
            f"{array.dtype}, expected a non-empty T x H x W uint8 array; "
            "re-extract the lip ROIs"
        )
    shape = tuple(int(n) for n in array.shape)
    if roi is not None and shape[1:] != tuple(roi):
        raise DataFolderError(
            f"{path}: lip ROI of {shape[1]}x{shape[2]} pixels but other "
            f"files have {roi[0]}x{roi[1]}; extract every ROI at one size"
        )
    if duration is not None and fps is not None:
        expected = duration * fps
        if abs(shape[0] - expected) > FRAME_TOLERANCE:
            raise DataFolderError(
                f"{path}: {shape[0]} lip frames for {duration:.2f} s of "
                f"audio at {fps:g} fps (expected about {expected:.0f}); set "
                'the video rate in <root>/av_corpus.json ({"fps": ...}) or '
                "re-extract the lips"
            )
    return shape


def read_rows(path):
    """Rows of a manifest as dicts, with a one-line error when absent.

    Example
    -------
    >>> read_rows("/no/such.csv")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such.csv: manifest not found; ...
    """
    try:
        with open(path, newline="", encoding="utf-8") as fin:
            return list(csv.DictReader(fin))
    except FileNotFoundError:
        raise DataFolderError(
            f"{path}: manifest not found; re-run the data preparation "
            "(remove --skip_prep)"
        ) from None


def load_lips(path):
    """Lip ROIs ``[T, H, W]`` uint8 as a tensor.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.ones((3, 4, 5), np.uint8))
    >>> load_lips(path).shape
    torch.Size([3, 4, 5])
    """
    check_lips(path)
    return torch.from_numpy(np.load(path, allow_pickle=False).copy())


def select_utterances(manifests, speaker_dependent=False, speakers=None):
    """The utterance rows to train, validate and test a VAE on.

    Arguments
    ---------
    manifests : dict
        Paths from :func:`lobes.data.av_prepare.prepare_ntcd_timit` /
        :func:`lobes.data.av_prepare.prepare_grid`.
    speaker_dependent : bool
        False: train on the training speakers, validate on the validation
        speakers, test on the test speakers. True: the test speakers'
        utterances that no test mixture uses are split into training (all
        but the last of each speaker) and validation (the last); the test
        set is the utterances of the test mixtures.
    speakers : list of str, optional
        Keep only these speakers' training utterances.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}``: lists of row dicts.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> header = "ID,duration,wav,lips,spk_id,lips_frames,fps,in_mixture\\n"
    >>> rows = {"train": ["a_1,1,a.wav,a.npy,a,30,30,0"],
    ...         "valid": ["b_1,1,b.wav,b.npy,b,30,30,0"],
    ...         "test": ["c_1,1,c1.wav,c1.npy,c,30,30,1",
    ...                  "c_2,1,c2.wav,c2.npy,c,30,30,0",
    ...                  "c_3,1,c3.wav,c3.npy,c,30,30,0"]}
    >>> manifests = {}
    >>> for split, lines in rows.items():
    ...     manifests[split] = f"{folder}/{split}.csv"
    ...     _ = open(manifests[split], "w").write(header + "\\n".join(lines))
    >>> picked = select_utterances(manifests, speaker_dependent=True)
    >>> [[r["ID"] for r in picked[s]] for s in ("train", "valid", "test")]
    [['c_2'], ['c_3'], ['c_1']]
    """
    rows = {split: read_rows(manifests[split]) for split in SPLITS}
    if speaker_dependent:
        enrol = [r for r in rows["test"] if r["in_mixture"] == "0"]
        last = {}
        for row in enrol:
            last[row["spk_id"]] = row["ID"]
        picked = {
            "train": [r for r in enrol if r["ID"] != last[r["spk_id"]]],
            "valid": [r for r in enrol if r["ID"] == last[r["spk_id"]]],
            "test": [r for r in rows["test"] if r["in_mixture"] == "1"],
        }
    else:
        picked = dict(rows)
    if speakers:
        wanted = {str(s) for s in speakers}
        picked["train"] = [r for r in picked["train"] if r["spk_id"] in wanted]
    for split, chosen in picked.items():
        if not chosen:
            raise DataFolderError(
                f"{manifests[split if not speaker_dependent else 'test']}: no "
                f"{split} utterances left (speaker_dependent="
                f"{speaker_dependent}, speakers={speakers}); the test "
                "speakers need utterances outside the test mixtures for the "
                "speaker-dependent setting"
            )
    return picked


class UtteranceItems:
    """Reads one utterance: ``wav_sig [time]`` and ``lips_sig [T, H, W]``.

    A picklable callable for SpeechBrain's dynamic items.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> write_audio(f"{folder}/a.wav", torch.zeros(1600), 16000)
    >>> np.save(f"{folder}/a.npy", np.zeros((3, 4, 4), np.uint8))
    >>> wav, lips = UtteranceItems()(f"{folder}/a.wav", f"{folder}/a.npy")
    >>> wav.shape, lips.shape
    (torch.Size([1600]), torch.Size([3, 4, 4]))
    """

    def __call__(self, wav, lips):
        return read_audio(wav, SAMPLE_RATE), load_lips(lips)


def av_datasets(hparams, manifests):
    """Utterance datasets for VAE training (:func:`select_utterances`).

    Arguments
    ---------
    hparams : dict
        Reads ``speaker_dependent`` and ``train_speakers`` (optional).
    manifests : dict
        Manifest paths.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` DynamicItemDatasets with output keys
        ``id``, ``wav_sig``, ``lips_sig``, ``fps``.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> write_audio(f"{folder}/a.wav", torch.zeros(1600), 16000)
    >>> np.save(f"{folder}/a.npy", np.zeros((3, 4, 4), np.uint8))
    >>> header = "ID,duration,wav,lips,spk_id,lips_frames,fps,in_mixture\\n"
    >>> row = f"a_1,0.1,{folder}/a.wav,{folder}/a.npy,a,3,30,0"
    >>> manifests = {}
    >>> for split in SPLITS:
    ...     manifests[split] = f"{folder}/{split}.csv"
    ...     _ = open(manifests[split], "w").write(header + row)
    >>> item = av_datasets({}, manifests)["train"][0]
    >>> item["id"], item["wav_sig"].shape, item["lips_sig"].shape, item["fps"]
    ('a_1', torch.Size([1600]), torch.Size([3, 4, 4]), 30.0)
    """
    picked = select_utterances(
        manifests,
        speaker_dependent=bool(hparams.get("speaker_dependent", False)),
        speakers=hparams.get("train_speakers"),
    )
    datasets = {}
    for split, rows in picked.items():
        data = {
            row["ID"]: {
                "wav": row["wav"],
                "lips": row["lips"],
                "fps": float(row["fps"]),
                "duration": float(row["duration"]),
            }
            for row in rows
        }
        dataset = DynamicItemDataset(data)
        dataset.add_dynamic_item(
            UtteranceItems(), takes=["wav", "lips"],
            provides=["wav_sig", "lips_sig"],
        )  # fmt: skip
        dataset.set_output_keys(["id", "wav_sig", "lips_sig", "fps"])
        datasets[split] = dataset
    return datasets


class MixtureItems:
    """Reads a mixture row: ``mix_sig [T]``, ``sources_sig [T, 2]``,
    ``noise_sig [T]``; in training a random ``segment_seconds`` crop,
    optionally remixed (dynamic mixing: the speakers of two random
    mixtures at -2.5..2.5 dB of each other, a third mixture's noise at
    0..10 dB SNR; the mixture is the exact sum of the parts). With
    ``num_speakers=1`` (single-speaker enhancement) ``sources_sig`` is
    ``[T, 1]``: the first speaker and the noise (remixed: one speaker, the
    noise at -5..10 dB against it).

    Every draw comes from a generator seeded with ``(seed, epoch, item)``.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> rows = []
    >>> for i in range(3):
    ...     parts = {k: 0.1 * torch.randn(3200) for k in ("s1", "s2", "n")}
    ...     parts["m"] = parts["s1"] + parts["s2"] + parts["n"]
    ...     for k, sig in parts.items():
    ...         write_audio(f"{folder}/{i}{k}.wav", sig, 16000, "FLOAT")
    ...     rows.append({k + "_wav": f"{folder}/{i}{k[0]}.wav"
    ...                  for k in ("mix", "s1", "s2", "noise")})
    ...     rows[-1]["s1_wav"] = f"{folder}/{i}s1.wav"
    ...     rows[-1]["s2_wav"] = f"{folder}/{i}s2.wav"
    >>> items = MixtureItems(rows, training=True, segment_seconds=0.1,
    ...                      dynamic_mixing=True, seed=0)
    >>> mix, sources, noise = items(0)
    >>> mix.shape, sources.shape
    (torch.Size([1600]), torch.Size([1600, 2]))
    >>> bool(torch.allclose(mix, sources.sum(-1) + noise, atol=1e-6))
    True
    >>> one = MixtureItems(rows, training=True, segment_seconds=0.1,
    ...                    dynamic_mixing=True, seed=0, num_speakers=1)
    >>> mix, sources, noise = one(0)
    >>> sources.shape, bool(torch.allclose(mix, sources[:, 0] + noise))
    (torch.Size([1600, 1]), True)
    >>> MixtureItems(rows, num_speakers=1)(2)[1].shape
    torch.Size([3200, 1])
    """

    def __init__(self, rows, training=False, segment_seconds=None,
                 dynamic_mixing=False, seed=0, num_speakers=2):  # fmt: skip
        if num_speakers not in (1, 2):
            raise ValueError(f"num_speakers must be 1 or 2: {num_speakers}")
        self.num_speakers = num_speakers
        self.rows = rows
        self.training = training
        self.segment = (
            int(segment_seconds * SAMPLE_RATE) if segment_seconds else None
        )
        self.dynamic_mixing = dynamic_mixing
        self.seed = int(seed)
        self.epoch = 0

    def _read(self, row):
        return [
            read_audio(row[key], SAMPLE_RATE)
            for key in ("mix_wav", "s1_wav", "s2_wav", "noise_wav")
        ]

    def __call__(self, index):
        index = int(index)
        if not self.training:
            mix, s1, s2, noise = self._read(self.rows[index])
            if self.num_speakers == 1:
                return s1 + noise, s1[:, None], noise
            return mix, torch.stack([s1, s2], -1), noise
        generator = torch.Generator().manual_seed(
            hash((self.seed, self.epoch, index)) % (2**63)
        )
        if self.dynamic_mixing:
            picks = torch.randint(len(self.rows), (3,), generator=generator)
            first = self._read(self.rows[int(picks[0])])
            second = self._read(self.rows[int(picks[1])])
            noise = self._read(self.rows[int(picks[2])])[3]
            one = first[1 + int(torch.randint(2, (1,), generator=generator))]
            two = second[1 + int(torch.randint(2, (1,), generator=generator))]
            length = min(one.numel(), two.numel(), noise.numel())
            one, two, noise = one[:length], two[:length], noise[:length]

            def rms(x):
                return x.pow(2).mean().sqrt().clamp(min=1e-8)

            gain = 10 ** ((torch.rand(1, generator=generator) * 5 - 2.5) / 20)
            two = two * rms(one) / rms(two) * gain
            if self.num_speakers == 1:  # the test items' SNRs: -5 .. 10 dB
                snr = torch.rand(1, generator=generator) * 15 - 5
                noise = noise * rms(one) / rms(noise) / 10 ** (snr / 20)
                sources = one[:, None]
            else:
                snr = torch.rand(1, generator=generator) * 10
                noise = noise * rms(one + two) / rms(noise) / 10 ** (snr / 20)
                sources = torch.stack([one, two], -1)
        else:
            _, s1, s2, noise = self._read(self.rows[index])
            sources = torch.stack([s1, s2], -1)[:, : self.num_speakers]
        if self.segment and sources.shape[0] > self.segment:
            start = int(torch.randint(sources.shape[0] - self.segment + 1,
                                      (1,), generator=generator))
            sources = sources[start : start + self.segment]
            noise = noise[start : start + self.segment]
        return sources.sum(-1) + noise, sources, noise


def mixture_datasets(hparams, manifests):
    """Datasets of the fixed mixtures for the supervised baseline.

    Arguments
    ---------
    hparams : dict
        Reads ``segment_seconds``, ``dynamic_mixing``, ``seed`` and
        ``num_spks`` (1: single-speaker enhancement; default 2).
    manifests : dict
        Paths with ``mix_train``, ``mix_valid``, ``mix_test``.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` DynamicItemDatasets with output keys
        ``id``, ``mix_sig``, ``sources_sig``, ``noise_sig``.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("mix", "s1", "s2", "noise"):
    ...     write_audio(f"{folder}/{name}.wav", torch.zeros(1600), 16000)
    >>> header = "ID,duration,mix_wav,s1_wav,s2_wav,noise_wav\\n"
    >>> row = "m1,0.1," + ",".join(
    ...     f"{folder}/{n}.wav" for n in ("mix", "s1", "s2", "noise"))
    >>> manifests = {}
    >>> for split in SPLITS:
    ...     manifests[f"mix_{split}"] = f"{folder}/mix_{split}.csv"
    ...     _ = open(manifests[f"mix_{split}"], "w").write(header + row)
    >>> item = mixture_datasets({}, manifests)["test"][0]
    >>> item["id"], item["mix_sig"].shape, item["sources_sig"].shape
    ('m1', torch.Size([1600]), torch.Size([1600, 2]))
    """
    datasets = {}
    for split in SPLITS:
        rows = read_rows(manifests[f"mix_{split}"])
        if not rows:
            raise DataFolderError(
                f"{manifests[f'mix_{split}']}: no mixtures; re-run the "
                "data preparation"
            )
        items = MixtureItems(
            rows,
            training=split == "train",
            segment_seconds=hparams.get("segment_seconds"),
            dynamic_mixing=bool(hparams.get("dynamic_mixing", False)),
            seed=hparams.get("seed", 0),
            num_speakers=int(hparams.get("num_spks", 2)),
        )
        data = {
            row["ID"]: {"index": index, "duration": float(row["duration"])}
            for index, row in enumerate(rows)
        }
        dataset = DynamicItemDataset(data)
        dataset.add_dynamic_item(
            items, takes=["index"],
            provides=["mix_sig", "sources_sig", "noise_sig"],
        )  # fmt: skip
        dataset.set_output_keys(["id", "mix_sig", "sources_sig", "noise_sig"])
        dataset.mixture_items = items
        datasets[split] = dataset
    return datasets
