"""Test-time separation and evaluation of the audio-visual recipes.

The methods compared on the same noisy mixtures of two speakers, or of
one (single-speaker enhancement, ``J = 1``)
(``recipes/NTCD-TIMIT/av_separation/separate.py``):

- ``av_vae``: Monte Carlo EM (:class:`lobes.models.mcem.MCEM`) with a
  trained AV-VAE and each speaker's lips; with ``lips_fallback`` and an
  A-VAE, frames the lips do not explain fall back to the A-VAE (a
  per-frame switch inferred in the EM; one notice line per mixture whose
  lips explain fewer than half of a speaker's frames);
- ``a_vae``: the same with the audio-only VAE (no lips: the speakers differ
  only through the random draws);
- ``nmf``: NMF-only separation (:class:`lobes.models.nmf.NMFSeparator`)
  with a speech dictionary learned on the clean training speech;
- ``supervised``: a mask-based separator trained on mixtures
  (``hparams/supervised.yaml``);
- ``mixture``: the unprocessed mixture as every estimate (the reference
  point of the improvements).

Mixtures are scaled to unit RMS before the STFT and the estimates scaled
back. Several mixtures go through MCEM and NMF at once (padded, with a
frame mask). :func:`evaluate` scores the estimates against the references
with the permutation of best SI-SDR: SDR (BSS Eval), SI-SDR, their gains
over the mixture, PESQ (wide band) and STOI, each averaged over the
speakers, and whether the lips' order was the best permutation.

Authors
 * noise-robust-sb contributors 2025
"""

import copy
import math
import os
from typing import NamedTuple

import numpy as np
import torch

from lobes.data.audio import read_audio, write_audio
from lobes.data.av_data import load_lips, read_rows
from lobes.data.lip_input import (
    check_duration,
    check_frame_size,
    model_roi_size,
    resize_frames,
)
from lobes.errors import DataFolderError, HparamsError, ModelSourceError
from lobes.metrics import enhancement_metrics, separation_metrics
from lobes.models.av_vae import lips_per_frame
from lobes.models.nmf import learn_dictionary

#: Methods :func:`separate_all` knows, in report order.
METHODS = ("mixture", "av_vae", "a_vae", "nmf", "supervised")
#: Scores :func:`evaluate` returns.
SCORES = (
    "sdr", "sdr_i", "si_sdr", "si_sdr_i", "pesq", "stoi", "order_correct",
)  # fmt: skip


class AVMixture(NamedTuple):
    """One mixture to separate.

    Attributes
    ----------
    id : str
        Name.
    mixture : torch.Tensor
        ``[T]`` at 16 kHz.
    lips : list
        One ``[T_v, H, W]`` uint8 tensor per speaker.
    fps : float
        Video rate.
    references : torch.Tensor or None
        Clean speakers ``[J, T]`` in the order of ``lips``.

    Example
    -------
    >>> lips = [torch.zeros(30, 4, 4, dtype=torch.uint8)] * 2
    >>> item = AVMixture("m1", torch.zeros(16000), lips, 30.0)
    >>> item.id, len(item.lips), item.references is None
    ('m1', 2, True)
    """

    id: str
    mixture: torch.Tensor
    lips: list
    fps: float
    references: object = None


# ---------------------------------------------------------------- loading


def _best_checkpoint(folder):
    from speechbrain.utils.checkpoints import Checkpointer

    save = os.path.join(folder, "save")
    checkpoint = None
    if os.path.isdir(save):
        checkpointer = Checkpointer(save)
        checkpoint = checkpointer.find_checkpoint(min_key="loss")
        checkpoint = checkpoint or checkpointer.find_checkpoint()
    if checkpoint is None:
        raise ModelSourceError(
            f"{save}: no checkpoint; train the model to the end of an epoch "
            "(without --debug, or with --debug_persistently)"
        )
    return checkpoint


def load_trained(folder, key, device="cpu"):
    """The module ``key`` of a finished training run, best checkpoint loaded.

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
        recipe YAML includes one).

    Example
    -------
    >>> load_trained("/no/such/run", "vae")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/run: not a finished training ...
    """
    from hyperpyyaml import load_hyperpyyaml

    hparams_file = os.path.join(str(folder), "hyperparams.yaml")
    if not os.path.isfile(hparams_file):
        raise ModelSourceError(
            f"{folder}: not a finished training run (no hyperparams.yaml); "
            "pass the --output_folder of `python train.py hparams/<name>.yaml`"
        )
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin)
    except Exception as err:  # YAML or constructor errors
        reason = " ".join(f"{type(err).__name__}: {err}".split())
        raise ModelSourceError(
            f"{hparams_file}: cannot be loaded ({reason[:300]})"
        ) from None
    experiment = hparams.get("experiment") or {}
    module = hparams.get(key, experiment.get(key))
    if module is None:
        raise ModelSourceError(
            f"{hparams_file}: has no `{key}`; pass the output folder of a "
            f"{'VAE' if key == 'vae' else 'supervised'} training run"
        )
    checkpoint = _best_checkpoint(str(folder))
    path = checkpoint.paramfiles.get(key)
    if path is None or not os.path.isfile(path):
        raise ModelSourceError(
            f"{checkpoint.path}: no {key}.ckpt; re-train the model"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelSourceError(
            f"{path}: does not fit the model of {hparams_file} ({first})"
        ) from None
    return module.to(device).eval(), experiment or hparams


# ---------------------------------------------------------------- batching


def _rms(signal):
    return float(signal.pow(2).mean().sqrt().clamp(min=1e-8))


def stft_batch(mixtures, stft, device="cpu"):
    """Unit-RMS mixtures -> padded STFTs ``[B, F, N]``, frame mask, scales.

    Example
    -------
    >>> from lobes.models.av_vae import SineSTFT
    >>> spec, mask, scales = stft_batch([torch.randn(800), torch.randn(400)],
    ...                                 SineSTFT(128, 32))
    >>> spec.shape, mask.sum(1).tolist()
    (torch.Size([2, 65, 26]), [26, 13])
    """
    longest = max(m.numel() for m in mixtures)
    scales = [_rms(m) for m in mixtures]
    padded = torch.zeros(len(mixtures), longest)
    for index, (mix, scale) in enumerate(zip(mixtures, scales)):
        padded[index, : mix.numel()] = mix / scale
    spec = stft(padded.to(device))
    frames = torch.tensor([stft.num_frames(m.numel()) for m in mixtures])
    mask = torch.arange(spec.shape[-1])[None] < frames[:, None]
    return spec, mask.to(device), scales


def lips_batch(items, num_frames, stft, sample_rate, device="cpu"):
    """Normalised lips per STFT frame ``[B, J, N, H*W]`` of AV mixtures.

    The longest speaker's lips (uint8 in [0, 255] or float in [0, 1]) must
    last as long as the mixture (:func:`lobes.data.lip_input.check_duration`;
    a speaker may stop before the others) and all must have one frame
    size; the statistics of the normalisation use each mixture's own STFT
    frames only.

    Example
    -------
    >>> from lobes.models.av_vae import SineSTFT
    >>> lips = [torch.zeros(3, 4, 4, dtype=torch.uint8)] * 2
    >>> item = AVMixture("m", torch.zeros(1600), lips, 30.0)
    >>> lips_batch([item], 26, SineSTFT(128, 64), 16000).shape
    torch.Size([1, 2, 26, 16])
    >>> short = AVMixture("m", torch.zeros(48000), lips, 30.0)
    >>> lips_batch([short], 751, SineSTFT(128, 64), 16000)
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: m, lips of speaker 1: 3 lip frames ...
    """
    rows = []
    for item in items:
        seconds = item.mixture.numel() / float(sample_rate)
        sizes = {tuple(frames.shape[1:]) for frames in item.lips}
        if len(sizes) != 1:
            raise DataFolderError(
                f"{item.id}: the speakers' lips have frame sizes "
                f"{sorted(sizes)}; resize them to one size"
            )
        # In a mixture a speaker may stop before the others, so only the
        # longest lips must last as long as the mixture.
        j = max(range(len(item.lips)), key=lambda k: item.lips[k].shape[0])
        check_duration(f"{item.id}, lips of speaker {j + 1}",
                       item.lips[j].shape[0], item.fps, seconds)
        counts = [int(frames.shape[0]) for frames in item.lips]
        longest = max(counts)
        floating = any(torch.as_tensor(f).is_floating_point()
                       for f in item.lips)  # fmt: skip
        padded = torch.zeros(len(item.lips), longest, *item.lips[0].shape[1:],
                             dtype=torch.float32 if floating else torch.uint8)
        for j, lips in enumerate(item.lips):
            lips = torch.as_tensor(lips)
            if floating and not lips.is_floating_point():
                lips = lips.float() / 255.0
            padded[j, : lips.shape[0]] = lips
        valid = [stft.num_frames(item.mixture.numel())] * len(item.lips)
        rows.append(
            lips_per_frame(padded.to(device), counts, num_frames,
                           stft.hop_length, sample_rate, item.fps,
                           valid_frames=valid)
        )  # fmt: skip
    return torch.stack(rows)


def _to_waveforms(spec, stft, items, scales):
    """Complex ``[B, J, F, N]`` -> one ``[J, T]`` tensor per item."""
    longest = max(item.mixture.numel() for item in items)
    waves = stft.inverse(spec, longest).cpu()
    return [
        waves[b, :, : item.mixture.numel()] * scales[b]
        for b, item in enumerate(items)
    ]


# ---------------------------------------------------------------- methods


def _notices(items, result, mask, mcem, log):
    """One line per mixture whose lips were distrusted or whose MCEM
    stopped on a noise run-away."""
    for b, item in enumerate(items):
        valid = mask[b].to(result.sources.real.dtype)
        if result.switch is not None:
            trusted = (result.switch[b] * valid).sum(-1) / valid.sum()
            if bool((trusted < 0.5).any()):
                shares = ", ".join(
                    f"speaker {j + 1}: {100 * float(t):.0f} %"
                    for j, t in enumerate(trusted)
                )
                log(f"notice: {item.id}: the lips explain few frames "
                    f"({shares}); the audio-only model takes the rest")
        if result.stopped is not None and bool(result.stopped[b]):
            done = int(result.iterations[b])
            log(f"notice: {item.id}: MCEM stopped after {done} iterations: "
                "the noise model's energy grew more than "
                f"{mcem.max_noise_growth:g} times relative to the speech's; "
                f"the estimates use the parameters of iteration {done}")


def separate_vae(vae, mcem, items, stft, sample_rate, generator,
                 device="cpu", fallback=None, log=print):  # fmt: skip
    """MCEM with a trained (AV-)VAE: ``[J, T]`` estimates per mixture.

    Arguments
    ---------
    vae : lobes.models.av_vae.AudioVAE or lobes.models.av_vae.AVCVAE
        The trained speech model.
    mcem : lobes.models.mcem.MCEM
        The EM settings.
    items : list of AVMixture
        Mixtures with the same number of speakers.
    stft : lobes.models.av_vae.SineSTFT
        The model's STFT.
    sample_rate : int
        Audio rate.
    generator : torch.Generator
        Source of the random draws.
    device : str
        Torch device.
    fallback : lobes.models.av_vae.AudioVAE, optional
        An audio-only model for the frames the lips do not explain
        (:class:`lobes.models.mcem.MCEM`'s switch).
    log : callable
        Prints the notices (lips distrusted, MCEM stopped).

    Returns
    -------
    list of torch.Tensor
        ``[J, T]`` per item.

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE, SineSTFT
    >>> from lobes.models.mcem import MCEM
    >>> vae = AVCVAE(65, 2, 4, 16, 4, 3).eval()
    >>> lips = [torch.randint(0, 255, (8, 4, 4), dtype=torch.uint8)] * 2
    >>> items = [AVMixture("m", torch.randn(1600), lips, 30.0)]
    >>> mcem = MCEM(num_iterations=2, num_mh_steps=3, burn_in=1, noise_rank=2)
    >>> out = separate_vae(vae, mcem, items, SineSTFT(128, 32), 16000,
    ...                    torch.Generator().manual_seed(0))
    >>> out[0].shape
    torch.Size([2, 1600])
    >>> one = [AVMixture("m", torch.randn(1600), lips[:1], 30.0)]  # enhance
    >>> separate_vae(vae, mcem, one, SineSTFT(128, 32), 16000,
    ...              torch.Generator().manual_seed(0))[0].shape
    torch.Size([1, 1600])
    >>> from lobes.models.av_vae import AudioVAE
    >>> notices = []
    >>> out = separate_vae(vae, mcem, one, SineSTFT(128, 32), 16000,
    ...                    torch.Generator().manual_seed(0),
    ...                    fallback=AudioVAE(65, 2, 4).eval(),
    ...                    log=notices.append)
    >>> out[0].shape, all(n.startswith("notice: m:") for n in notices)
    (torch.Size([1, 1600]), True)
    """
    num_speakers = len(items[0].lips)
    lips = None
    if getattr(vae, "uses_video", False):
        for item in items:
            for j, frames in enumerate(item.lips):
                check_frame_size(f"{item.id}, lips of speaker {j + 1}",
                                 frames, vae)  # fmt: skip
    spec, mask, scales = stft_batch([i.mixture for i in items], stft, device)
    if getattr(vae, "uses_video", False):
        lips = lips_batch(items, spec.shape[-1], stft, sample_rate, device)
    if fallback is not None and int(fallback.num_freqs) != int(vae.num_freqs):
        raise ModelSourceError(
            f"the audio-only fallback has {fallback.num_freqs} frequency "
            f"bins, the AV-VAE {vae.num_freqs}; train both with one STFT"
        )
    if fallback is not None and not getattr(vae, "uses_video", False):
        fallback = None  # nothing to fall back from
    result = mcem(vae, spec, num_speakers, lips=lips, frame_mask=mask,
                  generator=generator, fallback=fallback)  # fmt: skip
    _notices(items, result, mask, mcem, log)
    return _to_waveforms(result.sources, stft, items, scales)


def separate_nmf(nmf, items, stft, generator, device="cpu"):
    """NMF-only separation: ``[J, T]`` estimates per mixture.

    Arguments
    ---------
    nmf : lobes.models.nmf.NMFSeparator
        The separator (with its speech dictionary, if any).
    items : list of AVMixture
        Mixtures with the same number of speakers (the lips are unused but
        count the speakers).
    stft : lobes.models.av_vae.SineSTFT
        Analysis and synthesis.
    generator : torch.Generator
        Source of the random start.
    device : str
        Torch device.

    Returns
    -------
    list of torch.Tensor
        ``[J, T]`` per item.

    Example
    -------
    >>> from lobes.models.av_vae import SineSTFT
    >>> from lobes.models.nmf import NMFSeparator
    >>> item = AVMixture("m", torch.randn(1600), [None, None], 30.0)
    >>> out = separate_nmf(NMFSeparator(4, 2, 5), [item], SineSTFT(128, 32),
    ...                    torch.Generator().manual_seed(0))
    >>> out[0].shape
    torch.Size([2, 1600])
    """
    num_speakers = len(items[0].lips)
    spec, mask, scales = stft_batch([i.mixture for i in items], stft, device)
    result = nmf(spec, num_speakers, frame_mask=mask, generator=generator)
    return _to_waveforms(result.sources, stft, items, scales)


@torch.no_grad()
def separate_supervised(separator, items, device="cpu"):
    """The supervised separator, one mixture at a time: ``[J, T]`` each.

    Arguments
    ---------
    separator : torch.nn.Module
        Returns an object with ``waveforms [1, T, outputs]`` for a
        ``[1, T]`` mixture and has ``num_spks``: the speakers are its first
        ``num_spks`` outputs.
    items : list of AVMixture
        The mixtures.
    device : str
        Torch device.

    Returns
    -------
    list of torch.Tensor
        ``[num_spks, T]`` per item.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> class Halves(torch.nn.Module):
    ...     num_spks = 2
    ...     def forward(self, mix):
    ...         out = torch.stack([mix / 2, mix / 2, 0 * mix], -1)
    ...         return SimpleNamespace(waveforms=out)
    >>> item = AVMixture("m", torch.ones(800), [None, None], 30.0)
    >>> separate_supervised(Halves(), [item])[0][:, 0]
    tensor([0.5000, 0.5000])
    """
    estimates = []
    for item in items:
        mix = item.mixture.to(device).float()[None]
        out = separator(mix).waveforms[0, : item.mixture.numel()]
        estimates.append(out[:, : separator.num_spks].t().cpu())
    return estimates


def fit_lips_to_model(items, vae, log=print):
    """Items whose lips are resized to a VAE's square ROI size.

    Lips already of the model's pixel count, a model without lips, or one
    whose pixel count is not a square are left as they are (the latter
    then fail :func:`lobes.data.lip_input.check_frame_size` in
    :func:`separate_vae`). Each resize is logged once per frame size.

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE
    >>> vae = AVCVAE(65, 2, 4, visual_dim=16)
    >>> item = AVMixture("m", torch.zeros(1600), [torch.rand(5, 67, 67)], 30.)
    >>> fit_lips_to_model([item], vae)[0].lips[0].shape
    notice: lips of 67x67 resized to 4x4, the model's ROI size
    torch.Size([5, 4, 4])
    """
    size = model_roi_size(vae)
    if size is None:
        return items
    fitted, told = [], set()
    for item in items:
        lips = []
        for frames in item.lips:
            frames = torch.as_tensor(frames)
            if tuple(frames.shape[1:]) != size:
                shape = tuple(int(n) for n in frames.shape[1:])
                if shape not in told:
                    told.add(shape)
                    log(f"notice: lips of {shape[0]}x{shape[1]} resized to "
                        f"{size[0]}x{size[1]}, the model's ROI size")
                if not frames.is_floating_point():
                    frames = frames.float() / 255.0
                frames = resize_frames(frames, size)
            lips.append(frames)
        fitted.append(item._replace(lips=lips))
    return fitted


def learn_speech_dictionary(wav_paths, stft, rank, num_iterations,
                            max_frames, generator):  # fmt: skip
    """An NMF speech dictionary from clean utterances (unit-RMS each).

    Arguments
    ---------
    wav_paths : list of str
        Clean 16 kHz utterances, read in order until ``max_frames``.
    stft : lobes.models.av_vae.SineSTFT
        Analysis.
    rank : int
        Dictionary atoms.
    num_iterations : int
        IS-NMF updates.
    max_frames : int
        STFT frames used at most.
    generator : torch.Generator
        Source of the random start.

    Returns
    -------
    torch.Tensor
        ``[F, rank]`` float, columns of unit mean.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> from lobes.models.av_vae import SineSTFT
    >>> path = tempfile.mkdtemp() + "/a.wav"
    >>> write_audio(path, torch.randn(3200) * 0.1, 16000)
    >>> learn_speech_dictionary([path], SineSTFT(128, 32), 3, 5, 50,
    ...                         torch.Generator().manual_seed(0)).shape
    torch.Size([65, 3])
    """
    columns, total = [], 0
    for path in wav_paths:
        wav = read_audio(path)
        power = stft(wav / _rms(wav)).abs().pow(2)
        columns.append(power)
        total += power.shape[-1]
        if total >= max_frames:
            break
    power = torch.cat(columns, dim=-1)[:, :max_frames].double()
    return learn_dictionary(power, rank, num_iterations, generator).float()


# ---------------------------------------------------------------- metrics


def _best_order(estimates, references):
    """Permutation (tuple) of the estimates with the best mean SI-SDR.

    ``order[j]`` is the estimate matched to reference ``j``.

    Example
    -------
    >>> refs = torch.randn(3, 4000)
    >>> _best_order(refs[[2, 0, 1]], refs)
    (1, 2, 0)
    """
    import fast_bss_eval

    with np.errstate(all="ignore"):
        _, perm = fast_bss_eval.si_sdr(
            references.double().numpy(), estimates.double().numpy(),
            zero_mean=True, clamp_db=150.0, return_perm=True,
        )  # fmt: skip
    return tuple(int(i) for i in np.asarray(perm).reshape(-1))


def evaluate(estimates, references, mixture, sample_rate=16000,
             quality=True):  # fmt: skip
    """Scores of ``[J, T]`` estimates against ``[J, T]`` references.

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``[J, T]``.
    mixture : torch.Tensor
        ``[T]``.
    sample_rate : int
        Their rate.
    quality : bool
        Also compute PESQ and STOI (slower).

    Returns
    -------
    dict
        :data:`SCORES` (``pesq``/``stoi`` NaN when ``quality`` is False):
        means over the speakers at the permutation of best SI-SDR;
        ``order_correct`` is 1.0 when that permutation is the given order.

    Example
    -------
    >>> refs = torch.randn(2, 8000)
    >>> mix = refs.sum(0)
    >>> scores = evaluate(refs.flip(0) + 0.01 * torch.randn(2, 8000), refs,
    ...                   mix, quality=False)
    >>> scores["si_sdr"] > 30, scores["order_correct"]
    (True, 0.0)
    """
    order = _best_order(estimates, references)
    ordered = estimates[list(order)]
    sep = separation_metrics(ordered.t(), references.t(), mixture)
    scores = {
        "sdr": sep["sdr"],
        "sdr_i": sep["sdr_i"],
        "si_sdr": sep["si_snr"],
        "si_sdr_i": sep["si_snr_i"],
        "pesq": math.nan,
        "stoi": math.nan,
        "order_correct": float(order == tuple(range(len(order)))),
    }
    if quality:
        values = [
            enhancement_metrics(ordered[j], references[j], sample_rate,
                                metrics=["pesq", "stoi"])  # fmt: skip
            for j in range(references.shape[0])
        ]
        for name in ("pesq", "stoi"):
            finite = [v[name] for v in values if math.isfinite(v[name])]
            scores[name] = float(np.mean(finite)) if finite else math.nan
    return scores


# ---------------------------------------------------------------- pipeline


def _write_wavs(folder, name, estimates, sample_rate):
    """``<folder>/<name>_s<j>.wav`` for ``[J, T]``, one gain for all."""
    peak = float(estimates.abs().max()) if estimates.numel() else 0.0
    scale = 0.99 / peak if peak > 0.99 else 1.0
    paths = []
    for j in range(estimates.shape[0]):
        path = os.path.join(folder, f"{name}_s{j + 1}.wav")
        write_audio(path, estimates[j] * scale, sample_rate)
        paths.append(path)
    return paths


class Separators:
    """Every method of :data:`METHODS` that the hparams make available.

    Arguments
    ---------
    hparams : dict
        ``separate.yaml``: ``methods``, ``av_vae_folder``, ``a_vae_folder``,
        ``supervised_folder``, ``mcem``, ``nmf``, ``stft``, ``sample_rate``,
        ``seed``, ``av_vae_iterations`` and ``a_vae_iterations`` (EM
        iterations of one method, ``None``: the MCEM's), optionally
        ``lips_fallback`` (AV-VAE falls back to the A-VAE of
        ``a_vae_folder`` on frames its lips do not explain; default
        False), and for the NMF dictionary ``nmf_settings``
        (``speech_rank``, ``dictionary_iterations``, ``dictionary_frames``).
    train_wavs : list of str
        Clean training utterances for the NMF speech dictionary.
    device : str
        Torch device.
    log : callable
        Prints notices (lips resized to a model's ROI size, lips
        distrusted, MCEM stopped).

    Example
    -------
    >>> from lobes.models.av_vae import SineSTFT
    >>> separators = Separators({"methods": ["mixture", "av_vae"],
    ...     "sample_rate": 16000, "stft": SineSTFT(128, 32)}, [])
    >>> separators.methods, separators.skipped
    (['mixture'], ['av_vae'])
    """

    def __init__(self, hparams, train_wavs, device="cpu", log=print):
        self.hparams = hparams
        self.device = device
        self.log = log
        self.sample_rate = int(hparams["sample_rate"])
        self.models = {}
        self.skipped = []
        self.iterations = {
            "av_vae": hparams.get("av_vae_iterations"),
            "a_vae": hparams.get("a_vae_iterations"),
        }
        folders = {
            "av_vae": (hparams.get("av_vae_folder"), "vae"),
            "a_vae": (hparams.get("a_vae_folder"), "vae"),
            "supervised": (hparams.get("supervised_folder"), "separator"),
        }
        unknown = [m for m in hparams["methods"] if m not in METHODS]
        if unknown:
            raise HparamsError(
                f"methods: unknown {unknown}; choose from {', '.join(METHODS)}"
            )
        self.methods = []
        for method in hparams["methods"]:
            if method in folders:
                folder, key = folders[method]
                if not folder:
                    self.skipped.append(method)
                    continue
                module, run = load_trained(folder, key, device)
                self.models[method] = (module, run.get("stft"))
            self.methods.append(method)
        self.stft = hparams["stft"].to(device)
        if "nmf" in self.methods:
            nmf = hparams["nmf"]
            settings = hparams["nmf_settings"]
            generator = torch.Generator().manual_seed(int(hparams["seed"]))
            nmf.dictionary = learn_speech_dictionary(
                train_wavs, hparams["stft"], int(settings["speech_rank"]),
                int(settings["dictionary_iterations"]),
                int(settings["dictionary_frames"]), generator,
            ).to(device)  # fmt: skip
            self.nmf = nmf
        self.fallback = None
        if hparams.get("lips_fallback") and "av_vae" in self.models:
            loaded = self.models.get("a_vae")
            if loaded is None and hparams.get("a_vae_folder"):
                loaded = (load_trained(hparams["a_vae_folder"], "vae",
                                       device)[0], None)  # fmt: skip
            if loaded is None:
                    raise HparamsError(
                    "lips_fallback: True needs an A-VAE to fall back to; "
                    "pass --a_vae_folder=<A-VAE training run>"
                )
            self.fallback = loaded[0]

    def _generator(self, method):
        offset = METHODS.index(method)
        generator = torch.Generator(device=self.device)
        return generator.manual_seed(int(self.hparams["seed"]) * 10 + offset)

    def run(self, method, items):
        """Estimates ``[J, T]`` of each item with one method."""
        if method == "mixture":
            return [
                item.mixture[None].repeat(len(item.lips), 1) for item in items
            ]
        if method == "nmf":
            return separate_nmf(self.nmf, items, self.stft,
                                self._generator(method), self.device)
        module, stft = self.models[method]
        if method == "supervised":
            return separate_supervised(module, items, self.device)
        items = fit_lips_to_model(items, module, self.log)
        mcem = self.hparams["mcem"]
        iterations = self.iterations.get(method)
        if iterations is not None:  # this method's own number of iterations
            mcem = copy.copy(mcem)
            mcem.num_iterations = int(iterations)
        return separate_vae(
            module, mcem, items, stft.to(self.device), self.sample_rate,
            self._generator(method), self.device,
            fallback=self.fallback if method == "av_vae" else None,
            log=self.log,
        )  # fmt: skip


def load_test_mixtures(manifest, limit=None):
    """The mixtures of an ``avmix_*.csv`` manifest as :class:`AVMixture`.

    Arguments
    ---------
    manifest : str
        ``avmix_<split>.csv`` (:mod:`lobes.data.av_prepare`).
    limit : int, optional
        Keep the first ``limit`` mixtures (``None`` or 0: all).

    Returns
    -------
    list of AVMixture
        With both speakers' lips and references.

    Example
    -------
    >>> import tempfile
    >>> from lobes.data.audio import write_audio
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("mix", "s1", "s2"):
    ...     write_audio(f"{folder}/{name}.wav", torch.zeros(1600), 16000)
    >>> np.save(f"{folder}/l.npy", np.zeros((3, 4, 4), np.uint8))
    >>> _ = open(f"{folder}/avmix_test.csv", "w").write(
    ...     "ID,mix_wav,s1_wav,s2_wav,s1_lips,s2_lips,fps\\n"
    ...     f"m1,{folder}/mix.wav,{folder}/s1.wav,{folder}/s2.wav,"
    ...     f"{folder}/l.npy,{folder}/l.npy,30\\n")
    >>> item = load_test_mixtures(f"{folder}/avmix_test.csv")[0]
    >>> item.id, item.references.shape, item.lips[1].shape
    ('m1', torch.Size([2, 1600]), torch.Size([3, 4, 4]))
    """
    items = []
    for row in read_rows(manifest)[: limit or None]:
        refs = torch.stack([read_audio(row["s1_wav"]),
                            read_audio(row["s2_wav"])])  # fmt: skip
        items.append(
            AVMixture(
                id=row["ID"],
                mixture=read_audio(row["mix_wav"]),
                lips=[load_lips(row["s1_lips"]), load_lips(row["s2_lips"])],
                fps=float(row["fps"]),
                references=refs,
            )
        )
    return items


def evaluate_methods(separators, items, output_folder, batch_size=16,
                     quality=True, n_audio=0, log=print):  # fmt: skip
    """Separate and score every item with every method.

    Writes ``results.csv`` (one row per mixture and method) and
    ``summary.json`` (means per method, seconds per second of audio) into
    ``output_folder``, and the estimates of the first ``n_audio`` mixtures
    into ``output_folder/audio``.

    Arguments
    ---------
    separators : Separators
        The methods.
    items : list of AVMixture
        Mixtures with references.
    output_folder : str
        Where the files go.
    batch_size : int
        Mixtures per MCEM/NMF batch.
    quality : bool
        Also PESQ and STOI.
    n_audio : int
        Mixtures whose estimates are written as wavs.
    log : callable
        Prints one line of means per method.

    Returns
    -------
    dict
        The summary.

    Example
    -------
    >>> import tempfile
    >>> from lobes.models.av_vae import SineSTFT
    >>> separators = Separators({"methods": ["mixture"], "sample_rate":
    ...                          16000, "stft": SineSTFT(128, 32)}, [])
    >>> refs = torch.randn(2, 8000)
    >>> item = AVMixture("m", refs.sum(0), [None, None], 30.0, refs)
    >>> summary = evaluate_methods(separators, [item], tempfile.mkdtemp(),
    ...                            quality=False, log=lambda line: None)
    >>> round(summary["methods"]["mixture"]["sdr_i"], 3)
    0.0
    """
    import json
    import time

    from lobes.brains.base import write_results_csv

    rows = []
    summary = {"mixtures": len(items), "methods": {}}
    audio_seconds = sum(i.mixture.numel() for i in items) / 16000.0
    audio_dir = os.path.join(output_folder, "audio")
    for item in items[:n_audio]:
        _write_wavs(audio_dir, f"{item.id}_ref", item.references, 16000)
    for method in separators.methods:
        start = time.time()
        estimates = []
        for first in range(0, len(items), batch_size):
            batch = items[first : first + batch_size]
            estimates += separators.run(method, batch)
        seconds = time.time() - start
        method_rows = []
        for index, (item, est) in enumerate(zip(items, estimates)):
            scores = evaluate(est, item.references, item.mixture,
                              quality=quality)  # fmt: skip
            if method != "av_vae":  # only the lips fix the order
                scores["order_correct"] = math.nan
            method_rows.append({"id": item.id, "method": method, **scores})
            if index < n_audio:
                _write_wavs(audio_dir, f"{item.id}_{method}", est, 16000)
        rows += method_rows
        means = {
            key: float(np.nanmean([r[key] for r in method_rows]))
            if any(math.isfinite(r[key]) for r in method_rows) else math.nan
            for key in SCORES
        }
        means["seconds_per_audio_second"] = seconds / max(audio_seconds, 1e-9)
        summary["methods"][method] = means
        log(f"{method}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in means.items() if math.isfinite(v)))
    os.makedirs(output_folder, exist_ok=True)
    write_results_csv(os.path.join(output_folder, "results.csv"), rows,
                      average_row=False)  # fmt: skip
    summary["skipped"] = list(separators.skipped)
    with open(os.path.join(output_folder, "summary.json"), "w") as fout:
        json.dump(summary, fout, indent=2, sort_keys=True)
        fout.write("\n")
    return summary


def summary_table(summary):
    """A markdown table of :func:`evaluate_methods`'s summary.

    Example
    -------
    >>> table = summary_table({"methods": {"nmf": dict.fromkeys(
    ...     SCORES + ("seconds_per_audio_second",), 1.0)}})
    >>> table.splitlines()[2]
    '| nmf | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |'
    >>> table.splitlines()[0].count("|")
    10
    """
    header = ("| method | SDR | SDRi | SI-SDR | SI-SDRi | PESQ | STOI | "
              "lips order right | s / s audio |")  # fmt: skip
    lines = [header, "|---" + "|---:" * 8 + "|"]
    keys = SCORES + ("seconds_per_audio_second",)
    for method, means in summary["methods"].items():
        cells = [
            "-" if not math.isfinite(means.get(k, math.nan))
            else f"{means[k]:.2f}"
            for k in keys
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
