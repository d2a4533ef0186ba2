"""The masking network's output projection: its masks, paired initialisation.

:func:`declared_mask_count` reads how many masks a masking network is
configured to emit, :func:`output_projection` finds the layer that emits
them (:data:`OUTPUT_PROJECTIONS`), and :func:`paired_init` draws the
weights of a :class:`lobes.models.noise_aware.NoiseAwareSeparator` so that
the separators with ``N`` and with ``N + 1`` outputs built from one seed
start from the same weights in every layer they share, the masking
projection's first ``N`` masks (weights and bias) included; only the extra
noise mask's rows differ, drawn reproducibly from the seed after the shared
ones (:func:`derived_seed`).

Authors
 * noise-robust-sb contributors 2025
"""

import copy
import hashlib

import torch

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
    separator : lobes.models.noise_aware.NoiseAwareSeparator
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
    >>> from lobes.models.noise_aware import NoiseAwareSeparator
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
