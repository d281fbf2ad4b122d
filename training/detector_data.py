"""The detector's data: which lossless tracks, their split, and each one's codec settings.

DS1 gives every track one codec setting drawn at random; DS2 gives the same tracks and settings
a codec cutoff drawn at random as well. Both the detector's trainer and the experiment that
reproduces the paper's tables draw them here with the same seeds, so they agree on every track.

Beyond the paper, DEVICE_CODECS is what the system carries: every codec family of the engine at
the settings a device would use (``DEVICE_COMMON``, the settings the detector's goals are judged
at), lower rates a constrained link would fall back to, and two chains. A track can get several
coded copies, drawn so that every family is equally likely (``assign_codec_sets``).
Kept free of torch: ``asc-train`` shows DS1 in its ``--help``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from asc.codecs import CODECS, CodecSpec, Stage, parse_spec
from asc.codecs.spec import format_quantity
from training.augment import UNCODED

# The detection paper's DS1: LAME, libfdk-aac and libvorbis at 128, 256 and 320 kbps.
DS1_CODECS = tuple(f"{c}:{b}k" for c in ("mp3", "fdk-aac", "vorbis") for b in (128, 256, 320))
# Its DS2: the same tracks and settings, each with one of these codec cutoff frequencies.
DS2_CUTOFFS_HZ = (14000, 16000, 18000, 20000)
AUDIO_SUFFIXES = {".wav", ".flac"}

# Every family of the engine at the settings a device commonly sends: the detector's goals
# (at least 98 % called lossy, the family named for 90 %) are judged per family over these.
DEVICE_COMMON: dict[str, tuple[str, ...]] = {
    "mp3": ("mp3:64k", "mp3:128k", "mp3:192k", "mp3:320k"),
    "aac": ("aac:64k", "aac:128k", "aac:256k", "fdk-aac:64k", "fdk-aac:128k", "fdk-aac:256k"),
    "he-aac": ("he-aac:24k", "he-aac:32k", "he-aac:48k", "he-aac:64k"),
    "opus": ("opus:24k", "opus:48k", "opus:96k", "opus:128k"),
    "vorbis": ("vorbis:96k", "vorbis:160k", "vorbis:256k", "vorbis:320k"),
    "sbc": ("sbc:bitpool=35", "sbc:bitpool=45", "sbc:bitpool=53"),
    "aptx": ("aptx",),
}
# Lower rates a device falls back to on a poor link, and two chains (Bluetooth then cellular,
# a voice call re-encoded for storage); a chain's family is its last codec's.
DEVICE_LOW = ("mp3:32k", "aac:32k", "he-aac:16k", "opus:16k", "vorbis:64k", "sbc:bitpool=19")
DEVICE_CHAINS = ("sbc:bitpool=53>aac:64k", "opus:24k>mp3:64k")
DEVICE_CODECS = (
    *(s for group in DEVICE_COMMON.values() for s in group),
    *DEVICE_LOW,
    *DEVICE_CHAINS,
)
# Names ``--codecs`` accepts for these lists.
CODEC_SETS = {"ds1": DS1_CODECS, "device": DEVICE_CODECS}


class LosslessDataError(ValueError):
    """No usable lossless tracks where they were expected."""


def family_of(spec: str) -> str:
    return "lossless" if spec == UNCODED else CODECS[parse_spec(spec).last.name].family


def list_tracks(root: Path) -> list[Path]:
    """The corpus's own track list when it has one (meta.csv), else every .wav/.flac below."""
    if not root.is_dir():
        raise LosslessDataError(f"{root}: no such directory of lossless tracks")
    meta = root / "meta.csv"
    if meta.is_file():
        with open(meta, newline="") as f:
            tracks = [root / row["filename"] for row in csv.DictReader(f)]
        missing = [str(t) for t in tracks if not t.is_file()]
        if missing:
            raise LosslessDataError(f"{meta} lists missing tracks: {', '.join(missing[:3])}")
    else:
        tracks = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not tracks:
        raise LosslessDataError(f"{root}: no .wav or .flac tracks found")
    return tracks


def split_tracks(tracks: list[Path], seed: int) -> dict[str, list[Path]]:
    """70/10/20 by track, as in the paper; every split gets at least one track."""
    order = np.random.default_rng(seed).permutation(len(tracks))
    n_val = max(1, round(0.1 * len(tracks)))
    n_test = max(1, round(0.2 * len(tracks)))
    picked = [tracks[i] for i in order]
    return {
        "test": picked[:n_test],
        "val": picked[n_test : n_test + n_val],
        "train": picked[n_test + n_val :],
    }


def assign_codecs(tracks: list[Path], codecs: list[str], seed: int) -> dict[Path, str]:
    """DS1: one codec setting per track, drawn at random."""
    rng = np.random.default_rng(seed + 1)
    return {t: codecs[int(rng.integers(len(codecs)))] for t in tracks}


def family_weights(codecs: list[str]) -> np.ndarray:
    """A drawing weight per setting that gives every codec family the same total weight."""
    families = [family_of(c) for c in codecs]
    weights = np.array([1.0 / families.count(f) for f in families])
    return weights / weights.sum()


def assign_codec_sets(
    tracks: list[Path], codecs: list[str], copies: int, seed: int
) -> dict[Path, tuple[str, ...]]:
    """``copies`` distinct settings per track, every family equally likely.

    With one copy and as many settings in every family (DS1), it is ``assign_codecs``'s draw, so
    the paper's reproduction keeps its tracks and settings.
    """
    if not 1 <= copies <= len(codecs):
        raise ValueError(f"copies per track must lie in 1..{len(codecs)}, got {copies}")
    weights = family_weights(codecs)
    if copies == 1 and np.allclose(weights, weights[0]):
        return {t: (spec,) for t, spec in assign_codecs(tracks, codecs, seed).items()}
    rng = np.random.default_rng(seed + 1)
    return {
        t: tuple(codecs[i] for i in rng.choice(len(codecs), copies, replace=False, p=weights))
        for t in tracks
    }


def expand_codec_sets(items: list[str]) -> list[str]:
    """``ds1`` and ``device`` in a list of codec paths become the settings they name."""
    return [s for item in items for s in CODEC_SETS.get(item.strip().lower(), (item,))]


def assign_cutoffs(tracks: list[Path], cutoffs_hz: list[int], seed: int) -> dict[Path, int]:
    """DS2: one codec cutoff per track, drawn at random (independently of its codec)."""
    rng = np.random.default_rng(seed + 2)
    return {t: int(cutoffs_hz[int(rng.integers(len(cutoffs_hz)))]) for t in tracks}


def with_cutoff(spec: str, cutoff_hz: int) -> str:
    """``mp3:128k`` and 14000 -> ``mp3:128k,cutoff=14k`` (canonical)."""
    parsed = parse_spec(spec)
    last = parsed.last
    params = dict(last.params) | {"cutoff": format_quantity(cutoff_hz)}
    stage = Stage(last.name, last.bitrate, tuple(sorted(params.items())))
    return str(CodecSpec((*parsed.stages[:-1], stage)))


def tracks_fingerprint(tracks: list[Path]) -> str:
    h = hashlib.sha256()
    for t in tracks:
        h.update(f"{t.name}|{t.stat().st_size}\n".encode())
    return h.hexdigest()
