"""CMCR-Net: a complex-spectrum CRN with a collaboration module (CM).

Xu et al., "All Information Is Necessary: Integrating Speech Positive and
Negative Information by Contrastive Learning for Speech Enhancement", 2023
(arXiv 2304.13439); what is known of it is in METHODS.md, section 2a.

Signal path of :class:`CMCRNet` (noisy waveform ``[B, T]`` in, enhanced
waveform ``[B, T]`` out, so that the CR loss and the metrics of the
enhancement Brain apply unchanged)::

    noisy -> STFT (Hann window) -> [real, imag] as 2 channels [B, 2, F, N]
          -> encoder: Conv2d strided over frequency, frame norm, ELU (x L)
          -> bottleneck: LSTM over frames on the flattened (channel,
             frequency) features, linear projection back
          -> collaboration module (CM):
               q, k, v = 1x1 convs of the bottleneck features
               contrastive attention: z = sigmoid(conv(relu(conv(q + k))))
                  relevant   = FreqAttention(z * q, k, v)
                  irrelevant = FreqAttention((1 - z) * q, k, v)
               interactive attention (selective-kernel fusion):
                  s = mean over frequency of (relevant + irrelevant)
                  a = softmax over the 2 branches of FC(ReLU(BN(FC(s))))
                  fused = a_rel * relevant + a_irr * irrelevant
          -> decoder: mirrored ConvTranspose2d, each fed the decoder state
             and the encoder skip gated by sigmoid(1x1 conv([state, skip]))
          -> complex ratio mask (tanh on real and imaginary parts)
          -> mask * noisy STFT -> inverse STFT -> enhanced [B, T]

:meth:`CMCRNet.forward_with_branches` also decodes the relevant and the
irrelevant branch alone, through the same decoder and encoder skips, into
waveform estimates for the branch pull loss
(:class:`lobes.losses.branch_pull.BranchPullLoss`): relevant towards the
clean speech, irrelevant towards the noise.

From METHODS.md (the authors' earlier code): the complex-spectrum CRN with
channels 2 -> 16 -> 32 -> 64 -> 128 -> 256, kernel (3, 2) and stride (2, 1)
over (frequency, time), sigmoid-gated 1x1-conv skip connections; the gate
z = sigmoid(conv(relu(conv(q + k)))) splitting q into z * q and
(1 - z) * q, each followed by attention over frequency; the selective-kernel
fusion with an FC of 256 -> 512 -> 256, BatchNorm and ReLU, softmax across
the branches. This module's own reading (not stated in the sources):

- STFT: 512-point FFT, 32 ms Hann window, 16 ms hop at 16 kHz;
- the network is causal in time at inference: kernels of 2 frames over
  the current and the previous frame, a unidirectional LSTM, attention over
  frequency within a frame, and a per-frame normalisation
  (:class:`FrameNorm`, over channels and frequency) in encoder and decoder
  instead of batch norm, which also keeps the extra branch decodes from
  touching running statistics (the fusion's BatchNorm, from the authors'
  code, uses batch statistics while training);
- the bottleneck LSTM has ``rnn_hidden_size`` units and a linear projection
  back to channels x frequency (with 257 bins the five encoder layers leave
  7 bins x 256 channels = 1792 features; an LSTM of that width would weigh
  some 50M parameters);
- the CM sits after the LSTM; keys and values are 1x1 convs of the same
  features as the query; each branch is a residual single-head attention
  (``query + W_out softmax(q k^T / sqrt(C)) v`` across the frequency bins of
  one frame) with its own output projection;
- the selective-kernel pooling averages over frequency only, giving
  weights per frame (SKNet pools over all positions); the 256 -> 512 -> 256
  FC is read as a squeeze FC to ``fusion_hidden_channels`` (512) followed
  by SKNet's per-branch FCs back to the channels;
- the skip gate is computed from the decoder state and the skip together;
- the output is a complex ratio mask with real and imaginary parts bounded
  by ``tanh`` (so ``|mask| < sqrt(2)``), applied to the noisy STFT;
- the branch estimates for the pull reuse the decoder rather than a
  separate head: no extra parameters, and the decoder must read the
  relevant features as speech and the irrelevant ones as noise, which is
  what makes the split mean something; the price is two more decoder
  passes per training step (none at inference).

Ablation switches (parameter counts differ by exactly the removed part):
``contrastive_attention=False`` removes the gate: both branches take the
whole query ``q`` (same attention, own output projections), so no part of
the features is routed to a speech-irrelevant branch (a branch pull would
still give the two branches roles, so an ablation without contrastive
attention should set the pull's weight to 0 as well);
``interactive_attention=False`` removes the selective-kernel fusion: the
branches are summed.

Authors
 * noise-robust-sb contributors 2025
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


class CMCROutput(NamedTuple):
    """Output of :meth:`CMCRNet.forward_with_branches` (waveforms ``[B, T]``).

    ``relevant`` and ``irrelevant`` are the decoded estimates of the two CM
    branches, meant for the clean speech and the noise respectively.
    """

    enhanced: torch.Tensor
    relevant: torch.Tensor
    irrelevant: torch.Tensor


class CollaborationOutput(NamedTuple):
    """Output of :class:`CollaborationModule` (features ``[B, C, F, N]``).

    ``gate`` is the contrastive gate ``z`` (``None`` without contrastive
    attention).
    """

    fused: torch.Tensor
    relevant: torch.Tensor
    irrelevant: torch.Tensor
    gate: torch.Tensor | None


class FrameNorm(torch.nn.Module):
    """Normalise each frame of ``[B, C, F, N]`` over channels and frequency.

    Statistics are per batch item and frame, so the result does not depend
    on other frames or on the rest of the batch; a learned per-channel
    scale and shift follow.

    Arguments
    ---------
    channels : int
        Number of channels ``C``.
    eps : float
        Added to the variance.

    Example
    -------
    >>> norm = FrameNorm(3)
    >>> out = norm(torch.randn(2, 3, 5, 4) * 7 + 2)
    >>> bool(out.mean(dim=(1, 2)).abs().max() < 1e-5)
    True
    """

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.bias = torch.nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, features):
        """Normalise ``features [B, C, F, N]``."""
        mean = features.mean(dim=(1, 2), keepdim=True)
        var = features.var(dim=(1, 2), keepdim=True, unbiased=False)
        normed = (features - mean) / torch.sqrt(var + self.eps)
        return normed * self.weight[:, None, None] + self.bias[:, None, None]


class FrequencyAttention(torch.nn.Module):
    """Residual single-head attention across the frequency bins of a frame.

    For every frame, each bin's query attends over the bins' keys and
    gathers their values: ``query + W_out softmax(q k^T / sqrt(C)) v``.

    Arguments
    ---------
    channels : int
        Feature size ``C`` of queries, keys and values.

    Example
    -------
    >>> attention = FrequencyAttention(4)
    >>> q, k, v = torch.randn(3, 2, 4, 5, 6).unbind(0)
    >>> attention(q, k, v).shape
    torch.Size([2, 4, 5, 6])
    """

    def __init__(self, channels):
        super().__init__()
        self.output_projection = torch.nn.Conv2d(channels, channels, 1)
        self.scale = channels**-0.5

    def forward(self, query, key, value):
        """Attend over frequency; inputs and output ``[B, C, F, N]``."""
        scores = torch.matmul(
            query.permute(0, 3, 2, 1), key.permute(0, 3, 1, 2)
        )  # [B, N, F, F]
        weights = torch.softmax(scores * self.scale, dim=-1)
        attended = torch.matmul(weights, value.permute(0, 3, 2, 1))
        return query + self.output_projection(attended.permute(0, 3, 2, 1))


class SelectiveKernelFusion(torch.nn.Module):
    """Selective-kernel fusion of two branches (interactive attention).

    ``s`` = frequency average of the branch sum ``[B, C, N]``; per frame,
    ``softmax over branches(W_b ReLU(BN(W_s s)))`` weights each channel of
    each branch; the output is the weighted sum of the branches.

    Arguments
    ---------
    channels : int
        Channels ``C`` of each branch.
    hidden_channels : int
        Size of the squeeze FC.

    Example
    -------
    >>> fusion = SelectiveKernelFusion(4, 8).eval()
    >>> first = torch.randn(2, 4, 5, 6)
    >>> torch.allclose(fusion(first, first), first, atol=1e-6)
    True
    """

    def __init__(self, channels, hidden_channels):
        super().__init__()
        self.squeeze = torch.nn.Sequential(
            torch.nn.Conv1d(channels, hidden_channels, 1, bias=False),
            torch.nn.BatchNorm1d(hidden_channels),
            torch.nn.ReLU(),
        )
        # SKNet's per-branch FCs, stacked into one layer.
        self.branch_logits = torch.nn.Conv1d(hidden_channels, 2 * channels, 1)

    def forward(self, first, second):
        """Fuse two ``[B, C, F, N]`` branches into one."""
        pooled = (first + second).mean(dim=2)  # [B, C, N]
        logits = self.branch_logits(self.squeeze(pooled))
        weights = torch.softmax(
            logits.unflatten(1, (2, first.shape[1])), dim=1
        ).unsqueeze(3)  # [B, 2, C, 1, N]
        return weights[:, 0] * first + weights[:, 1] * second


class CollaborationModule(torch.nn.Module):
    """Contrastive attention and interactive attention (CMCR-Net's CM).

    Arguments
    ---------
    channels : int
        Channels ``C`` of the features ``[B, C, F, N]``.
    fusion_hidden_channels : int
        Squeeze size of the selective-kernel fusion.
    contrastive_attention : bool
        False: no gate; both branches take the whole query.
    interactive_attention : bool
        False: the branches are summed instead of fused.

    Example
    -------
    >>> module = CollaborationModule(4, 8)
    >>> out = module(torch.randn(2, 4, 5, 6))
    >>> out.fused.shape, bool(((out.gate > 0) & (out.gate < 1)).all())
    (torch.Size([2, 4, 5, 6]), True)
    >>> CollaborationModule(4, 8, contrastive_attention=False).gate is None
    True
    """

    def __init__(
        self,
        channels,
        fusion_hidden_channels,
        contrastive_attention=True,
        interactive_attention=True,
    ):
        super().__init__()
        self.query_projection = torch.nn.Conv2d(channels, channels, 1)
        self.key_projection = torch.nn.Conv2d(channels, channels, 1)
        self.value_projection = torch.nn.Conv2d(channels, channels, 1)
        self.gate = None
        if contrastive_attention:
            self.gate = torch.nn.Sequential(
                torch.nn.Conv2d(channels, channels, 1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(channels, channels, 1),
                torch.nn.Sigmoid(),
            )
        self.relevant_attention = FrequencyAttention(channels)
        self.irrelevant_attention = FrequencyAttention(channels)
        self.fusion = None
        if interactive_attention:
            self.fusion = SelectiveKernelFusion(
                channels, fusion_hidden_channels
            )

    def forward(self, features):
        """Split, attend and fuse ``features [B, C, F, N]``."""
        query = self.query_projection(features)
        key = self.key_projection(features)
        value = self.value_projection(features)
        if self.gate is None:
            gate, relevant_query, irrelevant_query = None, query, query
        else:
            gate = self.gate(query + key)
            relevant_query, irrelevant_query = gate * query, (1 - gate) * query
        relevant = self.relevant_attention(relevant_query, key, value)
        irrelevant = self.irrelevant_attention(irrelevant_query, key, value)
        if self.fusion is None:
            fused = relevant + irrelevant
        else:
            fused = self.fusion(relevant, irrelevant)
        return CollaborationOutput(fused, relevant, irrelevant, gate)


class CMCRNet(torch.nn.Module):
    """CMCR-Net enhancer: noisy waveform ``[B, T]`` -> enhanced ``[B, T]``.

    Arguments
    ---------
    n_fft : int
        FFT size; ``n_fft // 2 + 1`` frequency bins.
    win_length : int, optional
        Hann window length in samples (default ``n_fft``).
    hop_length : int, optional
        Hop in samples (default ``win_length // 2``).
    encoder_channels : sequence of int
        Output channels of the encoder layers (the decoder mirrors them).
    kernel_size : sequence of 2 int
        Convolution kernel over (frequency, time); the time kernel looks at
        the current and earlier frames only.
    frequency_stride : int
        Stride over frequency of every encoder layer.
    rnn_hidden_size : int
        Units of the bottleneck LSTM.
    rnn_layers : int
        Layers of the bottleneck LSTM.
    fusion_hidden_channels : int
        Squeeze size of the interactive attention's FC.
    contrastive_attention : bool
        Ablation switch: False removes the contrastive gate.
    interactive_attention : bool
        Ablation switch: False sums the branches instead of fusing them.

    Example
    -------
    >>> model = CMCRNet(n_fft=64, hop_length=32, encoder_channels=(4, 8),
    ...                 rnn_hidden_size=8, fusion_hidden_channels=8)
    >>> noisy = torch.randn(2, 801)
    >>> model(noisy).shape
    torch.Size([2, 801])
    >>> out = model.forward_with_branches(noisy)
    >>> [tuple(wav.shape) for wav in out]
    [(2, 801), (2, 801), (2, 801)]
    """

    def __init__(
        self,
        n_fft=512,
        win_length=None,
        hop_length=None,
        encoder_channels=(16, 32, 64, 128, 256),
        kernel_size=(3, 2),
        frequency_stride=2,
        rnn_hidden_size=512,
        rnn_layers=2,
        fusion_hidden_channels=512,
        contrastive_attention=True,
        interactive_attention=True,
    ):
        super().__init__()
        self.n_fft = int(n_fft)
        self.win_length = int(win_length or n_fft)
        self.hop_length = int(hop_length or self.win_length // 2)
        self.register_buffer(
            "window", torch.hann_window(self.win_length), persistent=False
        )
        kernel_f, kernel_t = (int(k) for k in kernel_size)
        self.time_context = kernel_t - 1
        channels = [2] + [int(c) for c in encoder_channels]
        bins = [self.n_fft // 2 + 1]
        for _ in encoder_channels:
            bins.append((bins[-1] - kernel_f) // frequency_stride + 1)
        if bins[-1] < 1:
            raise ValueError(
                f"{len(encoder_channels)} encoder layers with kernel "
                f"{kernel_f} and stride {frequency_stride} over frequency "
                f"leave no bins of the {bins[0]} of n_fft={n_fft}; use fewer "
                "encoder_channels or a larger n_fft"
            )
        self.encoder = torch.nn.ModuleList()
        self.skip_gates = torch.nn.ModuleList()
        self.decoder = torch.nn.ModuleList()
        for level in range(len(encoder_channels)):
            c_in, c_out = channels[level], channels[level + 1]
            self.encoder.append(torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, (kernel_f, kernel_t),
                                stride=(frequency_stride, 1)),
                FrameNorm(c_out),
                torch.nn.ELU(),
            ))
            self.skip_gates.append(torch.nn.Sequential(
                torch.nn.Conv2d(2 * c_out, c_out, 1), torch.nn.Sigmoid()
            ))
            # Output padding restores the bin count that the strided
            # encoder convolution rounded down.
            unpadded = (bins[level + 1] - 1) * frequency_stride + kernel_f
            upsample = torch.nn.ConvTranspose2d(
                2 * c_out, c_in, (kernel_f, kernel_t),
                stride=(frequency_stride, 1),
                output_padding=(bins[level] - unpadded, 0),
            )
            if level == 0:  # the mask layer
                self.decoder.append(upsample)
            else:
                self.decoder.append(torch.nn.Sequential(
                    upsample, FrameNorm(c_in), torch.nn.ELU()
                ))
        self.bottleneck_size = channels[-1] * bins[-1]
        self.rnn = torch.nn.LSTM(
            self.bottleneck_size, rnn_hidden_size, num_layers=rnn_layers,
            batch_first=True,
        )
        self.rnn_projection = torch.nn.Linear(
            rnn_hidden_size, self.bottleneck_size
        )
        self.collaboration = CollaborationModule(
            channels[-1], fusion_hidden_channels,
            contrastive_attention=contrastive_attention,
            interactive_attention=interactive_attention,
        )

    def _stft(self, noisy):
        return torch.stft(
            noisy, self.n_fft, self.hop_length, self.win_length,
            window=self.window, center=True, pad_mode="constant",
            return_complex=True,
        )  # [B, F, N]

    def _encode(self, spec):
        """Encoder and LSTM: returns bottleneck features and the skips."""
        features = torch.stack([spec.real, spec.imag], dim=1)
        skips = []
        for layer in self.encoder:
            features = layer(F.pad(features, (self.time_context, 0)))
            skips.append(features)
        batch, channels, bins, frames = features.shape
        sequence = features.permute(0, 3, 1, 2).reshape(batch, frames, -1)
        sequence = self.rnn_projection(self.rnn(sequence)[0])
        features = sequence.reshape(batch, frames, channels, bins)
        return features.permute(0, 2, 3, 1), skips

    def _decode(self, features, skips, spec, length):
        """Decoder, complex ratio mask and inverse STFT -> ``[B, T]``."""
        for layer, gate, skip in zip(
            reversed(self.decoder), reversed(self.skip_gates), reversed(skips)
        ):
            both = torch.cat([features, skip], dim=1)
            gated = torch.cat([features, gate(both) * skip], dim=1)
            features = layer(gated)[..., : skip.shape[-1]]  # causal crop
        mask = torch.tanh(features)
        masked = torch.complex(
            mask[:, 0] * spec.real - mask[:, 1] * spec.imag,
            mask[:, 0] * spec.imag + mask[:, 1] * spec.real,
        )
        return torch.istft(
            masked, self.n_fft, self.hop_length, self.win_length,
            window=self.window, center=True, length=length,
        )

    def _check(self, noisy):
        if noisy.dim() != 2:
            raise ValueError(
                "CMCRNet expects noisy waveforms [batch, time], got shape "
                f"{tuple(noisy.shape)}"
            )

    def forward(self, noisy, return_branches=False):
        """Enhance ``noisy [B, T]``; returns ``[B, T]``.

        With ``return_branches`` it returns :meth:`forward_with_branches`'s
        :class:`CMCROutput` (so that training goes through a DDP wrapper's
        forward).
        """
        if return_branches:
            return self.forward_with_branches(noisy)
        self._check(noisy)
        with torch.autocast(noisy.device.type, enabled=False):
            noisy = noisy.float()
            spec = self._stft(noisy)
            features, skips = self._encode(spec)
            fused = self.collaboration(features).fused
            return self._decode(fused, skips, spec, noisy.shape[-1])

    def forward_with_branches(self, noisy):
        """Enhance and decode each CM branch alone (for the branch pull).

        The relevant and irrelevant branch features go through the same
        decoder, with the same encoder skips, as the fused features.

        Arguments
        ---------
        noisy : torch.Tensor
            Noisy waveforms ``[B, T]``.

        Returns
        -------
        CMCROutput
            ``enhanced``, ``relevant`` and ``irrelevant`` waveforms
            ``[B, T]``.
        """
        self._check(noisy)
        with torch.autocast(noisy.device.type, enabled=False):
            noisy = noisy.float()
            spec = self._stft(noisy)
            features, skips = self._encode(spec)
            branches = self.collaboration(features)
            length = noisy.shape[-1]
            return CMCROutput(*(
                self._decode(part, skips, spec, length)
                for part in branches[:3]
            ))
