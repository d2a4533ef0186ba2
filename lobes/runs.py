"""Load what a finished recipe run trained: the package's one run loader.

A run folder is what ``python train.py hparams/<name>.yaml`` writes under
its ``output_folder``: ``hyperparams.yaml`` (the recipe YAML with its
fragments inlined and the overrides applied, which builds the models) and
``save/CKPT+*`` (SpeechBrain checkpoints, one ``<module>.ckpt`` per module).
:func:`load_trained_run` rebuilds the models from the YAML and loads the
checkpoint of lowest validation loss into them, with
``torch.load(..., weights_only=True)``. Separation inference
(:mod:`lobes.separate`) and curricular CR's reference model
(:mod:`lobes.brains.enhancement`) both use it.

Loading a YAML can run code (``!apply:``, ``!new:``): load only folders you
trust.
"""

import math
import os
from typing import NamedTuple

import torch

from lobes.errors import ModelSourceError, UserError


class TrainedRun(NamedTuple):
    """A loaded run.

    Attributes
    ----------
    hparams : dict
        The whole ``hyperparams.yaml``.
    experiment : dict
        Its ``experiment`` namespace (the hparams themselves for a YAML
        without one).
    modules : dict
        Name -> module with the checkpoint's weights, in eval mode.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The checkpoint loaded.
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
    from speechbrain.utils.checkpoints import Checkpointer

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
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelSourceError(
            f"{path}: does not fit the model of hyperparams.yaml ({first}); "
            "the YAML and the checkpoint come from different runs"
        ) from None


def load_trained_run(folder, module_names, kind="recipe"):
    """Rebuild a run's models from its YAML and load its best checkpoint.

    Loading the YAML does not change the caller's random state.

    Arguments
    ---------
    folder : str
        The run's ``output_folder``.
    module_names : list of str
        Keys of the YAML's ``modules`` to load (e.g. ``["separator"]``).
    kind : str
        What the run should be, for the error messages (``"separation"``,
        ``"enhancement"``).

    Returns
    -------
    TrainedRun

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
    from lobes.recipe import load_hparams

    folder = os.path.expanduser(str(folder))
    hint = (
        f"pass the output folder of a finished {kind} run (holding "
        "hyperparams.yaml and save/)"
    )
    if not os.path.isdir(folder):
        raise ModelSourceError(f"{folder}: no such folder; {hint}")
    hparams_file = os.path.join(folder, "hyperparams.yaml")
    if not os.path.isfile(hparams_file):
        raise ModelSourceError(f"{folder}: no hyperparams.yaml; {hint}")
    with torch.random.fork_rng(devices=[]):
        try:
            hparams = load_hparams(hparams_file)
        except UserError as err:
            raise ModelSourceError(
                f"{hparams_file}: cannot be loaded ({err})"
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
