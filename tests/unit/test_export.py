"""lobes.export: every recipe's model, exported, loads with SpeechBrain.

A *run folder* here is what ``train.py`` writes, made without training:
the recipe YAML loaded with its row's debug flags from
``tests/recipes/<Dataset>.csv`` (exactly as ``train.py`` loads it), its
``hyperparams.yaml`` written the way SpeechBrain writes it, and its
checkpointer's checkpoint saved. Exporting it and loading the export with
SpeechBrain's own classes must give the training model's outputs. The
end-to-end versions (a real debug run, then the export) are in
``test_separation_inference.py`` (SepFormer) and at the end of this file
(Voicebank Conv-TasNet).
"""

import argparse
import csv
import datetime
import os
import shlex
import shutil

import pytest
import speechbrain as sb
import torch
import yaml
from speechbrain.inference.enhancement import WaveformEnhancement
from speechbrain.inference.separation import SepformerSeparation

from lobes.brains.enhancement import load_reference_model, reference_model_for
from lobes.data.audio import read_audio, write_audio
from lobes.errors import ModelSourceError, UserError
from lobes.export import export_run, hub_id, main
from lobes.overrides import load_hparams, route_overrides
from lobes.pretrained import ChunkedWaveformEnhancement, NoiseAwareSeparation
from lobes.runs import load_trained_run
from tests.recipe_runner import REPO, load_rows, row_id

ROWS = [
    row for row in load_rows()
    if row["Task"] in ("Separation", "Enhancement")
]
#: Which output the fake runs' noise tracker makes the noise (PIT runs).
TRACKED_NOISE = 1


pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(row, flags, folder):
    """A run folder of the row's recipe (untrained weights), like train.py.

    Returns
    -------
    model : torch.nn.Module
        The training model (``separator`` or ``enhance_model``), eval mode.
    experiment : dict
        The loaded experiment.
    """
    hparams_file = os.path.join(REPO, row["Hparam_file"])
    argv = [hparams_file, *shlex.split(flags), f"--output_folder={folder}"]
    _, _, overrides = sb.parse_arguments(argv)
    overrides = yaml.safe_load(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hparams = load_hparams(hparams_file, overrides)
    experiment = hparams.get("experiment", hparams)
    # The saved YAML names an SSL model nobody can load: exporting must not
    # build it (nor anything else of the training YAML).
    if "ssl_source" in overrides:
        overrides["ssl_source"] = "/nonexistent/ssl_model"
    with open(hparams_file, encoding="utf-8") as fin:
        resolved = _resolve(fin, route_overrides(hparams_file, overrides))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as fout:
        fout.write(f"# Generated {datetime.date.today()} from:\n"
                   f"# {hparams_file}\n# yamllint disable\n{resolved}")
    tracker = (experiment.get("objectives") or {}).get("noise_tracker")
    if tracker is not None and len(tracker.counts) > TRACKED_NOISE:
        tracker.counts.zero_()
        tracker.counts[TRACKED_NOISE] = 9
        tracker.counts[0] = 1
    experiment["checkpointer"].save_checkpoint(meta={"loss": 1.0})
    name = "separator" if "separator" in experiment["modules"] else (
        "enhance_model"
    )
    return experiment["modules"][name].eval(), experiment


def _resolve(stream, overrides):
    """The YAML text SpeechBrain's create_experiment_directory writes."""
    from hyperpyyaml import resolve_references

    return resolve_references(stream, overrides).getvalue()


def expected_noise_index(row, experiment):
    """The noise output the export must name."""
    separator = experiment["modules"]["separator"]
    if not separator.noise_output:
        return None
    if experiment["objectives"]["noise_slot"] == "fixed":
        return separator.num_outputs - 1
    return TRACKED_NOISE


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_recipe_exports_to_speechbrain_classes(row, recipe_runner,
                                               tmp_path):
    model, experiment = make_run(row, recipe_runner.flags(row),
                                 str(tmp_path / "run"))
    exported = export_run(str(tmp_path / "run"), str(tmp_path / "export"))
    with open(tmp_path / "export" / "hyperparams.yaml") as fin:
        inference_yaml = fin.read()
    for training_only in ("patch_nce", "contrastive_loss",
                          "contrastive_regularization", "ssl", "optimizer",
                          "checkpointer", "dataloader", "/nonexistent"):
        assert training_only not in inference_yaml.lower()
    torch.manual_seed(0)
    if exported.kind == "separation":
        assert sorted(exported.files) == [
            "README.md", "decoder.ckpt", "encoder.ckpt", "hyperparams.yaml",
            "masknet.ckpt",
        ]
        # SpeechBrain classes only: loading needs nothing of this package.
        assert ":lobes." not in inference_yaml
        loaded = SepformerSeparation.from_hparams(
            source=exported.folder, savedir=str(tmp_path / "sb")
        )
        assert loaded.hparams.num_spks == model.num_outputs
        assert loaded.hparams.noise_index == expected_noise_index(
            row, experiment
        )
        mix = torch.randn(2, 800) * 0.1
        expected = model(mix).waveforms
        assert torch.allclose(loaded.separate_batch(mix), expected,
                              atol=1e-5)
    else:
        assert sorted(exported.files) == [
            "README.md", "custom.py", "enhance_model.ckpt",
            "hyperparams.yaml",
        ]
        loaded = WaveformEnhancement.from_hparams(
            source=exported.folder, savedir=str(tmp_path / "sb")
        )
        noisy = torch.randn(2, 3200) * 0.1
        assert torch.allclose(loaded.enhance_batch(noisy), model(noisy),
                              atol=1e-5)
        path = str(tmp_path / "noisy.wav")
        write_audio(path, noisy[0], 16000, subtype="FLOAT")
        enhanced = loaded.enhance_file(path)
        assert torch.allclose(enhanced, model(read_audio(path)[None])[0],
                              atol=1e-5)
    recipe = os.path.splitext(os.path.basename(row["Hparam_file"]))[0]
    assert exported.hub_id == hub_id(recipe, row["Dataset"],
                                     experiment.get("num_spks", 2))


@pytest.fixture(scope="module")
def nass_export(recipe_runner, tmp_path_factory):
    """A WHAM! NASS-SepFormer run with test results, and its export."""
    row = next(r for r in ROWS
               if row_id(r) == "WHAM/nass_sepformer")
    folder = tmp_path_factory.mktemp("nass")
    model, _ = make_run(row, recipe_runner.flags(row), str(folder / "run"))
    with open(folder / "run" / "test_results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i",
                         "noise_si-snr"])
        writer.writerow(["a", 1.0, 2.0, 3.0, 4.0, 5.0])
        writer.writerow(["b", 3.0, 4.0, 5.0, 6.0, 7.0])
        writer.writerow(["avg", 2.0, 3.0, 4.0, 5.0, 6.0])
    export_run(str(folder / "run"), str(folder / "export"))
    return str(folder / "run"), str(folder / "export"), model


def test_model_card_follows_the_hub_convention(nass_export):
    _, export, _ = nass_export
    with open(os.path.join(export, "README.md")) as fin:
        card = fin.read()
    front, body = card.split("---\n", 2)[1:]
    metadata = yaml.safe_load(front)
    assert metadata["library_name"] == "speechbrain"
    assert metadata["datasets"] == ["WHAM!"]
    assert "SI-SNRi" in metadata["metrics"]
    assert "noise-robust-sb/nass-sepformer-wham" in body
    assert "to be published" in body
    assert "SepformerSeparation.from_hparams(" in body
    # the results: means over the two utterances, the avg row left out
    assert "| WHAM! test | 2 | 5.00 | 3.00 | 4.00 | 2.00 | 6.00 |" in body
    assert "mini WHAM! corpus (tiny)" in body and "seed 1234" in body
    assert "can run code" in body


def test_training_folder_export_and_hub_id_load_alike(nass_export, tmp_path,
                                                      monkeypatch):
    run, export, model = nass_export
    mixture = torch.randn(4000) * 0.1
    # the training folder and the exported folder: the same model
    from_run = NoiseAwareSeparation.from_source(run)
    from_export = NoiseAwareSeparation.from_source(export)
    assert from_run.noise_index == from_export.noise_index == TRACKED_NOISE
    result = from_export.separate(mixture)
    assert torch.allclose(result["speakers"],
                          from_run.separate(mixture)["speakers"], atol=1e-6)
    outputs = model(mixture[None]).waveforms[0]
    assert torch.allclose(result["noise"], outputs[:, TRACKED_NOISE],
                          atol=1e-5)
    # a hub id, served from the local hub cache, offline
    import huggingface_hub.constants as hub_constants

    repo = "noise-robust-sb/nass-sepformer-wham"
    cache = tmp_path / "hub"
    revision = "0" * 40
    snapshot = cache / "models--noise-robust-sb--nass-sepformer-wham"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(revision)
    shutil.copytree(export, snapshot / "snapshots" / revision)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from_hub = NoiseAwareSeparation.from_source(repo)
    assert torch.allclose(from_hub.separate(mixture)["noise"],
                          result["noise"], atol=1e-6)
    run_from_hub = load_trained_run(repo, ["separator"])
    assert run_from_hub.checkpoint.meta == {"source": repo}
    # SpeechBrain's own class takes the hub id too
    loaded = SepformerSeparation.from_hparams(source=repo,
                                              savedir=str(tmp_path / "sb"))
    assert loaded.separate_batch(mixture[None]).shape == (1, 4000, 3)


def test_unreachable_hub_id_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError) as err:
        load_trained_run("noise-robust-sb/not-cached", ["separator"])
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert message.endswith("--model <local folder>")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("lobes.ssl_features._hub_reachable", lambda: False)
    with pytest.raises(ModelSourceError, match="cannot be reached"):
        NoiseAwareSeparation.from_source("noise-robust-sb/not-cached")


def test_checkpoints_load_as_weights_only(nass_export, tmp_path):
    _, export, _ = nass_export
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    torch.save({"weight": argparse.Namespace(code="not a tensor")},
               copy / "encoder.ckpt")
    with pytest.raises(ModelSourceError, match="not a plain weights file"):
        load_trained_run(str(copy), ["separator"])


def test_export_cli_and_its_one_line_errors(nass_export, tmp_path, capsys):
    run, export, _ = nass_export
    exported = main([run, str(tmp_path / "out"), "--hub_id=me/my-model"])
    out = capsys.readouterr().out
    assert "me/my-model" in out and "SepformerSeparation" in out
    assert exported.hub_id == "me/my-model"
    for argv in ([run, str(tmp_path / "out")],  # not empty
                 [str(tmp_path / "none"), str(tmp_path / "o2")],
                 [export, str(tmp_path / "o3")]):  # not a training run
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    with pytest.raises(UserError, match="overlap"):
        export_run(run, str(tmp_path / "o4"), chunk_seconds=1.0,
                   overlap_seconds=1.0)


def test_hub_ids_in_the_recipe_csvs_and_readmes():
    for row in ROWS:
        recipe = os.path.splitext(os.path.basename(row["Hparam_file"]))[0]
        assert row["HF_repo"] == hub_id(recipe, row["Dataset"])
        for readme in ("README.md", row["Readme_file"]):
            with open(os.path.join(REPO, readme)) as fin:
                assert row["HF_repo"] in fin.read(), (readme, row["HF_repo"])


@pytest.fixture(scope="module")
def enhancement_export(recipe_runner, tmp_path_factory):
    """The Voicebank Conv-TasNet recipe's debug run, exported."""
    ok, message = recipe_runner.run("Voicebank/convtasnet")
    assert ok, message
    run = os.path.join(recipe_runner.output_root, "Voicebank", "convtasnet")
    export = str(tmp_path_factory.mktemp("enh") / "export")
    export_run(run, export)
    return run, export


@pytest.mark.recipe
def test_debug_run_exports_to_waveform_enhancement(enhancement_export,
                                                   tmp_path):
    run, export = enhancement_export
    trained = load_trained_run(run, ["enhance_model"]).modules[
        "enhance_model"
    ]
    loaded = WaveformEnhancement.from_hparams(source=export,
                                              savedir=str(tmp_path / "sb"))
    noisy = torch.randn(1, 16000) * 0.1
    assert torch.allclose(loaded.enhance_batch(noisy), trained(noisy),
                          atol=1e-5)
    # CCR's reference model: the exported folder, through the same loader
    reference = load_reference_model(export)
    assert torch.allclose(reference(noisy), trained(noisy), atol=1e-5)
    assert not any(p.requires_grad for p in reference.parameters())
    assert reference.checkpoint_path == export
    experiment = {"objectives": {"cr_negatives": ["noisy", "reference"],
                                 "cr_weight": 1.0, "reference_model": export}}
    assert reference_model_for(experiment) is not None
    # the package's class: chunked, long files equal one pass where short
    chunked = ChunkedWaveformEnhancement.from_source(export,
                                                     chunk_seconds=0.5,
                                                     overlap_seconds=0.1)
    short = noisy[0, :4000]
    assert torch.allclose(chunked.enhance(short), trained(short[None])[0],
                          atol=1e-5)
    assert chunked.enhance(noisy[0]).shape == (16000,)


@pytest.mark.recipe
def test_enhance_cli_on_a_folder(enhancement_export, tmp_path, capsys):
    from lobes.enhance import main as enhance

    _, export = enhancement_export
    inputs = tmp_path / "in"
    write_audio(str(inputs / "a.wav"), torch.randn(8000) * 0.1, 16000)
    write_audio(str(inputs / "b.wav"), torch.randn(4000) * 0.1, 8000)
    enhance(["--model", export, str(inputs), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert sorted(os.listdir(tmp_path / "out")) == [
        "a_enhanced.wav", "b_enhanced.wav"
    ]
    assert "resampling" in captured.err and "b.wav" in captured.err
    assert len(read_audio(str(tmp_path / "out" / "b_enhanced.wav"),
                          16000)) == 8000
    with pytest.raises(SystemExit):
        enhance(["--model", export, str(tmp_path / "none.wav"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'none.wav'}: no such file or folder"]
