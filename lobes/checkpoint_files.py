"""Truncated or corrupt checkpoint files, named in one line with the fix.

``torch.save`` writes a zip archive; a copy cut short (a full disk, a
killed process, an interrupted download) has lost the archive's central
directory, and a damaged one fails its CRC check. ``torch.load`` then says
``PytorchStreamReader failed reading zip archive`` without the file's
name. :func:`check_checkpoint_file` catches both before a model is built,
and :func:`check_model_checkpoints` checks the files a model source
(a training run folder or an exported folder) would load, so that
``lobes.export``, ``lobes.separate --model`` and ``lobes.enhance --model``
stop with one line naming the file and what to do.

Authors
 * noise-robust-sb contributors 2025
"""

import os

from lobes.errors import ModelSourceError
from lobes.hparam_checks import torch_file_problem
from lobes.runs import best_checkpoint, is_exported_folder


def check_checkpoint_file(path, fix):
    """Stop in one line when a checkpoint file is truncated or corrupt.

    Arguments
    ---------
    path : str
        A file written by ``torch.save``.
    fix : str
        What the person should do, ending the message.

    Raises
    ------
    ModelSourceError
        ``<path>: truncated or corrupt checkpoint (<why>); <fix>``.

    Example
    -------
    >>> import tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save({"w": torch.ones(100)}, path)
    >>> check_checkpoint_file(path, "delete it")
    >>> with open(path, "rb") as fin:
    ...     data = fin.read()
    >>> with open(path, "wb") as fout:
    ...     _ = fout.write(data[:300])
    >>> check_checkpoint_file(path, "delete it")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ...model.ckpt: truncated or corrupt \
checkpoint (300 bytes, not a complete torch zip archive); delete it
    """
    why = torch_file_problem(path)
    if why is not None:
        raise ModelSourceError(
            f"{path}: truncated or corrupt checkpoint ({why}); {fix}"
        )


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
