"""Rooms: the reverberation a scene's place adds to its dry sources, and the stereo room the
lossless tracks are played in.

Two rooms, not one: a scene clip needs a mono impulse response with early reflections (boxy in
vehicles) to convolve together with its device, a lossless track a decorrelated stereo tail.
Each draws its own random values, so merging them would change both corpora.
"""

from __future__ import annotations

import numpy as np

from training.corpora.dsp import coloured_noise, fast_fft_size, lowpass


def room_impulse_response(
    rng: np.random.Generator, rt60: float, drr: float, rate: int, boxy: bool
) -> np.ndarray:
    """Direct sound, a few early reflections and an exponentially decaying noise tail.

    High frequencies die faster than low ones in real rooms; splitting the tail into a smoothed
    (low) and a residual (high) part with different decays gives that for the cost of a cumsum.
    """
    if rt60 <= 0.02:
        return np.ones(1, np.float32)
    length = int(min(rt60, 1.6) * rate)
    t = np.arange(length) / rate
    noise = rng.standard_normal(length)
    c = np.cumsum(np.concatenate([[0.0], noise]))
    low = (c[4:] - c[:-4]) / 2.0
    low = np.concatenate([low, np.zeros(length - len(low))])
    high = noise - low / 2.0
    tail = low * np.exp(-6.9 * t / rt60) + high * np.exp(-6.9 * t / (0.5 * rt60))
    onset = int(rng.uniform(0.002, 0.02) * rate)
    tail[:onset] = 0.0
    tail *= np.sqrt(10 ** (-drr / 10) / max(float(np.sum(tail**2)), 1e-12))
    rir = tail
    rir[0] = 1.0
    for _ in range(int(rng.integers(3, 8)) if boxy else int(rng.integers(0, 3))):
        d = int(rng.uniform(0.0015, 0.012 if boxy else 0.03) * rate)
        if d < length:
            rir[d] += rng.uniform(-0.6, 0.6)
    return rir.astype(np.float32)


def stereo_reverb(
    x: np.ndarray, rate: int, rng: np.random.Generator, rt60: float, wet: float
) -> np.ndarray:
    """Stereo convolution reverb with a decaying-noise tail.

    Real recordings are made in rooms: the tail smears transients, decorrelates the two sides
    and fills the gaps, all things a codec's stereo and noise coding treat differently.
    """
    n = len(x)
    length = int(0.75 * rt60 * rate)  # the tail is 52 dB down by then
    t = np.arange(length, dtype=np.float32) / rate
    decay = np.exp(-6.9 * t / rt60) * np.minimum(1.0, t / 0.005)
    damping = rng.uniform(6000, 14000)  # air and walls absorb the treble first
    ir = coloured_noise(length, rate, rng, lambda f: lowpass(f, damping, 1), channels=2)
    ir = ir * decay[:, None]
    ir /= np.sqrt(np.sum(ir**2, axis=0, keepdims=True)) + 1e-12
    size = fast_fft_size(n + length, (3, 5))
    send = np.fft.rfft(x.mean(axis=1), size)
    tail = np.fft.irfft(np.fft.rfft(ir, size, axis=0) * send[:, None], size, axis=0)[:n]
    return x + wet * tail * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(tail**2)) + 1e-12))
