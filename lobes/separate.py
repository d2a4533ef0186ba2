"""Separate recordings with a trained separation recipe: speakers and noise.

Load the output folder of a finished ``recipes/*/separation/train.py`` run
(its ``hyperparams.yaml`` copy and the best checkpoint in ``save/``) and
separate a file or a tensor. Long inputs are processed in overlapping
chunks, so memory stays bounded whatever the length: each chunk's outputs
are put in the order of the previous chunk's by matching the overlapping
parts (cosine similarity over all output permutations), then cross-faded.

Sample rate: a file at another rate than the model's is resampled to the
model's rate (a notice is printed) and the outputs are written at the
model's rate. Stereo files are refused with a one-line error (downmix
first).

Which output is the noise: for NASS trained with ``noise_slot: fixed`` the
last one; with ``noise_slot: pit`` the output that PIT matched to the noise
most often on the validation set (counted during training and saved with
each checkpoint). Baselines have no noise output.

Command line::

    python -m lobes.separate --model results/nass_sepformer/1234 mix.wav \\
        [more.wav ...] --out separated/

writes ``separated/<stem>_s1.wav ... <stem>_sN.wav`` and
``<stem>_noise.wav``.

Authors
 * noise-robust-sb contributors 2025
"""

import argparse
import itertools
import logging
import os
import sys

import torch

from lobes.data.audio import audio_info, read_audio, write_audio
from lobes.errors import ModelSourceError, UserError, exit_on_user_error

logger = logging.getLogger(__name__)


def _match_order(previous, current):
    """Permutation of ``current``'s outputs that best matches ``previous``.

    Arguments
    ---------
    previous, current : torch.Tensor
        ``[T, S]`` estimates over the same stretch of audio.

    Returns
    -------
    list of int
        ``order`` such that ``current[:, order]`` lines up with
        ``previous``.

    Example
    -------
    >>> a = torch.randn(100, 3)
    >>> _match_order(a, a[:, [2, 0, 1]] * 0.5)
    [1, 2, 0]
    """
    prev = previous - previous.mean(dim=0)
    cur = current - current.mean(dim=0)
    prev = prev / (prev.norm(dim=0, keepdim=True) + 1e-8)
    cur = cur / (cur.norm(dim=0, keepdim=True) + 1e-8)
    similarity = prev.t() @ cur  # [S_prev, S_cur]
    sources = similarity.shape[0]
    best, best_score = None, None
    for order in itertools.permutations(range(sources)):
        score = float(similarity[range(sources), list(order)].sum())
        if best_score is None or score > best_score:
            best, best_score = list(order), score
    return best


def chunk_starts(length, chunk, hop):
    """Start samples of chunks of ``chunk`` samples covering ``length``.

    Example
    -------
    >>> chunk_starts(25, 10, 8)
    [0, 8, 15]
    >>> chunk_starts(7, 10, 8)
    [0]
    """
    if length <= chunk:
        return [0]
    starts = list(range(0, length - chunk + 1, hop))
    if starts[-1] + chunk < length:
        starts.append(length - chunk)
    return starts


class NoiseAwareSeparation:
    """A trained separator ready to separate speakers (and noise).

    Arguments
    ---------
    separator : lobes.models.noise_aware.NoiseAwareSeparator
        The trained separator (eval mode is set here).
    sample_rate : int
        The rate the separator was trained at.
    noise_index : int, optional
        Which output is the noise (``None`` for a baseline).
    chunk_seconds : float
        Length of the chunks long inputs are cut into.
    overlap_seconds : float
        Overlap between consecutive chunks (aligns outputs, cross-fades).
    device : str
        Torch device.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> from lobes.models.noise_aware import NoiseAwareSeparator
    >>> separator = NoiseAwareSeparator(
    ...     Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=3),
    ...     Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2)
    >>> model = NoiseAwareSeparation(separator, 8000, noise_index=2,
    ...                              chunk_seconds=0.5, overlap_seconds=0.1)
    >>> result = model.separate(torch.randn(12000))
    >>> result["speakers"].shape, result["noise"].shape
    (torch.Size([12000, 2]), torch.Size([12000]))
    """

    def __init__(
        self,
        separator,
        sample_rate,
        noise_index=None,
        chunk_seconds=8.0,
        overlap_seconds=1.0,
        device="cpu",
    ):
        if not 0 <= overlap_seconds < chunk_seconds:
            raise UserError(
                f"overlap ({overlap_seconds} s) must be shorter than the "
                f"chunk ({chunk_seconds} s): fix --overlap_seconds"
            )
        self.separator = separator.to(device).eval()
        self.sample_rate = int(sample_rate)
        self.noise_index = noise_index
        self.chunk = max(1, int(round(chunk_seconds * self.sample_rate)))
        self.overlap = int(round(overlap_seconds * self.sample_rate))
        self.device = device

    @classmethod
    def from_recipe(cls, folder, device="cpu", **kwargs):
        """Load the best checkpoint of a separation recipe's output folder.

        Arguments
        ---------
        folder : str
            The ``--output_folder`` of a finished training run (holding
            ``hyperparams.yaml`` and ``save/CKPT+*``).
        device : str
            Torch device.
        **kwargs
            ``chunk_seconds``, ``overlap_seconds``.

        Returns
        -------
        NoiseAwareSeparation

        Example
        -------
        >>> NoiseAwareSeparation.from_recipe("/no/such/run")
        Traceback (most recent call last):
        ...
        lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
        """
        from lobes.runs import load_trained_run

        run = load_trained_run(folder, ["separator"], kind="separation")
        separator = run.modules["separator"]
        if not hasattr(separator, "num_outputs"):
            raise ModelSourceError(
                f"{folder}: its `separator` is not a NoiseAwareSeparator; "
                "is this a separation recipe's output folder?"
            )
        noise_index = None
        if separator.noise_output:
            noise_index = _noise_index(separator, run)
        return cls(
            separator,
            run.experiment["sample_rate"],
            noise_index=noise_index,
            device=device,
            **kwargs,
        )

    @property
    def num_spks(self):
        """Number of speakers the model separates."""
        return int(self.separator.num_spks)

    @torch.no_grad()
    def _run(self, segment):
        """Separator outputs ``[L, S]`` of one chunk ``[L]``."""
        mix = segment.to(self.device).float().unsqueeze(0)
        return self.separator(mix).waveforms[0].float().cpu()

    @torch.no_grad()
    def separate_outputs(self, mixture):
        """All outputs ``[T, S]`` of a mixture ``[T]``, chunk by chunk.

        The outputs keep the order of the first chunk.
        """
        mixture = torch.as_tensor(mixture).float().reshape(-1)
        length = mixture.shape[0]
        if length <= self.chunk:
            return self._run(mixture)
        hop = self.chunk - self.overlap
        starts = chunk_starts(length, self.chunk, hop)
        total = torch.zeros(length, self.separator.num_outputs)
        weight = torch.zeros(length)
        previous = None  # (start, end, outputs in global order)
        for k, start in enumerate(starts):
            end = min(start + self.chunk, length)
            outputs = self._run(mixture[start:end])
            fade_in = 0
            if previous is not None:
                p_start, p_end, p_out = previous
                fade_in = max(p_end - start, 0)
                if fade_in > 0:
                    order = _match_order(
                        p_out[start - p_start:], outputs[:fade_in]
                    )
                    outputs = outputs[:, order]
            fade_out = 0
            if k + 1 < len(starts):
                fade_out = max(end - starts[k + 1], 0)
            window = torch.ones(end - start)
            if fade_in:
                window[:fade_in] = torch.linspace(0, 1, fade_in + 2)[1:-1]
            if fade_out:
                window[-fade_out:] = torch.linspace(1, 0, fade_out + 2)[1:-1]
            total[start:end] += outputs * window.unsqueeze(1)
            weight[start:end] += window
            previous = (start, end, outputs)
        return total / weight.clamp(min=1e-8).unsqueeze(1)

    def separate(self, mixture):
        """Separate a mixture (tensor ``[T]`` at the model's rate, or a file).

        Returns
        -------
        dict
            ``speakers`` ``[T, N]``; ``noise`` ``[T]`` (``None`` for a
            baseline without noise output); ``sample_rate``.
        """
        if isinstance(mixture, (str, os.PathLike)):
            mixture = self.load(str(mixture))
        outputs = self.separate_outputs(mixture)
        if self.noise_index is None:
            return {
                "speakers": outputs,
                "noise": None,
                "sample_rate": self.sample_rate,
            }
        keep = [i for i in range(outputs.shape[1]) if i != self.noise_index]
        return {
            "speakers": outputs[:, keep],
            "noise": outputs[:, self.noise_index],
            "sample_rate": self.sample_rate,
        }

    def load(self, path):
        """Read a mono file, resampled to the model's rate with a notice."""
        rate = int(audio_info(path).samplerate)
        signal = read_audio(path)
        if rate != self.sample_rate:
            print(
                f"notice: {path} is at {rate} Hz; resampling to the model's "
                f"{self.sample_rate} Hz (outputs are at {self.sample_rate} Hz)",
                file=sys.stderr,
            )
            import torchaudio.functional as AF

            signal = AF.resample(signal, rate, self.sample_rate)
        return signal

    def separate_file(self, path, out_dir):
        """Separate a file into ``<out_dir>/<stem>_s1.wav ... _noise.wav``.

        Returns
        -------
        list of str
            The files written.
        """
        result = self.separate(path)
        stem = os.path.splitext(os.path.basename(path))[0]
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
            write_audio(target, signal * scale, self.sample_rate)
            written.append(target)
        return written


def _noise_index(separator, run):
    """Which output carries the noise (see the module docstring)."""
    last = separator.num_outputs - 1
    objectives = run.experiment.get("objectives") or {}
    if objectives.get("noise_slot", "pit") == "fixed":
        return last
    checkpoint = run.checkpoint
    path = checkpoint.paramfiles.get("noise_output_tracker")
    if path is None or not os.path.isfile(path):
        logger.warning(
            "%s: no noise-output statistics; taking the last output as noise",
            checkpoint.path,
        )
        return last
    counts = torch.load(path, map_location="cpu", weights_only=True)["counts"]
    if int(counts.sum()) == 0:
        return last
    share = float(counts.max()) / float(counts.sum())
    if share < 0.8:
        logger.warning(
            "the model put the noise in output %d for only %.0f%% of the "
            "validation mixtures; its noise estimate may be a speaker",
            int(counts.argmax()) + 1, 100 * share,
        )
    return int(counts.argmax())


def parse_args(argv=None):
    """Command-line arguments of ``python -m lobes.separate``."""
    parser = argparse.ArgumentParser(
        prog="python -m lobes.separate",
        description="Separate speakers (and noise) with a trained recipe.",
    )
    parser.add_argument("inputs", nargs="+", help="mixture wav files")
    parser.add_argument(
        "--model", required=True,
        help="output folder of a separation training run",
    )
    parser.add_argument("--out", required=True, help="folder for the wavs")
    parser.add_argument("--chunk_seconds", type=float, default=8.0)
    parser.add_argument("--overlap_seconds", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    """Separate each input file into ``<out>/<stem>_s<i>.wav`` (+ noise)."""
    args = parse_args(argv)
    os.environ.setdefault("SB_LOG_LEVEL", "ERROR")  # SpeechBrain's INFO
    for path in args.inputs:
        audio_info(path)  # fail early, in one line, on a bad input
    model = NoiseAwareSeparation.from_recipe(
        args.model,
        device=args.device,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
    )
    for path in args.inputs:
        for written in model.separate_file(path, args.out):
            print(written)


if __name__ == "__main__":
    main()
