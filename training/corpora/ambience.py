"""Outdoor ambience for the lossless corpus: room tone under rain, wind, birds, insects or
traffic.

Mostly wide, noise-like stereo material, which codecs code parametrically or starve of bits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.corpora.dsp import (
    LOSSLESS_TOP,
    add_at,
    band_top,
    coloured_noise,
    fast_fft_size,
    highpass,
    interpolating_table,
    lowpass,
    pan_stereo,
    pink_magnitude,
    random_gain,
    read_table,
    resonance,
    slow_curve,
    smooth,
    unit_rms,
)


def ambient_track(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """An outdoor scene: room tone under rain, wind, birds, insects or traffic.

    Mostly wide, noise-like material, which codecs code parametrically or starve of bits.
    """
    layers = [name for name, (_, chance, _) in AMBIENT_LAYERS.items() if rng.random() < chance]
    if not {"rain", "wind", "birds"} & set(layers):
        layers.append(str(rng.choice(["rain", "wind", "birds"])))
    out = coloured_noise(n, rate, rng, lambda f: pink_magnitude(f) * highpass(f, 30, 2), channels=2)
    out *= random_gain(-40, -30, rng)  # room tone, always there
    if rng.random() < 0.4:  # mains hum of some appliance
        t = np.arange(n, dtype=np.float32) / rate
        hum = sum(np.sin(2 * np.pi * 50.0 * k * t) / k**1.5 for k in range(1, 8))
        out += pan_stereo(hum * random_gain(-50, -38, rng), rng.uniform(-0.5, 0.5))
    for name in sorted(layers):
        build, _, (low, high) = AMBIENT_LAYERS[name]
        out += unit_rms(build(n, rate, rng)) * random_gain(low, high, rng)
    return out


def _rain(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Dense random clicks (drops) and a few ringing plinks, independent in each channel."""
    out = np.empty((n, 2), dtype=np.float32)
    density = rng.uniform(400, 4000)  # drops per second
    ring = rng.uniform(1500, 5000)
    bright = rng.uniform(4000, 12000)
    size = fast_fft_size(n, (3, 5))
    f = np.fft.rfftfreq(size, 1 / rate)
    low_cut = rng.uniform(300, 1500)
    drop_shape = (highpass(f, low_cut, 2) * lowpass(f, bright, 2)).astype(np.float32)
    plink_shape = (resonance(f, ring, 6) * 3).astype(np.float32)
    for ch in range(2):
        drops = _impulses(n, rng, density * n / rate)
        plinks = _impulses(n, rng, rng.uniform(5, 40) * n / rate)
        spec = np.fft.rfft(drops, size) * drop_shape + np.fft.rfft(plinks, size) * plink_shape
        out[:, ch] = np.fft.irfft(spec, size)[:n]
    hiss = coloured_noise(n, rate, rng, lambda f: highpass(f, 800, 1) * lowpass(f, bright, 1), 2)
    return unit_rms(out) + 0.3 * hiss


def _impulses(n: int, rng: np.random.Generator, count: float) -> np.ndarray:
    count = max(1, int(count))
    where = rng.integers(0, n, count)
    sizes = rng.lognormal(0.0, 0.8, count) * rng.choice([-1.0, 1.0], count)
    return np.bincount(where, sizes, minlength=n).astype(np.float32)


def _wind(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Low rumble, a whistling band and leaf rustle, each following the gusts."""
    gust = slow_curve(n, rate, rng, rng.uniform(0.2, 0.8))[:, None]
    low_fc, whistle, q = rng.uniform(200, 600), rng.uniform(400, 1400), rng.uniform(3, 8)
    low = coloured_noise(n, rate, rng, lambda f: lowpass(f, low_fc, 2) * highpass(f, 20, 2), 2)
    band = coloured_noise(n, rate, rng, lambda f: resonance(f, whistle, q), 2)
    rustle = rng.uniform(6000, 14000)
    leaves = coloured_noise(n, rate, rng, lambda f: highpass(f, 2500, 2) * lowpass(f, rustle, 1), 2)
    flutter = slow_curve(n, rate, rng, 12.0)[:, None]
    return (
        (0.2 + gust) * low
        + 0.5 * gust**2 * band
        + rng.uniform(0.05, 0.3) * gust**3 * (0.5 + flutter) * leaves
    )


def _birds(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((n, 2), dtype=np.float32)
    for _ in range(int(rng.integers(1, 5))):
        mono = np.zeros(n, dtype=np.float32)
        base, motif = rng.uniform(2000, 7000), _bird_motif(rng)
        t = rng.uniform(0, 2.0)
        while t * rate < n:
            for offset, chirp in motif:
                add_at(mono, int((t + offset) * rate), _chirp(base, *chirp, rate=rate, rng=rng))
            t += motif[-1][0] + rng.uniform(1.0, 5.0)
        out += pan_stereo(mono * random_gain(-12, 0, rng), rng.uniform(-0.9, 0.9))
    return out


def _bird_motif(rng: np.random.Generator) -> list[tuple[float, tuple[float, float, float, float]]]:
    """A bird's phrase: (onset, (seconds, start ratio, end ratio, trill Hz)) per chirp."""
    motif, t = [], 0.0
    for _ in range(int(rng.integers(2, 9))):
        seconds = rng.uniform(0.02, 0.15)
        shape = (seconds, rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.choice([0, 0, 30, 60]))
        motif.append((t, shape))
        t += seconds + rng.uniform(0.01, 0.12)
    return motif


def _chirp(
    base: float,
    seconds: float,
    start: float,
    end: float,
    trill: float,
    rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float64) / rate
    freq = base * (start + (end - start) * t / seconds) * (1 + 0.08 * np.sin(2 * np.pi * trill * t))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    envelope = np.sin(np.pi * t / seconds) ** 2
    sound = np.zeros(len(t))
    for h, level in ((1, 1.0), (2, 0.3), (3, 0.12), (4, 0.05)):
        audible = freq * h < band_top(rate, LOSSLESS_TOP)
        sound += level * audible * np.sin(h * phase)
    return (sound * envelope * rng.uniform(0.4, 1.0)).astype(np.float32)


def _insects(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Crickets: a high tone pulsed in groups."""
    pitch, pulse = rng.uniform(3500, 7000), rng.uniform(15, 40)
    k = np.arange(1, int(band_top(rate, LOSSLESS_TOP) / pitch) + 1, dtype=np.float64)
    tone = read_table(interpolating_table(0.5**k, rng.random(len(k))), pitch * np.arange(n) / rate)
    t = np.arange(n, dtype=np.float32) / rate
    gate = (np.sin(2 * np.pi * pulse * t) > 0.3) * (np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) > 0)
    return pan_stereo(tone * smooth(gate.astype(np.float32), 64), rng.uniform(-0.8, 0.8))


def _traffic(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Distant road: rumble plus cars passing from one side to the other."""
    rumble = coloured_noise(n, rate, rng, lambda f: lowpass(f, 250, 2) * highpass(f, 25, 2), 2)
    hiss = coloured_noise(n, rate, rng, lambda f: resonance(f, 1200, 0.6) * lowpass(f, 9000, 1), 2)
    grid = np.linspace(0, n / rate, int(n / rate * 50) + 2)  # gains change slowly: 50 Hz
    gains = np.zeros((len(grid), 2))
    for _ in range(int(rng.integers(1, 5))):
        when, width = rng.uniform(0, n / rate), rng.uniform(1.0, 3.0)
        swell = np.exp(-(((grid - when) / width) ** 2))
        side = np.clip((grid - when) / (2 * width), -1, 1) * rng.choice([-1, 1])
        angle = (side + 1) * np.pi / 4
        gains += np.stack([swell * np.cos(angle), swell * np.sin(angle)], axis=1)
    t = np.arange(n) / rate
    passing = np.stack([np.interp(t, grid, gains[:, ch]) for ch in range(2)], axis=1)
    return 0.6 * rumble + hiss * (0.1 + passing.astype(np.float32))


AMBIENT_LAYERS: dict[str, tuple[Callable[..., np.ndarray], float, tuple[float, float]]] = {
    "birds": (_birds, 0.6, (-14, -2)),  # builder, chance, level range in dB
    "insects": (_insects, 0.25, (-26, -14)),
    "rain": (_rain, 0.5, (-6, 0)),
    "traffic": (_traffic, 0.3, (-18, -6)),
    "wind": (_wind, 0.5, (-8, 0)),
}
