"""Branch pull: CMCR-Net's speech-relevant branch towards the clean speech,
its speech-irrelevant branch towards the noise.

METHODS.md section 2a: CMCR-Net's contrastive attention separates
speech-relevant from speech-irrelevant features. The paper's idea is that
separation; this loss is this package's reading of how to train it (the
paper's loss for it could not be read)::

    pull = -SI-SNR(relevant, clean) - SI-SNR(irrelevant, noisy - clean)
           + contrast_weight * cos^2(relevant, noisy - clean)

on the waveforms that :meth:`lobes.models.cmcr_net.CMCRNet.
forward_with_branches` decodes from each branch alone. Negative SI-SNR (dB)
is scale-free, like the main loss should be (METHODS.md section 2). The
optional contrast term, the squared cosine similarity of the zero-mean
relevant estimate and the noise (0 when orthogonal, scale-free), also
pushes the relevant branch away from the noise; it is off by default.

Authors
 * noise-robust-sb contributors 2025
"""

import torch

from lobes.losses.pit import pairwise_neg_sisnr


def _valid_parts(lengths, total, batch):
    """Number of valid samples of each utterance (all of them if None)."""
    if lengths is None:
        return [total] * batch
    return [max(1, int(round(float(r) * total))) for r in lengths]


class BranchPullLoss(torch.nn.Module):
    """Pull the CM branches' estimates to the clean speech and the noise.

    Arguments
    ---------
    contrast_weight : float
        Weight of ``cos^2(relevant, noise)`` in the pull (0: pull only;
        the recipe weighs the whole pull again, so the term's weight in the
        total loss is ``branch_pull_weight * contrast_weight``).
    eps : float
        Numerical floor.

    Example
    -------
    >>> clean, noise = torch.randn(2, 2, 800).unbind(0)
    >>> pull = BranchPullLoss(contrast_weight=1.0)
    >>> loss, details = pull(3 * clean, 0.5 * noise, clean, clean + noise)
    >>> bool(loss < -100), sorted(details)[:2]
    (True, ['contrast', 'contrast_term'])
    >>> swapped, _ = pull(noise, clean, clean, clean + noise)
    >>> bool(swapped > 0)
    True
    """

    def __init__(self, contrast_weight=0.0, eps=1e-8):
        super().__init__()
        self.contrast_weight = float(contrast_weight)
        self.eps = float(eps)

    def forward(self, relevant, irrelevant, clean, noisy, lengths=None):
        """Batch mean of the pull over each utterance's valid samples.

        Arguments
        ---------
        relevant, irrelevant : torch.Tensor
            The branches' decoded estimates ``[B, T]``.
        clean, noisy : torch.Tensor
            Targets ``[B, T]``; the noise is ``noisy - clean``.
        lengths : torch.Tensor, optional
            Relative lengths ``[B]`` in ``(0, 1]``.

        Returns
        -------
        loss : torch.Tensor
        details : dict
            Floats for logging: the branches' SI-SNR (dB) against their
            targets and the mean squared cosine of the relevant branch and
            the noise (measured whatever its weight); and ``contrast_term``,
            the
            weighted contrast term as a tensor (``None`` when its weight is
            0), whose gradient share the Brain logs.
        """
        noise = noisy - clean
        terms = {"relevant": [], "irrelevant": [], "contrast": []}
        for index, end in enumerate(
            _valid_parts(lengths, clean.shape[1], clean.shape[0])
        ):
            rel, irr, cln, nse = (
                x[index, :end].reshape(1, -1, 1)
                for x in (relevant, irrelevant, clean, noise)
            )
            terms["relevant"].append(pairwise_neg_sisnr(rel, cln, self.eps))
            terms["irrelevant"].append(pairwise_neg_sisnr(irr, nse, self.eps))
            # measured even when off: how close the speech branch is to
            # the noise without the term
            with torch.set_grad_enabled(bool(self.contrast_weight)
                                        and torch.is_grad_enabled()):
                rel, nse = rel - rel.mean(), nse - nse.mean()
                dot = (rel * nse).sum()
                energies = rel.pow(2).sum() * nse.pow(2).sum()
                terms["contrast"].append(dot.pow(2) / (energies + self.eps))
        means = {k: torch.stack(v).mean() if v else relevant.new_zeros(())
                 for k, v in terms.items()}
        loss = (means["relevant"] + means["irrelevant"]
                + self.contrast_weight * means["contrast"])
        details = {
            "relevant_si_snr": -means["relevant"].item(),
            "irrelevant_si_snr": -means["irrelevant"].item(),
            "contrast": means["contrast"].item(),
            "contrast_term": (self.contrast_weight * means["contrast"]
                              if self.contrast_weight else None),
        }
        return loss, details
