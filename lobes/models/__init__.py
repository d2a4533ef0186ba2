"""Separation models: NASS's noise-aware wrapper around SpeechBrain lobes."""

from lobes.models.noise_aware import (
    MaskCountError,
    NoiseAwareSeparator,
    SeparatorOutput,
    inference_parameter_count,
)

__all__ = [
    "MaskCountError",
    "NoiseAwareSeparator",
    "SeparatorOutput",
    "inference_parameter_count",
]
