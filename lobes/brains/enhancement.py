"""One Brain for every speech enhancement recipe, with (curricular) CR.

:class:`EnhancementBrain` trains any backbone that maps a noisy waveform
``[B, T]`` to an enhanced one (``modules.enhance_model``) with

    loss = waveform loss (MSE or negative SI-SNR)
           + cr_weight * CR(enhanced; positive = clean, negatives)

(METHODS.md section 2). The objectives come from the experiment's
``objectives`` namespace (``hparams/enhancement/cr.yaml``); everything CR
needs is one :class:`lobes.objectives.ContrastiveObjective` the Brain
holds (``brain.contrastive``). The negatives
are named in ``cr_negatives``: ``noisy`` (the input mixture: CR, CMCR-Net)
and ``reference`` (the output of the same backbone trained without CR,
frozen: curricular CR). A curriculum (``negative_curriculum``) weights the
negatives; its weights are logged every epoch and it is checkpointed.

The CR feature space is a frozen self-supervised model
(:class:`lobes.ssl_features.FrozenSSLFeatures`, from the recipe's
``hparams/ssl/*.yaml`` fragment) given to the Brain as ``ssl_features``.
It stays outside ``modules``: it is never trained, never switched to train
mode, and never written into checkpoints (it is loaded again from
``ssl_source``). Every
training example is a fixed segment of its utterance
(:func:`lobes.data.enhancement_data.fixed_segment`), so the features of
the clean speech, the noisy input and the reference output never change;
they are computed once and served from a
:class:`lobes.data.enhancement_data.FeatureCache` (``feature_store``,
``feature_cache: memory|disk|none``) in later epochs.

Validation reports the waveform loss (the checkpoint criterion, the same
for every recipe) and ``valid_metrics``; testing writes per-utterance
``test_metrics`` to ``<output_folder>/test_results.csv`` and saves a few
enhanced examples.

Authors
 * noise-robust-sb contributors 2025
"""

import functools
import logging
import math
import os

import speechbrain as sb

from lobes.brains.base import RecipeBrain, save_examples
from lobes.errors import HparamsError
from lobes.losses.gradient_share import gradient_share
from lobes.metrics import ENHANCEMENT_METRICS, enhancement_metrics
from lobes.objectives import (
    ContrastiveObjective,
    load_reference_model,
    reference_model_for,
)
from lobes.warm_start import warm_start_module

# The reference loaders are re-exported where callers found them before CR
# moved to lobes.objectives.
__all__ = ["EnhancementBrain", "load_reference_model", "reference_model_for"]

logger = logging.getLogger(__name__)


class EnhancementBrain(RecipeBrain):
    """Enhancement training with an optional (curricular) CR term.

    Hparams it reads (an enhancement recipe YAML): ``sample_rate``,
    ``audio_results_folder``, ``test_results_file``, ``max_grad_norm``,
    ``branch_pull`` and ``branch_pull_weight`` (CMCR-Net), the
    ``reference_hparams`` named in CCR's advice, ``init_from`` (a finished
    enhancement run whose best weights the enhancer starts from, or
    None); the ``training`` namespace
    (``hparams/enhancement/training.yaml``: ``valid_metrics``,
    ``test_metrics``, ``n_audio_to_save``, ``segment_length``,
    ``crop_seed``); the ``objectives`` namespace
    (``hparams/enhancement/cr.yaml``: ``compute_waveform_loss``,
    ``cr_weight``, ``cr_negatives``, ``contrastive_regularization``,
    ``negative_curriculum``, ``curriculum_quality_metric``,
    ``feature_cache``, ``feature_store``, ``reference_model``) and the
    loop's ``lr_scheduler``, ``train_logger`` and ``epoch_counter``.

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``; ``modules`` must hold
        ``enhance_model``.
    ssl_features : torch.nn.Module, optional
        The frozen feature space of CR (needed when ``cr_weight > 0``).
    reference_model : torch.nn.Module, optional
        The frozen reference for the ``reference`` negative (see
        :func:`lobes.objectives.reference_model_for`).

    Example
    -------
    >>> import torch
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> from lobes.losses.waveform import mse_loss
    >>> class Wrap(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv1d(1, 1, 3, padding=1)
    ...     def forward(self, x):
    ...         return self.conv(x.unsqueeze(1)).squeeze(1)
    >>> objectives = {"compute_waveform_loss": mse_loss, "cr_weight": 0.0}
    >>> brain = EnhancementBrain({"enhance_model": Wrap()},
    ...     lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"sample_rate": 16000, "objectives": objectives,
    ...              "training": {"valid_metrics": []}})
    >>> clean = torch.randn(160)
    >>> data = DynamicItemDataset(
    ...     {"a": {"noisy_sig": clean + 0.1, "clean_sig": clean}},
    ...     output_keys=["id", "noisy_sig", "clean_sig"])
    >>> brain.fit(range(2), data, data, progressbar=False)
    >>> brain.last_stage_stats["loss"] > 0
    True
    """

    def __init__(self, *args, ssl_features=None, reference_model=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        hp = self.hparams
        objectives = hp.objectives
        self.sample_rate = int(hp.sample_rate)
        self.compute_waveform_loss = objectives["compute_waveform_loss"]
        self._check_metric_names()
        self.contrastive = ContrastiveObjective.from_objectives(
            objectives, ssl_features=ssl_features,
            reference_model=reference_model, sample_rate=self.sample_rate,
        )
        self.test_rows = []
        self._epoch = None
        if self.contrastive.enabled:
            self.contrastive.setup(
                self.device, valid_metrics=self._valid_metrics(),
                experiment=vars(self.hparams),
            )

    @property
    def objectives(self):
        """The recipe's ``objectives`` namespace."""
        return self.hparams.objectives

    @property
    def training(self):
        """The recipe's ``training`` namespace (an empty one if none).

        Example
        -------
        >>> import torch
        >>> brain = EnhancementBrain(
        ...     {"enhance_model": torch.nn.Identity()}, hparams={
        ...         "sample_rate": 16000, "training": {"crop_seed": 3},
        ...         "objectives": {"compute_waveform_loss": None}})
        >>> brain.training.get("crop_seed"), brain.training.get("x")
        (3, None)
        """
        return getattr(self.hparams, "training", None) or {}

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------
    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; first binds CR's feature cache to the
        data and models it will hold features of (disk mode)."""
        self.contrastive.bind(
            train_set, segment_length=self.training.get("segment_length"),
            crop_seed=self.training.get("crop_seed"),
        )
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def warm_start(self, source):
        """The enhancer from a finished enhancement run's best checkpoint
        (:func:`lobes.warm_start.warm_start_module`)."""
        return warm_start_module(self.modules.enhance_model, source)

    def _check_metric_names(self):
        """Fail in one line on a metric name ``enhancement_metrics`` lacks."""
        for key in ("valid_metrics", "test_metrics"):
            names = list(self.training.get(key) or [])
            unknown = [n for n in names if n not in ENHANCEMENT_METRICS]
            if unknown:
                raise HparamsError(
                    f"{key} has unknown metrics {unknown}; choose from "
                    f"{', '.join(ENHANCEMENT_METRICS)}"
                )

    def _valid_metrics(self):
        return list(self.training.get("valid_metrics") or [])

    # ------------------------------------------------------------------
    # Forward and losses
    # ------------------------------------------------------------------
    @property
    def branch_pull_weight(self):
        """The weight of the branch pull (0 when the experiment has none).

        Experiments whose model decodes speech-relevant and -irrelevant
        branches (CMCR-Net) configure ``branch_pull`` and its weight.
        """
        return float(getattr(self.hparams, "branch_pull_weight", 0) or 0)

    def _log_gradient_share(self, name, main_loss, term):
        """Every ``cr_grad_ratio_every`` steps (as CR's), ``term``'s
        gradient on the enhancer's parameters against ``main_loss``'s:
        ``<name>_grad_ratio`` (norm over norm) and ``<name>_grad_cosine``
        (negative: the term pulls against the main loss)."""
        every = int(self.objectives.get("cr_grad_ratio_every") or 0)
        if not (every and self.step % every == 1 % every
                and term.requires_grad):
            return
        share = gradient_share(
            main_loss, term,
            [p for p in self.modules.enhance_model.parameters()
             if p.requires_grad],
        )
        for suffix, key in (("grad_ratio", "second_to_first"),
                            ("grad_cosine", "cosine")):
            if math.isfinite(share[key]):  # NaN: a zero gradient
                self.add_stat(f"{name}_{suffix}", share[key])

    def _branch_pull(self, waveform_loss, branches, clean, noisy, lengths):
        """The weighted branch pull; logs it, each of its parts and their
        gradient shares against ``waveform_loss``."""
        pull, details = self.hparams.branch_pull(
            *branches, clean, noisy, lengths
        )
        self.add_stat("branch_pull", pull)
        for key in ("relevant_si_snr", "irrelevant_si_snr", "contrast"):
            self.add_stat(f"branch_{key}", details[key])
        weighted = self.branch_pull_weight * pull
        self._log_gradient_share("branch_pull", waveform_loss, weighted)
        if details.get("contrast_term") is not None:
            self._log_gradient_share(
                "contrast", waveform_loss,
                self.branch_pull_weight * details["contrast_term"],
            )
        return weighted

    def compute_forward(self, batch, stage):
        """Enhance the batch's noisy waveforms: ``[B, T]`` -> ``[B, T]``.

        In training with a branch pull, the model also returns its
        branches' estimates.
        """
        batch = batch.to(self.device)
        noisy, _ = batch.noisy_sig
        if stage == sb.Stage.TRAIN and self.branch_pull_weight > 0:
            return self.modules.enhance_model(noisy, return_branches=True)
        return self.modules.enhance_model(noisy)

    def compute_objectives(self, predictions, batch, stage):
        """Waveform loss (+ ``cr_weight`` * CR and the branch pull when
        training)."""
        clean, lengths = batch.clean_sig
        noisy, _ = batch.noisy_sig
        branches = None
        if isinstance(predictions, tuple):
            enhanced, *branches = predictions
        else:
            enhanced = predictions
        loss = self.compute_waveform_loss(enhanced, clean, lengths)
        if stage == sb.Stage.TRAIN:
            self.add_stat("waveform_loss", loss)
            if branches is not None:  # only training returns branches
                loss = loss + self._branch_pull(
                    loss, branches, clean, noisy, lengths
                )
        if stage == sb.Stage.TRAIN and self.contrastive.enabled:
            loss, _ = self.contrastive.regularize(
                loss, enhanced, clean, noisy, lengths, batch.id,
                self.modules.enhance_model.parameters(), epoch=self._epoch,
                step=self.step, steps=self.train_batches, log=self.add_stat,
            )
        elif stage == sb.Stage.VALID:
            self._validation_metrics(enhanced, noisy, clean, lengths, batch.id)
        elif stage == sb.Stage.TEST:
            self._test_metrics(enhanced, noisy, clean, lengths, batch.id)
        return loss

    def _per_utterance(self, signals, lengths):
        """Split ``[B, T]`` tensors into per-utterance 1-D CPU tensors."""
        total = signals[0].shape[1]
        items = []
        for index in range(signals[0].shape[0]):
            end = max(1, int(round(float(lengths[index]) * total)))
            items.append(
                [s[index, :end].detach().float().cpu() for s in signals]
            )
        return items

    def _metrics(self, enhanced, clean, metrics):
        return enhancement_metrics(
            enhanced, clean, self.sample_rate, metrics=list(metrics)
        )

    def _validation_metrics(self, enhanced, noisy, clean, lengths, ids):
        """Valid metrics of the model (and of the negatives, for the log)."""
        metrics = self._valid_metrics()
        if not metrics:
            return
        reference = self.contrastive.validation_reference(noisy)
        signals = [enhanced, clean, noisy]
        if reference is not None:
            signals.append(reference)
        for utt_id, items in zip(ids, self._per_utterance(signals, lengths)):
            scores = self._metrics(items[0], items[1], metrics)
            for name, value in scores.items():
                self.add_stat(name, value)
            if reference is not None:
                quality = self.contrastive.reference_quality(
                    utt_id, functools.partial(
                        self._metrics, items[3], items[1], metrics
                    ),
                )
                for name, value in quality.items():
                    self.add_stat(f"reference_{name}", value)

    def _test_metrics(self, enhanced, noisy, clean, lengths, ids):
        """Per-utterance test metrics and example wavs."""
        metrics = list(self.training.get("test_metrics") or [])
        n_save = int(self.training.get("n_audio_to_save") or 0)
        folder = getattr(self.hparams, "audio_results_folder", None)
        for utt_id, (enh, cln, nsy) in zip(
            ids, self._per_utterance([enhanced, clean, noisy], lengths)
        ):
            row = {"snt_id": str(utt_id)}
            if metrics:
                row.update(self._metrics(enh, cln, metrics))
            for name, value in row.items():
                if name != "snt_id":
                    self.add_stat(name, value)
            self.test_rows.append(row)
            if folder and len(self.test_rows) <= n_save:
                save_examples(
                    folder, str(utt_id),
                    {"enhanced": enh, "noisy": nsy, "clean": cln},
                    self.sample_rate,
                )

    # ------------------------------------------------------------------
    # Stage hooks
    # ------------------------------------------------------------------
    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; fix the negatives' weights for the epoch."""
        super().on_stage_start(stage, epoch)
        self._epoch = epoch
        self.contrastive.start_stage(stage, epoch)
        if stage == sb.Stage.TEST:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log curriculum weights, update the curriculum, write results."""
        stats = self.contrastive.end_stage(
            stage, epoch, lambda: self.stage_statistics(stage)
        )
        for name, value in stats.items():
            self.add_stat(name, value)
        if stage == sb.Stage.TEST:
            path = getattr(self.hparams, "test_results_file", None)
            folder = getattr(self.hparams, "output_folder", ".")
            self.write_test_results(
                path or os.path.join(folder, "test_results.csv"),
                self.test_rows,
            )
        super().on_stage_end(stage, stage_loss, epoch)
