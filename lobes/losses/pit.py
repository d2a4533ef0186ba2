"""Permutation-invariant SI-SNR training, batched, with an optional noise slot.

The pairwise loss matrix between all estimates and all references is computed
once per batch; the best of all ``S!`` permutations is then found with one
gather over a precomputed permutation table, separately for every batch item.

Permutation convention used throughout: ``perm[b, j]`` is the index of the
estimate matched to reference ``j`` in batch item ``b``, so
``reorder(estimates, perm)[b, :, j] == estimates[b, :, perm[b, j]]``.

Authors
 * noise-robust-sb contributors 2025
"""

import functools
import itertools

import torch

from lobes.errors import HparamsError
from lobes.losses.waveform import si_snr

NOISE_SLOTS = ("pit", "fixed")


def pairwise_neg_sisnr(estimates, targets, eps=1e-8):
    """Negative SI-SNR between every estimate and every reference.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources ``[B, T, S_est]``.
    targets : torch.Tensor
        Reference sources ``[B, T, S_ref]``.
    eps : float
        Numerical floor inside the divisions and the logarithm.

    Returns
    -------
    torch.Tensor
        ``[B, S_est, S_ref]`` with entry ``[b, i, j]`` the negative SI-SNR
        (dB) of estimate ``i`` against reference ``j``.

    Example
    -------
    >>> ref = torch.randn(1, 100, 2)
    >>> loss = pairwise_neg_sisnr(ref.flip(-1) * 3.0, ref)
    >>> bool(loss[0, 1, 0] < -60) and bool(loss[0, 0, 0] > -60)
    True
    """
    if estimates.dim() != 3 or targets.dim() != 3:
        raise ValueError(
            "pairwise_neg_sisnr expects [batch, time, sources] tensors, got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    if estimates.shape[:2] != targets.shape[:2]:
        raise ValueError(
            "estimates and targets must share batch and time sizes, got "
            f"{tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
    return -si_snr(
        estimates.transpose(1, 2).unsqueeze(2),
        targets.transpose(1, 2).unsqueeze(1),
        eps=eps,
    )


@functools.lru_cache(maxsize=16)
def _permutation_table(num_sources):
    """All permutations of ``range(num_sources)`` as a ``[S!, S]`` tensor."""
    perms = list(itertools.permutations(range(num_sources)))
    return torch.tensor(perms, dtype=torch.long)


def best_permutation(loss_matrix):
    """Find each batch item's best estimate-to-reference assignment.

    Arguments
    ---------
    loss_matrix : torch.Tensor
        ``[B, S_est, S_ref]`` pairwise losses (lower is better), square.

    Returns
    -------
    min_loss : torch.Tensor
        ``[B]`` mean over references of the matched losses.
    perm : torch.Tensor
        ``[B, S]`` long, ``perm[b, j]`` = estimate matched to reference j.

    Example
    -------
    >>> loss_matrix = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]])
    >>> best_permutation(loss_matrix)
    (tensor([0.]), tensor([[1, 0]]))
    """
    batch, num_est, num_ref = loss_matrix.shape
    if num_est != num_ref:
        raise ValueError(
            f"best_permutation needs as many estimates as references, got "
            f"{num_est} and {num_ref}"
        )
    table = _permutation_table(num_ref).to(loss_matrix.device)
    # Flat index of loss_matrix[b, table[p, j], j] within one batch item.
    flat_index = table * num_ref + torch.arange(num_ref, device=table.device)
    flat_index = flat_index.reshape(1, -1).expand(batch, -1)
    matched = torch.gather(loss_matrix.reshape(batch, -1), 1, flat_index)
    perm_losses = matched.reshape(batch, -1, num_ref).mean(dim=2)
    min_loss, best = perm_losses.min(dim=1)
    return min_loss, table[best]


def reorder(estimates, perm):
    """Put estimated waveforms ``[B, T, S]`` into reference order.

    Arguments
    ---------
    estimates : torch.Tensor
        ``[B, T, S]``.
    perm : torch.Tensor
        ``[B, S]`` from :func:`best_permutation` or :class:`PITLoss`.

    Returns
    -------
    torch.Tensor
        ``[B, T, S]`` with ``out[b, :, j] = estimates[b, :, perm[b, j]]``.

    Example
    -------
    >>> est = torch.arange(6.0).reshape(1, 2, 3)
    >>> reorder(est, torch.tensor([[2, 0, 1]]))
    tensor([[[2., 0., 1.],
             [5., 3., 4.]]])
    """
    index = perm.unsqueeze(1).expand(-1, estimates.shape[1], -1)
    return torch.gather(estimates, 2, index)


def reorder_features(features, perm):
    """Put per-source features ``[S, B, ...]`` into reference order.

    Arguments
    ---------
    features : torch.Tensor
        ``[S, B, C, L]`` (any trailing dimensions).
    perm : torch.Tensor
        ``[B, S]`` from :func:`best_permutation` or :class:`PITLoss`.

    Returns
    -------
    torch.Tensor
        ``[S, B, ...]`` with ``out[j, b] = features[perm[b, j], b]``.

    Example
    -------
    >>> feats = torch.arange(4.0).reshape(2, 2, 1, 1)
    >>> reorder_features(feats, torch.tensor([[0, 1], [1, 0]])).flatten()
    tensor([0., 3., 2., 1.])
    """
    batch_index = torch.arange(features.shape[1], device=features.device)
    return features[perm.t().to(features.device), batch_index.unsqueeze(0)]


class PITLoss(torch.nn.Module):
    """Permutation-invariant negative SI-SNR with an optional noise output.

    Arguments
    ---------
    num_spks : int
        Number of speakers ``N``.
    noise_output : bool
        True if estimates and targets carry the noise as a last, extra
        source (``S = N + 1``).
    noise_slot : str
        ``"pit"``: the noise takes part in the permutation search over all
        ``N + 1`` outputs, equal weights (NASS). ``"fixed"``: PIT over the
        ``N`` speaker outputs only; the last output is always matched to the
        noise. Ignored without a noise output.
    noise_loss_weight : float
        Weight ``w >= 0`` of the noise reference's term: the loss is the
        weighted mean ``(sum of the N speaker terms + w * noise term) /
        (N + w)``; 1 (the default, the paper's) is the plain mean over the
        ``N + 1`` sources. With ``noise_slot="pit"`` the permutation search
        minimises that same weighted loss (with ``w = 0`` it picks the best
        ``N`` of the ``N + 1`` outputs for the speakers); with ``"fixed"``
        the speakers' search is unchanged. Ignored without a noise output.

    Example
    -------
    >>> pit = PITLoss(num_spks=2, noise_output=True, noise_slot="fixed")
    >>> targets = torch.randn(4, 200, 3)
    >>> loss, perm = pit(targets[:, :, [1, 0, 2]], targets)
    >>> loss.shape, perm[:, -1].tolist(), bool((loss < -60).all())
    (torch.Size([4]), [2, 2, 2, 2], True)
    >>> half = PITLoss(num_spks=2, noise_slot="fixed", noise_loss_weight=0.5)
    >>> est = targets + 0.3 * torch.randn(4, 200, 3)
    >>> terms = pairwise_neg_sisnr(est, targets).diagonal(dim1=1, dim2=2)
    >>> expected = (terms[:, :2].sum(1) + 0.5 * terms[:, 2]) / 2.5
    >>> torch.allclose(half(est, targets)[0], expected)
    True
    """

    reorder = staticmethod(reorder)
    reorder_features = staticmethod(reorder_features)

    def __init__(
        self, num_spks, noise_output=True, noise_slot="pit",
        noise_loss_weight=1.0,
    ):
        super().__init__()
        if noise_slot not in NOISE_SLOTS:
            raise HparamsError(
                f"noise_slot must be one of {NOISE_SLOTS}, got "
                f"{noise_slot!r}: fix `noise_slot` in the YAML"
            )
        weight = float(noise_loss_weight)
        if not weight >= 0.0 or weight == float("inf"):
            raise HparamsError(
                f"noise_loss_weight must be a finite number >= 0, got "
                f"{noise_loss_weight!r}: fix `noise_loss_weight` in the YAML"
            )
        self.noise_loss_weight = weight
        self.num_spks = int(num_spks)
        self.noise_output = bool(noise_output)
        self.noise_slot = noise_slot
        self.num_sources = self.num_spks + int(self.noise_output)

    def forward(self, estimates, targets):
        """Return the per-item loss and the best permutation.

        Arguments
        ---------
        estimates : torch.Tensor
            ``[B, T, S]`` separated signals (noise last if any).
        targets : torch.Tensor
            ``[B, T, S]`` references (noise last if any).

        Returns
        -------
        loss : torch.Tensor
            ``[B]`` mean over all ``S`` sources of the negative SI-SNR at
            the best permutation.
        perm : torch.Tensor
            ``[B, S]``, ``perm[b, j]`` = estimate matched to reference j.
        """
        for name, tensor in (("estimates", estimates), ("targets", targets)):
            if tensor.dim() != 3 or tensor.shape[-1] != self.num_sources:
                raise ValueError(
                    f"PITLoss(num_spks={self.num_spks}, noise_output="
                    f"{self.noise_output}) expects {name} [batch, time, "
                    f"{self.num_sources}], got {tuple(tensor.shape)}"
                )
        loss_matrix = pairwise_neg_sisnr(estimates, targets)
        n, weight = self.num_spks, self.noise_loss_weight
        if not self.noise_output:
            return best_permutation(loss_matrix)
        if self.noise_slot == "pit":
            if weight == 1.0:
                return best_permutation(loss_matrix)
            column_weights = loss_matrix.new_ones(n + 1)
            column_weights[n] = weight
            mean_loss, perm = best_permutation(loss_matrix * column_weights)
            return mean_loss * (n + 1) / (n + weight), perm
        speaker_loss, speaker_perm = best_permutation(loss_matrix[:, :n, :n])
        noise_loss = loss_matrix[:, n, n]
        loss = (speaker_loss * n + weight * noise_loss) / (n + weight)
        noise_index = speaker_perm.new_full((speaker_perm.shape[0], 1), n)
        return loss, torch.cat([speaker_perm, noise_index], dim=1)
