"""Preparation of audio-visual corpora (NTCD-TIMIT, GRID) and their datasets.

:func:`prepare_ntcd_timit` and :func:`prepare_grid` check a converted
corpus (layouts in :mod:`lobes.data.av_corpus`), read only the wav headers
and the ``.npy`` headers, and write SpeechBrain CSV manifests into
``save_folder``:

- ``av_{train,valid,test}.csv``: one clean utterance per row, columns
  ``ID, duration, wav, lips, spk_id, lips_frames, fps, in_mixture``
  (``in_mixture`` is 1 for an utterance that a fixed mixture of its split
  uses);
- ``avmix_{train,valid,test}.csv``: two-speaker noisy mixtures, columns
  ``ID, duration, mix_wav, s1_wav, s2_wav, noise_wav, s1_lips, s2_lips,
  s1_spk, s2_spk, snr_db, fps`` (the first six as the separation recipes'
  manifests, so :mod:`lobes.data.separation_data` reads them too).

The mixtures are the corpus's own (``<root>/mixtures/<split>``) when it has
them, otherwise they are written into ``<save_folder>/mixtures/<split>``
from the split's utterances and ``<root>/noise/<split>/*.wav``
(:func:`lobes.data.av_corpus.write_mixtures`).

Every problem fails in one line naming the file or folder and the fix
(:class:`lobes.errors.DataFolderError`, :class:`lobes.errors.
AudioFileError`). The options of a preparation are saved next to the
manifests; the same call again skips the work.

:func:`av_datasets` turns the utterance manifests into training data for
the VAEs: speaker-independent (train on the training speakers) or
speaker-dependent (train on the test speakers' utterances that no test
mixture uses), optionally restricted to some speakers.

Authors
 * noise-robust-sb contributors 2025
"""

import csv
import json
import os

import numpy as np
import torch

from lobes.data.audio import read_audio
from lobes.data.prepare import _wav_frames
from lobes.errors import AudioFileError, DataFolderError, HparamsError

SPLITS = ("train", "valid", "test")
SAMPLE_RATE = 16000
#: Usual video rates: TCD-TIMIT's camera and GRID's.
DEFAULT_FPS = {"ntcd-timit": 30.0, "grid": 25.0}
#: Mixtures written when a corpus has none.
DEFAULT_NUM_MIXTURES = {"train": 500, "valid": 50, "test": 100}
#: Largest mismatch between the lip frames and ``duration * fps``.
FRAME_TOLERANCE = 3

UTTERANCE_COLUMNS = (
    "ID", "duration", "wav", "lips", "spk_id", "lips_frames", "fps",
    "in_mixture",
)  # fmt: skip
MIXTURE_COLUMNS = (
    "ID", "duration", "mix_wav", "s1_wav", "s2_wav", "noise_wav", "s1_lips",
    "s2_lips", "s1_spk", "s2_spk", "snr_db", "fps",
)  # fmt: skip

_LAYOUTS = {
    "ntcd-timit": {
        "audio": "clean",
        "groups": ("volunteers", "lipspeakers"),
        "text": "<root>/clean/{volunteers,lipspeakers}/<speaker>/<utt>.wav "
        "and <root>/lips/{volunteers,lipspeakers}/<speaker>/<utt>.npy",
    },
    "grid": {
        "audio": "audio",
        "groups": None,
        "text": "<root>/audio/<speaker>/<utt>.wav and "
        "<root>/lips/<speaker>/<utt>.npy",
    },
}


# ---------------------------------------------------------------- checks


def _listdir(path):
    return sorted(n for n in os.listdir(path) if not n.startswith("."))


def _check_wav(path):
    """Mono, 16 kHz, not empty; return the number of samples."""
    return int(_wav_frames(path, SAMPLE_RATE))


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


def _corpus_info(root, layout):
    path = os.path.join(root, "av_corpus.json")
    info = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fin:
                info = json.load(fin)
        except (OSError, ValueError) as err:
            raise DataFolderError(
                f"{path}: unreadable ({err}); fix or delete it"
            ) from None
    fps = info.get("fps", DEFAULT_FPS[layout])
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise DataFolderError(f"{path}: fps must be a positive number")
    return float(fps)


def default_splits(speakers):
    """The fixed split rule used when a corpus has no ``splits.json``.

    Speakers sorted by name; every tenth (from the ninth) is a validation
    speaker, every tenth from the tenth a test speaker. Not an official
    split of NTCD-TIMIT or GRID: write ``splits.json`` to use one.

    Example
    -------
    >>> splits = default_splits([f"s{i:02d}" for i in range(20)])
    >>> splits["valid"], splits["test"]
    (['s08', 's18'], ['s09', 's19'])
    """
    ordered = sorted(speakers)
    splits = {"train": [], "valid": [], "test": []}
    for index, speaker in enumerate(ordered):
        if index % 10 == 8:
            splits["valid"].append(speaker)
        elif index % 10 == 9:
            splits["test"].append(speaker)
        else:
            splits["train"].append(speaker)
    return splits


def _read_splits(root, speakers):
    path = os.path.join(root, "splits.json")
    if not os.path.isfile(path):
        splits = default_splits(speakers)
        if not splits["test"] or not splits["valid"]:
            raise DataFolderError(
                f"{root}: {len(speakers)} speakers are too few for the "
                'default split; write splits.json ({"train": [...], '
                '"valid": [...], "test": [...]})'
            )
        return splits
    try:
        with open(path, encoding="utf-8") as fin:
            splits = json.load(fin)
    except (OSError, ValueError) as err:
        raise DataFolderError(
            f"{path}: unreadable ({err}); fix or delete it"
        ) from None
    seen = {}
    for split in SPLITS:
        names = splits.get(split) if isinstance(splits, dict) else None
        if not isinstance(names, list) or not names:
            raise DataFolderError(
                f"{path}: needs a non-empty list of speakers for '{split}'"
            )
        for name in names:
            if name not in speakers:
                raise DataFolderError(
                    f"{path}: speaker {name!r} of '{split}' has no audio "
                    "folder; fix the speaker list"
                )
            if name in seen:
                raise DataFolderError(
                    f"{path}: speaker {name!r} is in both '{seen[name]}' and "
                    f"'{split}'; splits must be disjoint"
                )
            seen[name] = split
    return {split: list(splits[split]) for split in SPLITS}


def corpus_utterances(root, layout):
    """Find and check every utterance of a converted corpus.

    Arguments
    ---------
    root : str
        Corpus root.
    layout : str
        ``"ntcd-timit"`` or ``"grid"``.

    Returns
    -------
    dict
        ``utterances`` (dicts with ``id`` = ``<speaker>/<utt>``,
        ``speaker``, ``split``, ``wav``, ``lips``, ``samples``,
        ``lips_frames``), ``fps``, ``roi``.

    Example
    -------
    >>> corpus_utterances("/no/such/corpus", "grid")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/corpus: data folder not found; ...
    """
    if layout not in _LAYOUTS:
        raise HparamsError(
            f"layout={layout!r} is not one of {', '.join(_LAYOUTS)}"
        )
    spec = _LAYOUTS[layout]
    if root is None or not os.path.isdir(str(root)):
        raise DataFolderError(
            f"{root}: data folder not found; pass --data_folder=<converted "
            f"{layout} corpus> (layout: {spec['text']})"
        )
    root = os.path.abspath(str(root))
    audio_root = os.path.join(root, spec["audio"])
    lips_root = os.path.join(root, "lips")
    for folder in (audio_root, lips_root):
        if not os.path.isdir(folder):
            raise DataFolderError(
                f"{folder}: missing; expected {spec['text']}"
            )
    if spec["groups"]:
        groups = [g for g in spec["groups"]
                  if os.path.isdir(os.path.join(audio_root, g))]  # fmt: skip
        if not groups:
            raise DataFolderError(
                f"{audio_root}: has neither volunteers/ nor lipspeakers/; "
                f"expected {spec['text']}"
            )
    else:
        groups = [""]
    fps = _corpus_info(root, layout)
    found = []
    for group in groups:
        base = os.path.join(audio_root, group)
        for speaker in _listdir(base):
            folder = os.path.join(base, speaker)
            if not os.path.isdir(folder):
                continue
            for name in _listdir(folder):
                if name.lower().endswith(".wav"):
                    found.append((group, speaker, name[:-4]))
    if not found:
        raise DataFolderError(
            f"{audio_root}: no wav files; expected {spec['text']}"
        )
    speakers = sorted({speaker for _, speaker, _ in found})
    splits = _read_splits(root, speakers)
    split_of = {s: split for split, names in splits.items() for s in names}
    utterances = []
    roi = None
    for group, speaker, utt in found:
        if speaker not in split_of:
            continue
        wav = os.path.join(audio_root, group, speaker, f"{utt}.wav")
        lips_path = os.path.join(lips_root, group, speaker, f"{utt}.npy")
        samples = _check_wav(wav)
        shape = check_lips(lips_path, samples / SAMPLE_RATE, fps, roi)
        roi = shape[1:]
        utterances.append(
            {"id": f"{speaker}/{utt}", "speaker": speaker,
             "split": split_of[speaker], "wav": wav, "lips": lips_path,
             "samples": samples, "lips_frames": shape[0]}
        )  # fmt: skip
    for split in SPLITS:
        if not any(u["split"] == split for u in utterances):
            raise DataFolderError(
                f"{root}: no utterances for the {split} speakers "
                f"{splits[split][:3]}...; check splits.json"
            )
    return {"utterances": utterances, "fps": fps, "roi": roi}


# ---------------------------------------------------------------- mixtures


def _read_mixture_table(table, by_id):
    """Rows of a ``mixtures.csv``, checked against the utterances."""
    from lobes.data.av_corpus import MIXTURE_COLUMNS as COLUMNS

    folder = os.path.dirname(table)
    try:
        with open(table, newline="", encoding="utf-8") as fin:
            reader = csv.DictReader(fin)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise DataFolderError(
            f"{table}: unreadable ({err}); regenerate the mixtures"
        ) from None
    missing = [c for c in COLUMNS if c not in fields]
    if missing or not rows:
        raise DataFolderError(
            f"{table}: {'no column ' + missing[0] if missing else 'no rows'}"
            "; regenerate it with `python -m lobes.data.av_corpus mix`"
        )
    checked = []
    for row in rows:
        for key in ("s1_utt", "s2_utt"):
            if row[key] not in by_id:
                raise DataFolderError(
                    f"{table}: mixture {row['ID']} uses {row[key]}, which is "
                    "not an utterance of this split; regenerate the mixtures"
                )
        paths = [
            os.path.join(folder, part, f"{row['ID']}.wav")
            for part in ("mix", "s1", "s2", "noise")
        ]
        frames = [_check_wav(p) for p in paths]
        for path, count in zip(paths[1:], frames[1:]):
            if count != frames[0]:
                raise AudioFileError(
                    f"{path}: {count} samples but {paths[0]} has "
                    f"{frames[0]}; a mixture and its parts must have the "
                    "same length, regenerate the mixtures"
                )
        checked.append((row, paths, frames[0]))
    return checked


def _mixture_rows(root, save_folder, split, utterances, fps, count, seed):
    """Manifest rows of a split's mixtures (the corpus's or new ones)."""
    from lobes.data.av_corpus import write_mixtures

    by_id = {u["id"]: u for u in utterances}
    table = os.path.join(root, "mixtures", split, "mixtures.csv")
    if not os.path.isfile(table):
        noise_dir = os.path.join(root, "noise", split)
        if not os.path.isdir(noise_dir):
            raise DataFolderError(
                f"{noise_dir}: missing; the {split} mixtures need noise "
                f"recordings (16 kHz mono wavs) in <root>/noise/{split}/"
            )
        noises = [
            os.path.join(noise_dir, n)
            for n in _listdir(noise_dir)
            if n.lower().endswith(".wav")
        ]
        for path in noises:
            _check_wav(path)
        table = write_mixtures(
            utterances,
            noises,
            os.path.join(save_folder, "mixtures", split),
            count,
            seed=[seed, SPLITS.index(split)],
            unique=split == "test",
        )
    rows, used = [], set()
    for row, paths, frames in _read_mixture_table(table, by_id):
        one, two = by_id[row["s1_utt"]], by_id[row["s2_utt"]]
        used.update((one["id"], two["id"]))
        rows.append(
            [row["ID"], f"{frames / SAMPLE_RATE:.5f}", *paths,
             one["lips"], two["lips"], one["speaker"], two["speaker"],
             row["snr_db"], f"{fps:g}"]
        )  # fmt: skip
    return rows, used


# ---------------------------------------------------------------- prepare


def _manifests(save_folder):
    paths = {
        split: os.path.join(save_folder, f"av_{split}.csv") for split in SPLITS
    }
    paths.update(
        {
            f"mix_{split}": os.path.join(save_folder, f"avmix_{split}.csv")
            for split in SPLITS
        }
    )
    return paths


def _write_csv(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout)
        writer.writerow(header)
        writer.writerows(sorted(rows))
    os.replace(tmp, path)


def _prepare(layout, data_folder, save_folder, num_mixtures, seed, skip_prep):
    outputs = _manifests(save_folder)
    if skip_prep:
        return outputs
    counts = dict(DEFAULT_NUM_MIXTURES)
    counts.update(num_mixtures or {})
    for split, count in counts.items():
        if split not in SPLITS or int(count) <= 0:
            raise HparamsError(
                f"num_mixtures: {split}={count}; give a positive count for "
                "train, valid and/or test"
            )
    options = {
        "layout": layout,
        "data_folder": os.path.abspath(str(data_folder or "")),
        "num_mixtures": counts,
        "seed": int(seed),
    }
    opts_file = os.path.join(save_folder, "av_prepare.json")
    if all(os.path.isfile(p) for p in outputs.values()) and os.path.isfile(
        opts_file
    ):
        try:
            with open(opts_file, encoding="utf-8") as fin:
                if json.load(fin) == options:
                    return outputs
        except (OSError, ValueError):
            pass
    table = corpus_utterances(data_folder, layout)
    root = os.path.abspath(str(data_folder))
    os.makedirs(save_folder, exist_ok=True)
    fps = table["fps"]
    for split in SPLITS:
        utts = [u for u in table["utterances"] if u["split"] == split]
        rows, used = _mixture_rows(
            root, save_folder, split, utts, fps, int(counts[split]), seed
        )
        _write_csv(outputs[f"mix_{split}"], MIXTURE_COLUMNS, rows)
        _write_csv(
            outputs[split],
            UTTERANCE_COLUMNS,
            [
                [u["id"].replace("/", "_"),
                 f"{u['samples'] / SAMPLE_RATE:.5f}", u["wav"], u["lips"],
                 u["speaker"], u["lips_frames"], f"{fps:g}",
                 int(u["id"] in used)]
                for u in utts
            ],
        )  # fmt: skip
    with open(opts_file, "w", encoding="utf-8") as fout:
        json.dump(options, fout, indent=2, sort_keys=True)
        fout.write("\n")
    return outputs


def prepare_ntcd_timit(
    data_folder, save_folder, num_mixtures=None, seed=0, skip_prep=False
):
    """Write the manifests of a converted NTCD-TIMIT corpus (or the mini one).

    Arguments
    ---------
    data_folder : str
        Root holding ``clean/{volunteers,lipspeakers}/`` and ``lips/``.
    save_folder : str
        Where the manifests (and mixtures the corpus lacks) go.
    num_mixtures : dict, optional
        Mixtures to write per split when the corpus has none (default
        :data:`DEFAULT_NUM_MIXTURES`).
    seed : int
        Seed of those mixtures.
    skip_prep : bool
        Only return the manifest paths.

    Returns
    -------
    dict
        ``train``, ``valid``, ``test`` (utterances) and ``mix_train``,
        ``mix_valid``, ``mix_test`` (mixtures) manifest paths.

    Example
    -------
    >>> prepare_ntcd_timit("/no/such/ntcd", "/tmp/save")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/ntcd: data folder not found; ...
    """
    return _prepare(
        "ntcd-timit", data_folder, save_folder, num_mixtures, seed, skip_prep
    )


def prepare_grid(
    data_folder, save_folder, num_mixtures=None, seed=0, skip_prep=False
):
    """Write the manifests of a converted GRID corpus.

    Arguments and returns as :func:`prepare_ntcd_timit`; ``data_folder``
    holds ``audio/<speaker>/*.wav`` (16 kHz) and ``lips/<speaker>/*.npy``.

    Example
    -------
    >>> prepare_grid("/no/such/grid", "/tmp/save")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/grid: data folder not found; ...
    """
    return _prepare(
        "grid", data_folder, save_folder, num_mixtures, seed, skip_prep
    )


#: Corpus name of a recipe -> its preparation function.
PREPARE = {"ntcd-timit": prepare_ntcd_timit, "grid": prepare_grid}


# ---------------------------------------------------------------- datasets


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
        Paths from :func:`prepare_ntcd_timit` / :func:`prepare_grid`.
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
    """
    from speechbrain.dataio.dataset import DynamicItemDataset

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
    0..10 dB SNR; the mixture is the exact sum of the parts).

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
    """

    def __init__(self, rows, training=False, segment_seconds=None,
                 dynamic_mixing=False, seed=0):  # fmt: skip
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
            snr = torch.rand(1, generator=generator) * 10
            noise = noise * rms(one + two) / rms(noise) / 10 ** (snr / 20)
            sources = torch.stack([one, two], -1)
        else:
            _, s1, s2, noise = self._read(self.rows[index])
            sources = torch.stack([s1, s2], -1)
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
        Reads ``segment_seconds``, ``dynamic_mixing`` and ``seed``.
    manifests : dict
        Paths with ``mix_train``, ``mix_valid``, ``mix_test``.

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` DynamicItemDatasets with output keys
        ``id``, ``mix_sig``, ``sources_sig``, ``noise_sig``.
    """
    from speechbrain.dataio.dataset import DynamicItemDataset

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
