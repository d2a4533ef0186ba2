"""Contrastive regularization (CR) in a frozen feature space.

METHODS.md section 2 (AECR-Net's CR, moved to speech by Xu et al.)::

    CR = sum_i w_i * D(G_i(clean), G_i(out))
                   / (sum_k gamma_k * D(G_i(neg_k), G_i(out)) + eps)

``G_i`` are the outputs (layers or layer groups) of a frozen feature
space, here :class:`lobes.ssl_features.FrozenSSLFeatures`; ``D`` is the
mean absolute (``"l1"``) or mean squared (``"mse"``) difference; the
positive (clean speech) and the negatives (the noisy input, a reference
model's output, ...) are detached so that only ``G_i(out)`` carries a
gradient. Minimising CR pulls the enhanced output towards the clean speech
and pushes it away from the negatives. The negative weights ``gamma_k`` come
from a curriculum (:mod:`lobes.losses.curriculum`) or are all 1.

The loss takes features, not waveforms: the caller runs the frozen model,
so the clean and negative features, which never change during training
when the same waveforms go in, can be computed once and cached (the SSL
model runs in eval mode). Features depend on the whole waveform that goes
in (the convolutional front end normalises over time and attention sees
every frame), so a cache is exact only for exactly the same input: the
same crop, the same padding. The distances are means over the whole batch
(as in AECR-Net), so one ratio per layer is formed for the batch.

Loss forms (``form``), per layer with ``P = D(G_i(clean), G_i(out))`` and
``N = sum_k gamma_k * D(G_i(neg_k), G_i(out))``:

- ``"ratio"`` (default, the papers'): ``P / (N + eps)``. Its gradient is
  ``(grad P - r * grad N) / N`` with ``r = P / N``: the push away from the
  negatives weighs ``r`` times the pull to the clean features. For an
  output off the clean-negative line with ``r > 1`` a descent step grows
  the off-line error, and (MSE, one negative) it moves the output farther
  from the clean features whenever the output's projection on that line
  lies past the negative.
- ``"ratio_detached"``: ``P / (N.detach() + eps)``. The same value as
  ``"ratio"``, but the denominator is a constant per step: the gradient is
  the pull to the clean features, ``grad P``, scaled by ``1 / N``.
- ``"feature_match"``: ``P`` alone (the numerator; no negative acts on the
  gradient, the negatives' distances are still reported).
"""

import torch

from lobes.errors import HparamsError

DISTANCES = ("l1", "mse")
FORMS = ("ratio", "ratio_detached", "feature_match")


def _distance(kind, first, second, mask=None):
    """Mean absolute or squared difference, optionally over valid frames."""
    diff = first - second
    diff = diff.abs() if kind == "l1" else diff.pow(2)
    if mask is None:
        return diff.mean()
    mask = mask.to(diff.dtype).unsqueeze(-1)
    return (diff * mask).sum() / (mask.sum() * diff.shape[-1]).clamp(min=1)


def frame_mask(lengths, batch, frames, device=None):
    """Boolean ``[batch, frames]`` mask of the frames inside each utterance.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths in ``(0, 1]`` (SpeechBrain's ``wav_lens``).
    batch, frames : int
        The feature tensor's first two sizes.
    device : torch.device, optional
        Where to build the mask.

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5]), 2, 4).int()
    tensor([[1, 1, 1, 1],
            [1, 1, 0, 0]], dtype=torch.int32)
    """
    valid = torch.round(lengths.to(device).float() * frames).clamp(min=1)
    steps = torch.arange(frames, device=device).unsqueeze(0)
    return steps.expand(batch, frames) < valid.unsqueeze(1)


class ContrastiveRegularization(torch.nn.Module):
    """CR loss: closer to the positive, farther from weighted negatives.

    A loss on feature lists, one tensor ``[batch, frames, dim]`` per layer
    (or layer group) of a frozen feature space; the caller computes the
    features (:class:`lobes.ssl_features.FrozenSSLFeatures`), so the same
    loss works in any space. Only ``enhanced_features`` should carry a
    gradient; the positive's and the negatives' features are detached here.

    Arguments
    ---------
    layer_weights : list of float, optional
        ``w_i``, one per feature tensor, normalised here to sum to 1 (only
        their ratios matter, so CR stays of order 1 whatever their scale).
        Default: equal weights.
    distance : str
        ``"l1"`` (AECR-Net, C2PNet) or ``"mse"`` (Xu et al.'s speech code).
    eps : float
        Added to the denominator.
    form : str
        ``"ratio"`` (default, the papers' ``P / N``), ``"ratio_detached"``
        (``P / N`` with ``N`` held constant per step) or ``"feature_match"``
        (``P`` alone); see the module docstring. The recipes' ``cr_form``.

    Example
    -------
    >>> cr = ContrastiveRegularization(layer_weights=[1.0, 0.5])
    >>> def space(wav):
    ...     return [wav.unsqueeze(-1), wav.unfold(1, 4, 4)]
    >>> clean, noisy = torch.zeros(2, 16), torch.ones(2, 16)
    >>> enhanced = torch.full((2, 16), 0.25, requires_grad=True)
    >>> loss, details = cr(space(enhanced), space(clean), [space(noisy)])
    >>> round(loss.item(), 4), details["positive"], details["negatives"]
    (0.3333, [0.25, 0.25], [[0.75, 0.75]])
    >>> cr.layer_weights  # [1.0, 0.5] normalised
    [0.6666666666666666, 0.3333333333333333]
    >>> loss.backward()
    >>> enhanced.grad.sum() > 0
    tensor(True)

    The other forms; ``"ratio_detached"`` has the ratio's value:

    >>> args = space(enhanced), space(clean), [space(noisy)]
    >>> match = ContrastiveRegularization(form="feature_match")
    >>> round(match(*args)[0].item(), 4)
    0.25
    >>> detached = ContrastiveRegularization(form="ratio_detached")
    >>> round(detached(*args)[0].item(), 4)
    0.3333
    """

    def __init__(
        self, layer_weights=None, distance="l1", eps=1e-7, form="ratio"
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise HparamsError(
                f"CR distance must be one of {DISTANCES}, got '{distance}'"
            )
        if form not in FORMS:
            raise HparamsError(
                f"cr_form must be one of {', '.join(FORMS)}; got '{form}'"
            )
        self.form = form
        self.layer_weights = None
        if layer_weights is not None:
            weights = [float(w) for w in layer_weights]
            if min(weights) < 0 or sum(weights) <= 0:
                raise HparamsError(
                    f"cr_layer_weights must be non-negative with a positive "
                    f"sum, got {layer_weights}"
                )
            self.layer_weights = [w / sum(weights) for w in weights]
        self.distance = distance
        self.eps = float(eps)

    def _weights(self, count):
        if self.layer_weights is None:
            return [1.0 / count] * count
        if len(self.layer_weights) != count:
            raise HparamsError(
                f"CR has {len(self.layer_weights)} layer weights but the "
                f"feature space gives {count} outputs; make "
                "cr_layer_weights as long as the SSL layers/groups"
            )
        return self.layer_weights

    def forward(
        self,
        enhanced_features,
        clean_features,
        negative_features,
        negative_weights=None,
        lengths=None,
        frames=None,
    ):
        """Compute CR for a batch.

        Arguments
        ---------
        enhanced_features : list of torch.Tensor
            Features of the model's output, one ``[batch, frames, dim]``
            tensor per layer; the gradient flows through them.
        clean_features : list of torch.Tensor
            Features of the positive (the clean speech).
        negative_features : list of list of torch.Tensor
            Features of each negative (the noisy input, a reference
            model's output, ...).
        negative_weights : list of float, optional
            ``gamma_k``, one per negative. Default: 1 each.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]``: frames past each utterance's end
            are left out of every distance.
        frames : torch.Tensor, optional
            Valid frames of each utterance ``[batch]`` (instead of
            ``lengths``).

        Returns
        -------
        loss : torch.Tensor
            The scalar CR.
        details : dict
            ``positive`` (per layer ``D(pos, out)``), ``negatives`` (per
            negative, per layer ``D(neg_k, out)``), ``negative_to_positive``
            (per negative, the layer-weighted mean of ``D(neg_k, pos)``: how
            far, hence how easy, each negative is; used by
            :class:`lobes.losses.curriculum.SimilarityCurriculum`),
            ``negative_weights``, ``cr`` (the loss's value) and ``ratio``
            (the layer-weighted ``P / N``, whatever the form), all plain
            floats.

        Example
        -------
        >>> cr = ContrastiveRegularization()
        >>> out = [torch.full((1, 8, 1), 0.5)]
        >>> easy, hard = [torch.ones(1, 8, 1)], [torch.full((1, 8, 1), 0.25)]
        >>> loss, d = cr(out, [torch.zeros(1, 8, 1)], [easy, hard], [0.5, 2.0])
        >>> round(loss.item(), 4), d["negative_to_positive"]
        (0.6667, [1.0, 0.25])
        """
        if not negative_features:
            raise ValueError("CR needs at least one negative")
        count = len(negative_features)
        if negative_weights is None:
            negative_weights = [1.0] * count
        negative_weights = [float(w) for w in negative_weights]
        if len(negative_weights) != count:
            raise ValueError(
                f"CR got {len(negative_weights)} negative weights for "
                f"{count} negatives"
            )
        weights = self._weights(len(enhanced_features))
        if len(clean_features) != len(enhanced_features) or any(
            len(neg) != len(enhanced_features) for neg in negative_features
        ):
            raise ValueError(
                "CR: clean/negative features do not have one tensor per "
                "layer of the enhanced features"
            )
        clean_features = [feat.detach() for feat in clean_features]
        negative_features = [
            [feat.detach() for feat in negative]
            for negative in negative_features
        ]
        mask = None
        batch, total = enhanced_features[0].shape[:2]
        device = enhanced_features[0].device
        if frames is not None:
            steps = torch.arange(total, device=device).unsqueeze(0)
            mask = steps < frames.to(device).unsqueeze(1)
        elif lengths is not None:
            mask = frame_mask(lengths, batch, total, device)

        loss = enhanced_features[0].new_zeros(())
        ratio = enhanced_features[0].new_zeros(())
        positive, negative_rows = [], []
        for index, (weight, out) in enumerate(zip(weights, enhanced_features)):
            pos_distance = _distance(
                self.distance, clean_features[index], out, mask
            )
            neg_distances = [
                _distance(self.distance, negative[index], out, mask)
                for negative in negative_features
            ]
            denominator = sum(
                gamma * dist
                for gamma, dist in zip(negative_weights, neg_distances)
            )
            layer_ratio = pos_distance / (denominator.detach() + self.eps)
            ratio = ratio + weight * layer_ratio.detach()
            if self.form == "ratio":
                term = pos_distance / (denominator + self.eps)
            elif self.form == "ratio_detached":
                term = layer_ratio
            else:  # feature_match
                term = pos_distance
            loss = loss + weight * term
            positive.append(pos_distance.detach())
            negative_rows.append(torch.stack(neg_distances).detach())

        with torch.no_grad():
            layer_weights = torch.tensor(weights, device=loss.device)
            to_positive = torch.stack(
                [
                    torch.stack(
                        [
                            _distance(self.distance, neg, pos, mask)
                            for neg, pos in zip(negative, clean_features)
                        ]
                    )
                    for negative in negative_features
                ]
            )
            to_positive = (to_positive * layer_weights).sum(1)
            to_positive = to_positive / layer_weights.sum()
            # One device-to-host copy for every logged number.
            numbers = torch.cat(
                [
                    loss.detach().reshape(1),
                    ratio.reshape(1),
                    torch.stack(positive),
                    torch.stack(negative_rows).t().reshape(-1),
                    to_positive,
                ]
            ).tolist()
        layers = len(weights)
        details = {
            "cr": numbers[0],
            "ratio": numbers[1],
            "positive": numbers[2 : 2 + layers],
            "negatives": [
                numbers[2 + layers + k * layers : 2 + layers + (k + 1) * layers]
                for k in range(count)
            ],
            "negative_to_positive": numbers[2 + layers * (1 + count) :],
            "negative_weights": negative_weights,
        }
        return loss, details


def summarize_details(details, negative_names=None):
    """Flatten a CR ``details`` dict into ``{name: float}`` for a logger.

    Arguments
    ---------
    details : dict
        As returned by :meth:`ContrastiveRegularization.forward`.
    negative_names : list of str, optional
        Names of the negatives (default ``neg0``, ``neg1``, ...).

    Example
    -------
    >>> summarize_details({"cr": 0.5, "positive": [0.1],
    ...     "negatives": [[0.2]], "negative_to_positive": [0.3],
    ...     "negative_weights": [1.0]}, ["noisy"])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'cr': 0.5, 'cr_pos_l0': 0.1, 'cr_neg_noisy_l0': 0.2,
     'cr_gap_noisy': 0.3, 'cr_gamma_noisy': 1.0}
    """
    count = len(details["negatives"])
    names = negative_names or [f"neg{k}" for k in range(count)]
    flat = {"cr": details["cr"]}
    if "ratio" in details:
        flat["cr_ratio"] = details["ratio"]
    for index, value in enumerate(details["positive"]):
        flat[f"cr_pos_l{index}"] = value
    for name, row in zip(names, details["negatives"]):
        for index, value in enumerate(row):
            flat[f"cr_neg_{name}_l{index}"] = value
    for name, value in zip(names, details["negative_to_positive"]):
        flat[f"cr_gap_{name}"] = value
    for name, value in zip(names, details["negative_weights"]):
        flat[f"cr_gamma_{name}"] = value
    return flat
