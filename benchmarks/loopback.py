"""Shared by the server benchmarks: the real service on a loopback port, and streams against it.

The server side is the production ``SceneService`` on ``grpc.aio``; clients are grpc.aio
streams in the same process and event loop, sending pre-encoded packets, so that what is
measured is the server (decode, windows, batcher, forward passes, results), not the encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import torch

from asc.checkpoint import Checkpoint, save
from asc.codecs.stream import StreamEncoder
from asc.features import LOGMEL
from asc.labels import DCASE_CLASSES, DCASE_COARSE, DCASE_COARSE_OF
from asc.models.scene import SceneEnsemble
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from server.budgets import Budgets
from server.inference import DetectorRunner, SceneRunner
from server.metrics import ServerMetrics
from server.service import Models, SceneService
from server.startup import default_passes

RATE = 44100
# Every benchmark stream is its own device: the server answers a clip id it has already seen from
# the same device and path from memory, which would measure its dedupe instead of its work.
_DEVICES = itertools.count()
SHIPPED = Path(__file__).resolve().parent.parent / "models" / "ensemble.safetensors"


def scene_runner(
    preset: str, device: torch.device, runtime: str = "auto", passes: int = 0
) -> SceneRunner:
    """The shipped compact checkpoint, or an untrained one of another preset (speed only), in
    ``runtime`` (``auto``: what ``asc-server serve`` runs by default), with the server's default
    passes at once unless ``passes`` names another count."""
    passes = passes or default_passes(device)
    if preset == "compact":
        return SceneRunner(SHIPPED, device, runtime, passes)
    model = SceneEnsemble(DCASE_CLASSES, DCASE_COARSE, DCASE_COARSE_OF, preset=preset)
    path = Path(tempfile.mkdtemp()) / f"{preset}.safetensors"
    extra = {"model_id": f"{preset}-untrained"}
    save(Checkpoint("scene_ensemble", model.config, LOGMEL, model, extra=extra), path)
    return SceneRunner(path, device, runtime, passes)


def detector_runner(device: torch.device, runtime: str = "auto", passes: int = 0) -> DetectorRunner:
    """The shipped lossy detector, for streams that ask for it."""
    path = SHIPPED.with_name("detector.safetensors")
    return DetectorRunner(path, device, runtime, passes or default_passes(device))


def encoded_clip(codec: str, seconds: float, packet_seconds: float = 0.2) -> list[bytes]:
    """One clip's payloads, cut as the edge cuts them; the last one holds the encoder's end."""
    pcm = full_band_clip(RATE, seconds=seconds, channels=1, seed=7)
    encoder = StreamEncoder(codec, RATE, 1)
    step = int(packet_seconds * RATE)
    payloads = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    payloads[-1] += encoder.finish()
    return payloads


@contextlib.asynccontextmanager
async def serving(
    models: Models, max_batch: int, max_delay_ms: float, limits: Budgets | None = None
):
    """The service on an ephemeral loopback port; yields (target, service)."""
    service = SceneService(
        models, ServerMetrics(), max_batch=max_batch, max_delay_ms=max_delay_ms, limits=limits
    )
    server = grpc.aio.server()
    pbg.add_SceneClassifierServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    service.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        service.begin_drain()
        await server.stop(grace=1)
        await service.close()


@dataclass
class StreamStats:
    clips: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, last packet -> result
    send_lags: list[float] = field(default_factory=list)  # seconds a paced packet went out late


async def run_stream(
    target: str,
    codec: str,
    payloads: list[bytes],
    clips: int,
    packet_seconds: float | None,
    stats: StreamStats,
    start_delay: float = 0.0,
    detector: bool = False,
) -> None:
    """Send ``clips`` clips; ``packet_seconds`` paces packets at that interval (None: at once).

    Paced packets keep to a fixed schedule (packet n at n intervals after the start), so a busy
    client does not quietly slow to less than real time; how late each one went out is kept in
    ``stats.send_lags``, which tells a server that falls behind from a client that does.
    """
    await asyncio.sleep(start_delay)
    last_sent: dict[str, float] = {}
    device_id = f"bench-{next(_DEVICES)}"

    async def requests():
        yield pb.StreamRequest(
            config=pb.StreamConfig(
                device_id=device_id, codec=codec, sample_rate=RATE, channels=1, detector=detector
            )
        )
        sequence = 0
        started = time.perf_counter()
        for k in range(clips):
            clip_id = f"c{k}"
            for i, payload in enumerate(payloads):
                end = i == len(payloads) - 1
                if packet_seconds is not None:
                    due = started + (sequence + 1) * packet_seconds
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    stats.send_lags.append(max(0.0, time.perf_counter() - due))
                if end:
                    last_sent[clip_id] = time.perf_counter()
                packet = pb.AudioPacket(
                    sequence=sequence, clip_id=clip_id, payload=payload, end_of_clip=end
                )
                yield pb.StreamRequest(packet=packet)
                sequence += 1

    async with grpc.aio.insecure_channel(target) as channel:
        call = pbg.SceneClassifierStub(channel).StreamScenes(requests())
        async for result in call:
            if result.clip_summary:
                stats.clips += 1
            elif result.last_window:
                stats.latencies.append(time.perf_counter() - last_sent[result.clip_id])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def paced_streams(
    models: Models,
    streams: int,
    clips: int,
    codec: str,
    payloads: list[bytes],
    packet_seconds: float,
    max_batch: int,
    detector: bool = False,
    limits: Budgets | None = None,
    grid_outcomes: dict[str, float] | None = None,
) -> list[StreamStats]:
    """``streams`` real-time streams against a fresh server (``limits``: its budgets, the
    server's defaults if None), starting at staggered offsets.

    A stream the server ends with an error keeps what it received: its missing clips show in
    ``StreamStats.clips``. ``grid_outcomes``, where given, is filled with the server's count of
    grid tests by outcome (asc_grid_tests: run, skipped, failed).
    """
    rng = random.Random(streams)
    clip_seconds = packet_seconds * len(payloads)
    stats = [StreamStats() for _ in range(streams)]
    async with serving(models, max_batch, 10.0, limits) as (target, service):
        await asyncio.gather(
            *(
                run_stream(
                    target,
                    codec,
                    payloads,
                    clips,
                    packet_seconds,
                    s,
                    rng.uniform(0, clip_seconds),
                    detector,
                )
                for s in stats
            ),
            return_exceptions=True,
        )
        if grid_outcomes is not None:
            # A clip whose window took its stream's last call does not wait for its own test:
            # let the tests still queued finish before they are counted.
            for _ in range(600):
                if not service.grid_runner.waiting:
                    break
                await asyncio.sleep(0.1)
            sample = service.metrics.registry.get_sample_value
            for outcome in ("run", "skipped", "failed"):
                grid_outcomes[outcome] = sample("asc_grid_tests_total", {"outcome": outcome}) or 0
    return stats
