"""Preparation of WHAM!, LibriMix and VoiceBank layouts, and its errors.

The corpora here are skeletons with the real folder and file-name patterns
and 0.1 s of silence per file, built by the tests themselves.
"""

import csv
import os

import numpy as np
import pytest
import soundfile as sf

from lobes.data.prepare import (
    prepare_librimix,
    prepare_voicebank,
    prepare_wham,
)
from lobes.errors import AudioFileError, DataFolderError, HparamsError

WHAM_NAMES = (
    "01aa010b_0.97482_209a010p_-0.97482",
    "40na010x_1.5211_02cc0207_-1.5211",
)
LIBRI2_NAMES = (
    "103-1240-0003_1034-121119-0049",
    "1088-134315-0037_1098-133695-0011",
)
LIBRI3_NAMES = (
    "103-1240-0003_1034-121119-0049_1040-133433-0001",
    "1088-134315-0037_1098-133695-0011_1116-132847-0019",
)


def _silence(path, sample_rate, seconds=0.1, channels=1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shape = (int(sample_rate * seconds), channels)
    data = np.zeros(shape if channels > 1 else shape[0], dtype=np.float32)
    sf.write(path, data, sample_rate, subtype="PCM_16")


def make_wham(root, rates=(8000, 16000)):
    for rate in rates:
        for mode in ("min", "max"):
            for split in ("tr", "cv", "tt"):
                for folder in (
                    "mix_both", "mix_clean", "mix_single", "s1", "s2",
                    "noise",
                ):  # fmt: skip
                    for name in WHAM_NAMES:
                        _silence(
                            os.path.join(
                                root, f"wav{rate // 1000}k", mode, split,
                                folder, f"{name}.wav",
                            ),
                            rate,
                        )  # fmt: skip
    return str(root)


def make_librimix(root, num_spks):
    names = LIBRI2_NAMES if num_spks == 2 else LIBRI3_NAMES
    sources = [f"s{i + 1}" for i in range(num_spks)]
    corpus = os.path.join(root, f"Libri{num_spks}Mix")
    for rate in (8000, 16000):
        for mode in ("min", "max"):
            base = os.path.join(corpus, f"wav{rate // 1000}k", mode)
            for split in ("train-100", "dev", "test"):
                for folder in ["mix_both", "mix_clean", "mix_single", "noise"]:
                    for name in names:
                        _silence(
                            os.path.join(base, split, folder, f"{name}.wav"),
                            rate,
                        )
                for folder in sources:
                    for name in names:
                        _silence(
                            os.path.join(base, split, folder, f"{name}.wav"),
                            rate,
                        )
    return str(root)


VB_FOLDERS = (
    ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav",
     "trainset_28spk_txt", ("p226", "p287", "p227")),
    ("clean_testset_wav", "noisy_testset_wav", "testset_txt",
     ("p232", "p257")),
)  # fmt: skip


def make_voicebank(root):
    for clean, noisy, txt, speakers in VB_FOLDERS:
        os.makedirs(os.path.join(root, txt), exist_ok=True)
        for spk in speakers:
            for utt in (1, 2):
                name = f"{spk}_{utt:03d}"
                _silence(os.path.join(root, clean, f"{name}.wav"), 16000)
                _silence(os.path.join(root, noisy, f"{name}.wav"), 16000)
                with open(os.path.join(root, txt, f"{name}.txt"), "w") as f:
                    f.write("Please call Stella.\n")
    return str(root)


def read_csv(path):
    with open(path, newline="") as fin:
        return list(csv.DictReader(fin))


def assert_one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, message


# ------------------------------------------------------------ skeletons


def test_prepare_wham_skeleton(tmp_path):
    root = make_wham(tmp_path / "wham")
    for rate, mode in ((8000, "min"), (16000, "max")):
        out = prepare_wham(
            root, tmp_path / f"save{rate}", sample_rate=rate, mode=mode
        )
        assert set(out) == {"train", "valid", "test"}
        rows = read_csv(out["train"])
        assert list(rows[0]) == [
            "ID", "duration", "mix_wav", "s1_wav", "s2_wav", "noise_wav",
        ]  # fmt: skip
        assert sorted(r["ID"] for r in rows) == sorted(WHAM_NAMES)
        assert float(rows[0]["duration"]) == pytest.approx(0.1)
        assert f"/wav{rate // 1000}k/{mode}/tr/mix_both/" in rows[0]["mix_wav"]
        assert "/cv/" in read_csv(out["valid"])[0]["s2_wav"]
        assert "/tt/" in read_csv(out["test"])[0]["noise_wav"]
    out = prepare_wham(root, tmp_path / "single", mixture="mix_single")
    assert "/mix_single/" in read_csv(out["test"])[0]["mix_wav"]


@pytest.mark.parametrize("num_spks", [2, 3])
def test_prepare_librimix_skeleton(tmp_path, num_spks):
    root = make_librimix(tmp_path / "librimix", num_spks)
    out = prepare_librimix(root, tmp_path / "save", num_spks=num_spks)
    rows = read_csv(out["train"])
    expected = ["ID", "duration", "mix_wav", "s1_wav", "s2_wav"]
    expected += ["s3_wav"] if num_spks == 3 else []
    assert list(rows[0]) == expected + ["noise_wav"]
    assert len(rows) == 2 and "/train-100/" in rows[0]["mix_wav"]
    assert "/dev/" in read_csv(out["valid"])[0]["mix_wav"]
    # the Libri{N}Mix folder itself is accepted too, at 16 kHz as well
    inner = os.path.join(root, f"Libri{num_spks}Mix")
    out = prepare_librimix(
        inner, tmp_path / "save16", num_spks=num_spks, sample_rate=16000
    )
    assert "/wav16k/min/test/" in read_csv(out["test"])[0]["s1_wav"]


def test_prepare_voicebank_skeleton(tmp_path):
    root = make_voicebank(tmp_path / "vb")
    out = prepare_voicebank(root, tmp_path / "save")
    train, valid = read_csv(out["train"]), read_csv(out["valid"])
    test = read_csv(out["test"])
    assert list(train[0]) == [
        "ID", "duration", "noisy_wav", "clean_wav", "spk_id", "transcript",
    ]  # fmt: skip
    assert {r["spk_id"] for r in train} == {"p227"}
    assert {r["spk_id"] for r in valid} == {"p226", "p287"}
    assert {r["spk_id"] for r in test} == {"p232", "p257"}
    assert train[0]["transcript"] == "PLEASE CALL STELLA"
    assert "noisy_trainset_28spk_wav" in valid[0]["noisy_wav"]


def test_prepare_skips_done_work_and_redoes_changed(tmp_path):
    root = make_wham(tmp_path / "wham", rates=(8000,))
    out = prepare_wham(root, tmp_path / "save")
    stamp = os.stat(out["train"]).st_mtime_ns
    os.utime(out["train"], ns=(stamp - 10**9, stamp - 10**9))
    prepare_wham(root, tmp_path / "save")
    assert os.stat(out["train"]).st_mtime_ns == stamp - 10**9
    prepare_wham(root, tmp_path / "save", mode="max")
    assert os.stat(out["train"]).st_mtime_ns != stamp - 10**9
    assert "/max/" in read_csv(out["train"])[0]["mix_wav"]
    assert prepare_wham("/nowhere", tmp_path / "x", skip_prep=True)["test"]


# ------------------------------------------------------------ errors


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataFolderError) as excinfo:
        prepare_wham(tmp_path / "absent", tmp_path / "save")
    assert_one_line(excinfo, tmp_path / "absent")
    with pytest.raises(DataFolderError) as excinfo:
        prepare_librimix(tmp_path, tmp_path / "save")
    assert_one_line(excinfo, "Libri2Mix", "LibriMix layout")


def test_empty_folder(tmp_path):
    root = tmp_path / "wham"
    os.makedirs(root / "wav8k" / "min" / "tr" / "mix_both")
    with pytest.raises(DataFolderError) as excinfo:
        prepare_wham(root, tmp_path / "save")
    assert_one_line(excinfo, root / "wav8k/min/tr/mix_both", "no wav files")
    vb = tmp_path / "vb"
    for clean, noisy, txt, _ in VB_FOLDERS:
        for name in (clean, noisy, txt):
            os.makedirs(vb / name)
    with pytest.raises(DataFolderError) as excinfo:
        prepare_voicebank(vb, tmp_path / "save")
    assert_one_line(excinfo, vb, "no wav files", "VoiceBank-DEMAND layout")


def test_malformed_layout_names_missing_folder(tmp_path):
    root = make_wham(tmp_path / "wham", rates=(8000,))
    target = root + "/wav8k/min/cv/s2"
    for name in os.listdir(target):
        os.remove(os.path.join(target, name))
    os.rmdir(target)
    with pytest.raises(DataFolderError) as excinfo:
        prepare_wham(root, tmp_path / "save")
    assert_one_line(excinfo, target, "missing", "WHAM! layout", "wav8k")
    lm = make_librimix(tmp_path / "lm", 3)
    s3 = os.path.join(lm, "Libri3Mix/wav8k/min/dev/s3")
    for name in os.listdir(s3):
        os.remove(os.path.join(s3, name))
    os.rmdir(s3)
    with pytest.raises(DataFolderError) as excinfo:
        prepare_librimix(lm, tmp_path / "save", num_spks=3)
    assert_one_line(excinfo, s3, "missing")
    vb = make_voicebank(tmp_path / "vb")
    os.remove(os.path.join(vb, "testset_txt", "p257_002.txt"))
    with pytest.raises(DataFolderError) as excinfo:
        prepare_voicebank(vb, tmp_path / "save")
    assert_one_line(excinfo, "testset_txt/p257_002.txt", "transcript")


@pytest.mark.parametrize("problem", ["corrupt", "rate", "stereo", "length"])
def test_bad_wav_gives_one_line(tmp_path, problem):
    root = make_wham(tmp_path / "wham", rates=(8000,))
    bad = os.path.join(root, "wav8k/min/tt/s1", f"{WHAM_NAMES[1]}.wav")
    if problem == "corrupt":
        with open(bad, "wb") as fout:
            fout.write(np.random.default_rng(0).bytes(500))
        fragment = "not a readable audio file"
    elif problem == "rate":
        _silence(bad, 16000)
        fragment = "sample rate 16000 Hz, expected 8000 Hz"
    elif problem == "stereo":
        _silence(bad, 8000, channels=2)
        fragment = "2 channels"
    else:
        _silence(bad, 8000, seconds=0.2)
        fragment = os.path.join(
            root, "wav8k/min/tt/mix_both", f"{WHAM_NAMES[1]}.wav"
        )
    with pytest.raises(AudioFileError) as excinfo:
        prepare_wham(root, tmp_path / "save")
    assert_one_line(excinfo, bad, fragment)


def test_empty_wav_and_wrong_rate_voicebank(tmp_path):
    vb = make_voicebank(tmp_path / "vb")
    bad = os.path.join(vb, "clean_testset_wav", "p232_001.wav")
    open(bad, "wb").close()
    with pytest.raises(AudioFileError) as excinfo:
        prepare_voicebank(vb, tmp_path / "save")
    assert_one_line(excinfo, bad, "empty")
    _silence(bad, 48000)
    with pytest.raises(AudioFileError) as excinfo:
        prepare_voicebank(vb, tmp_path / "save")
    assert_one_line(excinfo, bad, "48000 Hz")


def test_librimix_metadata_mismatch(tmp_path):
    root = make_librimix(tmp_path / "lm", 2)
    meta = os.path.join(root, "Libri2Mix/wav8k/min/metadata")
    os.makedirs(meta)
    path = os.path.join(meta, "mixture_dev_mix_both.csv")
    with open(path, "w") as fout:
        fout.write("mixture_ID,mixture_path,source_1_path,source_2_path,")
        fout.write(f"noise_path,length\n{LIBRI2_NAMES[0]},a,b,c,d,800\n")
    with pytest.raises(DataFolderError) as excinfo:
        prepare_librimix(root, tmp_path / "save")
    assert_one_line(excinfo, path, f"{LIBRI2_NAMES[1]}.wav not listed")


def test_bad_options(tmp_path):
    with pytest.raises(HparamsError):
        prepare_wham(tmp_path, tmp_path / "save", sample_rate=44100)
    with pytest.raises(HparamsError):
        prepare_librimix(tmp_path, tmp_path / "save", mixture="mix_all")
    vb = make_voicebank(tmp_path / "vb")
    with pytest.raises(DataFolderError) as excinfo:
        prepare_voicebank(vb, tmp_path / "save", valid_speakers=("p999",))
    assert_one_line(excinfo, "p999")
