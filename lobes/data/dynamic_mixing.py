"""Dynamic mixing of separation examples: random levels and speeds.

Training examples of the separation recipes can be remixed on the fly
(:class:`DynamicMixer`: the speakers within a few dB of each other, the
noise at a random SNR against the loudest) and played at random speeds
(:class:`SpeedPerturbation`). Every draw comes from the generator the
caller passes (seeded per epoch and item by
:mod:`lobes.data.separation_data`), so an epoch is reproducible.

Authors
 * noise-robust-sb contributors 2025
"""

import math

import torch
import torchaudio.functional as AF

from lobes.data.pipelines import random_crop
from lobes.errors import HparamsError


def random_uniform(generator, low, high):
    """One float drawn uniformly in ``[low, high]`` from ``generator``.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> 1.0 <= random_uniform(gen, 1.0, 2.0) <= 2.0
    True
    """
    return low + (high - low) * float(torch.rand(1, generator=generator))


def random_index(generator, count):
    """One index drawn uniformly in ``range(count)`` from ``generator``.

    Example
    -------
    >>> random_index(torch.Generator().manual_seed(0), 3) in (0, 1, 2)
    True
    """
    return int(torch.randint(count, (1,), generator=generator))


def speed_perturb(signal, speed):
    """Play ``signal`` at ``speed`` percent of its speed (resampling).

    Arguments
    ---------
    signal : torch.Tensor
        ``[time]``.
    speed : int
        Percent, e.g. 95 (slower, longer) or 105 (faster, shorter).

    Returns
    -------
    torch.Tensor
        ``[time * 100 / speed]`` (rounded).

    Example
    -------
    >>> speed_perturb(torch.randn(1050), 105).shape
    torch.Size([1000])
    """
    speed = int(speed)
    if speed == 100:
        return signal
    return AF.resample(signal, orig_freq=speed, new_freq=100)


def fit_length(signal, length, generator):
    """Random crop of ``length`` samples, tiling a shorter signal first.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> fit_length(torch.arange(3.0), 7, gen).tolist()  # tiled, cropped
    [2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0]
    >>> fit_length(torch.arange(10.0), 4, gen).shape
    torch.Size([4])
    """
    if signal.shape[0] < length:
        repeats = math.ceil(length / max(signal.shape[0], 1))
        signal = signal.repeat(repeats)
    return random_crop([signal], length, generator=generator)[0]


def rms(signal):
    """Root mean square of ``signal`` (a 0-d tensor).

    Example
    -------
    >>> float(rms(torch.tensor([3.0, -3.0])))
    3.0
    """
    return signal.pow(2).mean().sqrt()


class SpeedPerturbation:
    """Play each source (and the noise) at a random speed.

    Arguments
    ---------
    factors : list of int
        Speeds in percent; one is drawn for each speaker and for the noise.
    perturb_noise : bool
        Whether the noise is perturbed too (False: it is copied unchanged,
        as the NASS authors do).

    Example
    -------
    >>> perturb = SpeedPerturbation([105], perturb_noise=False)
    >>> gen = torch.Generator().manual_seed(0)
    >>> [s.shape[0] for s in perturb([torch.ones(1050)] * 2,
    ...                               torch.ones(1050), gen)]
    [1000, 1000, 1050]
    """

    def __init__(self, factors=(95, 100, 105), perturb_noise=True):
        self.factors = [int(f) for f in factors]
        if not self.factors or min(self.factors) <= 0:
            raise HparamsError(
                f"speed perturbation factors must be positive percentages, "
                f"got {factors}"
            )
        self.perturb_noise = bool(perturb_noise)

    def perturb(self, signal, generator):
        """``signal`` at one randomly drawn speed."""
        speed = self.factors[random_index(generator, len(self.factors))]
        return speed_perturb(signal, speed)

    def __call__(self, sources, noise, generator):
        """Perturbed ``[*sources, noise]`` (each drawn in that order)."""
        out = [self.perturb(sig, generator) for sig in sources]
        if self.perturb_noise:
            return [*out, self.perturb(noise, generator)]
        return [*out, noise]


class DynamicMixer:
    """Random levels for speakers and noise of a dynamically mixed example.

    The speakers are scaled to their common mean level, then each by a gain
    drawn in ``speaker_gain_db``; the noise is set to an SNR drawn in
    ``noise_snr_db`` against the loudest speaker. One common factor keeps
    the mixture below 0.9 in peak, so that it stays the sum of its parts.

    Arguments
    ---------
    speaker_gain_db : tuple of float
        Range of each speaker's gain (dB).
    noise_snr_db : tuple of float
        Range of the SNR (dB) of the loudest speaker against the noise.

    Example
    -------
    >>> mixer = DynamicMixer((0.0, 0.0), (10.0, 10.0))
    >>> gen = torch.Generator().manual_seed(0)
    >>> parts = mixer([torch.randn(800), torch.randn(800)], torch.randn(800),
    ...               gen)
    >>> round(float(10 * torch.log10(rms(parts[0]) ** 2
    ...                              / rms(parts[2]) ** 2)), 1)
    10.0
    """

    def __init__(self, speaker_gain_db=(-2.5, 2.5), noise_snr_db=(-6.0, 3.0)):
        self.speaker_gain_db = tuple(float(v) for v in speaker_gain_db)
        self.noise_snr_db = tuple(float(v) for v in noise_snr_db)

    def __call__(self, sources, noise, generator):
        """Scaled ``[N + 1, T]`` parts: the speakers, then the noise."""
        level = torch.stack([rms(sig) for sig in sources]).mean()
        scaled = []
        for sig in sources:
            gain_db = random_uniform(generator, *self.speaker_gain_db)
            scaled.append(
                sig / (rms(sig) + 1e-8) * level * 10 ** (gain_db / 20)
            )
        loudest = torch.stack([rms(sig) for sig in scaled]).max()
        snr_db = random_uniform(generator, *self.noise_snr_db)
        noise = noise / (rms(noise) + 1e-8) * loudest * 10 ** (-snr_db / 20)
        parts = torch.stack([*scaled, noise], dim=0)
        peak = float(parts.sum(dim=0).abs().max())
        if peak > 0.9:  # one common factor keeps mix == sum of parts
            parts = parts * (0.9 / peak)
        return parts
