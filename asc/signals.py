"""Deterministic full-band test signals for the demo, tests and benchmarks.

Codec tests need energy up to Nyquist (to see lowpasses and bitrate control at work), tonal
parts (which perceptual coders treat differently from noise) and transients.
"""

from __future__ import annotations

import sys

import numpy as np


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:] * n)
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / np.max(np.abs(x))


def full_band_clip(
    rate: int = 44100, seconds: float = 3.0, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Harmonic tones, pink and white noise, a chirp to Nyquist and clicks: float32 (n, ch)."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    tones = sum(
        (0.6 / k) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
        for f0 in (220.0, 330.0 * 1.01)
        for k in range(1, 9)
    )
    tones *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t) ** 2
    chirp = np.sin(2 * np.pi * (100 * t + (rate / 2 - 100) / (2 * seconds) * t**2))
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, size=max(1, int(seconds * 4)))] = 1.0
    clicks = np.convolve(clicks, np.exp(-np.arange(200) / 20.0) * rng.standard_normal(200), "same")
    mono = 0.25 * tones / np.max(np.abs(tones)) + 0.2 * pink_noise(n, rng)
    mono += (
        0.05 * rng.standard_normal(n) + 0.05 * chirp + 0.2 * clicks / (np.max(np.abs(clicks)) or 1)
    )
    mono *= 0.8 / np.max(np.abs(mono))
    out = np.repeat(mono[:, None], channels, axis=1)
    if channels == 2:  # decorrelate the sides a little, as real stereo is
        out[:, 1] = 0.8 * out[:, 1] + 0.2 * 0.8 * pink_noise(n, rng)
    return out.astype(np.float32)


def main() -> None:
    from asc.audio import save

    path = sys.argv[1] if len(sys.argv) > 1 else "clip.wav"
    save(path, full_band_clip(seconds=5.0), 44100)
    print(f"wrote {path}: 5 s of generated full-band test audio at 44.1 kHz")


if __name__ == "__main__":
    main()
