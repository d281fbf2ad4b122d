"""Signal building blocks both generated corpora use: FFT sizes, spectral shapes, coloured
noise, wavetables, envelopes, placement and vowel formants.

Both corpora promise byte-identical files for a seed and a generator version, so where the
scene generator and the lossless one made different choices (which primes an FFT size may
have, how high a partial may go, which noise distribution a spectrum is drawn from) the choice
is an argument here and each generator passes its own; aligning them would change every file
one of them writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Gain = Callable[[np.ndarray], np.ndarray]  # magnitude (or power) response over frequencies in Hz

__all__ = [
    "LOSSLESS_TOP",
    "SCENE_TOP",
    "TABLE",
    "VOWEL_FORMANTS",
    "Gain",
    "add_at",
    "attack_decay",
    "band_power",
    "band_top",
    "bump_power",
    "coloured_noise",
    "db_to_power",
    "decay",
    "fast_fft_size",
    "gaussian_swells",
    "highpass",
    "interpolating_table",
    "lowpass",
    "noise_burst",
    "pan_stereo",
    "phase_index",
    "pink_magnitude",
    "random_gain",
    "read_table",
    "resonance",
    "shaped",
    "slow_curve",
    "smooth",
    "spectral_noise",
    "struck_partials",
    "tilt_power",
    "tone",
    "unit_rms",
    "unit_table",
    "wander",
    "white_noise",
]

# The highest partial an oscillator may place, as a share of the sample rate. The scene sources
# stop at 0.45 (19.8 kHz at 44.1 kHz; the recording devices roll off above it anyway), the
# lossless corpus goes to 0.465 (20.5 kHz: the detector must see energy where codecs cut).
SCENE_TOP = 0.45
LOSSLESS_TOP = 0.465

TABLE = 4096  # wavetable length (a power of two, so phase wraps with a bit mask)


def band_top(rate: int, share: float) -> float:
    """The highest frequency a partial may have at ``rate`` (``share``: SCENE_TOP or
    LOSSLESS_TOP), so that no oscillator aliases."""
    return share * rate


# ---------------------------------------------------------------------------------------------
# FFT sizes


def fast_fft_size(n: int, radices: tuple[int, ...]) -> int:
    """The smallest size >= ``n`` whose prime factors are 2 and ``radices``.

    pocketfft is fast on such sizes. The scene generator convolves at 7-smooth sizes (3, 5, 7),
    the lossless one draws its noise spectra at 5-smooth sizes (3, 5); the size decides how many
    random values a noise spectrum takes and how a convolution rounds, so each keeps its own.
    """
    best = 1 << max(n - 1, 0).bit_length()
    odd = [1]
    for p in radices:
        grown = []
        for q in odd:
            q *= p
            while q < best:
                grown.append(q)
                q *= p
        odd += grown
    for q in odd:
        size = q
        while size < n:
            size *= 2
        best = min(best, size)
    return best


# ---------------------------------------------------------------------------------------------
# Spectral shapes over a frequency axis in Hz. The scene generator adds sources as power
# spectra, the lossless one filters with magnitudes; both build on the same Butterworth terms.


def _inverse_highpass_power(f: np.ndarray, fc: float, order: int) -> np.ndarray:
    """1 / |H|^2 of a Butterworth high-pass (callers divide, which keeps their rounding)."""
    return 1.0 + (fc / np.maximum(f, 1.0)) ** (2 * order)


def _inverse_lowpass_power(f: np.ndarray, fc: float, order: int) -> np.ndarray:
    return 1.0 + (f / fc) ** (2 * order)


def band_power(f: np.ndarray, lo: float = 0.0, hi: float = 0.0, order: int = 2) -> np.ndarray:
    """Butterworth-like power response; smooth skirts keep synthetic spectra from looking boxy."""
    g = np.ones_like(f, dtype=np.float64)
    if lo > 0:
        g /= _inverse_highpass_power(f, lo, order)
    if hi > 0:
        g /= _inverse_lowpass_power(f, hi, order)
    return g


def highpass(f: np.ndarray, fc: float, order: int = 2) -> np.ndarray:
    """Butterworth high-pass magnitude."""
    return 1.0 / np.sqrt(_inverse_highpass_power(f, fc, order))


def lowpass(f: np.ndarray, fc: float, order: int = 2) -> np.ndarray:
    """Butterworth low-pass magnitude."""
    return 1.0 / np.sqrt(_inverse_lowpass_power(f, fc, order))


def resonance(f: np.ndarray, fc: float, q: float) -> np.ndarray:
    """A resonance (band-pass magnitude), 1 at ``fc``."""
    r = np.maximum(f, 1.0) / fc
    return 1.0 / np.sqrt(1.0 + q * q * (r - 1.0 / r) ** 2)


def bump_power(f: np.ndarray, centre: float, octaves: float, gain_db: float) -> np.ndarray:
    """A resonance as a Gaussian in log frequency: rooms, cabins and mics are smooth there."""
    x = np.log2(np.maximum(f, 1.0) / centre) / octaves
    return 10.0 ** (gain_db / 10.0 * np.exp(-0.5 * x * x))


def tilt_power(f: np.ndarray, db_per_octave: float, ref: float = 1000.0) -> np.ndarray:
    """A power slope of ``db_per_octave`` through 1 at ``ref`` (flat below 20 Hz)."""
    return (np.maximum(f, 20.0) / ref) ** (db_per_octave / (10.0 * math.log10(2.0)))


def shaped(x: np.ndarray, rate: int, power: Gain) -> np.ndarray:
    """``x`` through a zero-phase filter of power response ``power`` (over frequencies in Hz),
    in one FFT of its whole length: a recording chain's fixed colourations."""
    spec = np.fft.rfft(x)
    spec *= np.sqrt(power(np.fft.rfftfreq(len(x), 1.0 / rate)))
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def pink_magnitude(f: np.ndarray) -> np.ndarray:
    """The 1/f power law as a magnitude, floored at 20 Hz.

    asc.signals.pink_noise draws the same law, but normalised to its own length and peak; this
    is a gain for coloured_noise, which must keep drawing the lossless corpus's spectra.
    """
    return 1.0 / np.sqrt(np.maximum(f, 20.0))


def db_to_power(value: float | np.ndarray) -> float | np.ndarray:
    return 10.0 ** (np.asarray(value) / 10.0)


def random_gain(low: float, high: float, rng: np.random.Generator) -> float:
    """An amplitude gain drawn uniformly in decibels between ``low`` and ``high``."""
    return float(10 ** (rng.uniform(low, high) / 20))


# ---------------------------------------------------------------------------------------------
# Coloured noise, drawn straight in the frequency domain. The scene events draw Gaussian noise
# at their exact length (short bursts); the lossless tracks draw cheaper uniform noise at a
# 5-smooth size (long, several channels). Each keeps its draw, or its audio would change.


def noise_burst(
    rng: np.random.Generator, n: int, rate: int, shape: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Noise of length ``n`` with power spectrum ``shape(freqs)``, unit RMS (one small FFT)."""
    size = max(n, 16)
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    spec = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    x = np.fft.irfft(spec * np.sqrt(shape(freqs)), size)[:n]
    return (x / max(np.sqrt(np.mean(x**2)), 1e-12)).astype(np.float32)


def coloured_noise(
    n: int, rate: int, rng: np.random.Generator, gain: Gain, channels: int = 1
) -> np.ndarray:
    """Noise with magnitude response ``gain`` and unit RMS: (n,) or (n, channels).

    Shaping costs one inverse FFT per channel, of a 5-smooth size, which numpy transforms
    several times faster than an arbitrary length.
    """
    size = fast_fft_size(n, (3, 5))
    f = np.fft.rfftfreq(size, 1 / rate)
    g = gain(f).astype(np.float32)
    g[0] = 0.0
    x = np.fft.irfft(spectral_noise(rng, (channels, len(f))) * g, size, axis=1)[:, :n]
    x /= np.sqrt(np.mean(x**2, axis=1, keepdims=True)) + 1e-12
    return x[0] if channels == 1 else x.T


def white_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance uniform noise.

    Several times cheaper to draw than Gaussian, and any FFT or filter sums it into Gaussian
    noise anyway.
    """
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(math.sqrt(12))


def spectral_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Complex white noise for building noise straight in the frequency domain."""
    return white_noise(rng, (*shape, 2)).view(np.complex64)[..., 0]


# ---------------------------------------------------------------------------------------------
# Wavetables: one period built from its partials, so any pitch read from it stays band-limited.


def _harmonic_period(amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """One period holding partial k at ``amps[k-1]``, phase ``phases[k-1]`` in cycles."""
    spec = np.zeros(TABLE // 2 + 1, np.complex128)
    k = min(len(amps), TABLE // 2 - 1)
    spec[1 : k + 1] = amps[:k] * np.exp(2j * np.pi * phases[:k])
    return np.fft.irfft(spec, TABLE)


def unit_table(amps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A period with random phases and unit RMS, read by ``phase_index`` (scene sources)."""
    table = _harmonic_period(amps, rng.random(min(len(amps), TABLE // 2 - 1)))
    return (table / max(np.sqrt(np.mean(table**2)), 1e-12)).astype(np.float32)


def phase_index(f0: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Table indices of an oscillator following ``f0`` (per sample) from a random phase."""
    phase = rng.random() + np.cumsum(f0, dtype=np.float64) / rate
    return (phase * TABLE).astype(np.int64) & (TABLE - 1)


def interpolating_table(amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """A period for ``read_table``: (2, TABLE), the samples and the step to the next one.

    Random phases keep the peak factor low; the step row lets a read interpolate with two
    gathers and no wrap-around (lossless tracks).
    """
    table = _harmonic_period(amps, phases) * (TABLE / 2)
    return np.stack([table, np.roll(table, -1) - table]).astype(np.float32)


def read_table(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Linear-interpolating wavetable lookup at ``cycles`` (periods since the start, >= 0)."""
    pos = cycles * TABLE
    whole = pos.astype(np.int64)  # the floor, as positions are never negative
    frac = (pos - whole).astype(np.float32)
    i = whole & (TABLE - 1)  # wrap into the table without a float modulo
    return table[0, i] + frac * table[1, i]


def tone(freq: np.ndarray | float, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A sinusoid following ``freq`` (scalar or per sample); events are short, so sin is fine."""
    f = np.broadcast_to(np.asarray(freq, np.float64), (n,))
    return np.sin(2 * np.pi * (rng.random() + np.cumsum(f) / rate)).astype(np.float32)


def struck_partials(
    freqs: np.ndarray | tuple[float, ...],
    amps: np.ndarray | tuple[float, ...],
    taus: np.ndarray | tuple[float, ...],
    n: int,
    rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Decaying sinusoids: bells, chimes, clinks and rail rings are all sums of these."""
    n = max(n, 1)
    out = np.zeros(n, np.float32)
    for f, a, tau in zip(freqs, amps, taus, strict=False):
        if f < band_top(rate, SCENE_TOP):
            out += a * tone(f, n, rate, rng) * decay(n, rate, tau)
    return out


# ---------------------------------------------------------------------------------------------
# Envelopes, random curves and placement


def attack_decay(t: np.ndarray, attack: float, tau: float) -> np.ndarray:
    """A linear attack over ``attack`` seconds into an exponential decay of time constant tau."""
    return np.minimum(t / attack, 1.0) * np.exp(-t / tau)


def decay(n: int, rate: int, tau: float, attack: float = 0.002) -> np.ndarray:
    """``attack_decay`` over ``n`` samples, float32."""
    return attack_decay(np.arange(n) / rate, attack, tau).astype(np.float32)


def gaussian_swells(
    t: np.ndarray, centres: np.ndarray, widths: np.ndarray, heights: np.ndarray
) -> np.ndarray:
    """Gaussian swells in time: vehicles passing, walkers and trains approaching."""
    if len(centres) == 0:
        return np.zeros_like(t)
    z = (t[:, None] - centres[None, :]) / widths[None, :]
    return (heights[None, :] * np.exp(-0.5 * z * z)).sum(axis=1)


def wander(rng: np.random.Generator, t: np.ndarray, hz: float, seconds: float) -> np.ndarray:
    """Zero-mean, unit-scale random curve changing about ``hz`` times a second.

    The scene generator's random curve, used in exponents (log-normal envelopes); the lossless
    one is ``slow_curve``, a gain in [0, 1].
    """
    step = 1.0 / hz
    knots = np.arange(-step, seconds + 2 * step, step)
    return np.interp(t, knots, rng.standard_normal(len(knots)))


def slow_curve(n: int, rate: int, rng: np.random.Generator, hz: float) -> np.ndarray:
    """A smooth random curve in [0, 1] changing at about ``hz``: gusts, swells, drifts."""
    points = max(4, int(n / rate * hz) + 3)
    walk = np.cumsum(rng.standard_normal(points))
    walk = smooth(walk, 3)
    walk = (walk - walk.min()) / (np.ptp(walk) + 1e-9)
    return np.interp(np.arange(n), np.linspace(0, n, points), walk).astype(np.float32)


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average keeping length and dtype; arrays shorter than the window stay as they are."""
    if len(x) < width:
        return x
    return np.convolve(x, np.full(width, 1 / width, dtype=x.dtype), mode="same")


def unit_rms(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def pan_stereo(mono: np.ndarray, pan: float) -> np.ndarray:
    """Equal-power panning, pan in [-1, 1]."""
    angle = (pan + 1.0) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1)


def add_at(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add ``sound`` into ``out`` at sample ``start``, cut at both ends of ``out``."""
    if start >= len(out) or start + len(sound) <= 0:
        return
    skip = max(0, -start)
    end = min(len(out), start + len(sound))
    out[max(0, start) : end] += sound[skip : skip + end - max(0, start)]


# ---------------------------------------------------------------------------------------------
# Vowel formants F1-F3 of an adult male voice, Hz (Peterson & Barney style averages). The scene
# talkers use three formants of seven vowels; the lossless speech adds its own F4 and a schwa.

VOWEL_FORMANTS: dict[str, tuple[int, int, int]] = {
    "a": (730, 1090, 2440),
    "ae": (660, 1720, 2410),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
    "oo": (440, 1020, 2240),  # as in "hood"
    "schwa": (500, 1500, 2500),
}
