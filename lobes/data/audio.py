"""Audio reading and writing that fails in one clear line.

SpeechBrain's ``read_audio`` goes through ``torchaudio.load``, whose backend
varies between releases; here every file is read with ``soundfile`` and
checked: readable, not empty, mono, at the expected sample rate and finite.
Each failure raises :class:`lobes.errors.AudioFileError` naming the file and
the fix.
"""

import os

import numpy as np
import soundfile as sf
import torch

from lobes.errors import AudioFileError


def read_audio(path, sample_rate=None, start=0, stop=None):
    """Read a mono wav file as a float32 tensor, checking it on the way.

    Arguments
    ---------
    path : str
        The audio file.
    sample_rate : int, optional
        The rate the caller expects; a file at another rate is an error.
    start : int
        First sample to read.
    stop : int, optional
        One past the last sample to read (default: the end of the file).

    Returns
    -------
    torch.Tensor
        Shape ``[time]``, dtype float32.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> write_audio(path, torch.zeros(800), 8000)
    >>> read_audio(path, sample_rate=8000).shape
    torch.Size([800])
    >>> read_audio(path, sample_rate=16000)
    Traceback (most recent call last):
    ...
    lobes.errors.AudioFileError: ...x.wav: sample rate 8000 Hz, expected 16...
    """
    info = audio_info(path)
    if info.frames == 0:
        raise AudioFileError(
            f"{path}: empty audio file (0 samples); re-create or remove it "
            "from the corpus"
        )
    if info.channels != 1:
        raise AudioFileError(
            f"{path}: {info.channels} channels, expected mono; downmix it "
            "(e.g. `sox in.wav out.wav remix -`)"
        )
    if sample_rate is not None and info.samplerate != int(sample_rate):
        raise AudioFileError(
            f"{path}: sample rate {info.samplerate} Hz, expected "
            f"{int(sample_rate)} Hz; use the corpus folder at "
            f"{int(sample_rate)} Hz or set sample_rate: {info.samplerate} "
            "in the YAML"
        )
    try:
        data, _ = sf.read(
            path, start=start, stop=stop, dtype="float32", always_2d=False
        )
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioFileError(
            f"{path}: unreadable audio data ({err}); re-create the file"
        ) from None
    if not np.all(np.isfinite(data)):
        raise AudioFileError(
            f"{path}: contains NaN or infinite samples; re-create the file"
        )
    return torch.from_numpy(np.ascontiguousarray(data))


def audio_info(path):
    """Return ``soundfile.info`` of a file, or raise a one-line error.

    Example
    -------
    >>> audio_info("/no/such/file.wav")
    Traceback (most recent call last):
    ...
    lobes.errors.AudioFileError: /no/such/file.wav: no such file; ...
    """
    if not os.path.isfile(path):
        raise AudioFileError(
            f"{path}: no such file; check the data folder or re-run the "
            "data preparation"
        )
    if os.path.getsize(path) == 0:
        raise AudioFileError(
            f"{path}: empty file (0 bytes); re-create or remove it"
        )
    try:
        return sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as err:
        reason = " ".join(str(err).split())
        raise AudioFileError(
            f"{path}: not a readable audio file ({reason}); re-create or "
            "replace it"
        ) from None


def write_audio(path, audio, sample_rate, subtype="PCM_16"):
    """Write a mono signal to a wav file, creating parent folders.

    Arguments
    ---------
    path : str
        Destination file.
    audio : torch.Tensor or numpy.ndarray
        Shape ``[time]``; values beyond [-1, 1] are clipped for PCM output.
    sample_rate : int
        Sampling rate in Hz.
    subtype : str
        A soundfile subtype, ``"PCM_16"`` or ``"FLOAT"``.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "y.wav")
    >>> write_audio(path, torch.ones(10) * 0.5, 16000)
    >>> round(float(read_audio(path)[0]), 3)
    0.5
    """
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if subtype.startswith("PCM"):
        audio = np.clip(audio, -1.0, 1.0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sf.write(path, audio, int(sample_rate), subtype=subtype)


def check_same_length(signals, paths):
    """Raise a one-line error unless all signals have the same length.

    Arguments
    ---------
    signals : list of torch.Tensor
        Signals of shape ``[time]``.
    paths : list of str
        The files they came from, for the message.

    Example
    -------
    >>> check_same_length([torch.zeros(3), torch.zeros(3)], ["a", "b"])
    >>> check_same_length([torch.zeros(3), torch.zeros(4)], ["a", "b"])
    Traceback (most recent call last):
    ...
    lobes.errors.AudioFileError: b: 4 samples but a has 3; ...
    """
    ref = signals[0].shape[-1]
    for sig, path in zip(signals[1:], paths[1:]):
        if sig.shape[-1] != ref:
            raise AudioFileError(
                f"{path}: {sig.shape[-1]} samples but {paths[0]} has {ref}; "
                "the mixture and its sources must be aligned, re-create them"
            )
