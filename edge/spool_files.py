"""How the spool keeps a clip on disk: its files, its entry record, its audio, atomic writes.

A spool directory holds::

    lock                    flock'ed by the edge using the spool; holds its pid
    clips/<seq>.flac|.npy   a clip's audio, lossless: FLAC when the samples sit exactly on the
                            16- or 24-bit grid (audio read from 16/24-bit files or a sound
                            card), else float32 .npy
    clips/<seq>.json        the clip's metadata (id, label, rate, channels, source, the codec
                            paths it is spooled for); written last, so an entry exists once
                            this file does
    clips/<seq>.windows     window results already reported, one ``path<TAB>start<TAB>end``
                            line each (appended as they are reported)
    done.jsonl              the ledger: one ``{"clip_id", "path"}`` line per clip summary
                            reported, appended and fsync'd before the entry goes away

Every file is written to a temporary name, fsync'd and renamed into place, so a crash leaves
either the old state or the new one; leftovers of an interrupted write are removed on open.

edge.spool decides what is kept and for how long; this module only reads and writes the files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

FORMAT = 1
ENTRY_FILE = re.compile(r"^(\d{12})\.(json|flac|npy|windows)$")

WindowKey = tuple[float, float]


def window_key(start: float, end: float) -> WindowKey:
    """How a window result is recognised again (after a resend, or in a later run)."""
    return (round(float(start), 6), round(float(end), 6))


@dataclass
class SpoolEntry:
    """One spooled clip: where its audio is, what it is, which codec paths it is owed to."""

    seq: int
    clip_id: str
    rate: int
    channels: int
    paths: list[str]  # the codec paths it was spooled for (done ones included)
    audio: str  # file name under clips/
    label: str = ""
    source: str = ""
    offset: float = 0.0
    nbytes: int = 0  # its files' sizes together
    windows: dict[str, set[WindowKey]] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return f"{self.seq:012d}"

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "clip_id": self.clip_id,
            "rate": self.rate,
            "channels": self.channels,
            "paths": self.paths,
            "audio": self.audio,
            "label": self.label,
            "source": self.source,
            "offset": self.offset,
        }


def read_entry(
    seq: int,
    meta_path: Path,
    parts: dict[str, Path],
    clip_dir: Path,
    on_warning: Callable[[str], None],
) -> SpoolEntry | None:
    """An entry from its files on disk; None (with a warning) when it cannot be used."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        entry = SpoolEntry(
            seq=seq,
            clip_id=str(meta["clip_id"]),
            rate=int(meta["rate"]),
            channels=int(meta["channels"]),
            paths=[str(p) for p in meta["paths"]],
            audio=str(meta["audio"]),
            label=str(meta.get("label", "")),
            source=str(meta.get("source", "")),
            offset=float(meta.get("offset", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        on_warning(f"spool: dropping unreadable entry {meta_path.name}: {e}")
        return None
    if (clip_dir / entry.audio).name not in {p.name for p in parts.values()}:
        on_warning(f"spool: dropping entry {meta_path.name}: its audio file is missing")
        return None
    windows = parts.get("windows")
    if windows is not None:
        for line in windows.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) == 3:
                with contextlib.suppress(ValueError):
                    key = window_key(float(fields[1]), float(fields[2]))
                    entry.windows.setdefault(fields[0], set()).add(key)
    entry.nbytes = sum(p.stat().st_size for p in parts.values())
    return entry


def encode_audio(pcm: np.ndarray, rate: int) -> tuple[bytes, str]:
    """Lossless bytes of ``pcm``: FLAC when exact (16/24-bit grid), else float32 .npy."""
    x = np.asarray(pcm, np.float32)
    if x.ndim == 1:
        x = x[:, None]
    buf = io.BytesIO()
    if x.size and x.shape[1] <= 8 and 1 <= rate <= 655_350:
        for bits, subtype in ((16, "PCM_16"), (24, "PCM_24")):
            scale = float(2 ** (bits - 1))
            scaled = x.astype(np.float64) * scale
            if (
                scaled.min() >= -scale
                and scaled.max() <= scale - 1
                and np.array_equal(scaled, np.round(scaled))
            ):
                sf.write(buf, x, rate, format="FLAC", subtype=subtype)
                return buf.getvalue(), ".flac"
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue(), ".npy"


def write_atomically(path: Path, data: bytes, durable: bool, sync_dir: bool = False) -> None:
    """Temporary file, fsync, rename: the file is there whole or not at all."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync_dir and durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
