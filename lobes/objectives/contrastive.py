"""Contrastive regularization (CR) as one objective a Brain holds.

:class:`ContrastiveObjective` is everything CR needs besides its loss
(``ContrastiveRegularization``): the frozen self-supervised feature space
(:class:`lobes.ssl_features.FrozenSSLFeatures`), the cache of the clean
and negative features (:class:`lobes.data.enhancement_data.FeatureCache`),
the negatives (``noisy``, the input; ``reference``, a frozen baseline's
output: curricular CR), their curriculum (:mod:`lobes.losses.curriculum`),
the safe start of ``cr_ramp_epochs`` and the gradient-ratio log. The
enhancement and ASR Brains hold one and call :meth:`~ContrastiveObjective.
setup` (device), :meth:`~ContrastiveObjective.bind` (on ``fit``),
:meth:`~ContrastiveObjective.start_stage` / :meth:`~ContrastiveObjective.
end_stage` and, in training, :meth:`~ContrastiveObjective.regularize`.

The SSL model is never trained, never in train mode and never in a
checkpoint (it is loaded again from ``ssl_source``); the objective's
checkpointable state is its curriculum, which the recipe YAML lists in the
checkpointer.

Authors
 * noise-robust-sb contributors 2025
"""

import logging
import math

import speechbrain as sb
import torch

from lobes.data.enhancement_data import (
    FeatureCache,
    manifest_fingerprint,
    pad_frames,
)
from lobes.errors import HparamsError
from lobes.losses.contrastive_regularization import ContrastiveRegularization
from lobes.losses.gradient_share import gradient_share
from lobes.objectives.features import utterance_features
from lobes.objectives.reference import reference_model_for, weights_fingerprint

logger = logging.getLogger(__name__)

#: Negatives CR can use.
NEGATIVE_KINDS = ("noisy", "reference")


class ContrastiveObjective:
    """CR of enhanced speech in a frozen SSL space, with its machinery.

    Arguments
    ---------
    regularization : callable, optional
        The CR loss (``ContrastiveRegularization``); ``None``: no CR.
    weight : float
        ``cr_weight`` (0: no CR).
    negatives : list of str
        ``cr_negatives``, among :data:`NEGATIVE_KINDS`.
    ssl_features : torch.nn.Module, optional
        The frozen feature space (needed when CR is on).
    curriculum : object, optional
        Weights the negatives (``negative_curriculum``).
    feature_cache : FeatureCache, optional
        Serves the clean and negative features (``feature_store``).
    ramp_epochs : float
        ``cr_ramp_epochs``: the weight grows from 0 over these epochs.
    grad_ratio_every : int
        ``cr_grad_ratio_every``: log CR's gradient ratio and cosine to the
        main loss every this many steps (0: never).
    reference_model : torch.nn.Module, optional
        The frozen baseline of the ``reference`` negative (else loaded in
        :meth:`setup` from the experiment's ``--reference_model``).
    quality_metrics : list of str
        ``curriculum_quality_metrics`` (the quality curriculum).
    sample_rate : int
        For the cache's identity.

    Example
    -------
    >>> objective = ContrastiveObjective(None, 0.0, ["noisy"])
    >>> objective.enabled
    False
    >>> objective.ramp(epoch=None, step=3, steps=10)
    1.0
    """

    def __init__(self, regularization, weight, negatives, ssl_features=None,
                 curriculum=None, feature_cache=None, ramp_epochs=0,
                 grad_ratio_every=0, reference_model=None,
                 quality_metrics=(), sample_rate=16000):
        self.cr = regularization
        self.weight = float(weight or 0.0)
        self.enabled = self.cr is not None and self.weight > 0
        self.negatives = list(negatives or [])
        self.ssl = ssl_features
        self.reference_model = None
        self._given_reference = reference_model
        self.curriculum = curriculum
        self.negative_weights = None
        self.feature_cache = feature_cache
        self.ramp_epochs = float(ramp_epochs or 0)
        self.grad_ratio_every = int(grad_ratio_every or 0)
        self.quality_metrics = list(quality_metrics or [])
        self.sample_rate = int(sample_rate)
        self.device = "cpu"
        self._waiting_for_distances = False
        self._reference_quality = {}

    @classmethod
    def from_objectives(cls, objectives, ssl_features=None,
                        reference_model=None, sample_rate=16000):
        """The objective of a recipe's ``objectives`` namespace (cr.yaml).

        Example
        -------
        >>> ContrastiveObjective.from_objectives({"cr_weight": 0.0}).enabled
        False
        """
        return cls(
            objectives.get("contrastive_regularization"),
            objectives.get("cr_weight"),
            objectives.get("cr_negatives"),
            ssl_features=ssl_features,
            curriculum=objectives.get("negative_curriculum"),
            feature_cache=objectives.get("feature_store"),
            ramp_epochs=objectives.get("cr_ramp_epochs"),
            grad_ratio_every=objectives.get("cr_grad_ratio_every"),
            reference_model=reference_model,
            quality_metrics=objectives.get("curriculum_quality_metrics"),
            sample_rate=sample_rate,
        )

    @property
    def uses_validation_quality(self):
        """Whether the curriculum follows validation quality (C2PNet).

        Example
        -------
        >>> ContrastiveObjective(None, 0.0, []).uses_validation_quality
        False
        """
        return self.curriculum is not None and bool(
            self.curriculum.uses_validation_quality
        )

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------
    def setup(self, device, valid_metrics=(), experiment=None):
        """Check the negatives; freeze the SSL space and the reference on
        ``device`` (the reference loaded from ``experiment`` if not given).

        Example
        -------
        >>> ContrastiveObjective(torch.nn.MSELoss(), 1.0, []).setup("cpu")
        Traceback (most recent call last):
        ...
        lobes.errors.HparamsError: cr_negatives must list some of noisy, \
reference, got []
        """
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
        self.device = device
        # The SSL model: on the device, eval mode, no gradients to weights.
        self.ssl.to(device)
        self.ssl.eval()
        self.ssl.requires_grad_(False)
        if "reference" in self.negatives:
            reference_model = self._given_reference
            if reference_model is None:
                # Loads --reference_model, or stops with the one-line advice.
                reference_model = reference_model_for(experiment or {})
            self.reference_model = reference_model.to(device).eval()
            self.reference_model.requires_grad_(False)
        if self.uses_validation_quality:
            missing = [
                m for m in self.quality_metrics
                if m not in list(valid_metrics)
            ]
            if missing:
                raise HparamsError(
                    f"curriculum_quality_metrics {missing} must be among "
                    f"valid_metrics {list(valid_metrics)}; add them there"
                )

    def cache_settings(self, train_set, segment_length=None, crop_seed=None):
        """Everything the cached features depend on (for the cache folder).

        Example
        -------
        >>> from lobes.data.enhancement_data import FeatureCache
        >>> objective = ContrastiveObjective(
        ...     None, 0.0, ["noisy"], feature_cache=FeatureCache("none"))
        >>> objective.ssl = type("S", (), {
        ...     "fingerprint": lambda self: "f", "source": "s",
        ...     "normalize_waveform": False, "layer_groups": [[1]]})()
        >>> objective.cache_settings([])["ssl_model"]
        'f'
        """
        dtype = self.feature_cache.dtype
        reference = None
        if self.reference_model is not None:
            reference = weights_fingerprint(self.reference_model)
        data = getattr(getattr(train_set, "dataset", train_set), "data", None)
        return {
            "manifest": manifest_fingerprint(data) if data else None,
            "ssl_model": self.ssl.fingerprint(),
            "ssl_source": self.ssl.source,
            "ssl_normalize_waveform": self.ssl.normalize_waveform,
            "ssl_layer_groups": self.ssl.layer_groups,
            "sample_rate": self.sample_rate,
            "segment_length": segment_length,
            "crop_seed": crop_seed,
            "reference_model": reference,
            "dtype": str(dtype).replace("torch.", "") if dtype else None,
        }

    def bind(self, train_set, segment_length=None, crop_seed=None):
        """Bind the feature cache to the data and models it will hold
        features of (disk mode); call at the start of ``fit``.

        Example
        -------
        >>> ContrastiveObjective(None, 0.0, []).bind([])  # CR off: nothing
        """
        if not self.enabled:
            return
        why = self.feature_cache.bind(
            self.cache_settings(train_set, segment_length, crop_seed)
        )
        if why and sb.utils.distributed.if_main_process():
            logger.info(why)

    # ------------------------------------------------------------------
    # The loss
    # ------------------------------------------------------------------
    def ramp(self, epoch, step, steps):
        """CR's share of ``cr_weight``: 0 to 1 over ``cr_ramp_epochs``.

        Progress counts epochs and the steps of the current one, so the
        weight grows at every step (a masking network starts next to the
        noisy input, where the ratio is largest).

        Example
        -------
        >>> objective = ContrastiveObjective(None, 1.0, [], ramp_epochs=2)
        >>> objective.ramp(epoch=1, step=5, steps=10)
        0.25
        """
        if self.ramp_epochs <= 0 or epoch is None:
            return 1.0
        steps = steps or 1
        progress = (epoch - 1) + min(step, steps) / steps
        return min(1.0, progress / self.ramp_epochs)

    def target_features(self, noisy, clean, lengths, ids):
        """Features of the clean speech and of every negative, cached.

        Returns
        -------
        dict
            ``{"clean": [...], <negative>: [...]}``, one ``[B, frames,
            dim]`` tensor per layer group.

        Example
        -------
        >>> objective = _toy_objective()
        >>> wavs = torch.randn(2, 16)
        >>> feats = objective.target_features(
        ...     wavs, wavs, torch.ones(2), ["a", "b"])
        >>> sorted(feats), feats["clean"][0].shape
        (['clean', 'noisy'], torch.Size([2, 4, 4]))
        >>> objective.feature_cache.misses
        4
        """
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
            computed, frames = utterance_features(
                self.ssl,
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

    def contrastive_term(self, enhanced, noisy, clean, lengths, ids,
                         epoch=None):
        """CR of the batch (unweighted) and its statistics; padded samples
        and frames never count.

        Example
        -------
        >>> objective = _toy_objective()
        >>> wavs = torch.randn(2, 16)
        >>> cr, stats = objective.contrastive_term(
        ...     wavs, wavs + 1, wavs, torch.ones(2), ["a", "b"])
        >>> float(cr), sorted(stats)
        (0.0, ['cr', 'cr_gap_noisy'])
        """
        if self.ssl.training:  # never dropout or masking in the SSL model
            self.ssl.eval()
        targets = self.target_features(noisy, clean, lengths, ids)
        enhanced_features, frames = utterance_features(
            self.ssl, enhanced, lengths
        )
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
        stats = {"cr": details["cr"]}
        for name, gap in zip(self.negatives, details["negative_to_positive"]):
            stats[f"cr_gap_{name}"] = gap
        if self.curriculum is not None:
            self.curriculum.observe(details["negative_to_positive"])
            if self._waiting_for_distances:
                self._set_negative_weights(epoch)
        return cr_loss, stats

    def loss(self, enhanced, clean, noisy, lengths, ids, epoch=None, step=0,
             steps=None):
        """The ramped ``cr_weight`` x CR of a training batch.

        Arguments
        ---------
        enhanced, clean, noisy : torch.Tensor
            ``[B, T]`` waveforms; gradients reach ``enhanced`` only.
        lengths : torch.Tensor
            Relative lengths ``[B]``.
        ids : list
            Utterance ids (the cache's keys).
        epoch, step, steps : int
            The epoch (from 1), the step in it and the steps per epoch (for
            the ramp and the curriculum).

        Returns
        -------
        term : torch.Tensor
            The weighted CR term to add to the loss.
        stats : dict
            ``cr``, ``cr_gap_<negative>`` and ``cr_weight``, to log.

        Example
        -------
        >>> objective = _toy_objective()
        >>> wavs = torch.randn(2, 16)
        >>> enhanced = (wavs + 0.5).requires_grad_(True)
        >>> term, stats = objective.loss(
        ...     enhanced, wavs, wavs + 1, torch.ones(2), ["a", "b"])
        >>> term.backward()
        >>> enhanced.grad.abs().sum() > 0, stats["cr_weight"]
        (tensor(True), 1.0)
        """
        cr_loss, stats = self.contrastive_term(
            enhanced, noisy, clean, lengths, ids, epoch
        )
        weight = self.weight * self.ramp(epoch, step, steps)
        stats["cr_weight"] = weight
        return weight * cr_loss, stats

    def regularize(self, main_loss, enhanced, clean, noisy, lengths, ids,
                   parameters, epoch=None, step=0, steps=None, log=None):
        """``main_loss`` + :meth:`loss`, with its statistics and, every
        ``cr_grad_ratio_every`` steps (at steps 1, 1 + every, ...),
        ``cr_grad_ratio``: CR's gradient norm on ``parameters`` (the
        enhancer's) over ``main_loss``'s, and ``cr_grad_cosine``: the cosine
        between the two gradients (below 0: CR pulls against the main loss;
        :func:`lobes.losses.gradient_share.gradient_share`).
        ``log(name, value)``, when given (a Brain's ``add_stat``), receives
        each statistic.

        Returns
        -------
        loss : torch.Tensor
            ``main_loss`` + the weighted CR term.
        stats : dict
            The statistics of :meth:`loss` (and ``cr_grad_ratio``,
            ``cr_grad_cosine``).

        Example
        -------
        >>> objective = _toy_objective()
        >>> gain = torch.nn.Parameter(torch.tensor(0.5))
        >>> wavs = torch.randn(2, 16)
        >>> main = (gain * wavs - wavs).pow(2).mean()
        >>> loss, stats = objective.regularize(
        ...     main, gain * wavs, wavs, wavs + 1, torch.ones(2), ["a", "b"],
        ...     [gain])
        >>> bool(loss > main), list(stats)[-1]
        (True, 'cr_weight')
        """
        term, stats = self.loss(
            enhanced, clean, noisy, lengths, ids, epoch=epoch, step=step,
            steps=steps,
        )
        every = self.grad_ratio_every
        if every and step % every == 1 % every and term.requires_grad:
            share = gradient_share(main_loss, term, parameters)
            for name, key in (("cr_grad_ratio", "second_to_first"),
                              ("cr_grad_cosine", "cosine")):
                if math.isfinite(share[key]):  # NaN: a zero gradient
                    stats[name] = share[key]
        for name, value in stats.items() if log is not None else ():
            log(name, value)
        return main_loss + term, stats

    # ------------------------------------------------------------------
    # Validation: the reference's quality (quality curriculum)
    # ------------------------------------------------------------------
    def validation_reference(self, noisy):
        """The reference's output when the curriculum needs its quality.

        Example
        -------
        >>> ContrastiveObjective(None, 0.0, []).validation_reference(
        ...     torch.ones(1, 4)) is None
        True
        """
        if self.reference_model is None or not self.uses_validation_quality:
            return None
        return self.reference_model(noisy)

    def reference_quality(self, utt_id, measure):
        """The reference's quality of an utterance, measured once
        (``measure()``) and remembered.

        Example
        -------
        >>> objective = ContrastiveObjective(None, 0.0, [])
        >>> objective.reference_quality("a", lambda: {"si_sdr": 1.0})
        {'si_sdr': 1.0}
        >>> objective.reference_quality("a", lambda: {"si_sdr": 2.0})
        {'si_sdr': 1.0}
        """
        key = str(utt_id)
        if key not in self._reference_quality:
            self._reference_quality[key] = measure()
        return self._reference_quality[key]

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

    def start_stage(self, stage, epoch=None):
        """Fix the negatives' weights for a training epoch.

        Example
        -------
        >>> objective = ContrastiveObjective(None, 0.0, ["noisy"])
        >>> objective.start_stage(sb.Stage.TRAIN, 1)
        >>> objective.negative_weights is None
        True
        """
        self._waiting_for_distances = False
        if stage == sb.Stage.TRAIN and self.enabled:
            self._set_negative_weights(epoch)

    def end_stage(self, stage, epoch=None, statistics=None):
        """Statistics to log at the end of a stage; logs the curriculum
        and the cache after training, updates the quality curriculum after
        validation (``statistics()`` gives the stage's averages).

        Example
        -------
        >>> objective = ContrastiveObjective(None, 0.0, ["noisy"])
        >>> objective.end_stage(sb.Stage.TRAIN, 1)
        {}
        """
        stats = {}
        if stage == sb.Stage.TRAIN and self.enabled:
            weights = self.negative_weights or [1.0] * len(self.negatives)
            for name, weight in zip(self.negatives, weights):
                stats[f"gamma_{name}"] = weight
            if self.curriculum is not None:
                logger.info("Epoch %s: %s", epoch, self.curriculum.describe())
            cache = self.feature_cache
            if cache is not None and cache.enabled:
                logger.info(
                    "Feature cache (%s): %d hits, %d misses, %.1f MB in "
                    "memory", cache.mode, cache.hits, cache.misses,
                    cache.size_bytes() / 2**20,
                )
        if stage == sb.Stage.VALID and self.enabled and (
            self.uses_validation_quality
        ):
            self._update_quality_curriculum(statistics())
        return stats

    def _update_quality_curriculum(self, stats):
        """C2PNet rule: compare the model's and the negatives' quality on
        every measure of ``curriculum_quality_metrics``."""
        metrics = self.quality_metrics
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


def _toy_objective():
    """A CR objective in a toy feature space (4 samples a frame), for the
    examples."""
    class Frames(torch.nn.Module):
        def forward(self, wavs):
            return [wavs.reshape(wavs.shape[0], -1, 4)]

    objective = ContrastiveObjective(
        ContrastiveRegularization(), 1.0, ["noisy"], ssl_features=Frames(),
        feature_cache=FeatureCache("memory"),
    )
    objective.setup("cpu")
    return objective
