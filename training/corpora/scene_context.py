"""What every scene source works with while a clip is rendered: the noise bed, the vehicle's
motion, the recording place and the dry buffer events are mixed into.

The sources (scene_beds, scene_voices, scene_events) only read and add to a ClipContext; the
order in which they draw from its random generator is what makes a clip repeatable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.corpora.dsp import add_at, db_to_power

_BED_FRAME = 2048  # STFT frame of the noise beds; 21.5 Hz bins resolve the low rumbles


# ---------------------------------------------------------------------------------------------
# The noise bed: stationary-ish sources summed as power spectrograms, rendered with random phase


class Bed:
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
class Motion:
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


def draw_motion(rng: np.random.Generator, seconds: float, top_speed: float) -> Motion:
    t = [-rng.uniform(0.0, 6.0)]
    v = [rng.uniform(0.2, 1.0)]
    while t[-1] < seconds + 1.0:
        stop = rng.random() < 0.3
        dur = rng.uniform(2.5, 6.0) if stop else rng.uniform(1.5, 7.0)
        value = 0.0 if stop else rng.uniform(0.3, 1.0)
        ramp = rng.uniform(1.0, 3.0)
        t += [t[-1] + ramp, t[-1] + ramp + dur]
        v += [value, value]
    return Motion(np.array(t), np.array(v), top_speed)


# ---------------------------------------------------------------------------------------------
# The recording place and the clip being rendered


@dataclass(frozen=True)
class Speaker:
    """A talker's voice: its pitch and its formant scale (shorter vocal tracts sound higher)."""

    f0: float
    scale: float


@dataclass(frozen=True)
class Location:
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
    announcer: Speaker
    birds: tuple[tuple[float, float, float, str], ...]
    bell_f0: float
    mains: float
    joint_spacing: float
    bogie_gap: float
    click_bright: float
    hard_floor: float
    music_gain: float


@dataclass
class ClipContext:
    """The clip being rendered, handed to every source: its random generator, place, noise bed,
    dry buffer (padded by ``pad`` samples before the clip) and, in vehicles, the motion."""

    rng: np.random.Generator
    rate: int
    seconds: float
    location: Location
    bed: Bed
    dry: np.ndarray
    motion: Motion | None
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


Source = Callable[[ClipContext, float], None]  # adds one source at a level in dB
