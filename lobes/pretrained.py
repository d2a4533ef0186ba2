"""Inference with trained models, on SpeechBrain's ``Pretrained`` interfaces.

A folder written by ``python -m lobes.export`` is in SpeechBrain's
pretrained layout, so SpeechBrain's own classes load it:
``speechbrain.inference.separation.SepformerSeparation`` for every
separation backbone (SepFormer, DPRNN, Conv-TasNet: encoder, masking
network, decoder) and ``speechbrain.inference.enhancement.
WaveformEnhancement`` for every enhancement backbone (each maps a noisy
waveform to an enhanced one, the STFT of the spectral-mask model included;
:class:`WaveformEnhancementAdapter` gives it the two outputs that class
unpacks). The two classes here are thin subclasses adding what the recipes'
models need on top:

- :class:`NoiseAwareSeparation` (``SepformerSeparation``): speakers and the
  noise output of NASS returned apart; ``separate_file`` with SpeechBrain's
  signature and return, the speakers first and the noise last;
- :class:`ChunkedWaveformEnhancement` (``WaveformEnhancement``);
- both: long recordings in overlapping chunks (:func:`overlap_add`), so
  memory stays bounded whatever the length; files at another rate than the
  model's resampled with a notice on stderr, stereo files refused in one
  line; and ``from_source``, which loads a training run folder, an exported
  folder or a hub id alike through :func:`lobes.runs.load_trained_run`.

Chunks: each chunk's outputs are put in the order of the previous chunk's by
matching the overlapping parts (cosine similarity over all output
permutations), then cross-faded. Neither SpeechBrain nor torch has an
overlap-add that re-aligns permuted outputs, so it lives here, once.

Which output is the noise (``noise_index``): for NASS trained with
``noise_slot: fixed`` the last one; with ``noise_slot: pit`` the output that
PIT matched to the noise most often on the validation set (counted during
training and saved with each checkpoint). Baselines have none (``None``).

Loading a ``hyperparams.yaml`` can run code: load only folders and hub
repositories you trust.

Authors
 * noise-robust-sb contributors 2025
"""

import glob
import itertools
import logging
import os
import sys

import torch
from speechbrain.inference.enhancement import WaveformEnhancement
from speechbrain.inference.separation import SepformerSeparation

from lobes.data.audio import audio_info, read_audio, write_audio
from lobes.errors import ModelSourceError, UserError

logger = logging.getLogger(__name__)

#: Length of the chunks long recordings are cut into (seconds).
DEFAULT_CHUNK_SECONDS = 8.0
#: Overlap of consecutive chunks (seconds): aligns outputs, cross-fades.
DEFAULT_OVERLAP_SECONDS = 1.0
#: Audio files the command-line tools pick up in a folder.
AUDIO_EXTENSIONS = (".wav", ".flac")


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


def overlap_add(process, signal, chunk, overlap):
    """Run ``process`` over overlapping chunks of ``signal`` and stitch.

    Arguments
    ---------
    process : callable
        Maps a chunk ``[L]`` to its outputs ``[L, S]``.
    signal : torch.Tensor
        The whole recording ``[T]``.
    chunk : int
        Chunk length in samples; a signal no longer than this is processed
        in one call.
    overlap : int
        Samples shared by consecutive chunks, ``0 <= overlap < chunk``.

    Returns
    -------
    torch.Tensor
        ``[T, S]``, in the output order of the first chunk.

    Example
    -------
    >>> signal = torch.randn(1000)
    >>> double = lambda x: torch.stack([x, 2 * x], dim=1)
    >>> out = overlap_add(double, signal, chunk=300, overlap=100)
    >>> torch.allclose(out, double(signal), atol=1e-6)
    True
    """
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap {overlap} not in [0, chunk {chunk})")
    length = signal.shape[0]
    if length <= chunk:
        return process(signal)
    starts = chunk_starts(length, chunk, chunk - overlap)
    total, weight, previous = None, torch.zeros(length), None
    for k, start in enumerate(starts):
        end = min(start + chunk, length)
        outputs = process(signal[start:end])
        if total is None:
            total = torch.zeros(length, outputs.shape[1])
        fade_in = 0
        if previous is not None:
            p_start, p_end, p_out = previous
            fade_in = max(p_end - start, 0)
            if fade_in > 0:
                order = _match_order(p_out[start - p_start:],
                                     outputs[:fade_in])
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


def check_chunking(chunk_seconds, overlap_seconds):
    """Stop in one line unless ``0 <= overlap_seconds < chunk_seconds``.

    Example
    -------
    >>> check_chunking(8.0, 1.0)
    >>> check_chunking(1.0, 2.0)
    Traceback (most recent call last):
    ...
    lobes.errors.UserError: overlap (2.0 s) must be shorter than the chunk \
(1.0 s): fix --overlap_seconds
    """
    if not 0 <= overlap_seconds < chunk_seconds:
        raise UserError(
            f"overlap ({overlap_seconds} s) must be shorter than the chunk "
            f"({chunk_seconds} s): fix --overlap_seconds"
        )


def load_mono(path, sample_rate, savedir=None):
    """A mono recording at ``sample_rate``, fetched like SpeechBrain does.

    ``path`` may be a local file or any location SpeechBrain's ``fetch``
    takes (``owner/repo/file.wav`` on the hub, a URL with ``savedir``). A
    file at another rate is resampled, with a notice on stderr; a stereo
    file is refused in one line.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> write_audio(path, torch.zeros(1600), 16000)
    >>> load_mono(path, 16000).shape
    torch.Size([1600])
    """
    path = str(path)
    if not os.path.isfile(path) and _is_remote(path):
        from speechbrain.utils.data_utils import split_path
        from speechbrain.utils.fetching import fetch

        source, name = split_path(path)
        path = str(fetch(name, source=source, savedir=savedir))
    rate = int(audio_info(path).samplerate)
    signal = read_audio(path)
    if rate != int(sample_rate):
        print(
            f"notice: {path} is at {rate} Hz; resampling to the model's "
            f"{sample_rate} Hz (outputs are at {sample_rate} Hz)",
            file=sys.stderr,
        )
        import torchaudio.functional as AF

        signal = AF.resample(signal, rate, int(sample_rate))
    return signal


def _is_remote(path):
    """Whether a path names a URL or a file of a hub repository.

    Example
    -------
    >>> [_is_remote(p) for p in ("owner/repo/mix.wav", "https://a.b/c.wav",
    ...                          "mix.wav", "/abs/mix.wav", "./a/b.wav")]
    [True, True, False, False, False]
    """
    from lobes.runs import is_hub_id

    return path.startswith(("http://", "https://")) or is_hub_id(
        os.path.dirname(path)
    )


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
    import argparse

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


def noise_output_counts(checkpoint):
    """How often each output was PIT's noise on validation, or ``None``."""
    paramfiles = getattr(checkpoint, "paramfiles", None) or {}
    path = paramfiles.get("noise_output_tracker")
    if path is None or not os.path.isfile(path):
        return None
    from lobes.runs import read_state_file

    return read_state_file(path)["counts"]


def noise_output_index(experiment, checkpoint, num_outputs):
    """Which output of a noise-aware separator carries the noise.

    An exported folder names it (``noise_index``); for a training run it is
    :meth:`lobes.models.noise_aware.NoiseOutputTracker.inference_index` of
    the counts saved with the checkpoint (the rule the recipe's test uses).

    Arguments
    ---------
    experiment : dict
        A loaded run's experiment (``objectives.noise_slot``) or an exported
        folder's hparams (``noise_index``).
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The checkpoint loaded (its ``noise_output_tracker`` counts).
    num_outputs : int
        The separator's outputs, speakers and noise.

    Returns
    -------
    int

    Example
    -------
    >>> noise_output_index({"noise_index": 0}, None, 3)
    0
    >>> noise_output_index({"objectives": {"noise_slot": "fixed"}}, None, 3)
    2
    """
    from lobes.models.noise_aware import NoiseOutputTracker

    if "noise_index" in experiment:
        return int(experiment["noise_index"])
    noise_slot = (experiment.get("objectives") or {}).get("noise_slot", "pit")
    tracker = NoiseOutputTracker(num_outputs)
    counts = noise_output_counts(checkpoint)
    if counts is not None:
        tracker.load_state_dict({"counts": counts})
    if noise_slot != "fixed":
        if counts is None:
            logger.warning(
                "%s: no noise-output statistics; taking the last output as "
                "noise", getattr(checkpoint, "path", "the checkpoint"),
            )
        elif 0 < tracker.share < 0.8:
            logger.warning(
                "the model put the noise in output %d (counting from 0) for "
                "only %.0f%% of the validation mixtures; its noise estimate "
                "may be a speaker", tracker.noise_index, 100 * tracker.share,
            )
    return tracker.inference_index(noise_slot)


class _LongRecordings:
    """What both interfaces share: chunk settings, loading recordings."""

    def _chunk_samples(self):
        """``(chunk, overlap)`` in samples at the model's rate."""
        rate = int(self.hparams.sample_rate)
        chunk_s = getattr(self.hparams, "chunk_seconds", None)
        overlap_s = getattr(self.hparams, "overlap_seconds", None)
        chunk_s = DEFAULT_CHUNK_SECONDS if chunk_s is None else chunk_s
        overlap_s = DEFAULT_OVERLAP_SECONDS if overlap_s is None else overlap_s
        check_chunking(chunk_s, overlap_s)
        return max(1, round(chunk_s * rate)), round(overlap_s * rate)

    def load_audio(self, path, savedir=None):
        """A mono recording at the model's rate (see :func:`load_mono`)."""
        return load_mono(path, int(self.hparams.sample_rate), savedir)


def _chunk_hparams(values, chunk_seconds, overlap_seconds):
    """Chunk settings: given ones first, then the source's, then defaults."""
    return {
        "chunk_seconds": chunk_seconds if chunk_seconds is not None
        else values.get("chunk_seconds", DEFAULT_CHUNK_SECONDS),
        "overlap_seconds": overlap_seconds if overlap_seconds is not None
        else values.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS),
    }


class NoiseAwareSeparation(_LongRecordings, SepformerSeparation):
    """SpeechBrain's separation interface, with the noise output apart.

    Hparams: ``num_spks`` (outputs of the masking network: the speakers,
    plus one for the noise with NASS), ``sample_rate``, ``noise_index``
    (the noise output, ``None`` for a baseline), ``chunk_seconds`` and
    ``overlap_seconds`` (optional). Modules: ``encoder``, ``masknet``,
    ``decoder``, as for ``SepformerSeparation``, whose ``separate_batch``
    (all outputs, one pass) this inherits.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> model = NoiseAwareSeparation(
    ...     modules={"encoder": Encoder(16, 8),
    ...              "masknet": MaskNet(8, 4, 4, 3, 1, 1, C=3),
    ...              "decoder": Decoder(8, 1, kernel_size=16, stride=8,
    ...                                 bias=False)},
    ...     hparams={"num_spks": 3, "sample_rate": 8000, "noise_index": 2,
    ...              "chunk_seconds": 0.5, "overlap_seconds": 0.1},
    ...     run_opts={"device": "cpu"})
    >>> result = model.separate(torch.randn(12000))
    >>> result["speakers"].shape, result["noise"].shape
    (torch.Size([12000, 2]), torch.Size([12000]))
    >>> model.separate_batch(torch.randn(2, 800)).shape
    torch.Size([2, 800, 3])
    """

    HPARAMS_NEEDED = ["num_spks", "sample_rate"]
    MODULES_NEEDED = ["encoder", "masknet", "decoder"]

    @classmethod
    def from_source(cls, source, savedir=None, device="cpu",
                    chunk_seconds=None, overlap_seconds=None):
        """Load a separation model from a run folder, export or hub id.

        Arguments
        ---------
        source : str
            The ``output_folder`` of a finished separation run, a folder
            written by ``python -m lobes.export``, or a hub id of one (see
            :func:`lobes.runs.load_trained_run`).
        savedir : str, optional
            Where an exported folder's files are linked or a hub model's
            downloaded (default: the hub cache).
        device : str
            Torch device.
        chunk_seconds, overlap_seconds : float, optional
            Chunking of long recordings (default: the exported folder's
            settings, else :data:`DEFAULT_CHUNK_SECONDS` and
            :data:`DEFAULT_OVERLAP_SECONDS`).

        Returns
        -------
        NoiseAwareSeparation

        Example
        -------
        >>> NoiseAwareSeparation.from_source("/no/such/run")
        Traceback (most recent call last):
        ...
        lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
        """
        from lobes.runs import load_trained_run

        run = load_trained_run(source, ["separator"], kind="separation",
                               savedir=savedir)
        separator = run.modules["separator"]
        if not hasattr(separator, "num_outputs"):
            raise ModelSourceError(
                f"{source}: its `separator` is not a NoiseAwareSeparator; "
                "is this a separation recipe's output folder?"
            )
        noise_index = None
        if separator.noise_output:
            noise_index = noise_output_index(
                run.experiment, run.checkpoint, separator.num_outputs
            )
        from speechbrain.dataio.preprocess import AudioNormalizer

        sample_rate = int(run.experiment["sample_rate"])
        hparams = {
            "num_spks": separator.num_outputs,
            "sample_rate": sample_rate,
            "noise_index": noise_index,
            "audio_normalizer": AudioNormalizer(sample_rate),
            **_chunk_hparams(run.experiment, chunk_seconds, overlap_seconds),
        }
        modules = {
            "encoder": separator.encoder,
            "masknet": separator.masknet,
            "decoder": separator.decoder,
        }
        return cls(modules=modules, hparams=hparams,
                   run_opts={"device": device})

    @classmethod
    def from_recipe(cls, folder, device="cpu", **kwargs):
        """:meth:`from_source`, under the name it had before exports.

        Example
        -------
        >>> NoiseAwareSeparation.from_recipe("/no/such/run")
        Traceback (most recent call last):
        ...
        lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
        """
        return cls.from_source(folder, device=device, **kwargs)

    @property
    def noise_index(self):
        """Which output is the noise (``None``: no noise output)."""
        index = getattr(self.hparams, "noise_index", None)
        return None if index is None else int(index)

    @property
    def num_speakers(self):
        """Number of speakers the model separates."""
        return int(self.hparams.num_spks) - int(self.noise_index is not None)

    @property
    def output_order(self):
        """The outputs, speakers first and the noise (if any) last."""
        outputs = list(range(int(self.hparams.num_spks)))
        if self.noise_index is None:
            return outputs
        outputs.remove(self.noise_index)
        return outputs + [self.noise_index]

    @property
    def separator(self):
        """The same modules as the training-time ``NoiseAwareSeparator``."""
        from lobes.models.noise_aware import NoiseAwareSeparator

        return NoiseAwareSeparator(
            self.mods.encoder, self.mods.masknet, self.mods.decoder,
            num_spks=self.num_speakers,
            noise_output=self.noise_index is not None,
        )

    @torch.no_grad()
    def separate_outputs(self, mixture):
        """All outputs ``[T, S]`` of a mixture ``[T]``, chunk by chunk.

        The outputs keep the order of the masking network (of the first
        chunk, for a long recording).
        """
        mixture = torch.as_tensor(mixture).float().reshape(-1)
        chunk, overlap = self._chunk_samples()

        def one_pass(segment):
            outputs = self.separate_batch(segment.unsqueeze(0))
            return outputs[0].float().cpu()

        return overlap_add(one_pass, mixture, chunk, overlap)

    def separate(self, mixture):
        """Separate a mixture: a tensor ``[T]`` at the model's rate, or a file.

        Returns
        -------
        dict
            ``speakers`` ``[T, N]``; ``noise`` ``[T]`` (``None`` for a
            baseline without noise output); ``sample_rate``.
        """
        if isinstance(mixture, (str, os.PathLike)):
            mixture = self.load_audio(str(mixture))
        outputs = self.separate_outputs(mixture)
        order = self.output_order
        speakers = order[:self.num_speakers]
        return {
            "speakers": outputs[:, speakers],
            "noise": None if self.noise_index is None
            else outputs[:, self.noise_index],
            "sample_rate": int(self.hparams.sample_rate),
        }

    def separate_file(self, path, savedir=None):
        """Separate a file, as SpeechBrain's ``separate_file`` does.

        Arguments
        ---------
        path : str
            A local file, or any location SpeechBrain fetches.
        savedir : str, optional
            Where a fetched file is stored.

        Returns
        -------
        torch.Tensor
            ``[1, T, S]`` at the model's rate, each output scaled to a peak
            of 1 (as SpeechBrain does): the speakers, then the noise last
            when the model has a noise output.
        """
        mixture = self.load_audio(path, savedir=savedir)
        outputs = self.separate_outputs(mixture)[:, self.output_order]
        peaks = outputs.abs().max(dim=0, keepdim=True)[0].clamp(min=1e-8)
        return (outputs / peaks).unsqueeze(0)


class WaveformEnhancementAdapter(torch.nn.Module):
    """A waveform enhancer with the two outputs ``WaveformEnhancement`` takes.

    SpeechBrain's ``WaveformEnhancement`` calls
    ``enhanced, _ = enhance_model(noisy)``; the recipes' enhancers return
    the enhanced waveform alone. This returns ``(enhanced, None)``. Its
    weights are the wrapped enhancer's: an exported folder's pretrainer
    loads ``enhance_model.ckpt`` into the enhancer itself.

    Arguments
    ---------
    enhancer : torch.nn.Module
        Maps noisy waveforms ``[B, T]`` to enhanced ones ``[B, T]``.

    Example
    -------
    >>> adapter = WaveformEnhancementAdapter(torch.nn.Identity())
    >>> enhanced, _ = adapter(torch.ones(1, 4))
    >>> enhanced
    tensor([[1., 1., 1., 1.]])
    """

    def __init__(self, enhancer):
        super().__init__()
        self.enhancer = enhancer

    def forward(self, noisy, lengths=None):
        """``(enhancer(noisy), None)``; ``lengths`` is not used."""
        return self.enhancer(noisy), None


class ChunkedWaveformEnhancement(_LongRecordings, WaveformEnhancement):
    """SpeechBrain's waveform enhancement interface, chunked for long files.

    Hparams: ``sample_rate``, ``chunk_seconds`` and ``overlap_seconds``
    (optional). Module: ``enhance_model``, a
    :class:`WaveformEnhancementAdapter` (whose ``enhancer`` is the
    recipe's model), as in an exported folder.

    Example
    -------
    >>> model = ChunkedWaveformEnhancement(
    ...     modules={"enhance_model": WaveformEnhancementAdapter(
    ...         torch.nn.Identity())},
    ...     hparams={"sample_rate": 16000, "chunk_seconds": 0.5,
    ...              "overlap_seconds": 0.1},
    ...     run_opts={"device": "cpu"})
    >>> noisy = torch.randn(20000)
    >>> torch.allclose(model.enhance(noisy), noisy, atol=1e-6)
    True
    """

    HPARAMS_NEEDED = ["sample_rate"]
    MODULES_NEEDED = ["enhance_model"]

    @classmethod
    def from_source(cls, source, savedir=None, device="cpu",
                    chunk_seconds=None, overlap_seconds=None):
        """Load an enhancement model from a run folder, export or hub id.

        Arguments are those of :meth:`NoiseAwareSeparation.from_source`.

        Example
        -------
        >>> ChunkedWaveformEnhancement.from_source("/no/such/run")
        Traceback (most recent call last):
        ...
        lobes.errors.ModelSourceError: /no/such/run: no such folder; ...
        """
        from speechbrain.dataio.preprocess import AudioNormalizer

        from lobes.runs import load_trained_run

        run = load_trained_run(source, ["enhance_model"],
                               kind="enhancement", savedir=savedir)
        sample_rate = run.experiment.get("sample_rate")
        if sample_rate is None:
            raise ModelSourceError(
                f"{source}: no sample_rate in its hyperparams.yaml; is this "
                "an enhancement model?"
            )
        hparams = {
            "sample_rate": int(sample_rate),
            "audio_normalizer": AudioNormalizer(int(sample_rate)),
            **_chunk_hparams(run.experiment, chunk_seconds, overlap_seconds),
        }
        adapter = WaveformEnhancementAdapter(run.modules["enhance_model"])
        return cls(modules={"enhance_model": adapter}, hparams=hparams,
                   run_opts={"device": device})

    @torch.no_grad()
    def enhance(self, noisy):
        """Enhance a recording ``[T]`` at the model's rate, chunk by chunk."""
        noisy = torch.as_tensor(noisy).float().reshape(-1)
        chunk, overlap = self._chunk_samples()

        def one_pass(segment):
            enhanced = self.enhance_batch(segment.unsqueeze(0))
            return enhanced.reshape(-1, 1).float().cpu()

        return overlap_add(one_pass, noisy, chunk, overlap)[:, 0]

    def enhance_file(self, filename, output_filename=None, savedir=None):
        """Enhance a file, as SpeechBrain's ``enhance_file`` does.

        Arguments
        ---------
        filename : str
            A local file, or any location SpeechBrain fetches.
        output_filename : str, optional
            Where to write the enhanced wav (at the model's rate).
        savedir : str, optional
            Where a fetched file is stored.

        Returns
        -------
        torch.Tensor
            The enhanced waveform ``[T]``.
        """
        enhanced = self.enhance(self.load_audio(filename, savedir=savedir))
        if output_filename is not None:
            write_audio(output_filename, enhanced,
                        int(self.hparams.sample_rate))
        return enhanced
