"""Voices in the scenes: near talkers, children and public-address announcements.

Speech is the most shared cue between scenes (airport, mall, station, vehicles), so it comes
from one wavetable talker whose speakers, rates and bands each scene and place choose.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from training.corpora.dsp import (
    SCENE_TOP,
    VOWEL_FORMANTS,
    band_power,
    band_top,
    noise_burst,
    phase_index,
    struck_partials,
    unit_table,
    wander,
)
from training.corpora.scene_context import ClipContext, Source, Speaker

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


def _speech(
    ctx: ClipContext, speaker: Speaker, seconds: float, band: tuple[float, float] = (70, 8000)
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


def draw_speaker(rng: np.random.Generator, child: bool = False) -> Speaker:
    if child:
        return Speaker(float(rng.uniform(220, 380)), float(rng.uniform(1.2, 1.35)))
    if rng.random() < 0.5:
        return Speaker(float(rng.uniform(85, 150)), float(rng.uniform(0.95, 1.05)))
    return Speaker(float(rng.uniform(165, 260)), float(rng.uniform(1.1, 1.2)))


def _talkers(ctx: ClipContext, level: float, child: bool) -> None:
    rng = ctx.rng
    speakers = [draw_speaker(rng, child) for _ in range(rng.integers(1, 5))]
    rate_key = "children" if child else "voices"
    for start in ctx.times(ctx.location.rates.get(rate_key, 0.4) * ctx.seconds):
        speaker = speakers[rng.integers(len(speakers))]
        spurt = _speech(ctx, speaker, rng.uniform(0.6, 3.5))
        ctx.place(start, spurt, level + rng.uniform(-6, 3))


def _src_voices(ctx: ClipContext, level: float) -> None:
    """Near talkers, the foreground babble of every crowded scene."""
    _talkers(ctx, level, child=False)


def _src_children(ctx: ClipContext, level: float) -> None:
    """Children's higher voices (parks, squares, malls)."""
    _talkers(ctx, level, child=True)


def chime_notes(
    ctx: ClipContext, root: float, steps: Iterable[int], gap: float, tau: float
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


def _src_pa(ctx: ClipContext, level: float) -> None:
    """Public address: a chime, then telephone-band speech (airports, stations, vehicles)."""
    rng, loc = ctx.rng, ctx.location
    for start in ctx.times(loc.rates.get("pa", 0.12) * ctx.seconds):
        chime = chime_notes(ctx, loc.chime_root, loc.chime_steps, rng.uniform(0.3, 0.5), 0.5)
        ctx.place(start, chime, level - rng.uniform(2, 6))
        speaker = loc.announcer
        talk = _speech(ctx, speaker, rng.uniform(2.0, 5.0), band=(300, 3400))
        ctx.place(start + len(chime) / ctx.rate * 0.7, np.tanh(2.0 * talk), level)


VOICE_SOURCES: dict[str, Source] = {
    "voices": _src_voices,
    "children": _src_children,
    "pa": _src_pa,
}
