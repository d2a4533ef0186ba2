"""One Brain for every speech enhancement recipe, with (curricular) CR.

:class:`EnhancementBrain` trains any backbone that maps a noisy waveform
``[B, T]`` to an enhanced one (``modules.enhance_model``) with

    loss = waveform loss (MSE or negative SI-SNR)
           + cr_weight * CR(enhanced; positive = clean, negatives)

(METHODS.md section 2). The negatives are named in ``cr_negatives``:
``noisy`` (the input mixture: CR, CMCR-Net) and ``reference`` (the output of
the same backbone trained without CR, frozen: curricular CR). A curriculum
(``curriculum: none|quality|similarity``) weights the negatives; its
weights are logged every epoch and its state is checkpointed.

The CR feature space is a frozen self-supervised model
(``contrastive_regularization`` in the YAML, with a
:class:`lobes.ssl_features.FrozenSSLFeatures` inside). It stays outside
``modules``: it is never trained, never switched to train mode, and never
written into checkpoints (it is loaded again from ``ssl_source``). Every
training example is a fixed segment of its utterance
(:func:`lobes.data.enhancement_data.fixed_segment`), so the features of
the clean speech, the noisy input and the reference output never change;
they are computed once and served from a
:class:`lobes.data.enhancement_data.FeatureCache` (``feature_cache:
memory|disk|none``) in later epochs.

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

from lobes.brains.base import RecipeBrain, save_examples, write_results_csv
from lobes.data.enhancement_data import FeatureCache, cache_fingerprint
from lobes.errors import HparamsError, ModelSourceError
from lobes.losses.pit import pairwise_neg_sisnr

logger = logging.getLogger(__name__)

#: Negatives CR can use.
NEGATIVE_KINDS = ("noisy", "reference")

#: Values of the ``curriculum`` hparam.
CURRICULA = ("none", "quality", "similarity")

#: Values of the ``waveform_loss`` hparam.
WAVEFORM_LOSSES = ("mse", "si_snr")


def waveform_loss(enhanced, clean, lengths=None, kind="mse"):
    """Mean over the batch of the per-utterance MSE or negative SI-SNR.

    Samples beyond each utterance's relative length are left out.

    Arguments
    ---------
    enhanced, clean : torch.Tensor
        Waveforms ``[B, T]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[B]`` in ``(0, 1]``.
    kind : str
        ``"mse"`` or ``"si_snr"`` (negative SI-SNR in dB).

    Example
    -------
    >>> clean = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    >>> waveform_loss(clean * 0.5, clean).item()
    0.25
    >>> waveform_loss(clean * 0.5, clean, kind="si_snr").item() < -60
    True
    >>> lengths = torch.tensor([0.5])
    >>> waveform_loss(torch.tensor([[1.0, -1.0, 0.0, 0.0]]), clean, lengths)
    tensor(0.)
    """
    if kind not in WAVEFORM_LOSSES:
        raise HparamsError(
            f"waveform_loss must be one of {', '.join(WAVEFORM_LOSSES)}, "
            f"got '{kind}'"
        )
    if lengths is None or bool((lengths >= 1).all()):
        if kind == "mse":
            return (enhanced - clean).pow(2).mean()
        return pairwise_neg_sisnr(
            enhanced.unsqueeze(-1), clean.unsqueeze(-1)
        ).mean()
    total = enhanced.new_zeros(())
    for index in range(enhanced.shape[0]):
        end = max(1, int(round(float(lengths[index]) * enhanced.shape[1])))
        total = total + waveform_loss(
            enhanced[index : index + 1, :end], clean[index : index + 1, :end],
            kind=kind,
        )
    return total / enhanced.shape[0]


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
    prefix = f"{recipe} needs a baseline as its reference model"
    if why:
        prefix = f"{prefix} ({why})"
    return ModelSourceError(
        f"{prefix}: run `python train.py {reference_hparams}` first and "
        f"pass --reference_model=results/{stem}/{seed}"
    )


def load_reference_model(folder, model_key="enhance_model"):
    """Load a trained enhancement model from a recipe's output folder, frozen.

    The folder is what a recipe run writes: ``hyperparams.yaml`` (the
    resolved copy of its YAML, which builds the model) and ``save/`` (its
    checkpoints; the one with the lowest validation loss is loaded).

    Arguments
    ---------
    folder : str
        The reference recipe's ``output_folder``.
    model_key : str
        Name of the model in that YAML's ``modules`` and checkpoints.

    Returns
    -------
    torch.nn.Module
        The model in eval mode with ``requires_grad`` False everywhere.

    Raises
    ------
    ModelSourceError
        One line saying what is missing.

    Example
    -------
    >>> load_reference_model("/no/such/folder")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: /no/such/folder: ...no such folder...
    """
    from lobes.recipe import load_hparams

    folder = os.path.expanduser(str(folder))
    hparams_path = os.path.join(folder, "hyperparams.yaml")
    save_folder = os.path.join(folder, "save")
    if not os.path.isdir(folder):
        raise ModelSourceError(
            f"{folder}: reference model folder: no such folder"
        )
    if not os.path.isfile(hparams_path):
        raise ModelSourceError(
            f"{folder}: reference model folder has no hyperparams.yaml; pass "
            "the output folder of a finished baseline run"
        )
    checkpoints = []
    if os.path.isdir(save_folder):
        checkpointer = sb.utils.checkpoints.Checkpointer(save_folder)
        checkpoints = checkpointer.list_checkpoints()
    if not checkpoints:
        raise ModelSourceError(
            f"{folder}: reference model folder has no checkpoint in save/; "
            "train the baseline first (with --debug add --debug_persistently)"
        )
    best = min(
        checkpoints, key=lambda c: c.meta.get("loss", math.inf)
    )
    if model_key not in best.paramfiles:
        raise ModelSourceError(
            f"{best.path}: checkpoint has no '{model_key}'; the reference "
            "must be an enhancement recipe's output folder"
        )
    # Loading the YAML re-runs its seeding: keep this run's random state.
    with torch.random.fork_rng(devices=[]):
        reference_hparams = load_hparams(hparams_path)
    model = reference_hparams.get("modules", {}).get(model_key)
    if model is None:
        model = reference_hparams.get(model_key)
    if not isinstance(model, torch.nn.Module):
        raise ModelSourceError(
            f"{hparams_path}: no '{model_key}' module; the reference must be "
            "an enhancement recipe's output folder"
        )
    state = torch.load(best.paramfiles[model_key], map_location="cpu")
    model.load_state_dict(state)
    model.eval()
    model.requires_grad_(False)
    model.checkpoint_path = str(best.path)
    return model


def reference_model_for(hparams, hparams_file="this recipe"):
    """The frozen reference model a recipe's YAML asks for, or ``None``.

    A recipe whose ``cr_negatives`` include ``reference`` needs
    ``--reference_model=<output folder of the baseline run>``; without it,
    this stops with one line saying which baseline to train (from the
    ``reference_hparams`` hparam) and what to pass.

    Arguments
    ---------
    hparams : dict
        The loaded recipe hparams.
    hparams_file : str
        The recipe YAML, for the message.

    Example
    -------
    >>> reference_model_for({"cr_negatives": ["noisy"]}) is None
    True
    >>> reference_model_for({"cr_negatives": ["noisy", "reference"],
    ...     "reference_model": None, "seed": 1,
    ...     "reference_hparams": "hparams/convtasnet.yaml"}, "ccr.yaml")
    Traceback (most recent call last):
    ...
    lobes.errors.ModelSourceError: ccr.yaml needs a baseline ... \
--reference_model=results/convtasnet/1
    """
    negatives = list(hparams.get("cr_negatives") or [])
    if "reference" not in negatives or not hparams.get("cr_weight", 1):
        return None
    recipe = os.path.basename(str(hparams_file))
    baseline = hparams.get("reference_hparams", "hparams/<baseline>.yaml")
    folder = hparams.get("reference_model")
    if not folder:
        raise reference_model_error(recipe, baseline, hparams.get("seed"))
    try:
        return load_reference_model(folder)
    except ModelSourceError as err:
        raise reference_model_error(
            recipe, baseline, hparams.get("seed"), why=str(err)
        ) from None


class EnhancementBrain(RecipeBrain):
    """Enhancement training with an optional (curricular) CR term.

    Hparams it reads (recipe YAML top level): ``sample_rate``,
    ``waveform_loss`` (``mse`` | ``si_snr``), ``cr_weight``,
    ``contrastive_regularization`` (a
    :class:`~lobes.losses.contrastive_regularization.ContrastiveRegularization`;
    absent in baselines), ``cr_negatives`` (list of ``noisy``,
    ``reference``), ``curriculum`` (``none`` | ``quality`` | ``similarity``)
    with ``curriculum_lambda``, ``curriculum_quality_metric``,
    ``curriculum_ramp_epochs``, ``curriculum_sharpness``,
    ``curriculum_uniform_mix``; ``feature_cache`` (``memory`` | ``disk`` |
    ``none``), ``feature_cache_folder``, ``feature_cache_dtype``;
    ``valid_metrics``, ``test_metrics``, ``n_audio_to_save``,
    ``audio_results_folder``, ``test_results_file``; and RecipeBrain's
    ``checkpointer``, ``train_logger``, ``lr_scheduler``,
    ``epoch_counter``.

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``; ``modules`` must hold
        ``enhance_model``.
    reference_model : torch.nn.Module, optional
        The frozen reference for the ``reference`` negative (see
        :func:`reference_model_for`).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> class Wrap(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv1d(1, 1, 3, padding=1)
    ...     def forward(self, x):
    ...         return self.conv(x.unsqueeze(1)).squeeze(1)
    >>> brain = EnhancementBrain({"enhance_model": Wrap()},
    ...     lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"sample_rate": 16000, "valid_metrics": []})
    >>> clean = torch.randn(160)
    >>> data = DynamicItemDataset(
    ...     {"a": {"noisy_sig": clean + 0.1, "clean_sig": clean}},
    ...     output_keys=["id", "noisy_sig", "clean_sig"])
    >>> brain.fit(range(2), data, data, progressbar=False)
    >>> brain.last_stage_stats["loss"] > 0
    True
    """

    def __init__(self, *args, reference_model=None, **kwargs):
        super().__init__(*args, **kwargs)
        hp = self.hparams
        self.sample_rate = int(getattr(hp, "sample_rate", 16000))
        self.loss_kind = getattr(hp, "waveform_loss", "mse")
        if self.loss_kind not in WAVEFORM_LOSSES:
            raise HparamsError(
                f"waveform_loss must be one of {', '.join(WAVEFORM_LOSSES)}, "
                f"got '{self.loss_kind}'"
            )
        clip = getattr(hp, "max_grad_norm", None)
        if clip is not None and not float(clip) > 0:
            raise HparamsError(
                f"max_grad_norm must be positive, got {clip}; fix it in the "
                "YAML or on the command line"
            )
        self._check_metric_names()
        self.cr = getattr(hp, "contrastive_regularization", None)
        self.cr_weight = float(getattr(hp, "cr_weight", 0.0) or 0.0)
        self.use_cr = self.cr is not None and self.cr_weight > 0
        self.negatives = list(getattr(hp, "cr_negatives", None) or [])
        self.reference_model = None
        self.curriculum = None
        self.negative_weights = None
        self.feature_cache = None
        self.test_rows = []
        self._reference_quality = {}
        self._epoch = None
        self._weights_need_distances = False
        if self.use_cr:
            self._setup_cr(reference_model)

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------
    def _setup_cr(self, reference_model):
        """Freeze the SSL space, load the reference, build cache+curriculum."""
        hp = self.hparams
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
        # The SSL model: on the device, eval mode, no gradients to weights.
        self.cr.to(self.device)
        self.cr.eval()
        self.cr.requires_grad_(False)
        if "reference" in self.negatives:
            if reference_model is None:
                # Loads --reference_model, or stops with the one-line advice.
                reference_model = reference_model_for(vars(hp))
            self.reference_model = reference_model.to(self.device).eval()
            self.reference_model.requires_grad_(False)

        mode = getattr(hp, "feature_cache", "memory")
        dtype_name = getattr(hp, "feature_cache_dtype", "float32")
        dtype = getattr(torch, str(dtype_name), None)
        if not isinstance(dtype, torch.dtype):
            raise HparamsError(
                f"feature_cache_dtype must be a torch dtype name such as "
                f"float32 or float16, got '{dtype_name}'"
            )
        folder = None
        if mode == "disk":
            folder = os.path.join(
                self.hparams.feature_cache_folder,
                cache_fingerprint(self._cache_settings(dtype_name)),
            )
        self.feature_cache = FeatureCache(mode, folder=folder, dtype=dtype)

        self.curriculum = self._make_curriculum()
        if self.curriculum is not None and self.checkpointer is not None:
            self.checkpointer.add_recoverable("curriculum", self.curriculum)

    def _cache_settings(self, dtype_name):
        """Everything the cached features depend on (for the cache folder)."""
        hp = self.hparams
        extractor = getattr(self.cr, "feature_extractor", None)
        return {
            "ssl_source": getattr(extractor, "source", None),
            "layer_groups": getattr(extractor, "layer_groups", None),
            "sample_rate": self.sample_rate,
            "segment_length": getattr(hp, "segment_length", None),
            "crop_seed": getattr(hp, "crop_seed", None),
            "reference": getattr(self.reference_model, "checkpoint_path", None),
            "dtype": dtype_name,
        }

    def _make_curriculum(self):
        from lobes.losses.curriculum import (
            QualityCurriculum,
            SimilarityCurriculum,
        )

        hp = self.hparams
        kind = getattr(hp, "curriculum", "none") or "none"
        if kind not in CURRICULA:
            raise HparamsError(
                f"curriculum must be one of {', '.join(CURRICULA)}, got "
                f"'{kind}'"
            )
        if kind == "none":
            return None
        if kind == "quality":
            metric = getattr(hp, "curriculum_quality_metric", "si_sdr")
            if metric not in self._valid_metrics():
                raise HparamsError(
                    f"curriculum_quality_metric '{metric}' must be one of "
                    f"valid_metrics {self._valid_metrics()}; add it there"
                )
            return QualityCurriculum(
                num_negatives=len(self.negatives),
                input_negatives=[
                    k for k, n in enumerate(self.negatives) if n == "noisy"
                ],
                lam=float(getattr(hp, "curriculum_lambda", 0.25)),
                higher_is_better=True,
                negative_names=self.negatives,
            )
        return SimilarityCurriculum(
            num_negatives=len(self.negatives),
            ramp_epochs=int(getattr(hp, "curriculum_ramp_epochs", 10)),
            sharpness=float(getattr(hp, "curriculum_sharpness", 3.0)),
            uniform_mix=float(getattr(hp, "curriculum_uniform_mix", 0.1)),
            negative_names=self.negatives,
        )

    def _check_metric_names(self):
        """Fail in one line on a metric name ``enhancement_metrics`` lacks."""
        from lobes.metrics import ENHANCEMENT_METRICS

        for key in ("valid_metrics", "test_metrics"):
            names = list(getattr(self.hparams, key, None) or [])
            unknown = [n for n in names if n not in ENHANCEMENT_METRICS]
            if unknown:
                raise HparamsError(
                    f"{key} has unknown metrics {unknown}; choose from "
                    f"{', '.join(ENHANCEMENT_METRICS)}"
                )

    def _valid_metrics(self):
        return list(getattr(self.hparams, "valid_metrics", None) or [])

    # ------------------------------------------------------------------
    # Forward and losses
    # ------------------------------------------------------------------
    def compute_forward(self, batch, stage):
        """Enhance the batch's noisy waveforms: ``[B, T]`` -> ``[B, T]``."""
        batch = batch.to(self.device)
        noisy, _ = batch.noisy_sig
        return self.modules.enhance_model(noisy)

    def compute_objectives(self, predictions, batch, stage):
        """Waveform loss (+ ``cr_weight`` * CR when training)."""
        enhanced = predictions
        clean, lengths = batch.clean_sig
        noisy, _ = batch.noisy_sig
        loss = waveform_loss(enhanced, clean, lengths, self.loss_kind)
        if stage == sb.Stage.TRAIN and self.use_cr:
            self.add_stat("waveform_loss", loss)
            cr_loss = self._contrastive_term(enhanced, noisy, clean, batch.id)
            loss = loss + self.cr_weight * cr_loss
        elif stage == sb.Stage.VALID:
            self._validation_metrics(enhanced, noisy, clean, lengths, batch.id)
        elif stage == sb.Stage.TEST:
            self._test_metrics(enhanced, noisy, clean, lengths, batch.id)
        return loss

    def _contrastive_term(self, enhanced, noisy, clean, ids):
        """CR of the batch, with cached clean/negative features."""
        if self.cr.training:  # never dropout or masking in the SSL model
            self.cr.eval()
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
        if missing:
            with torch.no_grad():
                signals = {"clean": clean, "noisy": noisy}
                if "reference" in missing:
                    signals["reference"] = self.reference_model(noisy)
                batch_size = clean.shape[0]
                computed = self.cr.features(
                    torch.cat([signals[k] for k in missing]).float()
                )
            cache = self.feature_cache
            # Use what the cache will serve later (its storage precision), so
            # that every epoch sees exactly the same targets.
            stored = cache.dtype if cache.enabled else None
            for position, kind in enumerate(missing):
                part = slice(position * batch_size, (position + 1) * batch_size)
                features[kind] = [
                    f[part].to(stored or f.dtype).float() for f in computed
                ]
                cache.store(kind, ids, features[kind])
        cr_loss, details = self.cr(
            enhanced,
            negative_weights=self.negative_weights,
            clean_features=features["clean"],
            negative_features=[features[k] for k in self.negatives],
        )
        self.add_stat("cr", details["cr"])
        for name, gap in zip(self.negatives, details["negative_to_positive"]):
            self.add_stat(f"cr_gap_{name}", gap)
        if self.curriculum is not None and hasattr(self.curriculum, "observe"):
            self.curriculum.observe(details["negative_to_positive"])
            if self._weights_need_distances:
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

    def _add_finite(self, name, value):
        if value is not None and math.isfinite(float(value)):
            self.add_stat(name, float(value))

    def _validation_metrics(self, enhanced, noisy, clean, lengths, ids):
        """Valid metrics of the model (and of the negatives, for the log)."""
        metrics = self._valid_metrics()
        if not metrics:
            return
        need_reference = (
            self.reference_model is not None
            and getattr(self.hparams, "curriculum", "none") == "quality"
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
                self._add_finite(name, value)
            if reference is not None:
                key = str(utt_id)
                if key not in self._reference_quality:
                    self._reference_quality[key] = self._metrics(
                        items[3], items[1], metrics
                    )
                for name, value in self._reference_quality[key].items():
                    self._add_finite(f"reference_{name}", value)

    def _test_metrics(self, enhanced, noisy, clean, lengths, ids):
        """Per-utterance test metrics and example wavs."""
        metrics = list(getattr(self.hparams, "test_metrics", None) or [])
        n_save = int(getattr(self.hparams, "n_audio_to_save", 0) or 0)
        folder = getattr(self.hparams, "audio_results_folder", None)
        for utt_id, (enh, cln, nsy) in zip(
            ids, self._per_utterance([enhanced, clean, noisy], lengths)
        ):
            row = {"snt_id": str(utt_id)}
            if metrics:
                row.update(self._metrics(enh, cln, metrics))
            for name, value in row.items():
                if name != "snt_id":
                    self._add_finite(name, value)
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
        curriculum = self.curriculum
        if curriculum is None:
            self.negative_weights = None
            self._weights_need_distances = False
            return
        if hasattr(curriculum, "observe"):  # similarity curriculum
            self._weights_need_distances = curriculum.mean_distances() is None
            self.negative_weights = list(curriculum.weights(epoch))
        else:
            self._weights_need_distances = False
            self.negative_weights = list(curriculum.current_weights)

    def on_stage_start(self, stage, epoch=None):
        """Reset statistics; fix the negatives' weights for the epoch."""
        super().on_stage_start(stage, epoch)
        self._epoch = epoch
        self._weights_need_distances = False
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
        if stage == sb.Stage.VALID and self.curriculum is not None:
            if not hasattr(self.curriculum, "observe"):  # quality curriculum
                self._update_quality_curriculum()
        if stage == sb.Stage.TEST and self.test_rows:
            path = getattr(
                self.hparams, "test_results_file",
                os.path.join(getattr(self.hparams, "output_folder", "."),
                             "test_results.csv"),
            )
            if sb.utils.distributed.if_main_process():
                write_results_csv(path, self.test_rows)
                logger.info("Per-utterance test results: %s", path)
        super().on_stage_end(stage, stage_loss, epoch)

    def _update_quality_curriculum(self):
        """C2PNet rule: compare the model's and the negatives' quality."""
        metric = getattr(self.hparams, "curriculum_quality_metric", "si_sdr")
        stats = self.stage_statistics(sb.Stage.VALID)
        model_quality = stats.get(metric, math.nan)
        qualities = [
            None if name == "noisy" else stats.get(f"reference_{metric}",
                                                   math.nan)
            for name in self.negatives
        ]
        self.curriculum.update(model_quality, qualities)
        logger.info("%s", self.curriculum.describe())
