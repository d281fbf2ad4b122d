"""Where recorded audio comes from: files and folders cut into clips, and their labels.

Live audio (the microphone) is cut into clips by edge.live_sources, network sources by
edge.network_sources; the clips themselves are defined in edge.clips.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from asc.audio import load
from asc.codecs.errors import CodecError
from edge.clips import Clip
from edge.errors import SourceError, warn

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac")
MIN_PIECE_SECONDS = 1.0  # a trailing piece shorter than this says too little about a scene
FILE_COLUMNS = ("filename", "file", "path")
LABEL_COLUMNS = ("scene_label", "label", "category")


def find_audio_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for audio, in a deterministic order.

    A file named on the command line is taken whatever its extension (the loader says if it is
    not audio); a folder contributes its audio files sorted by path. A missing path, or a
    folder without audio, is an error naming it: better than streaming nothing.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
            )
            if not found:
                raise SourceError(
                    f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder"
                )
        elif path.is_file():
            found = [path]
        else:
            raise SourceError(f"{path}: no such file or folder")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files


def cut(pcm: np.ndarray, rate: int, clip_seconds: float) -> list[tuple[int, np.ndarray]]:
    """Consecutive pieces of ``clip_seconds`` as (start sample, audio).

    A trailing piece under a second is dropped, unless it is the whole file (a short file is
    still one clip).
    """
    if clip_seconds <= 0:
        raise SourceError(f"clip length must be positive, got {clip_seconds} s")
    size = max(1, round(clip_seconds * rate))
    pieces = [(start, pcm[start : start + size]) for start in range(0, len(pcm), size)]
    if len(pieces) > 1 and len(pieces[-1][1]) < MIN_PIECE_SECONDS * rate:
        pieces.pop()
    return pieces


def _clip_stems(files: Sequence[Path]) -> list[str]:
    """Each file's stem, with ``~2``, ``~3``... where stems repeat, so clip ids stay unique."""
    counts: dict[str, int] = {}
    stems = []
    for path in files:
        n = counts[path.stem] = counts.get(path.stem, 0) + 1
        stems.append(path.stem if n == 1 else f"{path.stem}~{n}")
    return stems


def file_clips(
    files: Sequence[str | Path],
    *,
    rate: int = 44100,
    channels: int = 1,
    clip_seconds: float = 10.0,
    labels: Labels | None = None,
) -> Iterator[Clip]:
    """Clips of each file in turn, loaded one file at a time (a large folder fits in memory).

    Ids: ``<stem>`` for a file that makes one clip, ``<stem>#<k>`` (k from 0) otherwise.
    """
    paths = [Path(f) for f in files]
    for path, stem in zip(paths, _clip_stems(paths), strict=True):
        try:
            pcm, _ = load(path, rate, channels)
        except CodecError as e:  # AudioError names the file already
            raise SourceError(str(e)) from None
        label = labels.label_for(path) if labels is not None else ""
        pieces = cut(pcm, rate, clip_seconds)
        for k, (start, piece) in enumerate(pieces):
            yield Clip(
                clip_id=stem if len(pieces) == 1 else f"{stem}#{k}",
                pcm=piece,
                rate=rate,
                label=label,
                source=str(path),
                offset=start / rate,
            )


def looped(make_round: Callable[[], Iterable[Clip]], rounds: int | None = None) -> Iterator[Clip]:
    """Repeat a finite clip source (``rounds`` times, or forever).

    Round 0 keeps the ids; later rounds add ``@<round>`` so every clip id stays unique, which
    the server needs to tell one clip's results from another's.
    """
    counter = itertools.count() if rounds is None else range(rounds)
    for round_ in counter:
        empty = True
        for clip in make_round():
            empty = False
            yield clip if round_ == 0 else replace(clip, clip_id=f"{clip.clip_id}@{round_}")
        if empty:  # nothing to repeat: do not spin
            return


# --- labels --------------------------------------------------------------------------------


def read_labels(path: str | Path) -> dict[str, str]:
    """File basename -> label, from a TAU-style meta.csv (tab) or a comma CSV (e.g. ESC-50).

    The header must name a file column (filename, file or path) and a label column
    (scene_label, label or category); values are matched on the file's basename, so TAU's
    ``audio/airport-lisbon-1000-40000-a.wav`` labels ``airport-lisbon-1000-40000-a.wav``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: unreadable label file ({e})") from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [name.strip().lower() for name in next(reader, [])]
    file_col = next((header.index(c) for c in FILE_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    if file_col is None or label_col is None:
        raise SourceError(
            f"{path}: expected a header naming a file column ({'/'.join(FILE_COLUMNS)}) and a "
            f"label column ({'/'.join(LABEL_COLUMNS)}); found: {', '.join(header) or 'nothing'}"
        )
    mapping: dict[str, str] = {}
    for row in reader:
        if len(row) <= max(file_col, label_col) or not row[file_col].strip():
            continue
        name = Path(row[file_col].strip().replace("\\", "/")).name
        mapping[name] = row[label_col].strip()
    if not mapping:
        raise SourceError(f"{path}: no label rows under the header")
    return mapping


class Labels:
    """Ground truth per file: one label for all (``--label``) or a table (``--labels-from``)."""

    def __init__(
        self,
        table: dict[str, str] | None = None,
        default: str = "",
        origin: str = "",
        on_warning: Callable[[str], None] = warn,
    ) -> None:
        self.table, self.default, self.origin = table, default, origin
        self._warn = on_warning
        self.missing: list[str] = []

    @classmethod
    def from_file(cls, path: str | Path, on_warning: Callable[[str], None] = warn) -> Labels:
        return cls(read_labels(path), origin=str(path), on_warning=on_warning)

    def label_for(self, path: str | Path) -> str:
        if self.table is None:
            return self.default
        name = Path(path).name
        label = self.table.get(name)
        if label is None:
            if not self.missing:  # once per run: a big folder would otherwise flood stderr
                self._warn(
                    f"{name} has no row in {self.origin}; its clips (and any other such file's) "
                    "are sent without a label"
                )
            self.missing.append(name)
            return ""
        return label
