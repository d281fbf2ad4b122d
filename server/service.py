"""The SceneClassifier gRPC service on grpc.aio.

Per stream, a reader task (server/stream.py) decodes packets on the decode pool (never on the
event loop) and submits windows to the model batchers, shared by every stream (one forward pass
serves many devices, in fair order); the handler writes results in window order.

One client cannot hurt another: each stream reserves the memory its settings need before it
starts (server/budgets.py) and waits only on its own windows; the batchers give every stream
its share and isolate a failing item (server/batcher.py); a clip is answered from memory only
for the very bytes it was classified from (server/clip_cache.py); every status message and log
line is bounded and escaped (server/safe_log.py).

Failures end only their own stream: accepted windows' results first, then the status naming the
problem. On shutdown it answers every window submitted and ends streams with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import platform
import time
from collections.abc import AsyncIterator, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import grpc
import numpy as np
import torch

from asc.codecs.registry import CODECS, unavailable_reason
from asc.torchaudio_pair import load_torchaudio
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from server.access import AccessControl
from server.batcher import BatcherClosed, DynamicBatcher
from server.budgets import Budgets, ClassifyRate, MemoryPool, StreamAccount
from server.classify import ClassifySlots, classify_clip
from server.clip_cache import ClipMemory
from server.decode_sandbox import DecodeSandbox
from server.errors import StreamError, detached
from server.grid_runner import GridRunner
from server.handlers import Undecodable
from server.inference import DetectorOutput, DetectorRunner, SceneOutput, SceneRunner
from server.metrics import ServerMetrics, StageCounters
from server.results import summary_result, window_result
from server.safe_log import LogLimiter, shown
from server.stream import End, Finished, StreamReader

torchaudio = load_torchaudio()

log = logging.getLogger("asc.server")
SERVER_VERSION = "0.1.0"
CANCEL_GRACE_S = 0.02
MIN_CLIP_MARGIN = 64  # samples above the measured shortest input, for resampling's rounding


@dataclass
class Models:
    scene: SceneRunner
    detector: DetectorRunner | None


def shortest_clip_seconds(runner: SceneRunner) -> float:
    """The shortest clip the door lets in: the ensemble's measured minimum, rounded up."""
    return math.ceil((runner.shortest_input() + MIN_CLIP_MARGIN) / runner.rate * 100) / 100


def default_decode_workers() -> int:
    """Half the cores this process may run on, at least one.

    More decode threads than that cost more CPU per clip, not less: on the 2-core machine one
    thread decoded 32 streams with 18 % (pcm16) to 55 % (opus:32k) more clips per second than
    four, at half the decoding CPU per clip (benchmarks.server_profile with
    ASC_DECODE_WORKERS); the other half of the cores runs the forward passes."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


def count_stage_cpu(models: Models, metrics: ServerMetrics) -> None:
    """Each model's front-end and network CPU time into ``asc_stage_cpu_seconds``."""
    for name, runner in (("ensemble", models.scene), ("detector", models.detector)):
        if runner is not None:
            series = {
                stage: metrics.stage_cpu.labels(f"{name}_{stage}")
                for stage in ("features", "model")
            }
            runner.on_stage = lambda stage, seconds, series=series: series[stage].inc(seconds)


def warm_up(models: Models) -> None:
    """One pass of the largest size each batcher runs, before the first client: its working
    memory is then part of the server's idle footprint (the budget stated from it holds), and
    no client pays for the first pass."""
    for runner, seconds in ((models.scene, 10.0), (models.detector, 2.0)):
        if runner is None or runner.warmed:
            continue
        count = runner.max_pass or 1
        if runner.max_pass_samples:
            count = max(1, min(count, runner.max_pass_samples // int(seconds * runner.rate)))
        runner([np.zeros(int(seconds * runner.rate), np.float32)] * count)
        runner.warmed = True


def _peer_host(context: grpc.aio.ServicerContext) -> str:
    """The caller's address without its port: who shares a ClassifyClip rate bucket when
    calls carry no identity (behind a proxy, all its callers do)."""
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0]


class SceneService(pbg.SceneClassifierServicer):
    def __init__(
        self,
        models: Models,
        metrics: ServerMetrics,
        max_batch: int = 64,
        max_delay_ms: float = 10.0,
        max_streams: int = 0,
        decode_workers: int = 0,
        limits: Budgets | None = None,
        access: AccessControl | None = None,
    ):
        self.models, self.metrics = models, metrics
        self.max_streams = max_streams
        count_stage_cpu(models, metrics)
        self.stages = StageCounters.of(metrics)
        budgets = limits or Budgets()
        warm_up(models)
        if not budgets.min_clip_seconds:
            budgets = dataclasses.replace(
                budgets, min_clip_seconds=shortest_clip_seconds(models.scene)
            )
        self.budgets = budgets
        self.access = access or AccessControl()
        self.pool = MemoryPool(budgets.audio_bytes)
        self.memory = ClipMemory(budgets.cache_bytes, budgets.remembered_clips)
        self.classify_slots = ClassifySlots(budgets.classify_calls, budgets.classify_queue_bytes)
        self.classify_rate = ClassifyRate(budgets.classify_rate, budgets.classify_burst)
        self.decode_workers = decode_workers or default_decode_workers()
        self.decode_pool = ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode")
        self.decode_sandbox = DecodeSandbox(budgets.classify_calls, self.decode_pool)
        self.grid_runner = GridRunner(
            metrics.grid_tests, budgets.grid_cpu_share, busy=self._windows_busy
        )
        # A thread per pass that may run at once (--passes; one on a GPU).
        passes = max(m.passes for m in (models.scene, models.detector) if m is not None)
        self.inference_pool = ThreadPoolExecutor(passes, thread_name_prefix="inference")
        delay = max_delay_ms / 1000.0
        self.scene_batcher = DynamicBatcher(
            "ensemble", models.scene, self.inference_pool, max_batch, delay, metrics
        )
        self.detector_batcher = (
            DynamicBatcher(
                "detector", models.detector, self.inference_pool, max_batch, delay, metrics
            )
            if models.detector is not None
            else None
        )
        self.active = 0
        self.draining = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._log_limit = LogLimiter(burst=10, interval=60.0)

    def _windows_busy(self) -> bool:
        """Whether a window waits for a forward pass or one runs (the grid tests' pace)."""
        batchers = (self.scene_batcher, self.detector_batcher)
        return any(b is not None and not b.idle for b in batchers)

    def start(self) -> None:
        self.scene_batcher.start()
        if self.detector_batcher is not None:
            self.detector_batcher.start()

    def begin_drain(self) -> None:
        """Stop reading packets and taking calls; accepted windows are still answered."""
        self.draining.set()

    async def wait_idle(self) -> None:
        """Until every stream has written its last result and ended."""
        await self._idle.wait()

    async def close(self) -> None:
        """After the last call: run what is queued, then stop the batchers and pools."""
        await self.scene_batcher.close()
        if self.detector_batcher is not None:
            await self.detector_batcher.close()
        self.decode_pool.shutdown(wait=False)
        self.decode_sandbox.close()
        self.grid_runner.close()
        self.inference_pool.shutdown(wait=True)

    # -- logging, bounded ------------------------------------------------------------------

    def log_event(self, kind: str, level: int, message: str, *args) -> None:
        """Log, at most a burst per ``kind`` a minute (client behaviour must not flood logs)."""
        if log.isEnabledFor(level) and self._log_limit.allow(kind, log):
            log.log(level, message, *args)

    def internal_error(self, what: str, error: BaseException) -> StreamError:
        """A server fault: logged with its traceback (rate-limited), INTERNAL to the client."""
        if self._log_limit.allow("server error", log):
            log.error("%s", what, exc_info=error)
        return StreamError(
            grpc.StatusCode.INTERNAL,
            f"server error: {type(error).__name__}: {shown(str(error), 200)}",
        )

    def as_status(self, error: BaseException) -> StreamError:
        if isinstance(error, StreamError):
            return error
        if isinstance(error, BatcherClosed):
            return StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        return self.internal_error("window failed", error)

    def check_size(self, message) -> None:
        size = message.ByteSize()
        if size > self.budgets.max_message_bytes:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a message of {size} bytes exceeds this server's limit of "
                f"{self.budgets.max_message_bytes} bytes (--max-message-mb)",
            )

    # -- classification of one window ------------------------------------------------------

    async def classify(
        self,
        clip_id: str,
        wave: np.ndarray,
        start: float,
        end: float,
        detector: bool,
        owner: Hashable,
        flood: bool = False,
    ) -> pb.SceneResult:
        """One window through the ensemble (and the detector when asked), as a SceneResult.
        ``flood``: its stream is past its burst of classification (served after others)."""
        futures = [self.scene_batcher.submit_nowait(wave, owner, flood)]
        if detector and self.detector_batcher is not None:
            futures += [
                self.detector_batcher.submit_nowait(piece, owner, flood)
                for piece in self.models.detector.pieces(wave)
            ]
        try:
            scene: SceneOutput = await futures[0]
            pieces: list[DetectorOutput] = [await f for f in futures[1:]]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        started = time.thread_time()
        result = window_result(
            clip_id, start, end, scene, pieces, self.models.scene, self.models.detector
        )
        self.stages.results.inc(time.thread_time() - started)
        return result

    def summary(
        self, clip_id: str, codec: str, seconds: float, windows: list[pb.SceneResult]
    ) -> pb.SceneResult:
        """A clip's summary result, its CPU time counted as the results stage."""
        started = time.thread_time()
        result = summary_result(
            clip_id, codec, seconds, windows, self.models.scene, self.models.detector
        )
        self.stages.results.inc(time.thread_time() - started)
        return result

    def open_owner(self, owner: Hashable) -> None:
        """A stream or call that may submit windows until ``forget_owner``."""
        self.scene_batcher.open(owner)
        if self.detector_batcher is not None:
            self.detector_batcher.open(owner)

    def forget_owner(self, owner: Hashable) -> None:
        self.scene_batcher.forget(owner)
        if self.detector_batcher is not None:
            self.detector_batcher.forget(owner)

    # -- StreamScenes ----------------------------------------------------------------------

    async def StreamScenes(
        self, request_iterator: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SceneResult]:
        identity, account = await self._admit(context)
        self._opened()
        # Bounded: when the client stops reading, the reader stops too and HTTP/2 flow control
        # pushes back on the device instead of the server buffering without limit.
        results: asyncio.Queue = asyncio.Queue(maxsize=256)
        reader = StreamReader(self, request_iterator, results, identity, account)
        self.open_owner(reader.owner)
        reading = asyncio.create_task(self._run_reader(reader))
        account.on_preempt = lambda error: reader.stop(reading, error)
        status = "ok"
        try:
            while True:
                item = await results.get()
                if isinstance(item, End):
                    if item.error is not None:
                        status = item.error.code.name
                        await self._end_with(context, item.error, results, reader)
                    # A client's cancel also ends its requests; gRPC reports the cancel a moment
                    # later. Give it that moment, so a cancel is not counted as a clean end.
                    await asyncio.sleep(CANCEL_GRACE_S)
                    break
                try:
                    value = await item
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if reader.stopped is None or (task is not None and task.cancelling()):
                        raise
                    continue  # withdrawn by stop(): the End with its status comes next
                except Exception as e:
                    error = self.as_status(e)
                    del e, item  # nothing of the failed window is kept past this point
                    status = error.code.name
                    await self._end_with(context, detached(error), results, reader)
                if isinstance(value, Finished):
                    yield value.summary
                    self._remember(value)
                    continue
                result, completed_at = value
                if completed_at is not None:
                    self._time(result, completed_at, reader.path_label)
                yield result
        except (asyncio.CancelledError, GeneratorExit):  # GeneratorExit: closed while writing
            status = "cancelled"
            raise
        finally:
            if status == "ok" and context.cancelled():
                status = "cancelled"  # the client hung up before the end it would have read
            self._closed(reading, reader, account, status)

    async def _admit(self, context: grpc.aio.ServicerContext) -> tuple[str | None, StreamAccount]:
        """The caller's identity and the stream's memory account, or the stream is refused
        before it starts (``_reject`` aborts, which raises)."""
        if self.draining.is_set():
            await self._reject(context, grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        try:
            identity = self.access.authenticate(context)
        except StreamError as e:
            await self._reject(context, e.code, e.message)
        if self.max_streams and self.active >= self.max_streams:
            await self._reject(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server is at its limit of {self.max_streams} concurrent streams",
            )
        account = StreamAccount(self.pool, self.budgets.stream_bytes)
        try:
            account.open()
        except StreamError as e:
            await self._reject(context, e.code, e.message)
        return identity, account

    def _opened(self) -> None:
        self.active += 1
        self._idle.clear()
        self.metrics.active_streams.set(self.active)
        self.metrics.audio_memory.set(self.pool.used)

    def _time(self, result: pb.SceneResult, completed_at: float, path_label: str) -> None:
        """Stamp the result with the time since its window's last packet arrived."""
        latency = time.perf_counter() - completed_at
        result.server_latency_ms = latency * 1000.0
        self.metrics.window_latency.labels(path_label).observe(latency)

    def _closed(
        self, reading: asyncio.Task, reader: StreamReader, account: StreamAccount, status: str
    ) -> None:
        """However the stream ended: its reader and windows cancelled, its memory returned,
        and the server idle again (for a drain) when it was the last."""
        reading.cancel()
        reader.cancel_all()
        account.close()
        self.forget_owner(reader.owner)
        self.active -= 1
        self.metrics.active_streams.set(self.active)
        self.metrics.audio_memory.set(self.pool.used)
        self.metrics.streams.labels(status).inc()
        if self.active == 0:
            self._idle.set()

    @staticmethod
    async def _run_reader(reader: StreamReader) -> None:
        await reader.run()

    async def _end_with(
        self,
        context: grpc.aio.ServicerContext,
        error: StreamError,
        results: asyncio.Queue,
        reader: StreamReader,
    ) -> None:
        """End the stream with ``error`` (abort raises); what is still queued is dropped."""
        reader.cancel_all()
        while not results.empty():
            item = results.get_nowait()
            if isinstance(item, asyncio.Future):
                item.cancel()
        code = error.code.name
        self.metrics.rejected.labels(code).inc()
        device = shown(reader.settings.device_id) if reader.settings else "before its config"
        self.log_event(
            f"stream ended {code}",
            logging.WARNING,
            "stream of %s ended: %s: %s",
            device,
            code,
            error,
        )
        await context.abort(error.code, error.message)

    def _remember(self, finished: Finished) -> None:
        """Keep a written clip's results, so a resend of the same bytes is answered again."""
        if finished.fingerprint is None:
            return
        self.memory.put(finished.key, finished.fingerprint, [*finished.windows, finished.summary])
        self.metrics.remembered_bytes.set(self.memory.bytes)

    # -- ClassifyClip and GetInfo ----------------------------------------------------------

    async def ClassifyClip(
        self, request: pb.ClipRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClipResult:
        try:
            identity = self.access.authenticate(context)
            if not isinstance(request, Undecodable):
                self.check_size(request)
                self.access.admit(identity or "", len(request.data))
            caller = ("caller", identity or _peer_host(context))
            return await classify_clip(self, request, caller)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            error = detached(self.as_status(e))
        # Out of the except block, and the request dropped: the abort's traceback keeps this
        # frame, which must not keep the file or the failed call's frames.
        del request
        self.metrics.rejected.labels(error.code.name).inc()
        self.log_event(
            f"ClassifyClip {error.code.name}",
            logging.WARNING,
            "ClassifyClip: %s: %s",
            error.code.name,
            error,
        )
        await context.abort(error.code, error.message)

    async def GetInfo(
        self, request: pb.InfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.InfoResponse:
        try:
            self.access.authenticate(context)
            if isinstance(request, Undecodable):
                raise request.error()
        except StreamError as e:
            self.metrics.rejected.labels(e.code.name).inc()
            await context.abort(e.code, e.message)
        response = pb.InfoResponse(server_version=SERVER_VERSION)
        for name, info in CODECS.items():
            why = unavailable_reason(name)
            response.codecs.add(
                name=name,
                family=info.family,
                available=why is None,
                reason=why or "",
                lossless=info.lossless,
            )
        runners = [self.models.scene] + (
            [self.models.detector] if self.models.detector is not None else []
        )
        for runner in runners:
            ckpt = runner.checkpoint
            model = response.models.add(
                kind=ckpt.kind,
                model_id=runner.model_id,
                version=runner.version,
                codec_conditions=ckpt.codec_conditions,
                metadata_json=runner.metadata_json(),
            )
            if isinstance(runner, SceneRunner):
                model.fine_classes.extend(runner.fine_classes)
                model.coarse_classes.extend(runner.coarse_classes)
            else:
                model.fine_classes.extend(["lossless", "lossy"])
                model.coarse_classes.extend(runner.families)
        response.versions.update(
            {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchaudio": torchaudio.__version__,
                "grpcio": grpc.__version__,
                "pyav": av.__version__,
                "ffmpeg": ".".join(str(v) for v in av.library_versions["libavcodec"]),
                "device": str(self.models.scene.device),
            }
        )
        return response

    async def _reject(self, context, code: grpc.StatusCode, message: str) -> None:
        """End a stream before it starts: counted as rejected and as a stream that ended so."""
        self.metrics.rejected.labels(code.name).inc()
        self.metrics.streams.labels(code.name).inc()
        kind = f"stream refused {code.name}"
        self.log_event(kind, logging.WARNING, "stream refused: %s: %s", code.name, message)
        await context.abort(code, message)
