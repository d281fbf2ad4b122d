"""Speech-like babble for the lossless corpus: formant synthesis of several speakers taking turns.

Not language, but what codecs meet in speech: voiced harmonics under moving formants, sibilant
noise up to 16 kHz and beyond, plosive bursts, pauses and room tone. A script of per-frame
controls (who talks, voicing, noise, formants, pitch) drives a glottal source through an STFT
formant filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.corpora.dsp import (
    LOSSLESS_TOP,
    VOWEL_FORMANTS,
    band_top,
    coloured_noise,
    highpass,
    interpolating_table,
    lowpass,
    pink_magnitude,
    random_gain,
    read_table,
    resonance,
    smooth,
    spectral_noise,
    unit_rms,
)
from training.corpora.rooms import stereo_reverb

HOP, FRAME = 256, 1024  # STFT for formant shaping: 5.8 ms hop, 23 ms window at 44.1 kHz
# F4 of the shared vowel formants (F1-F3), Hz; the scene talkers use three formants only
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


def speech_track(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
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
    stereo = stereo_reverb(
        stereo, rate, rng, rt60=rng.uniform(0.2, 0.7), wet=rng.uniform(0.05, 0.25)
    )
    room = coloured_noise(n, rate, rng, pink_magnitude, channels=2) * random_gain(-48, -36, rng)
    return stereo + room


# ---------------------------------------------------------------------------------------------
# The script: turns, syllables, consonants, intonation


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


# ---------------------------------------------------------------------------------------------
# The synthesiser: glottal source through formants


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
