"""Bad inputs to lobes.separate, lobes.enhance and lobes.export: one line each.

Inputs shorter than the model takes are padded with a one-line notice; an
output folder that cannot be written, and a truncated checkpoint given to
the export or to ``--model``, stop the command with one line naming the
folder or file and the fix, before anything is written; no traceback, and
the files already there are untouched.
"""

import hashlib
import os
import shutil
import tempfile

import pytest
import torch

from lobes.data.audio import read_audio, write_audio
from lobes.enhance import main as enhance
from lobes.export import export_run
from lobes.export import main as export
from lobes.pretrained import ChunkedWaveformEnhancement, NoiseAwareSeparation
from lobes.runs import best_checkpoint
from lobes.separate import main as separate
from tests.recipe_runner import row_id
from tests.unit.test_export import ROWS, make_run

pytestmark = pytest.mark.usefixtures("one_thread")

#: A folder nobody may write to, root included (a read-only file system).
READ_ONLY = "/sys/kernel"


@pytest.fixture(scope="module")
def runs(recipe_runner, tmp_path_factory):
    """A NASS-SepFormer and a spectral-mask run, each with its export."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    made = {}
    for row in ROWS:
        name = row_id(row)
        if name in ("WHAM/nass_sepformer", "Voicebank/spectral_mask"):
            run = str(folder / name / "run")
            make_run(row, recipe_runner.flags(row), run)
            made[name] = (run, export_run(run, str(folder / name /
                                                   "export")).folder)
    return made


def one_line(capsys, prefix):
    """The command's stderr: exactly one line, starting with ``prefix``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


def fails_in_one_line(command, argv, capsys):
    """Run a command that must exit 2 with one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        command(argv)
    assert exit_info.value.code == 2
    return one_line(capsys, "error: ")


def digests(folder):
    """Every file under ``folder`` -> its SHA-1."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as fin:
                found[path] = hashlib.sha1(fin.read()).hexdigest()
    return found


def truncate(path, keep=300):
    """Cut a file to its first ``keep`` bytes, as a full disk would."""
    with open(path, "rb") as fin:
        data = fin.read()
    with open(path, "wb") as fout:
        fout.write(data[:keep])


def test_short_inputs_are_padded_with_a_notice(runs, tmp_path, capsys):
    separation = runs["WHAM/nass_sepformer"][1]
    enhancement = runs["Voicebank/spectral_mask"][1]
    model = NoiseAwareSeparation.from_source(separation)
    minimum = model.minimum_samples
    assert minimum > 1
    # the minimum is the model's: one sample less fails in one pass
    with pytest.raises(RuntimeError):
        model.separate_batch(torch.zeros(1, minimum - 1))
    model.separate_batch(torch.zeros(1, minimum))
    short = str(tmp_path / "short.wav")
    write_audio(short, torch.randn(minimum - 3) * 0.1, 8000)
    separate(["--model", separation, short, "--out", str(tmp_path / "sep")])
    notice = one_line(capsys, "notice: ")
    assert short in notice and f"at least {minimum} " in notice
    out = read_audio(str(tmp_path / "sep" / "short_s1.wav"))
    assert out.shape == (minimum - 3,)
    # enhancement, from a longer minimum (an STFT window)
    enhancer = ChunkedWaveformEnhancement.from_source(enhancement)
    minimum = enhancer.minimum_samples
    assert minimum > 16
    short = str(tmp_path / "tiny.wav")
    write_audio(short, torch.randn(minimum // 2) * 0.1, 16000)
    enhance(["--model", enhancement, short, "--out", str(tmp_path / "enh")])
    notice = one_line(capsys, "notice: ")
    assert f"{minimum // 2} samples" in notice
    assert f"{minimum / 16000:.4f} s" in notice
    assert read_audio(str(tmp_path / "enh" / "tiny_enhanced.wav")).shape == (
        minimum // 2,
    )
    # an input long enough: no notice
    long_enough = str(tmp_path / "ok.wav")
    write_audio(long_enough, torch.randn(minimum) * 0.1, 16000)
    enhance(["--model", enhancement, long_enough, "--out",
             str(tmp_path / "enh")])
    assert capsys.readouterr().err == ""


def _writable(folder):
    """Whether a file can be created in ``folder``."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir(READ_ONLY) or _writable(READ_ONLY),
                    reason=f"{READ_ONLY} is writable here")
def test_unwritable_output_folder_is_one_line(runs, tmp_path, capsys):
    run, exported = runs["WHAM/nass_sepformer"]
    wav = str(tmp_path / "mix.wav")
    write_audio(wav, torch.randn(800) * 0.1, 8000)
    for out in (READ_ONLY, os.path.join(READ_ONLY, "new", "out")):
        line = fails_in_one_line(separate, ["--model", exported, wav,
                                            "--out", out], capsys)
        assert out in line and "--out" in line
        line = fails_in_one_line(enhance, [
            "--model", runs["Voicebank/spectral_mask"][1], wav, "--out", out,
        ], capsys)
        assert out in line
    before = digests(run)
    line = fails_in_one_line(export, [run, os.path.join(READ_ONLY, "x")],
                             capsys)
    assert "/sys/kernel/x: output folder cannot be created" in line
    # a file where the folder should be
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    line = fails_in_one_line(export, [run, str(blocker / "export")], capsys)
    assert "is a file, not a folder" in line
    assert blocker.read_text() == "keep me"
    assert digests(run) == before


def test_truncated_checkpoint_is_named_with_the_fix(runs, tmp_path, capsys):
    run, exported = runs["WHAM/nass_sepformer"]
    copy = str(tmp_path / "run")
    shutil.copytree(run, copy)
    checkpoint = best_checkpoint(copy)
    damaged = str(checkpoint.paramfiles["separator"])
    truncate(damaged)
    before = digests(copy)
    out = str(tmp_path / "export")
    line = fails_in_one_line(export, [copy, out], capsys)
    assert damaged in line and "truncated or corrupt checkpoint" in line
    assert f"delete its checkpoint folder {checkpoint.path}" in line
    assert not os.path.exists(out)
    wav = str(tmp_path / "mix.wav")
    write_audio(wav, torch.randn(800) * 0.1, 8000)
    line = fails_in_one_line(separate, ["--model", copy, wav, "--out",
                                        str(tmp_path / "sep")], capsys)
    assert damaged in line and "delete its checkpoint folder" in line
    assert not os.path.exists(tmp_path / "sep")
    assert digests(copy) == before
    # an exported folder: export it again
    copy = str(tmp_path / "exported")
    shutil.copytree(exported, copy)
    truncate(os.path.join(copy, "masknet.ckpt"), keep=0)
    line = fails_in_one_line(separate, ["--model", copy, wav, "--out",
                                        str(tmp_path / "sep")], capsys)
    assert "masknet.ckpt: truncated or corrupt checkpoint (empty file)" in line
    assert "export the model again" in line
    enhancement = str(tmp_path / "enh_export")
    shutil.copytree(runs["Voicebank/spectral_mask"][1], enhancement)
    truncate(os.path.join(enhancement, "enhance_model.ckpt"))
    line = fails_in_one_line(enhance, ["--model", enhancement, wav, "--out",
                                       str(tmp_path / "enh")], capsys)
    assert "enhance_model.ckpt: truncated or corrupt checkpoint" in line
    assert not os.path.exists(tmp_path / "enh")
