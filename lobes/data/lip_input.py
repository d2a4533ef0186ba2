"""Real lip recordings as input of the test-time tools.

A lips file holds one grey mouth region of interest (ROI) per video frame,
in one of two layouts:

- ``frames``: a 3-D array ``T x H x W`` (the mini corpus's layout, any
  ``H`` and ``W``);
- ``columns``: the authors' layout (av-dkf, avse-vae), a 2-D array
  ``(H*W) x T`` with one column per frame, each column the frame flattened
  column-major as MATLAB writes it: frame ``k`` is
  ``a[:, k].reshape(H, W, order="F")`` (a C-order reshape would need a
  transpose to stand upright). E.g. ``4489 x T`` for 67 x 67 ROIs.

**The rule that tells them apart** (``layout="auto"``): a 3-D array is
``frames``; a 2-D array whose first dimension is a perfect square ``H*W``
and larger than its second is ``columns`` with square frames
(``H = W = sqrt(first dimension)``); any other 2-D array is refused with
one line. ``layout="columns"`` (with ``frame_shape=(H, W)`` for
rectangular frames) or ``layout="frames"`` overrides the rule.

Values are uint8 in [0, 255] (or another integer type within that range)
or float in [0, 1]; :func:`load_lips` returns float32 in [0, 1], resized
to the model's ROI size (:func:`resize_frames`), converted to the model's
frame rate (:func:`to_frame_rate`: every STFT frame gets the video frame
covering its centre, the rule of training,
:func:`lobes.models.av_features.lips_per_frame`), after checking that the video
lasts as long as the audio (:func:`check_duration`: at most
:data:`DURATION_TOLERANCE_S` seconds or :data:`DURATION_TOLERANCE_SHARE`
of the audio apart, whichever is larger). Every fault is one
:class:`lobes.errors.DataFolderError` line naming the file and the fix.

Authors
 * noise-robust-sb contributors 2025
"""

import math
import os
from typing import NamedTuple

import numpy as np
import torch

from lobes.errors import DataFolderError

#: Video rate of NTCD-TIMIT (and of the mini corpus), frames per second.
CORPUS_FPS = 30.0
#: Largest gap allowed between the video's and the audio's duration:
#: this many seconds or :data:`DURATION_TOLERANCE_SHARE` of the audio,
#: whichever is larger.
DURATION_TOLERANCE_S = 0.5
#: See :data:`DURATION_TOLERANCE_S`.
DURATION_TOLERANCE_SHARE = 0.1
#: Layouts :func:`to_frames` knows.
LAYOUTS = ("auto", "frames", "columns")
#: File types :func:`read_lips_array` reads.
EXTENSIONS = (".npy", ".mat")
#: Lips whose mean absolute change between consecutive frames (grey levels
#: in [0, 1]) is below this do not move: a frozen or lost video. The mini
#: corpus's lips move 0.008 to 0.026 (1st percentile 0.009); one grey level
#: is 0.004.
MIN_LIP_MOTION = 0.001


class Lips(NamedTuple):
    """Lip frames ready for a model.

    Attributes
    ----------
    frames : torch.Tensor
        ``[T, H, W]`` float32 in [0, 1].
    fps : float
        Their rate (frames per second).

    Example
    -------
    >>> Lips(torch.zeros(3, 4, 4), 30.0).fps
    30.0
    """

    frames: torch.Tensor
    fps: float


def read_lips_array(path):
    """The array of a ``.npy`` file, or the one 2-D/3-D array of a ``.mat``.

    Arguments
    ---------
    path : str
        ``.npy`` (``numpy.save``) or ``.mat`` (MATLAB up to v7, read with
        :func:`scipy.io.loadmat`; v7.3 files are HDF5 and not read).

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.zeros((4489, 3), np.float32))
    >>> read_lips_array(path).shape
    (4489, 3)
    >>> read_lips_array(path[:-4] + ".avi")
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: ...a.avi: lips must be a .npy or .mat ...
    """
    path = str(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise DataFolderError(
            f"{path}: lips must be a .npy or .mat file (T x H x W frames or "
            "(H*W) x T columns); convert the video's mouth ROIs to one"
        )
    if not os.path.isfile(path):
        raise DataFolderError(f"{path}: no such lips file; check the path")
    if extension == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            reason = " ".join(str(err).split())[:120]
            raise DataFolderError(
                f"{path}: not a readable .npy ({reason}); save the lips with "
                "numpy.save"
            ) from None
    return _read_mat(path)


def _read_mat(path):
    import scipy.io

    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:
        raise DataFolderError(
            f"{path}: a MATLAB v7.3 (HDF5) file; save it with "
            "save(..., '-v7') or as .npy"
        ) from None
    except Exception as err:  # scipy raises many types on bad files
        reason = " ".join(str(err).split())[:120]
        raise DataFolderError(
            f"{path}: not a readable .mat ({reason}); save the lips as .npy"
        ) from None
    arrays = {
        name: value for name, value in content.items()
        if not name.startswith("__") and isinstance(value, np.ndarray)
        and value.ndim in (2, 3) and value.size > 1
    }  # fmt: skip
    if len(arrays) != 1:
        names = ", ".join(sorted(arrays)) or "none"
        raise DataFolderError(
            f"{path}: needs exactly one 2-D or 3-D array, has {names}; save "
            "only the lips in it (or as .npy)"
        )
    return next(iter(arrays.values()))


def _square_side(count):
    side = math.isqrt(int(count))
    return side if side > 0 and side * side == int(count) else None


def detect_layout(shape):
    """``"frames"`` or ``"columns"`` for an array shape, by the rule above.

    Returns ``None`` for a shape the rule does not recognise.

    Example
    -------
    >>> detect_layout((120, 67, 67)), detect_layout((4489, 120))
    ('frames', 'columns')
    >>> detect_layout((120, 4489)) is None  # T x (H*W): transpose it
    True
    """
    if len(shape) == 3:
        return "frames"
    if len(shape) == 2 and shape[0] > shape[1] and _square_side(shape[0]):
        return "columns"
    return None


def _to_unit_range(array, name):
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise DataFolderError(
            f"{name}: lips of dtype {array.dtype}; save uint8 in [0, 255] or "
            "float in [0, 1]"
        )
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DataFolderError(
                f"{name}: integer lips in [{low}, {high}], expected [0, 255]; "
                "save uint8 grey levels"
            )
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataFolderError(
            f"{name}: lips hold NaN or inf; re-extract the mouth ROIs"
        )
    low, high = float(array.min()), float(array.max())
    if low < -1e-3 or high > 1.0 + 1e-3:
        raise DataFolderError(
            f"{name}: float lips in [{low:.3g}, {high:.3g}], expected [0, 1]; "
            "divide grey levels by 255 (or save them as uint8)"
        )
    return np.clip(array, 0.0, 1.0)


def to_frames(array, layout="auto", frame_shape=None, name="lips"):
    """Frames ``[T, H, W]`` float32 in [0, 1] of a lips array.

    Arguments
    ---------
    array : numpy.ndarray
        ``T x H x W`` or ``(H*W) x T`` (see the module's rule).
    layout : str
        ``"auto"`` (the rule), ``"frames"`` or ``"columns"``.
    frame_shape : tuple of int, optional
        ``(H, W)`` of a ``columns`` array (default: square).
    name : str
        The file, for the messages.

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> frames = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    >>> columns = np.stack([f.flatten(order="F") for f in frames], axis=1)
    >>> columns.shape
    (6, 2)
    >>> out = to_frames(columns, "columns", frame_shape=(2, 3))
    >>> np.allclose(out * 255, frames)
    True
    >>> to_frames(np.zeros((5, 4489)))
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: lips: 2-D lips of shape (5, 4489) ...
    """
    array = np.asarray(array)
    if layout not in LAYOUTS:
        raise DataFolderError(
            f"{name}: unknown lips layout {layout!r}; choose from "
            f"{', '.join(LAYOUTS)}"
        )
    if array.size == 0:
        raise DataFolderError(f"{name}: empty lips; re-extract the mouth ROIs")
    found = detect_layout(array.shape) if layout == "auto" else layout
    if found == "frames" and array.ndim != 3:
        raise DataFolderError(
            f"{name}: lips of shape {array.shape} are not T x H x W; save "
            "one 2-D frame per video frame"
        )
    if found is None or (found == "columns" and array.ndim != 2):
        raise DataFolderError(
            f"{name}: {array.ndim}-D lips of shape {array.shape} are neither "
            "T x H x W nor (H*W) x T with a square H*W larger than T; save "
            "T x H x W (or transpose a T x (H*W) array, or pass "
            "layout='columns' with frame_shape=(H, W))"
        )
    values = _to_unit_range(array, name)
    if found == "frames":
        return values
    pixels, count = values.shape
    if frame_shape is None:
        side = _square_side(pixels)
        if side is None:
            raise DataFolderError(
                f"{name}: {pixels} pixels per column is not a square; pass "
                f"frame_shape=(H, W) with H * W = {pixels}"
            )
        frame_shape = (side, side)
    height, width = (int(n) for n in frame_shape)
    if height * width != pixels:
        raise DataFolderError(
            f"{name}: columns of {pixels} pixels do not hold {height}x{width} "
            "frames; pass the frame_shape of the recording"
        )
    # column k, column-major: frame[h, w] = a[h + H * w, k]
    frames = values.reshape(height, width, count, order="F")
    return np.ascontiguousarray(frames.transpose(2, 0, 1))


def resize_frames(frames, size):
    """Frames ``[T, H, W]`` resized to ``size = (H', W')``.

    Area averaging when no side grows, bilinear interpolation otherwise.

    Example
    -------
    >>> frames = torch.rand(3, 67, 67)
    >>> resize_frames(frames, (32, 32)).shape
    torch.Size([3, 32, 32])
    >>> flat = torch.full((1, 8, 8), 0.5)
    >>> bool(torch.allclose(resize_frames(flat, (3, 5)), torch.tensor(0.5)))
    True
    """
    frames = torch.as_tensor(frames, dtype=torch.float32)
    size = tuple(int(n) for n in size)
    if tuple(frames.shape[1:]) == size:
        return frames
    shrink = size[0] <= frames.shape[1] and size[1] <= frames.shape[2]
    if shrink:
        out = torch.nn.functional.interpolate(
            frames[:, None], size=size, mode="area"
        )
    else:
        out = torch.nn.functional.interpolate(
            frames[:, None], size=size, mode="bilinear", align_corners=False
        )
    return out[:, 0].clamp(0.0, 1.0)


def frame_index(num_frames, rate, fps, count):
    """Video frame covering the centre of each of ``num_frames`` frames at
    ``rate`` (frame ``n`` centred at ``n / rate`` s), clamped to ``count``.

    The rule of :func:`lobes.models.av_features.lips_per_frame`.

    Example
    -------
    >>> frame_index(6, 62.5, 30.0, 100).tolist()
    [0, 0, 0, 1, 1, 2]
    """
    times = torch.arange(int(num_frames), dtype=torch.float64) / float(rate)
    index = torch.floor(times * float(fps) + 1e-9).long()
    return index.clamp(max=max(int(count) - 1, 0))


def to_frame_rate(frames, fps, rate, num_frames=None):
    """Frames at ``fps`` resampled to ``rate`` (e.g. the STFT's frames).

    Arguments
    ---------
    frames : torch.Tensor
        ``[T, H, W]``.
    fps : float
        Their rate.
    rate : float
        The model's frame rate (``sample_rate / hop_length``).
    num_frames : int, optional
        Frames wanted (e.g. the audio's STFT frames); default: those whose
        centre lies in the video, ``ceil(T / fps * rate)``. Frames past the
        video's end repeat its last frame (:func:`check_duration` first).

    Returns
    -------
    torch.Tensor
        ``[num_frames, H, W]``.

    Example
    -------
    >>> frames = torch.arange(3.0)[:, None, None].expand(3, 1, 1)
    >>> to_frame_rate(frames, 30.0, 62.5).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    """
    frames = torch.as_tensor(frames)
    count = frames.shape[0]
    if num_frames is None:
        num_frames = max(1, math.ceil(count / float(fps) * float(rate) - 1e-9))
    return frames[frame_index(num_frames, rate, fps, count)]


def duration_tolerance(audio_seconds):
    """Largest allowed gap in seconds:
    ``max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_SHARE * audio_seconds)``.

    Example
    -------
    >>> duration_tolerance(2.0), duration_tolerance(10.0)
    (0.5, 1.0)
    """
    return max(DURATION_TOLERANCE_S,
               DURATION_TOLERANCE_SHARE * float(audio_seconds))  # fmt: skip


def check_duration(name, num_frames, fps, audio_seconds):
    """Refuse lips whose duration is far from the audio's.

    ``num_frames / fps`` must be within :func:`duration_tolerance` of
    ``audio_seconds``.

    Example
    -------
    >>> check_duration("a.npy", 144, 30.0, 4.8)
    >>> check_duration("a.npy", 10, 30.0, 4.8)
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: a.npy: 10 lip frames at 30 fps last 0.33 s ...
    """
    video = int(num_frames) / float(fps)
    allowed = duration_tolerance(audio_seconds)
    if abs(video - float(audio_seconds)) > allowed:
        raise DataFolderError(
            f"{name}: {int(num_frames)} lip frames at {float(fps):g} fps last "
            f"{video:.2f} s but the audio lasts {float(audio_seconds):.2f} s "
            f"(more than {allowed:.2f} s apart); pass the lips of this "
            "recording, and its video rate (--fps)"
        )


def load_lips(path, size=None, fps=CORPUS_FPS, layout="auto",
              frame_shape=None, audio_seconds=None, rate=None,
              num_frames=None):  # fmt: skip
    """Read a lips file and make it fit a model (see the module's notes).

    Arguments
    ---------
    path : str
        ``.npy`` or ``.mat``: ``T x H x W`` frames or ``(H*W) x T``
        column-major columns (the layout rule of :func:`detect_layout`).
    size : tuple of int, optional
        The model's ``(H, W)``; frames are resized to it.
    fps : float
        The lips' video rate (NTCD-TIMIT: 30).
    layout : str
        ``"auto"``, ``"frames"`` or ``"columns"``.
    frame_shape : tuple of int, optional
        ``(H, W)`` of rectangular ``columns`` frames.
    audio_seconds : float, optional
        Duration of the matching audio; checked by :func:`check_duration`.
    rate : float, optional
        The model's frame rate (``sample_rate / hop_length``); the frames
        are converted to it (:func:`to_frame_rate`).
    num_frames : int, optional
        Frames wanted at ``rate`` (the audio's STFT frames).

    Returns
    -------
    Lips
        Frames ``[T', H', W']`` float32 in [0, 1] and their rate.

    Example
    -------
    >>> import tempfile
    >>> upright = np.random.default_rng(0).random((144, 67, 67))
    >>> columns = upright.reshape(144, -1, order="F").T  # (4489, 144)
    >>> path = os.path.join(tempfile.mkdtemp(), "lips.npy")
    >>> np.save(path, columns.astype(np.float32))
    >>> lips = load_lips(path)
    >>> lips.frames.shape, lips.fps
    (torch.Size([144, 67, 67]), 30.0)
    >>> bool(np.allclose(lips.frames.numpy(), upright, atol=1e-6))
    True
    >>> lips = load_lips(path, size=(32, 32), audio_seconds=4.8,
    ...                  rate=62.5, num_frames=301)
    >>> lips.frames.shape, lips.fps
    (torch.Size([301, 32, 32]), 62.5)
    """
    name = str(path)
    frames = to_frames(read_lips_array(name), layout, frame_shape, name)
    frames = torch.from_numpy(frames)
    if audio_seconds is not None:
        check_duration(name, frames.shape[0], fps, audio_seconds)
    if size is not None:
        frames = resize_frames(frames, size)
    fps = float(fps)
    if rate is not None:
        frames = to_frame_rate(frames, fps, rate, num_frames)
        fps = float(rate)
    return Lips(frames.contiguous(), fps)


def model_roi_size(vae):
    """The ``(H, W)`` of a VAE's lips: square ``sqrt(visual_dim)``.

    ``None`` for a model without lips or a non-square pixel count.

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE, AudioVAE
    >>> model_roi_size(AVCVAE(9, 2, 4, visual_dim=1024))
    (32, 32)
    >>> model_roi_size(AudioVAE(9)) is None
    True
    """
    pixels = model_pixels(vae)
    side = _square_side(pixels) if pixels else None
    return (side, side) if side else None


def model_pixels(vae):
    """Pixels ``H * W`` a VAE's visual trunk takes (``None``: no lips).

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE
    >>> model_pixels(AVCVAE(9, 2, 4, visual_dim=20))
    20
    """
    if not getattr(vae, "uses_video", False):
        return None
    trunk = getattr(vae, "trunk", None)
    if trunk is None:
        return None
    return int(trunk.layers[0].in_features)


def check_frame_size(name, frames, vae):
    """Refuse frames ``[T, H, W]`` whose pixel count the model cannot take.

    The test-time twin of the training check (``roi_pixels``).

    Example
    -------
    >>> from lobes.models.av_vae import AVCVAE
    >>> vae = AVCVAE(9, 2, 4, visual_dim=1024)
    >>> check_frame_size("a.npy", torch.zeros(3, 32, 32), vae)
    >>> check_frame_size("a.npy", torch.zeros(3, 67, 67), vae)
    Traceback (most recent call last):
    ...
    lobes.errors.DataFolderError: a.npy: lips of 67x67 = 4489 pixels ...
    """
    pixels = model_pixels(vae)
    height, width = int(frames.shape[-2]), int(frames.shape[-1])
    if pixels is not None and height * width != pixels:
        side = _square_side(pixels)
        target = f"{side}x{side}" if side else f"{pixels} pixels"
        raise DataFolderError(
            f"{name}: lips of {height}x{width} = {height * width} pixels but "
            f"the model's visual trunk takes {pixels}; resize the frames to "
            f"{target} (lobes.data.lip_input.load_lips(path, size=...), as "
            "separate.py does)"
        )


def lip_motion(frames):
    """Mean absolute change between consecutive frames, in [0, 1] units.

    Frames repeated by a frame-rate conversion count as no change, so the
    value is lower at the STFT's rate than at the video's; a still or
    frozen video gives 0.

    Arguments
    ---------
    frames : torch.Tensor or numpy.ndarray
        ``[T, H, W]``, uint8 in [0, 255] or float in [0, 1].

    Returns
    -------
    float
        0 for fewer than two frames.

    Example
    -------
    >>> still = torch.full((5, 4, 4), 0.5)
    >>> lip_motion(still)
    0.0
    >>> moving = torch.zeros(3, 2, 2, dtype=torch.uint8)
    >>> moving[1] = 51
    >>> round(lip_motion(moving), 3)
    0.2
    """
    frames = torch.as_tensor(frames)
    if frames.shape[0] < 2:
        return 0.0
    if not frames.is_floating_point():
        frames = frames.float() / 255.0
    return float((frames[1:] - frames[:-1]).abs().mean())
