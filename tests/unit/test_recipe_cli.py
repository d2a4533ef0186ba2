"""The recipe command line: hparams loading and one-line user errors."""

import subprocess
import sys

import pytest

from lobes.errors import DataFolderError, HparamsError
from lobes.recipe import load_hparams, load_recipe, resolve_data_folder


@pytest.fixture
def recipe_yaml(tmp_path):
    fragment = tmp_path / "fragment.yaml"
    fragment.write_text("hidden_size: 8\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "seed: 3\n"
        "learning_rate: 0.001\n"
        "shared: !include:fragment.yaml\n"
        "model: !new:torch.nn.Linear\n"
        "  in_features: !ref <shared[hidden_size]>\n"
        "  out_features: 2\n"
    )
    return path


def test_overrides_apply(recipe_yaml):
    hparams = load_hparams(str(recipe_yaml), "learning_rate: 0.5")
    assert hparams["learning_rate"] == 0.5
    assert hparams["model"].in_features == 8


def test_override_typo_suggests_the_key(recipe_yaml):
    with pytest.raises(HparamsError) as err:
        load_recipe([str(recipe_yaml), "--lerning_rate=0.1"])
    message = str(err.value)
    assert "lerning_rate" in message and "'learning_rate'" in message
    assert "\n" not in message


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(HparamsError) as err:
        load_hparams(str(path))
    assert str(path) in str(err.value)


def test_missing_hparams_file(tmp_path):
    with pytest.raises(HparamsError, match="no such hparams file"):
        load_hparams(str(tmp_path / "nope.yaml"))


def test_missing_data_folder_names_the_flag(tmp_path):
    with pytest.raises(DataFolderError, match="--data_folder"):
        resolve_data_folder(str(tmp_path / "absent"), "wham")


def test_entry_point_prints_one_line(tmp_path):
    script = tmp_path / "entry.py"
    script.write_text(
        "from lobes.errors import exit_on_user_error, HparamsError\n"
        "@exit_on_user_error\n"
        "def main():\n"
        "    raise HparamsError('x.yaml: bad\\nthing')\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: x.yaml: bad thing"]
