"""Waveform-domain measures and losses: SI-SNR (the package's one
implementation) and the waveform losses of the enhancement recipes.

Every loss here takes ``lengths`` (SpeechBrain's relative lengths in
``(0, 1]``) so that the zero padding of a batch never counts.

Authors
 * noise-robust-sb contributors 2025
"""

import torch


def si_snr(estimates, references, eps=1e-8):
    """Scale-invariant SNR (dB) on the last axis, broadcasting the others.

    Both signals are made zero-mean; the estimate is projected on the
    reference, and the ratio of the projection's energy to the residual's
    is returned in dB. Computed in float32 (energies of long signals
    overflow half precision).

    Arguments
    ---------
    estimates : torch.Tensor
        ``[..., T]``.
    references : torch.Tensor
        ``[..., T]``, broadcastable against ``estimates``.
    eps : float
        Numerical floor inside the divisions and the logarithm.

    Returns
    -------
    torch.Tensor
        ``[...]`` in dB.

    Example
    -------
    >>> ref = torch.randn(2, 1000)
    >>> bool((si_snr(3 * ref, ref) > 60).all())
    True
    >>> est = torch.randn(3, 1, 1000); refs = torch.randn(1, 2, 1000)
    >>> si_snr(est, refs).shape  # every estimate against every reference
    torch.Size([3, 2])
    """
    with torch.autocast(device_type=estimates.device.type, enabled=False):
        estimates = estimates.float()
        references = references.float()
        estimates = estimates - estimates.mean(dim=-1, keepdim=True)
        references = references - references.mean(dim=-1, keepdim=True)
        dot = (estimates * references).sum(dim=-1, keepdim=True)
        energy = references.pow(2).sum(dim=-1, keepdim=True) + eps
        projection = dot / energy * references
        residual = estimates - projection
        ratio = projection.pow(2).sum(dim=-1) / (
            residual.pow(2).sum(dim=-1) + eps
        )
        return 10 * torch.log10(ratio + eps)


def _per_utterance(loss_fn, enhanced, clean, lengths):
    """Mean over the batch of ``loss_fn`` on each utterance's valid part."""
    if lengths is None or bool((lengths >= 1).all()):
        return loss_fn(enhanced, clean).mean()
    total = enhanced.new_zeros(())
    for index in range(enhanced.shape[0]):
        end = max(1, int(round(float(lengths[index]) * enhanced.shape[1])))
        total = total + loss_fn(
            enhanced[index : index + 1, :end], clean[index : index + 1, :end]
        ).mean()
    return total / enhanced.shape[0]


def mse_loss(enhanced, clean, lengths=None):
    """Mean squared error, averaged per utterance then over the batch.

    Arguments
    ---------
    enhanced, clean : torch.Tensor
        Waveforms ``[B, T]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[B]``; samples past each end are left out.

    Example
    -------
    >>> clean = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> mse_loss(clean * 0.5, clean).item()
    0.25
    >>> mse_loss(torch.tensor([[1.0, -1.0, 0.0, 0.0]]), clean,
    ...          torch.tensor([0.5])).item()
    0.0
    """
    return _per_utterance(
        lambda e, c: (e - c).pow(2).mean(dim=-1), enhanced, clean, lengths
    )


def normalized_mse_loss(enhanced, clean, lengths=None, eps=1e-8):
    """MSE divided by the clean speech's energy (scale-free), per utterance.

    ``mean((enhanced - clean)^2) / mean(clean^2)``: 1 for a silent output,
    0 for a perfect one, whatever the recording level; unlike SI-SNR it
    keeps the output at the clean speech's level.

    Example
    -------
    >>> clean = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> normalized_mse_loss(clean * 0.5, clean).item()
    0.25
    >>> normalized_mse_loss(clean * 50, clean * 100).item()
    0.25
    """
    return _per_utterance(
        lambda e, c: (e - c).pow(2).mean(dim=-1)
        / (c.pow(2).mean(dim=-1) + eps),
        enhanced, clean, lengths,
    )


def neg_si_snr_loss(enhanced, clean, lengths=None):
    """Negative SI-SNR (dB), per utterance then averaged over the batch.

    Example
    -------
    >>> clean = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> neg_si_snr_loss(clean * 0.5, clean).item() < -60
    True
    """
    return _per_utterance(
        lambda e, c: -si_snr(e, c), enhanced, clean, lengths
    )
