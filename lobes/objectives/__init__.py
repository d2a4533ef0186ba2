"""Training objectives a Brain holds: contrastive regularization (CR).

:class:`lobes.objectives.contrastive.ContrastiveObjective` gathers CR's
feature space, feature cache, negatives, curriculum, reference model and
ramp; :mod:`lobes.objectives.reference` loads CCR's reference model.
"""

from lobes.objectives.contrastive import NEGATIVE_KINDS, ContrastiveObjective
from lobes.objectives.reference import (
    load_reference_model,
    reference_model_error,
    reference_model_for,
    weights_fingerprint,
)

__all__ = [
    "NEGATIVE_KINDS",
    "ContrastiveObjective",
    "load_reference_model",
    "reference_model_error",
    "reference_model_for",
    "weights_fingerprint",
]
