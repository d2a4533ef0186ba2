"""Load what a finished recipe run trained: the package's one run loader.

:func:`load_trained_run` takes any of three sources, told apart here:

- a **training run folder**, what ``python train.py hparams/<name>.yaml``
  writes under its ``output_folder``: ``hyperparams.yaml`` (the recipe YAML
  with its fragments inlined and the overrides applied) and ``save/CKPT+*``
  (SpeechBrain checkpoints, one ``<module>.ckpt`` per module). The models
  are rebuilt from the whole training YAML and the checkpoint of lowest
  validation loss is loaded into them;
- an **exported folder**, written by ``python -m lobes.export``:
  SpeechBrain's pretrained layout, an inference-only ``hyperparams.yaml``
  with a ``pretrainer`` and one ``<module>.ckpt`` per module (no ``save/``);
- a **hub id** (``owner/name``) of such a folder on the Hugging Face hub,
  read from the local hub cache when it is there (so it works offline),
  else downloaded when the hub answers.

Exported folders and hub ids go through SpeechBrain's own fetching and
``Pretrainer`` (the files ``from_hparams`` would collect), and every
checkpoint is read with ``torch.load(..., weights_only=True)``. Separation
inference (:mod:`lobes.pretrained`, :mod:`lobes.separate`), enhancement
inference (:mod:`lobes.enhance`), the export (:mod:`lobes.export`),
curricular CR's reference model (:mod:`lobes.objectives`) and the AV
recipe's VAEs and separators (:mod:`lobes.separation_mcem.loading`) all
load through it.

Loading a YAML can run code (``!apply:``, ``!new:``): load only folders and
hub repositories you trust.
"""

import math
import os
import pathlib
import pickle
import re
import textwrap
from typing import NamedTuple

import torch
from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.fetching import FetchConfig, fetch

from lobes.checkpoint_files import check_checkpoint_file, torch_file_problem
from lobes.errors import ModelSourceError, UserError
from lobes.models.noise_aware import NoiseAwareSeparator
from lobes.overrides import load_hparams
from lobes.ssl_features import _hub_reachable, _looks_like_path

#: The file an exported folder's (and a training run's) models come from.
HPARAMS_FILE = "hyperparams.yaml"


class TrainedRun(NamedTuple):
    """A loaded run.

    Attributes
    ----------
    hparams : dict
        The whole ``hyperparams.yaml``.
    experiment : dict
        The hparams themselves (a recipe YAML wires its experiment at its
        top level); for a run made before that, its ``experiment``
        namespace.
    modules : dict
        Name -> module with the checkpoint's weights, in eval mode.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The checkpoint loaded; for an exported folder or hub id, its local
        folder, ``meta`` ``{"source": <what was asked for>}`` and one
        ``paramfiles`` entry per module.
    """

    hparams: dict
    experiment: dict
    modules: dict
    checkpoint: object


def best_checkpoint(folder):
    """The checkpoint of lowest validation ``loss`` in ``<folder>/save``.

    A checkpoint without a loss (e.g. saved mid-epoch) is taken only when
    none has one; then the most recent.

    Raises
    ------
    ModelSourceError
        One line, when there is no checkpoint.

    Example
    -------
    >>> best_checkpoint("/no/such/run")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run/save: no checkpoint; ...
    """
    save = os.path.join(folder, "save")
    checkpoints = []
    if os.path.isdir(save):
        checkpoints = Checkpointer(save).list_checkpoints()
    if not checkpoints:
        raise ModelSourceError(
            f"{save}: no checkpoint; train the recipe to the end of an "
            "epoch (with --debug add --debug_persistently)"
        )
    with_loss = [c for c in checkpoints if "loss" in c.meta]
    if with_loss:
        return min(with_loss, key=lambda c: c.meta.get("loss", math.inf))
    return max(checkpoints, key=lambda c: c.meta.get("unixtime", 0))


def load_state(module, checkpoint, name):
    """Load ``<name>.ckpt`` of a checkpoint into ``module`` (weights only).

    Raises
    ------
    ModelSourceError
        One line, when the file is missing or does not fit the module.
    """
    path = checkpoint.paramfiles.get(name)
    if path is None or not os.path.isfile(path):
        raise ModelSourceError(
            f"{checkpoint.path}: no {name}.ckpt in this checkpoint; is this "
            "the right kind of run folder?"
        )
    load_state_file(module, path)


def read_state_file(path):
    """A checkpoint file's state dict, read with ``weights_only=True``.

    Raises
    ------
    ModelSourceError
        One line, when the file holds anything but tensors and plain
        containers (``weights_only`` refuses to unpickle code).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.ckpt")
    >>> torch.save({"w": torch.ones(2)}, path)
    >>> read_state_file(path)
    {'w': tensor([1., 1.])}
    >>> torch.save({"w": ModelSourceError("x")}, path)
    >>> read_state_file(path)
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ...m.ckpt: not a plain weights file ...
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        damage = torch_file_problem(path)
        if damage is not None:
            raise ModelSourceError(
                f"{path}: truncated or corrupt checkpoint ({damage}); delete "
                "it (for a training run: its CKPT+ folder, so that the next "
                "best checkpoint is used) or point to an earlier checkpoint"
            ) from None
        first = textwrap.shorten(" ".join(str(err).split()), 120,
                                 placeholder=" ...")
        raise ModelSourceError(
            f"{path}: not a plain weights file ({type(err).__name__}: "
            f"{first}); load only checkpoints you trust, re-export the model"
        ) from None


def load_state_file(module, path):
    """Load the state dict in ``path`` into ``module``, strictly.

    Raises
    ------
    ModelSourceError
        One line, when the file is unreadable or does not fit the module.
    """
    state = read_state_file(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelSourceError(
            f"{path}: does not fit the model of hyperparams.yaml ({first}); "
            "the YAML and the checkpoint come from different runs"
        ) from None


def load_trained_run(folder, module_names, kind="recipe", savedir=None):
    """Load a trained model from a run folder, an exported folder or the hub.

    A training run folder (``hyperparams.yaml`` and ``save/``) is rebuilt
    from its whole YAML and its best checkpoint loaded; an exported folder
    (``hyperparams.yaml`` with a ``pretrainer``, no ``save/``) or a hub id
    builds only the inference modules of its YAML (see the module
    docstring). Loading a YAML does not change the caller's random state.

    Arguments
    ---------
    folder : str
        The run's ``output_folder``, a folder written by
        ``python -m lobes.export``, or a hub id (``owner/name``) of one.
    module_names : list of str
        The modules to load, by their names in the training YAML's
        ``modules`` (e.g. ``["separator"]``, ``["enhance_model"]``); an
        exported folder holds them under the same names (its
        ``pretrainer``'s loadables), a separator as its parts.
    kind : str
        What the run should be, for the error messages (``"separation"``,
        ``"enhancement"``).
    savedir : str, optional
        For an exported folder or hub id: where SpeechBrain links or
        downloads its files (default: none for a local folder, the hub
        cache for a hub id).

    Returns
    -------
    TrainedRun
        For an exported folder, ``hparams`` and ``experiment`` are both
        its ``hyperparams.yaml``.

    Raises
    ------
    ModelSourceError
        One line saying what is missing and what to pass instead.

    Example
    -------
    >>> load_trained_run("/no/such/run", ["separator"])
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
    """
    source = os.path.expanduser(str(folder))
    hint = (
        f"pass the output folder of a finished {kind} run (holding "
        "hyperparams.yaml and save/), a folder written by "
        "`python -m lobes.export`, or a hub id"
    )
    if os.path.isdir(source):
        if is_exported_folder(source):
            return _load_exported(source, module_names, kind, savedir)
        return _load_training_run(source, module_names, hint)
    if is_hub_id(source):
        return _load_exported(source, module_names, kind, savedir)
    raise ModelSourceError(f"{source}: no such folder; {hint}")


def is_exported_folder(folder):
    """Whether a local folder is in SpeechBrain's pretrained layout.

    That is: a ``hyperparams.yaml`` with a top-level ``pretrainer`` and no
    ``save/`` folder of training checkpoints.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> is_exported_folder(folder)
    False
    >>> _ = open(os.path.join(folder, "hyperparams.yaml"), "w").write(
    ...     "pretrainer: !new:speechbrain.utils.parameter_transfer."
    ...     "Pretrainer\\n")
    >>> is_exported_folder(folder)
    True
    """
    path = os.path.join(folder, HPARAMS_FILE)
    if os.path.isdir(os.path.join(folder, "save")) or not os.path.isfile(
        path
    ):
        return False
    with open(path, encoding="utf-8", errors="replace") as fin:
        return re.search(r"^pretrainer\s*:", fin.read(), re.M) is not None


def is_hub_id(source):
    """Whether ``source`` reads as a hub id (``owner/name``), not a path.

    Example
    -------
    >>> is_hub_id("noise-robust-sb/nass-sepformer-wham")
    True
    >>> [is_hub_id(s) for s in ("results/nass/1234", "/abs/x", "./a/b",
    ...                         "model")]
    [False, False, False, False]
    """
    return (
        source.count("/") == 1
        and not _looks_like_path(source)
        and re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None
    )


def is_run_source(source):
    """Whether ``source`` may name what :func:`load_trained_run` loads: a
    folder holding ``hyperparams.yaml`` or ``save/``, or a hub id (checked
    before a recipe builds anything; the loader says what is missing).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> is_run_source(folder), is_run_source("/no/such/run")
    (False, False)
    >>> os.mkdir(os.path.join(folder, "save"))
    >>> is_run_source(folder), is_run_source("owner/name")
    (True, True)
    """
    folder = os.path.expanduser(str(source))
    if os.path.isdir(folder):
        return any(os.path.exists(os.path.join(folder, name))
                   for name in (HPARAMS_FILE, "save"))
    return is_hub_id(str(source))


def _load_training_run(folder, module_names, hint):
    """A training run folder: the whole YAML, the best checkpoint."""
    hparams_file = os.path.join(folder, HPARAMS_FILE)
    if not os.path.isfile(hparams_file):
        raise ModelSourceError(f"{folder}: no hyperparams.yaml; {hint}")
    with torch.random.fork_rng(devices=[]):
        try:
            hparams = load_hparams(hparams_file)
        except UserError as err:
            raise ModelSourceError(
                f"{hparams_file}: cannot be loaded ({err})"
            ) from None
        except (AttributeError, TypeError):  # empty, or not a mapping
            raise ModelSourceError(
                f"{hparams_file}: empty or not a mapping; {hint}"
            ) from None
    checkpoint = best_checkpoint(folder)
    experiment = hparams.get("experiment", hparams)
    available = experiment.get("modules") or {}
    modules = {}
    for name in module_names:
        module = available.get(name)
        if not isinstance(module, torch.nn.Module):
            raise ModelSourceError(
                f"{hparams_file}: no module '{name}' in `modules`; {hint}"
            )
        load_state(module, checkpoint, name)
        modules[name] = module.eval()
    return TrainedRun(hparams, experiment, modules, checkpoint)


def _hub_hint(source, why):
    """The one-line message of a hub id that cannot be loaded."""
    return (
        f"{source}: no such folder, and as a hub id: {why}; pass a local "
        f"folder instead: download the model elsewhere (hf download {source} "
        "--local-dir <folder>) and pass --model <local folder>"
    )


def _fetch_errors():
    """The exceptions SpeechBrain's ``fetch`` raises for a missing file."""
    from huggingface_hub.errors import EntryNotFoundError

    return (OSError, ValueError, EntryNotFoundError)


def _fetch_exported(source, savedir):
    """Fetch and load an exported model; ``(hparams, hparams path, files)``.

    A hub id is read from the hub cache first (no network needed); only
    when it is not all there, ``HF_HUB_OFFLINE`` is not set and the hub
    answers is it downloaded.
    """
    if os.path.isdir(source):
        try:
            return _fetch_and_load(source, savedir, FetchConfig())
        except _fetch_errors() as err:
            why = " ".join(str(err).split())[:160]
            raise ModelSourceError(
                f"{source}: incomplete exported folder ({why}); export it "
                "again with `python -m lobes.export`"
            ) from None
    try:
        return _fetch_and_load(
            source, savedir, FetchConfig(allow_network=False)
        )
    except _fetch_errors():
        pass  # not (all) in the hub cache: download it if the hub answers
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise ModelSourceError(_hub_hint(
            source, "not in the local hub cache and HF_HUB_OFFLINE is set"
        ))
    if not _hub_reachable():
        raise ModelSourceError(_hub_hint(
            source, "not in the local hub cache and the Hugging Face hub "
            "cannot be reached"
        ))
    try:
        return _fetch_and_load(source, savedir, FetchConfig())
    except _fetch_errors() as err:
        why = " ".join(str(err).split())[:160]
        raise ModelSourceError(_hub_hint(
            source, f"the hub has no such model ({type(err).__name__}: "
            f"{why})"
        )) from None


def _fetch_and_load(source, savedir, fetch_config):
    """SpeechBrain's fetching and Pretrainer, then weights-only loading.

    The files ``from_hparams`` collects, collected the same way; the
    checkpoints are read with :func:`load_state_file`.
    """
    path = fetch(HPARAMS_FILE, source=source, savedir=savedir,
                 fetch_config=fetch_config)
    hparams = _load_inference_yaml(path)
    pretrainer = hparams["pretrainer"]
    pretrainer.set_collect_in(savedir)
    files = pretrainer.collect_files(
        default_source=source, fetch_config=fetch_config
    )
    files = {name: str(file) for name, file in files.items()}
    for name, module in pretrainer.loadables.items():
        load_state_file(module, files[name])
    return hparams, str(path), files


def _load_inference_yaml(path):
    """An exported ``hyperparams.yaml``, loaded (errors in one line)."""
    from hyperpyyaml import load_hyperpyyaml
    from ruamel.yaml import YAMLError

    with torch.random.fork_rng(devices=[]):
        try:
            with open(path, encoding="utf-8") as fin:
                hparams = load_hyperpyyaml(fin)
        except (YAMLError, ImportError, AttributeError, TypeError,
                ValueError, KeyError) as err:
            why = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise ModelSourceError(
                f"{path}: cannot be loaded ({why})"
            ) from None
    if "pretrainer" not in hparams or "modules" not in hparams:
        raise ModelSourceError(
            f"{path}: no `pretrainer` and `modules`; not a folder written by "
            "`python -m lobes.export`"
        )
    return hparams


def _load_exported(source, module_names, kind, savedir):
    """An exported folder or hub id: the inference YAML, one file a module."""
    hparams, hparams_path, paramfiles = _fetch_exported(source, savedir)
    loadables = hparams["pretrainer"].loadables
    modules = {}
    for name in module_names:
        module = loadables.get(name)
        if module is None and name in ASSEMBLED_MODULES:
            module = ASSEMBLED_MODULES[name](hparams, loadables)
        if not isinstance(module, torch.nn.Module):
            raise ModelSourceError(
                f"{source}: no module '{name}' in this exported folder; "
                f"pass a model of the {kind} recipes"
            )
        modules[name] = module.eval()
    folder = pathlib.Path(os.path.dirname(os.path.abspath(hparams_path)))
    checkpoint = Checkpoint(folder, {"source": source}, paramfiles)
    return TrainedRun(hparams, hparams, modules, checkpoint)


def separator_from_parts(hparams, loadables):
    """A training-time separator from an exported folder's parts.

    An exported separation folder stores SpeechBrain's layout (``encoder``,
    ``masknet``, ``decoder``, ``num_spks`` outputs, ``noise_index``);
    training code and :mod:`lobes.pretrained` ask for the ``separator``.

    Raises
    ------
    ModelSourceError
        When a part is missing.
    """
    parts = [loadables.get(name) for name in ("encoder", "masknet",
                                              "decoder")]
    if any(part is None for part in parts) or "num_spks" not in hparams:
        raise ModelSourceError(
            "the exported folder has no encoder, masknet, decoder and "
            "num_spks; export a separation run"
        )
    noise_output = hparams.get("noise_index") is not None
    return NoiseAwareSeparator(
        *parts,
        num_spks=int(hparams["num_spks"]) - int(noise_output),
        noise_output=noise_output,
    )


#: Training modules an exported folder stores as parts, and how to put them
#: together again.
ASSEMBLED_MODULES = {"separator": separator_from_parts}


def check_model_checkpoints(source, module_names):
    """Check the checkpoint files a model source would load.

    Arguments
    ---------
    source : str
        A training run's output folder (the files of ``module_names`` in
        its best checkpoint are checked), a folder written by
        ``python -m lobes.export`` (all its ``*.ckpt`` files), or anything
        else (a hub id, a missing folder: nothing is checked here; the
        loader reports those).
    module_names : list of str
        The modules loaded from a training run (``separator``).

    Raises
    ------
    ModelSourceError
        One line naming the damaged file and the fix: for a run, delete
        that checkpoint folder so that the next best one is used, or pass
        a checkpoint folder of another run; for an export, export again.

    Example
    -------
    >>> check_model_checkpoints("noise-robust-sb/not-a-folder", ["m"])
    >>> check_model_checkpoints("/no/such/folder", ["m"])
    """
    source = str(source)
    if not os.path.isdir(source):
        return
    if is_exported_folder(source):
        fix = (
            "export the model again (python -m lobes.export <run folder> "
            f"{source} --overwrite) or fetch the folder again"
        )
        for name in sorted(os.listdir(source)):
            if name.endswith(".ckpt"):
                check_checkpoint_file(os.path.join(source, name), fix)
        return
    if not os.path.isdir(os.path.join(source, "save")):
        return
    checkpoint = best_checkpoint(source)
    fix = (
        f"delete its checkpoint folder {checkpoint.path} to use the run's "
        "next best checkpoint, or pass another run"
    )
    for name in module_names:
        path = checkpoint.paramfiles.get(name)
        if path is not None and os.path.isfile(path):
            check_checkpoint_file(str(path), fix)
