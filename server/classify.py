"""ClassifyClip: one whole file, decoded within budget, its windows classified as views of it.

A file's cost is bounded before and while it is decoded: at most ``classify_calls`` calls
decode and classify at once (others wait their turn, up to ``classify_queue_bytes`` of waiting
files, then RESOURCE_EXHAUSTED), decoding stops at ``classify_seconds`` of audio, and the
windows are views of the decoded audio, never copies, counted against
``max_windows_per_clip``. The codec a request names must be a registry codec and what the
container holds, so metric labels stay a bounded set of true paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import TYPE_CHECKING

import grpc
import numpy as np

from asc.codecs.errors import CodecError
from asc.codecs.registry import lookup
from asc.codecs.spec import parse_spec
from proto import scene_classifier_pb2 as pb
from server.batcher import BatcherClosed
from server.bounded_decode import DecodedClip
from server.errors import StreamError
from server.grid_runner import wait_for_call
from server.handlers import Undecodable
from server.results import join_grid
from server.session import (
    MAX_RATE,
    MIN_RATE,
    check_duration,
    check_spec,
    window_and_hop,
)
from server.windows import window_spans

if TYPE_CHECKING:
    from server.service import SceneService

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PROBED = "probed"
_calls = itertools.count()


class ClassifySlots:
    """Turns for ClassifyClip calls: ``calls`` at once, waiting files bounded in bytes."""

    def __init__(self, calls: int, queue_bytes: int):
        self.queue_bytes = queue_bytes
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(max(1, calls))

    @contextlib.asynccontextmanager
    async def turn(self, size: int):
        if self._semaphore.locked() and self.waiting + size > self.queue_bytes:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many ClassifyClip calls are waiting ({self.waiting >> 20} MB of files); "
                "retry later",
            )
        self.waiting += size
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= size
        try:
            yield
        finally:
            self._semaphore.release()


def declared_codec(text: str, service: SceneService) -> tuple[str, str]:
    """The request's spec, canonical and bounded, and its last stage's registry codec."""
    spec = check_spec(text, service.budgets)
    stages = parse_spec(spec).stages
    try:
        for stage in stages:
            lookup(stage.name)
    except CodecError as e:
        raise StreamError(INVALID, f"bad codec spec: {e}") from e
    return spec, stages[-1].name


async def classify_clip(
    service: SceneService, request: pb.ClipRequest, caller: object = None
) -> pb.ClipResult:
    if isinstance(request, Undecodable):
        raise request.error()
    if service.draining.is_set():
        raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
    budgets = service.budgets
    spec, codec, window, hop = check_request(request, service)
    path = spec or PROBED
    label = service.metrics.codec_label(path)
    rate = service.models.scene.rate
    async with service.classify_slots.turn(len(request.data)):
        decoded = await decode_within_budget(service, request, codec, label)
        check_duration(request.clip_id, decoded.seconds, budgets.min_clip_seconds)
        mono = decoded.mono
        spans = window_spans(
            len(mono), round(window * rate), round(hop * rate), round(min(1.0, hop) * rate)
        )
        budgets.check_windows(request.clip_id, len(spans))
        seconds = sum(end - start for start, end in spans) / rate
        flood = await service.classify_rate.take(caller, seconds, len(spans))
        service.metrics.bytes.labels(label).inc(len(request.data))
        service.metrics.decoded_seconds.labels(label).inc(decoded.seconds)
        grid = None
        if request.detector and service.models.detector is not None:
            # in the grid tests' own thread (server/grid_runner.py) while the windows are
            # classified; None where too many tests wait
            start, end = spans[0]
            grid = service.grid_runner.submit(mono[start:end], rate)
        try:
            windows = await classify_windows(service, request, mono, spans, flood)
        except BaseException:
            if grid is not None:
                grid.cancel()
            raise
        call = await wait_for_call(grid, service.grid_runner.wait_seconds)
        if call is not None:
            for result in windows:
                join_grid(result, call)
    return clip_result(service, request, path, label, len(mono) / rate, windows)


def check_request(
    request: pb.ClipRequest, service: SceneService
) -> tuple[str | None, str | None, float, float]:
    """The request's spec and codec (None: probe the file), window and hop, each checked
    against the budgets before any byte is decoded."""
    budgets = service.budgets
    budgets.check_text("clip_id", request.clip_id)
    spec, codec = declared_codec(request.codec, service) if request.codec else (None, None)
    if not request.data:
        raise StreamError(INVALID, "ClipRequest.data is empty")
    if request.sample_rate and not MIN_RATE <= request.sample_rate <= MAX_RATE:
        raise StreamError(
            INVALID, f"sample rate {request.sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
        )
    window, hop = window_and_hop(request.window_seconds, request.hop_seconds, budgets)
    return spec, codec, window, hop


async def decode_within_budget(
    service: SceneService, request: pb.ClipRequest, codec: str | None, label: str
) -> DecodedClip:
    """The file decoded in a worker process (server/decode_sandbox.py), stopping at
    ``classify_seconds`` of audio; a file that does not decode is counted against its codec
    path."""
    rate = service.models.scene.rate
    seconds = service.budgets.classify_seconds
    try:
        return await service.decode_sandbox.decode(
            request.data,
            most_samples=round((seconds + 1.0) * rate),  # decode_clip stops past ``seconds``
            rate=rate,
            clip_id=request.clip_id,
            max_seconds=seconds,
            codec=codec,
            raw_rate=request.sample_rate,
        )
    except StreamError as e:
        if e.code == grpc.StatusCode.DATA_LOSS:
            service.metrics.decode_errors.labels(label).inc()
        raise


async def classify_windows(
    service: SceneService,
    request: pb.ClipRequest,
    mono: np.ndarray,
    spans: list[tuple[int, int]],
    flood: bool,
) -> list[pb.SceneResult]:
    """Every window, as a view of ``mono``, through the shared batchers under one owner, so
    the call's leftovers are forgotten together whatever happens."""
    rate = service.models.scene.rate
    owner = ("clip", next(_calls))
    service.open_owner(owner)
    try:
        return await asyncio.gather(
            *(
                service.classify(
                    request.clip_id,
                    mono[start:end],
                    start / rate,
                    end / rate,
                    request.detector,
                    owner,
                    flood,
                )
                for start, end in spans
            )
        )
    except BatcherClosed as e:
        raise StreamError(grpc.StatusCode.UNAVAILABLE, "server is shutting down") from e
    finally:
        service.forget_owner(owner)


def clip_result(
    service: SceneService,
    request: pb.ClipRequest,
    path: str,
    label: str,
    seconds: float,
    windows: list[pb.SceneResult],
) -> pb.ClipResult:
    model_id = service.models.scene.model_id
    for result in windows:
        result.codec_path = path
        service.metrics.windows.labels(label, model_id).inc()
    windows[-1].last_window = True
    summary = service.summary(request.clip_id, path, seconds, windows)
    service.metrics.record_clip(label, summary)
    return pb.ClipResult(clip_id=request.clip_id, windows=windows, summary=summary)
