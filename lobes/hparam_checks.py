"""Validate before work: hparam ranges, the output folder, checkpoints.

A run should stop before it builds a model, writes a folder or trains an
epoch, in one line that names what is wrong and the fix
(:class:`~lobes.errors.HparamsError` and its kin, which
:func:`lobes.errors.exit_on_user_error` prints without a traceback):

- :func:`check_override_values`: the command line's values, before the
  YAML is loaded (a value such as ``--number_of_epochs=0`` otherwise fails
  deep inside a constructor), against :data:`RULES` (positive integers,
  non-negative integers, probabilities in [0, 1], positive rates, a run
  to warm-start from, the split a run is scored on), quoting
  the recipe's effective default (:func:`effective_defaults`: the value the
  recipe YAML gives, which may differ from its fragment's default);
  :func:`check_hparams` applies the same rules to a loaded experiment;
- :func:`check_writable`: the output folder can be written, before
  anything is written;
- checkpoints are checked by :mod:`lobes.checkpoint_files`.
"""

import os
import re
import tempfile

import yaml

from lobes.errors import HparamsError, UserError


class OutputFolderError(UserError):
    """The output folder cannot be written.

    Example
    -------
    >>> isinstance(OutputFolderError("x"), UserError)
    True
    """


#: The kinds of values and what the message says of each.
KINDS = {
    "positive_int": "a positive integer",
    "nonneg_int": "an integer >= 0",
    "positive": "a number > 0",
    "nonneg": "a number >= 0",
    "probability": "a number in [0, 1]",
    "run": "a run's output folder, an exported folder or a hub id",
    "split": "valid or test",
}

#: hparam name -> kind. Names not here follow :data:`SUFFIX_RULES`.
RULES = {
    # the training loop
    "batch_size": "positive_int",
    "number_of_epochs": "positive_int",
    "num_workers": "nonneg_int",
    "n_audio_to_save": "nonneg_int",
    "lr_patience": "nonneg_int",
    "dont_halve_until_epoch": "nonneg_int",
    "steps_per_epoch": "positive_int",
    "batch_mixtures": "positive_int",
    "lr": "positive",
    "ssl_lr": "positive",
    "max_grad_norm": "positive",
    "weight_decay": "nonneg",
    "warmup_fraction": "probability",
    # the data
    "sample_rate": "positive_int",
    "input_sample_rate": "positive_int",
    "num_spks": "positive_int",
    "segment_seconds": "positive",
    "crop_seconds": "positive",
    "eval_max_seconds": "positive",
    "evaluate_on": "split",  # the split the best checkpoint is scored on
    "init_from": "run",  # the run to warm-start from (lobes.warm_start)
    # model sizes
    "encoder_channels": "positive_int",
    "encoder_kernel_size": "positive_int",
    "num_dual_path_blocks": "positive_int",
    "num_transformer_layers": "positive_int",
    "num_heads": "positive_int",
    "d_ffn": "positive_int",
    "chunk_size": "positive_int",
    "bottleneck_channels": "positive_int",
    "conv_channels": "positive_int",
    "blocks_per_repeat": "positive_int",
    "num_repeats": "positive_int",
    "nce_num_patches": "positive_int",
    "nce_embed_dim": "positive_int",
    "nce_temperature": "positive",
    "n_fft": "positive_int",
    "hop_length": "positive_int",
    "win_length": "positive_int",
    "n_mels": "positive_int",
    "latent_dim": "positive_int",
    "hidden_dim": "positive_int",
    # curricula and ramps
    "cr_ramp_epochs": "positive_int",
    "curriculum_ramp_epochs": "positive_int",
    "kl_warmup_epochs": "nonneg_int",
    "curriculum_uniform_mix": "probability",
    "grad_share_every": "nonneg_int",
    # AV-VAE: the remedies against posterior collapse, the MCEM fallback
    "prior_reconstruction_weight": "probability",
    "switch_prior": "probability",
}

#: Name endings -> kind, for names not in :data:`RULES`.
SUFFIX_RULES = (
    ("_prob", "probability"),
    ("dropout", "probability"),
    ("_weight", "nonneg"),
)


def rule_for(name):
    """The kind of value ``name`` takes, or None when it is not checked.

    Example
    -------
    >>> rule_for("batch_size"), rule_for("narrowband_prob"), rule_for("x")
    ('positive_int', 'probability', None)
    >>> rule_for("nce_weight"), rule_for("head_dropout")
    ('nonneg', 'probability')
    """
    name = str(name)
    if name in RULES:
        return RULES[name]
    for suffix, kind in SUFFIX_RULES:
        if name.endswith(suffix):
            return kind
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_fits(kind, value):
    """Whether ``value`` is of ``kind`` (see :data:`KINDS`).

    Example
    -------
    >>> value_fits("positive_int", 4), value_fits("positive_int", 2.5)
    (True, False)
    >>> value_fits("positive_int", True), value_fits("probability", 1.5)
    (False, False)
    >>> value_fits("nonneg_int", 0), value_fits("positive", 1e-4)
    (True, True)
    >>> value_fits("split", "train"), value_fits("run", "/no/such/run")
    (False, False)
    """
    if kind == "split":
        return value in ("valid", "test")
    if kind == "run":
        from lobes.runs import is_run_source

        return isinstance(value, str) and is_run_source(value)
    if kind in ("positive_int", "nonneg_int"):
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return value >= (1 if kind == "positive_int" else 0)
    if not _is_number(value) or value != value:  # NaN
        return False
    if kind == "positive":
        return value > 0 and value != float("inf")
    if kind == "nonneg":
        return value >= 0 and value != float("inf")
    if kind == "probability":
        return 0 <= value <= 1
    raise ValueError(f"unknown kind {kind!r}")


def _show(value):
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().replace(
        "\n...", ""
    )


def check_value(name, value, default=None, origin="--"):
    """Raise a one-line :class:`HparamsError` if ``value`` breaks its rule.

    Arguments
    ---------
    name : str
        The hparam.
    value : object
        Its value (None is always accepted: "not set").
    default : object, optional
        The recipe's effective default, quoted in the message.
    origin : str
        ``"--"`` for a command-line value; otherwise the YAML it comes from.

    Example
    -------
    >>> check_value("batch_size", 4, 4)
    >>> check_value("encoder_channels", [8, 16, 32], [16, 32, 64])
    >>> check_value("batch_size", 2.5, 4)
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: --batch_size=2.5: batch_size must be a positive integer (this recipe's default: 4)
    >>> check_value("lr", "abc", 0.001)
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: --lr=abc: lr must be a number > 0 (this recipe's default: 0.001)
    >>> check_value("dropout", 2, 0.1, origin="h.yaml")
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: h.yaml: dropout: 2 must be a number in [0, 1] (this recipe's default: 0.1)
    """  # noqa: E501
    kind = rule_for(name)
    shown = _show(value)  # as the user wrote it
    if isinstance(value, str) and kind is not None:
        try:
            parsed = _yaml12(value)
        except Exception:  # noqa: BLE001 - not YAML: stays a string
            parsed = value
        value = parsed if _is_number(parsed) else value
    if kind is None or value is None or value_fits(kind, value):
        return
    if isinstance(value, (list, tuple)) and value and all(
        value_fits(kind, item) for item in value
    ):
        return  # one value per layer (CMCR-Net's encoder_channels)
    given = (
        f"--{name}={shown}: {name}" if origin == "--"
        else f"{origin}: {name}: {shown}"
    )
    hint = ""
    if default is not None:
        hint = f" (this recipe's default: {_show(default)})"
    raise HparamsError(f"{given} must be {KINDS[kind]}{hint}")


class _PlainLoader(yaml.SafeLoader):
    """Reads plain values; tagged nodes (objects) become None."""


_PlainLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
_PlainLoader.add_multi_constructor(
    "tag:", lambda loader, suffix, node: None
)


def plain_values(tree):
    """``{name: value}`` of the plain scalars of nested mappings.

    Breadth-first: a name at the top level wins over the same name in an
    included fragment.

    Example
    -------
    >>> plain_values({"seed": 1, "training": {"lr": 0.1, "seed": 9},
    ...               "model": object()})
    {'seed': 1, 'lr': 0.1}
    """
    found = {}
    level = [tree]
    while level:
        deeper = []
        for mapping in level:
            for name, value in mapping.items():
                if isinstance(value, dict):
                    deeper.append(value)
                elif name not in found and (
                    value is None or isinstance(value, (bool, int, float, str))
                ):
                    found[name] = value
        level = deeper
    return {k: v for k, v in found.items() if v is not None}


def effective_defaults(hparams_file):
    """The plain values a recipe YAML gives, fragments included.

    The recipe's own values win over its fragments' defaults (a recipe
    that sets ``lr: 0.001`` in its ``training`` include has the default
    0.001, not the fragment's). Nothing is built.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(f"{folder}/loop.yaml", "w").write("lr: 0.1\\nepochs: 2\\n")
    >>> _ = open(f"{folder}/r.yaml", "w").write(
    ...     "training: !include:loop.yaml\\n  lr: 0.001\\n"
    ...     "model: !new:torch.nn.Linear [1, 1]\\n")
    >>> effective_defaults(f"{folder}/r.yaml")
    {'lr': 0.001, 'epochs': 2}
    """
    from lobes.recipe import resolved_experiment

    text = resolved_experiment(hparams_file)
    document = yaml.load(text, Loader=_PlainLoader)  # noqa: S506
    return plain_values(document if isinstance(document, dict) else {})


def _yaml12(text):
    """``text`` read as YAML 1.2, as hyperpyyaml reads overrides
    (``1e-4`` is a number there, a string for PyYAML)."""
    import ruamel.yaml

    return ruamel.yaml.YAML(typ="safe", pure=True).load(text)


class OverridesLoader(yaml.SafeLoader):
    r"""YAML 1.1's safe loader that also reads ``1e-4`` as a number.

    Command-line overrides reach the recipe as one YAML string; YAML 1.1
    (PyYAML) wants a dot in a float's mantissa, so ``--lr=1e-4`` would be
    the string ``'1e-4'``. YAML 1.2 (what HyperPyYAML reads recipes with)
    and people read it as 0.0001.

    Example
    -------
    >>> yaml.load("lr: 1e-4\nx: 1.5E+3\nname: e5", Loader=OverridesLoader)
    {'lr': 0.0001, 'x': 1500.0, 'name': 'e5'}
    """


OverridesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_overrides(text):
    r"""Command-line overrides (one YAML string) as a dictionary.

    Example
    -------
    >>> parse_overrides("lr: 1e-4\nbatch_size: 2"), parse_overrides("")
    ({'lr': 0.0001, 'batch_size': 2}, {})
    """
    return dict(yaml.load(text, Loader=OverridesLoader) or {}) if text else {}


def _flat_overrides(overrides):
    """Overrides as ``lobes.overrides`` reads them (a flag given twice:
    the last one)."""
    if isinstance(overrides, str):
        try:
            overrides = parse_overrides(overrides)
        except yaml.YAMLError:
            return {}  # lobes.overrides reports malformed overrides
    return dict(overrides or {})


def check_override_values(hparams_file, overrides, defaults=None):
    """Check command-line values before the YAML is loaded.

    Arguments
    ---------
    hparams_file : str
        The recipe YAML.
    overrides : str or dict
        As SpeechBrain's ``parse_arguments`` returns them (flat).
    defaults : dict, optional
        The effective defaults (default: :func:`effective_defaults`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r.yaml")
    >>> _ = open(path, "w").write("batch_size: 4\\nnumber_of_epochs: 20\\n")
    >>> check_override_values(path, "batch_size: 8")
    >>> check_override_values(path, "number_of_epochs: 0")
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: --number_of_epochs=0: number_of_epochs must be a positive integer (this recipe's default: 20)
    """  # noqa: E501
    overrides = _flat_overrides(overrides)
    if not any(rule_for(name) for name in overrides):
        return
    if defaults is None:
        try:
            defaults = effective_defaults(hparams_file)
        except UserError:
            defaults = {}  # lobes.overrides reports a broken YAML
    for name, value in overrides.items():
        check_value(name, value, defaults.get(name))


def check_hparams(hparams, defaults=None, origin="hyperparams"):
    """Check every plain value of a loaded experiment against the rules.

    Nested mappings (included fragments, loader options) are checked too.

    Example
    -------
    >>> check_hparams({"training": {"batch_size": 4, "lr": 0.1}})
    >>> check_hparams({"train_dataloader_opts": {"batch_size": 0}},
    ...               {"batch_size": 4}, origin="r.yaml")
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: r.yaml: batch_size: 0 must be a positive integer (this recipe's default: 4)
    """  # noqa: E501
    defaults = defaults or {}
    level = [hparams]
    while level:
        deeper = []
        for mapping in level:
            for name, value in mapping.items():
                if isinstance(value, dict):
                    deeper.append(value)
                elif value is None or isinstance(
                    value, (bool, int, float, str)
                ):
                    check_value(name, value, defaults.get(name), origin)
        level = deeper


def check_writable(folder, argument="--output_folder"):
    """Fail in one line unless ``folder`` can be written (or created).

    The one check of an output folder, for the recipes and the inference
    tools alike (:func:`lobes.inference_cli.check_output_folder`).

    Nothing is left behind: an existing folder gets a probe file, removed
    at once; a missing one is probed in its nearest existing parent.

    Example
    -------
    >>> import tempfile
    >>> check_writable(os.path.join(tempfile.mkdtemp(), "new", "run"))
    >>> path = tempfile.mkstemp()[1]
    >>> check_writable(os.path.join(path, "run"))
    Traceback (most recent call last):
    ...
    lobes.hparam_checks.OutputFolderError: ...: output folder cannot be created: ... is a file...
    """  # noqa: E501
    folder = os.path.abspath(os.path.expanduser(str(folder)))
    probe_in = folder
    while not os.path.exists(probe_in):
        parent = os.path.dirname(probe_in)
        if parent == probe_in:
            break
        probe_in = parent
    fix = f"pass {argument} a folder you can write to, or fix its permissions"
    if not os.path.isdir(probe_in):
        raise OutputFolderError(
            f"{folder}: output folder cannot be created: {probe_in} is a "
            f"file, not a folder; {fix}"
        )
    try:
        if probe_in == folder:
            fd, path = tempfile.mkstemp(prefix=".write_probe_", dir=folder)
            os.close(fd)
            os.unlink(path)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".write_probe_", dir=probe_in))
    except OSError as err:
        what = "is not writable" if probe_in == folder else (
            f"cannot be created in {probe_in}"
        )
        reason = err.strerror or type(err).__name__
        raise OutputFolderError(
            f"{folder}: output folder {what} ({reason}); {fix}"
        ) from None
