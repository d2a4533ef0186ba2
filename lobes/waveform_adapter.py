"""The adapter that lets SpeechBrain's ``WaveformEnhancement`` load an enhancer.

Self-contained (torch only): ``python -m lobes.export`` ships this module's
source in the exported folder, so that the folder loads where this package
is not installed.

Authors
 * noise-robust-sb contributors 2025
"""

import torch


class WaveformEnhancementAdapter(torch.nn.Module):
    """A waveform enhancer with the two outputs ``WaveformEnhancement`` takes.

    SpeechBrain's ``WaveformEnhancement`` calls
    ``enhanced, _ = enhance_model(noisy)``; the recipes' enhancers return
    the enhanced waveform alone. This returns ``(enhanced, None)``. Its
    weights are the wrapped enhancer's: an exported folder's pretrainer
    loads ``enhance_model.ckpt`` into the enhancer itself.

    Arguments
    ---------
    enhancer : torch.nn.Module
        Maps noisy waveforms ``[B, T]`` to enhanced ones ``[B, T]``.

    Example
    -------
    >>> adapter = WaveformEnhancementAdapter(torch.nn.Identity())
    >>> enhanced, _ = adapter(torch.ones(1, 4))
    >>> enhanced
    tensor([[1., 1., 1., 1.]])
    """

    def __init__(self, enhancer):
        super().__init__()
        self.enhancer = enhancer

    def forward(self, noisy, lengths=None):
        """``(enhancer(noisy), None)``; ``lengths`` is not used."""
        return self.enhancer(noisy), None
