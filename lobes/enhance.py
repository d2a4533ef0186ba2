"""Enhance recordings from the command line with a trained model.

``--model`` takes the output folder of a finished
``recipes/*/enhance/train.py`` run, a folder written by
``python -m lobes.export``, or the hub id of one; all three load through
:func:`lobes.runs.load_trained_run`, into
:class:`lobes.pretrained.ChunkedWaveformEnhancement` (SpeechBrain's
``WaveformEnhancement`` with chunked overlap-add for long recordings and
resampling with a notice). Inputs are wav or flac files, or folders of
them; a progress bar runs over them on a terminal.

Command line::

    python -m lobes.enhance --model results/convtasnet/1986 noisy.wav \\
        [more.wav | folder/ ...] --out enhanced/

writes ``enhanced/<stem>_enhanced.wav`` at the model's rate.

Authors
 * noise-robust-sb contributors 2025
"""

import os
import sys

from tqdm import tqdm

from lobes.errors import exit_on_user_error
from lobes.inference_cli import (
    check_inputs,
    check_output_folder,
    inference_parser,
)
from lobes.pretrained import ChunkedWaveformEnhancement


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.enhance``.

    Example
    -------
    >>> args = parse_args(["--model", "m", "a.wav", "--out", "o"])
    >>> args.inputs, args.chunk_seconds
    (['a.wav'], None)
    """
    parser = inference_parser(
        "python -m lobes.enhance",
        "Enhance noisy speech with a trained model.",
        "noisy files (wav, flac) or folders", "enhancement",
    )
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    """Enhance each input into ``<out>/<stem>_enhanced.wav``.

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
    model = ChunkedWaveformEnhancement.from_source(
        args.model, savedir=args.savedir, device=args.device,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
    )
    with tqdm(files, desc="enhancing", unit="file", file=sys.stderr,
              disable=None) as progress:
        for path in progress:
            stem = os.path.splitext(os.path.basename(path))[0]
            target = os.path.join(args.out, f"{stem}_enhanced.wav")
            model.enhance_file(path, output_filename=target)
            progress.write(target, file=sys.stdout)


if __name__ == "__main__":
    main()
