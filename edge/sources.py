"""Where the edge's audio comes from: files and folders cut into clips, or a live microphone.

A clip is what the server classifies and summarises as one unit; every clip has an id that is
unique within a run (the server keys its results by it), an optional ground-truth label (for
live accuracy per codec path) and its PCM as float32 (samples, channels) at the stream's rate.

Two kinds of clip share one interface (:class:`AudioClip`): :class:`Clip` holds audio that is
already there (a piece of a file); :class:`LiveClip` fills while the microphone (or a network
source, edge.network_sources) records, so the client can stream it as it is captured instead
of waiting for the whole clip. :class:`LiveSource` cuts any such live audio into clips. Both can be
read from the beginning again, which is what a reconnect needs (a clip without a summary is
resent whole on the new call).
"""

from __future__ import annotations

import csv
import itertools
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from asc.audio import load
from asc.codecs.errors import CodecError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac")
MIN_PIECE_SECONDS = 1.0  # a trailing piece shorter than this says too little about a scene
# A live clip cut short (capture stopped, a network source lost) is sent only from this long:
# less says too little about a scene, and is shorter than some models take at all.
MIN_LIVE_SECONDS = 0.5
FILE_COLUMNS = ("filename", "file", "path")
LABEL_COLUMNS = ("scene_label", "label", "category")


class SourceError(Exception):
    """An input the edge cannot use (missing file, bad label file, no microphone): one line."""


def warn(message: str) -> None:
    """Default warning sink: one line on stderr, so it never mixes into JSONL on stdout."""
    print(f"asc-edge: warning: {message}", file=sys.stderr, flush=True)


class AudioClip(Protocol):
    """What the streaming client needs from a clip, whichever source made it."""

    clip_id: str
    label: str
    rate: int
    channels: int
    live: bool  # audio arrives in real time: never paced again, never waited for whole

    def chunks(self, samples: int) -> Iterator[np.ndarray]:
        """The clip from its beginning in pieces of ``samples`` (the last may be shorter)."""
        ...


@dataclass(frozen=True)
class Clip:
    """A clip whose audio is all there: a piece of a file (or anything a caller builds)."""

    clip_id: str
    pcm: np.ndarray  # float32 (samples, channels)
    rate: int
    label: str = ""
    source: str = ""  # the file it came from, for reports
    offset: float = 0.0  # seconds into the source
    live = False

    @property
    def channels(self) -> int:
        return int(self.pcm.shape[1])

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate

    def chunks(self, samples: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.pcm), max(1, samples)):
            yield self.pcm[start : start + samples]


class LiveClip:
    """A clip being recorded: capture appends, readers follow behind it and wait for more.

    The buffer is allocated for the whole clip up front, so a reader (one per codec path, or
    a resend after a reconnect) can start from the beginning at any time without copying the
    capture, and the capture never waits for a reader.
    """

    live = True

    def __init__(
        self, clip_id: str, rate: int, channels: int, samples: int, label: str = ""
    ) -> None:
        self.clip_id, self.rate, self.label = clip_id, rate, label
        self.source = "mic"
        self._pcm = np.zeros((samples, channels), np.float32)
        self._filled = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def channels(self) -> int:
        return int(self._pcm.shape[1])

    @property
    def seconds(self) -> float:
        return self._filled / self.rate

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def filled(self) -> int:
        """Samples recorded so far."""
        return self._filled

    def append(self, block: np.ndarray) -> np.ndarray:
        """Add captured audio; returns what did not fit (the start of the next clip)."""
        with self._cond:
            room = len(self._pcm) - self._filled
            take = min(room, len(block))
            self._pcm[self._filled : self._filled + take] = block[:take]
            self._filled += take
            if self._filled == len(self._pcm):
                self._closed = True
            self._cond.notify_all()
            return block[take:]

    def close(self) -> None:
        """End the clip where it is (capture stopped): readers get what was recorded."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def chunks(self, samples: int) -> Iterator[np.ndarray]:
        samples = max(1, samples)
        pos = 0
        while True:
            with self._cond:
                while self._filled - pos < samples and not self._closed:
                    self._cond.wait()
                end = min(pos + samples, self._filled)
                piece = self._pcm[pos:end].copy()
                done = self._closed and end == self._filled
            if len(piece):
                yield piece
            pos = end
            if done:
                return


# --- files ---------------------------------------------------------------------------------


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


# --- microphone ----------------------------------------------------------------------------


def _import_sounddevice():
    """sounddevice loads PortAudio at import time; a device without it gets a clear error."""
    try:
        import sounddevice
    except OSError as e:
        raise SourceError(
            f"--mic: cannot use the microphone: {e} (install PortAudio, e.g. "
            "apt-get install libportaudio2)"
        ) from None
    return sounddevice


class LiveSource:
    """Consecutive :class:`LiveClip` s from audio that arrives in real time, until :meth:`stop`.

    Whatever captures the audio (the microphone's callback, a network source's reader thread)
    only calls :meth:`feed`, which copies into the current clip, so capture never waits for the
    network. If the network falls behind (server down), up to ``backlog`` clips wait in memory
    to be sent when it returns; beyond that the oldest unsent clip is dropped with a warning
    rather than growing without bound. Clip ids are ``<prefix>-<UTC start>-<n>``.

    A clip is handed out once it holds ``MIN_LIVE_SECONDS`` (it streams on while it records);
    one that ends before that (capture stopped, the source lost) is never sent (``short``).
    """

    def __init__(
        self,
        rate: int,
        channels: int,
        clip_seconds: float,
        *,
        prefix: str,
        label: str = "",
        backlog: int = 60,
        on_warning: Callable[[str], None] = warn,
    ) -> None:
        if clip_seconds <= 0:
            raise SourceError(f"clip length must be positive, got {clip_seconds} s")
        self.rate, self.channels, self.label, self.prefix = rate, channels, label, prefix
        self.clip_samples = max(1, round(clip_seconds * rate))
        self.min_samples = min(self.clip_samples, max(1, round(MIN_LIVE_SECONDS * rate)))
        self.backlog = backlog
        self.dropped = 0
        self.short = 0  # clips that ended under MIN_LIVE_SECONDS, never sent
        self._warn = on_warning
        self._count = itertools.count()
        self._queue: deque[LiveClip | None] = deque()
        self._cond = threading.Condition()
        self._current: LiveClip | None = None
        self._handed = False  # the current clip is in the queue
        self._stopped = False

    def _new_clip(self) -> LiveClip:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        clip = LiveClip(
            f"{self.prefix}-{stamp}-{next(self._count)}",
            self.rate,
            self.channels,
            self.clip_samples,
            self.label,
        )
        clip.source = self.prefix
        return clip

    def _hand_out(self, clip: LiveClip) -> None:
        with self._cond:
            self._queue.append(clip)
            while len(self._queue) > self.backlog:
                old = self._queue.popleft()
                if old is not None:
                    self.dropped += 1
                    self._warn(f"network behind: dropped unsent {self.prefix} clip {old.clip_id}")
            self._cond.notify_all()

    def feed(self, block: np.ndarray) -> None:
        """Add captured audio, starting new clips as they fill (the capture's only work)."""
        if self._stopped:
            return
        while len(block):
            if self._current is None or self._current.closed:
                self._current, self._handed = self._new_clip(), False
            block = self._current.append(block)
            if not self._handed and self._current.filled >= self.min_samples:
                self._handed = True
                self._hand_out(self._current)

    def end_clip(self) -> None:
        """End the clip being recorded where it is (the capture broke off); the next audio
        starts a new one. One still under ``MIN_LIVE_SECONDS`` is dropped unsent."""
        current = self._current
        if current is not None:
            current.close()
            if not self._handed:
                self._handed = True
                self.short += 1

    def stop(self) -> None:
        """Stop: the clip being recorded ends where it is, iteration ends after it."""
        self._stopped = True
        self.end_clip()
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()

    def __iter__(self) -> Iterator[LiveClip]:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                clip = self._queue.popleft()
            if clip is None:
                return
            yield clip


class MicSource(LiveSource):
    """Consecutive clips from a sounddevice InputStream, until :meth:`stop` (or Ctrl-C).

    The PortAudio callback only copies into the current :class:`LiveClip` (see
    :class:`LiveSource` for the backlog bound); clip ids are ``mic-<UTC start>-<n>``.
    """

    def __init__(
        self,
        rate: int = 44100,
        channels: int = 1,
        clip_seconds: float = 10.0,
        device: int | str | None = None,
        label: str = "",
        backlog: int = 60,
        on_warning: Callable[[str], None] = warn,
    ) -> None:
        super().__init__(
            rate,
            channels,
            clip_seconds,
            prefix="mic",
            label=label,
            backlog=backlog,
            on_warning=on_warning,
        )
        self.device = device
        self.overflows = 0
        self._stream = None

    def start(self) -> None:
        """Open the input device; raises SourceError naming why there is no microphone."""
        sd = _import_sounddevice()
        try:
            sd.check_input_settings(
                device=self.device, channels=self.channels, samplerate=self.rate, dtype="float32"
            )
            self._stream = sd.InputStream(
                samplerate=self.rate,
                channels=self.channels,
                dtype="float32",
                device=self.device,
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError, OSError) as e:
            raise SourceError(f"--mic: no usable audio input device: {e}") from None

    def _callback(self, indata, frames, time, status) -> None:  # PortAudio's thread
        if status and status.input_overflow:
            self.overflows += 1
        self.feed(np.array(indata, dtype=np.float32, copy=True))

    def stop(self) -> None:
        """Stop capturing: the clip being recorded ends where it is, iteration ends after it."""
        self._stopped = True
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # the device may already be gone
                pass
        super().stop()
