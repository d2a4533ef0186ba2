"""The separation methods of the audio-visual recipes, on batches of mixtures.

Mixtures are scaled to unit RMS before the STFT and the estimates scaled
back; several mixtures go through MCEM and NMF at once (padded, with a
frame mask: :func:`stft_batch`, :func:`lips_batch`).
:func:`separate_vae` (MCEM with an AV-VAE or an A-VAE),
:func:`separate_nmf` (NMF with a learned speech dictionary,
:func:`learn_speech_dictionary`) and :func:`separate_supervised` (a trained
mask-based separator) return the estimates ``[J, T]`` of each mixture
(:class:`AVMixture`).

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch

from lobes.data.audio import read_audio
from lobes.data.lip_input import (
    check_duration,
    check_frame_size,
    model_roi_size,
    resize_frames,
)
from lobes.errors import DataFolderError, ModelSourceError
from lobes.models.av_features import lips_per_frame
from lobes.models.nmf import learn_dictionary


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



def _rms(signal):
    return float(signal.pow(2).mean().sqrt().clamp(min=1e-8))


def stft_batch(mixtures, stft, device="cpu"):
    """Unit-RMS mixtures -> padded STFTs ``[B, F, N]``, frame mask, scales.

    Example
    -------
    >>> from lobes.models.av_features import SineSTFT
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
    >>> from lobes.models.av_features import SineSTFT
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
    stft : lobes.models.av_features.SineSTFT
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
    >>> from lobes.models.av_features import SineSTFT
    >>> from lobes.models.av_vae import AVCVAE
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
    stft : lobes.models.av_features.SineSTFT
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
    >>> from lobes.models.av_features import SineSTFT
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
    stft : lobes.models.av_features.SineSTFT
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
    >>> from lobes.models.av_features import SineSTFT
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
