"""How hard two loss terms push the same parameters, and in which directions.

Issue 21 (NASS) asks for the gradient share of PatchNCE against PIT on the
separator's parameters, with the cosine between the two gradients; the same
measure suits CR against a waveform loss. :func:`gradient_share` takes the
two terms (each already multiplied by its loss weight, so that the share is
the one the optimiser sees) and a list of parameters, and returns plain
floats for a logger.

The gradients come from :func:`torch.autograd.grad` with ``retain_graph``:
nothing is accumulated into any ``.grad`` and the caller's ``backward`` on
the total loss still works afterwards. The measure costs two extra
backward passes, so log it every few steps. Under DDP the gradients are
this process's own (no all-reduce).
"""

import math

import torch


def _gradients(loss, parameters):
    """Gradients of ``loss`` on ``parameters``; zeros where none flows."""
    if loss.requires_grad:
        grads = torch.autograd.grad(
            loss, parameters, retain_graph=True, allow_unused=True
        )
    else:
        grads = [None] * len(parameters)
    return [
        torch.zeros_like(p, dtype=torch.float32)
        if g is None
        else g.detach().float()
        for g, p in zip(grads, parameters)
    ]


def gradient_share(first, second, parameters):
    """Gradient norms of two scalar losses on parameters, share and cosine.

    Arguments
    ---------
    first, second : torch.Tensor
        Scalar losses (weighted as in the total loss), for instance the
        PIT loss and ``lambda_NCE`` x PatchNCE. A term that does not depend
        on the parameters has a zero gradient.
    parameters : iterable of torch.Tensor
        The parameters on which to measure (e.g. the separator's); those
        with ``requires_grad`` False are left out.

    Returns
    -------
    dict
        Plain floats: ``first_norm``, ``second_norm`` (L2 norms of each
        gradient over all the parameters), ``first_share``,
        ``second_share`` (each norm over the sum of both; NaN if both are
        zero), ``second_to_first`` (``second_norm / first_norm``; NaN if
        ``first_norm`` is zero) and ``cosine`` (between the two gradients
        flattened over all the parameters; NaN if either is zero).

    Example
    -------
    >>> weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> first = (weight * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4)
    >>> second = 2 * weight[0] ** 2  # gradient (4, 0)
    >>> share = gradient_share(first, second, [weight])
    >>> share["first_norm"], share["second_norm"], share["cosine"]
    (5.0, 4.0, 0.6)
    >>> round(share["second_share"], 4), share["second_to_first"]
    (0.4444, 0.8)
    >>> weight.grad is None  # no side effect on .grad
    True
    """
    parameters = [p for p in parameters if p.requires_grad]
    if not parameters:
        raise ValueError(
            "gradient_share needs at least one parameter with requires_grad"
        )
    for name, loss in (("first", first), ("second", second)):
        if loss.dim() != 0:
            raise ValueError(
                f"gradient_share: the {name} loss must be a scalar, got "
                f"shape {tuple(loss.shape)}"
            )
    grads = [_gradients(loss, parameters) for loss in (first, second)]
    with torch.no_grad():
        squares = torch.stack(
            [
                torch.stack([g.pow(2).sum() for g in grads[0]]).sum(),
                torch.stack([g.pow(2).sum() for g in grads[1]]).sum(),
                torch.stack(
                    [(a * b).sum() for a, b in zip(grads[0], grads[1])]
                ).sum(),
            ]
        )
        first_sq, second_sq, dot = squares.double().tolist()
    first_norm, second_norm = math.sqrt(first_sq), math.sqrt(second_sq)
    total = first_norm + second_norm
    nan = math.nan
    return {
        "first_norm": first_norm,
        "second_norm": second_norm,
        "first_share": first_norm / total if total > 0 else nan,
        "second_share": second_norm / total if total > 0 else nan,
        "second_to_first": second_norm / first_norm if first_norm else nan,
        "cosine": (
            max(-1.0, min(1.0, dot / (first_norm * second_norm)))
            if first_norm and second_norm
            else nan
        ),
    }
