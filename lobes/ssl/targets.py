"""Pre-training targets: MFCC frames on the model's grid, k-means, cluster ids.

HuBERT's first iteration (Hsu et al., 2021) predicts, at masked frames, the
k-means cluster of 39-dimensional MFCC frames (13 coefficients, deltas and
delta-deltas) of the clean speech; its second clusters a hidden layer of
the first model instead (:class:`SSLLayerFrames`). Frames are 25 ms every
20 ms, exactly the receptive field and hop of the model's conv front end,
so a waveform of ``n`` samples has :func:`num_frames` ``(n)`` targets.

Every waveform is normalised to zero mean and unit variance
(:func:`normalize_waveform`) before the MFCCs, as before the model, so
targets and features ignore the recording's gain.
"""

import os

import torch
import torchaudio

from lobes.errors import HparamsError
from lobes.ssl_features import SSL_SAMPLE_RATE, FrozenSSLFeatures

#: Samples per model frame (the product of the conv strides) at 16 kHz.
FRAME_HOP = 320
#: Receptive field of the conv front end in samples (a 25 ms window).
FRAME_WINDOW = 400


def normalize_waveform(wav, eps=1e-7):
    """Zero mean, unit variance along the last axis (``do_normalize``).

    Example
    -------
    >>> x = normalize_waveform(3 * torch.randn(2, 1000) + 1)
    >>> bool(x.mean(-1).abs().max() < 1e-5), bool(
    ...     torch.allclose(x.std(-1, unbiased=False), torch.ones(2)))
    (True, True)
    """
    mean = wav.mean(dim=-1, keepdim=True)
    var = wav.var(dim=-1, keepdim=True, unbiased=False)
    return (wav - mean) / torch.sqrt(var + eps)


class MFCCFrames(torch.nn.Module):
    """MFCC frames aligned with the model's frames (25 ms every 20 ms).

    Frame ``t`` covers samples ``[320 t, 320 t + 400)``, exactly the
    receptive field of model frame ``t``, so a waveform of ``n`` samples
    gives ``(n - 400) // 320 + 1`` frames in both.

    Arguments
    ---------
    n_mfcc : int
        Cepstral coefficients.
    deltas : bool
        Append deltas and delta-deltas (``3 * n_mfcc`` dimensions).
    n_mels : int
        Mel bands.

    Example
    -------
    >>> mfcc = MFCCFrames(13, deltas=True)
    >>> tuple(mfcc(torch.randn(32080)).shape)
    (100, 39)
    """

    def __init__(self, n_mfcc=13, deltas=True, n_mels=40):
        super().__init__()
        self.deltas = bool(deltas)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=SSL_SAMPLE_RATE,
            n_mfcc=int(n_mfcc),
            melkwargs={
                "n_fft": FRAME_WINDOW,
                "win_length": FRAME_WINDOW,
                "hop_length": FRAME_HOP,
                "n_mels": int(n_mels),
                "center": False,
                "f_min": 20.0,
            },
        )

    @property
    def dim(self):
        """Dimension of a frame."""
        return self.mfcc.n_mfcc * (3 if self.deltas else 1)

    @torch.no_grad()
    def forward(self, wav):
        """Return ``[frames, dim]`` for a ``[time]`` waveform."""
        coeffs = self.mfcc(wav.float())  # [n_mfcc, frames]
        if self.deltas:
            delta = torchaudio.functional.compute_deltas(coeffs)
            delta2 = torchaudio.functional.compute_deltas(delta)
            coeffs = torch.cat([coeffs, delta, delta2], dim=0)
        return coeffs.transpose(0, 1).contiguous()


def num_frames(num_samples):
    """Model (and MFCC) frames of a waveform of ``num_samples`` samples.

    Example
    -------
    >>> num_frames(32080), num_frames(399)
    (100, 0)
    """
    return max(0, (int(num_samples) - FRAME_WINDOW) // FRAME_HOP + 1)


def kmeans(features, num_clusters, iterations=100, seed=0):
    """k-means++ initialisation then Lloyd iterations, deterministic per seed.

    Computed in float64 so that the thread count cannot flip an assignment.
    A cluster left empty is re-seeded with the point farthest from its
    centroid.

    Arguments
    ---------
    features : torch.Tensor
        ``[points, dim]``.
    num_clusters : int
        K (at most the number of points).
    iterations : int
        The most Lloyd iterations (it stops when assignments settle).
    seed : int
        Seed of the k-means++ draws.

    Returns
    -------
    centroids : torch.Tensor
        ``[K, dim]``, float32.
    inertia : float
        Mean squared distance of a point to its centroid.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> blobs = torch.cat([torch.randn(50, 2, generator=gen) * 0.1 + c
    ...                    for c in (-5.0, 0.0, 5.0)])
    >>> centroids, _ = kmeans(blobs, 3, seed=1)
    >>> sorted(round(v) for v in centroids[:, 0].tolist())
    [-5, 0, 5]
    """
    points = features.double()
    count = points.shape[0]
    if not 1 <= num_clusters <= count:
        raise ValueError(
            f"k-means needs 1 <= K <= points, got K={num_clusters}, {count}"
        )
    gen = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(count, (1,), generator=gen))
    centroids = points[first : first + 1]
    nearest = ((points - centroids[0]) ** 2).sum(1)
    for _ in range(1, num_clusters):
        weights = nearest.clamp_min(0)
        if float(weights.sum()) <= 0:
            pick = int(torch.randint(count, (1,), generator=gen))
        else:
            pick = int(torch.multinomial(weights, 1, generator=gen))
        centroids = torch.cat([centroids, points[pick : pick + 1]])
        nearest = torch.minimum(nearest, ((points - points[pick]) ** 2).sum(1))
    assign = None
    for _ in range(int(iterations)):
        dist = torch.cdist(points, centroids) ** 2
        new_assign = dist.argmin(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        sizes = torch.bincount(assign, minlength=num_clusters).double()
        centroids = sums / sizes.clamp_min(1).unsqueeze(1)
        for empty in torch.nonzero(sizes == 0).flatten().tolist():
            own = dist.gather(1, assign.unsqueeze(1)).squeeze(1)
            far = int(own.argmax())
            centroids[empty] = points[far]
            assign[far] = empty
    dist = torch.cdist(points, centroids) ** 2
    inertia = float(dist.min(1).values.mean())
    return centroids.float(), inertia


def assign_clusters(features, centroids):
    """Nearest-centroid ids of ``[frames, dim]`` features.

    Example
    -------
    >>> assign_clusters(torch.tensor([[0.1], [4.0]]),
    ...                 torch.tensor([[0.0], [5.0]])).tolist()
    [0, 1]
    """
    dist = torch.cdist(features.double(), centroids.double())
    return dist.argmin(1)


class SSLLayerFrames:
    """One hidden state of a frozen SSL model folder, as target features.

    Arguments
    ---------
    folder : str
        A model folder (e.g. a first-iteration pre-training).
    layer : int
        The hidden state (0: before the transformer).

    Example
    -------
    >>> import tempfile
    >>> from lobes.ssl_features import save_tiny_ssl_model
    >>> folder = save_tiny_ssl_model("hubert", tempfile.mkdtemp())
    >>> tuple(SSLLayerFrames(folder, 1)(torch.randn(4000)).shape)
    (12, 32)
    """

    def __init__(self, folder, layer):
        self.ssl = FrozenSSLFeatures(folder, layers=[int(layer)])
        self.name = f"{os.path.basename(os.path.normpath(folder))}:L{layer}"

    @torch.no_grad()
    def __call__(self, wav):
        """``[frames, dim]`` of a ``[time]`` waveform (20 ms frames)."""
        feats = self.ssl(wav.unsqueeze(0))[0][0]
        if feats.shape[0] != num_frames(wav.numel()):
            raise HparamsError(
                f"--targets_from {self.ssl.source}: {feats.shape[0]} frames "
                f"for {wav.numel()} samples, expected "
                f"{num_frames(wav.numel())} (20 ms frames)"
            )
        return feats


def target_features(n_mfcc=13, n_mels=40, targets_from="", targets_layer=3):
    """The features that k-means clusters into targets (MFCC-39 or a layer).

    Arguments
    ---------
    n_mfcc, n_mels : int
        MFCC coefficients (before deltas) and mel bands.
    targets_from : str
        HuBERT's second iteration: a first-iteration model folder whose
        hidden state ``targets_layer`` is clustered instead of the MFCCs.
        Empty: MFCC targets (first iteration).
    targets_layer : int
        The hidden state of ``targets_from``.

    Example
    -------
    >>> target_features().name
    'MFCC-39'
    """
    if targets_from:
        folder = os.path.expanduser(targets_from)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise HparamsError(
                f"--targets_from={targets_from}: not a model folder (no "
                "config.json); give a folder written by a pre-training"
            )
        return SSLLayerFrames(folder, targets_layer)
    features = MFCCFrames(n_mfcc, True, n_mels)
    features.name = f"MFCC-{features.dim}"
    return features
