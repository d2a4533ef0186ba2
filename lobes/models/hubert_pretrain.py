"""A small HuBERT for masked prediction, its prediction head and its loss.

The model is ``transformers.HubertModel`` (so that the saved folder loads
as a hub model, :mod:`lobes.ssl_features`), built here from a few sizes:
layer-norm conv front end and pre-layer-norm ("stable") transformer, as
HuBERT Large; no layer drop; no bias in the convs, so the front end
ignores the input's gain. Pre-training masks through
``mask_time_indices``; the saved config keeps transformers' fine-tuning
defaults (``mask_time_prob`` 0.05).

The head predicts the k-means cluster of each frame as HuBERT does
(cosine similarity between a projection of the last layer and learnt
cluster embeddings, over a temperature of 0.1); the loss is the
cross-entropy at masked frames plus a weight times that at unmasked ones.
"""

import torch
import torch.nn.functional as F

from lobes.errors import HparamsError
from lobes.ssl_features import SSL_SAMPLE_RATE, _quiet_transformers

#: Conv front end of HuBERT/wav2vec 2.0 Base: kernels and strides (20 ms
#: frames, 25 ms receptive field at 16 kHz).
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def hubert_config(
    hidden_size=256, num_layers=4, num_heads=4, ffn_size=1024,
    conv_channels=128, pos_conv_kernel=64, pos_conv_groups=16, dropout=0.1,
):  # fmt: skip
    """The ``transformers.HubertConfig`` of a small HuBERT.

    Arguments
    ---------
    hidden_size, num_layers, num_heads, ffn_size : int
        Transformer width, depth, heads and feed-forward width.
    conv_channels : int
        Channels of each of the 7 conv layers.
    pos_conv_kernel, pos_conv_groups : int
        The convolutional relative position embedding.
    dropout : float
        Hidden, attention and activation dropout.

    Example
    -------
    >>> cfg = hubert_config()
    >>> cfg.model_type, cfg.hidden_size, cfg.do_stable_layer_norm
    ('hubert', 256, True)
    >>> hubert_config(hidden_size=30)
    Traceback (most recent call last):
    ...
    lobes.errors.HparamsError: --hidden_size=30 must be divisible by...
    """
    from transformers import HubertConfig

    if hidden_size % num_heads or hidden_size % pos_conv_groups:
        raise HparamsError(
            f"--hidden_size={hidden_size} must be divisible by --num_heads="
            f"{num_heads} and --pos_conv_groups={pos_conv_groups}; change "
            "one of them"
        )
    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=ffn_size,
        hidden_dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=dropout,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        conv_dim=(conv_channels,) * len(CONV_KERNELS),
        conv_kernel=CONV_KERNELS,
        conv_stride=CONV_STRIDES,
        conv_bias=False,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=pos_conv_kernel,
        num_conv_pos_embedding_groups=pos_conv_groups,
    )


class SmallHubert(torch.nn.Module):
    """A randomly initialised ``HubertModel`` that saves as a hub model.

    Initialised from torch's global generator (seed it first, as the
    recipe's ``seed_everything`` does). Arguments are those of
    :func:`hubert_config`.

    Example
    -------
    >>> model = SmallHubert(hidden_size=32, num_layers=1, num_heads=2,
    ...     ffn_size=32, conv_channels=8, pos_conv_kernel=8, pos_conv_groups=2)
    >>> mask = torch.zeros(1, 24, dtype=torch.bool)
    >>> tuple(model(torch.randn(1, 8000), mask).shape)
    (1, 24, 32)
    """

    def __init__(self, **sizes):
        super().__init__()
        from transformers import HubertModel

        restore = _quiet_transformers()
        try:
            self.model = HubertModel(hubert_config(**sizes))
        finally:
            restore()

    @property
    def hidden_size(self):
        """Width of the last hidden state."""
        return self.model.config.hidden_size

    def forward(self, wav, mask):
        """Last hidden state ``[batch, frames, hidden]``.

        Arguments
        ---------
        wav : torch.Tensor
            ``[batch, samples]`` normalised waveforms.
        mask : torch.Tensor
            ``[batch, frames]`` bool: frames replaced by the mask embedding.
        """
        return self.model(wav, mask_time_indices=mask).last_hidden_state

    def save_model_folder(self, out):
        """``save_pretrained`` plus a 16 kHz, ``do_normalize`` extractor.

        Example
        -------
        >>> import os, tempfile
        >>> model = SmallHubert(hidden_size=32, num_layers=1, num_heads=2,
        ...     ffn_size=32, conv_channels=8, pos_conv_kernel=8,
        ...     pos_conv_groups=2)
        >>> folder = model.save_model_folder(tempfile.mkdtemp())
        >>> sorted(os.listdir(folder))
        ['config.json', 'model.safetensors', 'preprocessor_config.json']
        """
        from transformers import Wav2Vec2FeatureExtractor

        restore = _quiet_transformers()
        try:
            self.model.save_pretrained(out)
            Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=SSL_SAMPLE_RATE,
                padding_value=0.0,
                do_normalize=True,
                return_attention_mask=False,
            ).save_pretrained(out)
        finally:
            restore()
        return out


class PredictionHead(torch.nn.Module):
    """HuBERT's target prediction: cosine similarity over a temperature.

    Arguments
    ---------
    hidden_size, proj_dim, num_clusters : int
        Input width, projection width and number of targets.
    temperature : float
        Divides the cosine similarities.

    Example
    -------
    >>> head = PredictionHead(8, 4, 5)
    >>> tuple(head(torch.randn(2, 3, 8)).shape)
    (2, 3, 5)
    """

    def __init__(self, hidden_size, proj_dim, num_clusters, temperature=0.1):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, proj_dim)
        self.embeddings = torch.nn.Parameter(
            torch.randn(num_clusters, proj_dim) * proj_dim**-0.5
        )
        self.temperature = float(temperature)

    def forward(self, hidden):
        """Logits ``[..., num_clusters]`` of ``[..., hidden_size]``."""
        proj = F.normalize(self.proj(hidden), dim=-1)
        codes = F.normalize(self.embeddings, dim=-1)
        return proj @ codes.t() / self.temperature


class MaskedPredictionLoss(torch.nn.Module):
    """Cross-entropy at masked frames plus a weight times that at the rest.

    Arguments
    ---------
    unmasked_weight : float
        Weight of the cross-entropy at unmasked frames (HuBERT: 0 to 1).

    Example
    -------
    >>> loss_fn = MaskedPredictionLoss(0.5)
    >>> logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0]]])
    >>> loss, stats = loss_fn(logits, torch.tensor([[0, 0]]),
    ...                       torch.tensor([[True, False]]))
    >>> stats["masked_acc"], stats["unmasked_acc"]
    (1.0, 0.0)
    """

    def __init__(self, unmasked_weight=0.5):
        super().__init__()
        self.unmasked_weight = float(unmasked_weight)

    def forward(self, logits, targets, mask):
        """Return the scalar loss and ``masked_acc``/``unmasked_acc``.

        Arguments
        ---------
        logits : torch.Tensor
            ``[batch, frames, clusters]``.
        targets : torch.Tensor
            ``[batch, frames]`` cluster ids.
        mask : torch.Tensor
            ``[batch, frames]`` bool, the masked frames.

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        stats : dict
            ``masked_acc`` and ``unmasked_acc`` (floats, NaN if no such
            frame).
        """
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            reduction="none",
        ).reshape(targets.shape)
        correct = logits.argmax(-1) == targets
        loss = logits.new_zeros(())
        stats = {}
        for name, where, weight in (
            ("masked", mask, 1.0),
            ("unmasked", ~mask, self.unmasked_weight),
        ):
            if where.any():
                if weight:
                    loss = loss + weight * ce[where].mean()
                stats[f"{name}_acc"] = float(correct[where].float().mean())
            else:
                stats[f"{name}_acc"] = float("nan")
        return loss, stats
