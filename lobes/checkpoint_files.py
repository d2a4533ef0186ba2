"""Truncated or corrupt checkpoint files, named in one line with the fix.

- :func:`check_checkpoints`: every checkpoint a resume or a test may load
  is whole (each ``.ckpt`` written by ``torch.save`` is a complete archive
  whose members pass their CRC, each text one is readable and not empty,
  ``CKPT.yaml`` is a mapping); otherwise one line names the file and says
  to delete its ``CKPT+`` folder (the run then resumes from the one
  before) or to use another output folder.

``torch.save`` writes a zip archive; a copy cut short (a full disk, a
killed process, an interrupted download) has lost the archive's central
directory, and a damaged one fails its CRC check. ``torch.load`` then says
``PytorchStreamReader failed reading zip archive`` without the file's
name. :func:`check_checkpoint_file` catches both before a model is built,
and :func:`lobes.runs.check_model_checkpoints` checks the files a model
source (a training run folder or an exported folder) would load, so that
``lobes.export``, ``lobes.separate --model`` and ``lobes.enhance --model``
stop with one line naming the file and what to do.

Authors
 * noise-robust-sb contributors 2025
"""

import os
import zipfile

import yaml

from lobes.errors import ModelSourceError, UserError


class CheckpointError(UserError):
    """A checkpoint file is truncated or corrupt.

    Example
    -------
    >>> isinstance(CheckpointError("x"), UserError)
    True
    """


#: The first bytes of the files ``torch.save`` writes (zip; old pickle).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def torch_file_problem(path):
    """Why a file written by ``torch.save`` is truncated or corrupt, or None.

    A zip archive (torch's format) is checked whole, every member against
    its CRC, without unpickling anything; a file in torch's legacy format
    is left to ``torch.load``.

    Example
    -------
    >>> import tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> torch.save({"w": torch.ones(100)}, path)
    >>> torch_file_problem(path) is None
    True
    >>> with open(path, "rb") as fin:
    ...     data = fin.read()
    >>> with open(path, "wb") as fout:
    ...     _ = fout.write(data[:300])
    >>> torch_file_problem(path)
    '300 bytes, not a complete torch zip archive'
    """
    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fin:
            if fin.read(1) == b"\x80":
                return None  # torch's legacy format: torch.load judges it
        return f"{size} bytes, not a complete torch zip archive"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        bad = f"unreadable: {' '.join(str(err).split())[:80]}"
    return None if bad is None else f"{bad} fails its check"


def _check_file(path):
    """The reason a checkpoint file is unusable, or None."""
    try:
        with open(path, "rb") as fin:
            head = fin.read(4)
    except OSError as err:
        return err.strerror or type(err).__name__
    if not head:
        return "empty file"
    if any(head.startswith(magic) for magic in _TORCH_MAGIC):
        return torch_file_problem(path)
    try:
        with open(path, encoding="utf-8") as fin:
            text = fin.read()
    except UnicodeDecodeError:
        return "neither a torch file nor text"
    if os.path.basename(path) == "CKPT.yaml":
        try:
            meta = yaml.safe_load(text)
        except yaml.YAMLError:
            return "not valid YAML"
        if not isinstance(meta, dict):
            return "not a YAML mapping"
    return None


def check_checkpoint(ckpt_dir):
    """Fail in one line if a file of one ``CKPT+...`` folder is unusable.

    Example
    -------
    >>> import tempfile, torch
    >>> ckpt = os.path.join(tempfile.mkdtemp(), "CKPT+1")
    >>> os.makedirs(ckpt)
    >>> _ = open(os.path.join(ckpt, "CKPT.yaml"), "w").write("end-of-epoch: true\\n")
    >>> torch.save({"w": torch.ones(3)}, os.path.join(ckpt, "model.ckpt"))
    >>> check_checkpoint(ckpt)
    >>> data = open(os.path.join(ckpt, "model.ckpt"), "rb").read()
    >>> _ = open(os.path.join(ckpt, "model.ckpt"), "wb").write(data[:100])
    >>> check_checkpoint(ckpt)
    Traceback (most recent call last):
    ...
    lobes.checkpoint_files.CheckpointError: .../CKPT+1/model.ckpt: truncated or corrupt checkpoint (100 bytes, ...); delete the folder .../CKPT+1 to resume from the checkpoint before it, or pass another --output_folder
    """  # noqa: E501
    ckpt_dir = str(ckpt_dir)
    names = sorted(os.listdir(ckpt_dir))
    if "CKPT.yaml" not in names:
        raise CheckpointError(
            f"{ckpt_dir}: checkpoint folder without CKPT.yaml (an unfinished "
            f"save); delete the folder {ckpt_dir} to resume from the "
            "checkpoint before it, or pass another --output_folder"
        )
    for name in names:
        path = os.path.join(ckpt_dir, name)
        if not os.path.isfile(path):
            continue
        reason = _check_file(path)
        if reason is not None:
            raise CheckpointError(
                f"{path}: truncated or corrupt checkpoint ({reason}); "
                f"delete the folder {ckpt_dir} to resume from the checkpoint "
                "before it, or pass another --output_folder"
            )


def check_checkpoints(save_folder, prefix="CKPT+"):
    """Check every checkpoint folder in ``save_folder`` (if any).

    Returns the checked folders (oldest name first).

    Example
    -------
    >>> import tempfile
    >>> check_checkpoints(os.path.join(tempfile.mkdtemp(), "none"))
    []
    """
    save_folder = str(save_folder)
    if not os.path.isdir(save_folder):
        return []
    folders = sorted(
        os.path.join(save_folder, name) for name in os.listdir(save_folder)
        if name.startswith(prefix)
        and os.path.isdir(os.path.join(save_folder, name))
    )
    for folder in folders:
        check_checkpoint(folder)
    return folders


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
