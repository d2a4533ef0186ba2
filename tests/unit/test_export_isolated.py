"""Exports load with SpeechBrain alone, where this package is not installed.

One separation and three enhancement runs (one per enhancer class:
Conv-TasNet masking, spectral mask, CMCR-Net) are made as in
``test_export.py``, exported, and loaded in a subprocess that cannot import
``lobes``: ``python -I -S`` (no ``PYTHONPATH``, no current folder, no
``.pth`` files, so not the editable install either) with only the
site-packages folder on ``sys.path``, run from an empty folder. The
subprocess checks that ``import lobes`` fails, loads each folder with
SpeechBrain's classes (``SepformerSeparation.from_hparams``; for
enhancement ``foreign_class`` with the shipped ``custom.py``, which returns
SpeechBrain's ``WaveformEnhancement``) and saves their outputs; they must
equal the training models' on the same inputs.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch

from lobes.custom_module import CUSTOM_MODULE_FILE
from lobes.data.audio import write_audio
from lobes.export import export_run
from lobes.pretrained import NoiseAwareSeparation
from tests.recipe_runner import row_id
from tests.unit.test_export import ROWS, TRACKED_NOISE, make_run

EXPORTS = ["WHAM/nass_sepformer", "Voicebank/convtasnet",
           "Voicebank/spectral_mask", "Voicebank/cmcr_net"]

ISOLATED = textwrap.dedent("""
    import sys
    sys.path.append({site!r})
    try:
        import lobes
    except ImportError:
        pass
    else:
        raise SystemExit("lobes is importable: " + str(lobes.__path__))
    import torch
    from speechbrain.inference.interfaces import foreign_class
    from speechbrain.inference.separation import SepformerSeparation

    inputs = torch.load({inputs!r})
    outputs = {{}}
    # separation first: its load must need no module of the package
    for name, (kind, folder, batch) in sorted(
            inputs.items(), key=lambda item: item[1][0] != "separation"):
        savedir = {savedir!r} + "/" + name.replace("/", "_")
        if kind == "separation":
            model = SepformerSeparation.from_hparams(source=folder,
                                                     savedir=savedir)
            outputs[name] = model.separate_batch(batch)
            outputs[name + ":file"] = model.separate_file({wav!r})
        else:
            model = foreign_class(source=folder,
                                  pymodule_file={custom!r},
                                  classname="WaveformEnhancement",
                                  savedir=savedir)
            assert type(model).__module__ == (
                "speechbrain.inference.enhancement"), type(model)
            outputs[name] = model.enhance_batch(batch)
        outputs[name + ":lobes"] = sorted(
            m for m in sys.modules if m.split(".")[0] == "lobes"
        )
    assert all(getattr(sys.modules[m], "_from_custom_py", False)
               for m in sys.modules if m.split(".")[0] == "lobes")
    torch.save(outputs, {outputs!r})
    print("isolated: lobes not importable; loaded", sorted(inputs))
""")


@pytest.fixture(scope="module")
def exports(recipe_runner, tmp_path_factory):
    """The four runs, exported: name -> (kind, folder, training model)."""
    folder = tmp_path_factory.mktemp("isolated")
    made = {}
    for row in ROWS:
        name = row_id(row)
        if name not in EXPORTS:
            continue
        model, _ = make_run(row, recipe_runner.flags(row),
                            str(folder / name / "run"))
        exported = export_run(str(folder / name / "run"),
                              str(folder / name / "export"))
        made[name] = (exported, model)
    assert sorted(made) == sorted(EXPORTS)
    return made


@pytest.mark.usefixtures("one_thread")
def test_exports_load_with_speechbrain_alone(exports, tmp_path):
    torch.manual_seed(0)
    inputs = {}
    for name, (exported, _) in exports.items():
        if exported.kind == "separation":
            assert CUSTOM_MODULE_FILE not in exported.files
            inputs[name] = (exported.kind, exported.folder,
                            torch.randn(2, 800) * 0.1)
        else:
            assert CUSTOM_MODULE_FILE in exported.files
            inputs[name] = (exported.kind, exported.folder,
                            torch.randn(2, 3200) * 0.1)
            with open(os.path.join(exported.folder, "README.md")) as fin:
                card = fin.read()
            assert "foreign_class(" in card
            assert f'pymodule_file="{CUSTOM_MODULE_FILE}"' in card
    wav = str(tmp_path / "mix.wav")
    write_audio(wav, torch.randn(1200) * 0.1, 8000, subtype="FLOAT")
    torch.save(inputs, tmp_path / "inputs.pt")
    empty = tmp_path / "cwd"
    empty.mkdir()
    code = ISOLATED.format(
        site=sysconfig.get_paths()["purelib"], inputs=str(tmp_path /
                                                          "inputs.pt"),
        savedir=str(tmp_path / "sb"), wav=wav, custom=CUSTOM_MODULE_FILE,
        outputs=str(tmp_path / "outputs.pt"),
    )
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", SB_LOG_LEVEL="ERROR")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code],
                          cwd=str(empty), env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "isolated: lobes not importable" in proc.stdout
    outputs = torch.load(tmp_path / "outputs.pt")
    for name, (exported, model) in exports.items():
        batch = inputs[name][2]
        with torch.no_grad():
            expected = model(batch)
        if exported.kind == "separation":
            expected = expected.waveforms
            assert outputs[name + ":lobes"] == []
        else:
            assert "lobes.models" in outputs[name + ":lobes"]
        assert outputs[name].shape == expected.shape
        assert torch.allclose(outputs[name], expected, atol=1e-5), name
    # one output order: SpeechBrain's separate_file and the package's agree
    separation = exports["WHAM/nass_sepformer"][0].folder
    model = NoiseAwareSeparation.from_hparams(
        source=separation, savedir=str(tmp_path / "lobes_sb")
    )
    assert model.noise_index == TRACKED_NOISE
    ours = model.separate_file(wav)
    theirs = outputs["WHAM/nass_sepformer:file"]
    assert ours.shape == theirs.shape == (1, 1200, 3)
    assert torch.allclose(ours, theirs, atol=1e-5)
