"""One Brain for every speech enhancement recipe, with (curricular) CR.

:class:`EnhancementBrain` trains any backbone that maps a noisy waveform
``[B, T]`` to an enhanced one (``modules.enhance_model``) with

    loss = waveform loss (MSE or negative SI-SNR)
           + cr_weight * CR(enhanced; positive = clean, negatives)

(METHODS.md section 2). The objectives come from the experiment's
``objectives`` namespace (``hparams/enhancement/cr.yaml``). The negatives
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

import logging
import math
import os

import speechbrain as sb
import torch

from lobes.brains.base import RecipeBrain, save_examples
from lobes.data.enhancement_data import manifest_fingerprint, pad_frames
from lobes.errors import HparamsError, ModelSourceError

logger = logging.getLogger(__name__)

#: Negatives CR can use.
NEGATIVE_KINDS = ("noisy", "reference")

def reference_model_error(recipe, reference_hparams, seed, why=None):
    """The one-line error of a CCR recipe started without a usable baseline.

    Example
    -------
    >>> print(reference_model_error(
    ...     "ccr_wavlm_convtasnet.yaml", "hparams/convtasnet.yaml", 1986))
    ccr_wavlm_convtasnet.yaml needs a baseline as its reference model: run \
`python train.py hparams/convtasnet.yaml` first and pass \
--reference_model=results/convtasnet/1986
    """
    stem = os.path.splitext(os.path.basename(str(reference_hparams)))[0]
    seed = "<seed>" if seed is None else seed
    prefix = f"{recipe} needs a baseline as its reference model"
    if why:
        prefix = f"{prefix} ({why})"
    return ModelSourceError(
        f"{prefix}: run `python train.py {reference_hparams}` first and "
        f"pass --reference_model=results/{stem}/{seed}"
    )


def _weights_fingerprint(module):
    """A short hash of a module's weights (a reference model's identity)."""
    import hashlib

    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_reference_model(folder):
    """The enhancement model of a finished run (best checkpoint), frozen.

    Arguments
    ---------
    folder : str
        The reference (baseline) run's ``output_folder``.

    Returns
    -------
    torch.nn.Module
        The model in eval mode with ``requires_grad`` False everywhere; its
        ``checkpoint_path`` attribute names the checkpoint loaded.

    Example
    -------
    >>> load_reference_model("/no/such/folder")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/folder: no such folder; ...
    """
    from lobes.runs import load_trained_run

    run = load_trained_run(folder, ["enhance_model"], kind="enhancement")
    model = run.modules["enhance_model"]
    model.requires_grad_(False)
    model.checkpoint_path = str(run.checkpoint.path)
    return model


def reference_model_for(experiment, hparams_file="this recipe", seed=None):
    """The frozen reference model an experiment asks for, or ``None``.

    An experiment whose ``cr_negatives`` include ``reference`` needs
    ``--reference_model=<output folder of the baseline run>``; without it,
    this stops with one line saying which baseline to train (from the
    ``reference_hparams`` hparam) and what to pass.

    Arguments
    ---------
    experiment : dict
        The recipe's experiment (``objectives`` holds ``cr_negatives``,
        ``cr_weight`` and ``reference_model``).
    hparams_file : str
        The recipe YAML, for the message.
    seed : int, optional
        The recipe's seed, for the suggested folder.

    Example
    -------
    >>> reference_model_for({"objectives": {"cr_negatives": ["noisy"]}})
    >>> reference_model_for({"objectives": {
    ...     "cr_negatives": ["noisy", "reference"], "cr_weight": 1.0,
    ...     "reference_model": None},
    ...     "reference_hparams": "hparams/convtasnet.yaml"}, "ccr.yaml", 1)
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ccr.yaml needs a baseline ... \
--reference_model=results/convtasnet/1
    """
    objectives = experiment.get("objectives") or {}
    negatives = list(objectives.get("cr_negatives") or [])
    if "reference" not in negatives or not objectives.get("cr_weight"):
        return None
    recipe = os.path.basename(str(hparams_file))
    baseline = experiment.get("reference_hparams", "hparams/<baseline>.yaml")
    folder = objectives.get("reference_model")
    if not folder:
        raise reference_model_error(recipe, baseline, seed)
    try:
        return load_reference_model(folder)
    except ModelSourceError as err:
        raise reference_model_error(
            recipe, baseline, seed, why=str(err)
        ) from None


class EnhancementBrain(RecipeBrain):
    """Enhancement training with an optional (curricular) CR term.

    Hparams it reads (an enhancement recipe YAML): ``sample_rate``,
    ``audio_results_folder``, ``test_results_file``, ``max_grad_norm``,
    ``branch_pull`` and ``branch_pull_weight`` (CMCR-Net), the
    ``reference_hparams`` named in CCR's advice; the ``training`` namespace
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
        :func:`reference_model_for`).

    Example
    -------
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
        self.cr = objectives.get("contrastive_regularization")
        self.cr_weight = float(objectives.get("cr_weight") or 0.0)
        self.use_cr = self.cr is not None and self.cr_weight > 0
        self.negatives = list(objectives.get("cr_negatives") or [])
        self.ssl = ssl_features
        self.reference_model = None
        self.curriculum = objectives.get("negative_curriculum")
        self.negative_weights = None
        self.feature_cache = objectives.get("feature_store")
        self.cr_ramp_epochs = float(objectives.get("cr_ramp_epochs") or 0)
        self.grad_ratio_every = int(
            objectives.get("cr_grad_ratio_every") or 0
        )
        self.test_rows = []
        self._reference_quality = {}
        self._epoch = None
        if self.use_cr:
            self._setup_cr(reference_model)

    @property
    def objectives(self):
        """The recipe's ``objectives`` namespace."""
        return self.hparams.objectives

    @property
    def training(self):
        """The recipe's ``training`` namespace (an empty one if none).

        Example
        -------
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
    def _setup_cr(self, reference_model):
        """Freeze the SSL space, load the reference, bind the cache."""
        unknown = [n for n in self.negatives if n not in NEGATIVE_KINDS]
        if not self.negatives or unknown:
            raise HparamsError(
                f"cr_negatives must list some of {', '.join(NEGATIVE_KINDS)}"
                f", got {self.negatives}"
            )
        if len(set(self.negatives)) != len(self.negatives):
            raise HparamsError(
                f"cr_negatives lists a negative twice: {self.negatives}"
            )
        if self.ssl is None:
            raise HparamsError(
                "cr_weight > 0 needs a feature space: include one of "
                "hparams/ssl/*.yaml in the recipe YAML (as `ssl:`)"
            )
        # The SSL model: on the device, eval mode, no gradients to weights.
        self.ssl.to(self.device)
        self.ssl.eval()
        self.ssl.requires_grad_(False)
        if "reference" in self.negatives:
            if reference_model is None:
                # Loads --reference_model, or stops with the one-line advice.
                reference_model = reference_model_for(vars(self.hparams))
            self.reference_model = reference_model.to(self.device).eval()
            self.reference_model.requires_grad_(False)
        if self.curriculum is not None and (
            self.curriculum.uses_validation_quality
        ):
            missing = [
                m for m in self._quality_metrics()
                if m not in self._valid_metrics()
            ]
            if missing:
                raise HparamsError(
                    f"curriculum_quality_metrics {missing} must be among "
                    f"valid_metrics {self._valid_metrics()}; add them there"
                )

    def _quality_metrics(self):
        return list(self.objectives["curriculum_quality_metrics"])

    def _cache_settings(self, train_set):
        """Everything the cached features depend on (for the cache folder)."""
        dtype = self.feature_cache.dtype
        reference = None
        if self.reference_model is not None:
            reference = _weights_fingerprint(self.reference_model)
        data = getattr(getattr(train_set, "dataset", train_set), "data", None)
        return {
            "manifest": manifest_fingerprint(data) if data else None,
            "ssl_model": self.ssl.fingerprint(),
            "ssl_source": self.ssl.source,
            "ssl_normalize_waveform": self.ssl.normalize_waveform,
            "ssl_layer_groups": self.ssl.layer_groups,
            "sample_rate": self.sample_rate,
            "segment_length": self.training.get("segment_length"),
            "crop_seed": self.training.get("crop_seed"),
            "reference_model": reference,
            "dtype": str(dtype).replace("torch.", "") if dtype else None,
        }

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; first binds the feature cache to the data
        and models it will hold features of (disk mode)."""
        if self.use_cr:
            why = self.feature_cache.bind(self._cache_settings(train_set))
            if why and sb.utils.distributed.if_main_process():
                logger.info(why)
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    def _check_metric_names(self):
        """Fail in one line on a metric name ``enhancement_metrics`` lacks."""
        from lobes.metrics import ENHANCEMENT_METRICS

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
        if branches is not None:
            pull, _ = self.hparams.branch_pull(
                *branches, clean, noisy, lengths
            )
            self.add_stat("branch_pull", pull)
            loss = loss + self.branch_pull_weight * pull
        if stage == sb.Stage.TRAIN and self.use_cr:
            loss = self._add_contrastive_term(
                loss, enhanced, noisy, clean, lengths, batch.id
            )
        elif stage == sb.Stage.VALID:
            self._validation_metrics(enhanced, noisy, clean, lengths, batch.id)
        elif stage == sb.Stage.TEST:
            self._test_metrics(enhanced, noisy, clean, lengths, batch.id)
        return loss

    def _ramp(self):
        """CR's share of ``cr_weight``: 0 to 1 over ``cr_ramp_epochs``.

        Progress counts epochs and the steps of the current one, so the
        weight grows at every step (a masking network starts next to the
        noisy input, where the ratio is largest).
        """
        if self.cr_ramp_epochs <= 0 or self._epoch is None:
            return 1.0
        steps = self.train_batches or 1
        progress = (self._epoch - 1) + min(self.step, steps) / steps
        return min(1.0, progress / self.cr_ramp_epochs)

    def _log_gradient_ratio(self, main_loss, weighted_cr):
        """How hard CR pushes: its gradient norm on the enhancer's
        parameters over the waveform loss's (every few steps)."""
        params = [
            p for p in self.modules.enhance_model.parameters()
            if p.requires_grad
        ]
        norms = []
        for term in (main_loss, weighted_cr):
            grads = torch.autograd.grad(
                term, params, retain_graph=True, allow_unused=True
            )
            squares = [g.detach().float().pow(2).sum() for g in grads
                       if g is not None]
            norms.append(torch.stack(squares).sum().sqrt() if squares
                         else torch.zeros(()))
        if float(norms[0]) > 0:
            self.add_stat("cr_grad_ratio", norms[1] / norms[0])

    def _features(self, signals, lengths):
        """SSL features of each utterance on its own samples.

        Utterances of equal length go through the model together; padding
        never enters it (a base model's convolutional front end normalises
        over the whole input). Gradients reach ``signals``.

        Returns
        -------
        features : list of torch.Tensor
            One ``[B, frames, dim]`` tensor per layer group, zero-padded.
        frames : torch.Tensor
            Valid frames of each utterance ``[B]``.
        """
        total = signals.shape[1]
        valid = torch.round(lengths.float() * total).long().clamp(1, total)
        groups = {}
        for index, length in enumerate(valid.tolist()):
            groups.setdefault(length, []).append(index)
        parts, order, frames = [], [], [0] * len(valid)
        for length, indices in groups.items():
            feats = self.ssl(signals[indices, :length])
            parts.append(feats)
            order.extend(indices)
            for index in indices:
                frames[index] = feats[0].shape[1]
        longest = max(frames)
        inverse = torch.argsort(torch.tensor(order, device=signals.device))
        features = []
        for layer in range(len(parts[0])):
            padded = torch.cat([
                torch.nn.functional.pad(
                    part[layer], (0, 0, 0, longest - part[layer].shape[1])
                )
                for part in parts
            ])
            features.append(padded[inverse])
        return features, torch.tensor(frames, device=signals.device)

    def _target_features(self, noisy, clean, lengths, ids):
        """Features of the clean speech and of every negative, cached."""
        ids = [str(i) for i in ids]
        kinds = ["clean"] + self.negatives
        features, missing = {}, []
        for kind in kinds:
            cached = self.feature_cache.load(
                kind, ids, device=self.device, dtype=torch.float32
            )
            if cached is None:
                missing.append(kind)
            else:
                features[kind] = cached
        if not missing:
            return features
        with torch.no_grad():
            signals = {"clean": clean, "noisy": noisy}
            if "reference" in missing:
                signals["reference"] = self.reference_model(noisy)
            batch_size = clean.shape[0]
            computed, frames = self._features(
                torch.cat([signals[k] for k in missing]).float(),
                lengths.repeat(len(missing)),
            )
        cache = self.feature_cache
        # Use what the cache will serve later (its storage precision), so
        # that every epoch sees exactly the same targets.
        stored = cache.dtype if cache.enabled else None
        for position, kind in enumerate(missing):
            part = slice(position * batch_size, (position + 1) * batch_size)
            count = frames[part].tolist()
            per_utterance = [
                [f[part][i, : count[i]].to(stored or f.dtype).float()
                 for f in computed]
                for i in range(batch_size)
            ]
            features[kind] = [
                pad_frames([utt[layer] for utt in per_utterance])
                for layer in range(len(computed))
            ]
            cache.store(kind, ids, features[kind], frames=count)
        return features

    def _add_contrastive_term(self, loss, enhanced, noisy, clean, lengths,
                              ids):
        """``loss`` + the ramped ``cr_weight`` x CR, logging the weight and,
        every ``cr_grad_ratio_every`` steps, CR's share of the gradient."""
        cr_loss = self._contrastive_term(enhanced, noisy, clean, lengths, ids)
        weight = self.cr_weight * self._ramp()
        self.add_stat("cr_weight", weight)
        every = self.grad_ratio_every
        if every and self.step % every == 1:
            self._log_gradient_ratio(loss, weight * cr_loss)
        return loss + weight * cr_loss

    def _contrastive_term(self, enhanced, noisy, clean, lengths, ids):
        """CR of the batch, with cached clean/negative features; padded
        samples and frames never count."""
        if self.ssl.training:  # never dropout or masking in the SSL model
            self.ssl.eval()
        targets = self._target_features(noisy, clean, lengths, ids)
        enhanced_features, frames = self._features(enhanced, lengths)
        targets = {
            kind: [
                torch.nn.functional.pad(
                    f[:, : enhanced_features[0].shape[1]],
                    (0, 0, 0, max(0, enhanced_features[0].shape[1]
                                  - f.shape[1])),
                )
                for f in feats
            ]
            for kind, feats in targets.items()
        }
        cr_loss, details = self.cr(
            enhanced_features,
            targets["clean"],
            [targets[k] for k in self.negatives],
            negative_weights=self.negative_weights,
            frames=frames,
        )
        self.add_stat("cr", details["cr"])
        for name, gap in zip(self.negatives, details["negative_to_positive"]):
            self.add_stat(f"cr_gap_{name}", gap)
        if self.curriculum is not None:
            self.curriculum.observe(details["negative_to_positive"])
            if self._waiting_for_distances:
                self._set_negative_weights(self._epoch)
        return cr_loss

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
        from lobes.metrics import enhancement_metrics

        return enhancement_metrics(
            enhanced, clean, self.sample_rate, metrics=list(metrics)
        )

    def _validation_metrics(self, enhanced, noisy, clean, lengths, ids):
        """Valid metrics of the model (and of the negatives, for the log)."""
        metrics = self._valid_metrics()
        if not metrics:
            return
        need_reference = (
            self.reference_model is not None
            and self.curriculum is not None
            and self.curriculum.uses_validation_quality
        )
        reference = None
        if need_reference:
            reference = self.reference_model(noisy)
        signals = [enhanced, clean, noisy]
        if reference is not None:
            signals.append(reference)
        for utt_id, items in zip(ids, self._per_utterance(signals, lengths)):
            scores = self._metrics(items[0], items[1], metrics)
            for name, value in scores.items():
                self.add_stat(name, value)
            if reference is not None:
                key = str(utt_id)
                if key not in self._reference_quality:
                    self._reference_quality[key] = self._metrics(
                        items[3], items[1], metrics
                    )
                for name, value in self._reference_quality[key].items():
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
    def _set_negative_weights(self, epoch):
        """Ask the curriculum for this epoch's negative weights."""
        if self.curriculum is None:
            self.negative_weights = None
            self._waiting_for_distances = False
            return
        self._waiting_for_distances = self.curriculum.waiting_for_distances
        self.negative_weights = self.curriculum.epoch_weights(epoch)

    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; fix the negatives' weights for the epoch."""
        super().on_stage_start(stage, epoch)
        self._epoch = epoch
        self._waiting_for_distances = False
        if stage == sb.Stage.TRAIN and self.use_cr:
            self._set_negative_weights(epoch)
        if stage == sb.Stage.TEST:
            self.test_rows = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log curriculum weights, update the curriculum, write results."""
        if stage == sb.Stage.TRAIN and self.use_cr:
            weights = self.negative_weights or [1.0] * len(self.negatives)
            for name, weight in zip(self.negatives, weights):
                self.add_stat(f"gamma_{name}", weight)
            if self.curriculum is not None:
                logger.info("Epoch %s: %s", epoch, self.curriculum.describe())
            cache = self.feature_cache
            if cache is not None and cache.enabled:
                logger.info(
                    "Feature cache (%s): %d hits, %d misses, %.1f MB in "
                    "memory", cache.mode, cache.hits, cache.misses,
                    cache.size_bytes() / 2**20,
                )
        if stage == sb.Stage.VALID and self.use_cr and (
            self.curriculum is not None
            and self.curriculum.uses_validation_quality
        ):
            self._update_quality_curriculum()
        if stage == sb.Stage.TEST:
            path = getattr(self.hparams, "test_results_file", None)
            folder = getattr(self.hparams, "output_folder", ".")
            self.write_test_results(
                path or os.path.join(folder, "test_results.csv"),
                self.test_rows,
            )
        super().on_stage_end(stage, stage_loss, epoch)

    def _update_quality_curriculum(self):
        """C2PNet rule: compare the model's and the negatives' quality on
        every measure of ``curriculum_quality_metrics``."""
        metrics = self._quality_metrics()
        stats = self.stage_statistics(sb.Stage.VALID)
        model_quality = {m: stats.get(m, math.nan) for m in metrics}
        reference = {
            m: stats.get(f"reference_{m}", math.nan) for m in metrics
        }
        qualities = [
            None if name == "noisy" else reference
            for name in self.negatives
        ]
        self.curriculum.update(model_quality, qualities)
        logger.info("%s", self.curriculum.describe())
