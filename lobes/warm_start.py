"""Warm start: a model's weights from a trained run (issues 21 and 22).

Two kinds of fork start from a trained run's best checkpoint (lowest
validation loss, as :func:`lobes.runs.best_checkpoint`):

- a **separator** (issue 21, :func:`warm_start`): every tensor the fresh
  separator shares with the trained one is copied; with one output more
  (``N`` -> ``N + 1``, the backbone forked into a NASS arm), the masking
  projection's first ``N`` masks come from the run and the extra noise
  mask's rows keep their fresh initialisation (reproducible when the
  separator was built with ``init_seed``, see
  :func:`lobes.models.mask_projection.paired_init`). The checkpoint file is
  read directly (``torch.load(..., weights_only=True)``);
- any **other module**, e.g. an enhancer (issue 22,
  :func:`warm_start_module`): the run is loaded by the package's one run
  loader, :func:`lobes.runs.load_trained_run` (a training run folder, an
  exported folder or a hub id), and its module's weights are copied whole
  into the fresh one, which must be the same architecture and sizes.

Wiring (one hparam and one call)::

    # recipe YAML
    init_from: null  # a trained run's output folder: start from its weights

    # the Brain's on_fit_start, before SpeechBrain's own (which then
    # recovers the run's own checkpoint, if any, over the warm start)
    if self.hparams.init_from:
        warm_start(self.modules.separator, self.hparams.init_from)

``init_from`` is checked before anything is built
(:mod:`lobes.hparam_checks`: an existing run folder, an exported folder or
a hub id); what was copied is logged.

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch

from lobes.errors import ModelSourceError
from lobes.models.mask_projection import output_projection
from lobes.random_state import capture_random_state, restore_random_state
from lobes.runs import best_checkpoint, load_trained_run, read_state_file


class WarmStart(NamedTuple):
    """What :func:`warm_start` did.

    Attributes
    ----------
    source : str
        The file the weights came from.
    copied : list of str
        Tensors copied whole.
    partly_copied : dict
        Tensor name -> number of leading rows copied (the masking
        projection's ``N`` masks); its other rows kept as initialised.

    Example
    -------
    >>> WarmStart("m.ckpt", ["a"], {}).copied
    ['a']
    """

    source: str
    copied: list
    partly_copied: dict

    def summary(self):
        """One line for the log.

        Example
        -------
        >>> WarmStart("m.ckpt", ["a", "b"], {"w": 4}).summary()
        'warm start from m.ckpt: 2 tensors copied, 1 partly (w: 4 rows)'
        """
        partly = ", ".join(
            f"{name}: {rows} rows" for name, rows in self.partly_copied.items()
        )
        line = (
            f"warm start from {self.source}: {len(self.copied)} tensors "
            f"copied, {len(self.partly_copied)} partly"
        )
        return f"{line} ({partly})" if partly else line


def _check_same_tensors(own, state, source, what, kind):
    """One line when ``state`` does not name the tensors of ``own``."""
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unexpected or missing:
        raise ModelSourceError(
            f"{source}: not this {what} (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); warm-start from a run of the same {kind} "
            "and sizes"
        )


def load_shared_state(separator, state, source="<state>"):
    """Copy a trained separator's state into a fresh one, shared rows only.

    Arguments
    ---------
    separator : lobes.models.noise_aware.NoiseAwareSeparator
        The fresh separator (``N`` or ``N + 1`` outputs), changed in place.
    state : dict
        The trained separator's state dict, ``N`` or the same number of
        outputs.
    source : str
        Where ``state`` came from (for messages and the report).

    Returns
    -------
    WarmStart
        The tensors copied whole and those copied in part.

    Raises
    ------
    ModelSourceError
        One line, when the trained separator is not the same backbone
        (other tensors, other shapes, or more outputs than the fresh one).

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> from lobes.models.noise_aware import NoiseAwareSeparator
    >>> def build(noise):
    ...     return NoiseAwareSeparator(
    ...         Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=2 + noise),
    ...         Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
    ...         noise_output=bool(noise), init_seed=1,
    ...     )
    >>> trained, fork = build(0), build(1)
    >>> report = load_shared_state(fork, trained.state_dict())
    >>> report.partly_copied
    {'masknet.mask_conv1x1.conv.weight': 16}
    """
    own = separator.state_dict()
    _check_same_tensors(own, state, source, "separator's backbone",
                        "backbone")
    projection = "masknet." + output_projection(separator.masknet)[0] + "."
    copied, partly = [], {}
    with torch.no_grad():
        for name, tensor in own.items():
            trained = state[name]
            if trained.shape == tensor.shape:
                tensor.copy_(trained)
                copied.append(name)
                continue
            rows = tensor.shape[0] // separator.num_outputs
            if (
                name.startswith(projection)
                and trained.shape[1:] == tensor.shape[1:]
                and trained.shape[0] == rows * separator.num_spks
            ):
                tensor[: trained.shape[0]].copy_(trained)
                partly[name] = int(trained.shape[0])
                continue
            raise ModelSourceError(
                f"{source}: {name} is {tuple(trained.shape)}, the separator's "
                f"{tuple(tensor.shape)}; warm-start from a run of the same "
                f"backbone and sizes with {separator.num_spks} speakers (and "
                "no more outputs than this separator)"
            )
    return WarmStart(str(source), copied, partly)


def warm_start(separator, run_folder, module="separator"):
    """Load a trained run's best separator weights into a fresh separator.

    Arguments
    ---------
    separator : lobes.models.noise_aware.NoiseAwareSeparator
        The fresh separator, ``N`` or ``N + 1`` outputs, changed in place.
    run_folder : str
        A training run's output folder (``save/CKPT+*``), ``N`` outputs or
        as many as ``separator``.
    module : str
        The checkpointed module's name (``<module>.ckpt``).

    Returns
    -------
    WarmStart
        What was copied (see :func:`load_shared_state`).

    Raises
    ------
    ModelSourceError
        One line, when the folder has no checkpoint or it does not fit.

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> from lobes.models.noise_aware import NoiseAwareSeparator
    >>> def build(noise):
    ...     return NoiseAwareSeparator(
    ...         Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=2 + noise),
    ...         Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
    ...         noise_output=bool(noise), init_seed=1,
    ...     )
    >>> run = tempfile.mkdtemp()
    >>> trained = build(0)
    >>> _ = Checkpointer(os.path.join(run, "save"),
    ...                  {"separator": trained}).save_checkpoint(
    ...     meta={"loss": -3.0})
    >>> report = warm_start(build(1), run)
    >>> len(report.partly_copied), report.source.endswith("separator.ckpt")
    (1, True)
    """
    checkpoint = best_checkpoint(run_folder)
    path = checkpoint.paramfiles.get(module)
    if path is None:
        raise ModelSourceError(
            f"{checkpoint.path}: no {module}.ckpt in this checkpoint; "
            "init_from must name a separation run's output folder"
        )
    return load_shared_state(separator, read_state_file(path), str(path))


def load_same_state(module, state, source="<state>"):
    """Copy a trained module's whole state into a fresh one of its kind.

    Arguments
    ---------
    module : torch.nn.Module
        The fresh module, changed in place.
    state : dict
        The trained module's state dict: the same tensors and shapes.
    source : str
        Where ``state`` came from (for messages and the report).

    Returns
    -------
    WarmStart
        Every tensor copied whole, none in part.

    Raises
    ------
    ModelSourceError
        One line, when the trained module has other tensors or shapes.

    Example
    -------
    >>> fresh, trained = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    >>> load_same_state(fresh, trained.state_dict()).summary()
    'warm start from <state>: 2 tensors copied, 0 partly'
    >>> torch.equal(fresh.weight, trained.weight)
    True
    >>> load_same_state(fresh, torch.nn.Linear(2, 4).state_dict(), "m.ckpt")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: m.ckpt: weight is (4, 2), the model's \
(3, 2); warm-start from a run of the same model and sizes
    """
    own = module.state_dict()
    _check_same_tensors(own, state, source, "model", "model")
    for name, tensor in own.items():
        if state[name].shape != tensor.shape:
            raise ModelSourceError(
                f"{source}: {name} is {tuple(state[name].shape)}, the "
                f"model's {tuple(tensor.shape)}; warm-start from a run of "
                "the same model and sizes"
            )
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name])
    return WarmStart(str(source), list(own), {})


def warm_start_module(module, source, name="enhance_model",
                      kind="enhancement", argument="init_from"):
    """Load a trained run's module (best checkpoint) into a fresh module.

    The run is loaded with :func:`lobes.runs.load_trained_run`; the global
    random generators (Python, NumPy, torch) are as they were before (the
    run's YAML may seed them).

    Arguments
    ---------
    module : torch.nn.Module
        The fresh module, changed in place.
    source : str
        A finished run's output folder (``hyperparams.yaml`` and
        ``save/CKPT+*``), a folder written by ``python -m lobes.export``,
        or a hub id of one.
    name : str
        The module's name in the run's ``modules``.
    kind : str
        What the run should be, for the messages.
    argument : str
        The hparam that named ``source``, for the messages.

    Returns
    -------
    WarmStart
        What was copied (see :func:`load_same_state`).

    Raises
    ------
    ModelSourceError
        One line, starting with ``argument``, when the source cannot be
        loaded or its module does not fit.

    Example
    -------
    >>> warm_start_module(torch.nn.Linear(2, 2), "/no/such/run")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: init_from: /no/such/run: no such folder; \
pass the output folder of a finished enhancement run ...
    """

    state = capture_random_state()
    try:
        run = load_trained_run(source, [name], kind=kind)
    except ModelSourceError as err:
        raise ModelSourceError(f"{argument}: {err}") from None
    finally:
        restore_random_state(state)
    path = run.checkpoint.paramfiles.get(name) or run.checkpoint.path
    try:
        return load_same_state(module, run.modules[name].state_dict(),
                               str(path))
    except ModelSourceError as err:
        raise ModelSourceError(f"{argument}: {err}") from None
