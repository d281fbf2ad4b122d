"""One scene clip: the place's sources into a bed and a dry buffer, the room, the device."""

from __future__ import annotations

import numpy as np

from training.corpora.devices import (
    band_limit,
    chain_bandwidth,
    compress,
    device_curve,
    device_profile,
    nonlinear,
)
from training.corpora.dsp import db_to_power, fast_fft_size, shaped, tilt_power
from training.corpora.rooms import room_impulse_response
from training.corpora.scene_beds import BED_SOURCES
from training.corpora.scene_context import Bed, ClipContext, Location, draw_motion
from training.corpora.scene_events import EVENT_SOURCES
from training.corpora.scene_voices import VOICE_SOURCES
from training.corpora.scenes import CLIP_KEEP, SCENES, draw_location

DRY_SOURCES = {**VOICE_SOURCES, **EVENT_SOURCES}


def _room_and_device(ctx: ClipContext, device: str) -> np.ndarray:
    """Reverberate the dry sources and apply the device response in one FFT convolution."""
    loc = ctx.location
    rir = room_impulse_response(ctx.rng, loc.rt60, loc.drr, ctx.rate, boxy=loc.vehicle > 0)
    size = fast_fft_size(len(ctx.dry) + len(rir), (3, 5, 7))
    spec = np.fft.rfft(ctx.dry, size)
    if len(rir) > 1:
        spec *= np.fft.rfft(rir, size)
    grid, amp = device_curve(device, ctx.rate)
    spec *= np.interp(np.fft.rfftfreq(size, 1.0 / ctx.rate), grid, amp).astype(np.float32)
    wet = np.fft.irfft(spec, size)
    return wet[ctx.pad : ctx.pad + ctx.n].astype(np.float32)


def clip_level(rng: np.random.Generator) -> float:
    """A recording's RMS level, dBFS: spread like real recordings (Kitchen20: median -33.5,
    10th to 90th percentile -48 to -22 dBFS), not the narrow band a normalising editor leaves.
    Quiet clips matter to codecs: their psychoacoustic models drop what falls below the
    threshold of hearing."""
    return float(np.clip(rng.normal(-34.0, 9.0), -55.0, -16.0))


def render_clip(
    location: Location,
    device: str,
    rng: np.random.Generator,
    seconds: float = 10.0,
    rate: int = 44100,
    brightness: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """One clip recorded at ``location`` on ``device``: float32 mono in [-1, 1].

    ``brightness`` (dB per octave around 1 kHz, a range drawn from per clip) tilts the whole
    mix, as a close microphone or a bright capsule would. (0, 0), the default, draws nothing,
    so generator 2.0's clips stay byte for byte what they were.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    profile = device_profile(device)
    recipe = SCENES[location.scene]
    n = int(seconds * rate)
    pad = int(0.5 * rate)  # events may ring in from before the clip starts
    motion = draw_motion(rng, seconds, recipe.vehicle) if recipe.vehicle else None
    dry = np.zeros(n + pad, np.float32)
    ctx = ClipContext(rng, rate, seconds, location, Bed(n, rate), dry, motion, pad)
    for name, level in location.levels.items():
        if SCENES[location.scene].sources[name][0] < 1.0 and rng.random() > CLIP_KEEP:
            continue
        level += rng.normal(0.0, 1.5)
        if name in BED_SOURCES:
            BED_SOURCES[name](ctx, level)
        else:
            DRY_SOURCES[name](ctx, level)
    wet = _room_and_device(ctx, device)
    scene_power = ctx.bed.mean_power() + float(np.mean(wet.astype(np.float64) ** 2))
    floor = tilt_power(ctx.bed.freqs, profile.floor_tilt)
    floor *= db_to_power(profile.floor_db) * scene_power / floor.sum()
    gain = profile.gain(ctx.bed.freqs)
    mix = wet + ctx.bed.render(rng, gain, floor)
    if brightness != (0.0, 0.0):
        slope = float(rng.uniform(*brightness))
        mix = shaped(mix, rate, lambda f: tilt_power(f, slope))
    mix *= np.float32(10 ** (clip_level(rng) / 20) / max(np.sqrt(np.mean(mix**2)), 1e-12))
    mix = compress(mix, rate, profile.compress)
    mix = nonlinear(mix, profile.drive, profile.asym)
    mix = band_limit(mix, rate, chain_bandwidth(rng))
    peak = float(np.max(np.abs(mix)))
    if peak > 0.98:
        mix *= np.float32(0.98 / peak)
    return np.ascontiguousarray(mix, dtype=np.float32)


def synth_clip(
    scene: str,
    device: str,
    rng: np.random.Generator,
    seconds: float = 10.0,
    rate: int = 44100,
    brightness: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """A clip of ``scene`` on ``device`` at a freshly drawn location: float32 (samples,)."""
    return render_clip(draw_location(scene, rng), device, rng, seconds, rate, brightness)
