"""Music for the lossless corpus: a short piece in a random key, scale, tempo and chord
progression, two to five wavetable instruments in a room, over a drum kit.

The detector learns what codecs do to music, so the pieces carry what codecs damage: sustained
harmonics up to the top of the band, sharp attacks, and cymbal noise where codecs cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from training.corpora.dsp import (
    LOSSLESS_TOP,
    add_at,
    attack_decay,
    band_top,
    coloured_noise,
    highpass,
    interpolating_table,
    lowpass,
    pan_stereo,
    random_gain,
    read_table,
    resonance,
    unit_rms,
    white_noise,
)
from training.corpora.rooms import stereo_reverb

VIBRATO_HZ = 5.5

Envelope = Callable[[np.ndarray, float], np.ndarray]  # (seconds since onset, note length)


# ---------------------------------------------------------------------------------------------
# Timbres


@dataclass(frozen=True)
class _Timbre:
    slope: float  # partial k falls as k ** -slope: smaller is brighter
    even: float  # weight of even partials (low for clarinet-like hollow tones)
    body: float  # centre of a resonance bump in Hz (the instrument's body)
    body_gain: float
    vibrato: float  # relative depth
    bright: float  # Hz above which partials fall a further 6 dB per octave (dull to brilliant)


def _random_timbre(rng: np.random.Generator, slope: tuple[float, float]) -> _Timbre:
    return _Timbre(
        slope=rng.uniform(*slope),
        even=float(rng.choice([1.0, 1.0, 0.5, 0.08])),
        body=rng.uniform(400, 3500),
        body_gain=rng.uniform(0, 4),
        vibrato=float(rng.choice([0.0, 0.002, 0.005])),
        bright=float(np.exp(rng.uniform(np.log(2500), np.log(20000)))),
    )


def _partials(f0: float, timbre: _Timbre, rate: int, darker: float = 0.0) -> np.ndarray:
    top = band_top(rate, LOSSLESS_TOP) / (1 + 2 * timbre.vibrato)
    k = np.arange(1, max(1, int(top / f0)) + 1, dtype=np.float64)
    amps = k ** -(timbre.slope + darker)
    amps[1::2] *= timbre.even
    amps *= (1 + timbre.body_gain * resonance(k * f0, timbre.body, 1.5)) * lowpass(
        k * f0, timbre.bright, 1
    )
    return amps


# ---------------------------------------------------------------------------------------------
# Pieces and instruments


SCALES = (
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # natural minor
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
    (0, 2, 3, 5, 7, 8, 11),  # harmonic minor
    (0, 2, 4, 5, 7, 9, 10),  # mixolydian
)


PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 0, 3, 4), (1, 4, 0, 0))


@dataclass(frozen=True)
class _Note:
    start: float  # seconds
    length: float  # seconds, before the release
    midi: float
    velocity: float


@dataclass(frozen=True)
class _Piece:
    beat: float  # seconds per beat
    bars: int
    root: int  # MIDI note of the tonic
    scale: tuple[int, ...]
    chords: tuple[int, ...]  # scale degree of each bar's chord, cycling

    def pitch(self, degree: int, octave: int = 0) -> int:
        steps = len(self.scale)
        return self.root + 12 * (octave + degree // steps) + self.scale[degree % steps]

    def chord(self, bar: int) -> int:
        return self.chords[bar % len(self.chords)]


def music_track(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A short piece in a random key, scale, tempo and chord progression.

    Two to five instruments spread across the stereo field in a reverberant room, over a drum
    kit: sustained harmonics, sharp attacks and cymbal noise reaching the top of the band.
    """
    beat = 60.0 / rng.uniform(70, 160)
    piece = _Piece(
        beat=beat,
        bars=int(n / rate / (4 * beat)) + 2,
        root=int(rng.integers(40, 53)),
        scale=SCALES[rng.integers(len(SCALES))],
        chords=PROGRESSIONS[rng.integers(len(PROGRESSIONS))],
    )
    parts = [name for name, p in PARTS.items() if rng.random() < p[1]]
    while len(parts) < 2:  # always a real texture: at least two harmonic instruments
        parts.append(str(rng.choice([p for p in PARTS if p not in parts])))
    mix = np.zeros((n, 2), dtype=np.float32)
    for name in sorted(parts):
        mono = unit_rms(PARTS[name][0](n, rate, rng, piece))
        mix += pan_stereo(mono * random_gain(-10, 0, rng), rng.uniform(-0.9, 0.9))
    mix = stereo_reverb(mix, rate, rng, rt60=rng.uniform(0.4, 2.2), wet=rng.uniform(0.1, 0.4))
    drums = _drums(n, rate, rng, piece)
    return mix + drums * (
        np.sqrt(np.mean(mix**2)) / np.sqrt(np.mean(drums**2)) * random_gain(-6, 4, rng)
    )


def _render(
    n: int,
    rate: int,
    rng: np.random.Generator,
    notes: list[_Note],
    timbre: _Timbre,
    envelope: Envelope,
    release: float,
    pluck: float = 0.0,
) -> np.ndarray:
    """Additive notes from per-pitch wavetables; ``pluck`` > 0 fades a bright attack to dark."""
    out = np.zeros(n, dtype=np.float32)
    tables: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for note in notes:
        start, f0 = int(note.start * rate), 440.0 * 2 ** ((note.midi - 69) / 12)
        if start >= n:
            continue
        if note.midi not in tables:
            amps = _partials(f0, timbre, rate)
            phases = rng.random(len(amps))  # shared, so the pluck's fade never cancels partials
            bright = interpolating_table(amps, phases)
            dark = (
                interpolating_table(_partials(f0, timbre, rate, darker=1.2), phases)
                if pluck
                else bright
            )
            tables[note.midi] = (bright, dark)
        bright, dark = tables[note.midi]
        length = min(n - start, int((note.length + release) * rate))
        cycles = np.arange(length, dtype=np.float64) * (f0 / rate) + rng.random()
        t = np.arange(length, dtype=np.float32) * np.float32(1 / rate)  # float32 is plenty here
        if timbre.vibrato:  # the integral of f0 * (1 + d sin(w t)), w = 2 pi VIBRATO_HZ
            w = 2 * np.pi * VIBRATO_HZ
            cycles += (f0 * timbre.vibrato / w) * (1 - np.cos(np.float32(w) * t))
        wave = read_table(bright, cycles)
        if pluck:
            low = read_table(dark, cycles)
            wave = low + (wave - low) * np.exp(t * np.float32(-1 / pluck))
        wave *= envelope(t, note.length)
        wave *= np.float32(note.velocity)
        add_at(out, start, wave)
    return out


def _adsr(attack: float, decay: float, sustain: float, release: float) -> Envelope:
    def envelope(t: np.ndarray, length: float) -> np.ndarray:
        hold = max(length, attack + decay)
        points = [0.0, attack, attack + decay, hold, hold + release]
        return np.interp(t, points, [0.0, 1.0, sustain, sustain, 0.0]).astype(np.float32)

    return envelope


def _percussive(attack: float, tau: float) -> Envelope:
    def envelope(t: np.ndarray, length: float) -> np.ndarray:
        return attack_decay(t, attack, tau)

    return envelope


def _bass(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    step = piece.beat * float(rng.choice([0.5, 1.0, 2.0]))
    notes = []
    for bar in range(piece.bars):
        for i in range(round(4 * piece.beat / step)):
            if rng.random() < 0.15:
                continue  # rests give the line a rhythm
            degree = piece.chord(bar) + int(rng.choice([0, 0, 0, 4, 7]))
            start = bar * 4 * piece.beat + i * step
            notes.append(_Note(start, step * 0.85, piece.pitch(degree, -1), rng.uniform(0.7, 1)))
    timbre = _random_timbre(rng, (0.9, 1.6))
    if rng.random() < 0.5:
        return _render(n, rate, rng, notes, timbre, _percussive(0.004, 0.35), 0.3, pluck=0.08)
    return _render(n, rate, rng, notes, timbre, _adsr(0.01, 0.1, 0.7, 0.08), 0.08)


def _pad(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    notes = []
    octave = int(rng.integers(0, 2))
    for bar in range(piece.bars):
        for offset in (0, 2, 4, 6)[: int(rng.integers(3, 5))]:
            midi = piece.pitch(piece.chord(bar) + offset, octave) + rng.normal(0, 0.04)
            notes.append(_Note(bar * 4 * piece.beat, 4 * piece.beat, midi, rng.uniform(0.5, 0.8)))
    timbre = _random_timbre(rng, (1.1, 1.9))
    envelope = _adsr(rng.uniform(0.05, 0.6), 0.3, rng.uniform(0.5, 0.9), 0.5)
    return _render(n, rate, rng, notes, timbre, envelope, 0.5)


def _lead(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    notes, degree, t = [], int(rng.integers(0, 7)), 0.0
    end = piece.bars * 4 * piece.beat
    while t < end:
        length = piece.beat * float(rng.choice([0.5, 0.5, 1.0, 1.5, 2.0]))
        if rng.random() > 0.2:
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), -3, 12))
            velocity = rng.uniform(0.6, 1.0)
            notes.append(_Note(t, length * 0.9, piece.pitch(degree, 2), velocity))
        t += length
    timbre = _random_timbre(rng, (0.7, 1.3))
    timbre = replace(timbre, vibrato=0.004)
    envelope = _adsr(rng.uniform(0.005, 0.05), 0.15, rng.uniform(0.5, 0.9), 0.12)
    return _render(n, rate, rng, notes, timbre, envelope, 0.12)


def _arpeggio(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    step = piece.beat / float(rng.choice([2, 4]))
    pattern = [0, 2, 4, 7, 4, 2] if rng.random() < 0.5 else [0, 4, 2, 7]
    notes = []
    for i in range(int(piece.bars * 4 * piece.beat / step)):
        bar = int(i * step / (4 * piece.beat))
        midi = piece.pitch(piece.chord(bar) + pattern[i % len(pattern)], 1)
        notes.append(_Note(i * step, step, midi, rng.uniform(0.5, 1.0)))
    timbre = _random_timbre(rng, (0.6, 1.2))
    tau = rng.uniform(0.1, 0.4)
    return _render(n, rate, rng, notes, timbre, _percussive(0.002, tau), tau, pluck=0.03)


def _bells(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    """Mallet/bell: a few inharmonic partials, higher ones dying first, as in struck bars."""
    ratios = np.array([1.0, 2.76, 5.40, 8.93, 13.34, 18.64])
    out = np.zeros(n, dtype=np.float32)
    tau = rng.uniform(0.4, 1.5)
    for bar in range(piece.bars):
        for beat in range(4):
            if rng.random() < 0.45:
                continue
            degree = piece.chord(bar) + int(rng.choice([0, 2, 4, 7]))
            f0 = 440.0 * 2 ** ((piece.pitch(degree, 2) - 69) / 12)
            t = np.arange(int(3 * tau * rate), dtype=np.float32) / rate
            sound = np.zeros(len(t), dtype=np.float32)
            for i, r in enumerate(ratios[ratios * f0 < band_top(rate, LOSSLESS_TOP)]):
                decay = np.exp(-t * (1 + i) / tau)
                sound += decay * np.sin(2 * np.pi * f0 * r * t + rng.random() * 6.3) / (1 + i)
            add_at(out, int((bar * 4 + beat) * piece.beat * rate), sound * rng.uniform(0.5, 1))
    return out


PARTS: dict[str, tuple[Callable[..., np.ndarray], float]] = {  # builder, chance of playing
    "arpeggio": (_arpeggio, 0.5),
    "bass": (_bass, 0.85),
    "bells": (_bells, 0.3),
    "lead": (_lead, 0.7),
    "pad": (_pad, 0.7),
}


# ---------------------------------------------------------------------------------------------
# Drums


def _drum_kit(rate: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """One kit per piece, a few takes of each noisy drum so repeated hits are not identical.

    Snare, hats and cymbals are noise bursts reaching the top of the band, rolling off above
    ``air`` as real cymbals do: the sharp, bright transients where codecs pre-echo and cut.
    """
    click = white_noise(rng, (int(0.003 * rate),))
    air = rng.uniform(10000, 18000)

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * rate), dtype=np.float32) / rate

    def bursts(seconds: float, tau: float, fc: float, order: int, top: float) -> list[np.ndarray]:
        tt = t(seconds)
        shaped = coloured_noise(
            len(tt), rate, rng, lambda f: highpass(f, fc, order) * lowpass(f, top, 2), 3
        )
        return [shaped[:, i] * np.exp(-tt / tau) for i in range(3)]

    tk, f_hi, f_lo = t(0.6), rng.uniform(110, 180), rng.uniform(40, 60)
    sweep = rng.uniform(0.02, 0.06)
    phase = 2 * np.pi * (f_lo * tk + (f_hi - f_lo) * sweep * (1 - np.exp(-tk / sweep)))
    kick = np.sin(phase) * np.exp(-tk / rng.uniform(0.15, 0.4))
    kick[: len(click)] += 0.4 * click  # the beater's click
    ts, tone = t(0.5), rng.uniform(170, 240)
    body = np.sin(2 * np.pi * tone * ts) + 0.5 * np.sin(2 * np.pi * 1.7 * tone * ts)
    snares = bursts(0.5, rng.uniform(0.08, 0.2), 900, 2, air / 2)
    hat_fc = rng.uniform(5000, 9000)
    return {
        "kick": [kick],
        "snare": [0.5 * body * np.exp(-ts / 0.05) + s for s in snares],
        "hat": bursts(0.25, rng.uniform(0.012, 0.04), hat_fc, 3, air),
        "open_hat": bursts(0.8, rng.uniform(0.12, 0.3), hat_fc, 3, air),
        "ride": bursts(1.5, rng.uniform(0.4, 0.8), 3500, 2, air),
        "crash": bursts(1.95, rng.uniform(0.6, 1.2), 2500, 2, air),
    }


DRUM_PATTERNS = {  # sixteenth steps per bar
    "kick": ((0, 8), (0, 4, 8, 12), (0, 6, 10), (0, 10), (0, 3, 8, 11)),
    "snare": ((4, 12), (8,), (4, 12, 15)),
    "hat": (tuple(range(0, 16, 2)), tuple(range(16)), (2, 6, 10, 14)),
}


def _drums(n: int, rate: int, rng: np.random.Generator, piece: _Piece) -> np.ndarray:
    kit = _drum_kit(rate, rng)
    hats = "ride" if rng.random() < 0.25 else "hat"
    pattern = {name: choices[rng.integers(len(choices))] for name, choices in DRUM_PATTERNS.items()}
    pans = {"kick": 0.0, "snare": rng.uniform(-0.2, 0.2), "hat": rng.uniform(-0.5, 0.5)}
    pans |= {"ride": pans["hat"], "open_hat": pans["hat"], "crash": rng.uniform(-0.5, 0.5)}
    levels = {"kick": 1.0, "snare": 0.8, "hat": 0.2, "ride": 0.15, "open_hat": 0.2, "crash": 0.3}
    stereo = {
        name: [pan_stereo(take * levels[name], pans[name]) for take in takes]
        for name, takes in kit.items()
    }
    out = np.zeros((n, 2), dtype=np.float32)
    sixteenth = piece.beat / 4
    swing = rng.choice([0.0, 0.0, rng.uniform(0.1, 0.3)]) * sixteenth
    for bar in range(piece.bars):
        hits = [(name, s) for name in ("kick", "snare") for s in pattern[name]]
        hits += [(hats, s) for s in pattern["hat"]]
        if rng.random() < 0.3:
            hits.append(("open_hat", 14))
        if bar % 4 == 0 and rng.random() < 0.6:
            hits.append(("crash", 0))
        for name, s in hits:
            when = (bar * 16 + s) * sixteenth + (swing if s % 2 else 0) + rng.normal(0, 0.003)
            take = stereo[name][rng.integers(len(stereo[name]))]
            add_at(out, int(when * rate), take * rng.uniform(0.7, 1.0))
    return out
