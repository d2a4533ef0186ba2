"""Data preparation for WHAM!, LibriMix and VoiceBank-DEMAND.

Each ``prepare_*`` function checks the corpus layout, reads only the wav
headers (durations, sample rate, channels) and writes SpeechBrain CSV
manifests into ``save_folder``, one per split. It returns
``{"train": csv, "valid": csv, "test": csv}``.

The options of a preparation are saved next to the manifests; calling it
again with the same options skips the work, other options redo it. Recipes
call these functions through ``speechbrain.utils.distributed.run_on_main``.

A problem with the corpus fails in one line naming the folder or file at
fault and the expected layout (:class:`lobes.errors.DataFolderError`,
:class:`lobes.errors.AudioFileError`).
"""

import csv
import json
import os
import re

from lobes.data.audio import audio_info
from lobes.errors import AudioFileError, DataFolderError, HparamsError

SPLITS = ("train", "valid", "test")
WHAM_SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}
MIXTURES = ("mix_both", "mix_clean", "mix_single")

VOICEBANK_FOLDERS = {
    "clean_train": "clean_trainset_28spk_wav",
    "noisy_train": "noisy_trainset_28spk_wav",
    "txt_train": "trainset_28spk_txt",
    "clean_test": "clean_testset_wav",
    "noisy_test": "noisy_testset_wav",
    "txt_test": "testset_txt",
}


# ---------------------------------------------------------------- helpers


def _check_choice(name, value, choices):
    if value not in choices:
        options = ", ".join(str(c) for c in choices)
        raise HparamsError(f"{name}={value!r} is not one of {options}")


def _check_data_folder(data_folder, corpus):
    if data_folder is None or not os.path.isdir(str(data_folder)):
        raise DataFolderError(
            f"{data_folder}: data folder not found; pass --data_folder=<path "
            f"to your {corpus} corpus>"
        )
    return os.path.abspath(str(data_folder))


def _require_folder(path, layout, hint):
    """Fail in one line unless ``path`` is a folder holding wav files."""
    if not os.path.isdir(path):
        raise DataFolderError(f"{path}: missing; expected {layout}; {hint}")
    names = sorted(
        name[:-4]
        for name in os.listdir(path)
        if name.lower().endswith(".wav") and not name.startswith(".")
    )
    if not names:
        raise DataFolderError(
            f"{path}: no wav files; expected {layout}; {hint}"
        )
    return names


def _wav_frames(path, sample_rate):
    """Read a wav header; check it is mono at ``sample_rate`` and not empty.

    Returns the number of samples.
    """
    info = audio_info(path)
    if info.frames <= 0:
        raise AudioFileError(
            f"{path}: empty audio file (0 samples); re-create or remove it"
        )
    if info.channels != 1:
        raise AudioFileError(
            f"{path}: {info.channels} channels, expected mono; downmix it "
            "(e.g. `sox in.wav out.wav remix -`)"
        )
    if info.samplerate != sample_rate:
        raise AudioFileError(
            f"{path}: sample rate {info.samplerate} Hz, expected "
            f"{sample_rate} Hz; use the corpus folder at {sample_rate} Hz or "
            "resample the corpus"
        )
    return info.frames


def _same_length(paths, sample_rate):
    """Frames of the first file; all files must have as many."""
    frames = [_wav_frames(path, sample_rate) for path in paths]
    for path, count in zip(paths[1:], frames[1:]):
        if count != frames[0]:
            raise AudioFileError(
                f"{path}: {count} samples but {paths[0]} has {frames[0]}; "
                "a mixture and its sources must have the same length, "
                "re-create them"
            )
    return frames[0]


def _outputs(save_folder, prefix):
    return {
        split: os.path.join(save_folder, f"{prefix}_{split}.csv")
        for split in SPLITS
    }


def _already_done(save_folder, prefix, options):
    """Whether manifests made with the same options exist."""
    opts_file = os.path.join(save_folder, f"{prefix}_prepare.json")
    if not os.path.isfile(opts_file):
        return False
    if not all(
        os.path.isfile(p) for p in _outputs(save_folder, prefix).values()
    ):
        return False
    try:
        with open(opts_file, encoding="utf-8") as fin:
            return json.load(fin) == options
    except (OSError, ValueError):
        return False


def _save(save_folder, prefix, options, header, rows_by_split):
    os.makedirs(save_folder, exist_ok=True)
    outputs = _outputs(save_folder, prefix)
    for split, path in outputs.items():
        tmp = path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fout:
            writer = csv.writer(fout)
            writer.writerow(header)
            writer.writerows(sorted(rows_by_split[split]))
        os.replace(tmp, path)
    opts_file = os.path.join(save_folder, f"{prefix}_prepare.json")
    with open(opts_file, "w", encoding="utf-8") as fout:
        json.dump(options, fout, indent=2, sort_keys=True)
        fout.write("\n")
    return outputs


def _duration(frames, sample_rate):
    return f"{frames / sample_rate:.5f}"


# ---------------------------------------------------------------- WHAM!


def prepare_wham(
    data_folder,
    save_folder,
    sample_rate=8000,
    mode="min",
    mixture="mix_both",
    skip_prep=False,
):
    """Write CSV manifests for WHAM! (``wav8k``/``wav16k``, min/max).

    Arguments
    ---------
    data_folder : str
        The WHAM! root, the folder that holds ``wav8k`` (and ``wav16k``).
    save_folder : str
        Where the manifests go (``wham_{train,valid,test}.csv``).
    sample_rate : int
        8000 or 16000.
    mode : str
        ``"min"`` or ``"max"``.
    mixture : str
        Input mixture folder: ``"mix_both"`` (speech and noise),
        ``"mix_clean"`` or ``"mix_single"``.
    skip_prep : bool
        If True, only return the manifest paths.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``; columns
        ``ID,duration,mix_wav,s1_wav,s2_wav,noise_wav``.

    Example
    -------
    >>> prepare_wham("/no/such/wham", "/tmp/save")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/wham: data folder not found; ...
    """
    outputs = _outputs(save_folder, "wham")
    if skip_prep:
        return outputs
    _check_choice("sample_rate", int(sample_rate), (8000, 16000))
    _check_choice("mode", mode, ("min", "max"))
    _check_choice("mixture", mixture, MIXTURES)
    sample_rate = int(sample_rate)
    root = _check_data_folder(data_folder, "WHAM!")
    options = {
        "data_folder": root,
        "sample_rate": sample_rate,
        "mode": mode,
        "mixture": mixture,
    }
    if _already_done(save_folder, "wham", options):
        return outputs
    rate_dir = f"wav{sample_rate // 1000}k"
    layout = (
        f"WHAM! layout <root>/{rate_dir}/{mode}/{{tr,cv,tt}}/"
        f"{{{mixture},s1,s2,noise}}"
    )
    hint = f"point --data_folder at the folder that holds {rate_dir}"
    folders = (mixture, "s1", "s2", "noise")
    split_dirs = {
        split: os.path.join(root, rate_dir, mode, WHAM_SPLITS[split])
        for split in SPLITS
    }
    names = {}
    for split, split_dir in split_dirs.items():  # check the whole layout first
        for folder in folders:
            found = _require_folder(
                os.path.join(split_dir, folder), layout, hint
            )
            if folder == mixture:
                names[split] = found
    rows = {}
    for split, split_dir in split_dirs.items():
        rows[split] = []
        for name in names[split]:
            paths = [
                os.path.join(split_dir, folder, f"{name}.wav")
                for folder in folders
            ]
            frames = _same_length(paths, sample_rate)
            rows[split].append([name, _duration(frames, sample_rate), *paths])
    header = ["ID", "duration", "mix_wav", "s1_wav", "s2_wav", "noise_wav"]
    return _save(save_folder, "wham", options, header, rows)


# ---------------------------------------------------------------- LibriMix


def _librimix_root(data_folder, num_spks, rate_dir):
    corpus = f"Libri{num_spks}Mix"
    nested = os.path.join(data_folder, corpus)
    if os.path.isdir(nested):
        return nested
    if os.path.isdir(os.path.join(data_folder, rate_dir)):
        return data_folder
    raise DataFolderError(
        f"{nested}: missing; expected LibriMix layout "
        f"<root>/{corpus}/{rate_dir}/<mode>/{{train-100,dev,test}}/"
        f"{{mix_both,s1,...,noise}}; point --data_folder at the folder that "
        f"holds {corpus} (or at {corpus} itself)"
    )


def _check_librimix_metadata(root_rate_mode, split_dir, mixture, names):
    """Compare LibriMix's metadata CSV, when present, with the wav files."""
    path = os.path.join(
        root_rate_mode, "metadata", f"mixture_{split_dir}_{mixture}.csv"
    )
    if not os.path.isfile(path):
        return
    try:
        with open(path, newline="", encoding="utf-8") as fin:
            listed = {row["mixture_ID"] for row in csv.DictReader(fin)}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError) as err:
        raise DataFolderError(
            f"{path}: unreadable LibriMix metadata ({type(err).__name__}: "
            f"{err}); regenerate it or delete the metadata folder"
        ) from None
    found = set(names)
    if listed != found:
        missing = sorted(listed - found)
        extra = sorted(found - listed)
        detail = (
            f"{missing[0]}.wav listed but missing"
            if missing
            else f"{extra[0]}.wav not listed"
        )
        raise DataFolderError(
            f"{path}: lists {len(listed)} mixtures but "
            f"{os.path.join(root_rate_mode, split_dir, mixture)} holds "
            f"{len(found)} ({detail}); regenerate the corpus or delete the "
            "metadata folder"
        )


def prepare_librimix(
    data_folder,
    save_folder,
    num_spks=2,
    sample_rate=8000,
    mode="min",
    mixture="mix_both",
    train_split="train-100",
    skip_prep=False,
):
    """Write CSV manifests for Libri2Mix or Libri3Mix.

    Arguments
    ---------
    data_folder : str
        The folder holding ``Libri2Mix``/``Libri3Mix``, or the
        ``Libri{N}Mix`` folder itself.
    save_folder : str
        Where the manifests go (``librimix{N}_{train,valid,test}.csv``).
    num_spks : int
        2 or 3.
    sample_rate : int
        8000 or 16000.
    mode : str
        ``"min"`` or ``"max"``.
    mixture : str
        ``"mix_both"``, ``"mix_clean"`` or ``"mix_single"``.
    train_split : str
        ``"train-100"`` or ``"train-360"``.
    skip_prep : bool
        If True, only return the manifest paths.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``; columns
        ``ID,duration,mix_wav,s1_wav,s2_wav[,s3_wav],noise_wav``
        (``noise_wav`` is empty for ``mix_clean`` without a noise folder).

    Example
    -------
    >>> prepare_librimix("/no/such/librimix", "/tmp/save")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/librimix: data folder not found; ...
    """
    prefix = f"librimix{num_spks}"
    outputs = _outputs(save_folder, prefix)
    if skip_prep:
        return outputs
    _check_choice("num_spks", int(num_spks), (2, 3))
    _check_choice("sample_rate", int(sample_rate), (8000, 16000))
    _check_choice("mode", mode, ("min", "max"))
    _check_choice("mixture", mixture, MIXTURES)
    _check_choice("train_split", train_split, ("train-100", "train-360"))
    num_spks, sample_rate = int(num_spks), int(sample_rate)
    data_folder = _check_data_folder(data_folder, f"Libri{num_spks}Mix")
    rate_dir = f"wav{sample_rate // 1000}k"
    root = _librimix_root(data_folder, num_spks, rate_dir)
    options = {
        "data_folder": root,
        "num_spks": num_spks,
        "sample_rate": sample_rate,
        "mode": mode,
        "mixture": mixture,
        "train_split": train_split,
    }
    if _already_done(save_folder, prefix, options):
        return outputs
    sources = [f"s{i + 1}" for i in range(num_spks)]
    split_dirs = {"train": train_split, "valid": "dev", "test": "test"}
    rate_mode = os.path.join(root, rate_dir, mode)
    corpus = f"Libri{num_spks}Mix"
    layout = (
        f"LibriMix layout <root>/{corpus}/{rate_dir}/{mode}/"
        f"{{{train_split},dev,test}}/{{{mixture},{','.join(sources)},noise}}"
    )
    hint = f"point --data_folder at the folder that holds {corpus}"
    noise_optional = mixture == "mix_clean"
    names = {}
    has_noise = {}
    for split, split_dir in split_dirs.items():
        base = os.path.join(rate_mode, split_dir)
        names[split] = _require_folder(
            os.path.join(base, mixture), layout, hint
        )
        for folder in sources:
            _require_folder(os.path.join(base, folder), layout, hint)
        noise_dir = os.path.join(base, "noise")
        has_noise[split] = not noise_optional or os.path.isdir(noise_dir)
        if has_noise[split]:
            _require_folder(noise_dir, layout, hint)
    for split, split_dir in split_dirs.items():
        _check_librimix_metadata(rate_mode, split_dir, mixture, names[split])
    rows = {}
    for split, split_dir in split_dirs.items():
        base = os.path.join(rate_mode, split_dir)
        folders = [mixture, *sources] + (["noise"] if has_noise[split] else [])
        rows[split] = []
        for name in names[split]:
            paths = [
                os.path.join(base, folder, f"{name}.wav") for folder in folders
            ]
            frames = _same_length(paths, sample_rate)
            if not has_noise[split]:
                paths.append("")
            rows[split].append([name, _duration(frames, sample_rate), *paths])
    header = ["ID", "duration", "mix_wav"]
    header += [f"{source}_wav" for source in sources] + ["noise_wav"]
    return _save(save_folder, prefix, options, header, rows)


# ---------------------------------------------------------------- VoiceBank


def _voicebank_folder(root, name):
    """The 16 kHz folder: ``<name>_16k`` (SpeechBrain's copy) or ``<name>``."""
    resampled = os.path.join(root, f"{name}_16k")
    if os.path.isdir(resampled):
        return resampled
    return os.path.join(root, name)


def normalize_transcript(text):
    """Upper-case a transcript and drop punctuation (keeping apostrophes).

    Example
    -------
    >>> normalize_transcript("Please call Stella, now!\\n")
    'PLEASE CALL STELLA NOW'
    """
    text = re.sub(r"[^\w\s']", " ", text.upper())
    return " ".join(text.split())


def prepare_voicebank(
    data_folder,
    save_folder,
    valid_speakers=("p226", "p287"),
    skip_prep=False,
):
    """Write CSV manifests for VoiceBank-DEMAND at 16 kHz.

    Arguments
    ---------
    data_folder : str
        The folder holding ``clean_trainset_28spk_wav``,
        ``noisy_trainset_28spk_wav``, ``clean_testset_wav``,
        ``noisy_testset_wav``, ``trainset_28spk_txt`` and ``testset_txt``
        (``*_16k`` copies of the wav folders are preferred when present).
    save_folder : str
        Where the manifests go (``voicebank_{train,valid,test}.csv``).
    valid_speakers : sequence of str
        Training speakers held out for validation.
    skip_prep : bool
        If True, only return the manifest paths.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``; columns
        ``ID,duration,noisy_wav,clean_wav,spk_id,transcript``.

    Example
    -------
    >>> prepare_voicebank("/no/such/voicebank", "/tmp/save")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: /no/such/voicebank: data folder not found; ...
    """
    outputs = _outputs(save_folder, "voicebank")
    if skip_prep:
        return outputs
    sample_rate = 16000
    root = _check_data_folder(data_folder, "VoiceBank-DEMAND")
    valid_speakers = [str(s) for s in valid_speakers]
    options = {"data_folder": root, "valid_speakers": valid_speakers}
    if _already_done(save_folder, "voicebank", options):
        return outputs
    layout = (
        "VoiceBank-DEMAND layout <root>/{clean_trainset_28spk_wav,"
        "noisy_trainset_28spk_wav,trainset_28spk_txt,clean_testset_wav,"
        "noisy_testset_wav,testset_txt} at 16 kHz"
    )
    hint = "point --data_folder at the folder that holds them"
    folders = {}
    for key, name in VOICEBANK_FOLDERS.items():
        folders[key] = _voicebank_folder(root, name)
        if key.startswith("txt"):
            if not os.path.isdir(folders[key]):
                raise DataFolderError(
                    f"{folders[key]}: missing; expected {layout}; {hint}"
                )
        elif key.startswith("noisy"):
            noisy_names = _require_folder(folders[key], layout, hint)
            folders[key + "_names"] = noisy_names
        else:
            _require_folder(folders[key], layout, hint)
    rows = {split: [] for split in SPLITS}
    for part in ("train", "test"):
        for name in folders[f"noisy_{part}_names"]:
            noisy = os.path.join(folders[f"noisy_{part}"], f"{name}.wav")
            clean = os.path.join(folders[f"clean_{part}"], f"{name}.wav")
            frames = _same_length([noisy, clean], sample_rate)
            txt = os.path.join(folders[f"txt_{part}"], f"{name}.txt")
            try:
                with open(txt, encoding="utf-8", errors="replace") as fin:
                    transcript = normalize_transcript(fin.read())
            except OSError:
                raise DataFolderError(
                    f"{txt}: missing transcript of {noisy}; expected {layout}"
                ) from None
            spk_id = name.split("_")[0]
            split = part
            if part == "train" and spk_id in valid_speakers:
                split = "valid"
            rows[split].append(
                [
                    name,
                    _duration(frames, sample_rate),
                    noisy,
                    clean,
                    spk_id,
                    transcript,
                ]
            )
    if not rows["valid"]:
        raise DataFolderError(
            f"{folders['noisy_train']}: no utterances of the validation "
            f"speakers {', '.join(valid_speakers)}; set valid_speakers to "
            "training speakers present in the corpus"
        )
    if not rows["train"]:
        raise DataFolderError(
            f"{folders['noisy_train']}: every speaker is a validation "
            "speaker; keep some for training"
        )
    header = ["ID", "duration", "noisy_wav", "clean_wav", "spk_id"]
    header.append("transcript")
    return _save(save_folder, "voicebank", options, header, rows)
