"""The reference model of curricular CR: a frozen baseline's output.

CCR's second negative is the output of the same backbone trained without
CR. These functions load that baseline (``--reference_model=<its output
folder>``) or stop in one line saying which baseline to train first.

Authors
 * noise-robust-sb contributors 2025
"""

import hashlib
import os

from lobes.errors import ModelSourceError
from lobes.runs import load_trained_run


def reference_model_error(recipe, reference_hparams, seed, why=None):
    """The one-line error of a CCR recipe started without a usable baseline.

    Example
    -------
    >>> print(reference_model_error(
    ...     "ccr_wavlm_convtasnet.yaml", "hparams/convtasnet.yaml", 1986))
    ccr_wavlm_convtasnet.yaml needs a baseline as its reference model: run \
`python train.py hparams/convtasnet.yaml` first and pass \
--reference_model=results/convtasnet/1986
    """
    stem = os.path.splitext(os.path.basename(str(reference_hparams)))[0]
    seed = "<seed>" if seed is None else seed
    prefix = f"{recipe} needs a baseline as its reference model"
    if why:
        prefix = f"{prefix} ({why})"
    return ModelSourceError(
        f"{prefix}: run `python train.py {reference_hparams}` first and "
        f"pass --reference_model=results/{stem}/{seed}"
    )


def weights_fingerprint(module):
    """A short hash of a module's weights (a reference model's identity).

    Example
    -------
    >>> import torch
    >>> one = torch.nn.Linear(2, 2)
    >>> weights_fingerprint(one) == weights_fingerprint(one)
    True
    >>> len(weights_fingerprint(one))
    16
    """
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_reference_model(folder):
    """The enhancement model of a finished run (best checkpoint), frozen.

    Arguments
    ---------
    folder : str
        The reference (baseline) run's ``output_folder``.

    Returns
    -------
    torch.nn.Module
        The model in eval mode with ``requires_grad`` False everywhere; its
        ``checkpoint_path`` attribute names the checkpoint loaded.

    Example
    -------
    >>> load_reference_model("/no/such/folder")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/folder: no such folder; ...
    """
    run = load_trained_run(folder, ["enhance_model"], kind="enhancement")
    model = run.modules["enhance_model"]
    model.requires_grad_(False)
    model.checkpoint_path = str(run.checkpoint.path)
    return model


def reference_model_for(experiment, hparams_file="this recipe", seed=None):
    """The frozen reference model an experiment asks for, or ``None``.

    An experiment whose ``cr_negatives`` include ``reference`` needs
    ``--reference_model=<output folder of the baseline run>``; without it,
    this stops with one line saying which baseline to train (from the
    ``reference_hparams`` hparam) and what to pass.

    Arguments
    ---------
    experiment : dict
        The recipe's experiment (``objectives`` holds ``cr_negatives``,
        ``cr_weight`` and ``reference_model``).
    hparams_file : str
        The recipe YAML, for the message.
    seed : int, optional
        The recipe's seed, for the suggested folder.

    Example
    -------
    >>> reference_model_for({"objectives": {"cr_negatives": ["noisy"]}})
    >>> reference_model_for({"objectives": {
    ...     "cr_negatives": ["noisy", "reference"], "cr_weight": 1.0,
    ...     "reference_model": None},
    ...     "reference_hparams": "hparams/convtasnet.yaml"}, "ccr.yaml", 1)
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ccr.yaml needs a baseline ... \
--reference_model=results/convtasnet/1
    """
    objectives = experiment.get("objectives") or {}
    negatives = list(objectives.get("cr_negatives") or [])
    if "reference" not in negatives or not objectives.get("cr_weight"):
        return None
    recipe = os.path.basename(str(hparams_file))
    baseline = experiment.get("reference_hparams", "hparams/<baseline>.yaml")
    folder = objectives.get("reference_model")
    if not folder:
        raise reference_model_error(recipe, baseline, seed)
    try:
        return load_reference_model(folder)
    except ModelSourceError as err:
        raise reference_model_error(
            recipe, baseline, seed, why=str(err)
        ) from None
