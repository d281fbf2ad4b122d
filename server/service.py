"""The SceneClassifier gRPC service on grpc.aio.

Per stream, a reader task takes packets, decodes them on the decode pool (never on the event
loop) and submits finished windows to the model batchers; the handler itself writes results
in window order as their batches complete. Batchers are shared by every stream, which is what
lets one forward pass serve many devices.

Failures end only their own stream: the results of windows already accepted are written first,
then the status whose message names the problem. On shutdown the server stops reading, answers
every window already submitted, and ends streams with UNAVAILABLE so devices reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import grpc
import numpy as np
import torch

from asc.codecs.clip import decode
from asc.codecs.errors import CodecError
from asc.codecs.registry import CODECS, unavailable_reason
from asc.codecs.spec import parse_spec
from asc.torchaudio_pair import load_torchaudio
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from server.access import AccessControl
from server.batcher import BatcherClosed, DynamicBatcher
from server.inference import DetectorOutput, DetectorRunner, SceneOutput, SceneRunner
from server.metrics import ServerMetrics
from server.session import (
    ClipState,
    Limits,
    StreamError,
    StreamSettings,
    validate_config,
    window_and_hop,
)
from server.windows import Window, Windower

torchaudio = load_torchaudio()

log = logging.getLogger("asc.server")
SERVER_VERSION = "0.1.0"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Models:
    scene: SceneRunner
    detector: DetectorRunner | None


@dataclass
class _End:
    """Put in a stream's result queue after its last result: how the stream ends."""

    error: StreamError | None = None


class SceneService(pbg.SceneClassifierServicer):
    def __init__(
        self,
        models: Models,
        metrics: ServerMetrics,
        max_batch: int = 64,
        max_delay_ms: float = 10.0,
        max_streams: int = 0,
        decode_workers: int = 4,
        limits: Limits | None = None,
        access: AccessControl | None = None,
    ):
        self.models, self.metrics = models, metrics
        self.max_streams = max_streams
        self.limits = limits or Limits()
        self.access = access or AccessControl()
        self.decode_pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="decode")
        # One inference thread: forward passes never contend with each other for cores or GPU.
        self.inference_pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
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
        # (device id, codec path, clip id) -> its results, most recent last (bounded LRU)
        self.completed: OrderedDict[tuple[str, str, str], list[pb.SceneResult]] = OrderedDict()
        self.draining = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

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
        self.inference_pool.shutdown(wait=True)

    # -- classification of one window ------------------------------------------------------

    async def _classify(
        self, clip_id: str, window: Window, wave: np.ndarray, settings: StreamSettings
    ) -> pb.SceneResult:
        """One window through the ensemble (and the detector when asked), as a SceneResult."""
        scene_future = self.scene_batcher.submit_nowait(wave)
        detector_futures = []
        if settings.detector and self.detector_batcher is not None:
            detector_futures = [
                self.detector_batcher.submit_nowait(piece)
                for piece in self.models.detector.pieces(wave)
            ]
        scene: SceneOutput = await scene_future
        pieces: list[DetectorOutput] = [await f for f in detector_futures]
        rate = settings.rate
        result = self._result(clip_id, window.start / rate, window.end / rate, scene, pieces)
        result.codec_path = settings.codec
        self.metrics.windows.labels(settings.codec, self.models.scene.model_id).inc()
        if pieces and result.lossy_probability >= 0.5:
            self.metrics.detector_positives.labels(settings.codec).inc()
        return result

    def _result(
        self,
        clip_id: str,
        start: float,
        end: float,
        scene: SceneOutput,
        pieces: list[DetectorOutput],
    ) -> pb.SceneResult:
        runner = self.models.scene
        result = pb.SceneResult(
            clip_id=clip_id,
            window_start=start,
            window_end=end,
            model_id=runner.model_id,
            model_version=runner.version,
        )
        _fill_scene(result, scene, runner)
        if pieces:
            lossy = float(np.mean([p.lossy for p in pieces]))
            families = np.mean([p.families for p in pieces], axis=0)
            _fill_detector(result, lossy, families, self.models.detector.families)
        return result

    def _summary(
        self, clip_id: str, codec: str, seconds: float, windows: list[pb.SceneResult]
    ) -> pb.SceneResult:
        """The clip's result: window probabilities averaged, as the papers score whole clips."""
        runner = self.models.scene
        scene = SceneOutput(
            scores=np.mean([_probs(r.fine) for r in windows], axis=0),
            coarse=np.mean([_probs(r.coarse) for r in windows], axis=0),
        )
        summary = pb.SceneResult(
            clip_id=clip_id,
            window_start=0.0,
            window_end=seconds,
            model_id=runner.model_id,
            model_version=runner.version,
            codec_path=codec,
            clip_summary=True,
            windows=len(windows),
            clip_seconds=seconds,
            # a window only knows it is last when the clip's end produced it; else this says so
            last_window=not windows[-1].last_window,
        )
        _fill_scene(summary, scene, runner)
        if windows[0].detector_ran:
            families = np.mean([_probs(r.codec_families) for r in windows], axis=0)
            lossy = float(np.mean([r.lossy_probability for r in windows]))
            _fill_detector(summary, lossy, families, self.models.detector.families)
        return summary

    # -- StreamScenes ----------------------------------------------------------------------

    async def StreamScenes(
        self, request_iterator: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SceneResult]:
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
        self.active += 1
        self._idle.clear()
        self.metrics.active_streams.set(self.active)
        # Bounded: when the client stops reading, the reader stops too and HTTP/2 flow control
        # pushes back on the device instead of the server buffering without limit.
        results: asyncio.Queue = asyncio.Queue(maxsize=256)
        reader = asyncio.create_task(self._read(request_iterator, results, identity))
        status = "ok"
        try:
            while True:
                item = await results.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        status = item.error.code.name
                        self.metrics.rejected.labels(item.error.code.name).inc()
                        log.warning("stream ended: %s: %s", item.error.code.name, item.error)
                        await context.abort(item.error.code, item.error.message)
                    break
                try:
                    result, completed_at = await item
                except (StreamError, BatcherClosed, Exception) as e:
                    error = _as_stream_error(e)
                    await self._drop_pending(results)
                    status = error.code.name
                    self.metrics.rejected.labels(status).inc()
                    await context.abort(error.code, error.message)
                if completed_at is not None:
                    latency = time.perf_counter() - completed_at
                    result.server_latency_ms = latency * 1000.0
                    self.metrics.window_latency.labels(result.codec_path).observe(latency)
                yield result
        except (asyncio.CancelledError, GeneratorExit):  # GeneratorExit: closed while writing
            status = "cancelled"
            raise
        finally:
            reader.cancel()
            self.active -= 1
            self.metrics.active_streams.set(self.active)
            self.metrics.streams.labels(status).inc()
            if self.active == 0:
                self._idle.set()

    @staticmethod
    async def _drop_pending(results: asyncio.Queue) -> None:
        while not results.empty():
            item = results.get_nowait()
            if isinstance(item, asyncio.Future):
                item.cancel()

    async def _read(
        self,
        requests: AsyncIterator[pb.StreamRequest],
        results: asyncio.Queue,
        identity: str | None,
    ) -> None:
        """Validate and decode packets in order; queue an awaitable per result, then an _End."""
        try:
            await self._read_packets(requests, results, identity)
            await results.put(_End())
        except StreamError as e:
            await results.put(_End(e))
        except BatcherClosed:
            await results.put(_End(StreamError(grpc.StatusCode.UNAVAILABLE, "server stopping")))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must still end the stream with a status, not hang it
            log.exception("stream failed")
            await results.put(_End(StreamError(grpc.StatusCode.INTERNAL, f"server error: {e}")))

    async def _next(self, iterator: AsyncIterator[pb.StreamRequest]) -> pb.StreamRequest | None:
        """The next request, or None when the client is done or the server is draining."""
        if self.draining.is_set():
            return None
        nxt = asyncio.ensure_future(anext(iterator, None))
        drain = asyncio.ensure_future(self.draining.wait())
        done, _ = await asyncio.wait({nxt, drain}, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done:
            drain.cancel()
            return nxt.result()
        nxt.cancel()
        return None

    async def _read_packets(
        self,
        requests: AsyncIterator[pb.StreamRequest],
        results: asyncio.Queue,
        identity: str | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        first = await self._next(requests)
        if first is None:
            if self.draining.is_set():
                raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            raise StreamError(INVALID, "stream ended before its StreamConfig")
        if first.WhichOneof("kind") != "config":
            raise StreamError(INVALID, "the first message of a stream must be a StreamConfig")
        settings = validate_config(first.config)
        self.access.authorize(identity, settings.device_id)
        path = settings.codec
        log.info(
            "stream from %s: %s at %d Hz, %d ch",
            settings.device_id,
            path,
            settings.rate,
            settings.channels,
        )
        clips: dict[str, ClipState] = {}
        replaying: set[str] = set()  # clips answered from the cache: their packets are skipped
        expected_sequence: int | None = None
        while (request := await self._next(requests)) is not None:
            if request.WhichOneof("kind") != "packet":
                raise StreamError(INVALID, "a second StreamConfig in one stream; open a new stream")
            self._check_size(request)
            packet = request.packet
            if expected_sequence is not None and packet.sequence != expected_sequence:
                raise StreamError(
                    INVALID,
                    f"packet sequence {packet.sequence} where {expected_sequence} was expected: "
                    "packets were lost, repeated or reordered",
                )
            expected_sequence = packet.sequence + 1
            if not packet.clip_id:
                raise StreamError(INVALID, f"packet {packet.sequence} has no clip_id")
            self.access.admit(settings.device_id, len(packet.payload))
            self.metrics.packets.labels(path).inc()
            self.metrics.bytes.labels(path).inc(len(packet.payload))
            if packet.clip_id in replaying:
                if packet.end_of_clip:
                    replaying.discard(packet.clip_id)
                continue
            clip = clips.get(packet.clip_id)
            if clip is None and (done := self._completed(settings, packet.clip_id)) is not None:
                # Sent again (the device never saw the result): answer again, classify once.
                self.metrics.duplicates.labels(path).inc()
                for result in done:
                    future = loop.create_future()
                    future.set_result((result, None))
                    await results.put(future)
                if not packet.end_of_clip:
                    replaying.add(packet.clip_id)
                continue
            if clip is None:
                if len(clips) >= self.limits.max_open_clips:
                    raise StreamError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"more than {self.limits.max_open_clips} clips open at once in one stream",
                    )
                try:
                    clip = ClipState(packet.clip_id, settings, self.models.scene.rate, self.limits)
                except CodecError as e:  # e.g. a codec that cannot decode at this rate here
                    raise StreamError(INVALID, f"cannot decode {path} for this stream: {e}") from e
                clips[packet.clip_id] = clip
            if packet.label and not clip.label:
                clip.label = packet.label
            before = clip.windower.total
            try:
                windows = await loop.run_in_executor(self.decode_pool, clip.feed, packet.payload)
                if packet.end_of_clip:
                    windows += await loop.run_in_executor(self.decode_pool, clip.finish)
            except StreamError as e:
                if e.code == grpc.StatusCode.DATA_LOSS:
                    self.metrics.decode_errors.labels(path).inc()
                raise
            received = time.perf_counter()
            decoded = clip.windower.total - before
            self.metrics.decoded_seconds.labels(path).inc(decoded / settings.rate)
            for i, window in enumerate(windows):
                last = packet.end_of_clip and i == len(windows) - 1
                task = self._window_task(clip, window, received, last)
                clip.pending.append(task)
                await results.put(task)
            if packet.end_of_clip:
                del clips[packet.clip_id]
                await results.put(self._summary_task(clip))
        if self.draining.is_set():
            raise StreamError(
                grpc.StatusCode.UNAVAILABLE,
                "server is shutting down: windows accepted so far were answered; reconnect and "
                "resend unfinished clips",
            )

    def _check_size(self, message) -> None:
        size = message.ByteSize()
        if size > self.limits.max_message_bytes:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a message of {size} bytes exceeds this server's limit of "
                f"{self.limits.max_message_bytes} bytes (--max-message-mb)",
            )

    def _completed(self, settings: StreamSettings, clip_id: str) -> list[pb.SceneResult] | None:
        key = (settings.device_id, settings.codec, clip_id)
        done = self.completed.get(key)
        if done is not None:
            self.completed.move_to_end(key)
        return done

    def _remember(self, settings: StreamSettings, clip_id: str, results: list) -> None:
        """Keep a finished clip's results, so a resend is answered without classifying again."""
        self.completed[(settings.device_id, settings.codec, clip_id)] = results
        while len(self.completed) > self.limits.remembered_clips:
            self.completed.popitem(last=False)

    def _window_task(self, clip: ClipState, window: Window, received: float, last: bool):
        async def run() -> tuple[pb.SceneResult, float]:
            wave = clip.model_input(window)
            result = await self._classify(clip.clip_id, window, wave, clip.settings)
            result.last_window = last
            return result, received

        return asyncio.ensure_future(run())

    def _summary_task(self, clip: ClipState):
        async def run() -> tuple[pb.SceneResult, None]:
            if not clip.pending:
                raise StreamError(INVALID, f"clip {clip.clip_id!r} ended without any audio")
            windows = [result for result, _ in await asyncio.gather(*clip.pending)]
            summary = self._summary(clip.clip_id, clip.settings.codec, clip.seconds, windows)
            self._remember(clip.settings, clip.clip_id, [*windows, summary])
            self.metrics.clips.labels(clip.settings.codec).inc()
            if clip.label:
                correct = summary.fine_label == clip.label
                self.metrics.record_label(clip.settings.codec, self.models.scene.model_id, correct)
            return summary, None

        return asyncio.ensure_future(run())

    # -- ClassifyClip and GetInfo ----------------------------------------------------------

    async def ClassifyClip(
        self, request: pb.ClipRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClipResult:
        try:
            identity = self.access.authenticate(context)
            self._check_size(request)
            self.access.admit(identity or "", len(request.data))
            return await self._classify_clip(request)
        except StreamError as e:
            self.metrics.rejected.labels(e.code.name).inc()
            await context.abort(e.code, e.message)

    async def _classify_clip(self, request: pb.ClipRequest) -> pb.ClipResult:
        if self.draining.is_set():
            raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        spec = None
        if request.codec:
            try:
                spec = str(parse_spec(request.codec))
            except CodecError as e:
                raise StreamError(INVALID, f"bad codec spec: {e}") from e
        if not request.data:
            raise StreamError(INVALID, "ClipRequest.data is empty")
        loop = asyncio.get_running_loop()
        rate = self.models.scene.rate
        try:
            pcm, _ = await loop.run_in_executor(
                self.decode_pool,
                lambda: decode(request.data, rate=rate, spec=spec),
            )
        except CodecError as e:
            path = spec or "probed"
            self.metrics.decode_errors.labels(path).inc()
            raise StreamError(grpc.StatusCode.DATA_LOSS, f"clip {request.clip_id!r}: {e}") from e
        window, hop = window_and_hop(request.window_seconds, request.hop_seconds)
        path = spec or "probed"
        settings = StreamSettings("", path, rate, 1, window, hop, request.detector)
        self.metrics.bytes.labels(path).inc(len(request.data))
        self.metrics.decoded_seconds.labels(path).inc(len(pcm) / rate)
        windower = Windower(
            round(settings.window_seconds * rate),
            round(settings.hop_seconds * rate),
            round(min(1.0, settings.hop_seconds) * rate),
        )
        windows = windower.push(pcm.mean(axis=1)) + windower.finish()
        if not windows:
            raise StreamError(INVALID, f"clip {request.clip_id!r} holds no audio")
        try:
            window_results = await asyncio.gather(
                *(self._classify(request.clip_id, w, w.samples, settings) for w in windows)
            )
        except BatcherClosed as e:
            raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down") from e
        window_results[-1].last_window = True
        summary = self._summary(request.clip_id, path, len(pcm) / rate, window_results)
        self.metrics.clips.labels(path).inc()
        return pb.ClipResult(clip_id=request.clip_id, windows=window_results, summary=summary)

    async def GetInfo(
        self, request: pb.InfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.InfoResponse:
        try:
            self.access.authenticate(context)
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
        await context.abort(code, message)


def _as_stream_error(e: Exception) -> StreamError:
    if isinstance(e, StreamError):
        return e
    if isinstance(e, BatcherClosed):
        return StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
    log.error("window failed", exc_info=e)
    return StreamError(grpc.StatusCode.INTERNAL, f"server error: {type(e).__name__}: {e}")


def _probs(items) -> np.ndarray:
    return np.array([p.probability for p in items], np.float64)


def _fill_scene(result: pb.SceneResult, scene: SceneOutput, runner: SceneRunner) -> None:
    fine = runner.fine_classes
    result.fine_label = fine[int(np.argmax(scene.scores))]
    result.fine.extend(
        pb.ClassProbability(label=c, probability=float(p))
        for c, p in zip(fine, scene.scores, strict=True)
    )
    if len(scene.coarse):
        coarse = runner.coarse_classes
        result.coarse_label = coarse[int(np.argmax(scene.coarse))]
        result.coarse.extend(
            pb.ClassProbability(label=c, probability=float(p))
            for c, p in zip(coarse, scene.coarse, strict=True)
        )


def _fill_detector(
    result: pb.SceneResult, lossy: float, families: np.ndarray, names: list[str]
) -> None:
    result.detector_ran = True
    result.lossy_probability = lossy
    result.codec_family = names[int(np.argmax(families))]
    result.codec_families.extend(
        pb.ClassProbability(label=n, probability=float(p))
        for n, p in zip(names, families, strict=True)
    )
