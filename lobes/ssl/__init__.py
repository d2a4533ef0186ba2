"""Self-supervised speech: pre-training targets and the probe of a space.

- :mod:`lobes.ssl.targets`: MFCC frames on the model's 20 ms grid, k-means
  and the cluster ids HuBERT predicts;
- :mod:`lobes.ssl.probe_data`: the probe's words, speakers and noisy pairs;
- :mod:`lobes.ssl.probe`: the word probe and the noise-invariance measure of
  a frozen model folder (``python -m lobes.ssl.probe DIR``).

The frozen models that contrastive regularization uses are
:mod:`lobes.ssl_features`; the pre-training recipe is
``recipes/Voicebank/ssl_pretrain``.
"""
