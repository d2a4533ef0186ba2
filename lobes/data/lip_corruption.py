"""Unreliable lips for testing audio-visual models: the corruptions a real
recording meets (a wrong speaker's video, a rotated or frozen crop, a
face tracker that lost the mouth, another camera's ROI size).

:func:`corrupt_lips` returns test items (:class:`lobes.separation_mcem.
AVMixture`) whose lips are replaced; the audio and references are kept,
so that a model's output on corrupted lips can be paired with its output
on the correct ones (``separate.py --lips_corruption=<kind>``, and
``benchmarks/av_enhancement.py``):

- ``none``: the lips as they are;
- ``other_speaker``: another speaker's lips. A two-speaker item gets its
  speakers' lips swapped; single-speaker items are taken in pairs (``0 <->
  1``, ``2 <-> 3``, ..., as :func:`lobes.separation_mcem.
  load_test_mixtures` lists a mixture's two speakers one after the other,
  distinct speakers by construction), the other's lips cropped or padded
  (last frame repeated) to the item's frame count;
- ``rotated``: every frame rotated by 90 degrees;
- ``frozen``: the first frame for the whole utterance (no motion);
- ``noise``: uniform noise images of the same size and type;
- ``resized``: the frames resized to 67 x 67 (TCD-TIMIT's ROI size), so
  that the tools must resize them back to the model's.

Authors
 * noise-robust-sb contributors 2025
"""

import torch

from lobes.data.lip_input import resize_frames

CORRUPTIONS = ("none", "other_speaker", "rotated", "frozen", "noise",
               "resized")  # fmt: skip

#: The ROI size of ``resized`` (TCD-TIMIT's mouth crops).
RESIZED_ROI = (67, 67)


def _fit_length(frames, count):
    """``frames [T, H, W]`` cropped, or padded with its last frame, to
    ``count`` frames."""
    if frames.shape[0] >= count:
        return frames[:count]
    pad = frames[-1:].expand(count - frames.shape[0], *frames.shape[1:])
    return torch.cat([frames, pad])


def _noise_like(frames, generator):
    noise = torch.rand(frames.shape, generator=generator)
    if frames.is_floating_point():
        return noise.to(frames.dtype)
    return (noise * 255).round().to(frames.dtype)


def corrupt_frames(frames, kind, generator=None):
    """One speaker's lips ``[T, H, W]`` corrupted in place of ``kind``
    (every kind but ``other_speaker``, which needs another speaker).

    Example
    -------
    >>> frames = torch.arange(2 * 2 * 3, dtype=torch.uint8).view(2, 2, 3)
    >>> corrupt_frames(frames, "rotated").shape
    torch.Size([2, 3, 2])
    >>> bool((corrupt_frames(frames, "frozen") == frames[0]).all())
    True
    >>> corrupt_frames(frames, "noise").dtype
    torch.uint8
    >>> corrupt_frames(frames, "resized").shape
    torch.Size([2, 67, 67])
    """
    frames = torch.as_tensor(frames)
    if kind == "none":
        return frames
    if kind == "rotated":
        return frames.rot90(1, (-2, -1)).contiguous()
    if kind == "frozen":
        return frames[:1].expand_as(frames).clone()
    if kind == "noise":
        return _noise_like(frames, generator)
    if kind == "resized":
        unit = frames.float() / 255.0 if not frames.is_floating_point() \
            else frames.float()
        return resize_frames(unit, RESIZED_ROI)
    raise ValueError(
        f"lips corruption {kind!r} is not one of {', '.join(CORRUPTIONS)}"
    )


def corrupt_lips(items, kind, seed=0):
    """Test items whose lips are corrupted (see the module docstring).

    Arguments
    ---------
    items : list of AVMixture
        Items with ``lips`` (one ``[T, H, W]`` tensor per speaker).
    kind : str
        One of :data:`CORRUPTIONS`.
    seed : int
        Seed of the ``noise`` images.

    Returns
    -------
    list of AVMixture
        New items; the audio and references are the same objects.

    Example
    -------
    >>> from lobes.separation_mcem import AVMixture
    >>> lips = [torch.full((4, 2, 2), v, dtype=torch.uint8) for v in (1, 2)]
    >>> two = AVMixture("m", torch.zeros(160), lips, 30.0)
    >>> [int(f[0, 0, 0]) for f in corrupt_lips([two], "other_speaker")[0].lips]
    [2, 1]
    >>> ones = [AVMixture(f"m_s{i}", torch.zeros(160), [lips[i][: 3 + i]],
    ...                   30.0) for i in (0, 1)]
    >>> swapped = corrupt_lips(ones, "other_speaker")
    >>> [(int(i.lips[0][0, 0, 0]), i.lips[0].shape[0]) for i in swapped]
    [(2, 3), (1, 4)]
    >>> corrupt_lips(ones, "blurred")
    Traceback (most recent call last):
      ...
    ValueError: lips corruption 'blurred' is not one of none, \
other_speaker, rotated, frozen, noise, resized
    """
    if kind not in CORRUPTIONS:
        raise ValueError(
            f"lips corruption {kind!r} is not one of {', '.join(CORRUPTIONS)}"
        )
    if kind == "none":
        return list(items)
    generator = torch.Generator().manual_seed(int(seed))
    out = []
    for index, item in enumerate(items):
        if kind != "other_speaker":
            lips = [corrupt_frames(f, kind, generator) for f in item.lips]
        elif len(item.lips) > 1:
            lips = [torch.as_tensor(f) for f in item.lips[::-1]]
            lips = [_fit_length(f, torch.as_tensor(own).shape[0])
                    for f, own in zip(lips, item.lips)]  # fmt: skip
        else:
            if len(items) < 2:
                raise ValueError(
                    "other_speaker lips need at least two single-speaker "
                    "items"
                )
            partner = index ^ 1 if (index ^ 1) < len(items) else index - 1
            own = torch.as_tensor(item.lips[0])
            lips = [_fit_length(torch.as_tensor(items[partner].lips[0]),
                                own.shape[0])]  # fmt: skip
        out.append(item._replace(lips=lips))
    return out
