"""The event-like scene sources, mixed into the clip's dry buffer where they sound.

Engines and rails follow the vehicle's motion; the high-frequency cues (birds, cutlery, bells,
beeps, brake squeal) are the ones lossy codecs cut first.
"""

from __future__ import annotations

import math

import numpy as np

from training.corpora.dsp import (
    SCENE_TOP,
    band_power,
    band_top,
    decay,
    gaussian_swells,
    noise_burst,
    phase_index,
    struck_partials,
    tone,
    unit_table,
    wander,
)
from training.corpora.scene_context import ClipContext, Source, draw_motion
from training.corpora.scene_voices import chime_notes

# ---------------------------------------------------------------------------------------------
# Music, engines, rails and vehicles


def _src_music(ctx: ClipContext, level: float) -> None:
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


def _src_engine(ctx: ClipContext, level: float) -> None:
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


def _click(ctx: ClipContext, bright: float) -> np.ndarray:
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


def _src_rails(ctx: ClipContext, level: float) -> None:
    """Rhythmic clack-clack of axles over rail joints, its tempo set by the vehicle's speed."""
    rng, loc = ctx.rng, ctx.location
    motion = ctx.motion or draw_motion(rng, ctx.seconds, 15.0)
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


def _src_trolley(ctx: ClipContext, level: float) -> None:
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


def _src_footsteps(ctx: ClipContext, level: float) -> None:
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


def _src_door(ctx: ClipContext, level: float) -> None:
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
            chime = chime_notes(ctx, loc.chime_root * 1.5, (4, 0), 0.45, 0.6)
            ctx.place(when, chime, level)
        m = int(rng.uniform(0.3, 0.8) * rate)
        hiss = noise_burst(rng, m, rate, lambda f: band_power(f, lo=1500, hi=10000, order=1))
        hiss *= np.hanning(m).astype(np.float32)
        ctx.place(when + rng.uniform(0.3, 1.5), hiss, level - rng.uniform(4, 10))


def _src_squeal(ctx: ClipContext, level: float) -> None:
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


def _src_horn(ctx: ClipContext, level: float) -> None:
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


def _src_birds(ctx: ClipContext, level: float) -> None:
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


def _src_clinks(ctx: ClipContext, level: float) -> None:
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


def _src_bell(ctx: ClipContext, level: float) -> None:
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


def _src_beeps(ctx: ClipContext, level: float) -> None:
    """Scanner and till beeps: short pure tones (shops, airports)."""
    rng, rate = ctx.rng, ctx.rate
    f = rng.uniform(1500, 4000)
    for start in ctx.times(0.3 * ctx.seconds):
        m = int(rng.uniform(0.06, 0.2) * rate)
        ctx.place(start, tone(f, m, rate, rng) * np.hanning(m).astype(np.float32) ** 0.1, level)


def _src_hum(ctx: ClipContext, level: float) -> None:
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


EVENT_SOURCES: dict[str, Source] = {
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
