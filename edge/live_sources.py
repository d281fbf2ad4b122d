"""Live audio cut into clips as it arrives: the microphone, and the base of network sources.

:class:`LiveSource` cuts any audio that arrives in real time into :class:`~edge.clips.LiveClip`
s, which stream while they record; :class:`MicSource` feeds it from a sound card, and
edge.network_sources' NetworkSource from FFmpeg.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import numpy as np

from edge.clips import LiveClip
from edge.errors import SourceError, warn

# A live clip cut short (capture stopped, a network source lost) is sent only from this long:
# less says too little about a scene, and is shorter than some models take at all.
MIN_LIVE_SECONDS = 0.5


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
