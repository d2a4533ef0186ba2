"""The recipe command line: hparams loading, routing into fragments, and
one-line user errors (while bugs keep their tracebacks)."""

import os
import subprocess
import sys

import pytest

from lobes.errors import DataFolderError, HparamsError
from lobes.overrides import load_hparams, route_overrides
from lobes.recipe import (
    choose,
    cpu_workers,
    load_recipe,
    resolve_data_folder,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
WHAM_YAML = os.path.join(
    REPO, "recipes", "WHAM", "separation", "hparams", "nass_sepformer.yaml"
)
VOICEBANK_YAML = os.path.join(
    REPO, "recipes", "Voicebank", "enhance", "hparams", "convtasnet.yaml"
)


@pytest.fixture
def recipe_yaml(tmp_path):
    fragment = tmp_path / "fragment.yaml"
    fragment.write_text("hidden_size: 8\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "seed: 3\n"
        "learning_rate: 0.001\n"
        "shared: !include:fragment.yaml\n"
        "  hidden_size: 8\n"
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


def test_command_line_reaches_an_included_fragment(recipe_yaml):
    hparams, *_ = load_recipe([str(recipe_yaml), "--hidden_size=5"])
    assert hparams["model"].in_features == 5
    assert hparams["shared"]["hidden_size"] == 5


def test_encoder_channels_reach_the_recipes_included_backbone():
    """--encoder_channels=16 reaches hparams/separation/sepformer.yaml,
    the recipe's backbone, and everything built from it."""
    sizes = {"num_transformer_layers": 1, "d_ffn": 16, "num_heads": 2,
             "nce_num_patches": 4, "nce_embed_dim": 4}
    hparams = load_hparams(WHAM_YAML, {"encoder_channels": 16, **sizes})
    separator = hparams["separator"]
    assert separator.encoder.conv1d.out_channels == 16
    assert hparams["backbone"]["encoder_channels"] == 16
    assert hparams["objectives"]["patch_nce"].channels == 16
    assert separator.num_outputs == 3  # noise_aware: N + 1


def test_routing_goes_to_the_shallowest_declaration():
    routed = route_overrides(
        VOICEBANK_YAML,
        {"lr": 0.01, "encoder_channels": 8, "cr_weight": 0.5,
         "data_folder": "x"},
    )
    assert routed == {
        "training": {"lr": 0.01},
        "backbone": {"encoder_channels": 8},
        "objectives": {"cr_weight": 0.5},
        "data_folder": "x",
    }


def test_wrong_type_is_one_line():
    with pytest.raises(HparamsError) as err:
        route_overrides(VOICEBANK_YAML, {"batch_size": "eight"})
    assert "--batch_size='eight' has the wrong type" in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_mistakes_are_one_line_but_bugs_keep_their_traceback(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: !new:torch.nn.Linear\n  in_feature: 3\n"
                    "  out_features: 2\n")
    with pytest.raises(HparamsError, match="Invalid argument to class"):
        load_hparams(str(typo))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model: !new:torch.nn.Lineer\n  in_features: 3\n")
    with pytest.raises(HparamsError, match="Lineer"):
        load_hparams(str(unknown))
    # A constructor of the package that raises: its own error, traceback
    # kept (an AssertionError is no user mistake).
    bug = tmp_path / "bug.yaml"
    bug.write_text(
        "x: !apply:lobes.recipe.choose\n  choice: 1\n  options: null\n"
    )
    with pytest.raises(TypeError) as err:
        load_hparams(str(bug))
    assert not isinstance(err.value, HparamsError)


def test_choose_and_cpu_workers():
    assert choose("b", {"a": 1, "b": 2}) == 2
    with pytest.raises(HparamsError, match="one of: a, b"):
        choose("c", {"a": 1, "b": 2})
    assert cpu_workers(0) == 0
    assert cpu_workers(10**6) == len(os.sched_getaffinity(0))


def test_wired_and_aliased_parameters_route_to_their_fragment():
    """A parameter that a recipe wires from another fragment (``!ref``) or
    repeats at its top has one route, and the value reaches every use."""
    recipes = os.path.join(REPO, "recipes")
    joint = os.path.join(recipes, "Voicebank", "ASR", "hparams",
                         "ctc_joint.yaml")
    assert route_overrides(joint, {"ssl_source": "x"}) == {
        "ssl": {"ssl_source": "x"}
    }
    av = os.path.join(recipes, "NTCD-TIMIT", "av_separation", "hparams",
                      "av_vae.yaml")
    hparams = load_hparams(av, {"latent_dim": 3, "n_fft": 64})
    assert hparams["audio_model"]["vae"].latent_dim == 3
    assert hparams["visual_model"]["vae"].latent_dim == 3
    assert hparams["num_freqs"] == 33
    cmcr = os.path.join(recipes, "Voicebank", "enhance", "hparams",
                        "cmcr_net.yaml")
    assert route_overrides(cmcr, {"branch_pull_weight": 0.5}) == {
        "backbone": {"branch_pull_weight": 0.5}
    }


def test_exponent_floats_on_the_command_line_are_numbers():
    """``--lr=1e-4`` is 0.0001 (YAML 1.1 alone would read a string)."""
    from lobes.recipe import load_recipe

    yaml_path = os.path.join(
        REPO, "recipes", "WHAM", "separation", "hparams", "sepformer.yaml"
    )
    hparams, _, _, _ = load_recipe([yaml_path, "--lr=1e-4"])
    assert hparams["training"]["lr"] == 0.0001
