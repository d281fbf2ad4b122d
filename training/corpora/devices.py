"""The recording devices: TAU's real (a-c) and simulated (s1-s6) ones, as fixed colourations."""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np

from training.corpora.dsp import band_power, bump_power, shaped, tilt_power

TRAIN_DEVICES = ("a", "b", "c", "s1", "s2", "s3")
EVAL_DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")


@dataclass(frozen=True)
class DeviceProfile:
    """A recording device's fixed colouration, like TAU's real (a-c) and simulated (s1-s6) ones.

    Seeded by the device name, so every clip of a device shares its response, as in TAU where the
    device is a confound a model must learn to ignore.
    """

    name: str
    lowcut: float
    highcut: float  # 0: none
    highcut_order: int
    peaks: tuple[tuple[float, float, float], ...]  # (centre Hz, width in octaves, gain dB)
    tilt: float  # dB per octave around 1 kHz
    compress: float  # compression ratio above threshold (1: none)
    drive: float  # soft-clipping drive (0: linear)
    asym: float  # even-order distortion
    floor_db: float  # self-noise relative to the clip's mean power
    floor_tilt: float

    def gain(self, f: np.ndarray) -> np.ndarray:
        """Power response at frequencies ``f``."""
        g = band_power(f, lo=self.lowcut, order=1)
        if self.highcut:
            g = g * band_power(f, hi=self.highcut, order=self.highcut_order)
        for centre, width, gain_db in self.peaks:
            g = g * bump_power(f, centre, width, gain_db)
        return g * tilt_power(f, self.tilt)


def _device_rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"asc-synth-device-{name}".encode()))


def _random_peaks(
    rng: np.random.Generator, count: int, spread: float
) -> tuple[tuple[float, float, float], ...]:
    return tuple(
        (
            float(2 ** rng.uniform(6.0, 14.0)),
            float(rng.uniform(0.5, 2.0)),
            float(rng.normal(0, spread)),
        )
        for _ in range(count)
    )


@functools.cache
def device_profile(name: str) -> DeviceProfile:
    """The fixed profile of device ``name``: 'a' near-flat, 'b'/'c' phones, 's*' simulated."""
    rng = _device_rng(name)
    if name == "a":  # the binaural reference microphone: flat, quiet, full band
        return DeviceProfile(
            "a",
            lowcut=15.0,
            highcut=20000.0,
            highcut_order=8,
            peaks=_random_peaks(rng, 2, 0.7),
            tilt=0.0,
            compress=1.0,
            drive=0.0,
            asym=0.0,
            floor_db=-75.0,
            floor_tilt=0.0,
        )
    if name in ("b", "c"):  # phones: low cut, steep roll-off, presence peak, AGC, self-noise
        return DeviceProfile(
            name,
            lowcut=float(rng.uniform(80, 160)),
            highcut=float(rng.uniform(14000, 16500)),
            highcut_order=5,
            peaks=(
                (float(rng.uniform(1800, 4500)), 0.8, float(rng.uniform(1.0, 3.0))),
                *_random_peaks(rng, 2, 1.0),
            ),
            tilt=float(rng.uniform(-0.5, 0.5)),
            compress=float(rng.uniform(1.2, 1.6)),
            drive=float(rng.uniform(0.3, 1.2)),
            asym=float(rng.uniform(0.0, 0.05)),
            floor_db=float(rng.uniform(-55, -45)),
            floor_tilt=float(rng.uniform(-2, 1)),
        )
    if name in ("s1", "s2", "s3", "s4", "s5", "s6"):
        unseen = name in ("s4", "s5", "s6")  # the unseen devices are deliberately further out
        return DeviceProfile(
            name,
            lowcut=float(rng.uniform(30, 250 if unseen else 150)),
            highcut=float(rng.uniform(11000, 20000) if rng.random() < 0.5 else 0.0),
            highcut_order=int(rng.integers(2, 5)),
            peaks=_random_peaks(rng, int(rng.integers(2, 5)), 2.0 if unseen else 1.2),
            tilt=float(rng.uniform(-0.6, 0.6)),
            compress=float(rng.uniform(1.0, 1.8)),
            drive=float(rng.uniform(0.0, 1.2)),
            asym=float(rng.uniform(0.0, 0.1)),
            floor_db=float(rng.uniform(-65, -45)),
            floor_tilt=float(rng.uniform(-3, 2)),
        )
    raise ValueError(f"unknown device {name!r}; known: {EVAL_DEVICES}")


# The recording chain's bandwidth. Real recordings reach a listener band-limited more often than
# not: of Kitchen20's 595 clips (`asc-train corpus-stats`), 18.8 % have an effective bandwidth
# (highest frequency within 60 dB of the spectrum's peak) below 16.5 kHz and only about half
# keep the full 22 kHz (phones recording at 32 kHz, older converters, a lossy step somewhere
# before upload). A corpus where every clip is full band teaches a model that empty high bands
# never happen, and it falls apart at the first codec lowpass. The cutoffs are drawn from this
# quantile table, set so that the generated corpus measures like Kitchen20 (15.9 % below
# 16.5 kHz; 10th percentile 15.1 kHz against 15.2).
_BANDWIDTH_QUANTILES = (0.0, 0.04, 0.1, 0.26, 0.34, 0.42, 0.5, 1.0)
_BANDWIDTH_HZ = (8000.0, 11000.0, 14000.0, 16500.0, 19000.0, 20500.0, 21500.0, 22050.0)
FULL_BAND_HZ = 21500.0  # at or above this a recording chain is left as it is


def chain_bandwidth(rng: np.random.Generator) -> float:
    """The bandwidth of one recording's chain, drawn to match real recordings (Hz)."""
    return float(np.interp(rng.random(), _BANDWIDTH_QUANTILES, _BANDWIDTH_HZ))


def band_limit(x: np.ndarray, rate: int, cutoff: float) -> np.ndarray:
    """The chain's anti-alias or resampling filter: a steep lowpass at ``cutoff``.

    A 24th-order Butterworth power response applied in the FFT domain: 60 dB down a third of an
    octave above the cutoff, as steep as the converters and resamplers that cause it.
    """
    if cutoff >= FULL_BAND_HZ:
        return x
    return shaped(x, rate, lambda f: band_power(f, hi=cutoff, order=24))


@functools.lru_cache(maxsize=64)
def device_curve(name: str, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude response on a fine fixed grid; full-length spectra interpolate from it."""
    f = np.linspace(0.0, rate / 2, 8193)
    return f, np.sqrt(device_profile(name).gain(f))


def compress(x: np.ndarray, rate: int, ratio: float) -> np.ndarray:
    """Phone-style automatic gain control: loud passages are pulled towards a threshold."""
    if ratio <= 1.0:
        return x
    hop = max(rate // 50, 1)
    frames = len(x) // hop + 1
    padded = np.pad(x, (0, frames * hop - len(x)))
    level = 10 * np.log10(np.mean(padded.reshape(frames, hop) ** 2, axis=1) + 1e-12)
    threshold = np.percentile(level, 40)
    reduce = np.maximum(level - threshold, 0.0) * (1.0 - 1.0 / ratio)
    smooth = np.convolve(reduce, np.ones(5) / 5, mode="same")
    gain = np.interp(np.arange(len(x)) / hop, np.arange(frames), 10 ** (-smooth / 20))
    return x * gain.astype(np.float32)


def nonlinear(x: np.ndarray, drive: float, asym: float) -> np.ndarray:
    """Mild saturation of cheap capsules and preamps (odd) plus a little even distortion."""
    if drive <= 0 and asym <= 0:
        return x
    peak = float(np.max(np.abs(x))) or 1.0
    y = x / peak
    if drive > 0:
        y = np.tanh(drive * y) / math.tanh(drive)
    if asym > 0:
        y = y + asym * (y * y - np.mean(y * y))
    return (y * peak).astype(np.float32)
