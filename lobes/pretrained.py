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
  noise output of NASS returned apart (``separate``); ``separate_file`` with
  SpeechBrain's signature and return: every output in the masking
  network's order, output ``noise_index`` the noise, as
  ``SepformerSeparation.separate_file`` returns them;
- :class:`ChunkedWaveformEnhancement` (``WaveformEnhancement``);
- both: long recordings in overlapping chunks (:func:`overlap_add`), so
  memory stays bounded whatever the length; files at another rate than the
  model's resampled with a notice on stderr, stereo files refused in one
  line; and ``from_source``, which loads a training run folder, an exported
  folder or a hub id alike through :func:`lobes.runs.load_trained_run`.

Chunks are stitched by :func:`lobes.chunking.overlap_add`; an input shorter
than the model takes is padded to its minimum
(:func:`lobes.chunking.minimum_length`) with a notice.

Which output is the noise (``noise_index``): for NASS trained with
``noise_slot: fixed`` the last one; with ``noise_slot: pit`` the output that
PIT matched to the noise most often on the validation set (counted during
training and saved with each checkpoint). Baselines have none (``None``).

Loading a ``hyperparams.yaml`` can run code: load only folders and hub
repositories you trust.

Authors
 * noise-robust-sb contributors 2025
"""

import logging
import os
import sys

import torch
import torchaudio.functional as AF
from speechbrain.dataio.preprocess import AudioNormalizer
from speechbrain.inference.enhancement import WaveformEnhancement
from speechbrain.inference.separation import SepformerSeparation
from speechbrain.utils.data_utils import split_path
from speechbrain.utils.fetching import fetch

from lobes.chunking import (  # noqa: F401 (public here before the split)
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    check_chunking,
    chunk_starts,
    minimum_length,
    overlap_add,
    pad_to_minimum,
)
from lobes.data.audio import audio_info, read_audio, write_audio
from lobes.errors import ModelSourceError
from lobes.models.noise_aware import NoiseAwareSeparator, NoiseOutputTracker
from lobes.runs import (
    check_model_checkpoints,
    is_hub_id,
    load_trained_run,
    read_state_file,
)
from lobes.waveform_adapter import WaveformEnhancementAdapter

logger = logging.getLogger(__name__)


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
    return path.startswith(("http://", "https://")) or is_hub_id(
        os.path.dirname(path)
    )


def noise_output_counts(checkpoint):
    """How often each output was PIT's noise on validation, or ``None``.

    Example
    -------
    >>> from speechbrain.utils.checkpoints import Checkpoint
    >>> print(noise_output_counts(Checkpoint("CKPT", {}, {})))
    None
    """
    paramfiles = getattr(checkpoint, "paramfiles", None) or {}
    path = paramfiles.get("noise_output_tracker")
    if path is None or not os.path.isfile(path):
        return None
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

    @property
    def minimum_samples(self):
        """The fewest samples the model takes (:func:`minimum_length`).

        Found once, by running the model on silence, the first time an
        input shorter than a chunk comes.
        """
        if not hasattr(self, "_minimum_samples"):
            self._minimum_samples = minimum_length(self._one_pass)
        return self._minimum_samples

    def _process(self, signal, name=None):
        """Outputs ``[T, S]`` of a recording ``[T]``, chunk by chunk.

        A recording shorter than :attr:`minimum_samples` is padded with
        silence to that length, with a one-line notice on stderr, and its
        outputs cut back to its length.
        """
        signal = torch.as_tensor(signal).float().reshape(-1)
        length = signal.shape[0]
        chunk, overlap = self._chunk_samples()
        if length < chunk:
            minimum = self.minimum_samples
            if minimum is not None and length < minimum:
                rate = int(self.hparams.sample_rate)
                print(
                    f"notice: {name or 'the input'} has {length} samples "
                    f"({length / rate:.4f} s); the model needs at least "
                    f"{minimum} ({minimum / rate:.4f} s at {rate} Hz): "
                    f"padded with silence to {minimum} samples, outputs cut "
                    f"back to {length}",
                    file=sys.stderr,
                )
                signal = pad_to_minimum(signal, minimum)
        return overlap_add(self._one_pass, signal, chunk, overlap)[:length]


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
        check_model_checkpoints(source, ["separator",
                                         "noise_output_tracker"])
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
        return NoiseAwareSeparator(
            self.mods.encoder, self.mods.masknet, self.mods.decoder,
            num_spks=self.num_speakers,
            noise_output=self.noise_index is not None,
        )

    def _one_pass(self, segment):
        """All outputs ``[L, S]`` of one segment ``[L]``, on the CPU."""
        return self.separate_batch(segment.unsqueeze(0))[0].float().cpu()

    @torch.no_grad()
    def separate_outputs(self, mixture, name=None):
        """All outputs ``[T, S]`` of a mixture ``[T]``, chunk by chunk.

        The outputs keep the order of the masking network (of the first
        chunk, for a long recording). A mixture shorter than the model's
        minimum is padded (see :attr:`minimum_samples`); ``name`` is what
        the notice calls it.
        """
        return self._process(mixture, name)

    def separate(self, mixture):
        """Separate a mixture: a tensor ``[T]`` at the model's rate, or a file.

        Returns
        -------
        dict
            ``speakers`` ``[T, N]``; ``noise`` ``[T]`` (``None`` for a
            baseline without noise output); ``sample_rate``.
        """
        name = None
        if isinstance(mixture, (str, os.PathLike)):
            name = str(mixture)
            mixture = self.load_audio(name)
        outputs = self.separate_outputs(mixture, name)
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
            of 1: all the outputs of the masking network in its own order,
            exactly as SpeechBrain's ``SepformerSeparation.separate_file``
            returns them (output :attr:`noise_index` is the noise, the
            others are the speakers; :meth:`separate` returns them apart).
        """
        mixture = self.load_audio(path, savedir=savedir)
        outputs = self.separate_outputs(mixture, str(path))
        peaks = outputs.abs().max(dim=0, keepdim=True)[0].clamp(min=1e-8)
        return (outputs / peaks).unsqueeze(0)


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
        check_model_checkpoints(source, ["enhance_model"])
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

    def _one_pass(self, segment):
        """The enhanced segment ``[L, 1]`` of one segment ``[L]``."""
        enhanced = self.enhance_batch(segment.unsqueeze(0))
        return enhanced.reshape(-1, 1).float().cpu()

    @torch.no_grad()
    def enhance(self, noisy, name=None):
        """Enhance a recording ``[T]`` at the model's rate, chunk by chunk.

        A recording shorter than the model's minimum is padded (see
        :attr:`minimum_samples`); ``name`` is what the notice calls it.
        """
        return self._process(noisy, name)[:, 0]

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
        enhanced = self.enhance(self.load_audio(filename, savedir=savedir),
                                str(filename))
        if output_filename is not None:
            write_audio(output_filename, enhanced,
                        int(self.hparams.sample_rate))
        return enhanced
