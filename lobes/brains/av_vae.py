"""Training of the A-VAE and AV-VAE speech models on clean speech.

``AVVAEBrain`` trains :class:`lobes.models.av_vae.AudioVAE` or
:class:`lobes.models.av_vae.AVCVAE` (the YAML's ``vae``) on utterances of
clean speech with their lips (:func:`lobes.data.av_data.av_datasets`):

- every utterance is scaled to unit RMS and analysed with the recipe's
  ``stft`` (:class:`lobes.models.av_features.SineSTFT`); every STFT frame gets
  the lip ROI that covers its centre (:func:`lobes.models.av_vae.
  lips_per_frame`);
- the encoder reads the log-power of either the clean frame
  (``encoder_input: clean``) or of a mixture made on the fly
  (``encoder_input: mixture``, as Nguyen et al. do at test time): the
  utterance plus another utterance of the batch at ``interferer_gain_db``
  and white noise at ``noise_snr_db`` (both drawn uniformly per item); the
  decoder always reconstructs the clean frame;
- the loss is the negative ELBO with the Itakura-Saito reconstruction
  (:func:`lobes.models.av_vae.is_elbo`), averaged over valid frames; the
  ``reconstruction`` and ``kl`` parts are logged.

In validation and test the encoder's mean is decoded (no sampling) and the
on-the-fly mixtures come from a generator seeded by ``seed`` at the start
of each stage, so validation losses of different epochs are comparable.
With an ``EpochCounterWithStopper`` as the recipe's ``epoch_counter``
(wired from ``hparams/av/training.yaml``) training stops early when the
validation loss stops improving.

An optional KL warm-up (``kl_warmup_epochs``) weighs the KL term by
``epoch / kl_warmup_epochs`` in the first epochs of training, a common
remedy against posterior collapse (not in the paper; 0 turns it off).

Hparams read: ``vae``, ``stft``, ``sample_rate``, ``seed``, the
``vae_training`` namespace (``hparams/av/vae_training.yaml``:
``encoder_input``, ``interferer_gain_db``, ``noise_snr_db``,
``kl_warmup_epochs``) and those of :class:`lobes.brains.base.RecipeBrain`.

``MixtureSeparatorBrain`` trains the supervised baseline of the AV recipes:
a mask-based separator (:class:`lobes.models.noise_aware.
NoiseAwareSeparator` without noise output) on the corpus's two-speaker
noisy mixtures (:func:`lobes.data.av_data.mixture_datasets`) with PIT
negative SI-SNR (:class:`lobes.losses.pit.PITLoss`). Hparams read:
``separator``, ``pit_loss``, ``max_grad_norm``.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import torch
from speechbrain import Stage

from lobes.brains.base import RecipeBrain
from lobes.errors import HparamsError
from lobes.models.av_features import lips_per_frame, log_power
from lobes.models.av_vae import is_elbo
from lobes.models.av_vae_diagnostics import latent_diagnostics

ENCODER_INPUTS = ("clean", "mixture")


def _uniform(low_high, size, generator, device):
    low, high = (float(v) for v in low_high)
    draw = torch.rand(size, generator=generator, device=device)
    return low + (high - low) * draw


def _rms(signal, mask):
    energy = (signal.pow(2) * mask).sum(-1)
    return (energy / mask.sum(-1).clamp(min=1)).sqrt()


def training_mixture(wav, mask, gain_db, snr_db, generator=None):
    """Each item plus another item of the batch and white noise.

    Arguments
    ---------
    wav : torch.Tensor
        Utterances ``[B, T]`` (zero-padded).
    mask : torch.Tensor
        Valid samples ``[B, T]`` (float).
    gain_db : tuple
        Range of the interferer's level against the item (dB).
    snr_db : tuple
        Range of the SNR of the white noise against the two speakers.
    generator : torch.Generator, optional
        Source of the draws (default: the global one).

    Returns
    -------
    torch.Tensor
        ``[B, T]``, zero beyond each item's length.

    Example
    -------
    >>> wav = torch.randn(3, 800)
    >>> wav = wav / wav.pow(2).mean(1, keepdim=True).sqrt()  # equal levels
    >>> mix = training_mixture(wav, torch.ones(3, 800), (0, 0), (100, 100))
    >>> bool(torch.allclose(mix, wav + wav.roll(1, 0), atol=1e-3))
    True
    """
    batch = wav.shape[0]
    if batch > 1:
        other = wav.roll(1, 0)
        other_mask = mask.roll(1, 0)
    else:  # a batch of one: the same voice, shifted in time
        other = wav.roll(wav.shape[1] // 2, 1)
        other_mask = mask.roll(wav.shape[1] // 2, 1)
    other = other * mask
    gain = _uniform(gain_db, batch, generator, wav.device)
    scale = _rms(wav, mask) / _rms(other, other_mask * mask).clamp(min=1e-8)
    speech = wav + other * (scale * 10 ** (gain / 20))[:, None]
    snr = _uniform(snr_db, batch, generator, wav.device)
    noise = torch.randn(wav.shape, generator=generator, device=wav.device)
    level = _rms(speech, mask) / 10 ** (snr / 20)
    return (speech + noise * level[:, None]) * mask


class AVVAEBrain(RecipeBrain):
    """Trains an A-VAE or AV-VAE (see the module docstring).

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from lobes.models.av_vae import AVCVAE, SineSTFT
    >>> vae = AVCVAE(num_freqs=65, latent_dim=2, hidden_dim=8,
    ...              visual_dim=16, trunk_hidden=8, trunk_dim=4)
    >>> hparams = {"vae": vae, "stft": SineSTFT(128, 32),
    ...            "sample_rate": 16000, "seed": 1, "vae_training": {
    ...                "encoder_input": "mixture",
    ...                "interferer_gain_db": [-5, 5],
    ...                "noise_snr_db": [0, 20]}}
    >>> brain = AVVAEBrain({"vae": vae}, lambda p: torch.optim.Adam(p, 1e-3),
    ...                    hparams, run_opts={"device": "cpu"})
    >>> items = [{"id": f"u{i}", "wav_sig": torch.randn(1600 + 160 * i),
    ...           "lips_sig": torch.zeros(3 + i, 4, 4, dtype=torch.uint8),
    ...           "fps": 30.0} for i in range(2)]
    >>> batches = torch.utils.data.DataLoader(items, batch_size=2,
    ...                                       collate_fn=PaddedBatch)
    >>> brain.fit(range(1), batches, batches, progressbar=False)
    >>> sorted(brain.last_stage_stats)  # doctest: +NORMALIZE_WHITESPACE
    ['kl', 'latent_kl', 'latent_lips_sensitivity', 'latent_z_sensitivity',
     'loss', 'reconstruction']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choice = self.settings["encoder_input"]
        if choice not in ENCODER_INPUTS:
            raise HparamsError(
                f"encoder_input={choice!r} is not one of "
                f"{', '.join(ENCODER_INPUTS)}"
            )
        self.eval_generator = None

    @property
    def settings(self):
        """The recipe's ``vae_training`` namespace."""
        return self.hparams.vae_training

    @property
    def vae(self):
        """The VAE without a DDP wrapper."""
        module = self.modules["vae"]
        return getattr(module, "module", module)

    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; reseed the evaluation draws."""
        super().on_stage_start(stage, epoch)
        self.eval_generator = None
        if stage != Stage.TRAIN:
            self.eval_generator = torch.Generator(device=self.device)
            self.eval_generator.manual_seed(int(self.hparams.seed))

    def compute_forward(self, batch, stage):
        """Spectra, lips per frame and the VAE's output."""
        batch = batch.to(self.device)
        wav, wav_lens = batch.wav_sig
        total = wav.shape[1]
        lengths = torch.round(wav_lens * total).long().clamp(1, total)
        mask = (
            torch.arange(total, device=self.device)[None] < lengths[:, None]
        ).float()
        wav = wav * mask / _rms(wav, mask).clamp(min=1e-8)[:, None]
        stft = self.hparams.stft
        power = stft(wav).abs().pow(2).transpose(1, 2)  # [B, N, F]
        frames = power.shape[1]
        frame_mask = torch.arange(frames, device=self.device)[None] < (
            lengths[:, None] // stft.hop_length + 1
        )
        source = power
        if self.settings["encoder_input"] == "mixture":
            mix = training_mixture(
                wav, mask, self.settings["interferer_gain_db"],
                self.settings["noise_snr_db"], self.eval_generator,
            )  # fmt: skip
            source = stft(mix).abs().pow(2).transpose(1, 2)
        frames_lips = None
        if self.vae.uses_video:
            lips, lips_lens = batch.lips_sig
            lips_frames = torch.round(lips_lens * lips.shape[1]).long()
            pixels = lips.shape[2] * lips.shape[3]
            expected = self.vae.trunk.layers[0].in_features
            if pixels != expected:
                raise HparamsError(
                    f"the lips are {lips.shape[2]}x{lips.shape[3]} = "
                    f"{pixels} pixels but the visual trunk takes {expected}; "
                    f"set roi_pixels: {pixels} in the YAML"
                )
            frames_lips = lips_per_frame(
                lips, lips_frames, frames, stft.hop_length,
                int(self.hparams.sample_rate), batch.fps,
            )  # fmt: skip
        features = log_power(source)
        output = self.modules["vae"](
            features, frames_lips, sample=stage == Stage.TRAIN
        )
        return output, power, frame_mask, features, frames_lips

    def kl_weight(self, stage):
        """Weight of the KL term: 1, or during the first
        ``kl_warmup_epochs`` training epochs ``epoch / kl_warmup_epochs``
        (validation and test always use the full ELBO)."""
        warmup = float(self.settings.get("kl_warmup_epochs") or 0)
        counter = self.training_loop.get("epoch_counter")
        if stage != Stage.TRAIN or warmup <= 0 or counter is None:
            return 1.0
        return min(1.0, float(counter.current) / warmup)

    def compute_objectives(self, predictions, batch, stage):
        """Negative IS-ELBO over the valid frames.

        With ``prior_reconstruction_weight`` w > 0 (the authors' remedy for
        posterior collapse), ``(1 - w)`` x the ELBO plus ``w`` x the
        reconstruction decoded from a sample of the prior p(z|v). Outside
        training, the latent statistics are logged: KL per frame and the
        decoder's sensitivity to z and to the lips
        (:func:`lobes.models.av_vae_diagnostics.latent_diagnostics`).
        """
        output, power, frame_mask, features, frames_lips = predictions
        weight = float(
            self.settings.get("prior_reconstruction_weight") or 0.0
        )
        terms = is_elbo(
            power, output, frame_mask,
            prior_reconstruction_weight=weight,
            kl_weight=self.kl_weight(stage),
        )
        self.add_stat("reconstruction", terms.reconstruction)
        self.add_stat("kl", terms.kl)
        if weight > 0:
            self.add_stat("prior_reconstruction", terms.prior_reconstruction)
        if stage != Stage.TRAIN:
            stats = latent_diagnostics(
                self.vae, features, frames_lips, frame_mask,
                self.eval_generator,
            )
            for name, value in stats.items():
                if math.isfinite(value):
                    self.add_stat(f"latent_{name}", value)
        return terms.loss

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """RecipeBrain's bookkeeping; feed an early-stopping counter."""
        super().on_stage_end(stage, stage_loss, epoch)
        counter = self.training_loop.get("epoch_counter")
        if stage == Stage.VALID and hasattr(counter, "update_metric"):
            counter.update_metric(stage_loss)


class MixtureSeparatorBrain(RecipeBrain):
    """The supervised baseline: PIT training of a mask-based separator.

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> from lobes.losses.pit import PITLoss
    >>> from lobes.models.noise_aware import NoiseAwareSeparator
    >>> separator = NoiseAwareSeparator(
    ...     Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=2),
    ...     Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2,
    ...     noise_output=False)
    >>> hparams = {"separator": separator, "pit_loss": PITLoss(2, False)}
    >>> brain = MixtureSeparatorBrain(
    ...     {"separator": separator}, lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams, run_opts={"device": "cpu"})
    >>> items = [{"id": f"m{i}", "mix_sig": torch.randn(800),
    ...           "sources_sig": torch.randn(800, 2),
    ...           "noise_sig": torch.randn(800)} for i in range(2)]
    >>> batches = torch.utils.data.DataLoader(items, batch_size=2,
    ...                                       collate_fn=PaddedBatch)
    >>> brain.fit(range(1), batches, batches, progressbar=False)
    >>> sorted(brain.last_stage_stats)
    ['loss', 'si-snr']
    """

    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; seed the epoch's training crops and remixes."""
        super().on_stage_start(stage, epoch)
        items = getattr(self, "train_items", None)
        if stage == Stage.TRAIN and items is not None and epoch is not None:
            items.epoch = int(epoch)

    def compute_forward(self, batch, stage):
        """Separate the mixtures (cropped to the shortest in training)."""
        batch = batch.to(self.device)
        mix, mix_lens = batch.mix_sig
        sources, _ = batch.sources_sig
        if stage == Stage.TRAIN:
            shortest = int(torch.round(mix_lens.min() * mix.shape[1]))
            mix, sources = mix[:, :shortest], sources[:, :shortest]
        estimates = self.modules["separator"](mix).waveforms
        return estimates[:, : sources.shape[1]], sources

    def compute_objectives(self, predictions, batch, stage):
        """PIT negative SI-SNR."""
        estimates, sources = predictions
        per_item, _ = self.hparams.pit_loss(estimates, sources)
        self.add_stat("si-snr", -per_item.mean())
        return per_item.mean()
