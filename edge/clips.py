"""What a clip is: the unit the server classifies and summarises as one.

Every clip has an id that is unique within a run (the server keys its results by it), an
optional ground-truth label (for live accuracy per codec path) and its PCM as float32
(samples, channels) at the stream's rate.

Two kinds of clip share one interface (:class:`AudioClip`): :class:`Clip` holds audio that is
already there (a piece of a file); :class:`LiveClip` fills while the microphone (or a network
source, edge.network_sources) records, so the client can stream it as it is captured instead
of waiting for the whole clip. Both can be read from the beginning again, which is what a
reconnect needs (a clip without a summary is resent whole on the new call).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
