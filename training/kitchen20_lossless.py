"""Which Kitchen20 clips can stand for lossless audio, and why each of the others cannot.

Kitchen20's Freesound clips are stored as FLAC, but a FLAC is only as lossless as the upload it
was cut from. Two reasons keep a clip off the lossless side of the detector's data:

- *lossy upload*: ``freesound_file`` ends in a lossy container's extension (.mp3, .m4a, .ogg,
  ...): the audio went through a codec before it reached Kitchen20 (31 clips: 21 .mp3, 5 .m4a
  with about 16.2 kHz left, 5 .ogg);
- *band-limited*: the clip's effective bandwidth (the highest frequency within 60 dB of the
  spectrum's peak, ``asc.codecs.measure.effective_bandwidth``) lies below 16.5 kHz, the lowpass
  of a codec at a middling bitrate. About 18 % of the .wav uploads do; whether from a lossy past
  or a recorder with a low sample rate cannot be told, so none of them counts as lossless.

Kept free of torch: the report lists the exclusions without loading a model.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from asc.audio import load
from asc.codecs.measure import effective_bandwidth
from training.detector_data import LosslessDataError

META = "meta.csv"
LOSSY_UPLOADS = frozenset({".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".wma"})
MIN_BANDWIDTH_HZ = 16500.0
BANDWIDTH_FLOOR_DB = 60.0


class Kitchen20Error(LosslessDataError):
    """A folder that is not Kitchen20's Freesound part as ``meta.csv`` describes it."""


@dataclass(frozen=True)
class RealClip:
    """A Kitchen20 clip kept as lossless: its audio, class, recording and measured bandwidth."""

    path: Path
    label: str
    recording: str  # source_id: the Freesound sound the clip was cut from
    upload: str  # freesound_file
    bandwidth_hz: float


@dataclass(frozen=True)
class Exclusion:
    """A clip left off the lossless side, and why."""

    filename: str
    label: str
    recording: str
    upload: str
    reason: str  # "lossy upload (.mp3)" or "band-limited (15.2 kHz < 16.5 kHz)"
    bandwidth_hz: float

    def to_dict(self) -> dict:
        return asdict(self) | {"bandwidth_hz": round(self.bandwidth_hz)}


def is_kitchen20(root: Path) -> bool:
    """A folder whose meta.csv names each clip's Freesound upload (``freesound_file``)."""
    meta = root / META
    if not meta.is_file():
        return False
    with open(meta, newline="") as f:
        header = next(csv.reader(f), [])
    return {"filename", "label", "source_id", "freesound_file"} <= set(header)


def upload_suffix(upload: str) -> str:
    return Path(upload).suffix.lower()


def exclusion_reason(upload: str, bandwidth_hz: float, min_bandwidth_hz: float) -> str | None:
    """Why a clip is not lossless, or None when it is: the upload's extension first."""
    suffix = upload_suffix(upload)
    if suffix in LOSSY_UPLOADS:
        return f"lossy upload ({suffix})"
    if bandwidth_hz < min_bandwidth_hz:
        return f"band-limited ({bandwidth_hz / 1000:.1f} kHz < {min_bandwidth_hz / 1000:.1f} kHz)"
    return None


def clip_bandwidth(path: Path) -> float:
    x, rate = load(path)
    return effective_bandwidth(x, rate, BANDWIDTH_FLOOR_DB)


def kitchen20_lossless(
    root: Path, min_bandwidth_hz: float = MIN_BANDWIDTH_HZ
) -> tuple[list[RealClip], list[Exclusion]]:
    """Kitchen20's lossless originals in meta.csv order, and every excluded clip with its reason.

    Every clip's bandwidth is measured (about 10 ms a clip), lossy uploads' too, so the list of
    exclusions shows what a lossy upload left.
    """
    if not is_kitchen20(root):
        raise Kitchen20Error(
            f"{root}: no {META} with filename, label, source_id and freesound_file columns"
        )
    with open(root / META, newline="") as f:
        rows = list(csv.DictReader(f))
    kept: list[RealClip] = []
    excluded: list[Exclusion] = []
    for row in rows:
        path = root / row["filename"]
        if not path.is_file():
            raise Kitchen20Error(f"{root / META} lists a missing clip: {path}")
        bandwidth = clip_bandwidth(path)
        reason = exclusion_reason(row["freesound_file"], bandwidth, min_bandwidth_hz)
        if reason is None:
            kept.append(
                RealClip(path, row["label"], row["source_id"], row["freesound_file"], bandwidth)
            )
        else:
            excluded.append(
                Exclusion(
                    row["filename"],
                    row["label"],
                    row["source_id"],
                    row["freesound_file"],
                    reason,
                    bandwidth,
                )
            )
    if not kept:
        raise Kitchen20Error(f"{root}: no clip left as lossless")
    return kept, excluded


def exclusion_counts(excluded: list[Exclusion]) -> dict[str, int]:
    """How many clips each kind of reason excludes: by lossy extension, and band-limited."""
    counts: dict[str, int] = {}
    for e in excluded:
        kind = e.reason.split(" (")[0] + (
            f" {upload_suffix(e.upload)}" if e.reason.startswith("lossy") else ""
        )
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
