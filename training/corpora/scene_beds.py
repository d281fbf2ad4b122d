"""The noise-like scene sources, added as power spectra to the clip's noise bed.

Air, traffic, wind, ventilation, crowds, cabins, rails and water are stationary enough to be
shaped in the short-time Fourier domain, where one inverse FFT renders all of them together.
"""

from __future__ import annotations

import numpy as np

from training.corpora.dsp import (
    band_power,
    bump_power,
    db_to_power,
    gaussian_swells,
    tilt_power,
    wander,
)
from training.corpora.scene_context import ClipContext, Source


def _bed_air(ctx: ClipContext, level: float) -> None:
    """Distant everything plus air: the broadband hiss that keeps real scenes full-band."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(300, 1500), hi=rng.uniform(17000, 21000), order=1)
    shape *= tilt_power(f, rng.uniform(-3.0, -1.0), 2000.0)
    ctx.bed.add(shape, np.exp(0.1 * wander(rng, ctx.bed.times, 0.5, ctx.seconds)), level)


def _bed_traffic(ctx: ClipContext, level: float) -> None:
    """Distant traffic: the low rumble that many outdoor and vehicle scenes share."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=25, hi=rng.uniform(120, 450), order=1)
    shape += (
        db_to_power(rng.uniform(-22, -12)) * bump_power(f, rng.uniform(600, 1500), 1.2, 20) / 100
    )
    env = np.exp(0.35 * wander(rng, ctx.bed.times, 0.3, ctx.seconds))
    ctx.bed.add(shape, env, level)


def _bed_passby(ctx: ClipContext, level: float) -> None:
    """Individual vehicles passing: tyre noise swelling and fading over a few seconds."""
    f, rng, t = ctx.bed.freqs, ctx.rng, ctx.bed.times
    shape = band_power(f, lo=40, hi=rng.uniform(3000, 8000), order=1)
    shape *= bump_power(f, rng.uniform(500, 1400), 1.3, rng.uniform(6, 12))
    centres = ctx.times(ctx.location.rates.get("passby", 0.3) * ctx.seconds)
    widths = rng.uniform(0.6, 2.2, len(centres))
    env = 0.01 + gaussian_swells(t, centres, widths, db_to_power(rng.uniform(-8, 0, len(centres))))
    ctx.bed.add(shape, env, level)


def _bed_wind(ctx: ClipContext, level: float) -> None:
    """Wind on the microphone: strong, gusty, almost all below a few hundred hertz."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=10, hi=rng.uniform(60, 220), order=2) + 1e-3 * band_power(f, hi=2000)
    gust = np.exp(rng.uniform(0.8, 1.6) * wander(rng, ctx.bed.times, 0.7, ctx.seconds))
    ctx.cache["gust"] = gust
    ctx.bed.add(shape, gust, level)


def _bed_rustle(ctx: ClipContext, level: float) -> None:
    """Leaves in the wind: broadband high-frequency noise that follows the gusts."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(600, 1500), hi=rng.uniform(7000, 12000), order=1)
    gust = ctx.cache.get("gust")
    if gust is None:
        gust = np.exp(0.8 * wander(rng, ctx.bed.times, 0.7, ctx.seconds))
    flutter = np.exp(0.3 * wander(rng, ctx.bed.times, 8.0, ctx.seconds))
    ctx.bed.add(shape, gust**1.5 * flutter, level)


def _bed_hvac(ctx: ClipContext, level: float) -> None:
    """Ventilation: steady pinkish noise with a broad low-mid hump, in every big building."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=40, hi=rng.uniform(4000, 9000), order=1) * tilt_power(f, -3.0, 200.0)
    shape *= bump_power(f, rng.uniform(120, 600), 1.0, rng.uniform(4, 10))
    ctx.bed.add(shape, np.exp(0.05 * wander(rng, ctx.bed.times, 0.2, ctx.seconds)), level)


def _bed_crowd(ctx: ClipContext, level: float) -> None:
    """Many distant talkers: speech-shaped noise whose syllabic flutter fades as crowds grow."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=150, hi=5000, order=2) * bump_power(f, rng.uniform(400, 900), 1.2, 8)
    shape += 0.02 * band_power(f, lo=3500, hi=9000, order=1)
    depth = rng.uniform(0.1, 0.5)
    env = np.exp(depth * wander(rng, ctx.bed.times, 4.0, ctx.seconds))
    env *= np.exp(0.3 * wander(rng, ctx.bed.times, 0.2, ctx.seconds))
    ctx.bed.add(shape, env, level)


def _speed_envelope(ctx: ClipContext, power: float, idle: float) -> np.ndarray:
    if ctx.motion is None:
        return np.exp(0.4 * wander(ctx.rng, ctx.bed.times, 0.3, ctx.seconds))
    return (idle + ctx.motion.at(ctx.bed.times)) ** power


def _bed_cabin(ctx: ClipContext, level: float) -> None:
    """Inside a vehicle: boomy low noise with cabin modes, louder with speed."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=25, hi=rng.uniform(150, 500), order=2) + 3e-3 * band_power(f, hi=6000)
    for _ in range(rng.integers(1, 4)):
        shape *= bump_power(f, rng.uniform(40, 260), 0.15, rng.uniform(5, 12))
    ctx.bed.add(shape, _speed_envelope(ctx, 2.0, 0.25), level)


def _bed_roar(ctx: ClipContext, level: float) -> None:
    """Wheel-rail roar: mid-band noise, a train's loudest part, following its speed."""
    f, rng, t = ctx.bed.freqs, ctx.rng, ctx.bed.times
    shape = band_power(f, lo=70, hi=rng.uniform(1800, 4000), order=2)
    shape *= bump_power(f, rng.uniform(250, 900), 0.8, rng.uniform(4, 10))
    if ctx.location.scene == "metro_station":  # a train arrives or leaves during the clip
        centre = rng.uniform(-2.0, ctx.seconds + 2.0, 1)
        env = 0.03 + gaussian_swells(t, centre, rng.uniform(1.5, 4.0, 1), np.ones(1))
    else:
        env = _speed_envelope(ctx, 2.5, 0.05) * np.exp(0.2 * wander(rng, t, 3.0, ctx.seconds))
    ctx.bed.add(shape, env, level)


def _bed_water(ctx: ClipContext, level: float) -> None:
    """A fountain: bright, bubbling broadband noise (parks and squares)."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(200, 600), hi=rng.uniform(8000, 14000), order=1)
    shape *= bump_power(f, rng.uniform(1500, 4000), 1.5, 4)
    ctx.bed.add(shape, np.exp(0.25 * wander(rng, ctx.bed.times, 15.0, ctx.seconds)), level)


BED_SOURCES: dict[str, Source] = {
    "air": _bed_air,
    "traffic": _bed_traffic,
    "passby": _bed_passby,
    "wind": _bed_wind,
    "rustle": _bed_rustle,
    "hvac": _bed_hvac,
    "crowd": _bed_crowd,
    "cabin": _bed_cabin,
    "roar": _bed_roar,
    "water": _bed_water,
}
