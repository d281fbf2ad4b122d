"""A generated lossless corpus of varied full-band material for the lossy-compression detector.

The detector learns what perceptual codecs do to audio: lowpass cutoffs, spectral holes in the
treble, pre-echo around transients, smeared noise, collapsed stereo. It can only see those if
the originals give the codecs something to damage: energy up to 20+ kHz, sharp attacks, tonal
and noisy parts side by side, and real stereo. The detection paper trains on lossless music; a
user without such a collection gets generated stand-ins here, in three kinds: music (harmonic
instruments and drums), speech-like babble (formant synthesis with sibilants) and outdoor
ambience (rain, wind, birds, room tone).

Everything is vectorised numpy (wavetables, FFT filtering, STFT-domain formant shaping), so a
10 s stereo track takes well under 0.2 s on one core and a corpus of hundreds of tracks is a
matter of seconds. Each track depends only on its own seed, so a corpus is the same whatever
the number of worker processes.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpora.dsp import (
    LOSSLESS_TOP,
    VOWEL_FORMANTS,
    add_at,
    attack_decay,
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
    spectral_noise,
    unit_rms,
    white_noise,
)

KINDS = ("music", "speech", "ambient")
RATE = 44100
PEAK = 10 ** (-1 / 20)  # -1 dBFS: headroom for 16-bit rounding and for codecs' overshoot
VIBRATO_HZ = 5.5
Envelope = Callable[[np.ndarray, float], np.ndarray]  # (seconds since onset, note length)


def synth_track(
    kind: str, rng: np.random.Generator, seconds: float = 10.0, rate: int = RATE
) -> np.ndarray:
    """One generated track of ``kind``: float32 (samples, 2), peak at -1 dBFS."""
    builders = {"music": _music, "speech": _speech, "ambient": _ambient}
    if kind not in builders:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if seconds <= 0 or rate < 8000:
        raise ValueError(f"need seconds > 0 and rate >= 8000 Hz (got {seconds}, {rate})")
    n = max(1, round(seconds * rate))
    return _finish(builders[kind](n, rate, rng), rate)


def track_seed(seed: int, index: int) -> int:
    """Each track's own seed, so track i is the same whichever worker makes it, and when."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_lossless_corpus(
    out: Path,
    tracks: int,
    seed: int = 0,
    seconds: float = 10.0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``tracks`` stereo 44.1 kHz 16-bit WAVs under ``out/audio`` and describe them.

    ``out/meta.csv`` is written last, so its presence means the corpus is complete; any row
    can be regenerated with ``synth_track(kind, np.random.default_rng(seed))``. Returns
    ``out``.
    """
    if tracks < 1:
        raise ValueError(f"tracks must be at least 1 (got {tracks})")
    if seed < 0 or seconds <= 0:
        raise ValueError(f"need seed >= 0 and seconds > 0 (got {seed}, {seconds})")
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "meta.csv").unlink(missing_ok=True)  # a stale one would vouch for half-written audio
    jobs = [_job(out, i, seed, seconds) for i in range(tracks)]
    _run(jobs, workers if workers is not None else os.cpu_count() or 1, progress)
    with (out / "meta.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "kind", "seed"])
        writer.writerows([job.filename, job.kind, job.seed] for job in jobs)
    (out / "README.txt").write_text(_readme(jobs, seed, seconds))
    return out


# --- corpus writing -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    root: Path
    filename: str  # relative to root
    kind: str
    seed: int
    seconds: float


def _job(out: Path, index: int, seed: int, seconds: float) -> _Job:
    kind = KINDS[index % len(KINDS)]  # kinds interleave, so any prefix of the corpus is balanced
    return _Job(out, f"audio/track-{index:05d}-{kind}.wav", kind, track_seed(seed, index), seconds)


def _write(job: _Job) -> str:
    # soundfile directly rather than asc.audio.save: workers then never import the codec engine
    audio = synth_track(job.kind, np.random.default_rng(job.seed), job.seconds, RATE)
    sf.write(job.root / job.filename, audio, RATE, subtype="PCM_16")
    return job.filename


def _run(jobs: list[_Job], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=len(jobs), unit="track", disable=not progress, desc="lossless") as bar:
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                _write(job)
                bar.update()
            return
        # spawn, not fork: the caller may hold torch's threads, which do not survive a fork
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            for _ in pool.map(_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                bar.update()


def _readme(jobs: list[_Job], seed: int, seconds: float) -> str:
    counts = ", ".join(f"{sum(j.kind == k for j in jobs)} {k}" for k in KINDS)
    return (
        "Generated lossless corpus (no recordings: every track is synthesised).\n\n"
        f"{len(jobs)} tracks ({counts}), {seconds:g} s each, stereo, {RATE} Hz, 16-bit PCM WAV,\n"
        f"corpus seed {seed}. Made by training.lossless.write_lossless_corpus for the\n"
        "lossy-compression detector: full-band material (energy up to 20+ kHz, transients,\n"
        "tonal and noisy parts, stereo) for codecs to leave their artefacts on.\n\n"
        "  music   - additive-synthesis instruments on a random scale and tempo, drums\n"
        "  speech  - formant-synthesised syllables with sibilants, several speakers\n"
        "  ambient - rain, wind, birds, insects, traffic and room tone\n\n"
        "meta.csv lists filename, kind and the track's own seed; a track is rebuilt by\n"
        "synth_track(kind, numpy.random.default_rng(seed), seconds).\n"
    )


# --- finishing and rooms ------------------------------------------------------------------


def _finish(x: np.ndarray, rate: int) -> np.ndarray:
    """Remove DC, fade the ends (no clicks at the cut), and peak-normalise to -1 dBFS."""
    x = np.array(x, dtype=np.float32)  # a fresh copy, worked on in place from here
    x -= x.mean(axis=0)
    fade = min(len(x) // 2, int(0.005 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        x[:fade] *= ramp
        x[len(x) - fade :] *= ramp[::-1]
    peak = float(np.max(np.abs(x)))
    x *= np.float32(PEAK / peak if peak > 0 else 0.0)
    return x


def _reverb(
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


# --- timbres ------------------------------------------------------------------------------


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


# --- music --------------------------------------------------------------------------------

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


def _music(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
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
    mix = _reverb(mix, rate, rng, rt60=rng.uniform(0.4, 2.2), wet=rng.uniform(0.1, 0.4))
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


# --- speech -------------------------------------------------------------------------------

HOP, FRAME = 256, 1024  # STFT for formant shaping: 5.8 ms hop, 23 ms window at 44.1 kHz
_F4 = {"a": 3400, "ae": 3400, "e": 3500, "i": 3700, "o": 3300, "u": 3300, "schwa": 3500}
VOWELS = {name: (*VOWEL_FORMANTS[name], f4) for name, f4 in _F4.items()}  # F1..F4, Hz
FORMANT_WIDTHS = np.array([90.0, 110.0, 170.0, 250.0], dtype=np.float32)
FORMANT_LEVELS = np.array([1.0, 0.5, 0.25, 0.12], dtype=np.float32)
NASAL = (260, 1200, 2500, 3300)
LIQUID = (380, 1300, 2500, 3400)
FRIC_S, FRIC_SH, FRIC_F, BURST = 1, 2, 3, 4  # rows of the noise-shape bank (0 is silence)
MAX_PITCH_RISE = 1.8  # intonation never lifts a voice above 1.8 times its base pitch


@dataclass(frozen=True)
class _Speaker:
    f0: float  # Hz
    tract: float  # formant scale: shorter vocal tracts have higher formants
    pan: float
    level: float
    tilt: float  # source slope: higher is darker
    breathy: float  # aspiration noise riding on voiced sounds, as in real voices


def _speaker(rng: np.random.Generator) -> _Speaker:
    voice = rng.integers(3)  # low, middle or high voice
    f0 = (rng.uniform(85, 140), rng.uniform(160, 250), rng.uniform(240, 330))[voice]
    tract = (rng.uniform(0.95, 1.05), rng.uniform(1.1, 1.2), rng.uniform(1.2, 1.35))[voice]
    return _Speaker(
        f0=f0,
        tract=tract,
        pan=rng.uniform(-0.8, 0.8),
        level=random_gain(-6, 0, rng),
        tilt=rng.uniform(0.9, 1.4),
        breathy=rng.uniform(0.03, 0.15),
    )


@dataclass
class _Track:
    """Per-frame controls of the formant synthesiser."""

    speaker: np.ndarray  # index of the talking speaker, -1 in silence
    voice: np.ndarray  # level of the voiced source
    noise: np.ndarray  # level of the noise source
    shape: np.ndarray  # which noise shape (row of the bank)
    breath: np.ndarray  # aspiration: noise through the vocal-tract formants
    formants: np.ndarray  # (frames, 4) Hz
    f0: np.ndarray  # Hz

    @classmethod
    def empty(cls, frames: int) -> _Track:
        zeros = np.zeros(frames, dtype=np.float32)
        return cls(
            speaker=np.full(frames, -1, dtype=np.int32),
            voice=zeros.copy(),
            noise=zeros.copy(),
            shape=np.zeros(frames, dtype=np.int32),
            breath=zeros.copy(),
            formants=np.tile(np.array(VOWELS["schwa"], dtype=np.float32), (frames, 1)),
            f0=np.full(frames, 120.0, dtype=np.float32),
        )


def _speech(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Several speakers taking turns, each at their own place in the room.

    Not language, but what codecs meet in speech: voiced harmonics under moving formants,
    sibilant noise up to 16 kHz and beyond, plosive bursts, pauses, and room tone.
    """
    speakers = [_speaker(rng) for _ in range(int(rng.integers(2, 5)))]
    frames = n // HOP + 1
    track = _Track.empty(frames)
    _script(track, speakers, rate, rng)
    voiced = _glottal_source(n, rate, rng, track, speakers)
    mono = _formant_filter(voiced, rate, rng, track)
    mono = unit_rms(mono)
    centre = np.arange(frames) * HOP
    talking = np.maximum.accumulate(np.where(track.speaker >= 0, np.arange(frames), 0))
    pan = np.array([s.pan for s in speakers], dtype=np.float32)[track.speaker[talking]]
    angle = (np.interp(np.arange(n), centre, pan) + 1.0) * np.pi / 4
    stereo = np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1).astype(np.float32)
    stereo = _reverb(stereo, rate, rng, rt60=rng.uniform(0.2, 0.7), wet=rng.uniform(0.05, 0.25))
    room = coloured_noise(n, rate, rng, pink_magnitude, channels=2) * random_gain(-48, -36, rng)
    return stereo + room


def _script(track: _Track, speakers: list[_Speaker], rate: int, rng: np.random.Generator) -> None:
    """Turns of talk: utterances of syllables, with pauses, from speakers taking turns."""
    frames, sec = len(track.voice), rate / HOP  # frames per second
    pos, who = int(rng.uniform(0.05, 0.4) * sec), int(rng.integers(len(speakers)))
    while pos < frames:
        end = min(frames, pos + int(rng.uniform(0.8, 3.0) * sec))
        start = pos
        while pos < end:
            pos = _syllable(track, pos, who, speakers[who], sec, rng)
        _intonation(track, start, min(pos, frames), speakers[who], rng)
        pos += int(rng.uniform(0.15, 0.7) * sec)
        if len(speakers) > 1 and rng.random() < 0.8:
            who = int((who + rng.integers(1, len(speakers))) % len(speakers))
    for i in range(4):  # coarticulation: formants glide rather than jump
        track.formants[:, i] = smooth(track.formants[:, i], 7)
    for name in ("voice", "noise", "breath"):
        setattr(track, name, smooth(getattr(track, name), 3))


def _syllable(
    track: _Track, pos: int, who: int, spk: _Speaker, sec: float, rng: np.random.Generator
) -> int:
    vowel = np.array(VOWELS[str(rng.choice(list(VOWELS)))], dtype=np.float32) * spk.tract
    onset = str(rng.choice(["", "s", "sh", "f", "h", "t", "k", "z", "m", "l", "n", "p"]))
    pos = _consonant(track, pos, who, spk, onset, vowel, sec, rng)
    stress = rng.random() < 0.3
    length = int(rng.uniform(0.07, 0.14) * (1.8 if stress else 1.0) * sec)
    pos = _segment(track, pos, length, who, spk, voice=1.0, formants=vowel)
    if rng.random() < 0.3:
        coda = str(rng.choice(["s", "n", "t", "m", "l", "z"]))
        pos = _consonant(track, pos, who, spk, coda, vowel, sec, rng)
    return pos


def _consonant(
    track: _Track,
    pos: int,
    who: int,
    spk: _Speaker,
    kind: str,
    vowel: np.ndarray,
    sec: float,
    rng: np.random.Generator,
) -> int:
    def frames(low: float, high: float) -> int:
        return max(1, int(rng.uniform(low, high) * sec))

    if not kind:
        return pos
    if kind in ("s", "sh", "f"):
        shape = {"s": FRIC_S, "sh": FRIC_SH, "f": FRIC_F}[kind]
        level = 0.25 if kind == "f" else rng.uniform(0.5, 0.9)
        return _segment(track, pos, frames(0.08, 0.15), who, spk, noise=level, shape=shape)
    if kind == "h":
        return _segment(track, pos, frames(0.04, 0.08), who, spk, breath=0.4, formants=vowel)
    if kind in ("t", "k", "p"):
        pos += frames(0.03, 0.07)  # closure: silence
        pos = _segment(track, pos, frames(0.008, 0.015), who, spk, noise=0.8, shape=BURST)
        return _segment(track, pos, frames(0.015, 0.04), who, spk, breath=0.3, formants=vowel)
    if kind == "z":
        return _segment(track, pos, frames(0.06, 0.1), who, spk, voice=0.3, noise=0.4, shape=FRIC_S)
    tract = np.array(NASAL if kind in ("m", "n") else LIQUID, dtype=np.float32) * spk.tract
    return _segment(track, pos, frames(0.04, 0.08), who, spk, voice=0.5, formants=tract)


def _segment(
    track: _Track,
    pos: int,
    length: int,
    who: int,
    spk: _Speaker,
    voice: float = 0.0,
    noise: float = 0.0,
    shape: int = 0,
    breath: float = 0.0,
    formants: np.ndarray | None = None,
) -> int:
    end = min(len(track.voice), pos + length)
    if pos >= end:
        return end
    track.speaker[pos:end] = who
    track.voice[pos:end] = voice * spk.level
    track.noise[pos:end] = noise * spk.level
    track.shape[pos:end] = shape
    track.breath[pos:end] = (breath + spk.breathy * voice) * spk.level
    if formants is not None:
        track.formants[pos:end] = formants
    return end


def _intonation(
    track: _Track, start: int, end: int, spk: _Speaker, rng: np.random.Generator
) -> None:
    """Declining pitch over the utterance, a few accents, and a little jitter."""
    if end <= start:
        return
    u = np.linspace(0.0, 1.0, end - start, dtype=np.float32)
    contour = 1.12 - 0.22 * u
    for centre in rng.uniform(0, 1, size=int(rng.integers(1, 4))):
        contour += rng.uniform(0.05, 0.25) * np.exp(-(((u - centre) / 0.06) ** 2))
    if rng.random() < 0.3:  # a question rises at the end
        contour += 0.35 * np.clip((u - 0.8) / 0.2, 0, 1)
    jitter = smooth(rng.normal(0, 0.01, end - start), 5)
    track.f0[start:end] = spk.f0 * np.clip(contour + jitter, 0.6, MAX_PITCH_RISE)


def _glottal_source(
    n: int, rate: int, rng: np.random.Generator, track: _Track, speakers: list[_Speaker]
) -> np.ndarray:
    """Band-limited pulse trains, one wavetable per speaker, following the pitch contour."""
    f0 = np.interp(np.arange(n), np.arange(len(track.f0)) * HOP, track.f0)
    cycles = np.cumsum(f0 / rate)
    per_sample = np.repeat(track.speaker, HOP)[:n]
    out = np.zeros(n, dtype=np.float32)
    for who, spk in enumerate(speakers):
        mask = per_sample == who
        if not mask.any():
            continue
        top = band_top(rate, LOSSLESS_TOP) / (
            spk.f0 * MAX_PITCH_RISE
        )  # no partial past it at the peak
        k = np.arange(1, max(1, int(top)) + 1, dtype=np.float64)
        taper = np.cos(0.5 * np.pi * np.clip(2 * k / len(k) - 1, 0, 1)) ** 2  # no cliff at top
        out[mask] = read_table(
            interpolating_table(k**-spk.tilt * taper, rng.random(len(k))), cycles[mask]
        )
    return out


def _noise_bank(f: np.ndarray) -> np.ndarray:
    """Spectral shapes of the noise sources; sibilants reach 16 kHz and beyond."""
    s = highpass(f, 4200, 4) * lowpass(f, 12000, 2) * (1 + 1.5 * resonance(f, 7500, 1.2))
    sh = highpass(f, 2000, 3) * lowpass(f, 9000, 2) * (1 + resonance(f, 3500, 1.5))
    fric_f = highpass(f, 1200, 1) * lowpass(f, 10000, 1) * 0.6
    burst = highpass(f, 400, 1) * lowpass(f, 8000, 1) * (1 + resonance(f, 3000, 0.7))
    bank = np.stack([np.zeros_like(f), s, sh, fric_f, burst])
    return (bank / bank.max(axis=1, keepdims=True).clip(1e-9)).astype(np.float32)


def _formant_filter(
    source: np.ndarray, rate: int, rng: np.random.Generator, track: _Track
) -> np.ndarray:
    """Shape voiced source and noise with per-frame spectral envelopes (STFT, overlap-add)."""
    n = len(source)
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float32)
    padded = np.pad(source, (FRAME // 2, FRAME + HOP))
    frames = np.lib.stride_tricks.sliding_window_view(padded, FRAME)[::HOP][: len(track.voice)]
    spectrum = np.fft.rfft(frames * window, axis=1)
    f = np.fft.rfftfreq(FRAME, 1 / rate).astype(np.float32)
    tract = _vocal_tract(f, track.formants)
    noise = spectral_noise(rng, spectrum.shape)
    noise_env = _noise_bank(f)[track.shape] * track.noise[:, None] + tract * track.breath[:, None]
    mixed = spectrum * (tract * track.voice[:, None]) + noise * (noise_env * 6.0)
    blocks = np.fft.irfft(mixed, FRAME, axis=1).astype(np.float32) * window
    return _overlap_add(blocks, len(padded))[FRAME // 2 : FRAME // 2 + n] / 2.0


def _vocal_tract(f: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Sum of formant resonances per frame, over a floor so the top octave is never empty."""
    env = np.full((len(formants), len(f)), 0.004, dtype=np.float32)
    for i in range(4):
        offset = (f[None, :] - formants[:, i : i + 1]) * (2.0 / FORMANT_WIDTHS[i])
        env += FORMANT_LEVELS[i] / np.sqrt(1.0 + offset * offset)
    return env


def _overlap_add(blocks: np.ndarray, length: int) -> np.ndarray:
    """With hop = frame / 4, every fourth block tiles the signal, so four reshapes add it up."""
    out = np.zeros(length + FRAME, dtype=np.float32)
    per = FRAME // HOP
    for j in range(per):
        group = blocks[j::per].reshape(-1)
        out[j * HOP : j * HOP + len(group)] += group
    return out[:length]


# --- ambience -----------------------------------------------------------------------------


def _ambient(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
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
