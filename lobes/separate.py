"""Separate recordings into speakers (and noise) from the command line.

``--model`` takes the output folder of a finished
``recipes/*/separation/train.py`` run, a folder written by
``python -m lobes.export``, or the hub id of one; all three load through
:func:`lobes.runs.load_trained_run`, into
:class:`lobes.pretrained.NoiseAwareSeparation` (SpeechBrain's
``SepformerSeparation`` with the noise output apart, chunked overlap-add for
long recordings and resampling with a notice). Inputs are wav or flac
files, or folders of them; a progress bar runs over them on a terminal.

Command line::

    python -m lobes.separate --model results/nass_sepformer/1234 mix.wav \\
        [more.wav | folder/ ...] --out separated/

writes ``separated/<stem>_s1.wav ... <stem>_sN.wav`` and, for a model with
a noise output, ``<stem>_noise.wav``, all at the model's rate and scaled by
one common factor when any of them would clip.

Authors
 * noise-robust-sb contributors 2025
"""

import os
import sys

from tqdm import tqdm

from lobes.chunking import chunk_starts
from lobes.data.audio import write_audio
from lobes.errors import exit_on_user_error
from lobes.inference_cli import (
    check_inputs,
    check_output_folder,
    inference_parser,
)
from lobes.pretrained import NoiseAwareSeparation

#: ``from lobes.separate import NoiseAwareSeparation`` keeps working.
__all__ = ["NoiseAwareSeparation", "chunk_starts", "main", "write_separated"]


def write_separated(result, stem, out_dir):
    """Write ``<out_dir>/<stem>_s1.wav ... _sN.wav`` (and ``_noise.wav``).

    Arguments
    ---------
    result : dict
        What :meth:`NoiseAwareSeparation.separate` returns.
    stem : str
        The input's file name without extension.
    out_dir : str
        The output folder (created).

    Returns
    -------
    list of str
        The files written.

    Example
    -------
    >>> import tempfile, torch
    >>> out = tempfile.mkdtemp()
    >>> result = {"speakers": torch.zeros(80, 2), "noise": torch.zeros(80),
    ...           "sample_rate": 8000}
    >>> [os.path.basename(p) for p in write_separated(result, "mix", out)]
    ['mix_s1.wav', 'mix_s2.wav', 'mix_noise.wav']
    """
    signals = {
        f"s{i + 1}": result["speakers"][:, i]
        for i in range(result["speakers"].shape[1])
    }
    if result["noise"] is not None:
        signals["noise"] = result["noise"]
    peak = max(float(sig.abs().max()) for sig in signals.values())
    scale = 0.99 / peak if peak > 0.99 else 1.0  # one factor for all
    written = []
    for name, signal in signals.items():
        target = os.path.join(out_dir, f"{stem}_{name}.wav")
        write_audio(target, signal * scale, result["sample_rate"])
        written.append(target)
    return written


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.separate``.

    Example
    -------
    >>> args = parse_args(["--model", "m", "a.wav", "b/", "--out", "o"])
    >>> args.inputs, args.out
    (['a.wav', 'b/'], 'o')
    """
    parser = inference_parser(
        "python -m lobes.separate",
        "Separate speakers (and noise) with a trained model.",
        "mixture files (wav, flac) or folders", "separation",
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    """Separate each input into ``<out>/<stem>_s<i>.wav`` (and noise).

    Inputs, the output folder and the model are checked before any work;
    a problem ends it with one line on stderr, status 2.

    Example
    -------
    >>> try:
    ...     main(["--model", "m", "/no/such.wav", "--out", "o"])
    ... except SystemExit as err:
    ...     print(err.code)
    2
    """
    args = parse_args(argv)
    os.environ.setdefault("SB_LOG_LEVEL", "ERROR")  # SpeechBrain's INFO
    files = check_inputs(args.inputs, args.chunk_seconds,
                         args.overlap_seconds)
    check_output_folder(args.out)
    model = NoiseAwareSeparation.from_source(
        args.model, savedir=args.savedir, device=args.device,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
    )
    with tqdm(files, desc="separating", unit="file", file=sys.stderr,
              disable=None) as progress:
        for path in progress:
            stem = os.path.splitext(os.path.basename(path))[0]
            for written in write_separated(model.separate(path), stem,
                                           args.out):
                progress.write(written, file=sys.stdout)


if __name__ == "__main__":
    main()
