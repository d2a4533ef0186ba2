"""Noise-aware mask-based speech separation (NASS, Zhang et al., 2024).

A mask-based separator (encoder -> masking network -> shared decoder) whose
masking network emits ``N + 1`` masks for ``N`` speakers: the extra, last
output estimates the background noise. Any SpeechBrain masking network that
returns masks as ``[sources, batch, channels, frames]`` plugs in, e.g.
``speechbrain.lobes.models.dual_path.Dual_Path_Model`` (SepFormer with
transformer blocks, DPRNN with RNN blocks) or
``speechbrain.lobes.models.conv_tasnet.MaskNet`` (Conv-TasNet). The masking
network is configured in YAML with ``num_spks: N + 1`` (``C`` for
``MaskNet``); its widened last projection is the whole inference-time
overhead of NASS. With ``noise_output=False`` the same class is the plain
baseline separator with ``N`` outputs.

Paired initialisation (``init_seed``): the separators with ``N`` and with
``N + 1`` outputs built from one seed start from the same weights in every
layer they share, the masking projection's first ``N`` masks (weights and
bias) included; only the extra noise mask's rows differ, drawn reproducibly
from the seed after the shared ones
(:func:`lobes.models.mask_projection.paired_init`).

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F

from lobes.models.mask_projection import (  # noqa: F401 (lobes.warm_start)
    MaskCountError,
    declared_mask_count,
    output_projection,
    paired_init,
)


class SeparatorOutput(NamedTuple):
    """What :class:`NoiseAwareSeparator` returns.

    Attributes
    ----------
    waveforms : torch.Tensor
        Separated signals ``[B, T, S]``; with a noise output the noise
        estimate is the last source, ``S = N + 1``; otherwise ``S = N``.
    masked_features : torch.Tensor
        Masked encoder features ``h_b = m_b * h_x`` as ``[S, B, C, L]``.
    mix_features : torch.Tensor
        Encoder features of the mixture ``h_x`` as ``[B, C, L]``.

    Example
    -------
    >>> out = SeparatorOutput(
    ...     torch.zeros(1, 8, 3), torch.zeros(3, 1, 4, 2), torch.zeros(1, 4, 2)
    ... )
    >>> out.waveforms.shape
    torch.Size([1, 8, 3])
    """

    waveforms: torch.Tensor
    masked_features: torch.Tensor
    mix_features: torch.Tensor


class NoiseAwareSeparator(torch.nn.Module):
    """Encoder -> masking network -> shared decoder, with a noise output.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps a waveform ``[B, T]`` to features ``[B, C, L]``, e.g.
        ``speechbrain.lobes.models.dual_path.Encoder``.
    masknet : torch.nn.Module
        Maps ``[B, C, L]`` to masks ``[S, B, C, L]``; configured with
        ``num_spks`` (``C`` for ``MaskNet``) equal to ``num_spks + 1`` when
        ``noise_output`` is True, else ``num_spks``.
    decoder : torch.nn.Module
        Maps features ``[B', C, L]`` to waveforms ``[B', T']``, shared by
        all sources, e.g. ``speechbrain.lobes.models.dual_path.Decoder``.
    num_spks : int
        Number of speakers ``N``.
    noise_output : bool
        True for NASS (``N + 1`` outputs, noise last), False for the
        baseline separator (``N`` outputs).
    init_seed : int or None
        When given (the recipe's ``seed``), :func:`paired_init` re-draws the
        masking projection and every layer built after it from this seed,
        so that the separators with ``N`` and ``N + 1`` outputs of one seed
        share their initial weights bit for bit (the extra noise mask's rows
        excepted). None keeps the weights as constructed.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import (
    ...     Decoder, Dual_Path_Model, Encoder, SBRNNBlock
    ... )
    >>> encoder = Encoder(kernel_size=16, out_channels=8)
    >>> masknet = Dual_Path_Model(
    ...     8, 8, SBRNNBlock(8, 4, 1), SBRNNBlock(8, 4, 1), K=10, num_spks=3
    ... )
    >>> decoder = Decoder(8, 1, kernel_size=16, stride=8, bias=False)
    >>> separator = NoiseAwareSeparator(encoder, masknet, decoder, num_spks=2)
    >>> out = separator(torch.randn(2, 800))
    >>> out.waveforms.shape, out.masked_features.shape
    (torch.Size([2, 800, 3]), torch.Size([3, 2, 8, 99]))
    >>> separator.num_outputs
    3
    """

    def __init__(
        self,
        encoder,
        masknet,
        decoder,
        num_spks,
        noise_output=True,
        init_seed=None,
    ):
        super().__init__()
        if int(num_spks) < 1:
            raise MaskCountError(
                f"num_spks must be at least 1, got {num_spks}: set the "
                "separator's `num_spks` in the YAML to the number of speakers"
            )
        self.encoder = encoder
        self.masknet = masknet
        self.decoder = decoder
        self._num_spks = int(num_spks)
        self._noise_output = bool(noise_output)
        self._check_mask_count(declared_mask_count(masknet))
        self.init_seed = None if init_seed is None else int(init_seed)
        if self.init_seed is not None:
            paired_init(self, self.init_seed)

    @property
    def num_spks(self):
        """Number of speakers ``N``."""
        return self._num_spks

    @property
    def noise_output(self):
        """Whether the last output is a noise estimate."""
        return self._noise_output

    @property
    def num_outputs(self):
        """Number of separated outputs: ``N + 1`` with noise, else ``N``."""
        return self._num_spks + int(self._noise_output)

    def _check_mask_count(self, count):
        """Raise :class:`MaskCountError` unless ``count`` fits the setup."""
        if count is None or count == self.num_outputs:
            return
        if self._noise_output:
            need = (
                f"NASS (noise_output=True) with num_spks={self.num_spks} "
                f"needs N+1 = {self.num_outputs}"
            )
        else:
            need = (
                f"the baseline (noise_output=False) with "
                f"num_spks={self.num_spks} needs N = {self.num_outputs}"
            )
        raise MaskCountError(
            f"the masking network emits {count} masks but {need}: set "
            f"`num_spks` of the masknet (`C` for conv_tasnet.MaskNet) to "
            f"{self.num_outputs} in the YAML"
        )

    def encode(self, wav):
        """Encode waveforms with the shared encoder.

        Arguments
        ---------
        wav : torch.Tensor
            Waveforms ``[B, T]``.

        Returns
        -------
        torch.Tensor
            Features ``[B, C, L]``.

        Example
        -------
        >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
        >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
        >>> separator = NoiseAwareSeparator(
        ...     Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=3),
        ...     Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
        ... )
        >>> separator.encode(torch.randn(3, 800)).shape
        torch.Size([3, 8, 99])
        """
        return self.encoder(wav)

    def forward(self, mix):
        """Separate a batch of mixtures.

        Arguments
        ---------
        mix : torch.Tensor
            Mixtures ``[B, T]``.

        Returns
        -------
        SeparatorOutput
            ``waveforms [B, T, S]`` (noise last when ``noise_output``),
            ``masked_features [S, B, C, L]`` and ``mix_features [B, C, L]``.
        """
        if mix.dim() != 2:
            raise ValueError(
                f"NoiseAwareSeparator expects mixtures [batch, time], got "
                f"shape {tuple(mix.shape)}"
            )
        mix_features = self.encoder(mix)
        masks = self.masknet(mix_features)
        self._check_masks(masks, mix_features)
        masked_features = masks * mix_features.unsqueeze(0)

        num_sources, batch, channels, frames = masked_features.shape
        decoded = self.decoder(
            masked_features.reshape(num_sources * batch, channels, frames)
        )
        if decoded.dim() == 3 and decoded.shape[1] == 1:
            decoded = decoded.squeeze(1)
        decoded = decoded.reshape(num_sources, batch, -1)
        waveforms = decoded.permute(1, 2, 0)

        # The encoder's framing changes the length: pad or trim back to T.
        target_len = mix.shape[1]
        est_len = waveforms.shape[1]
        if est_len < target_len:
            waveforms = F.pad(waveforms, (0, 0, 0, target_len - est_len))
        else:
            waveforms = waveforms[:, :target_len, :]
        return SeparatorOutput(waveforms, masked_features, mix_features)

    def _check_masks(self, masks, mix_features):
        """Check the masks' layout ``[S, B, C, L]`` and number of sources."""
        if masks.dim() != 4:
            raise ValueError(
                f"the masking network must return masks [sources, batch, "
                f"channels, frames]; got shape {tuple(masks.shape)}"
            )
        if masks.shape[1:] != mix_features.shape:
            raise ValueError(
                f"masks of shape {tuple(masks.shape)} do not match the "
                f"encoder features {tuple(mix_features.shape)}; the masking "
                "network must return [sources, batch, channels, frames] with "
                "the encoder's channels and frames"
            )
        self._check_mask_count(masks.shape[0])


class NoiseOutputTracker(torch.nn.Module):
    """Counts which output PIT matched to the noise on the validation set.

    With ``noise_slot: pit`` any output may carry the noise; the counts,
    saved with every checkpoint, tell inference which one the trained model
    uses (:mod:`lobes.separate`).

    Arguments
    ---------
    num_outputs : int
        Number of separator outputs ``N + 1``.

    Example
    -------
    >>> tracker = NoiseOutputTracker(3)
    >>> tracker.update(torch.tensor([2, 2, 0]))
    >>> tracker.noise_index, round(tracker.share, 2)
    (2, 0.67)
    """

    def __init__(self, num_outputs):
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_outputs).long())

    def reset(self):
        """Forget the counts (at the start of each validation)."""
        self.counts.zero_()

    def update(self, noise_index):
        """Count the outputs matched to the noise, ``[B]`` long."""
        self.counts += torch.bincount(
            noise_index.to(self.counts.device), minlength=len(self.counts)
        )

    @property
    def noise_index(self):
        """The output most often matched to the noise."""
        return int(self.counts.argmax())

    def inference_index(self, noise_slot="pit"):
        """The output inference takes as the noise.

        ``noise_slot="fixed"``: the last output; otherwise the output most
        often matched to the noise on the validation set, or the last one
        when nothing was counted.

        Example
        -------
        >>> tracker = NoiseOutputTracker(3)
        >>> tracker.inference_index(), tracker.inference_index("fixed")
        (2, 2)
        >>> tracker.update(torch.tensor([0, 0, 1]))
        >>> tracker.inference_index(), tracker.inference_index("fixed")
        (0, 2)
        """
        last = len(self.counts) - 1
        if noise_slot == "fixed" or int(self.counts.sum()) == 0:
            return last
        return self.noise_index

    @property
    def share(self):
        """Fraction of the counted mixtures where that output was noise."""
        total = int(self.counts.sum())
        return float(self.counts.max()) / total if total else 0.0


def inference_parameter_count(module):
    """Count the parameters needed at inference time.

    Training-only modules (the PatchNCE sampler and MLP) live outside the
    separator, so this is every parameter of the given separator (shared
    tensors counted once).

    Arguments
    ---------
    module : torch.nn.Module
        The separator (e.g. a :class:`NoiseAwareSeparator`).

    Returns
    -------
    int
        Number of scalar parameters.

    Example
    -------
    >>> inference_parameter_count(torch.nn.Linear(4, 2))
    10
    """
    return sum(p.numel() for p in module.parameters())
