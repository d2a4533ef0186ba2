"""The command line that ``lobes.separate`` and ``lobes.enhance`` share.

The inputs (files, or folders of ``.wav`` and ``.flac`` files) and the
options are checked before a model is loaded, each problem in one line.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import glob
import os

from lobes.chunking import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    check_chunking,
)
from lobes.data.audio import audio_info
from lobes.errors import UserError
from lobes.hparam_checks import check_writable

#: Audio files the command-line tools pick up in a folder.
AUDIO_EXTENSIONS = (".wav", ".flac")


def audio_inputs(paths):
    """The audio files named on a command line: files, or folders of them.

    A folder stands for its ``.wav`` and ``.flac`` files (recursively, in
    sorted order). Two inputs with the same file name would write the same
    outputs, so they are refused.

    Raises
    ------
    UserError
        One line naming the input at fault.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.wav", "a.wav", "notes.txt"):
    ...     _ = open(os.path.join(folder, name), "w").write("x")
    >>> [os.path.basename(p) for p in audio_inputs([folder])]
    ['a.wav', 'b.wav']
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                name for name in glob.glob(
                    os.path.join(path, "**", "*"), recursive=True
                )
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not found:
                raise UserError(
                    f"{path}: no {' or '.join(AUDIO_EXTENSIONS)} files in "
                    "this folder"
                )
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    stems = {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise UserError(
                f"{stems[stem]} and {path} would write the same outputs; "
                "process them in separate runs"
            )
        stems[stem] = path
    return files


def inference_parser(prog, description, inputs_help, kind):
    """The command line that ``lobes.separate`` and ``lobes.enhance`` share.

    Arguments
    ---------
    prog, description : str
        The parser's.
    inputs_help : str
        What the positional inputs are.
    kind : str
        The training runs a ``--model`` can be (``"separation"``).

    Example
    -------
    >>> parser = inference_parser("p", "d", "files", "enhancement")
    >>> args = parser.parse_args(["--model", "m", "a.wav", "--out", "o"])
    >>> args.inputs, args.chunk_seconds, args.device
    (['a.wav'], None, 'cpu')
    """

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("inputs", nargs="+", help=inputs_help)
    parser.add_argument(
        "--model", required=True,
        help=f"output folder of a {kind} training run, a folder written "
        "by `python -m lobes.export`, or a hub id",
    )
    parser.add_argument("--out", required=True, help="folder for the wavs")
    parser.add_argument(
        "--chunk_seconds", type=float, default=None,
        help="chunk length for long recordings (default: the model's, "
        f"else {DEFAULT_CHUNK_SECONDS})",
    )
    parser.add_argument(
        "--overlap_seconds", type=float, default=None,
        help="overlap of consecutive chunks (default: the model's, else "
        f"{DEFAULT_OVERLAP_SECONDS})",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--savedir", default=None,
        help="where a hub model's files are linked (default: the hub cache)",
    )
    return parser


def check_inputs(inputs, chunk_seconds=None, overlap_seconds=None):
    """The command-line tools' inputs, checked before a model is loaded.

    Arguments
    ---------
    inputs : list of str
        Files and folders (see :func:`audio_inputs`).
    chunk_seconds, overlap_seconds : float, optional
        The chunking asked for (``None``: the model's).

    Returns
    -------
    list of str
        The audio files, each readable (else one line naming it).

    Example
    -------
    >>> check_inputs(["/no/such.wav"])
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: /no/such.wav: no such file or folder
    """
    if chunk_seconds is not None or overlap_seconds is not None:
        check_chunking(
            DEFAULT_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds,
            DEFAULT_OVERLAP_SECONDS if overlap_seconds is None
            else overlap_seconds,
        )
    files = audio_inputs(inputs)
    for path in files:
        audio_info(path)
    return files


def check_output_folder(folder, argument="--out"):
    """Stop in one line unless ``folder`` can be written to (or created).

    Checked before any work, so that nothing is written half-way: the
    recipes' own check (:func:`lobes.hparam_checks.check_writable`), with
    the fix naming this command's argument.

    Arguments
    ---------
    folder : str
        The output folder.
    argument : str
        How the command line names it, for the fix.

    Raises
    ------
    UserError
        One line naming the folder and the fix.

    Example
    -------
    >>> import tempfile
    >>> check_output_folder(os.path.join(tempfile.mkdtemp(), "new", "out"))
    >>> path = os.path.join(tempfile.mkdtemp(), "file")
    >>> _ = open(path, "w").write("x")
    >>> check_output_folder(os.path.join(path, "out"))
    Traceback (most recent call last):
    ...
    lobes.hparam_checks.OutputFolderError: ...file/out: output folder cannot \
be created: ...file is a file, not a folder; pass --out a folder you can \
write to, or fix its permissions
    """
    check_writable(folder, argument)
