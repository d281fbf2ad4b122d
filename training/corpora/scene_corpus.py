"""A synthetic acoustic-scene corpus laid out like TAU Urban Acoustic Scenes 2020 Mobile.

No real scene recordings ship with this project, yet training, the codec-robustness reports and
the end-to-end tests need a corpus with the same file layout, splits and device structure. The
audio here is generated, never recorded, and it is built to be hard in the ways real scenes are:

- sources are shared between scenes (babble, traffic, footsteps, announcements, music, engines,
  rails, wind, ventilation) with scene-dependent probabilities and levels, so that the pairs the
  TAU challenge confuses (metro/tram, street_pedestrian/public_square, airport/shopping_mall)
  stay confusable;
- the cues that do separate scenes (birdsong, brake squeal, cutlery, door chimes) are only in
  some clips, and several live above 4 kHz, where lossy codecs cut first;
- each recording location fixes its own mix, room and level, and the corpus splits by location,
  so a model cannot memorise a place;
- every device colours the audio with a fixed response, band limits, compression and a noise
  floor; the evaluation side holds three devices (s4-s6) that training never sees.

Speed matters because a TAU-sized corpus has ~14 000 ten-second clips: stationary noise beds are
built in the short-time Fourier domain (one batched inverse FFT for all of them), tonal sources
come from wavetables, events are synthesised only where they sound, and room and device filters
share one FFT convolution.
"""

from __future__ import annotations

import csv
import functools
import math
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc.labels import DCASE_CLASSES
from training.corpora.dsp import (
    SCENE_TOP,
    VOWEL_FORMANTS,
    add_at,
    band_power,
    band_top,
    bump_power,
    db_to_power,
    decay,
    fast_fft_size,
    gaussian_swells,
    noise_burst,
    phase_index,
    struck_partials,
    tilt_power,
    tone,
    unit_table,
    wander,
)

GENERATOR_VERSION = "1.0"

FINE_CLASSES = DCASE_CLASSES
TRAIN_DEVICES = ("a", "b", "c", "s1", "s2", "s3")
EVAL_DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
_CITIES = (
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)

_BED_FRAME = 2048  # STFT frame of the noise beds; 21.5 Hz bins resolve the low rumbles


# ---------------------------------------------------------------------------------------------
# The noise bed: stationary-ish sources summed as power spectrograms, rendered with random phase


class _Bed:
    """Power spectrogram of every noise-like source; one random-phase inverse STFT renders all.

    Synthesising each noise source separately would cost two full-length FFTs apiece; a power
    spectrogram is cheap to add to, and random phases give Gaussian noise with exactly the
    intended spectro-temporal envelope.
    """

    def __init__(self, n: int, rate: int):
        self.n, self.rate = n, rate
        self.hop = _BED_FRAME // 2
        self.frames = n // self.hop + 2
        self.freqs = np.fft.rfftfreq(_BED_FRAME, 1.0 / rate)
        self.times = np.arange(self.frames) * self.hop / rate  # frame i is centred on i * hop
        self.power = np.zeros((self.frames, len(self.freqs)), np.float32)

    def add(self, shape: np.ndarray, envelope: np.ndarray | None, level_db: float) -> None:
        """Add a source whose mean power over the clip is ``level_db`` (shape times envelope)."""
        shape = shape / max(float(shape.sum()), 1e-30)
        env = np.ones(self.frames) if envelope is None else envelope / max(envelope.mean(), 1e-30)
        self.power += np.outer(env * db_to_power(level_db), shape).astype(np.float32)

    def mean_power(self) -> float:
        return float(self.power.sum(axis=1).mean())

    def render(self, rng: np.random.Generator, gain: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """Random-phase inverse STFT with a sine window (constant variance at 50 % overlap)."""
        power = self.power * gain.astype(np.float32) + floor.astype(np.float32)
        noise = rng.standard_normal((self.frames, len(self.freqs), 2), dtype=np.float32)
        spec = noise.view(np.complex64)[..., 0] * np.sqrt(power * (_BED_FRAME**2 / 4))
        frames = np.fft.irfft(spec, _BED_FRAME, axis=1).astype(np.float32)
        frames *= np.sin(np.pi * (np.arange(_BED_FRAME) + 0.5) / _BED_FRAME).astype(np.float32)
        half = self.hop
        out = (frames[:-1, half:] + frames[1:, :half]).ravel()
        return out[: self.n]


# ---------------------------------------------------------------------------------------------
# Motion


@dataclass(frozen=True)
class _Motion:
    """A vehicle's speed (0..1) over time: engines, rails, cabin roar and doors all follow it."""

    knots_t: np.ndarray
    knots_v: np.ndarray
    top_speed: float  # m/s at speed 1

    def at(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.knots_t, self.knots_v)

    def stops(self, seconds: float) -> np.ndarray:
        """Times inside stops, where doors open and chimes sound."""
        t = np.arange(0.0, seconds, 0.05)
        return t[self.at(t) < 0.05]

    def braking(self, seconds: float) -> np.ndarray:
        """Times of deceleration at speed, where brakes squeal."""
        t = np.arange(0.0, seconds, 0.05)
        v = self.at(t)
        return t[(np.gradient(v) < -1e-3) & (v > 0.05) & (v < 0.7)]


def _draw_motion(rng: np.random.Generator, seconds: float, top_speed: float) -> _Motion:
    t = [-rng.uniform(0.0, 6.0)]
    v = [rng.uniform(0.2, 1.0)]
    while t[-1] < seconds + 1.0:
        stop = rng.random() < 0.3
        dur = rng.uniform(2.5, 6.0) if stop else rng.uniform(1.5, 7.0)
        value = 0.0 if stop else rng.uniform(0.3, 1.0)
        ramp = rng.uniform(1.0, 3.0)
        t += [t[-1] + ramp, t[-1] + ramp + dur]
        v += [value, value]
    return _Motion(np.array(t), np.array(v), top_speed)


# ---------------------------------------------------------------------------------------------
# Scene rendering context


@dataclass
class _Ctx:
    rng: np.random.Generator
    rate: int
    seconds: float
    location: _Location
    bed: _Bed
    dry: np.ndarray
    motion: _Motion | None
    pad: int
    cache: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.seconds * self.rate)

    def place(self, start_s: float, signal: np.ndarray, level_db: float) -> None:
        """Mix an event in at ``start_s`` (it may start before or run past the clip)."""
        rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))
        if rms <= 0:
            return
        start = int(start_s * self.rate) + self.pad
        add_at(self.dry, start, signal * (10 ** (level_db / 20) / rms))

    def add_full(self, signal: np.ndarray, level_db: float) -> None:
        """Mix in a source that spans the whole padded clip, normalised over the clip."""
        rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))
        if rms > 0:
            self.dry += signal * np.float32(10 ** (level_db / 20) / rms)

    def times(self, count: float) -> np.ndarray:
        """Poisson event onsets over the clip, including some that started just before it."""
        k = self.rng.poisson(max(count, 0.0) * (self.seconds + 1.0) / self.seconds)
        return np.sort(self.rng.uniform(-1.0, self.seconds, k))

    def full_times(self) -> np.ndarray:
        if "full_times" not in self.cache:
            self.cache["full_times"] = (np.arange(len(self.dry)) - self.pad) / self.rate
        return self.cache["full_times"]


# ---------------------------------------------------------------------------------------------
# Bed sources


def _bed_air(ctx: _Ctx, level: float) -> None:
    """Distant everything plus air: the broadband hiss that keeps real scenes full-band."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(300, 1500), hi=rng.uniform(17000, 21000), order=1)
    shape *= tilt_power(f, rng.uniform(-3.0, -1.0), 2000.0)
    ctx.bed.add(shape, np.exp(0.1 * wander(rng, ctx.bed.times, 0.5, ctx.seconds)), level)


def _bed_traffic(ctx: _Ctx, level: float) -> None:
    """Distant traffic: the low rumble that many outdoor and vehicle scenes share."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=25, hi=rng.uniform(120, 450), order=1)
    shape += (
        db_to_power(rng.uniform(-22, -12)) * bump_power(f, rng.uniform(600, 1500), 1.2, 20) / 100
    )
    env = np.exp(0.35 * wander(rng, ctx.bed.times, 0.3, ctx.seconds))
    ctx.bed.add(shape, env, level)


def _bed_passby(ctx: _Ctx, level: float) -> None:
    """Individual vehicles passing: tyre noise swelling and fading over a few seconds."""
    f, rng, t = ctx.bed.freqs, ctx.rng, ctx.bed.times
    shape = band_power(f, lo=40, hi=rng.uniform(3000, 8000), order=1)
    shape *= bump_power(f, rng.uniform(500, 1400), 1.3, rng.uniform(6, 12))
    centres = ctx.times(ctx.location.rates.get("passby", 0.3) * ctx.seconds)
    widths = rng.uniform(0.6, 2.2, len(centres))
    env = 0.01 + gaussian_swells(t, centres, widths, db_to_power(rng.uniform(-8, 0, len(centres))))
    ctx.bed.add(shape, env, level)


def _bed_wind(ctx: _Ctx, level: float) -> None:
    """Wind on the microphone: strong, gusty, almost all below a few hundred hertz."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=10, hi=rng.uniform(60, 220), order=2) + 1e-3 * band_power(f, hi=2000)
    gust = np.exp(rng.uniform(0.8, 1.6) * wander(rng, ctx.bed.times, 0.7, ctx.seconds))
    ctx.cache["gust"] = gust
    ctx.bed.add(shape, gust, level)


def _bed_rustle(ctx: _Ctx, level: float) -> None:
    """Leaves in the wind: broadband high-frequency noise that follows the gusts."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(600, 1500), hi=rng.uniform(7000, 12000), order=1)
    gust = ctx.cache.get("gust")
    if gust is None:
        gust = np.exp(0.8 * wander(rng, ctx.bed.times, 0.7, ctx.seconds))
    flutter = np.exp(0.3 * wander(rng, ctx.bed.times, 8.0, ctx.seconds))
    ctx.bed.add(shape, gust**1.5 * flutter, level)


def _bed_hvac(ctx: _Ctx, level: float) -> None:
    """Ventilation: steady pinkish noise with a broad low-mid hump, in every big building."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=40, hi=rng.uniform(4000, 9000), order=1) * tilt_power(f, -3.0, 200.0)
    shape *= bump_power(f, rng.uniform(120, 600), 1.0, rng.uniform(4, 10))
    ctx.bed.add(shape, np.exp(0.05 * wander(rng, ctx.bed.times, 0.2, ctx.seconds)), level)


def _bed_crowd(ctx: _Ctx, level: float) -> None:
    """Many distant talkers: speech-shaped noise whose syllabic flutter fades as crowds grow."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=150, hi=5000, order=2) * bump_power(f, rng.uniform(400, 900), 1.2, 8)
    shape += 0.02 * band_power(f, lo=3500, hi=9000, order=1)
    depth = rng.uniform(0.1, 0.5)
    env = np.exp(depth * wander(rng, ctx.bed.times, 4.0, ctx.seconds))
    env *= np.exp(0.3 * wander(rng, ctx.bed.times, 0.2, ctx.seconds))
    ctx.bed.add(shape, env, level)


def _speed_envelope(ctx: _Ctx, power: float, idle: float) -> np.ndarray:
    if ctx.motion is None:
        return np.exp(0.4 * wander(ctx.rng, ctx.bed.times, 0.3, ctx.seconds))
    return (idle + ctx.motion.at(ctx.bed.times)) ** power


def _bed_cabin(ctx: _Ctx, level: float) -> None:
    """Inside a vehicle: boomy low noise with cabin modes, louder with speed."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=25, hi=rng.uniform(150, 500), order=2) + 3e-3 * band_power(f, hi=6000)
    for _ in range(rng.integers(1, 4)):
        shape *= bump_power(f, rng.uniform(40, 260), 0.15, rng.uniform(5, 12))
    ctx.bed.add(shape, _speed_envelope(ctx, 2.0, 0.25), level)


def _bed_roar(ctx: _Ctx, level: float) -> None:
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


def _bed_water(ctx: _Ctx, level: float) -> None:
    """A fountain: bright, bubbling broadband noise (parks and squares)."""
    f, rng = ctx.bed.freqs, ctx.rng
    shape = band_power(f, lo=rng.uniform(200, 600), hi=rng.uniform(8000, 14000), order=1)
    shape *= bump_power(f, rng.uniform(1500, 4000), 1.5, 4)
    ctx.bed.add(shape, np.exp(0.25 * wander(rng, ctx.bed.times, 15.0, ctx.seconds)), level)


# ---------------------------------------------------------------------------------------------
# Voices (near talkers, children, announcements)

_VOWELS = tuple(VOWEL_FORMANTS[v] for v in ("a", "i", "u", "e", "o", "oo", "ae"))


def _vowel_tables(
    f0: float, scale: float, band: tuple[float, float], rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One wavetable per vowel: a glottal-like harmonic series through three formants."""
    k = np.arange(1, int(min(band[1], band_top(rate, SCENE_TOP)) / f0) + 1)
    fk = k * f0
    tables = []
    for formants in _VOWELS:
        env = sum(
            1.0 / (1.0 + ((fk - fm * scale) / (60 + 0.06 * fm)) ** 2) * 0.6**i
            for i, fm in enumerate(formants)
        )
        amps = (env + 0.02) / k * (fk >= band[0])
        tables.append(unit_table(amps, rng))
    return np.stack(tables)


@dataclass(frozen=True)
class _Speaker:
    f0: float
    scale: float


def _speech(
    ctx: _Ctx, speaker: _Speaker, seconds: float, band: tuple[float, float] = (70, 8000)
) -> np.ndarray:
    """A talk spurt: syllables with vowel changes, intonation, pauses and fricatives."""
    rng, rate = ctx.rng, ctx.rate
    key = ("vowels", speaker, band)
    if key not in ctx.cache:
        ctx.cache[key] = _vowel_tables(speaker.f0, speaker.scale, band, rate, rng)
    tables = ctx.cache[key]
    n = int(seconds * rate)
    durs = rng.uniform(0.1, 0.32, int(seconds / 0.1) + 2)
    edges = np.cumsum(durs)
    t = np.arange(n) / rate
    syl = np.searchsorted(edges, t, side="right")
    u = 1.0 - (edges[syl] - t) / durs[syl]
    voiced = (rng.random(len(durs)) > 0.18) * rng.uniform(0.4, 1.0, len(durs))
    env = np.sqrt(np.sin(np.pi * u)) * voiced[syl]
    contour = 1.0 + 0.07 * wander(rng, t, 3.0, seconds) - 0.1 * t / max(seconds, 1e-3)
    idx = phase_index(speaker.f0 * contour, rate, rng)
    out = tables[rng.integers(0, len(tables), len(durs))[syl], idx] * env.astype(np.float32)
    for onset in edges[:-1][rng.random(len(edges) - 1) < 0.3]:
        m = int(rng.uniform(0.04, 0.12) * rate)
        start = int(onset * rate)
        if start + m < n:
            lo = min(rng.uniform(2500, 5000), band[1] * 0.6)
            fric = noise_burst(
                rng, m, rate, lambda f, lo=lo: band_power(f, lo=lo, hi=band[1], order=2)
            )
            out[start : start + m] += 0.3 * fric * np.hanning(m).astype(np.float32)
    return out


def _draw_speaker(rng: np.random.Generator, child: bool = False) -> _Speaker:
    if child:
        return _Speaker(float(rng.uniform(220, 380)), float(rng.uniform(1.2, 1.35)))
    if rng.random() < 0.5:
        return _Speaker(float(rng.uniform(85, 150)), float(rng.uniform(0.95, 1.05)))
    return _Speaker(float(rng.uniform(165, 260)), float(rng.uniform(1.1, 1.2)))


def _talkers(ctx: _Ctx, level: float, child: bool) -> None:
    rng = ctx.rng
    speakers = [_draw_speaker(rng, child) for _ in range(rng.integers(1, 5))]
    rate_key = "children" if child else "voices"
    for start in ctx.times(ctx.location.rates.get(rate_key, 0.4) * ctx.seconds):
        speaker = speakers[rng.integers(len(speakers))]
        spurt = _speech(ctx, speaker, rng.uniform(0.6, 3.5))
        ctx.place(start, spurt, level + rng.uniform(-6, 3))


def _src_voices(ctx: _Ctx, level: float) -> None:
    """Near talkers, the foreground babble of every crowded scene."""
    _talkers(ctx, level, child=False)


def _src_children(ctx: _Ctx, level: float) -> None:
    """Children's higher voices (parks, squares, malls)."""
    _talkers(ctx, level, child=True)


def _chime_notes(
    ctx: _Ctx, root: float, steps: Iterable[int], gap: float, tau: float
) -> np.ndarray:
    """Struck notes a few semitones apart: the ding-dong that makes people look up."""
    rng, rate = ctx.rng, ctx.rate
    steps = list(steps)
    out = np.zeros(int((gap * len(steps) + 3 * tau) * ctx.rate), np.float32)
    for i, step in enumerate(steps):
        f = root * 2 ** (step / 12)
        note = struck_partials(
            (f, 2 * f, 3 * f, 4.2 * f),
            (1, 0.4, 0.2, 0.1),
            (tau,) * 4,
            int(3 * tau * rate),
            rate,
            rng,
        )
        s = int(i * gap * rate)
        out[s : s + len(note)] += note[: len(out) - s]
    return out


def _src_pa(ctx: _Ctx, level: float) -> None:
    """Public address: a chime, then telephone-band speech (airports, stations, vehicles)."""
    rng, loc = ctx.rng, ctx.location
    for start in ctx.times(loc.rates.get("pa", 0.12) * ctx.seconds):
        chime = _chime_notes(ctx, loc.chime_root, loc.chime_steps, rng.uniform(0.3, 0.5), 0.5)
        ctx.place(start, chime, level - rng.uniform(2, 6))
        speaker = loc.announcer
        talk = _speech(ctx, speaker, rng.uniform(2.0, 5.0), band=(300, 3400))
        ctx.place(start + len(chime) / ctx.rate * 0.7, np.tanh(2.0 * talk), level)


def _src_music(ctx: _Ctx, level: float) -> None:
    """Background music from small speakers: chords, a bass line and sometimes drums."""
    rng, rate, n = ctx.rng, ctx.rate, len(ctx.dry)
    out = np.zeros(n, np.float32)
    beat = 60.0 / rng.uniform(75, 135)
    bar = 4 * beat * rng.choice([1, 2])
    timbre = unit_table(rng.uniform(0.2, 1.0, 12) / np.arange(1, 13) ** rng.uniform(0.8, 2.0), rng)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    progression = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (2, 5, 9)]
    start = -rng.uniform(0, bar)
    while start * rate < n:
        chord = progression[rng.integers(len(progression))]
        s0, s1 = max(int(start * rate), 0), min(int((start + bar) * rate), n)
        if s1 > s0:
            m = s1 - s0
            env = np.minimum(np.arange(m) / (0.02 * rate), 1.0).astype(np.float32)
            for step in (*chord, chord[0] - 12):
                f = 2 * root * 2 ** (step / 12)
                out[s0:s1] += timbre[phase_index(np.full(m, f), rate, rng)] * env * 0.3
        start += bar
    if rng.random() < 0.6:
        kick = tone(np.linspace(110, 45, int(0.12 * rate)), int(0.12 * rate), rate, rng)
        kick *= decay(len(kick), rate, 0.05)
        for b in np.arange(-rng.uniform(0, beat), n / rate, beat):
            s = int(b * rate)
            if 0 <= s < n - len(kick):
                out[s : s + len(kick)] += kick * 0.8
            h = int((b + beat / 2) * rate)
            m = int(0.04 * rate)
            if 0 <= h < n - m:
                hat = noise_burst(rng, m, rate, lambda f: band_power(f, lo=7000, hi=12000, order=2))
                out[h : h + m] += 0.15 * hat * decay(m, rate, 0.012)
    ctx.add_full(np.tanh(1.5 * out) * ctx.location.music_gain, level)


# ---------------------------------------------------------------------------------------------
# Engines, rails and vehicles


def _src_engine(ctx: _Ctx, level: float) -> None:
    """Harmonic drones: diesel firing, electric-motor whine or idling cars, by scene."""
    rng, rate, loc = ctx.rng, ctx.rate, ctx.location
    t = ctx.full_times()
    lo, hi = loc.engine_f0
    slope = rng.uniform(0.6, 1.6)
    k = np.arange(1, 40)
    amps = k**-slope * 10 ** (rng.uniform(-8, 8, len(k)) / 20)
    if loc.engine_kind == "motor":  # inverter/motor whine: few, strong partials
        amps = amps * (rng.random(len(k)) < 0.25)
        amps[0] = 1.0
    table = unit_table(
        amps * (k * hi < band_top(rate, SCENE_TOP)), rng
    )  # no partial may alias at top speed
    if ctx.motion is not None:
        v = ctx.motion.at(t)
        if loc.engine_kind == "diesel":  # rpm climbs through each gear, then drops
            f0 = lo + (hi - lo) * ((v * 3.0) % 1.0) * 0.7 + (hi - lo) * 0.3 * v
            amp = 0.5 + v
        else:
            f0 = lo + (hi - lo) * v
            amp = v**1.5 + 0.02
        sig = table[phase_index(f0, rate, rng)] * amp.astype(np.float32)
        ctx.add_full(sig, level)
        return
    for _ in range(rng.integers(1, 4)):
        f0 = rng.uniform(lo, hi) * np.exp(0.15 * wander(rng, t, 0.4, ctx.seconds))
        centre = rng.uniform(-2, ctx.seconds + 2, 1)
        swell = 0.1 + gaussian_swells(t, centre, rng.uniform(1.0, 4.0, 1), np.ones(1))
        sig = table[phase_index(f0, rate, rng)] * swell.astype(np.float32)
        ctx.add_full(sig, level + rng.uniform(-6, 0))


def _click(ctx: _Ctx, bright: float) -> np.ndarray:
    """A wheel over a joint: a short thump with a metallic ring on top."""
    rng, rate = ctx.rng, ctx.rate
    m = int(rng.uniform(0.03, 0.07) * rate)
    hi = 1500 + 4000 * bright
    thump = noise_burst(rng, m, rate, lambda f: band_power(f, lo=60, hi=hi, order=1)) * decay(
        m, rate, 0.012
    )
    ring = struck_partials(
        rng.uniform(1200, 5000, 3), (0.3, 0.2, 0.1), (0.03, 0.02, 0.015), m, rate, rng
    )
    return thump + bright * ring


def _src_rails(ctx: _Ctx, level: float) -> None:
    """Rhythmic clack-clack of axles over rail joints, its tempo set by the vehicle's speed."""
    rng, loc = ctx.rng, ctx.location
    motion = ctx.motion or _draw_motion(rng, ctx.seconds, 15.0)
    grid = np.arange(-1.0, ctx.seconds + 0.5, 0.01)
    x = np.cumsum(motion.at(grid) * motion.top_speed * 0.01) + 1e-6 * np.arange(len(grid))
    joint = loc.joint_spacing
    offsets = np.array([0.0, 2.5, loc.bogie_gap, loc.bogie_gap + 2.5])
    joints = np.arange(x[0] - joint, x[-1] + joint, joint) + rng.uniform(0, joint)
    targets = np.sort((joints[:, None] + offsets[None, :]).ravel())
    targets = targets[(targets > x[0]) & (targets < x[-1])]
    onsets = np.interp(targets, x, grid)
    for onset in onsets:
        v = float(motion.at(np.array([onset]))[0])
        ctx.place(onset, _click(ctx, loc.click_bright), level + 20 * math.log10(v + 0.1))


def _src_trolley(ctx: _Ctx, level: float) -> None:
    """Suitcase and trolley wheels over tile joints: fast, regular ticking that comes and goes."""
    rng = ctx.rng
    for start in ctx.times(ctx.location.rates.get("trolley", 0.15) * ctx.seconds):
        period = rng.uniform(0.12, 0.35)
        count = int(rng.uniform(1.5, 5.0) / period)
        swell = np.hanning(count + 2)[1:-1]
        for i in range(count):
            ctx.place(
                start + i * period, _click(ctx, 0.2), level + 20 * math.log10(swell[i] + 0.05)
            )


def _src_footsteps(ctx: _Ctx, level: float) -> None:
    """Walkers passing: low thuds and, for hard shoes, a bright heel click."""
    rng, rate = ctx.rng, ctx.rate
    for start in ctx.times(ctx.location.rates.get("footsteps", 0.25) * ctx.seconds):
        period = rng.uniform(0.45, 0.65)
        count = int(rng.uniform(2.0, 8.0) / period)
        heel = rng.uniform(0.0, 1.0) * ctx.location.hard_floor
        swell = np.hanning(count + 2)[1:-1]
        for i in range(count):
            m = int(0.06 * rate)
            thud = noise_burst(rng, m, rate, lambda f: band_power(f, lo=50, hi=700, order=2))
            step = thud * decay(m, rate, 0.015)
            if heel > 0.1:
                c = int(0.008 * rate)
                click = noise_burst(
                    rng, c, rate, lambda f: band_power(f, lo=1500, hi=12000, order=1)
                )
                step[:c] += heel * 2.0 * click * decay(c, rate, 0.002, 0.0002)
            when = start + i * period * rng.uniform(0.97, 1.03)
            ctx.place(when, step, level + 20 * math.log10(swell[i] + 0.1))


def _src_door(ctx: _Ctx, level: float) -> None:
    """Door warnings at stops (beeps or a two-tone chime) and the pneumatic hiss of the doors."""
    rng, rate, loc = ctx.rng, ctx.rate, ctx.location
    stops = ctx.motion.stops(ctx.seconds) if ctx.motion is not None else np.zeros(0)
    times = [float(rng.choice(stops))] if len(stops) else list(ctx.times(0.08 * ctx.seconds))
    for when in times:
        if loc.door_beeps:
            f = loc.chime_root * 2
            m = int(0.15 * rate)
            beep = tone(f, m, rate, rng) + 0.3 * tone(3 * f, m, rate, rng)
            beep *= np.hanning(m).astype(np.float32) ** 0.2
            for i in range(int(rng.integers(3, 7))):
                ctx.place(when + i * 0.3, beep, level)
        else:
            chime = _chime_notes(ctx, loc.chime_root * 1.5, (4, 0), 0.45, 0.6)
            ctx.place(when, chime, level)
        m = int(rng.uniform(0.3, 0.8) * rate)
        hiss = noise_burst(rng, m, rate, lambda f: band_power(f, lo=1500, hi=10000, order=1))
        hiss *= np.hanning(m).astype(np.float32)
        ctx.place(when + rng.uniform(0.3, 1.5), hiss, level - rng.uniform(4, 10))


def _src_squeal(ctx: _Ctx, level: float) -> None:
    """Brake squeal: a narrowband 6-12 kHz whistle with vibrato, mostly while braking."""
    rng, rate = ctx.rng, ctx.rate
    braking = ctx.motion.braking(ctx.seconds) if ctx.motion is not None else np.zeros(0)
    count = int(rng.integers(1, 3))
    when = rng.choice(braking, count) if len(braking) else rng.uniform(-0.5, ctx.seconds, count)
    for start in np.atleast_1d(when):
        m = int(rng.uniform(0.4, 2.5) * rate)
        f0 = min(rng.uniform(6000, 12000), 0.42 * rate)
        t = np.arange(m) / rate
        f = f0 * (
            1 + 0.006 * np.sin(2 * np.pi * rng.uniform(4, 10) * t) + rng.uniform(-0.02, 0.02) * t
        )
        sig = tone(f, m, rate, rng) + 0.2 * tone(
            np.minimum(2 * f, band_top(rate, SCENE_TOP)), m, rate, rng
        )
        env = np.abs(np.sin(np.pi * t / t[-1])) ** rng.uniform(0.3, 2.0)
        env *= np.exp(0.4 * wander(rng, t, 6.0, t[-1]))
        ctx.place(start, sig * env.astype(np.float32), level)


def _src_horn(ctx: _Ctx, level: float) -> None:
    """Car horns: short, loud, two-tone and harmonic-rich."""
    rng, rate = ctx.rng, ctx.rate
    table = unit_table(1.0 / np.arange(1, 25) ** 0.9, rng)
    for start in ctx.times(ctx.location.rates.get("horn", 0.06) * ctx.seconds):
        m = int(rng.uniform(0.15, 1.0) * rate)
        f = rng.uniform(330, 480)
        sig = table[phase_index(np.full(m, f), rate, rng)]
        sig = sig + table[phase_index(np.full(m, f * 1.26), rate, rng)]
        env = np.minimum(np.arange(m) / (0.01 * rate), 1.0) * np.minimum(
            (m - np.arange(m)) / (0.02 * rate), 1.0
        )
        ctx.place(start, sig * env.astype(np.float32), level)


# ---------------------------------------------------------------------------------------------
# High-frequency cues: birds, cutlery, bells, beeps, hum


def _src_birds(ctx: _Ctx, level: float) -> None:
    """Birdsong: phrases of 3-8 kHz chirps, sweeps and trills from a few species per place."""
    rng, rate = ctx.rng, ctx.rate
    for start in ctx.times(ctx.location.rates.get("birds", 0.6) * ctx.seconds):
        lo, hi, dur, kind = ctx.location.birds[rng.integers(len(ctx.location.birds))]
        out = []
        for _ in range(int(rng.integers(3, 12))):
            m = int(dur * rng.uniform(0.7, 1.3) * rate)
            t = np.arange(m) / rate
            a, b = min(rng.uniform(lo, hi), 0.42 * rate), min(rng.uniform(lo, hi), 0.42 * rate)
            if kind == "trill":
                f = a * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(25, 60) * t))
            else:
                f = a + (b - a) * t / max(t[-1], 1e-3)
            chirp = tone(f, m, rate, rng) + 0.15 * tone(
                np.minimum(2 * f, band_top(rate, SCENE_TOP)), m, rate, rng
            )
            chirp *= (np.sin(np.pi * t / max(t[-1], 1e-3)) ** 2).astype(np.float32)
            out += [chirp, np.zeros(int(rng.uniform(0.02, 0.15) * rate), np.float32)]
        ctx.place(start, np.concatenate(out), level + rng.uniform(-8, 2))


def _src_clinks(ctx: _Ctx, level: float) -> None:
    """Cutlery and glasses: transient inharmonic partials high in the spectrum, in bursts."""
    rng, rate = ctx.rng, ctx.rate
    for start in ctx.times(ctx.location.rates.get("clinks", 0.3) * ctx.seconds):
        for _ in range(int(rng.integers(1, 6))):
            k = int(rng.integers(3, 7))
            freqs = rng.uniform(2000, 14000, k)
            clink = struck_partials(
                freqs,
                rng.uniform(0.2, 1.0, k),
                rng.uniform(0.01, 0.15, k),
                int(0.3 * rate),
                rate,
                rng,
            )
            ctx.place(start, clink, level + rng.uniform(-8, 2))
            start += rng.uniform(0.05, 0.5)


def _src_bell(ctx: _Ctx, level: float) -> None:
    """Tram gongs and bicycle bells: struck inharmonic partials."""
    rng, rate = ctx.rng, ctx.rate
    f0 = ctx.location.bell_f0
    for start in ctx.times(0.12 * ctx.seconds):
        ratios = np.array([1.0, 2.76, 5.40, 8.93])
        ring = struck_partials(
            f0 * ratios, (1.0, 0.5, 0.3, 0.15), (0.8, 0.4, 0.2, 0.1), int(1.5 * rate), rate, rng
        )
        for i in range(int(rng.integers(1, 4))):
            ctx.place(start + i * rng.uniform(0.15, 0.3), ring, level)


def _src_beeps(ctx: _Ctx, level: float) -> None:
    """Scanner and till beeps: short pure tones (shops, airports)."""
    rng, rate = ctx.rng, ctx.rate
    f = rng.uniform(1500, 4000)
    for start in ctx.times(0.3 * ctx.seconds):
        m = int(rng.uniform(0.06, 0.2) * rate)
        ctx.place(start, tone(f, m, rate, rng) * np.hanning(m).astype(np.float32) ** 0.1, level)


def _src_hum(ctx: _Ctx, level: float) -> None:
    """Mains hum and fan tones from machinery: steady low harmonics."""
    rng, rate = ctx.rng, ctx.rate
    n = len(ctx.dry)
    mains = ctx.location.mains
    amps = rng.uniform(0.0, 1.0, 8) * (rng.random(8) < 0.6)
    amps[1] = 1.0
    hum = unit_table(amps, rng)[phase_index(np.full(n, mains), rate, rng)]
    fan = unit_table(np.array([1.0, 0.3, 0.1]), rng)
    fan_f = rng.uniform(90, 400) * (1 + 0.002 * wander(rng, ctx.full_times(), 0.5, ctx.seconds))
    hum = hum + rng.uniform(0.2, 1.0) * fan[phase_index(fan_f, rate, rng)]
    ctx.add_full(hum, level)


_BED_SOURCES: dict[str, Callable[[_Ctx, float], None]] = {
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
_DRY_SOURCES: dict[str, Callable[[_Ctx, float], None]] = {
    "voices": _src_voices,
    "children": _src_children,
    "pa": _src_pa,
    "music": _src_music,
    "engine": _src_engine,
    "rails": _src_rails,
    "trolley": _src_trolley,
    "footsteps": _src_footsteps,
    "door": _src_door,
    "squeal": _src_squeal,
    "horn": _src_horn,
    "birds": _src_birds,
    "clinks": _src_clinks,
    "bell": _src_bell,
    "beeps": _src_beeps,
    "hum": _src_hum,
}


# ---------------------------------------------------------------------------------------------
# Scene recipes: each scene is a probability mix over the shared sources


@dataclass(frozen=True)
class _Scene:
    """How likely each source is in a scene, and how loud (dB, relative) when it is there."""

    sources: dict[str, tuple[float, float, float]]  # name: (probability, low dB, high dB)
    rt60: tuple[float, float]  # reverberation time range, seconds (0: open air)
    drr: tuple[float, float]  # direct-to-reverberant ratio range, dB
    engine: tuple[str, float, float] = ("car", 30.0, 110.0)  # kind, lowest and highest f0
    vehicle: float = 0.0  # top speed in m/s when the microphone rides in a vehicle


_ALWAYS = {"air": (1.0, -34.0, -24.0)}

_SCENES: dict[str, _Scene] = {
    "airport": _Scene(
        {
            **_ALWAYS,
            "hvac": (1.0, -2, 2),
            "crowd": (1.0, -8, -3),
            "voices": (0.6, -18, -11),
            "pa": (0.7, -16, -10),
            "footsteps": (0.5, -24, -16),
            "trolley": (0.5, -22, -14),
            "clinks": (0.3, -30, -20),
            "music": (0.15, -28, -18),
            "hum": (0.6, -26, -18),
            "beeps": (0.2, -30, -20),
            "children": (0.15, -24, -16),
            "engine": (0.3, -26, -18),
        },
        rt60=(1.0, 2.5),
        drr=(-6, 4),
        engine=("car", 60, 160),
    ),
    "shopping_mall": _Scene(
        {
            **_ALWAYS,
            "crowd": (1.0, -2, 2),
            "music": (0.75, -16, -10),
            "voices": (0.75, -17, -10),
            "children": (0.4, -20, -12),
            "hvac": (0.6, -18, -12),
            "footsteps": (0.65, -22, -14),
            "clinks": (0.55, -26, -16),
            "beeps": (0.35, -28, -18),
            "pa": (0.15, -22, -14),
            "trolley": (0.25, -26, -18),
            "water": (0.15, -24, -16),
            "hum": (0.3, -30, -22),
        },
        rt60=(0.8, 2.0),
        drr=(-6, 4),
    ),
    "metro_station": _Scene(
        {
            **_ALWAYS,
            "roar": (0.8, -10, -4),
            "crowd": (0.8, -14, -8),
            "pa": (0.6, -16, -10),
            "hvac": (0.5, -18, -12),
            "rails": (0.4, -22, -14),
            "squeal": (0.4, -26, -16),
            "engine": (0.4, -24, -16),
            "door": (0.35, -22, -14),
            "footsteps": (0.55, -22, -14),
            "voices": (0.45, -20, -12),
            "hum": (0.4, -28, -20),
            "music": (0.1, -26, -18),
            "trolley": (0.15, -26, -18),
        },
        rt60=(1.0, 2.5),
        drr=(-6, 4),
        engine=("motor", 150, 1200),
    ),
    "metro": _Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -2, 2),
            "roar": (1.0, -1, 4),
            "rails": (0.75, -20, -12),
            "engine": (0.75, -22, -14),
            "squeal": (0.45, -26, -16),
            "door": (0.45, -20, -12),
            "pa": (0.4, -20, -12),
            "voices": (0.4, -20, -12),
            "crowd": (0.25, -22, -14),
            "hum": (0.25, -30, -22),
            "footsteps": (0.1, -26, -18),
        },
        rt60=(0.25, 0.6),
        drr=(0, 8),
        engine=("motor", 150, 1500),
        vehicle=18.0,
    ),
    "tram": _Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -3, 1),
            "roar": (0.6, -16, -10),
            "traffic": (0.6, -18, -12),
            "rails": (0.65, -22, -14),
            "engine": (0.6, -24, -16),
            "squeal": (0.5, -26, -16),
            "door": (0.45, -20, -12),
            "bell": (0.4, -20, -12),
            "pa": (0.35, -20, -12),
            "voices": (0.5, -20, -12),
            "crowd": (0.3, -22, -14),
            "passby": (0.3, -22, -14),
            "hum": (0.2, -30, -22),
        },
        rt60=(0.2, 0.5),
        drr=(0, 8),
        engine=("motor", 100, 1000),
        vehicle=12.0,
    ),
    "bus": _Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -2, 2),
            "engine": (0.95, -12, -6),
            "traffic": (0.6, -18, -12),
            "passby": (0.35, -20, -14),
            "door": (0.35, -22, -14),
            "voices": (0.5, -20, -12),
            "crowd": (0.25, -22, -14),
            "squeal": (0.2, -30, -20),
            "music": (0.15, -26, -18),
            "pa": (0.2, -22, -14),
            "horn": (0.1, -24, -16),
            "hum": (0.2, -30, -22),
        },
        rt60=(0.15, 0.4),
        drr=(0, 8),
        engine=("diesel", 25, 70),
        vehicle=12.0,
    ),
    "park": _Scene(
        {
            **_ALWAYS,
            "wind": (0.7, -12, -6),
            "birds": (0.75, -18, -10),
            "rustle": (0.55, -20, -12),
            "traffic": (0.6, -18, -12),
            "children": (0.4, -22, -14),
            "voices": (0.35, -24, -16),
            "water": (0.2, -22, -14),
            "footsteps": (0.25, -26, -18),
            "engine": (0.1, -30, -22),
            "crowd": (0.15, -26, -18),
            "music": (0.05, -28, -20),
        },
        rt60=(0.0, 0.1),
        drr=(8, 20),
    ),
    "public_square": _Scene(
        {
            **_ALWAYS,
            "crowd": (0.9, -12, -8),
            "traffic": (0.7, -16, -10),
            "voices": (0.6, -20, -12),
            "children": (0.35, -22, -14),
            "footsteps": (0.45, -24, -16),
            "water": (0.35, -20, -12),
            "birds": (0.3, -24, -16),
            "passby": (0.3, -22, -14),
            "wind": (0.3, -18, -10),
            "music": (0.2, -24, -16),
            "clinks": (0.15, -28, -18),
            "engine": (0.25, -26, -18),
            "horn": (0.1, -24, -16),
            "bell": (0.1, -26, -18),
        },
        rt60=(0.2, 0.7),
        drr=(4, 14),
    ),
    "street_pedestrian": _Scene(
        {
            **_ALWAYS,
            "crowd": (0.8, -14, -9),
            "voices": (0.8, -16, -10),
            "footsteps": (0.85, -18, -12),
            "traffic": (0.75, -14, -8),
            "passby": (0.5, -18, -10),
            "engine": (0.35, -24, -16),
            "music": (0.2, -24, -16),
            "horn": (0.15, -22, -14),
            "children": (0.2, -22, -14),
            "birds": (0.15, -26, -18),
            "wind": (0.25, -18, -10),
            "clinks": (0.1, -28, -18),
            "bell": (0.1, -26, -18),
            "trolley": (0.2, -26, -18),
        },
        rt60=(0.1, 0.5),
        drr=(4, 14),
    ),
    "street_traffic": _Scene(
        {
            **_ALWAYS,
            "traffic": (1.0, -2, 2),
            "passby": (0.95, -10, -4),
            "engine": (0.8, -18, -10),
            "horn": (0.35, -20, -12),
            "squeal": (0.3, -28, -18),
            "wind": (0.3, -16, -8),
            "crowd": (0.25, -24, -16),
            "voices": (0.2, -24, -16),
            "footsteps": (0.2, -26, -18),
            "birds": (0.08, -28, -18),
        },
        rt60=(0.05, 0.3),
        drr=(6, 16),
    ),
}


# ---------------------------------------------------------------------------------------------
# Locations: what one recording place fixes for all of its clips

_CLIP_KEEP = 0.8  # a source present at a location sounds in this share of its clips


@dataclass(frozen=True)
class _Location:
    """The place's own mix, room and sound sources, shared by every clip recorded there.

    TAU splits by location because clips from one place share far more than their label; a
    location-level draw reproduces that, so a location-split evaluation is honest here too.
    """

    scene: str
    levels: dict[str, float]  # active sources and their base level (dB)
    rates: dict[str, float]  # events per second for the event sources
    rt60: float
    drr: float
    engine_kind: str
    engine_f0: tuple[float, float]
    vehicle: float
    chime_root: float
    chime_steps: tuple[int, ...]
    door_beeps: bool
    announcer: _Speaker
    birds: tuple[tuple[float, float, float, str], ...]
    bell_f0: float
    mains: float
    joint_spacing: float
    bogie_gap: float
    click_bright: float
    hard_floor: float
    music_gain: float


def _draw_location(scene: str, rng: np.random.Generator) -> _Location:
    """Draw one recording place of ``scene``: which sources it has, its room, its voices."""
    if scene not in _SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {FINE_CLASSES}")
    recipe = _SCENES[scene]
    levels = {}
    for name, (p, lo, hi) in recipe.sources.items():
        if rng.random() < min(1.0, p / _CLIP_KEEP):
            levels[name] = float(rng.uniform(lo, hi))
    rates = {
        "passby": rng.uniform(0.1, 0.6),
        "voices": rng.uniform(0.15, 0.8),
        "children": rng.uniform(0.1, 0.4),
        "pa": rng.uniform(0.06, 0.2),
        "trolley": rng.uniform(0.06, 0.3),
        "footsteps": rng.uniform(0.15, 0.6),
        "horn": rng.uniform(0.03, 0.15),
        "birds": rng.uniform(0.3, 1.2),
        "clinks": rng.uniform(0.1, 0.6),
    }
    species = tuple(
        (float(lo), float(lo * rng.uniform(1.1, 1.8)), float(rng.uniform(0.03, 0.15)), str(kind))
        for lo, kind in zip(
            rng.uniform(2800, 5500, 3), rng.choice(["sweep", "trill", "sweep"], 3), strict=True
        )
    )
    return _Location(
        scene=scene,
        levels=levels,
        rates={k: float(v) for k, v in rates.items()},
        rt60=float(rng.uniform(*recipe.rt60)),
        drr=float(rng.uniform(*recipe.drr)),
        engine_kind=recipe.engine[0],
        engine_f0=(recipe.engine[1], recipe.engine[2]),
        vehicle=recipe.vehicle,
        chime_root=float(rng.uniform(400, 900)),
        chime_steps=tuple(int(s) for s in rng.choice([0, 4, 7, 12, -5], int(rng.integers(2, 5)))),
        door_beeps=bool(rng.random() < 0.5),
        announcer=_draw_speaker(rng),
        birds=species[: int(rng.integers(1, 4))],
        bell_f0=float(rng.uniform(700, 1500) if scene == "tram" else rng.uniform(1800, 3200)),
        mains=float(rng.choice([50.0, 60.0])),
        joint_spacing=float(rng.uniform(15, 30)),
        bogie_gap=float(rng.uniform(12, 18)),
        click_bright=float(rng.uniform(0.2, 1.0)),
        hard_floor=float(rng.uniform(0.0, 1.0)),
        music_gain=float(rng.uniform(0.5, 1.0)),
    )


# ---------------------------------------------------------------------------------------------
# Rooms


def _rir(rng: np.random.Generator, rt60: float, drr: float, rate: int, boxy: bool) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Devices


@dataclass(frozen=True)
class _DeviceProfile:
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
def _device_profile(name: str) -> _DeviceProfile:
    """The fixed profile of device ``name``: 'a' near-flat, 'b'/'c' phones, 's*' simulated."""
    rng = _device_rng(name)
    if name == "a":  # the binaural reference microphone: flat, quiet, full band
        return _DeviceProfile(
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
        return _DeviceProfile(
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
        return _DeviceProfile(
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


@functools.lru_cache(maxsize=64)
def _device_curve(name: str, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude response on a fine fixed grid; full-length spectra interpolate from it."""
    f = np.linspace(0.0, rate / 2, 8193)
    return f, np.sqrt(_device_profile(name).gain(f))


def _compress(x: np.ndarray, rate: int, ratio: float) -> np.ndarray:
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


def _nonlinear(x: np.ndarray, drive: float, asym: float) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Rendering


def _room_and_device(ctx: _Ctx, device: str) -> np.ndarray:
    """Reverberate the dry sources and apply the device response in one FFT convolution."""
    loc = ctx.location
    rir = _rir(ctx.rng, loc.rt60, loc.drr, ctx.rate, boxy=loc.vehicle > 0)
    size = fast_fft_size(len(ctx.dry) + len(rir), (3, 5, 7))
    spec = np.fft.rfft(ctx.dry, size)
    if len(rir) > 1:
        spec *= np.fft.rfft(rir, size)
    grid, amp = _device_curve(device, ctx.rate)
    spec *= np.interp(np.fft.rfftfreq(size, 1.0 / ctx.rate), grid, amp).astype(np.float32)
    wet = np.fft.irfft(spec, size)
    return wet[ctx.pad : ctx.pad + ctx.n].astype(np.float32)


def _render(
    location: _Location,
    device: str,
    rng: np.random.Generator,
    seconds: float = 10.0,
    rate: int = 44100,
) -> np.ndarray:
    """One clip recorded at ``location`` on ``device``: float32 mono in [-1, 1]."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    profile = _device_profile(device)
    recipe = _SCENES[location.scene]
    n = int(seconds * rate)
    pad = int(0.5 * rate)  # events may ring in from before the clip starts
    motion = _draw_motion(rng, seconds, recipe.vehicle) if recipe.vehicle else None
    dry = np.zeros(n + pad, np.float32)
    ctx = _Ctx(rng, rate, seconds, location, _Bed(n, rate), dry, motion, pad)
    for name, level in location.levels.items():
        if _SCENES[location.scene].sources[name][0] < 1.0 and rng.random() > _CLIP_KEEP:
            continue
        level += rng.normal(0.0, 1.5)
        if name in _BED_SOURCES:
            _BED_SOURCES[name](ctx, level)
        else:
            _DRY_SOURCES[name](ctx, level)
    wet = _room_and_device(ctx, device)
    scene_power = ctx.bed.mean_power() + float(np.mean(wet.astype(np.float64) ** 2))
    floor = tilt_power(ctx.bed.freqs, profile.floor_tilt)
    floor *= db_to_power(profile.floor_db) * scene_power / floor.sum()
    gain = profile.gain(ctx.bed.freqs)
    mix = wet + ctx.bed.render(rng, gain, floor)
    mix *= np.float32(10 ** (rng.uniform(-32, -20) / 20) / max(np.sqrt(np.mean(mix**2)), 1e-12))
    mix = _compress(mix, rate, profile.compress)
    mix = _nonlinear(mix, profile.drive, profile.asym)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.98:
        mix *= np.float32(0.98 / peak)
    return np.ascontiguousarray(mix, dtype=np.float32)


def synth_clip(
    scene: str, device: str, rng: np.random.Generator, seconds: float = 10.0, rate: int = 44100
) -> np.ndarray:
    """A clip of ``scene`` on ``device`` at a freshly drawn location: float32 (samples,)."""
    return _render(_draw_location(scene, rng), device, rng, seconds, rate)


# ---------------------------------------------------------------------------------------------
# The corpus: TAU's layout, location split and device balance

_TRAIN_PATTERN = ("a", "a", "b", "a", "a", "c", "a", "a", "s1", "a", "a", "s2", "a", "a", "s3")
_LOCATION_SALT = 0x10C  # keeps location seeds apart from clip seeds drawn from the same seed


@dataclass(frozen=True)
class _ClipPlan:
    """One file of the corpus and everything needed to generate it independently of the rest."""

    index: int
    scene: str
    city: str
    location: int  # TAU's location number within the city
    class_location: int  # the location's index within its scene (its seed)
    segment: int
    device: str
    split: str  # "train" or "evaluate"

    @property
    def filename(self) -> str:
        return f"audio/{self.scene}-{self.city}-{self.location}-{self.segment}-{self.device}.wav"

    @property
    def identifier(self) -> str:
        return f"{self.city}-{self.location}"


def _location_count(clips_per_class: int) -> int:
    """About ten clips per place for small corpora, at most 40 places per scene (TAU has ~40)."""
    return min(clips_per_class, max(3, min(40, round(clips_per_class / 10))))


def _devices_for(split: str, count: int, offset: int, rng: np.random.Generator) -> list[str]:
    """Device 'a' dominates training as in TAU; evaluation cycles all nine devices evenly."""
    pattern = _TRAIN_PATTERN if split == "train" else EVAL_DEVICES
    devices = [pattern[(offset + i) % len(pattern)] for i in range(count)]
    return [devices[i] for i in rng.permutation(count)]


def _plan_corpus(clips_per_class: int, seed: int = 0) -> list[_ClipPlan]:
    """Every clip of the corpus, in a fixed order: the order defines each clip's seed."""
    if clips_per_class < 2:
        raise ValueError("clips_per_class must be at least 2 (one per side of the split)")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _LOCATION_SALT]))
    city_counter = dict.fromkeys(_CITIES, 0)
    plans: list[_ClipPlan] = []
    for class_index, scene in enumerate(FINE_CLASSES):
        n_loc = _location_count(clips_per_class)
        n_eval = min(max(1, round(0.3 * n_loc)), n_loc - 1)
        evaluate = set(rng.permutation(n_loc)[:n_eval].tolist())
        places = []
        for loc in range(n_loc):
            city = _CITIES[(loc + class_index) % len(_CITIES)]
            places.append((city, city_counter[city]))
            city_counter[city] += 1
        sizes = [len(a) for a in np.array_split(np.arange(clips_per_class), n_loc)]
        rows = [
            (loc, seg, "evaluate" if loc in evaluate else "train")
            for loc in range(n_loc)
            for seg in range(sizes[loc])
        ]
        for split in ("train", "evaluate"):
            mine = [r for r in rows if r[2] == split]
            devices = _devices_for(split, len(mine), 2 * class_index, rng)
            for (loc, seg, _), device in zip(mine, devices, strict=True):
                city, number = places[loc]
                plans.append(_ClipPlan(len(plans), scene, city, number, loc, seg, device, split))
    return plans


def _clip_seed(seed: int, plan: _ClipPlan) -> tuple[np.random.Generator, np.random.Generator]:
    class_index = FINE_CLASSES.index(plan.scene)
    where = np.random.SeedSequence([seed, _LOCATION_SALT, class_index, plan.class_location])
    clip = np.random.SeedSequence([seed, plan.index])
    return np.random.default_rng(where), np.random.default_rng(clip)


def _write_clip(job: tuple[Path, int, float, _ClipPlan]) -> str:
    """Worker entry point: everything the clip needs arrives in ``job``, so any pool order works."""
    from asc.audio import save

    out, seed, seconds, plan = job
    where, clip = _clip_seed(seed, plan)
    audio = _render(_draw_location(plan.scene, where), plan.device, clip, seconds, 44100)
    save(out / plan.filename, audio, 44100)
    return plan.filename


def _write_tsv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(out: Path, plans: list[_ClipPlan]) -> None:
    _write_tsv(
        out / "meta.csv",
        ["filename", "scene_label", "identifier", "source_label"],
        ([p.filename, p.scene, p.identifier, p.device] for p in plans),
    )
    setup = out / "evaluation_setup"
    train = [p for p in plans if p.split == "train"]
    evaluate = [p for p in plans if p.split == "evaluate"]
    labelled = ["filename", "scene_label"]
    _write_tsv(setup / "fold1_train.csv", labelled, ([p.filename, p.scene] for p in train))
    _write_tsv(setup / "fold1_evaluate.csv", labelled, ([p.filename, p.scene] for p in evaluate))
    _write_tsv(setup / "fold1_test.csv", ["filename"], ([p.filename] for p in evaluate))


def _write_readme(out: Path, plans: list[_ClipPlan], seed: int, seconds: float) -> None:
    train = sum(p.split == "train" for p in plans)
    text = f"""SYNTHETIC acoustic scene corpus (asc-stream, training.synth {GENERATOR_VERSION})

All audio in this folder is GENERATED by a program, not recorded. It imitates the layout of
TAU Urban Acoustic Scenes 2020 Mobile (development set) so that the same loaders, splits and
reports work on it, but no sound here comes from a real place or a real device, and accuracy
measured on it says nothing about accuracy on real recordings.

seed: {seed}
generator version: {GENERATOR_VERSION}
clips: {len(plans)} ({train} in fold1_train, {len(plans) - train} in fold1_evaluate/fold1_test)
clip length: {seconds:g} s, 44100 Hz, 16-bit PCM, mono
classes: {", ".join(FINE_CLASSES)}
devices: training {", ".join(TRAIN_DEVICES)}; evaluation {", ".join(EVAL_DEVICES)}
split: by location (identifier), about 70 % of locations for training

The same seed and generator version give byte-identical files.
"""
    (out / "README.txt").write_text(text)


def write_scene_corpus(
    out: Path,
    clips_per_class: int,
    seed: int = 0,
    seconds: float = 10.0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Generate the corpus under ``out`` and return ``out``.

    Each clip's audio depends only on (seed, its index in the plan, its location), never on the
    worker that made it, so any worker count writes the same bytes.
    """
    out = Path(out)
    plans = _plan_corpus(clips_per_class, seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed, float(seconds), plan) for plan in plans]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    bar = _progress(len(jobs), progress)
    if workers == 1:
        for job in jobs:
            _write_clip(job)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_clip, jobs, chunksize=4):
                bar.update()
    bar.close()
    _write_tables(out, plans)
    _write_readme(out, plans, seed, seconds)
    return out


def _progress(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, disable=not enabled, unit="clip", desc="synth")
