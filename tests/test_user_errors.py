"""Bad input reaches the user as one clear line, from a real recipe run.

Each case runs the WHAM! recipe's ``train.py`` on a copy of the tiny mini
corpus with one defect, and checks that the process exits with status 2 and
that its last stderr line is a single ``error:`` line naming the culprit.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from lobes.data.mini_corpora import ensure_mini_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")
TINY_FLAGS = [
    "--mini_corpus_size=tiny", "--number_of_epochs=1",
    "--segment_seconds=0.5", "--encoder_channels=8",
    "--num_dual_path_blocks=1", "--num_transformer_layers=1",
    "--num_heads=2", "--d_ffn=16", "--chunk_size=20",
    "--nce_num_patches=8", "--nce_embed_dim=8", "--noprogressbar",
]


@pytest.fixture(scope="module")
def wham_root(mini_cache):
    return ensure_mini_corpus("wham", "tiny", cache_dir=mini_cache)


@pytest.fixture
def wham_copy(wham_root, tmp_path):
    """A private copy of the 8 kHz min part of the tiny WHAM! corpus."""
    part = os.path.join("wav8k", "min")
    shutil.copytree(os.path.join(wham_root, part), tmp_path / "wham" / part)
    return tmp_path / "wham"


def run_recipe(tmp_path, *flags, num_workers=0):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "train.py", "hparams/nass_sepformer.yaml",
         f"--output_folder={out}", f"--num_workers={num_workers}",
         *TINY_FLAGS, *flags],
        cwd=RECIPE, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, lines[-1] if lines else "", proc.stderr


def first_wav(root, split, folder):
    folder = root / "wav8k" / "min" / split / folder
    return folder / sorted(os.listdir(folder))[0]


def assert_one_line_error(result, *needles):
    code, last, stderr = result
    assert code == 2, stderr[-3000:]
    assert last.startswith("error: "), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    for needle in needles:
        assert str(needle) in last, last


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "no_wham"
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={missing}"),
        missing, "--data_folder",
    )


def test_data_folder_in_the_wrong_layout(wham_copy, tmp_path):
    shutil.rmtree(wham_copy / "wav8k" / "min" / "cv" / "s2")
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={wham_copy}"), "s2",
    )


def test_corrupted_wav(wham_copy, tmp_path):
    bad = first_wav(wham_copy, "tr", "s1")
    bad.write_bytes(b"RIFF not really a wav file" * 4)
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={wham_copy}"), bad,
    )


def test_wav_at_the_wrong_sample_rate(wham_copy, tmp_path):
    bad = first_wav(wham_copy, "tt", "mix_both")
    data, _ = sf.read(bad)
    sf.write(bad, data, 16000)
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={wham_copy}"), bad, "16000",
    )


def test_stereo_wav(wham_copy, tmp_path):
    bad = first_wav(wham_copy, "cv", "noise")
    data, rate = sf.read(bad)
    sf.write(bad, np.stack([data, data], axis=1), rate)
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={wham_copy}"), bad, "mono",
    )


def test_nan_samples_found_while_training(wham_copy, tmp_path):
    bad = first_wav(wham_copy, "tr", "mix_both")
    data, rate = sf.read(bad)
    data[10] = np.nan
    sf.write(bad, data, rate, subtype="FLOAT")
    assert_one_line_error(
        run_recipe(tmp_path, f"--data_folder={wham_copy}", num_workers=1),
        bad, "NaN",
    )


def test_hparam_typo(tmp_path):
    assert_one_line_error(
        run_recipe(tmp_path, "--nce_wieght=1"), "nce_wieght", "nce_weight",
    )
