"""One StreamScenes call's reading side: packets in, checked, decoded, windows to the batchers.

The reader runs as its own task next to the handler that writes results. For each packet it
checks the order and the sizes, frames the payload, then decodes (on the decode pool; a PCM
message up to 128 KB on the event loop, ``ClipState.decode_here``) only as many windows as the
stream has room for among its waiting windows (``StreamAccount``), so a stream sending faster
than the models answer it waits for its own windows, stops reading, and HTTP/2 flow control
slows its sender; nothing another stream needs is ever taken.

What it puts in the result queue, in order: per window a task resolving to
``(SceneResult, completed_at)``, per clip a task resolving to ``Finished``, clips answered from
memory as ready futures, and last an ``End`` saying how the stream ends. Every task it starts is
tracked, so that when the stream ends, however it ends, work nobody will read is cancelled
before it reaches a forward pass.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from asc.codecs.alignment import codec_delay
from asc.codecs.errors import CodecError
from proto import scene_classifier_pb2 as pb
from server.batcher import BatcherClosed
from server.budgets import SAMPLE_BYTES, StreamAccount
from server.clip_cache import Fingerprint, ReplayCheck
from server.errors import StreamError, detached
from server.grid_runner import wait_for_call
from server.handlers import Undecodable
from server.results import join_grid
from server.safe_log import shown
from server.session import (
    ClipState,
    GridBudget,
    StreamSettings,
    validate_config,
)
from server.windows import Window

if TYPE_CHECKING:
    from server.service import SceneService

log = logging.getLogger("asc.server")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
_owners = itertools.count()


@dataclass
class End:
    """Put in a stream's result queue after its last result: how the stream ends."""

    error: StreamError | None = None

    def __post_init__(self) -> None:
        if self.error is not None:
            detached(self.error)  # its frames hold the request that failed


@dataclass
class Finished:
    """A clip's summary, with what the handler remembers once it has written it."""

    summary: pb.SceneResult
    windows: list[pb.SceneResult]
    key: tuple
    fingerprint: Fingerprint | None  # None: too large to compare a resend with; not kept


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class StreamReader:
    def __init__(
        self,
        service: SceneService,
        requests: AsyncIterator,
        results: asyncio.Queue,
        identity: str | None,
        account: StreamAccount,
    ):
        self.service = service
        self.requests = requests
        self.results = results
        self.identity = identity
        self.account = account
        self.owner = ("stream", next(_owners))  # its share in the batchers' fair order
        self.settings: StreamSettings | None = None
        self.clips: dict[str, ClipState | ReplayCheck] = {}
        self.tasks: set[asyncio.Future] = set()
        self.window_bytes = 0
        self.path_label = ""
        self.stopped: StreamError | None = None  # ended from outside (its memory taken back)
        self.device: str = ""
        self.delay: int | None = None  # the codec path's, measured before its first decoder
        self.grid: GridBudget | None = None  # made with the first clip, once settings are known
        self._drain: asyncio.Future | None = None  # completes when the server starts draining
        self._reading: asyncio.Future | None = None  # the read in progress, if any

    # -- life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Read the stream to its end; then queue the End that says how it ends."""
        try:
            await self._read()
            await self.results.put(End())
        except StreamError as e:
            await self.results.put(End(e))
        except BatcherClosed:
            await self.results.put(End(StreamError(grpc.StatusCode.UNAVAILABLE, "server stopping")))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must still end the stream with a status, not hang it
            await self.results.put(End(self.service.internal_error("stream failed", e)))
        finally:
            if self._drain is not None:
                self._drain.cancel()

    def cancel_all(self) -> None:
        """The stream is over: withdraw every window not yet classified."""
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        for clip in self.clips.values():
            if isinstance(clip, ClipState) and clip.memory:
                self.account.return_clip(clip.memory)
        self.clips.clear()

    def stop(self, reading: asyncio.Task, error: StreamError) -> None:
        """End the stream now with ``error``: stop reading, withdraw every window, and let
        the handler find the End first in its queue."""
        self.stopped = error
        reading.cancel()
        self.cancel_all()
        while not self.results.empty():
            item = self.results.get_nowait()
            if isinstance(item, asyncio.Future):
                item.cancel()
        self.results.put_nowait(End(error))

    def _track(self, task: asyncio.Future) -> asyncio.Future:
        self.tasks.add(task)
        task.add_done_callback(self._untrack)
        return task

    def _untrack(self, task: asyncio.Future) -> None:
        self.tasks.discard(task)
        _retrieve(task)  # retrieved here: the handler may never await a failed window

    async def _next(self) -> pb.StreamRequest | None:
        """The next request, or None when the client is done or the server is draining.

        The drain cancels a read in progress (``_stop_reading``) rather than the read racing
        the drain in ``asyncio.wait``, which cost more than the read itself."""
        draining = self.service.draining
        if draining.is_set():
            return None
        if self._drain is None:  # one waiter for the stream's life, not a task per packet
            self._drain = asyncio.ensure_future(draining.wait())
            self._drain.add_done_callback(self._stop_reading)
        nxt = self._reading = asyncio.ensure_future(anext(self.requests, None))
        nxt.add_done_callback(_retrieve)  # a read the stream's end interrupts fails unread
        try:
            request = await nxt
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this reader was cancelled (its read with it)
            return None  # the drain cancelled the read
        finally:
            self._reading = None
        if isinstance(request, Undecodable):
            raise request.error()
        return request

    def _stop_reading(self, _drain: asyncio.Future) -> None:
        if self._reading is not None:
            self._reading.cancel()  # a read already done keeps its request

    # -- reading ---------------------------------------------------------------------------

    def _checked_packet(self, request: pb.StreamRequest, expected: int | None) -> pb.AudioPacket:
        """The request's packet, in order, with its sizes and texts within the budgets."""
        if request.WhichOneof("kind") != "packet":
            raise StreamError(INVALID, "a second StreamConfig in one stream; open a new stream")
        self.service.check_size(request)
        packet = request.packet
        if expected is not None and packet.sequence != expected:
            raise StreamError(
                INVALID,
                f"packet sequence {packet.sequence} where {expected} was expected: "
                "packets were lost, repeated or reordered",
            )
        if not packet.clip_id:
            raise StreamError(INVALID, f"packet {packet.sequence} has no clip_id")
        self.service.budgets.check_text("clip_id", packet.clip_id)
        self.service.budgets.check_text("label", packet.label)
        return packet

    async def _read(self) -> None:
        service = self.service
        first = await self._next()
        if first is None:
            if service.draining.is_set():
                raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            raise StreamError(INVALID, "stream ended before its StreamConfig")
        if first.WhichOneof("kind") != "config":
            raise StreamError(INVALID, "the first message of a stream must be a StreamConfig")
        settings = self.settings = validate_config(first.config, service.budgets)
        service.access.authorize(self.identity, settings.device_id)
        model_rate = service.models.scene.rate
        self.device = self.identity or settings.device_id  # whose share it uses
        self.account.configure(settings.window_seconds, settings.rate, model_rate, self.device)
        service.metrics.audio_memory.set(service.pool.used)
        self.window_bytes = round(settings.window_seconds * model_rate) * SAMPLE_BYTES
        self.path_label = service.metrics.codec_label(settings.codec)
        service.log_event(
            "stream opened",
            logging.INFO,
            "stream from %s: %s at %d Hz, %d ch",
            shown(settings.device_id),
            settings.codec,
            settings.rate,
            settings.channels,
        )
        expected: int | None = None
        packets = service.metrics.packets.labels(self.path_label)
        payload_bytes = service.metrics.bytes.labels(self.path_label)
        while (request := await self._next()) is not None:
            packet = self._checked_packet(request, expected)
            expected = packet.sequence + 1
            service.access.admit(settings.device_id, len(packet.payload))
            packets.inc()
            payload_bytes.inc(len(packet.payload))
            await self._packet(packet)
        if service.draining.is_set():
            raise StreamError(
                grpc.StatusCode.UNAVAILABLE,
                "server is shutting down: windows accepted so far were answered; reconnect and "
                "resend unfinished clips",
            )
        if self.clips:
            names = ", ".join(shown(c) for c in list(self.clips)[:3])
            raise StreamError(
                grpc.StatusCode.DATA_LOSS,
                f"the stream ended with {len(self.clips)} clip(s) cut short ({names}): their "
                "end_of_clip never came; the windows they completed were answered",
            )

    async def _packet(self, packet: pb.AudioPacket) -> None:
        settings = self.settings
        assert settings is not None
        clip = self.clips.get(packet.clip_id)
        if clip is None:
            await self._measure_delay()
            clip = self._open(packet.clip_id)
        if packet.label and not clip.label:
            clip.label = packet.label
        if isinstance(clip, ReplayCheck):
            check = clip
            clip = self._check_replay(check, packet)
            if clip is None:
                if check.answered:
                    await self._replay(check)
                return
            clip.label = check.label
            await self._decode(clip, check.payloads, packet.end_of_clip)
            return
        await self._decode(clip, [packet.payload], packet.end_of_clip)

    async def _measure_delay(self) -> None:
        """Measure the codec path's delay on the decode pool, once per stream, for the clips'
        decoders (the first measurement of a path codes a calibration signal)."""
        settings = self.settings
        assert settings is not None
        if self.delay is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self.delay = await loop.run_in_executor(
                self.service.decode_pool,
                codec_delay,
                settings.codec,
                settings.rate,
                settings.channels,
            )
        except CodecError as e:  # as when the decoder measured it: the clip cannot be decoded
            raise StreamError(
                INVALID, f"cannot decode {settings.codec} for this stream: {e}"
            ) from e

    def _open(self, clip_id: str) -> ClipState | ReplayCheck:
        settings, budgets = self.settings, self.service.budgets
        assert settings is not None
        if len(self.clips) >= budgets.max_open_clips:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {budgets.max_open_clips} clips open at once in one stream",
            )
        remembered = self.service.memory.get(settings.clip_key(clip_id))
        if remembered is not None:
            check = self.clips[clip_id] = ReplayCheck(clip_id, remembered)
            return check
        return self._new_clip(clip_id)

    def _new_clip(self, clip_id: str) -> ClipState:
        settings = self.settings
        assert settings is not None and self.delay is not None  # _packet measured it
        # The stream's reservation holds one open clip; a further one borrows its buffer.
        borrowed = any(isinstance(c, ClipState) for c in self.clips.values())
        memory = self.account.borrow_clip(clip_id) if borrowed else 0
        if self.grid is None:
            detector = settings.detector and self.service.models.detector is not None
            tested = detector and settings.channels == 1 and self.service.grid_runner.share > 0
            self.grid = GridBudget(tested)
        try:
            clip = ClipState(
                clip_id,
                settings,
                self.service.models.scene.rate,
                self.service.budgets,
                self.delay,
                memory=memory,
                grid_test=self.grid.claim(),
            )
        except CodecError as e:  # e.g. a codec that cannot decode at this rate here
            if memory:
                self.account.return_clip(memory)
            raise StreamError(
                INVALID, f"cannot decode {settings.codec} for this stream: {e}"
            ) from e
        self.clips[clip_id] = clip
        return clip

    def _check_replay(self, check: ReplayCheck, packet: pb.AudioPacket) -> ClipState | None:
        """A resend of a remembered clip: answered from memory only if it is the same bytes.

        None while it may still be (or, ``check.answered``, once it is); else the new clip it
        is, whose payloads so far the caller decodes from the first byte."""
        same = check.add(packet.payload)
        if same and check.held <= self.account.clip_allowance:
            if not packet.end_of_clip:
                return None
            if check.same_clip():
                del self.clips[check.clip_id]
                check.answered = True
                return None
        # Not the remembered clip (or too large to keep comparing): the new clip it is.
        del self.clips[check.clip_id]
        return self._new_clip(check.clip_id)

    def _count_fault(self, error: StreamError) -> None:
        if error.code == grpc.StatusCode.DATA_LOSS:
            self.service.metrics.decode_errors.labels(self.path_label).inc()

    async def _replay(self, check: ReplayCheck) -> None:
        service = self.service
        service.metrics.duplicates.labels(self.path_label).inc()
        loop = asyncio.get_running_loop()
        for result in check.remembered.replay():
            future = loop.create_future()
            future.set_result((result, None))
            await self.results.put(future)

    def _timed_advance(
        self, clip: ClipState, room: int, payloads: list[bytes], end: bool
    ) -> tuple[list, bool]:
        """``clip.advance`` (on a decode thread, or for PCM the event loop), its CPU time counted
        as two stages: decoding (with framing and hashing) and windows (mixing, cutting,
        resampling)."""
        started, windows = time.thread_time(), clip.window_cpu
        try:
            return clip.advance(room, payloads, end)
        finally:
            windows = clip.window_cpu - windows
            stages = self.service.stages
            stages.decode.inc(max(0.0, time.thread_time() - started - windows))
            stages.windows.inc(windows)

    async def _decode(self, clip: ClipState, payloads: list[bytes], end: bool) -> None:
        """Take ``payloads`` and decode what the clip holds, as fast as this stream's waiting
        windows allow."""
        service = self.service
        loop = asyncio.get_running_loop()
        before = clip.windower.total
        here = clip.decode_here(payloads)  # these are all this call decodes: none wait before
        while True:
            room = self.account.window_room(self.window_bytes)
            if room == 0:
                await self.account.wait_answered()
                continue
            if here:
                windows, more = self._timed_advance(clip, room, payloads, end)
            else:
                windows, more = await loop.run_in_executor(
                    service.decode_pool, self._timed_advance, clip, room, payloads, end
                )
            payloads, end = [], False  # taken
            self._start_grid_test(clip)
            received = time.perf_counter()
            for window in windows:
                seconds = len(window.samples) / clip.model_rate
                flood = await service.classify_rate.take(self.owner, seconds)
                last = clip.complete and window is windows[-1]
                task = self._window_task(clip, window, received, last, flood)
                clip.pending.append(task)
                await self.results.put(task)
            if not more:
                break
        if clip.failed is not None:
            self._count_fault(clip.failed)
            raise clip.failed
        settings = self.settings
        assert settings is not None
        decoded = clip.windower.total - before
        if self.grid is not None:
            self.grid.audio += decoded / settings.rate
        service.metrics.decoded_seconds.labels(self.path_label).inc(decoded / settings.rate)
        if clip.complete:
            del self.clips[clip.clip_id]
            if clip.memory:
                self.account.return_clip(clip.memory)
                clip.memory = 0
            await self.results.put(self._track(asyncio.ensure_future(self._finish(clip))))

    # -- classification ----------------------------------------------------------------

    def _start_grid_test(self, clip: ClipState) -> None:
        """The grid tests of the clip's first window, off its path (server/grid_runner.py);
        their call becomes the clip's and the stream's latest when it comes."""
        if clip.grid_samples is None or self.grid is None:
            return
        samples, clip.grid_samples = clip.grid_samples, None
        if self.grid.pending is not None and not self.grid.pending.done():
            clip.grid_future = self.grid.pending  # one test per stream at a time: share it
            return
        future = self.service.grid_runner.submit(samples, clip.settings.rate)
        if future is None:  # too many tests wait: the stream's next clip tries again
            self.grid.retry()
            return
        clip.grid_future = self.grid.pending = future
        grid = self.grid

        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                grid.settle(f.result())
                clip.grid = f.result() or clip.grid

        future.add_done_callback(done)

    def _window_task(
        self, clip: ClipState, window: Window, received: float, last: bool, flood: bool
    ) -> asyncio.Future:
        size = len(window.samples) * SAMPLE_BYTES
        self.account.charge(size)
        settings = clip.settings

        async def run() -> tuple[pb.SceneResult, float]:
            try:
                result = await self.service.classify(
                    clip.clip_id,
                    window.samples,
                    window.start / settings.rate,
                    window.end / settings.rate,
                    settings.detector,
                    self.owner,
                    flood,
                )
            finally:
                self.account.release(size)
            grid = clip.grid
            if grid is None and self.grid is not None:
                grid = self.grid.last  # untested, or its test not done yet
            if result.detector_ran and grid is not None:
                join_grid(result, grid)
                clip.grid_joined = True
            result.codec_path = settings.codec
            result.last_window = last
            self.service.metrics.windows.labels(
                self.path_label, self.service.models.scene.model_id
            ).inc()
            if result.detector_ran and result.lossy_probability >= 0.5:
                self.service.metrics.detector_positives.labels(self.path_label).inc()
            return result, received

        return self._track(asyncio.ensure_future(run()))

    async def _finish(self, clip: ClipState) -> Finished:
        service = self.service
        windows = [result for result, _ in await asyncio.gather(*clip.pending)]
        summary = service.summary(clip.clip_id, clip.settings.codec, clip.seconds, windows)
        if summary.detector_ran and self.grid is not None and not clip.grid_joined:
            # no window took a call: the summary waits for this clip's test (or the stream's
            # latest) while no other test queues (server/grid_runner.py), or always where the
            # stream asked to, and takes its call or the stream's last
            future = clip.grid_future or self.grid.pending
            asked = clip.settings.wait_for_grid_tests
            await wait_for_call(future, service.grid_runner.summary_wait_seconds(asked))
            call = clip.grid or self.grid.last
            if call is not None:
                join_grid(summary, call)
        service.metrics.record_clip(self.path_label, summary)
        if clip.label:
            correct = summary.fine_label == clip.label
            service.metrics.record_label(self.path_label, service.models.scene.model_id, correct)
        fingerprint = None
        if clip.content.size <= self.account.clip_allowance:
            fingerprint = clip.content.fingerprint()
        key = clip.settings.clip_key(clip.clip_id)
        return Finished(summary, windows, key, fingerprint)
