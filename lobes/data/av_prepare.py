"""Preparation of audio-visual corpora (NTCD-TIMIT, GRID).

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

The datasets that read these manifests are in :mod:`lobes.data.av_data`
(:func:`lobes.data.av_data.av_datasets`,
:func:`lobes.data.av_data.mixture_datasets`; also importable from here
for now). ``python -m lobes.data.av_prepare mix --root <corpus>`` writes
fixed mixtures into a real corpus (:func:`main`).

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import csv
import json
import os

from lobes.data import av_corpus
from lobes.data.av_data import (  # noqa: F401 (datasets re-exported)
    FRAME_TOLERANCE,
    SAMPLE_RATE,
    SPLITS,
    MixtureItems,
    UtteranceItems,
    av_datasets,
    check_lips,
    load_lips,
    mixture_datasets,
    read_rows,
    select_utterances,
)
from lobes.data.prepare import _wav_frames
from lobes.errors import (
    AudioFileError,
    DataFolderError,
    HparamsError,
    exit_on_user_error,
)

#: Usual video rates: TCD-TIMIT's camera and GRID's.
DEFAULT_FPS = {"ntcd-timit": 30.0, "grid": 25.0}
#: Mixtures written when a corpus has none.
DEFAULT_NUM_MIXTURES = {"train": 500, "valid": 50, "test": 100}

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
    missing = [c for c in av_corpus.MIXTURE_COLUMNS if c not in fields]
    if missing or not rows:
        raise DataFolderError(
            f"{table}: {'no column ' + missing[0] if missing else 'no rows'}"
            "; regenerate it with `python -m lobes.data.av_prepare mix`"
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
        table = av_corpus.write_mixtures(
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


# ---------------------------------------------------------------- CLI


@exit_on_user_error
def main(argv=None):
    """``python -m lobes.data.av_prepare mix``: mixtures for a real corpus.

    Writes ``<root>/mixtures/<split>`` (:func:`lobes.data.av_corpus.
    write_mixtures`) from the split's utterances and
    ``<root>/noise/<split>/*.wav``; a problem with the corpus ends in one
    line.

    Example
    -------
    >>> main(["mix", "--root", "/no/such/corpus"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = argparse.ArgumentParser(
        description="Write fixed two-speaker noisy mixtures for a "
        "converted NTCD-TIMIT or GRID folder (see lobes.data.av_corpus)."
    )
    parser.add_argument("command", choices=["mix"])
    parser.add_argument("--root", required=True, help="corpus root")
    parser.add_argument("--layout", choices=["ntcd-timit", "grid"],
                        default="ntcd-timit")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = corpus_utterances(args.root, args.layout)
    utts = [u for u in table["utterances"] if u["split"] == args.split]
    noise_dir = os.path.join(args.root, "noise", args.split)
    noise_files = sorted(
        os.path.join(noise_dir, n)
        for n in (os.listdir(noise_dir) if os.path.isdir(noise_dir) else [])
        if n.lower().endswith(".wav")
    )
    out = os.path.join(args.root, "mixtures", args.split)
    path = av_corpus.write_mixtures(
        utts, noise_files, out, args.count, seed=args.seed,
        unique=args.split == "test",
    )
    print(f"{args.count} mixtures listed in {path}")


if __name__ == "__main__":
    main()
