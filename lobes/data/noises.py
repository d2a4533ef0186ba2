"""Synthetic background noises for the mini corpora.

Stationary noises (white, pink and brown noise, mains hum with harmonics)
and non-stationary ones (babble of other voices, amplitude-modulated noise,
transient clicks). A :class:`NoisePool` draws them for one data split from
its own seed and its own babble speakers, so the training, validation and
test splits never share a noise recording or a babble voice.

All functions return float32 numpy arrays of shape ``[time]`` normalised
to unit RMS; the mixing code sets the level.
"""

import numpy as np

from lobes.data.grid_grammar import grid_text

#: Noise kinds a :class:`NoisePool` draws from, with their probabilities.
NOISE_KINDS = {
    "babble": 0.25,
    "coloured": 0.2,
    "modulated": 0.2,
    "hum": 0.15,
    "clicks": 0.2,
}


def _unit_rms(noise):
    rms = float(np.sqrt(np.mean(np.square(noise, dtype=np.float64))))
    if rms == 0.0:
        return noise.astype(np.float32)
    return (noise / rms).astype(np.float32)


def coloured_noise(length, rng, exponent=0.0):
    """Gaussian noise with a ``1 / f**exponent`` power spectrum.

    Arguments
    ---------
    length : int
        Number of samples.
    rng : numpy.random.Generator
        Random source.
    exponent : float
        0 for white, 1 for pink, 2 for brown noise.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> pink = coloured_noise(16000, rng, exponent=1.0)
    >>> pink.shape, round(float(np.sqrt(np.mean(pink ** 2))), 3)
    ((16000,), 1.0)
    >>> spec = np.abs(np.fft.rfft(coloured_noise(16000, rng, 2.0))) ** 2
    >>> bool(spec[10:100].mean() > 100 * spec[4000:5000].mean())
    True
    """
    white = rng.standard_normal(length)
    if exponent == 0.0:
        return _unit_rms(white)
    spectrum = np.fft.rfft(white)
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    spectrum = spectrum / freqs ** (exponent / 2.0)
    spectrum[0] = 0.0
    return _unit_rms(np.fft.irfft(spectrum, n=length))


def modulated_noise(length, sample_rate, rng):
    """Coloured noise whose amplitude swells and fades (non-stationary).

    Example
    -------
    >>> noise = modulated_noise(8000, 8000, np.random.default_rng(0))
    >>> noise.shape
    (8000,)
    """
    carrier = coloured_noise(length, rng, float(rng.uniform(0.0, 2.0)))
    time = np.arange(length) / sample_rate
    envelope = np.ones(length)
    for _ in range(int(rng.integers(1, 3))):
        rate = rng.uniform(0.3, 6.0)
        depth = rng.uniform(0.4, 0.95)
        phase = rng.uniform(0.0, 2 * np.pi)
        envelope *= 1.0 + depth * np.sin(2 * np.pi * rate * time + phase)
    return _unit_rms(carrier * envelope)


def hum(length, sample_rate, rng):
    """Mains hum: 50 or 60 Hz and its harmonics, with slight jitter.

    Example
    -------
    >>> noise = hum(16000, 16000, np.random.default_rng(0))
    >>> peak_hz = int(np.argmax(np.abs(np.fft.rfft(noise))))  # 1 Hz bins
    >>> min(peak_hz % 50, 50 - peak_hz % 50, peak_hz % 60, 60 - peak_hz % 60)
    0
    """
    base = float(rng.choice([50.0, 60.0]))
    time = np.arange(length) / sample_rate
    # slow frequency drift (jitter of a fraction of a hertz)
    drift = np.cumsum(rng.standard_normal(length)) / np.sqrt(length)
    drift = 0.3 * drift / (np.max(np.abs(drift)) + 1e-9)
    phase = 2 * np.pi * np.cumsum(base + drift) / sample_rate
    noise = np.zeros(length)
    num_harmonics = int(rng.integers(4, 12))
    decay = rng.uniform(0.5, 0.9)
    for harmonic in range(1, num_harmonics + 1):
        if harmonic * base >= sample_rate / 2:
            break
        amplitude = decay ** (harmonic - 1) * rng.uniform(0.5, 1.0)
        offset = rng.uniform(0.0, 2 * np.pi)
        noise += amplitude * np.sin(harmonic * phase + offset)
    buzz = 0.05 * coloured_noise(length, rng, 1.0)
    return _unit_rms(noise * (1.0 + 0.05 * np.sin(2 * np.pi * time)) + buzz)


def clicks(length, sample_rate, rng):
    """Transient clicks and knocks over a faint noise floor.

    Example
    -------
    >>> noise = clicks(16000, 16000, np.random.default_rng(0))
    >>> bool(np.max(np.abs(noise)) > 4)  # impulsive: high crest factor
    True
    """
    noise = 0.02 * coloured_noise(length, rng, 1.0)
    num_clicks = max(1, int(rng.poisson(6.0 * length / sample_rate)))
    for _ in range(num_clicks):
        start = int(rng.integers(0, length))
        duration = int(sample_rate * rng.uniform(0.002, 0.04))
        stop = min(length, start + duration)
        time = np.arange(stop - start) / sample_rate
        decay = np.exp(-time / rng.uniform(0.001, 0.01))
        tone = rng.standard_normal(stop - start)
        if rng.random() < 0.5:  # a knock: a damped low resonance
            tone = np.sin(2 * np.pi * rng.uniform(80, 600) * time)
        noise[start:stop] += rng.uniform(0.3, 1.0) * decay * tone
    return _unit_rms(noise)


def babble(length, sample_rate, rng, speakers, speak):
    """Several voices talking at once, from the given speakers.

    Arguments
    ---------
    length : int
        Number of samples.
    sample_rate : int
        Sample rate.
    rng : numpy.random.Generator
        Random source (which speakers, what they say, where).
    speakers : list of lobes.data.voices.Speaker
        The babble speakers (never the corpus' target speakers).
    speak : callable
        ``speak(text, speaker) -> numpy array`` at ``sample_rate``.

    Example
    -------
    >>> fake = lambda text, spk: np.ones(len(text) * 10, dtype=np.float32)
    >>> noise = babble(800, 8000, np.random.default_rng(0), ["a", "b"], fake)
    >>> noise.shape
    (800,)
    """
    noise = np.zeros(length)
    num_talkers = int(rng.integers(3, 7))
    for _ in range(num_talkers):
        speaker = speakers[int(rng.integers(len(speakers)))]
        voice = np.zeros(0)
        while voice.size < length:
            utterance = speak(grid_text(rng, 1), speaker)
            pause = np.zeros(int(sample_rate * rng.uniform(0.0, 0.3)))
            voice = np.concatenate([voice, utterance, pause])
        offset = int(rng.integers(0, voice.size - length + 1))
        segment = _unit_rms(voice[offset : offset + length])
        noise += segment * 10 ** (rng.uniform(-6, 0) / 20)
    return _unit_rms(noise)


class NoisePool:
    """Noises for one split, from the split's own seed and babble speakers.

    Arguments
    ---------
    seed : int
        Seed of this pool; splits must use different seeds.
    sample_rate : int
        Sample rate of the noises.
    babble_speakers : list of lobes.data.voices.Speaker
        Speakers used for babble (held out from all target speakers and
        from the other splits' babble).
    speak : callable
        ``speak(text, speaker) -> numpy array`` at ``sample_rate``.
    kinds : dict, optional
        Noise kind -> probability (default :data:`NOISE_KINDS`).

    Example
    -------
    >>> fake = lambda text, spk: np.ones(len(text) * 10, dtype=np.float32)
    >>> pool = NoisePool(1, 8000, ["a"], fake)
    >>> noise, kind = pool.draw(1600, index=0)
    >>> noise.shape, kind in NOISE_KINDS
    ((1600,), True)
    >>> bool(np.array_equal(noise, pool.draw(1600, index=0)[0]))
    True
    """

    def __init__(self, seed, sample_rate, babble_speakers, speak, kinds=None):
        self.seed = seed
        self.sample_rate = sample_rate
        self.babble_speakers = list(babble_speakers)
        self.speak = speak
        kinds = dict(kinds or NOISE_KINDS)
        if not self.babble_speakers:
            kinds.pop("babble", None)
        self.kinds = list(kinds)
        probs = np.array([kinds[k] for k in self.kinds], dtype=np.float64)
        self.probs = probs / probs.sum()

    def draw(self, length, index):
        """Return noise number ``index`` of this pool and its kind.

        A second, quieter noise of another kind is sometimes added, so a
        recording can be stationary and non-stationary at once.
        """
        rng = np.random.default_rng([self.seed, 5501, index])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
        noise = self._make(kind, length, rng)
        if rng.random() < 0.3:
            extra = self.kinds[int(rng.choice(len(self.kinds), p=self.probs))]
            gain = 10 ** (rng.uniform(-15, -5) / 20)
            noise = _unit_rms(noise + gain * self._make(extra, length, rng))
        return noise, kind

    def _make(self, kind, length, rng):
        if kind == "coloured":
            return coloured_noise(length, rng, float(rng.choice([0, 1, 2])))
        if kind == "modulated":
            return modulated_noise(length, self.sample_rate, rng)
        if kind == "hum":
            return hum(length, self.sample_rate, rng)
        if kind == "clicks":
            return clicks(length, self.sample_rate, rng)
        if kind == "babble":
            return babble(
                length,
                self.sample_rate,
                rng,
                self.babble_speakers,
                self.speak,
            )
        raise ValueError(f"unknown noise kind {kind!r}")
