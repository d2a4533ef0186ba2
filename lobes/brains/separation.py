"""The one Brain behind every separation recipe (NASS and its baselines).

``SeparationBrain`` trains a :class:`lobes.models.noise_aware.
NoiseAwareSeparator`: with a noise output (NASS, ``N + 1`` outputs, noise
last) or without (the plain backbone, ``N`` outputs). Objectives:

- permutation-invariant negative SI-SNR (``objectives["pit_loss"]``, a
  :class:`lobes.losses.pit.PITLoss`) over all outputs; in training,
  examples already better than ``threshold`` (e.g. -30, i.e. 30 dB SI-SNR)
  are left out, as SpeechBrain's SepFormer recipes do;
- for NASS, plus ``nce_weight`` times the noise-aware PatchNCE loss
  (``objectives["contrastive_loss"]``, a :class:`lobes.losses.patch_nce.
  NoiseAwareContrastiveLoss`): queries are the masked features of the
  estimates put in reference order with each batch item's own PIT
  permutation, positives the encoder features of the true sources
  (detached), negatives the predicted noise's features (detached).

A batch whose loss is not finite is skipped (no update) on every DDP rank.
Gradient clipping (``max_grad_norm``), mixed precision (``--precision``),
checkpointing and resuming are SpeechBrain's. At test time the noise output
is dropped after PIT against the ``N + 1`` references and
``<output_folder>/test_results.csv`` lists per utterance ``sdr, sdr_i,
si-snr, si-snr_i`` over the speakers plus ``noise_si-snr`` (for a baseline
without noise output: the SI-SNR of the residual ``mix - sum(speakers)``
against the true noise). A few test utterances are saved as wav files.

Hparams read (a separation recipe YAML, besides SpeechBrain's run
options): ``num_spks``, ``sample_rate``, ``noise_aware``,
``output_folder``, ``max_grad_norm``, the ``objectives`` namespace
(``hparams/separation/nass.yaml``: ``pit_loss``, ``contrastive_loss``,
``noise_tracker``, ``nce_weight``, ``threshold``), the ``training``
namespace (``hparams/separation/training.yaml``: ``save_audio``,
``n_audio_to_save``) and the loop's ``lr_scheduler``, ``train_logger`` and
``epoch_counter``.

Authors
 * noise-robust-sb contributors 2025
"""

import logging
import math
import os
import time
from typing import NamedTuple

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process

from lobes.brains.base import RecipeBrain, save_examples
from lobes.losses.gradient_share import gradient_share
from lobes.losses.pit import (
    best_permutation,
    pairwise_neg_sisnr,
    reorder,
    reorder_features,
)
from lobes.losses.waveform import si_snr
from lobes.metrics import error_breakdown, separation_metrics
from lobes.warm_start import warm_start

logger = logging.getLogger(__name__)

#: Columns of ``test_results.csv`` after ``snt_id`` (a separator with a
#: noise output adds each with an ``_oracle`` suffix): the scores, then the
#: error breakdown of the speaker estimates (energy of the interfering
#: speakers, the noise and the artifacts relative to the target, dB;
#: :func:`lobes.metrics.error_breakdown`).
RESULT_COLUMNS = ("sdr", "sdr_i", "si-snr", "si-snr_i", "noise_si-snr",
                  "interference_db", "noise_db", "artifact_db")


def best_order(estimates, references):
    """The estimates ``[T, N]`` reordered to match the references by SI-SNR.

    Example
    -------
    >>> refs = torch.randn(800, 2)
    >>> ests = refs.flip(-1) + 0.01 * torch.randn(800, 2)
    >>> torch.allclose(best_order(ests, refs), ests.flip(-1))
    True
    """
    losses = pairwise_neg_sisnr(estimates.unsqueeze(0), references.unsqueeze(0))
    _, perm = best_permutation(losses)
    return reorder(estimates.unsqueeze(0), perm)[0]


def speaker_loss(estimates, targets, perm, num_spks):
    """Negative SI-SNR of the speakers alone, per item ``[B]``.

    With a noise output (``estimates`` has ``num_spks + 1`` sources), the
    output that PIT matched to the noise (``perm[:, num_spks]``) is dropped
    and PIT is solved again between the remaining outputs and the speakers;
    without one, this is PIT over the speakers.

    Example
    -------
    >>> refs = torch.randn(2, 400, 3)
    >>> ests = refs[:, :, [2, 0, 1]]  # noise first, speakers swapped
    >>> _, perm = best_permutation(pairwise_neg_sisnr(ests, refs))
    >>> bool((speaker_loss(ests, refs, perm, 2) < -60).all())
    True
    """
    batch, _, sources = estimates.shape
    speakers = targets[..., :num_spks]
    if sources > num_spks:
        index = torch.arange(sources, device=estimates.device).expand(batch, -1)
        index = index[index != perm[:, num_spks : num_spks + 1]]
        index = index.reshape(batch, 1, num_spks).expand(
            -1, estimates.shape[1], -1
        )
        estimates = torch.gather(estimates, 2, index)
    loss, _ = best_permutation(pairwise_neg_sisnr(estimates, speakers))
    return loss


class SeparationStep(NamedTuple):
    """What :meth:`SeparationBrain.compute_forward` hands to the loss.

    Attributes
    ----------
    output : lobes.models.noise_aware.SeparatorOutput
        The separator's output.
    mix : torch.Tensor
        Mixtures ``[B, T]`` (cropped to the shortest item in training).
    targets : torch.Tensor
        References ``[B, T, S]``: speakers, then the noise if the separator
        has a noise output.
    noise : torch.Tensor
        The true noise ``[B, T]``.
    lengths : torch.Tensor
        Valid samples of each item ``[B]`` (long).
    """

    output: object
    mix: torch.Tensor
    targets: torch.Tensor
    noise: torch.Tensor
    lengths: torch.Tensor


class SeparationBrain(RecipeBrain):
    """Trains and evaluates a (noise-aware) mask-based separator.

    Modules (``modules`` in the YAML): ``separator`` and
    ``contrastive_loss`` (PatchNCE's sampler and MLP, training-only; used
    for NASS with a positive ``nce_weight``). Batches provide ``mix_sig``,
    ``sources_sig`` and ``noise_sig`` (:mod:`lobes.data.separation_data`).

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from lobes.losses.patch_nce import (
    ...     NoiseAwareContrastiveLoss, PatchNCELoss)
    >>> from lobes.losses.pit import PITLoss
    >>> from lobes.models.noise_aware import (
    ...     NoiseAwareSeparator, NoiseOutputTracker)
    >>> separator = NoiseAwareSeparator(
    ...     Encoder(16, 8), MaskNet(8, 4, 4, 3, 1, 1, C=3),
    ...     Decoder(8, 1, kernel_size=16, stride=8, bias=False), 2)
    >>> nce = NoiseAwareContrastiveLoss(
    ...     PatchNCELoss(num_patches=8, embed_dim=4, channels=8), 2)
    >>> objectives = {"pit_loss": PITLoss(2), "contrastive_loss": nce,
    ...               "noise_tracker": NoiseOutputTracker(3),
    ...               "nce_weight": 2.0, "threshold": -30.0}
    >>> hparams = {"num_spks": 2, "sample_rate": 8000, "noise_aware": True,
    ...            "objectives": objectives}
    >>> brain = SeparationBrain(
    ...     {"separator": separator, "contrastive_loss": nce},
    ...     lambda p: torch.optim.Adam(p, 1e-3), hparams,
    ...     run_opts={"device": "cpu"})
    >>> def item(i):
    ...     src, noise = torch.randn(800, 2), torch.randn(800) * 0.1
    ...     return {"id": f"u{i}", "mix_sig": src.sum(-1) + noise,
    ...             "sources_sig": src, "noise_sig": noise}
    >>> batches = torch.utils.data.DataLoader(
    ...     [item(0), item(1)], batch_size=2, collate_fn=PaddedBatch)
    >>> brain.fit(range(1), batches, batches, progressbar=False)
    >>> sorted(brain.last_stage_stats)
    ['loss', 'noise_si-snr', 'si-snr']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_dataset = None
        self.test_rows = []
        self.train_seconds = 0.0
        self._batch_status = "step"
        self.noise_tracker = None
        if self.noise_output:
            self.noise_tracker = self.objectives["noise_tracker"].to(
                self.device
            )

    # ------------------------------------------------------------------
    # Helpers
    @property
    def separator(self):
        """The separator without its DDP/DP wrapper."""
        module = self.modules["separator"]
        return getattr(module, "module", module)

    @property
    def objectives(self):
        """The experiment's ``objectives`` namespace (losses, tracker)."""
        return self.hparams.objectives

    @property
    def noise_output(self):
        """True if the separator has a noise output (NASS)."""
        return bool(self.separator.noise_output)

    @property
    def num_spks(self):
        """Number of speakers ``N``."""
        return int(self.hparams.num_spks)

    def contrastive_active(self, stage):
        """Whether the PatchNCE term is computed at this stage."""
        if stage != sb.Stage.TRAIN or not self.noise_output:
            return False
        return bool(self.hparams.noise_aware) and float(
            self.objectives["nce_weight"]
        ) > 0

    # ------------------------------------------------------------------
    # Stages
    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; remembers the training dataset so that
        its random draws can follow the epoch (see ``set_epoch``)."""
        self.train_dataset = getattr(train_set, "dataset", train_set)
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def on_fit_start(self):
        """Warm-start (``init_from``), compile, wrap, init and recover (the
        run's own checkpoint, when there is one, replaces the warm start);
        then log the training setup."""
        super().on_fit_start()
        if if_main_process():
            logger.info(
                "Separator: %d outputs (%s), %d parameters at inference; "
                "gradient clipping at max_grad_norm=%s; precision %s",
                self.separator.num_outputs,
                "speakers + noise" if self.noise_output else "speakers",
                sum(p.numel() for p in self.separator.parameters()),
                self.max_grad_norm,
                self.precision,
            )

    def warm_start(self, source):
        """The separator's shared layers from a finished separation run
        (:func:`lobes.warm_start.warm_start`)."""
        return warm_start(self.separator, source)

    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; seed the epoch's random training data."""
        super().on_stage_start(stage, epoch)
        self.stage_start_time = time.time()
        if stage == sb.Stage.TRAIN and epoch is not None:
            set_epoch = getattr(self.train_dataset, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
        if stage == sb.Stage.VALID and self.noise_tracker is not None:
            self.noise_tracker.reset()
        if stage == sb.Stage.TEST:
            self.test_rows = []
            self.saved_examples = 0

    def stage_statistics(self, stage):
        """Mean statistics, plus the training stage's wall time."""
        stats = super().stage_statistics(stage)
        if stage == sb.Stage.TRAIN:
            seconds = time.time() - self.stage_start_time
            self.train_seconds += seconds
            stats["seconds"] = round(seconds, 2)
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal, checkpoint; after testing, write the results."""
        tracker = self.noise_tracker
        if stage == sb.Stage.VALID and tracker and if_main_process():
            logger.info(
                "Noise output: #%d for %.0f%% of the validation mixtures",
                tracker.noise_index + 1, 100 * tracker.share,
            )
        super().on_stage_end(stage, stage_loss, epoch)
        if stage != sb.Stage.TEST or not self.test_rows:
            return
        if not if_main_process():
            return
        path = os.path.join(self.hparams.output_folder, "test_results.csv")
        self.write_test_results(path, self.test_rows)

    # ------------------------------------------------------------------
    # Forward and objectives
    def compute_forward(self, batch, stage):
        """Separate the batch's mixtures.

        In training every item is cropped to the shortest one of the batch
        (no padding reaches the loss).
        """
        batch = batch.to(self.device)
        mix, mix_lens = batch.mix_sig
        sources, _ = batch.sources_sig
        noise, _ = batch.noise_sig
        total = mix.shape[1]
        lengths = torch.round(mix_lens * total).long().clamp(1, total)
        if stage == sb.Stage.TRAIN:
            shortest = int(lengths.min())
            mix = mix[:, :shortest]
            sources = sources[:, :shortest]
            noise = noise[:, :shortest]
            lengths = torch.full_like(lengths, shortest)
        targets = sources
        if self.noise_output:
            targets = torch.cat([sources, noise.unsqueeze(-1)], dim=-1)
        output = self.modules["separator"](mix)
        return SeparationStep(output, mix, targets, noise, lengths)

    def compute_objectives(self, predictions, batch, stage):
        """PIT neg-SI-SNR (+ PatchNCE for NASS in training); test metrics.

        Validation and test return the speakers' loss alone (the noise
        output dropped), which picks checkpoints and drives the LR schedule.
        """
        estimates = predictions.output.waveforms
        targets = predictions.targets
        with torch.autocast(device_type=self.device_type, enabled=False):
            estimates = estimates.float()
            targets = targets.float()
            per_item, perm = self.objectives["pit_loss"](estimates, targets)
            ordered = reorder(estimates, perm)
        n = self.num_spks
        with torch.no_grad():
            source_sisnr = si_snr(
                ordered.detach().transpose(1, 2), targets.transpose(1, 2)
            )
            self.add_stat("si-snr", source_sisnr[:, :n].mean())
            if self.noise_output:
                self.add_stat("noise_si-snr", source_sisnr[:, n].mean())

        if stage == sb.Stage.VALID and self.noise_tracker is not None:
            self.noise_tracker.update(perm[:, n])
        if stage == sb.Stage.TEST:
            self._test_metrics(predictions, estimates, ordered, batch)
        if stage != sb.Stage.TRAIN:
            return speaker_loss(estimates, targets, perm, n).mean()

        keep = per_item > float(self.objectives["threshold"])
        self._batch_status = "step" if bool(keep.any()) else "nothing_kept"
        if not keep.any():  # zero weights keep every parameter in the graph
            keep = torch.ones_like(keep)
            weights = torch.zeros_like(per_item)
        else:
            weights = keep.float()
        loss = (per_item * weights).sum() / keep.sum().clamp(min=1)
        if self.contrastive_active(stage):
            nce = self._contrastive_loss(predictions, perm, keep)
            nce_weight = float(self.objectives["nce_weight"])
            weighted = nce_weight * nce * weights.max()
            self._log_contrastive(predictions, loss, nce, weighted)
            loss = loss + weighted
        return loss

    def _log_contrastive(self, predictions, pit, nce, weighted):
        """NCE beside its chance level ln K, and how hard each term pushes.

        ``nce_grad_ratio``: the norm of the gradient that the weighted NCE
        term sends to the masked encoder features over the norm of PIT's.
        Every ``grad_share_every`` steps (``nass.yaml``), the same on the
        separator's parameters: ``nce_param_share`` (NCE's share of the two
        gradients' norms) and ``nce_pit_cosine`` (the cosine between them:
        negative when NCE pulls against PIT).
        """
        masked = predictions.output.masked_features
        patch_nce = self.modules["contrastive_loss"]
        patch_nce = getattr(patch_nce, "module", patch_nce).patch_nce
        self.add_stat("nce", nce)
        self.add_stat(
            "nce_chance", math.log(patch_nce.patches_drawn(masked[0]))
        )
        if not (pit.requires_grad and weighted.requires_grad):
            return
        grads = [
            torch.autograd.grad(term, masked, retain_graph=True,
                                allow_unused=True)[0]
            for term in (pit, weighted)
        ]
        if any(g is None for g in grads):
            return
        pit_norm, nce_norm = (g.detach().float().norm() for g in grads)
        if pit_norm > 0:
            self.add_stat("nce_grad_ratio", nce_norm / pit_norm)
        every = int(self.objectives.get("grad_share_every") or 0)
        if every > 0 and self.step % every == 1 % every:
            share = gradient_share(
                pit, weighted,
                [p for p in self.separator.parameters() if p.requires_grad],
            )
            self.add_stat("nce_param_share", share["second_share"])
            self.add_stat("nce_pit_cosine", share["cosine"])

    def _contrastive_loss(self, predictions, perm, keep):
        """Noise-aware PatchNCE on the kept items, each in its own order."""
        masked = reorder_features(predictions.output.masked_features, perm)
        sources = predictions.targets[..., : self.num_spks]
        batch, length, n = sources.shape
        with torch.no_grad():
            flat = sources.permute(2, 0, 1).reshape(n * batch, length)
            positives = self.separator.encode(flat)
            positives = positives.reshape(n, batch, *positives.shape[1:])
        index = keep.nonzero().squeeze(1)
        return self.modules["contrastive_loss"](
            masked[:, index], positives[:, index].detach()
        )

    def inference_noise_index(self):
        """The output that inference takes as the noise (``None``: none)."""
        if not self.noise_output:
            return None
        return self.noise_tracker.inference_index(
            self.objectives["pit_loss"].noise_slot
        )

    def _test_metrics(self, predictions, estimates, ordered, batch):
        """Per-utterance metrics (speakers only) and example audio.

        With a noise output, the main columns drop the output that
        inference takes as the noise (:meth:`inference_noise_index`, as
        :mod:`lobes.separate` does); the ``*_oracle`` columns drop the one
        PIT over ``N + 1`` matched to the true noise.
        """
        n = self.num_spks
        noise_index = self.inference_noise_index()
        for b, utt_id in enumerate(batch.id):
            length = int(predictions.lengths[b])
            refs = predictions.targets[b, :length, :n].float()
            mix = predictions.mix[b, :length].float()
            noise = predictions.noise[b, :length].float()
            outputs = estimates[b, :length].float()
            row = {"snt_id": utt_id}
            if noise_index is None:
                choices = {"": (outputs, mix - outputs.sum(dim=-1))}
            else:
                keep = [i for i in range(n + 1) if i != noise_index]
                oracle = ordered[b, :length].float()
                choices = {
                    "": (outputs[:, keep], outputs[:, noise_index]),
                    "_oracle": (oracle[:, :n], oracle[:, n]),
                }
            for suffix, (speakers, noise_estimate) in choices.items():
                metrics = separation_metrics(speakers, refs, mix)
                row[f"sdr{suffix}"] = metrics["sdr"]
                row[f"sdr_i{suffix}"] = metrics["sdr_i"]
                row[f"si-snr{suffix}"] = metrics["si_snr"]
                row[f"si-snr_i{suffix}"] = metrics["si_snr_i"]
                row[f"noise_si-snr{suffix}"] = (
                    float(si_snr(noise_estimate, noise))
                    if bool(noise.abs().max() > 0) else float("nan")
                )
                breakdown = error_breakdown(
                    best_order(speakers, refs), refs, noise
                )
                for key, value in breakdown.items():
                    row[f"{key}{suffix}"] = value
            self.test_rows.append(row)
            logged = {"snt_id", "si-snr"}  # si-snr: per stage already
            if self.noise_output:
                logged.add("noise_si-snr")  # from PIT over all outputs
            for key, value in row.items():
                if key not in logged:
                    self.add_stat(key, value)
            self._save_example(
                utt_id, ordered[b, :length].float(), refs, mix, noise
            )

    def _save_example(self, utt_id, est, refs, mix, noise):
        """Save mixture, references and estimates of the first utterances."""
        outputs = getattr(self.hparams, "training", None) or {}
        if not outputs.get("save_audio") or not if_main_process():
            return
        if self.saved_examples >= int(outputs["n_audio_to_save"]):
            return
        self.saved_examples += 1
        n = self.num_spks
        signals = {"mix": mix}
        for i in range(n):
            signals[f"s{i + 1}"] = refs[:, i]
            signals[f"s{i + 1}_estimate"] = est[:, i]
        signals["noise"] = noise
        if self.noise_output:
            signals["noise_estimate"] = est[:, n]
        folder = os.path.join(self.hparams.output_folder, "audio_results")
        save_examples(folder, utt_id, signals, int(self.hparams.sample_rate))

    # ------------------------------------------------------------------
    # Training step
    def fit_batch(self, batch):
        """One training step; a non-finite loss skips the update everywhere.

        Batches whose examples are all past ``threshold`` do no update
        either; under DDP a rank in that situation still joins the
        collective backward with zero weights when another rank updates.
        """
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            decision = self._agree_on_step(loss)
            if decision == "skip":
                self.zero_grad(set_to_none=True)
                return torch.tensor(self.avg_train_loss)
            scaled = self.scaler.scale(loss / self.grad_accumulation_factor)
            scaled.backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        if self._batch_status == "nothing_kept":
            return torch.tensor(self.avg_train_loss)
        return loss.detach().cpu()

    def _agree_on_step(self, loss):
        """``"step"`` or ``"skip"``, the same on every DDP rank."""
        nonfinite = not bool(torch.isfinite(loss.detach()))
        nothing_kept = self._batch_status == "nothing_kept"
        flags = torch.tensor(
            [float(nonfinite), float(not nothing_kept)], device=self.device
        )
        if torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        ):
            torch.distributed.all_reduce(flags)
        if nonfinite:
            self.nonfinite_count += 1
            logger.warning(
                "Non-finite loss: batch skipped (%d this epoch, patience "
                "%d)", self.nonfinite_count, self.nonfinite_patience,
            )
            if self.nonfinite_count > self.nonfinite_patience:
                raise ValueError(
                    "Loss is not finite and patience is exhausted; lower the "
                    "learning rate or train with --precision=fp32"
                )
        if flags[0] > 0 or flags[1] == 0:
            return "skip"
        return "step"
