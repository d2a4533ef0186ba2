"""The synthetic speakers of the mini corpora: who speaks, not how.

A :class:`Speaker` is an English accent, an eSpeak NG voice variant (which
carries the formant settings), its own formant-frequency scaling (a
vocal-tract length and per-formant shifts), pitch, pitch range and speaking
rate. :func:`make_speaker_pool` draws a deterministic pool of them, and
:func:`split_speakers` disjoint pools (train, valid, test, babble) that
share no voice variant. :mod:`lobes.data.tts` turns a speaker and a text
into a waveform.
"""

import dataclasses
import hashlib

import numpy as np

#: English accents (eSpeak language files) the speakers are drawn from.
ACCENTS = (
    "en",
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)

#: Voice variants that sound like plain (if robotic) speech; the whispered,
#: croaking and effect variants are left out.
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "adam", "Alex", "Andy", "Annie", "anika", "aunty", "belinda", "benjamin",
    "boris", "caleb", "david", "Denis", "Diogo", "edward", "edward2", "Gene",
    "Gene2", "gustave", "Henrique", "Hugo", "ian", "iven2", "iven3", "john",
    "Lee", "linda", "Marco", "Mario", "marcelo", "max", "Michael", "michel",
    "Mike", "mike2", "miguel", "Nguyen", "norbert", "pablo", "pedro", "quincy",
    "Reed", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3",
    "travis", "victor", "zac",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice variant with its own settings.

    Arguments
    ---------
    name : str
        Unique name; also names the speaker's eSpeak variant file.
    accent : str
        An eSpeak English language, e.g. ``"en-us"``.
    variant : str
        The eSpeak voice variant it is built on, e.g. ``"f3"``.
    pitch : int
        Base pitch, 0..100 (eSpeak's ``espeakPITCH``).
    pitch_range : int
        Pitch range, 0..100 (``espeakRANGE``).
    rate : int
        Speaking rate in words per minute (``espeakRATE``).
    formant_scale : tuple of float
        Multipliers of the variant's formant frequencies 0..8.

    Example
    -------
    >>> spk = Speaker("demo", "en-us", "f3", 50, 50, 160, (1.0,) * 9)
    >>> spk.voice_name.startswith("en-us+v")
    True
    """

    name: str
    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int
    formant_scale: tuple = (1.0,) * 9

    @property
    def variant_file(self):
        """Short name of this speaker's eSpeak variant file."""
        digest = hashlib.sha1(repr(self).encode()).hexdigest()[:10]
        return f"v{digest}"

    @property
    def voice_name(self):
        """The eSpeak voice name selecting this speaker's variant file."""
        return f"{self.accent}+{self.variant_file}"


def make_speaker_pool(num_speakers, variants=VARIANTS, seed=0, prefix="spk"):
    """Draw a deterministic pool of distinct speakers.

    Speakers cycle through ``variants`` (so a pool uses as many different
    variants as possible) and draw an accent, pitch, range, rate and formant
    scaling from a generator seeded with ``seed``.

    Arguments
    ---------
    num_speakers : int
        How many speakers.
    variants : sequence of str
        The voice variants to build on.
    seed : int
        Seed of the draw.
    prefix : str
        Prefix of the speakers' names (``<prefix><index>``).

    Returns
    -------
    list of Speaker

    Example
    -------
    >>> pool = make_speaker_pool(3, seed=1)
    >>> [s.name for s in pool]
    ['spk000', 'spk001', 'spk002']
    >>> pool == make_speaker_pool(3, seed=1)
    True
    """
    rng = np.random.default_rng([seed, 7321])
    order = list(variants)
    rng.shuffle(order)
    speakers = []
    for index in range(num_speakers):
        tract = float(rng.uniform(0.9, 1.1))
        scale = tuple(
            round(tract * float(rng.uniform(0.96, 1.04)), 3) for _ in range(9)
        )
        speakers.append(
            Speaker(
                name=f"{prefix}{index:03d}",
                accent=str(rng.choice(ACCENTS)),
                variant=order[index % len(order)],
                pitch=int(rng.integers(25, 76)),
                pitch_range=int(rng.integers(25, 86)),
                rate=int(rng.integers(135, 196)),
                formant_scale=scale,
            )
        )
    return speakers


def split_speakers(sizes, seed=0):
    """Build disjoint speaker pools, one per named group.

    The voice variants themselves are partitioned between the groups (in
    proportion to their sizes, at least one each), so a speaker of one group
    never shares a variant with a speaker of another.

    Arguments
    ---------
    sizes : dict
        Group name -> number of speakers, e.g.
        ``{"train": 40, "valid": 8, "test": 8, "babble_train": 8}``.
    seed : int
        Seed of the draw.

    Returns
    -------
    dict
        Group name -> list of :class:`Speaker` (names prefixed by the group).

    Example
    -------
    >>> pools = split_speakers({"train": 4, "test": 2})
    >>> [len(pools["train"]), len(pools["test"])]
    [4, 2]
    >>> set(s.variant for s in pools["train"]).isdisjoint(
    ...     s.variant for s in pools["test"])
    True
    """
    rng = np.random.default_rng([seed, 991])
    variants = list(VARIANTS)
    rng.shuffle(variants)
    total = sum(sizes.values())
    if len(sizes) > len(variants):
        raise ValueError("more speaker groups than voice variants")
    shares = {
        name: max(1, int(len(variants) * size / total))
        for name, size in sizes.items()
    }
    while sum(shares.values()) > len(variants):
        largest = max(shares, key=shares.get)
        shares[largest] -= 1
    pools = {}
    start = 0
    for group_index, (name, size) in enumerate(sizes.items()):
        group_variants = variants[start : start + shares[name]]
        start += shares[name]
        pools[name] = make_speaker_pool(
            size,
            variants=group_variants,
            seed=seed * 1000 + group_index,
            prefix=f"{name}_",
        )
    return pools
