"""Errors meant for the person running a recipe, reported in one line.

Every check on user input (data folders, audio files, hyperparameters)
raises a :class:`UserError` whose message names the file at fault and the
fix. Entry points wrap their ``main`` in :func:`exit_on_user_error`, which
prints that single line instead of a traceback and exits with status 2.
"""

import functools
import sys


class UserError(Exception):
    """A problem with the user's input, described in one actionable line.

    Example
    -------
    >>> str(UserError("data/x.wav: empty file; re-create it"))
    'data/x.wav: empty file; re-create it'
    """


class DataFolderError(UserError):
    """A data folder is missing, empty or not in the expected layout."""


class AudioFileError(UserError):
    """An audio file is unreadable, empty, stereo, at the wrong rate or NaN."""


class HparamsError(UserError):
    """A hyperparameter file or command-line override is invalid."""


class ModelSourceError(UserError):
    """A pretrained model (hub id or local folder) cannot be loaded."""


def exit_on_user_error(main):
    """Decorate an entry point so that a :class:`UserError` ends it cleanly.

    The message goes to stderr as ``error: <message>`` on a single line and
    the process exits with status 2; any other exception keeps its traceback.

    Example
    -------
    >>> @exit_on_user_error
    ... def main():
    ...     raise UserError("missing.yaml: no such file")
    >>> try:
    ...     main()
    ... except SystemExit as e:
    ...     print(e.code)
    2
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper


def one_line(err):
    r"""The user-facing line of an error, even when re-raised by a worker.

    PyTorch's DataLoader re-raises an exception from a worker process with
    the worker's traceback in the message; the last line of that traceback
    is the original message.

    Example
    -------
    >>> one_line(AudioFileError("a.wav: empty\n  file"))
    'a.wav: empty file'
    >>> wrapped = ("Caught AudioFileError in DataLoader worker process 0."
    ...            "\nOriginal Traceback (most recent call last):\n  ..."
    ...            "\nlobes.errors.AudioFileError: a.wav: NaN samples\n")
    >>> one_line(AudioFileError(wrapped))
    'a.wav: NaN samples'
    """
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        name = type(err).__name__
        text = last.split(f"{name}: ", 1)[-1]
    return " ".join(text.split())
