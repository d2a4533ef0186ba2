"""Synthetic lip regions of interest driven by timed phonemes.

The mini audio-visual corpus needs a video stream that moves with the
speech. :func:`synthesize_with_phonemes <lobes.data.tts.
synthesize_with_phonemes>` gives eSpeak NG's phonemes with their times;
this module maps each phoneme to a *viseme* (a mouth shape: opening, width
and rounding, each in [0, 1]; diphthongs glide between two), builds
articulatory trajectories on a 1 ms grid, smooths them with a Gaussian
kernel (coarticulation: the mouth anticipates and lags its targets), and
renders one grey-level lip region of interest (ROI) per video frame.

Each speaker has an appearance (:class:`LipAppearance`): skin and lip grey
levels, lip size and thickness, how wide it opens, a small smooth head
jitter, sensor noise and an optional blur. Rendering is deterministic:
the same phonemes, appearance and seed give the same bytes.

Output: ``T x H x W`` uint8 arrays, ``T = ceil(duration * fps)`` (frame
``k`` covers ``[k / fps, (k + 1) / fps)``), the format the AV recipes read
(:mod:`lobes.data.av_corpus`).

Authors
 * noise-robust-sb contributors 2025
"""

import dataclasses
import hashlib
import math

import numpy as np

#: Viseme targets: (opening, width, rounding), each in [0, 1].
VISEMES = {
    "rest": (0.04, 0.45, 0.25),
    "bilabial": (0.0, 0.45, 0.2),
    "labiodental": (0.1, 0.5, 0.1),
    "dental": (0.25, 0.55, 0.1),
    "alveolar": (0.2, 0.55, 0.15),
    "postalveolar": (0.2, 0.35, 0.8),
    "approximant": (0.2, 0.25, 0.95),
    "palatal": (0.25, 0.8, 0.0),
    "velar": (0.3, 0.5, 0.2),
    "open": (1.0, 0.6, 0.1),
    "mid": (0.7, 0.55, 0.2),
    "spread": (0.45, 0.9, 0.0),
    "rounded": (0.5, 0.25, 1.0),
}

#: eSpeak NG English phoneme mnemonics (stress and length marks removed)
#: and their visemes; a diphthong glides from the first to the second.
PHONEME_VISEMES = {
    "p": "bilabial", "b": "bilabial", "m": "bilabial",
    "f": "labiodental", "v": "labiodental",
    "T": "dental", "D": "dental",
    "t": "alveolar", "d": "alveolar", "n": "alveolar", "s": "alveolar",
    "z": "alveolar", "l": "alveolar", "t#": "alveolar", "n-": "alveolar",
    "S": "postalveolar", "Z": "postalveolar", "tS": "postalveolar",
    "dZ": "postalveolar",
    "w": "approximant", "r": "approximant", "r-": "approximant",
    "k": "velar", "g": "velar", "N": "velar", "h": "velar", "j": "palatal",
    "x": "velar", "?": "velar",
    "a": "open", "a#": "open", "aa": "open", "A": "open", "A@": "open",
    "E": "mid", "e": "mid", "@": "mid", "@L": "mid", "@2": "mid",
    "@5": "mid", "3": "mid", "V": "mid", "e@": "mid", "E2": "mid",
    "i": "spread", "I": "spread", "I2": "spread", "I#": "spread",
    "0": "rounded", "O": "rounded", "O@": "rounded", "o@": "rounded",
    "u": "rounded", "U": "rounded", "U@": "rounded",
    "aI": ("open", "spread"), "aU": ("open", "rounded"),
    "eI": ("mid", "spread"), "oU": ("mid", "rounded"),
    "OI": ("rounded", "spread"), "i@": ("spread", "mid"),
    "aI@": ("open", "mid"), "aU@": ("open", "mid"), "I@": ("spread", "mid"),
}  # fmt: skip

_VOWEL_LETTERS = set("aeiouAEIOUV0@3")


def phoneme_visemes(phoneme):
    """The viseme(s) of an eSpeak phoneme mnemonic.

    Stress marks (``'``, ``,``) and the length mark (``:``) are ignored;
    pauses (``_``...) are ``rest``; an unknown vowel-like name is ``mid``,
    any other unknown name ``alveolar``.

    Arguments
    ---------
    phoneme : str
        E.g. ``"'aI"``, ``"b"``, ``"_:"``.

    Returns
    -------
    tuple of str
        One viseme, or two for a diphthong.

    Example
    -------
    >>> phoneme_visemes("'aI"), phoneme_visemes("b"), phoneme_visemes("_:")
    (('open', 'spread'), ('bilabial',), ('rest',))
    >>> phoneme_visemes("u:")
    ('rounded',)
    """
    name = phoneme.replace("'", "").replace(",", "").replace(":", "")
    name = name.replace("%", "").replace("=", "")
    if not name or name.startswith("_"):
        return ("rest",)
    viseme = PHONEME_VISEMES.get(name)
    if viseme is None and len(name) > 1:
        viseme = PHONEME_VISEMES.get(name.rstrip("0123456789#"))
    if viseme is None:
        viseme = "mid" if name[0] in _VOWEL_LETTERS else "alveolar"
    return viseme if isinstance(viseme, tuple) else (viseme,)


@dataclasses.dataclass(frozen=True)
class LipAppearance:
    """How one speaker's mouth looks on camera (grey levels in [0, 1]).

    Arguments
    ---------
    skin : float
        Skin grey level.
    lips : float
        Lip grey level (usually darker than the skin).
    width : float
        Mouth half-width at rest, as a fraction of the ROI half-width.
    thickness : float
        Lip thickness, as a fraction of the ROI half-height.
    open_gain : float
        How wide this speaker opens the mouth (multiplies the opening).
    jitter : float
        Amplitude of the smooth head motion, as a fraction of the ROI.
    noise : float
        Standard deviation of the sensor noise.
    blur : float
        Gaussian blur in pixels (0: none).

    Example
    -------
    >>> look = LipAppearance()
    >>> 0 < look.lips < look.skin < 1
    True
    """

    skin: float = 0.62
    lips: float = 0.38
    width: float = 0.55
    thickness: float = 0.12
    open_gain: float = 1.0
    jitter: float = 0.02
    noise: float = 0.01
    blur: float = 0.0


def appearance_for(name, blur_probability=0.3):
    """A deterministic appearance drawn from a speaker's name.

    Arguments
    ---------
    name : str
        Speaker name; the same name always gives the same appearance.
    blur_probability : float
        Share of speakers recorded slightly out of focus.

    Returns
    -------
    LipAppearance

    Example
    -------
    >>> appearance_for("spk001") == appearance_for("spk001")
    True
    >>> appearance_for("spk001") != appearance_for("spk002")
    True
    """
    digest = hashlib.sha256(f"lips:{name}".encode()).digest()
    rng = np.random.default_rng(list(digest[:16]))
    skin = float(rng.uniform(0.35, 0.85))
    lips = skin * float(rng.uniform(0.6, 0.8))
    focused = rng.random() >= blur_probability
    blur = 0.0 if focused else float(rng.uniform(0.5, 1.2))
    return LipAppearance(
        skin=round(skin, 4),
        lips=round(lips, 4),
        width=round(float(rng.uniform(0.45, 0.65)), 4),
        thickness=round(float(rng.uniform(0.08, 0.16)), 4),
        open_gain=round(float(rng.uniform(0.8, 1.2)), 4),
        jitter=round(float(rng.uniform(0.005, 0.03)), 4),
        noise=round(float(rng.uniform(0.003, 0.02)), 4),
        blur=round(blur, 4),
    )


def num_video_frames(duration, fps):
    """Frames covering ``duration`` seconds: ``ceil(duration * fps)``.

    Example
    -------
    >>> num_video_frames(1.0, 25), num_video_frames(1.001, 25)
    (25, 26)
    """
    return max(1, math.ceil(round(duration * fps, 6)))


def articulation(phonemes, duration, fps=25, coarticulation=0.025):
    """Mouth opening, width and rounding per video frame.

    Arguments
    ---------
    phonemes : list of tuple
        ``(mnemonic, start_seconds, end_seconds)``, as
        :func:`lobes.data.tts.synthesize_with_phonemes` returns them. Time
        not covered by any phoneme is ``rest``.
    duration : float
        Length of the audio in seconds.
    fps : float
        Video frame rate.
    coarticulation : float
        Standard deviation (seconds) of the Gaussian smoothing of the
        targets.

    Returns
    -------
    dict
        ``opening``, ``width``, ``rounding``: float arrays ``[T]``, each the
        mean of the smoothed trajectory over the frame's interval.

    Example
    -------
    >>> track = articulation([("m", 0.0, 0.2), ("a:", 0.2, 0.5)], 0.6)
    >>> track["opening"].shape
    (15,)
    >>> bool(track["opening"][2] < 0.1 < 0.6 < track["opening"][8])
    True
    """
    step = 0.001
    num_steps = max(1, int(math.ceil(duration / step)))
    targets = np.tile(np.array(VISEMES["rest"]), (num_steps, 1))
    for name, start, end in phonemes:
        first = int(round(start / step))
        last = min(num_steps, int(round(end / step)))
        if last <= first:
            continue
        shapes = phoneme_visemes(name)
        if len(shapes) == 1:
            targets[first:last] = VISEMES[shapes[0]]
        else:
            ramp = np.linspace(0.0, 1.0, last - first)[:, None]
            one = np.array(VISEMES[shapes[0]])
            two = np.array(VISEMES[shapes[1]])
            targets[first:last] = (1 - ramp) * one + ramp * two
    if coarticulation > 0:
        radius = int(math.ceil(3 * coarticulation / step))
        offsets = np.arange(-radius, radius + 1) * step
        kernel = np.exp(-0.5 * (offsets / coarticulation) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(targets, ((radius, radius), (0, 0)), mode="edge")
        targets = np.stack(
            [np.convolve(padded[:, i], kernel, mode="valid") for i in range(3)],
            axis=1,
        )
    frames = num_video_frames(duration, fps)
    bounds = np.round(np.arange(frames + 1) / fps / step).astype(int)
    bounds = np.clip(bounds, 0, num_steps)
    sums = np.concatenate([np.zeros((1, 3)), np.cumsum(targets, axis=0)])
    counts = np.maximum(bounds[1:] - bounds[:-1], 1)[:, None]
    means = (sums[bounds[1:]] - sums[bounds[:-1]]) / counts
    # frames past the audio's end hold the last value
    empty = bounds[1:] <= bounds[:-1]
    means[empty] = targets[-1]
    return {
        "opening": means[:, 0],
        "width": means[:, 1],
        "rounding": means[:, 2],
    }


def _smooth_walk(rng, frames, amplitude):
    """A smooth random walk ``[frames, 2]`` bounded by ``amplitude``."""
    steps = rng.standard_normal((frames + 8, 2))
    kernel = np.hanning(9)
    kernel /= kernel.sum()
    paths = np.cumsum(steps, axis=0)
    walk = np.stack(
        [np.convolve(paths[:, i], kernel, "valid") for i in range(2)], axis=1
    )[:frames]
    walk -= walk.mean(axis=0)
    peak = np.max(np.abs(walk)) + 1e-9
    return amplitude * walk / peak


def _blur(images, sigma):
    """Separable Gaussian blur of ``[T, H, W]`` images along H and W."""
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad, mode="edge")
        out = np.zeros_like(images)
        for index, weight in enumerate(kernel):
            window = [slice(None)] * 3
            window[axis] = slice(index, index + images.shape[axis])
            out += weight * padded[tuple(window)]
        images = out
    return images


def render_frames(track, appearance, size=(32, 32), seed=0):
    """Draw the lip ROIs of an articulatory track.

    The mouth is drawn as an outer lip ellipse over the skin, a dark
    cavity ellipse inside it (its height follows the opening), a band of
    teeth at the top of the cavity and a shadow under the lower lip, with
    soft (anti-aliased) edges; the whole mouth moves with a smooth head
    jitter. Vectorised over frames.

    Arguments
    ---------
    track : dict
        ``opening``, ``width``, ``rounding`` arrays ``[T]``
        (:func:`articulation`).
    appearance : LipAppearance
        The speaker's look.
    size : tuple of int
        ``(H, W)`` of the ROI.
    seed : int or sequence of int
        Seed of the jitter and sensor noise.

    Returns
    -------
    numpy.ndarray
        ``[T, H, W]`` uint8.

    Example
    -------
    >>> track = {"opening": np.array([0.0, 1.0]),
    ...          "width": np.array([0.5, 0.5]),
    ...          "rounding": np.array([0.2, 0.2])}
    >>> frames = render_frames(track, LipAppearance(), size=(24, 32))
    >>> frames.shape, frames.dtype
    ((2, 24, 32), dtype('uint8'))
    >>> bool((frames[1] < 40).sum() > (frames[0] < 40).sum())  # open: dark
    True
    """
    height, width = size
    look = appearance
    opening = np.clip(np.asarray(track["opening"], float), 0, 1.5)
    spread = np.clip(np.asarray(track["width"], float), 0, 1)
    rounding = np.clip(np.asarray(track["rounding"], float), 0, 1)
    frames = opening.shape[0]
    rng = np.random.default_rng(seed)
    shift = _smooth_walk(rng, frames, look.jitter * 2)
    y = np.linspace(-1, 1, height)[None, :, None]
    x = np.linspace(-1, 1, width)[None, None, :]
    dy = y - 0.1 - shift[:, 1][:, None, None]
    dx = x - shift[:, 0][:, None, None]
    opening = (opening * look.open_gain)[:, None, None]
    spread = spread[:, None, None]
    rounding = rounding[:, None, None]
    outer_a = look.width * (0.75 + 0.45 * spread - 0.3 * rounding)
    outer_b = look.thickness * 2 + 0.3 * opening + 0.04 * rounding
    inner_a = outer_a * (0.82 - 0.3 * rounding)
    inner_b = 0.27 * opening + 1e-3
    edge = 2.0 / min(height, width)

    def inside(a, b, cy=0.0):
        radius = np.sqrt((dx / a) ** 2 + ((dy - cy) / b) ** 2)
        return 1.0 / (1.0 + np.exp((radius - 1.0) * np.minimum(a, b) / edge))

    image = look.skin * (1.0 - 0.15 * np.clip(y, 0, 1) ** 2)
    image = np.broadcast_to(image, (frames, height, width))
    lips = inside(outer_a, outer_b)
    shadow = inside(outer_a * 0.9, outer_b * 0.5, cy=outer_b * 1.1)
    image = image * (1 - 0.12 * shadow)
    image = image * (1 - lips) + look.lips * lips
    cavity = inside(inner_a, inner_b)
    # upper teeth: the top part of the cavity, visible once it opens
    teeth = cavity * np.clip((-0.4 * inner_b - dy) / 0.08, 0, 1)
    teeth = teeth * np.clip((opening - 0.15) / 0.3, 0, 1)
    image = image * (1 - cavity) + 0.06 * cavity
    image = image + teeth * 0.75
    if look.blur > 0:
        image = _blur(image, look.blur)
    image = image + look.noise * rng.standard_normal(image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def render_lips(
    phonemes, duration, appearance, fps=25, size=(32, 32), seed=0,
    coarticulation=0.025,
):  # fmt: skip
    """Lip ROIs for timed phonemes: :func:`articulation` then drawing.

    Arguments
    ---------
    phonemes : list of tuple
        ``(mnemonic, start_seconds, end_seconds)``.
    duration : float
        Audio length in seconds.
    appearance : LipAppearance
        The speaker's look (:func:`appearance_for`).
    fps : float
        Video frame rate (25 or 30 for GRID- and TCD-TIMIT-like video).
    size : tuple of int
        ``(H, W)``.
    seed : int or sequence of int
        Seed of the head jitter and sensor noise.
    coarticulation : float
        Smoothing of the articulatory targets, seconds.

    Returns
    -------
    numpy.ndarray
        ``[ceil(duration * fps), H, W]`` uint8.

    Example
    -------
    >>> phones = [("b", 0.0, 0.1), ("'aI", 0.1, 0.4)]
    >>> lips = render_lips(phones, 0.5, appearance_for("a"), seed=1)
    >>> lips.shape
    (13, 32, 32)
    >>> np.array_equal(lips, render_lips(phones, 0.5, appearance_for("a"),
    ...                                  seed=1))
    True
    """
    track = articulation(phonemes, duration, fps, coarticulation)
    return render_frames(track, appearance, size, seed)


def mouth_opening_measure(frames, share=0.5):
    """Pixels darker than ``share`` times the frame's median, per frame.

    The median is the skin; only the mouth cavity is that much darker
    (lips are at least 60 % of the skin's level). A crude measurement
    *from the images*, used to check that the video follows the speech.

    Example
    -------
    >>> frames = np.full((2, 4, 4), 200, np.uint8); frames[1, 1:3, 1:3] = 10
    >>> mouth_opening_measure(frames).tolist()
    [0, 4]
    """
    frames = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
    median = np.median(frames, axis=1, keepdims=True)
    return (frames < share * median).sum(1)
