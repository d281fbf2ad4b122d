"""Audio files in and out as float32 (samples, channels), resampled with soxr (no torch).

libsndfile reads wav/flac/ogg/opus/mp3 directly; anything else (m4a, aac, raw codecs) goes
through FFmpeg via the codec engine's decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from asc.codecs.clip import decode
from asc.codecs.errors import CodecError
from asc.codecs.pcm import match_channels


class AudioError(CodecError):
    """A file that is missing, unreadable or not audio; the message names the file."""


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    return soxr.resample(x, rate, target, quality="HQ").astype(np.float32)


def load(
    path: str | Path, rate: int | None = None, channels: int | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file; returns (float32 (samples, channels), rate)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        x, source_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        try:
            x, source_rate = decode(path.read_bytes())
        except CodecError as e:
            raise AudioError(f"{path}: not a readable audio file ({e})") from e
    if len(x) == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    if channels is not None:
        x = match_channels(x, channels)
    if rate is not None:
        x, source_rate = resample(x, source_rate, rate), rate
    return np.ascontiguousarray(x, dtype=np.float32), int(source_rate)


def save(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write 16-bit WAV (or FLAC by extension), the lossless formats of the corpora."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, pcm, rate, subtype="PCM_16")
