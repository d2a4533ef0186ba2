"""Curricula that weight the negatives of contrastive regularization.

Curricular CR (METHODS.md section 2b) uses negatives of very different
difficulty: the noisy input lies far from the clean speech in the SSL space
(easy), the output of the same backbone trained without CR lies close to it
(hard, "consensual"). The weights ``gamma_k`` of
:class:`lobes.losses.contrastive_regularization.ContrastiveRegularization`
balance them. Two schedules:

- :class:`QualityCurriculum`: C2PNet's rule, driven by validation quality.
- :class:`SimilarityCurriculum`: easy (distant) negatives first, hard
  (close) negatives weighted up over ``ramp_epochs``.

- :class:`UniformCurriculum`: every negative weighs 1 (no curriculum).

They share one interface (:class:`Curriculum`): the Brain asks for
:meth:`Curriculum.epoch_weights` when a training epoch starts, feeds
:meth:`Curriculum.observe` with each batch's distances and
:meth:`Curriculum.update` with the validation quality. All keep their state
in ``state_dict``/``load_state_dict`` and are SpeechBrain checkpoint
recoverables (the recipes list them in the checkpointer's
``recoverables``), so an interrupted training resumes with the same
weights, and ``describe()`` gives one line for the epoch log.
"""

import json
import math

from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


def _names(names, count):
    if names is None:
        return [f"neg{k}" for k in range(count)]
    names = [str(name) for name in names]
    if len(names) != count:
        raise ValueError(f"{len(names)} negative names for {count} negatives")
    return names


def _format(names, weights):
    return ", ".join(f"{n}={w:.3f}" for n, w in zip(names, weights))


@register_checkpoint_hooks
class Curriculum:
    """What every curriculum offers the Brain; JSON checkpoint hooks.

    SpeechBrain looks hooks up along the MRO, so subclasses inherit them.
    The defaults are those of a curriculum that ignores distances and
    validation quality.
    """

    #: Whether :meth:`update` uses the validation quality of the negatives.
    uses_validation_quality = False

    def epoch_weights(self, epoch):
        """The negative weights for training epoch ``epoch``."""
        return list(self.current_weights)

    @property
    def waiting_for_distances(self):
        """True while the weights wait for the first observed distances."""
        return False

    def observe(self, distances_to_positive):
        """Take one batch's negative-to-positive distances (unused here)."""

    def update(self, model_quality, negative_qualities):
        """Take the validation quality (unused here); the current weights."""
        return self.current_weights

    def state_dict(self):
        """The state to restore after an interruption (JSON-friendly)."""
        return {"current_weights": list(self.current_weights)}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output."""
        self.current_weights = [float(w) for w in state["current_weights"]]

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(self.state_dict(), fout)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        del end_of_epoch  # The state is the same mid-epoch.
        with open(path, encoding="utf-8") as fin:
            self.load_state_dict(json.load(fin))


class UniformCurriculum(Curriculum):
    """No curriculum: every negative weighs ``1/K`` (the weights sum to 1,
    as the curricula's do, so that CR has the same scale).

    Arguments
    ---------
    negative_names : list of str
        The negatives, e.g. ``["noisy", "reference"]``.

    Example
    -------
    >>> UniformCurriculum(["noisy", "reference"]).describe()
    'no curriculum: noisy=0.500, reference=0.500'
    """

    def __init__(self, negative_names):
        self.negative_names = _names(negative_names, len(negative_names))
        count = len(self.negative_names)
        self.current_weights = [1.0 / count] * count

    def describe(self):
        """One line with the (fixed) weights."""
        weights = _format(self.negative_names, self.current_weights)
        return f"no curriculum: {weights}"


def _measures(quality):
    """``{measure: value}`` from a dict or a single number."""
    if isinstance(quality, dict):
        return {name: float(value) for name, value in quality.items()}
    return {"quality": float(quality)}


class QualityCurriculum(Curriculum):
    """C2PNet's curriculum: weight the negatives the model already beats up.

    ``gamma_k = 1 + lam`` for a model negative whose quality the current
    model beats (on every validation measure), else ``1 - lam``; every
    *input* negative (the noisy mixture) gets the raw weight ``m``, the
    number of model negatives; the weights are then normalised to sum to 1.
    As in C2PNet, they change only when :meth:`update` sees a validation
    result better than every earlier one on every measure (e.g. PESQ *and*
    SI-SDR). Before the first update the model is assumed to beat no
    negative.

    Arguments
    ---------
    negative_names : list of str
        The negatives CR gets, in order (e.g. ``["noisy", "reference"]``).
    input_negatives : list of str
        Which of them are the input (they get the raw weight ``m``).
    lam : float
        ``lambda`` (C2PNet: 0.25).
    higher_is_better : bool
        Whether larger quality values are better (PESQ, SI-SDR: yes).

    Example
    -------
    >>> curriculum = QualityCurriculum(["noisy", "ref"])
    >>> [round(w, 3) for w in curriculum.current_weights]
    [0.571, 0.429]
    >>> weights = curriculum.update({"pesq": 2.9, "si_sdr": 10.0},
    ...                             [None, {"pesq": 2.7, "si_sdr": 9.0}])
    >>> [round(w, 3) for w in weights]
    [0.444, 0.556]
    >>> curriculum.describe()
    'quality curriculum (best pesq 2.900, si_sdr 10.000): noisy=0.444, \
ref=0.556'
    """

    uses_validation_quality = True

    def __init__(
        self,
        negative_names,
        input_negatives=("noisy",),
        lam=0.25,
        higher_is_better=True,
    ):
        self.negative_names = _names(negative_names, len(negative_names))
        self.num_negatives = len(self.negative_names)
        self.input_negatives = [
            k for k, name in enumerate(self.negative_names)
            if name in input_negatives
        ]
        self.model_negatives = [
            k
            for k in range(self.num_negatives)
            if k not in self.input_negatives
        ]
        if not 0 <= lam < 1:
            raise ValueError(f"lam must be in [0, 1), got {lam}")
        self.lam = float(lam)
        self.higher_is_better = bool(higher_is_better)
        self.best_quality = None
        self.beaten = [False] * len(self.model_negatives)
        self.current_weights = self._compute()

    def _compute(self):
        raw = [0.0] * self.num_negatives
        for k in self.input_negatives:
            raw[k] = float(max(len(self.model_negatives), 1))
        for k, beaten in zip(self.model_negatives, self.beaten):
            raw[k] = 1.0 + self.lam if beaten else 1.0 - self.lam
        total = sum(raw)
        return [value / total for value in raw]

    def _better(self, quality, other):
        """Whether ``quality`` beats ``other`` on every shared measure."""
        shared = [name for name in quality if name in other]
        if not shared:
            return False
        if self.higher_is_better:
            return all(quality[n] > other[n] for n in shared)
        return all(quality[n] < other[n] for n in shared)

    def update(self, model_quality, negative_qualities):
        """Recompute the weights if ``model_quality`` is a new best.

        Arguments
        ---------
        model_quality : dict or float
            The current model's validation quality, ``{measure: value}``
            (e.g. mean PESQ and SI-SDR) or one number.
        negative_qualities : list
            The quality of each model negative on the same data (a dict or
            a number each), either one per model negative or one per
            negative (then the input negatives' entries are ignored and may
            be ``None``).

        Returns
        -------
        list of float
            The current weights ``gamma_k``, one per negative, summing to 1.

        Example
        -------
        >>> curriculum = QualityCurriculum(["noisy", "ref1", "ref2"])
        >>> [round(w, 3) for w in curriculum.update(3.0, [3.2, 2.5])]
        [0.5, 0.188, 0.312]
        >>> [round(w, 3) for w in curriculum.update(2.0, [1.0, 1.0])]
        [0.5, 0.188, 0.312]
        """
        qualities = list(negative_qualities)
        if len(qualities) == self.num_negatives:
            qualities = [qualities[k] for k in self.model_negatives]
        if len(qualities) != len(self.model_negatives):
            raise ValueError(
                f"got {len(negative_qualities)} negative qualities; expected "
                f"{len(self.model_negatives)} (model negatives) or "
                f"{self.num_negatives} (all negatives)"
            )
        model = _measures(model_quality)
        if any(math.isnan(value) for value in model.values()):
            return self.current_weights
        if self.best_quality is None or self._better(
            model, self.best_quality
        ):
            self.best_quality = model
            self.beaten = [
                self._better(model, _measures(q)) for q in qualities
            ]
            self.current_weights = self._compute()
        return self.current_weights

    def describe(self):
        """One line with the best quality seen and the current weights."""
        best = "none"
        if self.best_quality is not None:
            best = ", ".join(
                f"{name} {value:.3f}" if name != "quality" else f"{value:.3f}"
                for name, value in self.best_quality.items()
            )
        weights = _format(self.negative_names, self.current_weights)
        return f"quality curriculum (best {best}): {weights}"

    def state_dict(self):
        """The state to restore after an interruption (JSON-friendly)."""
        return {
            "best_quality": self.best_quality,
            "beaten": list(self.beaten),
            "current_weights": list(self.current_weights),
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output.

        Example
        -------
        >>> first = QualityCurriculum(["noisy", "ref"])
        >>> _ = first.update(3.0, [2.0])
        >>> second = QualityCurriculum(["noisy", "ref"])
        >>> second.load_state_dict(first.state_dict())
        >>> second.current_weights == first.current_weights
        True
        """
        if len(state["beaten"]) != len(self.model_negatives):
            raise ValueError(
                "curriculum state has a different number of negatives"
            )
        best = state["best_quality"]
        self.best_quality = None if best is None else _measures(best)
        self.beaten = [bool(b) for b in state["beaten"]]
        self.current_weights = [float(w) for w in state["current_weights"]]


class SimilarityCurriculum(Curriculum):
    """Easy (distant) negatives first, hard (close) ones weighted up later.

    Each negative's *hardness* comes from its distance ``d_k`` to the
    positive in the SSL space (smaller = closer = harder), scaled to
    ``[0, 1]``::

        h_k = log(d_max / d_k) / max_j log(d_max / d_j)

    (0 for the most distant negative, 1 for the closest; all 0 when the
    distances are equal). With training progress
    ``p = clamp((epoch - first_epoch) / (ramp_epochs - 1), 0, 1)`` (``p = 1``
    when ``ramp_epochs`` is 1) the weights are a softmax whose temperature
    sign flips halfway::

        gamma = (1 - uniform_mix) * softmax(sharpness * (2p - 1) * h)
                + uniform_mix / K

    At the first epoch the easy negatives dominate (uniformly among equally
    easy ones), at ``p = 1/2`` every negative weighs ``1/K``, and in epoch
    ``first_epoch + ramp_epochs - 1`` (the recipes' last epoch) and after,
    the hardest dominate. ``uniform_mix`` keeps every negative in the
    denominator. The weights sum to 1. This schedule is this package's own
    reading of "a curriculum weights the negatives" (the CCR paper's
    formulas could not be read; METHODS.md section 2b).

    Arguments
    ---------
    negative_names : list of str
        The negatives CR gets, in order.
    ramp_epochs : int
        Epochs from "easy first" to "hard first".
    sharpness : float
        Softmax scale: how strongly one end is preferred.
    uniform_mix : float
        Share of a uniform weighting mixed in, in ``[0, 1]``.
    first_epoch : int
        The first epoch's number (SpeechBrain counts from 1).

    Example
    -------
    >>> curriculum = SimilarityCurriculum(["noisy", "ref"], ramp_epochs=5)
    >>> far_noisy_close_reference = [2.0, 0.5]
    >>> for epoch in (1, 3, 5):
    ...     weights = curriculum.weights(epoch, far_noisy_close_reference)
    ...     print(epoch, [round(w, 3) for w in weights])
    1 [0.907, 0.093]
    3 [0.5, 0.5]
    5 [0.093, 0.907]
    """

    def __init__(
        self,
        negative_names,
        ramp_epochs=10,
        sharpness=3.0,
        uniform_mix=0.1,
        first_epoch=1,
    ):
        self.negative_names = _names(negative_names, len(negative_names))
        self.num_negatives = len(self.negative_names)
        if ramp_epochs < 1:
            raise ValueError(f"ramp_epochs must be >= 1, got {ramp_epochs}")
        if not 0 <= uniform_mix <= 1:
            raise ValueError(
                f"uniform_mix must be in [0, 1], got {uniform_mix}"
            )
        self.ramp_epochs = int(ramp_epochs)
        self.sharpness = float(sharpness)
        self.uniform_mix = float(uniform_mix)
        self.first_epoch = int(first_epoch)
        self.distance_sums = [0.0] * self.num_negatives
        self.distance_count = 0
        self.epoch = None
        self.current_weights = [1.0 / self.num_negatives] * self.num_negatives

    def epoch_weights(self, epoch):
        """The weights for ``epoch`` from the distances observed so far."""
        return list(self.weights(epoch))

    @property
    def waiting_for_distances(self):
        """True until the first batch's distances have been observed."""
        return self.mean_distances() is None

    def observe(self, distances_to_positive):
        """Add one batch's distances (e.g. CR's ``negative_to_positive``).

        Example
        -------
        >>> curriculum = SimilarityCurriculum(["noisy", "ref"])
        >>> curriculum.observe([2.0, 1.0]); curriculum.observe([4.0, 1.0])
        >>> curriculum.mean_distances()
        [3.0, 1.0]
        """
        values = [float(d) for d in distances_to_positive]
        if len(values) != self.num_negatives:
            raise ValueError(
                f"got {len(values)} distances for {self.num_negatives} "
                "negatives"
            )
        self.distance_sums = [s + v for s, v in zip(self.distance_sums, values)]
        self.distance_count += 1

    def mean_distances(self):
        """Mean of the distances given to :meth:`observe`, or ``None``."""
        if self.distance_count == 0:
            return None
        return [s / self.distance_count for s in self.distance_sums]

    def progress(self, epoch):
        """Training progress ``p`` in ``[0, 1]`` at ``epoch``.

        Example
        -------
        >>> SimilarityCurriculum(["noisy"], ramp_epochs=11).progress(6)
        0.5
        >>> SimilarityCurriculum(["noisy"], ramp_epochs=1).progress(1)
        1.0
        """
        if self.ramp_epochs <= 1:
            return 1.0
        steps = (epoch - self.first_epoch) / (self.ramp_epochs - 1)
        return min(max(steps, 0.0), 1.0)

    def weights(self, epoch, distances_to_positive=None):
        """Return (and remember) the negative weights for ``epoch``.

        Arguments
        ---------
        epoch : int
            The current epoch.
        distances_to_positive : list of float, optional
            ``d_k`` per negative. Default: :meth:`mean_distances`; before
            any distance is known every negative weighs ``1/K``.

        Returns
        -------
        list of float
            ``gamma_k``, one per negative, summing to 1.
        """
        if distances_to_positive is None:
            distances_to_positive = self.mean_distances()
        self.epoch = int(epoch)
        if distances_to_positive is None:
            self.current_weights = [1.0 / self.num_negatives] * (
                self.num_negatives
            )
            return self.current_weights
        distances = [max(float(d), 1e-12) for d in distances_to_positive]
        if len(distances) != self.num_negatives:
            raise ValueError(
                f"got {len(distances)} distances for {self.num_negatives} "
                "negatives"
            )
        farthest = max(distances)
        hardness = [math.log(farthest / d) for d in distances]
        spread = max(hardness)
        if spread > 0:
            hardness = [h / spread for h in hardness]
        scale = self.sharpness * (2.0 * self.progress(epoch) - 1.0)
        logits = [scale * h for h in hardness]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        count = self.num_negatives
        self.current_weights = [
            (1 - self.uniform_mix) * e / total + self.uniform_mix / count
            for e in exps
        ]
        return self.current_weights

    def describe(self):
        """One line with the epoch, progress and current weights."""
        where = (
            "not started"
            if self.epoch is None
            else f"epoch {self.epoch}, p={self.progress(self.epoch):.2f}"
        )
        weights = _format(self.negative_names, self.current_weights)
        return f"similarity curriculum ({where}): {weights}"

    def state_dict(self):
        """The state to restore after an interruption (JSON-friendly)."""
        return {
            "distance_sums": list(self.distance_sums),
            "distance_count": self.distance_count,
            "epoch": self.epoch,
            "current_weights": list(self.current_weights),
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output.

        Example
        -------
        >>> first = SimilarityCurriculum(["noisy", "ref"])
        >>> first.observe([2.0, 0.5])
        >>> _ = first.weights(3)
        >>> second = SimilarityCurriculum(["noisy", "ref"])
        >>> second.load_state_dict(first.state_dict())
        >>> second.describe() == first.describe()
        True
        """
        if len(state["distance_sums"]) != self.num_negatives:
            raise ValueError(
                "curriculum state has a different number of negatives"
            )
        self.distance_sums = [float(s) for s in state["distance_sums"]]
        self.distance_count = int(state["distance_count"])
        self.epoch = state["epoch"]
        self.current_weights = [float(w) for w in state["current_weights"]]
