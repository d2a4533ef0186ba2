"""Validate before work: one line for bad values, folders and checkpoints."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lobes.checkpoint_files import (
    CheckpointError,
    check_checkpoint,
    check_checkpoints,
)
from lobes.errors import HparamsError, UserError
from lobes.hparam_checks import (
    OutputFolderError,
    check_hparams,
    check_override_values,
    check_value,
    check_writable,
    effective_defaults,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SEPFORMER = os.path.join(
    REPO, "recipes", "WHAM", "separation", "hparams", "sepformer.yaml"
)
SPECTRAL = os.path.join(
    REPO, "recipes", "Voicebank", "enhance", "hparams", "spectral_mask.yaml"
)


def one_line(err):
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("override, expected", [
    ({"batch_size": 2.5},
     "--batch_size=2.5: batch_size must be a positive integer "
     "(this recipe's default: 1)"),
    ({"number_of_epochs": 0},
     "--number_of_epochs=0: number_of_epochs must be a positive integer "
     "(this recipe's default: 200)"),
    ({"num_workers": -1},  # its default is computed: none quoted
     "--num_workers=-1: num_workers must be an integer >= 0"),
    ({"lr": "abc"},
     "--lr=abc: lr must be a number > 0 (this recipe's default: 0.00015)"),
    ({"lr": 0},
     "--lr=0: lr must be a number > 0 (this recipe's default: 0.00015)"),
    ({"batch_size": True},
     "--batch_size=true: batch_size must be a positive integer"),
])
def test_bad_overrides_of_a_recipe(override, expected):
    with pytest.raises(HparamsError) as err:
        check_override_values(SEPFORMER, override)
    assert one_line(err).startswith(expected)


def test_effective_default_is_the_recipes_not_the_fragments():
    """The enhancement fragment's lr is 0.001; spectral_mask.yaml sets
    0.0005 in its include, and that is what the message quotes."""
    assert effective_defaults(SPECTRAL)["lr"] == 0.0005
    with pytest.raises(HparamsError, match=r"default: 0\.0005\)$"):
        check_override_values(SPECTRAL, "lr: abc")


def test_probabilities_and_weights():
    check_value("narrowband_prob", 0.0)
    check_value("narrowband_prob", 1)
    with pytest.raises(HparamsError, match="must be a number in"):
        check_value("narrowband_prob", 1.5)
    with pytest.raises(HparamsError, match="must be a number in"):
        check_value("encoder_dropout", -0.1)
    check_value("nce_weight", 0)
    with pytest.raises(HparamsError, match="must be a number >= 0"):
        check_value("nce_weight", -1)
    with pytest.raises(HparamsError, match="must be a number > 0"):
        check_value("lr", float("nan"))


def test_a_flag_given_twice_is_checked_as_the_last():
    with pytest.raises(HparamsError, match="--batch_size=2.5: "):
        check_override_values(SEPFORMER, "batch_size: 1\nbatch_size: 2.5")
    check_override_values(SEPFORMER, "batch_size: 2.5\nbatch_size: 1")


def test_good_overrides_and_unknown_names_pass():
    check_override_values(SEPFORMER, "batch_size: 4\nlr: 1e-4")
    check_override_values(SEPFORMER, {"lerning_rate": -1})  # not ours
    check_override_values(SEPFORMER, "")
    check_value("eval_max_seconds", None)  # null: not set
    check_value("lr", "1e-4")  # a number in YAML 1.2, as hyperpyyaml reads
    with pytest.raises(HparamsError, match="--lr=-1e-4: lr must be"):
        check_value("lr", "-1e-4")


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "recipes", "*", "*",
                                          "hparams", "*.yaml"))),
    ids=lambda p: os.path.relpath(p, os.path.join(REPO, "recipes")),
)
def test_every_recipe_default_passes(path):
    defaults = effective_defaults(path)
    assert defaults
    check_hparams(defaults, defaults, origin=path)


def test_loaded_experiment_nested_values_checked():
    hparams = {"training": {"batch_size": 4},
               "valid_dataloader_opts": {"batch_size": -2},
               "modules": {"m": torch.nn.Linear(1, 1)}}
    with pytest.raises(HparamsError) as err:
        check_hparams(hparams, {"batch_size": 4}, origin="r.yaml")
    assert one_line(err) == (
        "r.yaml: batch_size: -2 must be a positive integer "
        "(this recipe's default: 4)"
    )


def test_writable_folder(tmp_path):
    check_writable(tmp_path)
    check_writable(tmp_path / "a" / "b")
    assert sorted(os.listdir(tmp_path)) == []  # no probe left behind


def test_output_folder_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputFolderError) as err:
        check_writable(tmp_path / "f" / "run")
    assert "is a file" in one_line(err)
    assert "--output_folder" in one_line(err)


def test_read_only_folder(tmp_path, monkeypatch):
    """A read-only file system (EROFS) is reported in one line; root
    ignores permission bits, so the error is simulated."""
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    monkeypatch.setattr("tempfile.mkdtemp", refuse)
    with pytest.raises(OutputFolderError) as err:
        check_writable(tmp_path)
    assert one_line(err) == (
        f"{tmp_path}: output folder is not writable (Read-only file "
        "system); pass --output_folder a folder you can write to, or fix "
        "its permissions"
    )
    with pytest.raises(OutputFolderError, match="cannot be created in"):
        check_writable(tmp_path / "new")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_permissions(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputFolderError, match="not writable"):
            check_writable(folder)
    finally:
        folder.chmod(0o755)


def make_checkpoint(save_folder, name, end_of_epoch=True):
    from speechbrain.utils.checkpoints import Checkpointer

    model = torch.nn.Linear(64, 64)
    checkpointer = Checkpointer(str(save_folder),
                                recoverables={"model": model})
    ckpt = checkpointer.save_checkpoint(name=name, end_of_epoch=end_of_epoch)
    return ckpt.path


def test_whole_checkpoints_pass(tmp_path):
    first = make_checkpoint(tmp_path, "CKPT+1")
    second = make_checkpoint(tmp_path, "CKPT+2")
    assert check_checkpoints(tmp_path) == [str(first), str(second)]
    assert check_checkpoints(tmp_path / "missing") == []


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_damaged_checkpoint_named_with_fix(tmp_path, damage):
    make_checkpoint(tmp_path, "CKPT+1")
    bad = make_checkpoint(tmp_path, "CKPT+2")
    path = os.path.join(bad, "model.ckpt")
    data = open(path, "rb").read()
    with open(path, "wb") as fout:
        if damage == "truncate":
            fout.write(data[: len(data) // 2])
        elif damage == "garbage":
            fout.write(b"PK\x03\x04" + b"\x00" * 50)
    before = {p: open(p, "rb").read() for p in glob.glob(f"{tmp_path}/*/*")}
    with pytest.raises(CheckpointError) as err:
        check_checkpoints(tmp_path)
    line = one_line(err)
    assert line.startswith(f"{path}: truncated or corrupt checkpoint (")
    assert line.endswith(
        f"delete the folder {bad} to resume from the checkpoint before it, "
        "or pass another --output_folder"
    )
    after = {p: open(p, "rb").read() for p in glob.glob(f"{tmp_path}/*/*")}
    assert after == before  # nothing touched


def test_checkpoint_meta_and_unfinished_save(tmp_path):
    ckpt = make_checkpoint(tmp_path, "CKPT+1")
    (ckpt / "CKPT.yaml").write_text("[unclosed")
    with pytest.raises(CheckpointError, match="CKPT.yaml: truncated"):
        check_checkpoint(ckpt)
    (ckpt / "CKPT.yaml").unlink()
    with pytest.raises(CheckpointError, match="without CKPT.yaml"):
        check_checkpoint(ckpt)


def test_exit_on_user_error_prints_one_line(tmp_path):
    """As a recipe reports them: one line on stderr, status 2."""
    script = textwrap.dedent(f"""
        from lobes.errors import exit_on_user_error
        from lobes.hparam_checks import check_override_values

        @exit_on_user_error
        def main():
            check_override_values({SEPFORMER!r}, "batch_size: 2.5")

        main()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --batch_size=2.5: batch_size must be a positive integer "
        "(this recipe's default: 1)"
    ]


def test_error_types_are_user_errors():
    assert issubclass(OutputFolderError, UserError)
    assert issubclass(CheckpointError, UserError)
