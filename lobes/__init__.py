"""Noise-robust speech separation and enhancement with contrastive learning.

The importable part of the recipe package: models, losses, Brains and data
tools shared by the recipes under ``recipes/``.
"""

__version__ = "0.1.0"
