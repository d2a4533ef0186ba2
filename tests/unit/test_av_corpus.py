"""The mini audio-visual corpus, its mixtures, and AV data preparation."""

import csv
import glob
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from lobes.data import av_corpus, av_prepare, mini_corpora
from lobes.data.av_data import (
    av_datasets,
    mixture_datasets,
    read_rows,
    select_utterances,
)
from lobes.data.av_prepare import (
    corpus_utterances,
    prepare_grid,
    prepare_ntcd_timit,
)
from lobes.errors import AudioFileError, DataFolderError, UserError

CONFIG = av_corpus.AV_SIZES["tiny"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny AV corpus through the cache, and generated again."""
    cache = str(tmp_path_factory.mktemp("cache"))
    root = mini_corpora.ensure_mini_corpus("av", "tiny", 0, cache)
    again = av_corpus.generate_av(
        str(tmp_path_factory.mktemp("again")), seed=0, size="tiny"
    )
    return root, again


def _files(root):
    return sorted(
        os.path.relpath(path, root)
        for path in glob.glob(os.path.join(root, "**", "*"), recursive=True)
        if os.path.isfile(path) and not path.endswith(".complete")
    )


def _read(path):
    return sf.read(path, dtype="float64")[0]


def test_same_seed_same_bytes(corpus):
    first, second = corpus
    assert _files(first) == _files(second)
    for name in _files(first):
        with open(os.path.join(first, name), "rb") as one, open(
            os.path.join(second, name), "rb"
        ) as two:
            assert one.read() == two.read(), name


def test_layout_speakers_and_lips(corpus):
    root = corpus[0]
    with open(os.path.join(root, "splits.json")) as fin:
        splits = json.load(fin)
    with open(os.path.join(root, "av_corpus.json")) as fin:
        info = json.load(fin)
    assert info["fps"] == av_corpus.MINI_FPS
    sizes = {split: len(names) for split, names in splits.items()}
    assert sizes == CONFIG["speakers"]
    names = [n for group in splits.values() for n in group]
    assert len(names) == len(set(names))  # disjoint splits
    for split, speakers in splits.items():
        for speaker in speakers:
            wavs = sorted(glob.glob(f"{root}/clean/volunteers/{speaker}/*.wav"))
            assert len(wavs) == CONFIG["utterances"][split]
            for wav in wavs:
                audio, rate = sf.read(wav)
                assert rate == 16000 and audio.ndim == 1
                lips = np.load(
                    wav.replace("/clean/", "/lips/").replace(".wav", ".npy")
                )
                assert lips.dtype == np.uint8 and lips.shape[1:] == (32, 32)
                assert abs(lips.shape[0] - audio.size / 16000 * 30) <= 1
    for split in ("train", "valid", "test"):
        assert glob.glob(f"{root}/noise/{split}/*.wav")


def test_mixtures_sum_and_stated_levels(corpus):
    root = corpus[0]
    for split in ("train", "valid", "test"):
        folder = os.path.join(root, "mixtures", split)
        with open(os.path.join(folder, "mixtures.csv")) as fin:
            rows = list(csv.DictReader(fin))
        assert len(rows) == CONFIG["mixtures"][split]
        for index, row in enumerate(rows):
            parts = {
                name: _read(os.path.join(folder, name, f"{row['ID']}.wav"))
                for name in ("mix", "s1", "s2", "noise")
            }
            assert np.allclose(
                parts["s1"] + parts["s2"] + parts["noise"], parts["mix"],
                atol=1e-9,
            )  # fmt: skip
            speech = parts["s1"] + parts["s2"]
            snr = 10 * np.log10(np.sum(speech**2) / np.sum(parts["noise"] ** 2))
            assert float(row["snr_db"]) == av_corpus.MIXTURE_SNRS[
                index % len(av_corpus.MIXTURE_SNRS)
            ]
            assert abs(snr - float(row["snr_db"])) < 0.1
            one, two = row["s1_utt"].split("/")[0], row["s2_utt"].split("/")[0]
            assert one != two
            assert os.path.isfile(os.path.join(folder, row["noise_file"]))
    test = read_rows(os.path.join(root, "mixtures", "test", "mixtures.csv"))
    used = [r["s1_utt"] for r in test] + [r["s2_utt"] for r in test]
    assert len(used) == len(set(used))  # each test utterance at most once


def test_prepare_ntcd_timit_and_speaker_filters(corpus, tmp_path):
    root = corpus[0]
    out = prepare_ntcd_timit(root, str(tmp_path))
    assert set(out) == {"train", "valid", "test", "mix_train", "mix_valid",
                        "mix_test"}  # fmt: skip
    test = read_rows(out["test"])
    in_mixture = [r for r in test if r["in_mixture"] == "1"]
    per_speaker = CONFIG["test_mixture_utts"]
    assert len(in_mixture) == CONFIG["speakers"]["test"] * per_speaker
    mixes = read_rows(out["mix_test"])
    assert {r["s1_spk"] for r in mixes} <= {r["spk_id"] for r in test}
    assert all(os.path.isfile(r["s1_lips"]) for r in mixes)
    # speaker-independent: train on the training speakers
    independent = select_utterances(out)
    train_speakers = {r["spk_id"] for r in independent["train"]}
    assert train_speakers.isdisjoint({r["spk_id"] for r in test})
    # speaker-dependent: the test speakers, outside the test mixtures
    dependent = select_utterances(out, speaker_dependent=True)
    assert {r["spk_id"] for r in dependent["train"]} == {
        r["spk_id"] for r in test
    }
    assert all(r["in_mixture"] == "0" for r in dependent["train"])
    assert {r["ID"] for r in dependent["test"]} == {
        r["ID"] for r in in_mixture
    }
    keep = sorted(train_speakers)[:1]
    only = select_utterances(out, speakers=keep)
    assert {r["spk_id"] for r in only["train"]} == set(keep)
    data = av_datasets({"speaker_dependent": False}, out)
    item = data["train"][0]
    assert item["lips_sig"].dtype.is_floating_point is False
    assert item["wav_sig"].ndim == 1
    mixtures = mixture_datasets({"segment_seconds": 0.5, "seed": 1}, out)
    assert mixtures["train"][0]["mix_sig"].shape[0] == 8000
    # the same call again: nothing is redone
    stamp = os.path.getmtime(out["train"])
    prepare_ntcd_timit(root, str(tmp_path))
    assert os.path.getmtime(out["train"]) == stamp


def _grid_copy(root, target):
    """A converted GRID folder from the mini corpus, without mixtures."""
    for kind in ("clean", "lips"):
        source = os.path.join(root, kind, "volunteers")
        dest = os.path.join(target, "audio" if kind == "clean" else "lips")
        shutil.copytree(source, dest)
    shutil.copytree(os.path.join(root, "noise"), os.path.join(target, "noise"))
    shutil.copy(os.path.join(root, "splits.json"), target)
    with open(os.path.join(target, "av_corpus.json"), "w") as fout:
        json.dump({"fps": 30}, fout)
    return str(target)


def test_prepare_grid_writes_missing_mixtures(corpus, tmp_path):
    grid = _grid_copy(corpus[0], tmp_path / "grid")
    save = tmp_path / "save"
    out = prepare_grid(grid, str(save), num_mixtures={"train": 3, "test": 2})
    assert len(read_rows(out["mix_train"])) == 3
    assert len(read_rows(out["mix_test"])) == 2
    assert os.path.isfile(save / "mixtures" / "test" / "mixtures.csv")
    assert not os.path.isdir(os.path.join(grid, "mixtures"))


def _break(corpus_root, tmp_path, how):
    grid = _grid_copy(corpus_root, tmp_path / "grid")
    wav = sorted(glob.glob(f"{grid}/audio/*/*.wav"))[0]
    lips = wav.replace("/audio/", "/lips/").replace(".wav", ".npy")
    if how == "missing_lips":
        os.remove(lips)
        return grid, lips, DataFolderError, "no lips"
    if how == "float_lips":
        np.save(lips, np.zeros((10, 32, 32), np.float32))
        return grid, lips, DataFolderError, "uint8"
    if how == "short_lips":
        np.save(lips, np.zeros((5, 32, 32), np.uint8))
        return grid, lips, DataFolderError, "lip frames"
    if how == "corrupt_lips":
        with open(lips, "wb") as fout:
            fout.write(b"not numpy")
        return grid, lips, DataFolderError, "not a readable"
    if how == "other_roi":  # the first file sets the size
        second = sorted(glob.glob(f"{grid}/lips/*/*.npy"))[1]
        np.save(second, np.zeros((np.load(second).shape[0], 16, 16), np.uint8))
        return grid, second, DataFolderError, "ROI"
    if how == "stereo":
        audio = _read(wav)
        sf.write(wav, np.stack([audio, audio], 1), 16000)
        return grid, wav, AudioFileError, "channels"
    if how == "rate":
        sf.write(wav, _read(wav), 8000)
        return grid, wav, AudioFileError, "sample rate"
    if how == "no_noise":
        shutil.rmtree(os.path.join(grid, "noise", "valid"))
        return grid, os.path.join(grid, "noise", "valid"), DataFolderError, (
            "noise recordings"
        )
    if how == "bad_splits":
        with open(os.path.join(grid, "splits.json"), "w") as fout:
            json.dump({"train": ["nobody"], "valid": ["x"], "test": ["y"]},
                      fout)  # fmt: skip
        return grid, "splits.json", DataFolderError, "nobody"
    if how == "no_audio":
        shutil.rmtree(os.path.join(grid, "audio"))
        return grid, os.path.join(grid, "audio"), DataFolderError, "missing"
    raise ValueError(how)


@pytest.mark.parametrize(
    "how",
    ["missing_lips", "float_lips", "short_lips", "corrupt_lips", "other_roi",
     "stereo", "rate", "no_noise", "bad_splits", "no_audio"],
)  # fmt: skip
def test_bad_corpus_gives_one_line(corpus, tmp_path, how):
    grid, culprit, error, words = _break(corpus[0], tmp_path, how)
    with pytest.raises(error) as excinfo:
        prepare_grid(grid, str(tmp_path / "save"))
    message = str(excinfo.value)
    assert "\n" not in message
    assert words in message and os.path.basename(culprit) in message


def test_missing_folder_and_wrong_layout(tmp_path):
    with pytest.raises(DataFolderError, match="data folder not found"):
        prepare_ntcd_timit(str(tmp_path / "none"), str(tmp_path / "save"))
    os.makedirs(tmp_path / "corpus" / "clean" / "other")
    os.makedirs(tmp_path / "corpus" / "lips")
    with pytest.raises(DataFolderError, match="volunteers"):
        corpus_utterances(str(tmp_path / "corpus"), "ntcd-timit")
    with pytest.raises(UserError):
        corpus_utterances(str(tmp_path / "corpus"), "timit")


def test_mixing_cli_for_a_converted_corpus(corpus, tmp_path, capsys):
    grid = _grid_copy(corpus[0], tmp_path / "grid")
    av_prepare.main(["mix", "--root", grid, "--layout", "grid", "--split",
                    "test", "--count", "2"])  # fmt: skip
    assert "2 mixtures" in capsys.readouterr().out
    out = prepare_grid(grid, str(tmp_path / "save"))
    assert len(read_rows(out["mix_test"])) == 2
    assert read_rows(out["mix_test"])[0]["mix_wav"].startswith(grid)


def test_mini_corpora_cli_registers_av(tmp_path, capsys):
    mini_corpora.main(["--corpus", "av", "--out", str(tmp_path), "--size",
                       "tiny", "--seed", "2"])  # fmt: skip
    assert "written to" in capsys.readouterr().out
    with open(tmp_path / "av_corpus.json") as fin:
        assert json.load(fin)["seed"] == 2


def test_preparation_and_datasets_are_separate_modules():
    """av_data does not import the preparation; av_prepare keeps the old
    dataset names importable for now; av_corpus imports neither."""
    import ast
    import inspect

    from lobes.data import av_data

    for module, banned in ((av_data, ("av_prepare", "av_corpus")),
                           (av_corpus, ("av_prepare", "av_data"))):
        tree = ast.parse(inspect.getsource(module))
        names = [node.module for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)]  # fmt: skip
        names += [alias.name for node in ast.walk(tree)
                  if isinstance(node, ast.Import) for alias in node.names]
        assert not [n for n in names if n and n.endswith(banned)], names
    for name in ("av_datasets", "mixture_datasets", "read_rows", "load_lips",
                 "select_utterances", "check_lips"):
        assert getattr(av_prepare, name) is getattr(av_data, name)
