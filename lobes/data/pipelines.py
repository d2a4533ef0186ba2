"""Small helpers for SpeechBrain data pipelines."""

import torch


def random_crop(signals, length, generator=None):
    """Crop aligned signals at one random offset, zero-padding short ones.

    Arguments
    ---------
    signals : list of torch.Tensor
        Aligned signals of shape ``[time]`` (a mixture and its sources).
        They should have the same length; the shortest one sets the range
        of offsets.
    length : int
        Samples to keep. A non-positive value keeps the signals whole.
    generator : torch.Generator, optional
        Random source (default: torch's global generator).

    Returns
    -------
    list of torch.Tensor
        The crops, each of shape ``[length]``.

    Example
    -------
    >>> mix, src = torch.arange(10.0), torch.arange(10.0) * 2
    >>> gen = torch.Generator().manual_seed(0)
    >>> crop_mix, crop_src = random_crop([mix, src], 4, gen)
    >>> crop_mix.shape, bool(torch.equal(crop_src, crop_mix * 2))
    (torch.Size([4]), True)
    >>> random_crop([torch.ones(3)], 5)[0]
    tensor([1., 1., 1., 0., 0.])
    """
    if length is None or length <= 0:
        return list(signals)
    shortest = min(sig.shape[-1] for sig in signals)
    if shortest > length:
        offset = int(
            torch.randint(0, shortest - length + 1, (1,), generator=generator)
        )
    else:
        offset = 0
    crops = []
    for sig in signals:
        crop = sig[..., offset : offset + length]
        if crop.shape[-1] < length:
            pad = length - crop.shape[-1]
            crop = torch.nn.functional.pad(crop, (0, pad))
        crops.append(crop)
    return crops
