"""Separation inference: a trained recipe, its export, chunking, the CLI.

A real debug-size run of the WHAM! NASS-SepFormer recipe is loaded as a
training folder and, exported with ``lobes.export``, by SpeechBrain's own
``SepformerSeparation``; both give the training model's outputs.
"""

import os
import subprocess
import sys

import pytest
import torch

from lobes.chunking import chunk_starts, overlap_add
from lobes.data.audio import read_audio, write_audio
from lobes.errors import ModelSourceError
from lobes.pretrained import NoiseAwareSeparation
from lobes.runs import load_trained_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(REPO, "recipes", "WHAM", "separation")
TINY_FLAGS = [
    "--mini_corpus_size=tiny", "--num_workers=0", "--encoder_channels=16",
    "--num_transformer_layers=1", "--num_heads=2", "--d_ffn=32",
    "--chunk_size=20", "--num_dual_path_blocks=1", "--nce_num_patches=16",
    "--nce_embed_dim=16", "--segment_seconds=0.5", "--batch_size=4",
    "--number_of_epochs=1", "--eval_max_seconds=1.0", "--noprogressbar",
    "--save_audio=False",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_run(mini_cache, tmp_path_factory):
    """A tiny NASS-SepFormer trained for one epoch by the WHAM! recipe."""
    folder = str(tmp_path_factory.mktemp("nass_run"))
    proc = subprocess.run(
        [sys.executable, "train.py", "hparams/nass_sepformer.yaml",
         f"--output_folder={folder}", *TINY_FLAGS],
        cwd=RECIPE, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1",
                 MKL_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


class OracleSeparator:
    """Returns the true sources of any chunk, in a random order each call."""

    def __init__(self, sources):
        self.sources = sources  # [T, S]
        self.mixture = sources.sum(dim=1)
        self.calls = 0

    def __call__(self, chunk):
        windows = self.mixture.unfold(0, chunk.shape[0], 1)
        start = int((windows - chunk).abs().sum(dim=1).argmin())
        part = self.sources[start:start + chunk.shape[0]]
        self.calls += 1
        return part[:, torch.randperm(part.shape[1])]


def test_chunks_are_stitched_in_a_consistent_order():
    torch.manual_seed(0)
    sources = torch.randn(4000, 3)
    oracle = OracleSeparator(sources)
    outputs = overlap_add(oracle, oracle.mixture, chunk=1000, overlap=250)
    assert oracle.calls == len(chunk_starts(4000, 1000, 750)) == 5
    # the outputs keep the (random) order of the first chunk throughout
    order = [
        int(torch.argmax(torch.stack([
            torch.nn.functional.cosine_similarity(outputs[:, i],
                                                  sources[:, j], dim=0)
            for j in range(3)
        ])))
        for i in range(3)
    ]
    assert sorted(order) == [0, 1, 2]
    assert torch.allclose(outputs, sources[:, order], atol=1e-5)


def test_recipe_model_separates_tensors_and_files(trained_run, tmp_path):
    model = NoiseAwareSeparation.from_source(
        trained_run, chunk_seconds=0.5, overlap_seconds=0.1
    )
    assert model.num_speakers == 2 and model.noise_index in (0, 1, 2)
    mixture = torch.randn(8000) * 0.1
    result = model.separate(mixture)
    assert result["speakers"].shape == (8000, 2)
    assert result["noise"].shape == (8000,)
    # one pass over a short input equals the trained separator's output
    trained = load_trained_run(trained_run, ["separator"]).modules["separator"]
    short = model.separate_outputs(mixture[:3000])
    direct = trained(mixture[:3000].unsqueeze(0)).waveforms[0]
    assert torch.allclose(short, direct.detach(), atol=1e-6)

    path = str(tmp_path / "mix16k.wav")
    write_audio(path, torch.randn(16000) * 0.1, 16000)
    proc = subprocess.run(
        [sys.executable, "-m", "lobes.separate", "--model", trained_run,
         path, "--out", str(tmp_path / "out"), "--chunk_seconds=0.5",
         "--overlap_seconds=0.1"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "resampling" in proc.stderr
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == ["mix16k_noise.wav", "mix16k_s1.wav", "mix16k_s2.wav"]
    out = read_audio(str(tmp_path / "out" / "mix16k_s1.wav"), 8000)
    assert out.shape[0] == 8000


def test_debug_run_exports_to_sepformer_separation(trained_run, tmp_path,
                                                  capsys):
    from speechbrain.inference.separation import SepformerSeparation

    from lobes.export import main as export
    from lobes.separate import main as separate

    folder = str(tmp_path / "export")
    export([trained_run, folder])
    assert "SepformerSeparation.from_hparams" in capsys.readouterr().out
    trained = load_trained_run(trained_run, ["separator"]).modules["separator"]
    loaded = SepformerSeparation.from_hparams(source=folder,
                                              savedir=str(tmp_path / "sb"))
    mix = torch.randn(2, 4000) * 0.1
    expected = trained(mix).waveforms
    assert torch.allclose(loaded.separate_batch(mix), expected, atol=1e-5)
    # the package's class: SpeechBrain's separate_file, in the same order
    model = NoiseAwareSeparation.from_hparams(
        source=folder, savedir=str(tmp_path / "sb2")
    )
    path = str(tmp_path / "mix.wav")
    write_audio(path, mix[0], 8000, subtype="FLOAT")
    estimates = model.separate_file(path)
    assert estimates.shape == (1, 4000, 3)
    assert torch.allclose(estimates, loaded.separate_file(path), atol=1e-5)
    noise = expected[0, :, model.noise_index]
    assert torch.allclose(estimates[0, :, model.noise_index],
                          noise / noise.abs().max(), atol=1e-4)
    # the command line, on a folder, with the exported model
    separate(["--model", folder, str(tmp_path / "mix.wav"), "--out",
              str(tmp_path / "out")])
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "out" / f"mix_{name}.wav")
        for name in ("s1", "s2", "noise")
    ]


def test_bad_model_folder_is_one_line(tmp_path):
    with pytest.raises(ModelSourceError, match="hyperparams.yaml"):
        NoiseAwareSeparation.from_source(str(tmp_path))
    (tmp_path / "hyperparams.yaml").write_text("a: [1\n")
    with pytest.raises(ModelSourceError, match="cannot be loaded"):
        NoiseAwareSeparation.from_source(str(tmp_path))
    wav = tmp_path / "x.wav"
    write_audio(str(wav), torch.zeros(100), 8000)
    proc = subprocess.run(
        [sys.executable, "-m", "lobes.separate", "--model", str(tmp_path),
         str(wav), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "cannot be loaded" in lines[-1]


def test_folder_without_checkpoint(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    copy.mkdir()
    shutil.copy(os.path.join(trained_run, "hyperparams.yaml"), copy)
    with pytest.raises(ModelSourceError, match="no checkpoint"):
        NoiseAwareSeparation.from_source(str(copy))
