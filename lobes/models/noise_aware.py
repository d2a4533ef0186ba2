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
from the seed after the shared ones (:func:`paired_init`).

Authors
 * noise-robust-sb contributors 2025
"""

import copy
import hashlib
from typing import NamedTuple

import torch
import torch.nn.functional as F

from lobes.errors import HparamsError


class MaskCountError(HparamsError, ValueError):
    """The masking network emits a number of masks the separator cannot use.

    It is both a :class:`ValueError` and a
    :class:`lobes.errors.HparamsError`, so recipes report it in one line.

    Example
    -------
    >>> issubclass(MaskCountError, ValueError)
    True
    """


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


def declared_mask_count(masknet):
    """Return the number of masks a masking network is configured to emit.

    Reads ``num_spks`` (``Dual_Path_Model`` and most SpeechBrain masking
    networks) or ``C`` (``conv_tasnet.MaskNet``).

    Arguments
    ---------
    masknet : torch.nn.Module
        The masking network.

    Returns
    -------
    int or None
        The declared number of masks, or ``None`` if the module declares
        none (then it is checked at the first forward pass).

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> declared_mask_count(MaskNet(8, 4, 4, 3, 1, 1, C=3))
    3
    """
    for name in ("num_spks", "C"):
        value = getattr(masknet, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


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


#: Where known masking networks keep their output projection (the layer
#: whose output channels are ``masks * channels``), by class name.
OUTPUT_PROJECTIONS = {
    "Dual_Path_Model": "conv2d",
    "MaskNet": "mask_conv1x1",
}


def derived_seed(seed, purpose):
    """A seed for one purpose, derived from ``seed`` (stable across runs).

    Arguments
    ---------
    seed : int
        The experiment's seed.
    purpose : str
        What the seed is for (e.g. ``"shared"``, ``"noise"``).

    Returns
    -------
    int
        A non-negative 63-bit integer, the same for the same arguments.

    Example
    -------
    >>> derived_seed(1, "noise") == derived_seed(1, "noise")
    True
    >>> derived_seed(1, "noise") == derived_seed(1, "shared")
    False
    """
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def output_projection(masknet):
    """The masking network's output projection, its name and its layer.

    The projection maps the masking network's channels to one block of
    rows per mask, mask ``i`` in rows ``[i * R, (i + 1) * R)``: the first
    ``N * R`` rows of an ``N + 1``-mask network are the ``N``-mask
    network's.

    Arguments
    ---------
    masknet : torch.nn.Module
        A masking network whose class is in :data:`OUTPUT_PROJECTIONS`, or
        any module with an ``output_projection`` attribute naming the layer.

    Returns
    -------
    name : str
        The layer's name within ``masknet`` (a ``torch.nn`` layer with a
        ``weight``, e.g. ``mask_conv1x1.conv`` inside SpeechBrain's
        ``Conv1d`` wrapper).
    layer : torch.nn.Module
        The layer.

    Raises
    ------
    MaskCountError
        When the projection cannot be found.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> output_projection(MaskNet(8, 4, 4, 3, 1, 1, C=3))[0]
    'mask_conv1x1.conv'
    """
    name = getattr(masknet, "output_projection", None)
    if not isinstance(name, str):
        name = OUTPUT_PROJECTIONS.get(type(masknet).__name__)
    if name is None:
        raise MaskCountError(
            f"paired initialisation does not know where "
            f"{type(masknet).__name__} keeps its output projection; known: "
            f"{sorted(OUTPUT_PROJECTIONS)} (or set masknet.output_projection "
            "to the layer's name)"
        )
    layer = masknet.get_submodule(name)
    while not isinstance(getattr(layer, "weight", None), torch.nn.Parameter):
        children = [
            (child_name, child)
            for child_name, child in layer.named_children()
            if any(True for _ in child.parameters())
        ]
        if len(children) != 1:
            raise MaskCountError(
                f"{type(masknet).__name__}.{name} has no single weight to "
                "split into masks"
            )
        child_name, layer = children[0]
        name = f"{name}.{child_name}"
    return name, layer


def _fresh_rows(layer, rows):
    """A copy of ``layer`` re-initialised with ``rows`` output rows."""
    fresh = copy.deepcopy(layer)
    weight = layer.weight
    fresh.weight = torch.nn.Parameter(
        torch.empty((rows, *weight.shape[1:]), dtype=weight.dtype)
    )
    if getattr(layer, "bias", None) is not None:
        fresh.bias = torch.nn.Parameter(
            torch.empty(rows, dtype=layer.bias.dtype)
        )
    for attribute in ("out_channels", "out_features"):
        if hasattr(fresh, attribute):
            setattr(fresh, attribute, rows)
    fresh.reset_parameters()
    return fresh


def _layers_with_parameters(module, prefix):
    """``(name, layer)`` of the layers holding parameters directly."""
    return [
        (f"{prefix}.{name}" if name else prefix, layer)
        for name, layer in module.named_modules()
        if any(True for _ in layer.parameters(recurse=False))
    ]


def paired_init(separator, seed, reseed_global=True):
    """Initialise a separator so that ``N`` and ``N + 1`` outputs pair up.

    A masking network with ``N + 1`` masks differs from the ``N``-mask one
    of the same seed only in its output projection's width, but drawing
    the wider projection consumes more random numbers, so that every layer
    built after it (the masking conv's bias, ``end_conv1x1``, the output
    and gate layers, the decoder) started from other weights. Here, from
    generators seeded by ``seed``:

    1. the encoder is re-drawn with its layers' ``reset_parameters``, then
       the projection's first ``N`` masks (weights and bias) are drawn as
       the ``N``-mask layer's would be;
    2. then, in order, every layer the masking network holds after its
       projection and every layer of the decoder is re-drawn with its own
       ``reset_parameters`` (PyTorch layers, whose reset is their
       construction);
    3. then, from a generator of its own, the noise mask's rows.

    The masking network's layers before its projection (its norm, input
    conv and dual-path or TCN blocks) are left as constructed: built from
    the same seed in the same order (the recipe seeds before building), they
    are already identical, and SpeechBrain's own initialisations there
    (orthogonal recurrent weights) are kept.

    Arguments
    ---------
    separator : NoiseAwareSeparator
        The separator to initialise in place.
    seed : int
        The experiment's seed.
    reseed_global : bool
        If True, the global torch generator is then seeded from ``seed``
        too, so that whatever is drawn next (the PatchNCE sampler, dropout,
        random segments) is the same for both separators.

    Returns
    -------
    dict
        ``shared``: names of the re-drawn shared tensors; ``noise``: the
        projection's tensors whose last rows are the noise mask's, with
        ``rows`` the rows per mask.

    Example
    -------
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> def build(noise):
    ...     torch.manual_seed(0)
    ...     return NoiseAwareSeparator(
    ...         Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=2 + noise),
    ...         Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
    ...         noise_output=bool(noise), init_seed=7,
    ...     )
    >>> base, nass = build(0), build(1)
    >>> w = "masknet.mask_conv1x1.conv.weight"
    >>> torch.equal(nass.state_dict()[w][:16], base.state_dict()[w])
    True
    >>> torch.equal(nass.decoder.weight, base.decoder.weight)
    True
    """
    masknet = separator.masknet
    name, projection = output_projection(masknet)
    num_masks = separator.num_outputs
    total_rows = projection.weight.shape[0]
    if total_rows % num_masks:
        raise MaskCountError(
            f"masknet.{name} has {total_rows} output rows, not a multiple of "
            f"the {num_masks} masks"
        )
    rows = total_rows // num_masks
    shared_rows = rows * separator.num_spks

    layers = _layers_with_parameters(masknet, "masknet")
    position = [n for n, _ in layers].index(f"masknet.{name}")
    tail = layers[position + 1:] + _layers_with_parameters(
        separator.decoder, "decoder"
    )
    head = _layers_with_parameters(separator.encoder, "encoder")
    missing = [
        n for n, layer in head + tail if not hasattr(layer, "reset_parameters")
    ]
    if missing:
        raise MaskCountError(
            f"paired initialisation cannot re-draw {missing}: no "
            "reset_parameters()"
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "shared"))
        for _, layer in head:
            layer.reset_parameters()
        shared = _fresh_rows(projection, shared_rows)
        for _, layer in tail:
            layer.reset_parameters()
        torch.manual_seed(derived_seed(seed, "noise"))
        noise = None
        if total_rows > shared_rows:
            noise = _fresh_rows(projection, total_rows - shared_rows)

    names = [f"masknet.{name}.weight"]
    with torch.no_grad():
        projection.weight[:shared_rows].copy_(shared.weight)
        if noise is not None:
            projection.weight[shared_rows:].copy_(noise.weight)
        if getattr(projection, "bias", None) is not None:
            names.append(f"masknet.{name}.bias")
            projection.bias[:shared_rows].copy_(shared.bias)
            if noise is not None:
                projection.bias[shared_rows:].copy_(noise.bias)
    if reseed_global:
        torch.manual_seed(derived_seed(seed, "after_init"))
    def parameter_names(layers):
        return [
            f"{layer_name}.{param_name}"
            for layer_name, layer in layers
            for param_name, _ in layer.named_parameters(recurse=False)
        ]

    return {
        "shared": parameter_names(head) + names + parameter_names(tail),
        "noise": names if noise is not None else [],
        "rows": rows,
    }
