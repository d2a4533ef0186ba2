"""Losses: batched PIT SI-SNR with a noise slot, and NASS's PatchNCE."""

from lobes.losses.patch_nce import (
    NoiseAwareContrastiveLoss,
    PatchNCELoss,
    PatchSampler,
)
from lobes.losses.pit import (
    PITLoss,
    best_permutation,
    pairwise_neg_sisnr,
    reorder,
    reorder_features,
)

__all__ = [
    "NoiseAwareContrastiveLoss",
    "PITLoss",
    "PatchNCELoss",
    "PatchSampler",
    "best_permutation",
    "pairwise_neg_sisnr",
    "reorder",
    "reorder_features",
]
