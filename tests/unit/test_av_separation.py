"""Test-time separation of the AV recipe: scoring, loading, and the
separate.py command line on one mixture."""

import csv
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lobes.data.mini_corpora import ensure_mini_corpus
from lobes.errors import DataFolderError, HparamsError, ModelSourceError
from lobes.separation_mcem import (
    Separators,
    evaluate,
    lips_paths,
    load_trained,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(REPO, "recipes", "NTCD-TIMIT", "av_separation")


def test_evaluate_pairs_by_si_sdr_and_reports_the_order():
    generator = torch.Generator().manual_seed(0)
    refs = torch.randn(2, 16000, generator=generator)
    mix = refs.sum(0)
    noisy = refs + 0.05 * torch.randn(2, 16000, generator=generator)
    right = evaluate(noisy, refs, mix, quality=False)
    swapped = evaluate(noisy.flip(0), refs, mix, quality=False)
    assert right["order_correct"] == 1.0 and swapped["order_correct"] == 0.0
    assert right["si_sdr"] == pytest.approx(swapped["si_sdr"])
    assert right["si_sdr"] > 20 and right["si_sdr_i"] > 20
    unprocessed = evaluate(mix[None].repeat(2, 1), refs, mix, quality=False)
    assert unprocessed["sdr_i"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(unprocessed["pesq"])


def test_evaluate_quality_scores_follow_the_pairing():
    t = torch.arange(16000) / 16000
    refs = torch.stack([torch.sin(2 * math.pi * 220 * t),
                        torch.sign(torch.sin(2 * math.pi * 3 * t))
                        * torch.sin(2 * math.pi * 700 * t)])  # fmt: skip
    scores = evaluate(refs.flip(0), refs, refs.sum(0))
    assert scores["stoi"] > 0.9  # paired with the right references


def test_lips_paths(tmp_path):
    assert lips_paths(["a.npy", "b.npy"]) == ["a.npy", "b.npy"]
    for name in ("2.npy", "1.npy", "x.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in lips_paths(str(tmp_path))] == [
        "1.npy", "2.npy",
    ]  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFolderError, match="no .npy"):
        lips_paths(str(empty))


def test_load_trained_errors_and_best_checkpoint(tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    from lobes.models.av_vae import AudioVAE

    with pytest.raises(ModelSourceError, match="no hyperparams.yaml"):
        load_trained(str(tmp_path), "vae")
    (tmp_path / "hyperparams.yaml").write_text(
        "vae: !new:lobes.models.av_vae.AudioVAE\n  num_freqs: 9\n"
        "modules:\n  vae: !ref <vae>\nstft: 7\n"
    )
    with pytest.raises(ModelSourceError, match="no checkpoint"):
        load_trained(str(tmp_path), "vae")
    saved = {}
    for loss in (2.0, 1.0, 3.0):  # the lowest validation loss is loaded
        saved[loss] = AudioVAE(9)
        Checkpointer(str(tmp_path / "save"), {"vae": saved[loss]}) \
            .save_checkpoint(meta={"loss": loss})
    module, run = load_trained(str(tmp_path), "vae")
    assert not module.training and run["stft"] == 7
    assert torch.equal(module.decoder_output.weight,
                       saved[1.0].decoder_output.weight)
    with pytest.raises(ModelSourceError,
                       match="no module 'separator'.* supervised separation"):
        load_trained(str(tmp_path), "separator")


def test_methods_without_a_model_are_skipped():
    from lobes.models.av_features import SineSTFT

    hparams = {"methods": ["mixture", "av_vae"], "av_vae_folder": None,
               "sample_rate": 16000, "stft": SineSTFT(256, 64), "seed": 0}
    separators = Separators(hparams, [])
    assert separators.methods == ["mixture"]
    assert separators.skipped == ["av_vae"]
    with pytest.raises(HparamsError, match="unknown"):
        Separators(dict(hparams, methods=["oracle"]), [])


def _separate(args, cache):
    env = dict(os.environ, NRSB_CACHE=cache, OMP_NUM_THREADS="1",
               PYTHONPATH=REPO)  # fmt: skip
    return subprocess.run(
        [sys.executable, "separate.py", "hparams/separate.yaml", *args],
        cwd=RECIPE, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    root = ensure_mini_corpus("av", "tiny", 0, cache)
    folder = os.path.join(root, "mixtures", "test")
    with open(os.path.join(folder, "mixtures.csv")) as fin:
        row = next(csv.DictReader(fin))
    lips = [os.path.join(root, "lips", "volunteers", f"{utt}.npy")
            for utt in (row["s1_utt"], row["s2_utt"])]  # fmt: skip
    return {
        "cache": cache,
        "mix": os.path.join(folder, "mix", f"{row['ID']}.wav"),
        "refs": [os.path.join(folder, k, f"{row['ID']}.wav")
                 for k in ("s1", "s2")],  # fmt: skip
        "lips": lips,
    }


def test_separate_one_mixture_with_lips(tiny, tmp_path):
    out = tmp_path / "out"
    proc = _separate(
        [f"--output_folder={out}", "--mini_corpus_size=tiny",
         f"--mixture={tiny['mix']}", f"--lips={','.join(tiny['lips'])}",
         f"--references={','.join(tiny['refs'])}",
         "--methods=[mixture,av_vae,nmf]",
         "--nmf_iterations=5", "--dictionary_iterations=5",
         "--dictionary_frames=200", "--quality_metrics=False"],
        tiny["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    stem = os.path.splitext(os.path.basename(tiny["mix"]))[0]
    for method in ("mixture", "nmf"):
        for j in (1, 2):
            assert (out / "separated" / f"{stem}_{method}_s{j}.wav").is_file()
    with open(out / "results.csv") as fin:
        rows = list(csv.DictReader(fin))
    assert [r["method"] for r in rows] == ["mixture", "nmf"]
    assert float(rows[0]["sdr_i"]) == pytest.approx(0.0, abs=1e-4)
    assert "notice: av_vae skipped" in proc.stdout


def test_separate_bad_lips_is_one_line(tiny, tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.load(tiny["lips"][0])[:10])  # 10 frames: 0.33 s
    proc = _separate(
        [f"--output_folder={tmp_path / 'out'}", "--mini_corpus_size=tiny",
         f"--mixture={tiny['mix']}", f"--lips={short}"],
        tiny["cache"],
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {short}: 10 lip")
    assert "0.33 s but the audio lasts" in lines[0]
    assert not (tmp_path / "out").exists()  # checked before any folder
    broken = tmp_path / "broken.npy"
    np.save(broken, np.zeros((4, 4), np.float32))
    proc = _separate(
        [f"--output_folder={tmp_path / 'out2'}", "--mini_corpus_size=tiny",
         f"--mixture={tiny['mix']}", f"--lips={broken},{tiny['lips'][1]}"],
        tiny["cache"],
    )  # fmt: skip
    assert proc.returncode == 2 and "broken.npy" in proc.stderr


def _tiny_model_run(folder, visual_dim=1024):
    """A finished-run folder with a tiny AV-VAE (untrained weights, saved
    the way training saves them): enough to drive separate.py."""
    from speechbrain.utils.checkpoints import Checkpointer

    from lobes.models.av_vae import AVCVAE

    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(
        "vae: !new:lobes.models.av_vae.AVCVAE\n"
        "  num_freqs: 513\n  latent_dim: 4\n  hidden_dim: 16\n"
        f"  visual_dim: {visual_dim}\n  trunk_hidden: 16\n  trunk_dim: 8\n"
        "stft: !new:lobes.models.av_features.SineSTFT\n"
        "  n_fft: 1024\n  hop_length: 256\n"
        "modules:\n  vae: !ref <vae>\n"
    )
    torch.manual_seed(0)
    vae = AVCVAE(513, 4, 16, visual_dim, 16, 8)
    Checkpointer(str(folder / "save"), {"vae": vae}).save_checkpoint(
        meta={"loss": 1.0}
    )
    return str(folder)


def test_separate_enhances_one_speaker_from_real_layout_lips(tiny, tmp_path):
    """One lips file in the authors' layout ((H*W) x T column-major, 67x67
    float in [0, 1]): single-speaker enhancement with one command."""
    frames = np.load(tiny["lips"][0]).astype(np.float32) / 255.0
    big = torch.nn.functional.interpolate(
        torch.from_numpy(frames)[:, None], size=(67, 67), mode="bilinear",
    )[:, 0].numpy()  # fmt: skip
    columns = np.stack([f.flatten(order="F") for f in big], axis=1)
    assert columns.shape == (4489, frames.shape[0])
    lips = tmp_path / "spk1_lips.npy"
    np.save(lips, columns)
    run = _tiny_model_run(tmp_path / "run")
    out = tmp_path / "out"
    proc = _separate(
        [f"--output_folder={out}", "--mini_corpus_size=tiny",
         f"--mixture={tiny['mix']}", f"--lips={lips}",
         f"--references={tiny['refs'][0]}", f"--av_vae_folder={run}",
         "--lips_fallback=False", "--av_vae_iterations=2",
         "--methods=[mixture,av_vae]",
         "--num_mh_steps=3", "--burn_in=1", "--quality_metrics=False"],
        tiny["cache"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "notice: lips of 67x67 resized to 32x32" in proc.stdout
    stem = os.path.splitext(os.path.basename(tiny["mix"]))[0]
    separated = out / "separated"
    assert (separated / f"{stem}_av_vae_s1.wav").is_file()
    assert not (separated / f"{stem}_av_vae_s2.wav").exists()
    with open(out / "results.csv") as fin:
        rows = list(csv.DictReader(fin))
    assert [r["method"] for r in rows] == ["mixture", "av_vae"]
    assert all(math.isfinite(float(r["sdr"])) for r in rows)


def test_separate_wrong_model_size_is_one_line(tiny, tmp_path):
    """A model whose ROI pixel count is not a square cannot be fitted: one
    line naming the lips and the sizes, no matrix-product traceback."""
    run = _tiny_model_run(tmp_path / "run", visual_dim=1000)
    proc = _separate(
        [f"--output_folder={tmp_path / 'out'}", "--mini_corpus_size=tiny",
         f"--mixture={tiny['mix']}", f"--lips={tiny['lips'][0]}",
         f"--av_vae_folder={run}", "--methods=[av_vae]",
         "--lips_fallback=False", "--av_vae_iterations=1",
         "--num_mh_steps=2", "--burn_in=1"],
        tiny["cache"],
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "lips of 32x32 = 1024 pixels" in lines[0]
    assert "takes 1000" in lines[0] and "mat1" not in proc.stderr


def _audio_model_run(folder):
    """A finished-run folder with a tiny A-VAE (the fallback)."""
    from speechbrain.utils.checkpoints import Checkpointer

    from lobes.models.av_vae import AudioVAE

    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(
        "vae: !new:lobes.models.av_vae.AudioVAE\n"
        "  num_freqs: 513\n  latent_dim: 4\n  hidden_dim: 16\n"
        "stft: !new:lobes.models.av_features.SineSTFT\n"
        "  n_fft: 1024\n  hop_length: 256\n"
        "modules:\n  vae: !ref <vae>\n"
    )
    torch.manual_seed(1)
    Checkpointer(str(folder / "save"),
                 {"vae": AudioVAE(513, 4, 16)}).save_checkpoint(
        meta={"loss": 1.0})  # fmt: skip
    return str(folder)


def _separators(tmp_path, **extra):
    from lobes.models.av_features import SineSTFT
    from lobes.models.mcem import MCEM

    hparams = {
        "methods": ["av_vae"], "sample_rate": 16000, "seed": 0,
        "stft": SineSTFT(1024, 256),
        "av_vae_folder": _tiny_model_run(tmp_path / "av"),
        "mcem": MCEM(num_iterations=2, num_mh_steps=3, burn_in=1,
                     noise_rank=2, gain_init="level"),
        **extra,
    }  # fmt: skip
    lines = []
    return Separators(hparams, [], log=lines.append), lines


def test_lips_fallback_needs_an_audio_model(tmp_path):
    with pytest.raises(HparamsError, match="a_vae_folder"):
        _separators(tmp_path, lips_fallback=True)
    separators, _ = _separators(tmp_path / "other", lips_fallback=False)
    assert separators.fallback is None


def test_distrusted_lips_print_one_line_and_fall_back(tmp_path):
    """An AV-VAE whose spectra cannot fit a white mixture (log-variances
    alternating +-10 across bins, which no gain fixes) loses every frame
    to a flat A-VAE, and one notice line says so."""
    from lobes.separation_mcem import AVMixture

    separators, lines = _separators(
        tmp_path, lips_fallback=True,
        a_vae_folder=_audio_model_run(tmp_path / "a"),
    )  # fmt: skip
    vae = separators.models["av_vae"][0]
    with torch.no_grad():
        vae.decoder_output.bias.copy_(10.0 * (-1.0) ** torch.arange(513))
        vae.decoder_output.weight.zero_()
        # an A-VAE of flat variances: the white mixture's spectral shape
        separators.fallback.decoder_output.bias.zero_()
        separators.fallback.decoder_output.weight.zero_()
    generator = torch.Generator().manual_seed(0)
    item = AVMixture("m1", torch.randn(8000, generator=generator),
                     [torch.rand(16, 32, 32, generator=generator)], 30.0)
    estimates = separators.run("av_vae", [item])[0]
    assert estimates.shape == (1, 8000) and torch.isfinite(estimates).all()
    assert len(lines) == 1, lines
    assert lines[0].startswith("notice: m1: the lips explain few frames")
    assert "speaker 1: 0 %" in lines[0]


def test_noise_runaway_notice():
    from lobes.models.mcem import MCEM, MCEMResult
    from lobes.separation_mcem.methods import AVMixture, _notices

    items = [AVMixture(f"m{i}", torch.zeros(10), [], 30.0) for i in range(2)]
    t = torch.zeros(2, 1, 3, 4, dtype=torch.cfloat)
    result = MCEMResult(
        t, t[:, 0], torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 1),
        torch.tensor([3, 7]), None, torch.tensor([False, True]),
        torch.tensor([[[0.9, 0.9, 0.9, 0.0]], [[0.1, 0.2, 0.9, 0.9]]]),
    )  # fmt: skip
    mask = torch.tensor([[True, True, True, False]] * 2)
    lines = []
    _notices(items, result, mask, MCEM(max_noise_growth=8.0), lines.append)
    assert lines == [
        "notice: m1: the lips explain few frames (speaker 1: 40 %); the "
        "audio-only model takes the rest",
        "notice: m1: MCEM stopped after 7 iterations: the noise model's "
        "energy grew more than 8 times relative to the speech's; the "
        "estimates use the parameters of iteration 7",
    ]


def test_still_lips_fall_back_to_the_audio_model_in_one_line(tmp_path):
    """Lips that do not move (a frozen video) are distrusted as a whole:
    the item is enhanced by the A-VAE alone, with one notice line; moving
    lips in the same batch still go through the AV-VAE."""
    from lobes.separation_mcem import AVMixture, separate_vae

    separators, lines = _separators(
        tmp_path, lips_fallback=True,
        a_vae_folder=_audio_model_run(tmp_path / "a"),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(8000, generator=generator)
    moving = torch.rand(16, 32, 32, generator=generator)
    frozen = moving[:1].expand(16, -1, -1).clone()
    items = [AVMixture("moving", audio, [moving], 30.0),
             AVMixture("frozen", audio, [frozen], 30.0)]  # fmt: skip
    both = separators.run("av_vae", items)
    assert [e.shape for e in both] == [(1, 8000), (1, 8000)]
    still = [line for line in lines if "do not move" in line]
    assert len(still) == 1 and still[0].startswith("notice: frozen:")
    alone = separators.run("av_vae", items[:1])[0]
    assert torch.allclose(alone, both[0])  # the moving item is unchanged
    audio_only = separate_vae(
        separators.fallback, separators.hparams["mcem"], items[1:],
        separators.models["av_vae"][1], 16000,
        separators._generator("a_vae"),
    )[0]  # fmt: skip
    assert torch.allclose(audio_only, both[1])
