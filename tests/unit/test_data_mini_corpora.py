"""Tiny mini corpora: layouts, determinism, mixing identities, splits."""

import glob
import os
import re

import numpy as np
import pytest
import soundfile as sf

from lobes.data import mini_corpora
from lobes.data.grid_grammar import (
    ADVERBS,
    COLOURS,
    COMMANDS,
    DIGITS,
    PREPOSITIONS,
)
from lobes.data.mini_corpora import ensure_mini_corpus, generate
from lobes.data.prepare import (
    prepare_librimix,
    prepare_voicebank,
    prepare_wham,
)
from lobes.errors import UserError

CORPORA = ("wham", "librimix", "voicebank")


@pytest.fixture(scope="module")
def corpora(mini_cache, tmp_path_factory):
    """Each tiny corpus twice with seed 0 (the session's cache, which the
    recipe rows fill too, then direct) and WHAM! with seed 1."""
    roots = {}
    for corpus in CORPORA:
        roots[corpus, 0] = ensure_mini_corpus(corpus, "tiny", 0, mini_cache)
        again = str(tmp_path_factory.mktemp(f"{corpus}_again"))
        roots[corpus, "again"] = generate(corpus, again, seed=0, size="tiny")
    other = str(tmp_path_factory.mktemp("wham_seed1"))
    roots["wham", 1] = generate("wham", other, seed=1, size="tiny")
    return roots


def _files(root):
    return sorted(
        os.path.relpath(path, root)
        for path in glob.glob(os.path.join(root, "**", "*"), recursive=True)
        if os.path.isfile(path)
    )


def _read(path):
    data, _ = sf.read(path, dtype="float32")
    return data


@pytest.mark.parametrize("corpus", CORPORA)
def test_same_seed_same_bytes(corpora, corpus):
    first, second = corpora[corpus, 0], corpora[corpus, "again"]
    files = [f for f in _files(first) if f != ".complete"]
    assert files == _files(second)
    assert len(files) > 10
    for rel in files:
        with open(os.path.join(first, rel), "rb") as fin:
            one = fin.read()
        with open(os.path.join(second, rel), "rb") as fin:
            two = fin.read()
        if rel.endswith(".csv"):  # metadata holds absolute paths
            one = one.replace(first.encode(), b"ROOT")
            two = two.replace(second.encode(), b"ROOT")
        assert one == two, rel


def test_other_seed_differs(corpora):
    one, two = corpora["wham", 0], corpora["wham", 1]
    names_one = os.listdir(os.path.join(one, "wav8k/min/tr/mix_both"))
    names_two = os.listdir(os.path.join(two, "wav8k/min/tr/mix_both"))
    assert names_one != names_two
    first = sorted(glob.glob(os.path.join(one, "wav8k/min/tr/s1/*.wav")))[0]
    other = sorted(glob.glob(os.path.join(two, "wav8k/min/tr/s1/*.wav")))[0]
    a, b = _read(first), _read(other)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_wham_layout_and_identities(corpora):
    root = corpora["wham", 0]
    pattern = re.compile(
        r"^[0-9a-z]{8}_(\d\.\d{4})_[0-9a-z]{8}_(-\d\.\d{4})\.wav$"
    )
    counts = {"tr": 8, "cv": 4, "tt": 4}
    for rate in (8000, 16000):
        for mode in ("min", "max"):
            for split, count in counts.items():
                base = os.path.join(root, f"wav{rate // 1000}k", mode, split)
                names = sorted(os.listdir(os.path.join(base, "mix_both")))
                assert len(names) == count
                for name in names:
                    match = pattern.match(name)
                    assert match, name
                    assert float(match.group(1)) == -float(match.group(2))
                    assert 0.0 <= float(match.group(1)) <= 2.5
                    sig = {
                        folder: _read(os.path.join(base, folder, name))
                        for folder in (
                            "mix_both", "mix_clean", "mix_single", "s1",
                            "s2", "noise",
                        )
                    }  # fmt: skip
                    assert sf.info(os.path.join(base, "s1", name)).samplerate
                    assert np.max(np.abs(sig["mix_both"])) <= 1.0
                    both = sig["s1"] + sig["s2"] + sig["noise"]
                    np.testing.assert_allclose(sig["mix_both"], both, atol=1e-4)
                    np.testing.assert_allclose(
                        sig["mix_clean"], sig["s1"] + sig["s2"], atol=1e-4
                    )
                    np.testing.assert_allclose(
                        sig["mix_single"], sig["s1"] + sig["noise"], atol=1e-4
                    )
                    assert sf.info(
                        os.path.join(base, "noise", name)
                    ).samplerate == rate


def _rms_db(signal):
    return 10 * np.log10(np.mean(np.square(signal.astype(np.float64))))


def test_wham_levels_and_min_max(corpora):
    base = os.path.join(corpora["wham", 0], "wav16k")
    for name in os.listdir(os.path.join(base, "max/tr/mix_both")):
        level = float(name.split("_")[1])
        full = {f: _read(os.path.join(base, "max/tr", f, name))
                for f in ("s1", "s2", "noise", "mix_both")}  # fmt: skip
        short = {f: _read(os.path.join(base, "min/tr", f, name))
                 for f in ("s1", "s2", "noise", "mix_both")}  # fmt: skip
        # min is max truncated to the shorter speaker
        for folder in full:
            n = short[folder].size
            np.testing.assert_array_equal(short[folder], full[folder][:n])
        s1 = np.trim_zeros(full["s1"], "b")
        s2 = np.trim_zeros(full["s2"], "b")
        assert min(s1.size, s2.size) <= short["s1"].size + 1
        # (the last samples of an utterance may round to zero)
        assert full["s1"].size - 800 < max(s1.size, s2.size) <= full["s1"].size
        relative = _rms_db(s1) - _rms_db(s2)
        assert relative == pytest.approx(2 * level, abs=0.1)
        snr = _rms_db(s1) - _rms_db(full["noise"])
        assert -6.1 <= snr <= 3.1


def test_wham_speakers_disjoint_across_splits(corpora):
    base = os.path.join(corpora["wham", 0], "wav8k/max")
    speakers = {}
    for split in ("tr", "cv", "tt"):
        names = os.listdir(os.path.join(base, split, "s1"))
        speakers[split] = {
            part[:3] for n in names for part in n.split("_")[::2]
        }
    assert speakers["tr"].isdisjoint(speakers["cv"])
    assert speakers["tr"].isdisjoint(speakers["tt"])
    assert speakers["cv"].isdisjoint(speakers["tt"])


@pytest.mark.parametrize("num_spks", [2, 3])
def test_librimix_layout_metadata_and_speakers(corpora, num_spks):
    root = os.path.join(corpora["librimix", 0], f"Libri{num_spks}Mix")
    sources = [f"s{i + 1}" for i in range(num_spks)]
    speakers = {}
    for split in ("train-100", "dev", "test"):
        base = os.path.join(root, "wav8k", "min", split)
        names = sorted(os.listdir(os.path.join(base, "mix_both")))
        ids = [n[:-4].split("_") for n in names]
        assert all(len(i) == num_spks for i in ids)
        for utts in ids:
            spks = [u.split("-")[0] for u in utts]
            assert len(set(spks)) == num_spks  # distinct speakers
            assert all(re.fullmatch(r"\d+-\d+-\d{4}", u) for u in utts)
        speakers[split] = {u.split("-")[0] for i in ids for u in i}
        for name in names:
            sig = {
                f: _read(os.path.join(base, f, name))
                for f in ["mix_both", "mix_clean", "mix_single", "noise"]
                + sources
            }
            speech = sum(sig[s] for s in sources)
            np.testing.assert_allclose(
                sig["mix_both"], speech + sig["noise"], atol=1e-4
            )
            np.testing.assert_allclose(sig["mix_clean"], speech, atol=1e-4)
            np.testing.assert_allclose(
                sig["mix_single"], sig["s1"] + sig["noise"], atol=1e-4
            )
        meta = os.path.join(
            root, "wav8k", "min", "metadata", f"mixture_{split}_mix_both.csv"
        )
        with open(meta) as fin:
            lines = fin.read().splitlines()
        header = "mixture_ID,mixture_path," + ",".join(
            f"source_{i + 1}_path" for i in range(num_spks)
        )
        assert lines[0] == header + ",noise_path,length"
        assert len(lines) == len(names) + 1
        rows = [line.split(",") for line in lines[1:]]
        assert sorted(row[0] + ".wav" for row in rows) == names
        for row in rows:
            assert os.path.isfile(row[1]) and row[1].endswith(row[0] + ".wav")
            assert int(row[-1]) == sf.info(row[1]).frames
    assert speakers["train-100"].isdisjoint(speakers["dev"])
    assert speakers["train-100"].isdisjoint(speakers["test"])
    assert speakers["dev"].isdisjoint(speakers["test"])


def test_voicebank_layout_snrs_and_transcripts(corpora):
    root = corpora["voicebank", 0]
    vocabulary = set(COMMANDS + COLOURS + PREPOSITIONS + DIGITS + ADVERBS)
    sets = {
        "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav",
                  "trainset_28spk_txt", (0.0, 5.0, 10.0, 15.0)),
        "test": ("clean_testset_wav", "noisy_testset_wav", "testset_txt",
                 (2.5, 7.5, 12.5, 17.5)),
    }  # fmt: skip
    speakers = {}
    for part, (clean_dir, noisy_dir, txt_dir, snrs) in sets.items():
        names = sorted(os.listdir(os.path.join(root, noisy_dir)))
        assert names == sorted(os.listdir(os.path.join(root, clean_dir)))
        speakers[part] = {n.split("_")[0] for n in names}
        for name in names:
            assert re.fullmatch(r"p\d{3}_\d{3}\.wav", name)
            clean = _read(os.path.join(root, clean_dir, name))
            noisy = _read(os.path.join(root, noisy_dir, name))
            assert sf.info(os.path.join(root, noisy_dir, name)).samplerate == (
                16000
            )
            snr = _rms_db(clean) - _rms_db(noisy - clean)
            assert min(abs(snr - s) for s in snrs) < 0.1, (name, snr)
            with open(os.path.join(root, txt_dir, name[:-4] + ".txt")) as f:
                words = f.read().strip().rstrip(".").lower().split()
            assert len(words) == 6
            assert set(words) - vocabulary <= {words[3]}  # the letter
    assert {"p226", "p287"} <= speakers["train"]
    assert speakers["test"] == {"p232", "p257"}


def test_mini_corpora_prepare(corpora, tmp_path):
    wham = prepare_wham(corpora["wham", 0], tmp_path / "wham")
    with open(wham["train"]) as fin:
        assert len(fin.read().splitlines()) == 9
    for num_spks in (2, 3):
        out = prepare_librimix(
            corpora["librimix", 0], tmp_path / "lm", num_spks=num_spks
        )
        with open(out["valid"]) as fin:
            assert len(fin.read().splitlines()) == 5
    out = prepare_voicebank(corpora["voicebank", 0], tmp_path / "vb")
    with open(out["valid"]) as fin:
        rows = fin.read().splitlines()[1:]
    assert {row.split(",")[4] for row in rows} == {"p226", "p287"}
    assert all(len(row.split(",")[5].split()) == 6 for row in rows)


def test_ensure_mini_corpus_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NRSB_CACHE", str(tmp_path))
    root = ensure_mini_corpus("voicebank", "tiny", seed=3)
    assert root == str(tmp_path / "voicebank_tiny_seed3")
    assert os.path.isfile(os.path.join(root, ".complete"))
    # cached: no generation the second time
    monkeypatch.setattr(mini_corpora, "generate", None)
    assert ensure_mini_corpus("voicebank", "tiny", seed=3) == root
    monkeypatch.undo()
    monkeypatch.setenv("NRSB_CACHE", str(tmp_path))
    # an interrupted generation (no marker, a temporary leftover) is redone
    os.remove(os.path.join(root, ".complete"))
    os.remove(os.path.join(root, "testset_txt", "p232_001.txt"))
    os.makedirs(tmp_path / ".voicebank_tiny_seed3.tmpabc")
    assert ensure_mini_corpus("voicebank", "tiny", seed=3) == root
    assert os.path.isfile(os.path.join(root, "testset_txt", "p232_001.txt"))
    # a corpus from another generator version is regenerated
    marker = os.path.join(root, ".complete")
    with open(marker, "w") as fout:
        fout.write('{"version": -1}')
    assert ensure_mini_corpus("voicebank", "tiny", seed=3) == root
    with open(marker) as fin:
        assert f'"version": {mini_corpora.GENERATOR_VERSION}' in fin.read()
    assert sorted(os.listdir(tmp_path)) == [
        ".voicebank_tiny_seed3.lock",
        "voicebank_tiny_seed3",
    ]
    with pytest.raises(UserError):
        ensure_mini_corpus("timit", "tiny")
    with pytest.raises(UserError):
        ensure_mini_corpus("wham", "huge")


def test_cli(tmp_path, capsys):
    mini_corpora.main(
        ["--corpus", "voicebank", "--out", str(tmp_path), "--size", "tiny"]
    )
    assert "written to" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "noisy_testset_wav")) == 4
    with pytest.raises(SystemExit):
        mini_corpora.main(["--corpus", "timit", "--out", str(tmp_path)])


def test_wider_wham_test_split_keeps_the_other_mixtures(corpora,
                                                        tmp_path):
    base = corpora["wham", 0]
    wide = generate("wham", str(tmp_path / "wide"), seed=0, size="tiny",
                    test_mixtures=7)
    tt = os.path.join("wav8k", "min", "tt", "mix_both")
    assert len(os.listdir(os.path.join(wide, tt))) == 7
    for name in _files(base):
        if name.endswith(".wav") and (os.sep + "tt" + os.sep not in name):
            with open(os.path.join(base, name), "rb") as a, \
                    open(os.path.join(wide, name), "rb") as b:
                assert a.read() == b.read(), name
    for name in os.listdir(os.path.join(base, tt)):  # the 4 first, as they were
        assert np.array_equal(_read(os.path.join(base, tt, name)),
                              _read(os.path.join(wide, tt, name)))
    with pytest.raises(UserError, match="only mini WHAM! takes"):
        generate("voicebank", str(tmp_path / "vb"), size="tiny",
                 test_mixtures=7)
