"""Test-time separation and evaluation of the audio-visual recipes.

The methods compared on the same noisy mixtures of two speakers, or of
one (single-speaker enhancement, ``J = 1``)
(``recipes/NTCD-TIMIT/av_separation/separate.py``):

- ``av_vae``: Monte Carlo EM (:class:`lobes.models.mcem.MCEM`) with a
  trained AV-VAE and each speaker's lips; with ``lips_fallback`` and an
  A-VAE, frames the lips do not explain fall back to the A-VAE (a
  per-frame switch inferred in the EM; one notice line per mixture whose
  lips explain fewer than half of a speaker's frames);
- ``a_vae``: the same with the audio-only VAE (no lips: the speakers differ
  only through the random draws);
- ``nmf``: NMF-only separation (:class:`lobes.models.nmf.NMFSeparator`)
  with a speech dictionary learned on the clean training speech;
- ``supervised``: a mask-based separator trained on mixtures
  (``hparams/supervised.yaml``);
- ``mixture``: the unprocessed mixture as every estimate (the reference
  point of the improvements).

Mixtures are scaled to unit RMS before the STFT and the estimates scaled
back. Several mixtures go through MCEM and NMF at once (padded, with a
frame mask). :func:`evaluate` scores the estimates against the references
with the permutation of best SI-SDR: SDR (BSS Eval), SI-SDR, their gains
over the mixture, PESQ (wide band) and STOI, each averaged over the
speakers, and whether the lips' order was the best permutation.

The modules: :mod:`lobes.separation_mcem.loading` (trained runs, test
mixtures), :mod:`lobes.separation_mcem.methods` (the methods on batches),
:mod:`lobes.separation_mcem.scoring` (:func:`evaluate`) and
:mod:`lobes.separation_mcem.pipeline` (:class:`Separators`,
:func:`evaluate_methods`); their public names are importable from
``lobes.separation_mcem`` too.

Authors
 * noise-robust-sb contributors 2025
"""

from lobes.separation_mcem.loading import (
    lips_paths,
    load_test_mixtures,
    load_trained,
)
from lobes.separation_mcem.methods import (
    AVMixture,
    fit_lips_to_model,
    learn_speech_dictionary,
    lips_batch,
    separate_nmf,
    separate_supervised,
    separate_vae,
    stft_batch,
)
from lobes.separation_mcem.pipeline import (
    METHODS,
    Separators,
    evaluate_methods,
)
from lobes.separation_mcem.scoring import SCORES, evaluate, summary_table

__all__ = [
    "METHODS",
    "SCORES",
    "AVMixture",
    "Separators",
    "evaluate",
    "evaluate_methods",
    "fit_lips_to_model",
    "learn_speech_dictionary",
    "lips_batch",
    "lips_paths",
    "load_test_mixtures",
    "load_trained",
    "separate_nmf",
    "separate_supervised",
    "separate_vae",
    "stft_batch",
    "summary_table",
]
