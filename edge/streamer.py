"""The streaming engine: clips in, codec-coded packets over gRPC, scene results out.

One :class:`EdgeStreamer` runs one StreamScenes call per codec path, each in its own thread
(an edge.path_stream.PathStream: packets, pacing, results, reconnects), over the same clips (a
feeder thread reads the source once and hands every clip to every path).

With a :class:`~edge.spool.Spool` (store and forward), every clip is written to disk before
it is sent and removed once each path has its summary; a restarted edge sends what the spool
holds first, skips clips its ledger shows answered, and does not report a window or summary
that an earlier run reported (see edge.spool for the exact guarantees).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
import numpy as np

from edge.clips import AudioClip
from edge.codec_paths import canonical_codecs
from edge.errors import EdgeError, SourceError
from edge.path_stream import PathStream
from edge.spool import Spool, SpooledClip
from edge.spool_files import SpoolEntry
from edge.stream_totals import PathTotals, StreamReport
from proto import scene_classifier_pb2 as pb

ResultCallback = Callable[[str, pb.SceneResult, str], None]  # (codec path, result, true label)
EventCallback = Callable[[str, str], None]  # (codec path, message): reconnects and the like


class EdgeStreamer:
    """Streams clips through one or more codec paths at once; see the module docstring.

    ``start()`` then ``join()``, or ``run()`` for both with Ctrl-C handling. Callbacks are
    called one at a time (never concurrently), from the paths' threads.
    """

    def __init__(
        self,
        target: str,
        codecs: str | Sequence[str],
        clips: Iterable[AudioClip],
        *,
        rate: int = 44100,
        channels: int = 1,
        device_id: str = "",
        window_seconds: float = 0.0,
        hop_seconds: float = 0.0,
        detector: bool = False,
        realtime: bool = False,
        wait_for_grid_tests: bool = False,
        packet_ms: float = 500.0,
        max_overhead: float = 0.02,
        max_in_flight: int = 4,
        max_retries: int | None = 10,
        on_result: ResultCallback | None = None,
        on_event: EventCallback | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        spool: Spool | None = None,
    ) -> None:
        if packet_ms <= 0:
            raise ValueError(f"packet_ms must be positive, got {packet_ms}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.target = target
        self.rate, self.channels = rate, channels
        self.device_id = device_id
        self.window_seconds, self.hop_seconds = window_seconds, hop_seconds
        self.detector, self.realtime = detector, realtime
        self.wait_for_grid_tests = wait_for_grid_tests
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead must lie in (0, 1], got {max_overhead}")
        self.packet_ms, self.max_in_flight = packet_ms, max_in_flight
        self.max_overhead = max_overhead
        self.max_retries = max_retries
        self.on_result, self.on_event = on_result, on_event
        self.credentials = credentials
        # A local subchannel pool: each reconnect really dials again, on this engine's backoff
        # rather than on a shared subchannel's own (which grows to two minutes).
        self.options = [("grpc.use_local_subchannel_pool", 1), *options]
        self.codecs = canonical_codecs(codecs, rate, channels)
        self.clips = clips
        self.paths = [PathStream(spec, self) for spec in self.codecs]
        self.spool = spool  # opened by the caller; see edge.spool
        self._spooling: dict[str, threading.Event] = {}  # live clips being written to it
        if spool is not None:
            spool.on_evict = self._evicted
        self._callback_lock = threading.Lock()
        self._state = threading.Condition()
        self._feeder = threading.Thread(target=self._feed, name="asc-edge feeder", daemon=True)
        self._started = False
        self._stopping = False
        self.interrupted = False

    # --- plumbing used by the paths --------------------------------------------------------

    def open_channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def deliver(self, spec: str, result: pb.SceneResult, label: str) -> None:
        if self.on_result is not None:
            with self._callback_lock:
                self.on_result(spec, result, label)

    def notify(self, spec: str, message: str) -> None:
        if self.on_event is not None:
            with self._callback_lock:
                self.on_event(spec, message)

    def path_ended(self, path: PathStream) -> None:
        if path.error is not None:  # one path failing ends the run: the others finish up
            self.stop(drain=True)
        with self._state:
            self._state.notify_all()

    def _evicted(self, entry: SpoolEntry, owed: list[str]) -> None:
        for path in self.paths:
            if path.spec in owed:
                path.totals.evicted_clips += 1

    def wait_spooled(self, clip_id: str, stopped: Callable[[], bool]) -> None:
        """Until a live clip's spool copy is written (at once for any other clip)."""
        event = self._spooling.get(clip_id)
        while event is not None and not event.wait(0.1) and not stopped():
            pass

    def _feed(self) -> None:
        """Read the source once and hand every clip to every live path, in order.

        With a spool: first the clips an earlier run left there (oldest first), then each new
        clip, written to the spool before it is handed over (a live clip as its recording
        ends; it streams meanwhile) and only to the paths that still owe it.
        """
        error: BaseException | None = None
        try:
            if self.spool is not None and not self._feed_backlog():
                return
            for clip in self.clips:
                if clip.rate != self.rate or clip.channels != self.channels:
                    raise SourceError(
                        f"clip {clip.clip_id}: {clip.rate} Hz, {clip.channels} channel(s) "
                        f"but the stream is {self.rate} Hz, {self.channels} channel(s)"
                    )
                paths, owed = self.paths, self.codecs
                live = clip.live and self.spool is not None
                if self.spool is not None:
                    owed = self.spool.plan(clip.clip_id, self.codecs)
                    done = self.spool.summarised(clip.clip_id)
                    for path in self.paths:
                        path.totals.skipped_clips += int(path.spec in done)
                    if not owed:
                        continue
                    paths = [path for path in self.paths if path.spec in owed]
                    if not live:
                        self.spool.add(clip, _pcm(clip), owed)
                if live:  # never wait for the network: the spool holds what it cannot take
                    self._spooling[clip.clip_id] = threading.Event()
                try:
                    taken = [path.offer(clip, wait=not live) for path in paths]
                    if live:
                        self._spool_live(clip, owed, paths)
                finally:
                    if live:
                        self._spooling.pop(clip.clip_id).set()
                if not any(taken) or self._stopping:
                    return
        except Exception as e:  # each path raises it after finishing its clips
            error = e
        finally:
            for path in self.paths:
                path.close_input(error)

    def _feed_backlog(self) -> bool:
        """Hand over what an earlier run left in the spool; False when the run is stopping."""
        backlog = self.spool.backlog(self.codecs, self.rate, self.channels)
        if backlog:
            self.notify("*", f"resuming {len(backlog)} clip(s) from the spool first")
        for entry, owed in backlog:
            ref = SpooledClip(self.spool, entry, resumed=True)
            taken = [path.offer(ref, wait=False) for path in self.paths if path.spec in owed]
            if not any(taken) or self._stopping:
                return False
        return True

    def _spool_live(self, clip: AudioClip, owed: list[str], paths: list[PathStream]) -> None:
        """Once a live clip's recording ends, write it; paths not at it yet take the copy."""
        pcm = _pcm(clip)  # waits for the end of the recording
        entry = self.spool.add(clip, pcm, owed)
        if entry is not None:
            ref = SpooledClip(self.spool, entry, resumed=False)
            for path in paths:
                path.swap(clip.clip_id, ref)

    # --- control ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("an EdgeStreamer runs once; make a new one")
        self._started = True
        for path in self.paths:
            path.thread.start()
        self._feeder.start()

    def stop(self, drain: bool = True) -> None:
        """Take no new clips; ``drain``: finish the clips in flight, else cancel the calls now."""
        self._stopping = True
        stop_source = getattr(self.clips, "stop", None)
        if callable(stop_source):  # a microphone: end the clip being recorded
            stop_source()
        for path in self.paths:
            path.stop(drain)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every path to end; True when they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            while not all(p.dead for p in self.paths):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._state.wait(0.2 if left is None else min(left, 0.2))
        return True

    @property
    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self.paths)

    @property
    def totals(self) -> dict[str, PathTotals]:
        return {p.spec: p.totals for p in self.paths}

    def first_error(self) -> BaseException | None:
        return next((p.error for p in self.paths if p.error is not None), None)

    def run(self) -> StreamReport:
        """Start, wait, and raise the first path's error (EdgeError, SourceError, CodecError).

        Ctrl-C once: take no new clips and wait for the summaries of those in flight; twice:
        cancel now. Either way the report comes back with ``interrupted`` set.
        """
        self.interrupted = run_draining(self, lambda text: self.notify("*", text))
        return StreamReport(self.totals, self.interrupted)


def run_draining(runner: Any, notify: Callable[[str], None] | None) -> bool:
    """Start ``runner`` (start, join, stop, in_flight, first_error) and wait for it; True when
    Ctrl-C ended the run.

    Ctrl-C once: take no new clips and wait for the summaries of those in flight; twice: cancel
    now. The first error is raised, except an EdgeError caused by the interruption itself.
    """
    interrupted = False
    runner.start()
    try:
        runner.join()
    except KeyboardInterrupt:
        interrupted = True
        if notify is not None:
            notify(
                f"interrupted: waiting for {runner.in_flight} clip(s) in flight "
                "(Ctrl-C again to quit now)"
            )
        runner.stop(drain=True)
        try:
            runner.join()
        except KeyboardInterrupt:
            runner.stop(drain=False)
            runner.join(timeout=10)
    error = runner.first_error()
    if error is not None and not (interrupted and isinstance(error, EdgeError)):
        raise error
    return interrupted


def _pcm(clip: AudioClip) -> np.ndarray:
    """A clip's whole audio (a live clip's once its recording has ended)."""
    pcm = getattr(clip, "pcm", None)
    if pcm is not None:
        return pcm
    pieces = list(clip.chunks(1 << 16))
    return np.concatenate(pieces) if pieces else np.zeros((0, clip.channels), np.float32)


def stream_clips(
    target: str, codecs: str | Sequence[str], clips: Iterable[AudioClip], **kwargs: Any
) -> StreamReport:
    """Stream ``clips`` through each codec path in ``codecs`` (a list or a comma list).

    Keyword arguments are :class:`EdgeStreamer`'s: rate, channels, device_id, window_seconds,
    hop_seconds, detector, realtime, wait_for_grid_tests, packet_ms, max_overhead,
    max_in_flight, max_retries (None: forever),
    on_result(path, result, label), on_event(path, message), credentials, options, spool (an
    opened edge.spool.Spool: store and forward, resume after a restart).
    """
    return EdgeStreamer(target, codecs, clips, **kwargs).run()
