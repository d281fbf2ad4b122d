"""Cutting a clip's decoded audio into analysis windows as it arrives.

Windows start every ``hop`` samples and span ``window`` samples. When the clip ends, audio after
the last full window is covered by one more window aligned to the clip's end (if at least
``min_tail`` samples were left uncovered), and a clip shorter than one window becomes a single
shorter window: the models are fully convolutional, so nothing is padded or invented.
Only the samples a future window still needs are kept, so memory per clip is one window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    index: int
    start: int  # first sample, counted from the start of the clip
    samples: np.ndarray  # mono float32
    length: int | None = None  # in the clip's samples, when ``samples`` were resampled

    @property
    def end(self) -> int:
        return self.start + (len(self.samples) if self.length is None else self.length)


class Windower:
    def __init__(self, window: int, hop: int, min_tail: int):
        if window < 1 or not 1 <= hop <= window:
            raise ValueError(f"need 1 <= hop <= window, got window {window}, hop {hop}")
        self.window, self.hop, self.min_tail = window, hop, min_tail
        self._chunks: list[np.ndarray] = []  # joined only when a window completes: O(n) per clip
        self._buffer_start = 0  # clip position of the first buffered sample
        self.total = 0  # samples pushed so far
        self._next_start = 0
        self._last_end = 0
        self.emitted = 0

    def _joined(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros(0, np.float32)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    def _cut(self, start: int, end: int) -> Window:
        lo = start - self._buffer_start
        joined = self._joined()
        samples = joined[lo : lo + end - start]
        if len(samples) < len(joined):  # a view would keep the rest of the buffer alive
            samples = samples.copy()
        # else the window is the whole buffer, which keeps it for a tail window anyway: shared,
        # not copied (no one writes into a window's samples)
        window = Window(self.emitted, start, samples)
        self.emitted += 1
        self._last_end = end
        return window

    def push(self, mono: np.ndarray) -> list[Window]:
        """Add audio and cut every window it completes."""
        self.append(mono)
        out = []
        while (window := self.take()) is not None:
            out.append(window)
        return out

    def append(self, mono: np.ndarray) -> None:
        """Add audio without cutting: ``take`` cuts windows one at a time, as room allows."""
        self._chunks.append(np.asarray(mono, np.float32))
        self.total += len(mono)

    @property
    def ready(self) -> bool:
        """A full window is waiting to be taken."""
        return self._next_start + self.window <= self.total

    @property
    def missing(self) -> int:
        """Samples still to come before the next full window."""
        return max(0, self._next_start + self.window - self.total)

    @property
    def buffered(self) -> int:
        """Samples held."""
        return sum(len(c) for c in self._chunks)

    def take(self) -> Window | None:
        """The next full window, or None; drops the audio no later window needs."""
        if not self.ready:
            return None
        window = self._cut(self._next_start, self._next_start + self.window)
        self._next_start += self.hop
        keep_from = max(0, min(self._next_start, self.total - self.window))
        if keep_from > self._buffer_start:
            self._chunks = [self._joined()[keep_from - self._buffer_start :]]
            self._buffer_start = keep_from
        return window

    def finish(self) -> list[Window]:
        """The windows the end of the clip adds (possibly none)."""
        if self.emitted == 0:
            return [self._cut(0, self.total)] if self.total else []
        if self.total - self._last_end >= max(1, self.min_tail):
            return [self._cut(self.total - self.window, self.total)]
        return []


def window_spans(total: int, window: int, hop: int, min_tail: int) -> list[tuple[int, int]]:
    """The (start, end) of every window ``Windower`` cuts from ``total`` samples, without
    copying any audio: a whole decoded file's windows can then be views of it."""
    if total <= 0:
        return []
    if total < window:
        return [(0, total)]
    spans = [(start, start + window) for start in range(0, total - window + 1, hop)]
    if total - spans[-1][1] >= max(1, min_tail):
        spans.append((total - window, total))
    return spans
