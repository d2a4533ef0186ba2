"""Inputs of the audio-visual separation: trained runs and test mixtures.

:func:`load_trained` loads the module of a finished VAE or supervised
training run (its best checkpoint, through
:func:`lobes.runs.load_trained_run`); :func:`load_test_mixtures` reads the
mixtures of an ``avmix_*.csv`` manifest as :class:`AVMixture` items, and
:func:`lips_paths` the lip files a command line names.
:class:`AVMixture` is defined with the methods it feeds
(:mod:`lobes.separation_mcem.methods`).

Authors
 * noise-robust-sb contributors 2025
"""

import math
import os

import torch

from lobes.data.audio import read_audio
from lobes.data.av_data import SAMPLE_RATE, load_lips, read_rows
from lobes.errors import DataFolderError
from lobes.runs import load_trained_run
from lobes.separation_mcem.methods import AVMixture

#: The kind of training run each module comes from, for the messages.
_RUN_KINDS = {"vae": "VAE", "separator": "supervised separation"}


def load_trained(folder, key, device="cpu"):
    """The module ``key`` of a finished training run, best checkpoint loaded.

    :func:`lobes.runs.load_trained_run`: the run's modules rebuilt from its
    ``hyperparams.yaml`` (``modules[key]``) and the checkpoint of lowest
    validation loss loaded (weights only); what is missing is one
    :class:`~lobes.errors.ModelSourceError` line.

    Arguments
    ---------
    folder : str
        The run's ``--output_folder`` (``hyperparams.yaml``, ``save/``).
    key : str
        ``"vae"`` or ``"separator"``.
    device : str
        Torch device.

    Returns
    -------
    module : torch.nn.Module
        In eval mode on ``device``.
    hparams : dict
        The run's hyperparameters (its ``experiment`` namespace when the
        recipe YAML includes one), e.g. its ``stft``.

    Example
    -------
    >>> load_trained("/no/such/run", "vae")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
    """
    run = load_trained_run(folder, [key], kind=_RUN_KINDS.get(key, key))
    return run.modules[key].to(device).eval(), run.experiment


def load_test_mixtures(manifest, limit=None, num_speakers=2):
    """The mixtures of an ``avmix_*.csv`` manifest as :class:`AVMixture`.

    Arguments
    ---------
    manifest : str
        ``avmix_<split>.csv`` (:mod:`lobes.data.av_prepare`).
    limit : int, optional
        Keep the first ``limit`` rows of the manifest (``None`` or 0: all).
    num_speakers : int
        2: each row's two-speaker mixture ``s1 + s2 + noise``. 1: single-
        speaker enhancement (the papers' task), two items per row,
        ``<ID>_s1 = s1 + noise`` and ``<ID>_s2 = s2 + noise``, each with
        its speaker's lips and reference (the noise was scaled against the
        sum of both speakers, so the SNR against one speaker is about 3 dB
        lower than the row's ``snr_db``), cut to the speaker's utterance
        (the duration its lips cover: the mixture pads the shorter one).

    Returns
    -------
    list of AVMixture
        With each speaker's lips and references.

    Example
    -------
    >>> import tempfile
    >>> import numpy as np
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("mix", "s1", "s2", "noise"):
    ...     write_audio(f"{folder}/{name}.wav", torch.ones(1600) / 8, 16000)
    >>> np.save(f"{folder}/l.npy", np.zeros((3, 4, 4), np.uint8))
    >>> _ = open(f"{folder}/avmix_test.csv", "w").write(
    ...     "ID,mix_wav,s1_wav,s2_wav,noise_wav,s1_lips,s2_lips,fps\\n"
    ...     f"m1,{folder}/mix.wav,{folder}/s1.wav,{folder}/s2.wav,"
    ...     f"{folder}/noise.wav,{folder}/l.npy,{folder}/l.npy,30\\n")
    >>> item = load_test_mixtures(f"{folder}/avmix_test.csv")[0]
    >>> item.id, item.references.shape, item.lips[1].shape
    ('m1', torch.Size([2, 1600]), torch.Size([3, 4, 4]))
    >>> one = load_test_mixtures(f"{folder}/avmix_test.csv", num_speakers=1)
    >>> [i.id for i in one], one[0].references.shape, len(one[0].lips)
    (['m1_s1', 'm1_s2'], torch.Size([1, 1600]), 1)
    >>> float(one[1].mixture[0])
    0.25
    """
    if num_speakers not in (1, 2):
        raise ValueError(f"num_speakers must be 1 or 2, got {num_speakers}")
    items = []
    for row in read_rows(manifest)[: limit or None]:
        refs = [read_audio(row["s1_wav"]), read_audio(row["s2_wav"])]
        lips = [load_lips(row["s1_lips"]), load_lips(row["s2_lips"])]
        fps = float(row["fps"])
        if num_speakers == 2:
            items.append(AVMixture(
                id=row["ID"], mixture=read_audio(row["mix_wav"]), lips=lips,
                fps=fps, references=torch.stack(refs),
            ))  # fmt: skip
            continue
        if not row.get("noise_wav"):
            raise DataFolderError(
                f"{manifest}: no noise_wav column, which single-speaker "
                "enhancement needs; re-run the data preparation"
            )
        noise = read_audio(row["noise_wav"])
        for index, (ref, frames) in enumerate(zip(refs, lips), start=1):
            # the shorter speaker is zero-padded to the mixture: keep its
            # own utterance, which its lips cover
            length = min(ref.numel(), math.ceil(
                frames.shape[0] * SAMPLE_RATE / fps))
            items.append(AVMixture(
                id=f"{row['ID']}_s{index}",
                mixture=ref[:length] + noise[:length], lips=[frames],
                fps=fps, references=ref[None, :length],
            ))  # fmt: skip
    return items


def lips_paths(spec):
    """Lip files from a comma-separated string, a list, or a folder
    (its ``.npy`` and ``.mat`` files, sorted).

    Example
    -------
    >>> lips_paths("a.npy, b.npy")
    ['a.npy', 'b.npy']
    """
    if isinstance(spec, (list, tuple)):
        paths = [str(p) for p in spec]
    elif os.path.isdir(str(spec)):
        paths = sorted(
            os.path.join(str(spec), n) for n in os.listdir(str(spec))
            if n.lower().endswith((".npy", ".mat"))
        )
        if not paths:
            raise DataFolderError(
                f"{spec}: no .npy lip files; pass one lips file (.npy or "
                ".mat, T x H x W or (H*W) x T) per speaker"
            )
    else:
        paths = [p.strip() for p in str(spec).split(",") if p.strip()]
    return paths
