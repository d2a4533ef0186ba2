"""Patch-wise contrastive loss (PatchNCE, Park et al. 2020) as NASS uses it.

Query, positive and negative are encoder-domain feature maps ``[B, C, L]``.
A shared "sampler" (two 3x3 convolutions over the map as a one-channel
image) and a shared MLP embed ``K`` patches drawn at the same random
positions in the three maps; each query patch must pick its positive among
the negative patches at the other positions ((M+1)-way cross-entropy on
cosine similarities divided by a temperature). As in CUT, the positive and
negative embeddings are computed without gradient (detached), so only the
query branch is pushed; the sampler and MLP learn through the query.

Two choices make the term learn on masked encoder features, which are
small and non-negative (about 0.02 +- 0.04):

- the sampler and MLP start as CUT's networks do (weights N(0, 0.02), zero
  biases), not with PyTorch's defaults, whose biases (0.3 to 1) dwarf such
  features: every embedding then points one way and the loss sits at ln K;
- each feature map is normalised (zero mean, unit variance per item) before
  the sampler (``feature_norm="map"``). On raw features the zero-bias
  one-channel sampler collapses: its single ReLU dies and every embedding
  is zero (loss exactly ln K). Measured on a toy where queries can match
  their positives (K = 64, 300 Adam steps, 6 seeds): raw features with
  CUT's initialisation collapsed 6 of 6 times at lr 1.5e-4 and 1e-3, with
  PyTorch's 1 of 6; normalised maps with CUT's initialisation 0 of 6 at
  both rates (final loss 0.01 at the paper's 1.5e-4).
  ``feature_norm="none"`` keeps the raw features (the authors' code).

Authors
 * noise-robust-sb contributors 2025
"""

import torch
import torch.nn.functional as F
from torch import nn

from lobes.errors import HparamsError

PATCH_KINDS = ("value", "vector")

#: How feature maps are normalised before the sampler.
FEATURE_NORMS = ("map", "none")


def init_like_cut(module, std=0.02):
    """CUT's initialisation: weights N(0, ``std``), zero biases.

    Example
    -------
    >>> layer = torch.nn.Linear(4, 3)
    >>> init_like_cut(layer)
    >>> bool((layer.bias == 0).all()), layer.weight.std().item() < 0.1
    (True, True)
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)


def normalize_maps(features, eps=1e-8):
    """Zero mean, unit variance over each ``C x L`` map of ``[B, C, L]``.

    Example
    -------
    >>> maps = normalize_maps(torch.rand(2, 4, 10) * 0.02)
    >>> maps.mean((1, 2)).abs().max() < 1e-6, maps.std((1, 2))
    (tensor(True), tensor([1.0000, 1.0000]))
    """
    mean = features.mean(dim=(1, 2), keepdim=True)
    std = features.std(dim=(1, 2), keepdim=True)
    return (features - mean) / (std + eps)


def _conv3x3_valid(windows, conv):
    """A 1-channel 3x3 ``conv`` without padding on ``[..., H, W]`` windows.

    Written as nine shifted products: on small windows this is much cheaper
    on CPU than a one-channel ``conv2d`` and its backward pass.
    """
    height, width = windows.shape[-2] - 2, windows.shape[-1] - 2
    weight = conv.weight[0, 0]
    out = conv.bias[0].expand(windows.shape[:-2] + (height, width))
    for i in range(3):
        for j in range(3):
            shifted = windows[..., i : i + height, j : j + width]
            out = out + weight[i, j] * shifted
    return out


class PatchSampler(nn.Module):
    """Conv2d(1,1,3) -> ReLU -> Conv2d(1,1,3) over a ``C x L`` feature map.

    Both convolutions zero-pad by one, so the output has the input's shape.
    :meth:`forward` filters a whole map; :meth:`at` computes the same
    output only where patches are drawn (exactly, from the 5 x 5
    neighbourhood each output value depends on), which is what the loss
    uses: it costs ``O(K)`` instead of ``O(C L)``.

    Example
    -------
    >>> sampler = PatchSampler()
    >>> features = torch.randn(2, 8, 30)
    >>> sampler(features).shape
    torch.Size([2, 8, 30])
    >>> positions = torch.tensor([[0, 239], [17, 100]])
    >>> full = sampler(features).flatten(1).gather(1, positions)
    >>> torch.allclose(sampler.at(features, positions, "value"), full)
    True
    """

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(1, 1, kernel_size=3, padding=1),
        )

    def forward(self, features):
        """Filter ``[B, C, L]`` features, same shape out."""
        return self.layers(features.unsqueeze(1)).squeeze(1)

    def at(self, features, positions, patch):
        """The filtered map at patch positions only.

        Arguments
        ---------
        features : torch.Tensor
            ``[B, C, L]``.
        positions : torch.Tensor
            ``[B, K]`` long: flat indices ``c * L + l`` for
            ``patch="value"``, frame indices ``l`` for ``patch="vector"``.
        patch : str
            ``"value"`` or ``"vector"``.

        Returns
        -------
        torch.Tensor
            ``[B, K]`` values (``"value"``) or ``[B, K, C]`` channel vectors
            (``"vector"``), equal to ``forward(features)`` at the positions.
        """
        batch, channels, frames = features.shape
        first, _, second = self.layers
        padded = F.pad(features, (2, 2, 2, 2))
        offsets = torch.arange(5, device=features.device)
        batch_index = torch.arange(batch, device=features.device)
        if patch == "value":
            rows, cols = positions // frames, positions % frames
            # [B, K, 5, 5] input neighbourhoods (padded coordinates)
            windows = padded[
                batch_index.view(-1, 1, 1, 1),
                (rows[..., None] + offsets)[..., None],
                (cols[..., None] + offsets)[..., None, :],
            ]
            inner_rows = rows[..., None] + offsets[:3] - 1  # [B, K, 3]
            row_ok = (inner_rows >= 0) & (inner_rows < channels)
        else:
            cols = positions
            # [B, K, C + 4, 5] columns around each frame
            windows = padded[
                batch_index.view(-1, 1, 1), :, cols[..., None] + offsets
            ].transpose(-1, -2)
            row_ok = torch.ones(
                channels + 2, dtype=torch.bool, device=features.device
            )
            row_ok[0] = row_ok[-1] = False
            row_ok = row_ok.expand(batch, cols.shape[1], -1)
        inner_cols = cols[..., None] + offsets[:3] - 1  # [B, K, 3]
        col_ok = (inner_cols >= 0) & (inner_cols < frames)
        # The second convolution sees zeros outside the map.
        inside = (row_ok[..., :, None] & col_ok[..., None, :]).to(
            features.dtype
        )
        hidden = torch.relu(_conv3x3_valid(windows, first)) * inside
        out = _conv3x3_valid(hidden, second)  # [B, K, 1, 1] or [B, K, C, 1]
        if patch == "value":
            return out[..., 0, 0]
        return out[..., 0]


class PatchNCELoss(nn.Module):
    """PatchNCE between a query map, its positive and a negative map.

    Arguments
    ---------
    num_patches : int
        Patches ``K`` drawn per map and batch item (all positions if the
        map has fewer).
    temperature : float
        Softmax temperature ``T``.
    embed_dim : int
        Output size of the projection MLP.
    patch : str
        ``"value"`` (the official NASS variant): a patch is one value of the
        filtered ``C x L`` map, projected by Linear(1, E) -> ReLU ->
        Linear(E, E). ``"vector"`` (CUT style): a patch is the vector of
        ``channels`` values at one frame, projected by Linear(C, E) -> ReLU
        -> Linear(E, E).
    channels : int
        Feature channels ``C`` (used by ``patch="vector"``).
    feature_norm : str
        ``"map"``: normalise each feature map before the sampler (see the
        module docstring); ``"none"``: the raw features.
    init_std : float or None
        Standard deviation of CUT's weight initialisation (zero biases);
        ``None`` keeps PyTorch's default initialisation.

    Example
    -------
    >>> loss_fn = PatchNCELoss(num_patches=16, embed_dim=8, channels=4)
    >>> query = torch.randn(2, 4, 20, requires_grad=True)
    >>> loss = loss_fn(query, torch.randn(2, 4, 20), torch.randn(2, 4, 20))
    >>> loss.dim(), bool(loss > 0)
    (0, True)
    """

    def __init__(
        self,
        num_patches=256,
        temperature=0.07,
        embed_dim=256,
        patch="vector",
        channels=256,
        feature_norm="map",
        init_std=0.02,
    ):
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise HparamsError(
                f"PatchNCELoss feature_norm must be one of {FEATURE_NORMS}, "
                f"got {feature_norm!r}: fix `nce_feature_norm` in the YAML"
            )
        if patch not in PATCH_KINDS:
            raise HparamsError(
                f"PatchNCELoss patch must be one of {PATCH_KINDS}, got "
                f"{patch!r}: fix `nce_patch` in the YAML"
            )
        if temperature <= 0 or num_patches < 1:
            raise HparamsError(
                "PatchNCELoss needs temperature > 0 and num_patches >= 1, "
                f"got {temperature} and {num_patches}: fix them in the YAML"
            )
        self.num_patches = int(num_patches)
        self.temperature = float(temperature)
        self.patch = patch
        self.channels = int(channels)
        in_dim = 1 if patch == "value" else self.channels
        self.sampler = PatchSampler()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, embed_dim),
            nn.ReLU(),
            nn.Linear(embed_dim, embed_dim),
        )
        self.feature_norm = feature_norm
        if init_std is not None:
            init_like_cut(self, float(init_std))

    def patches_drawn(self, features):
        """How many patches ``K`` one map gives (chance loss: ln K).

        Example
        -------
        >>> PatchNCELoss(num_patches=256, channels=4).patches_drawn(
        ...     torch.zeros(1, 4, 100))
        100
        """
        _, channels, frames = features.shape
        count = channels * frames if self.patch == "value" else frames
        return min(self.num_patches, count)

    def _positions(self, features):
        """Draw ``[B, K]`` random patch positions (without replacement)."""
        batch, channels, frames = features.shape
        count = channels * frames if self.patch == "value" else frames
        k = self.patches_drawn(features)
        scores = torch.rand(batch, count, device=features.device)
        return scores.topk(k, dim=1).indices

    def _embed(self, features, positions):
        """Sampler at the patches, MLP and L2 normalisation -> [B, K, E]."""
        if self.patch == "vector" and features.shape[1] != self.channels:
            raise ValueError(
                f"PatchNCELoss(patch='vector', channels={self.channels}) got "
                f"features with {features.shape[1]} channels"
            )
        if self.feature_norm == "map":
            features = normalize_maps(features)
        patches = self.sampler.at(features, positions, self.patch)
        if self.patch == "value":
            patches = patches.unsqueeze(-1)
        return F.normalize(self.mlp(patches).float(), dim=-1)

    def forward(self, query, positive, negative):
        """Return the mean PatchNCE loss (a scalar).

        Arguments
        ---------
        query : torch.Tensor
            ``[B, C, L]`` features that receive the gradient.
        positive : torch.Tensor
            ``[B, C, L]`` features to pull towards (detached here).
        negative : torch.Tensor
            ``[B, C, L]`` features to push away from (detached here).

        Returns
        -------
        torch.Tensor
            Scalar cross-entropy averaged over batch items and patches.
        """
        if not (query.shape == positive.shape == negative.shape):
            raise ValueError(
                "query, positive and negative must have the same [B, C, L] "
                f"shape, got {tuple(query.shape)}, {tuple(positive.shape)}, "
                f"{tuple(negative.shape)}"
            )
        positions = self._positions(query)
        q = self._embed(query, positions)
        with torch.no_grad():
            p = self._embed(positive.detach(), positions)
            n = self._embed(negative.detach(), positions)
        batch, k, _ = q.shape
        with torch.autocast(device_type=q.device.type, enabled=False):
            l_pos = (q * p).sum(dim=-1, keepdim=True)  # [B, K, 1]
            l_neg = torch.bmm(q, n.transpose(1, 2))  # [B, K, K]
            off_diagonal = ~torch.eye(k, dtype=torch.bool, device=q.device)
            l_neg = l_neg[:, off_diagonal].reshape(batch, k, k - 1)
            logits = torch.cat([l_pos, l_neg], dim=-1) / self.temperature
            target = torch.zeros(
                batch * k, dtype=torch.long, device=logits.device
            )
            return F.cross_entropy(logits.reshape(batch * k, -1), target)


class NoiseAwareContrastiveLoss(nn.Module):
    """NASS's contrastive term, averaged over speakers.

    For speaker ``i`` (outputs already in reference order): query = the
    estimate's masked features, positive = the encoder features of the true
    source ``i`` (detached), negative = the predicted noise's masked
    features (detached). The weight ``lambda_NCE`` is applied by the caller.

    Arguments
    ---------
    patch_nce : PatchNCELoss
        The shared patch loss (its sampler/MLP are training-only modules).
    num_spks : int
        Number of speakers ``N``.

    Example
    -------
    >>> nce = NoiseAwareContrastiveLoss(
    ...     PatchNCELoss(num_patches=8, embed_dim=8, channels=4), num_spks=2
    ... )
    >>> masked = torch.rand(3, 2, 4, 10, requires_grad=True)
    >>> nce(masked, torch.rand(2, 2, 4, 10)).dim()
    0
    """

    def __init__(self, patch_nce, num_spks):
        super().__init__()
        self.patch_nce = patch_nce
        self.num_spks = int(num_spks)

    def forward(self, masked_features, reference_features):
        """Return the speaker-averaged PatchNCE loss (a scalar).

        Arguments
        ---------
        masked_features : torch.Tensor
            ``[N + 1, B, C, L]`` masked features in reference order, noise
            last.
        reference_features : torch.Tensor
            ``[N, B, C, L]`` encoder features of the true sources.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        n = self.num_spks
        if masked_features.shape[0] != n + 1:
            raise ValueError(
                f"NoiseAwareContrastiveLoss(num_spks={n}) needs {n + 1} "
                f"masked feature maps (noise last), got "
                f"{masked_features.shape[0]}"
            )
        if reference_features.shape != masked_features[:n].shape:
            raise ValueError(
                f"reference_features must be [{n}, B, C, L] matching the "
                f"masked features {tuple(masked_features[:n].shape)}, got "
                f"{tuple(reference_features.shape)}"
            )
        _, batch, channels, frames = masked_features.shape
        # All speakers in one call: equal-size groups, so the mean over the
        # stacked batch equals the mean over speakers of per-speaker means.
        query = masked_features[:n].reshape(n * batch, channels, frames)
        positive = reference_features.detach().reshape(query.shape)
        negative = masked_features[-1].detach().repeat(n, 1, 1)
        return self.patch_nce(query, positive, negative)
