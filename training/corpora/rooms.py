"""Room responses: the reverberation a scene's place adds to its dry sources."""

from __future__ import annotations

import numpy as np


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
