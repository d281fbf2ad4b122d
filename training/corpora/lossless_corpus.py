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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from training.corpora.ambience import ambient_track
from training.corpora.music import music_track
from training.corpora.speech import speech_track

KINDS = ("music", "speech", "ambient")
RATE = 44100
PEAK = 10 ** (-1 / 20)  # -1 dBFS: headroom for 16-bit rounding and for codecs' overshoot


def synth_track(
    kind: str, rng: np.random.Generator, seconds: float = 10.0, rate: int = RATE
) -> np.ndarray:
    """One generated track of ``kind``: float32 (samples, 2), peak at -1 dBFS."""
    builders = {"music": music_track, "speech": speech_track, "ambient": ambient_track}
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


# ---------------------------------------------------------------------------------------------
# Corpus writing


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
        f"corpus seed {seed}. Made by training.corpora.write_lossless_corpus for the\n"
        "lossy-compression detector: full-band material (energy up to 20+ kHz, transients,\n"
        "tonal and noisy parts, stereo) for codecs to leave their artefacts on.\n\n"
        "  music   - additive-synthesis instruments on a random scale and tempo, drums\n"
        "  speech  - formant-synthesised syllables with sibilants, several speakers\n"
        "  ambient - rain, wind, birds, insects, traffic and room tone\n\n"
        "meta.csv lists filename, kind and the track's own seed; a track is rebuilt by\n"
        "synth_track(kind, numpy.random.default_rng(seed), seconds).\n"
    )


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
