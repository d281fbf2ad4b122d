"""Soak: many real-time streams against one server process for minutes; is memory flat?

Run: .venv/bin/python -m benchmarks.soak [--streams 64] [--minutes 10] [--codec opus:32k]
     [--device cpu] [--max-batch N] [--detector] [--points 10] [--max-growth-mb 64] [--quick]

One real ``asc-server serve`` process (its resident memory is what is watched) and, in this
process, ``--streams`` grpc.aio streams, each a device sending 10 s clips at real time (one
0.2 s packet every 0.2 s, starts staggered over the first clip), every clip a new id, until the
time is up. About ``--points`` times during the run it prints, for the interval: results per
second (windows and summaries), clips per second, window latency p50/p99 (last packet of a
window to its result), errors, open streams and the server's RSS. At the end: RSS when idle
after start-up, when warm (every stream open for three clips, or a tenth of the run: decoders,
window buffers, allocator pools in place) and at the end with the streams still open, the slope
over the second half, and a FLAG line (exit code 1) when RSS grew by more than
``--max-growth-mb`` after warm-up, a stream failed, or results fell behind real time.

Expected growth that is not a leak: the server remembers finished clips' results for resends
(an LRU of 10,000 clips, a few kB each), so tens of MB over the first ~30 minutes at 64
streams, flat after that.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from asc.codecs.stream import StreamEncoder
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from tests.servers import rss_mb, start_server

RATE = 44100
PACKET_SECONDS = 0.2
CLIP_SECONDS = 10.0


def encoded_clip(codec: str) -> list[bytes]:
    """One 10 s clip's payloads as the edge cuts them (the client's encoding is not measured)."""
    pcm = full_band_clip(RATE, seconds=CLIP_SECONDS, channels=1, seed=11)
    encoder = StreamEncoder(codec, RATE, 1)
    step = int(PACKET_SECONDS * RATE)
    payloads = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    payloads[-1] += encoder.finish()
    return payloads


@dataclass
class Tally:
    """Counts since the last report, and totals."""

    results: int = 0
    windows: int = 0
    clips: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    total_results: int = 0
    total_clips: int = 0
    total_errors: int = 0
    open_streams: int = 0

    def take(self) -> tuple[int, int, int, int, list[float]]:
        out = (self.results, self.windows, self.clips, self.errors, self.latencies)
        self.results = self.windows = self.clips = self.errors = 0
        self.latencies = []
        return out


async def device(
    target: str, index: int, codec: str, payloads: list[bytes], end: float, tally: Tally
) -> None:
    """One device: clips back to back at real time until ``end``; reconnects after an error."""
    await asyncio.sleep(random.Random(index).uniform(0, CLIP_SECONDS))
    clip_no = 0
    last_sent: dict[str, float] = {}  # clip id -> when its last packet went out
    while time.monotonic() < end:

        async def requests():
            nonlocal clip_no
            yield pb.StreamRequest(
                config=pb.StreamConfig(
                    device_id=f"soak-{index}", codec=codec, sample_rate=RATE, channels=1
                )
            )
            sequence, due = 0, time.monotonic()
            while time.monotonic() < end:
                clip_id = f"s{index}-c{clip_no}"
                clip_no += 1
                for i, payload in enumerate(payloads):
                    due += PACKET_SECONDS
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    last = i == len(payloads) - 1
                    if last:
                        last_sent[clip_id] = time.perf_counter()
                    packet = pb.AudioPacket(
                        sequence=sequence, clip_id=clip_id, payload=payload, end_of_clip=last
                    )
                    yield pb.StreamRequest(packet=packet)
                    sequence += 1

        tally.open_streams += 1
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                async for result in pbg.SceneClassifierStub(channel).StreamScenes(requests()):
                    tally.results += 1
                    tally.total_results += 1
                    if result.clip_summary:
                        tally.clips += 1
                        tally.total_clips += 1
                        continue
                    tally.windows += 1
                    if result.last_window and result.clip_id in last_sent:
                        sent = last_sent.pop(result.clip_id)
                        tally.latencies.append(time.perf_counter() - sent)
        except grpc.aio.AioRpcError as e:
            tally.errors += 1
            tally.total_errors += 1
            print(f"# stream {index}: {e.code().name}: {e.details()}", flush=True)
            await asyncio.sleep(1.0)
        finally:
            tally.open_streams -= 1


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


async def soak(args: argparse.Namespace, target: str, pid: int) -> dict:
    payloads = encoded_clip(args.codec)
    tally = Tally()
    start = time.monotonic()
    end = start + args.minutes * 60
    tasks = [
        asyncio.create_task(device(target, i, args.codec, payloads, end, tally))
        for i in range(args.streams)
    ]
    interval = max(5.0, args.minutes * 60 / args.points)
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
    rates: list[float] = []
    print("| t (s) | results/s | windows/s | clips/s | p50 ms | p99 ms | errors | open | RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    last, pending = start, set(tasks)
    while pending:  # devices finish the clip they are in after ``end``, then hang up
        timeout = max(0.1, min(interval, end + CLIP_SECONDS + 30 - time.monotonic()))
        _, pending = await asyncio.wait(pending, timeout=timeout)
        now = time.monotonic()
        span = max(1e-9, now - last)
        results, windows, clips, errors, latencies = tally.take()
        rss = rss_mb(pid)
        samples.append((now - start, rss))
        rates.append(results / span)
        ms = [1000 * x for x in latencies]
        print(
            f"| {now - start:.0f} | {results / span:.2f} | {windows / span:.2f} | "
            f"{clips / span:.2f} | {percentile(ms, 50)} | {percentile(ms, 99)} | "
            f"{errors} | {tally.open_streams} | {rss:.1f} |",
            flush=True,
        )
        last = now
        if now > end + CLIP_SECONDS + 30:
            break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"samples": samples, "rates": rates, "tally": tally}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--minutes", type=float, default=10.0, help="default: %(default)s")
    parser.add_argument("--codec", default="opus:32k", help="default: %(default)s")
    parser.add_argument(
        "--device", default="cpu", help="the server's --device (default: %(default)s)"
    )
    parser.add_argument("--max-batch", type=int, help="the server's --max-batch")
    parser.add_argument("--detector", action="store_true", help="run the lossy detector too")
    parser.add_argument(
        "--points", type=int, default=10, help="reports during the run (default: %(default)s)"
    )
    parser.add_argument("--max-growth-mb", type=float, default=64.0, help="default: %(default)s")
    parser.add_argument("--quick", action="store_true", help="4 streams for 30 s: does it run")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.minutes, args.points = 4, 0.5, 3

    server_args = ["--device", args.device, "--log-level", "WARNING"]
    if args.max_batch:
        server_args += ["--max-batch", str(args.max_batch)]
    if not args.detector:
        server_args += ["--detector", "none"]
    server = start_server(*server_args)
    pid = server.proc.pid
    try:
        idle = rss_mb(pid)
        print(
            f"# soak: {args.streams} streams of {args.codec} at real time for {args.minutes:g} "
            f"min against one server (pid {pid}, {server.ready['device']}, "
            f"{platform.machine()}); server RSS idle: {idle:.1f} MB"
        )
        expected = args.streams * 2 / CLIP_SECONDS  # a window and a summary per 10 s clip
        print(f"# steady state: {expected:.2f} results/s (1 window + 1 summary per clip)")
        out = asyncio.run(soak(args, server.target, pid))
        metrics = server.metrics()
    finally:
        code = server.stop()
    samples, rates, tally = out["samples"], out["rates"], out["tally"]
    duration = args.minutes * 60
    # warm: every stream open for a few clips (decoders, windows, allocator pools in place);
    # end: the last sample while they were still open; after: once they hung up
    warm_at = max(3 * CLIP_SECONDS, 0.1 * duration)
    warm = next((m for t, m in samples if t >= warm_at), samples[0][1])
    open_samples = [(t, m) for t, m in samples if t <= duration + 1] or samples
    final, after = open_samples[-1][1], samples[-1][1]
    half = [(t, m) for t, m in open_samples if t >= max(warm_at, duration / 2)] or open_samples
    slope = (
        float(np.polyfit([t / 60 for t, _ in half], [m for _, m in half], 1)[0])
        if len(half) >= 2
        else 0.0
    )
    steady = rates[1:-1] or rates
    print(
        f"# server RSS: idle {idle:.1f} MB, warm (t >= {warm_at:.0f} s) {warm:.1f} MB, end "
        f"(streams open) {final:.1f} MB: {final - warm:+.1f} MB after warm-up; second-half "
        f"slope {slope:+.2f} MB/min; {after:.1f} MB once they hung up; server exit code {code}"
    )
    print(
        f"# results: {tally.total_results} ({tally.total_clips} clips), "
        f"{np.mean(steady):.2f}/s in steady state (expected {expected:.2f}); "
        f"stream errors {tally.total_errors}"
    )
    active = [line for line in metrics.splitlines() if line.startswith("asc_active_streams ")] or [
        "asc_active_streams ?"
    ]
    print(f"# at the end: {active[0]}")
    flags = []
    if final - warm > args.max_growth_mb:
        flags.append(f"RSS grew {final - warm:.1f} MB (> {args.max_growth_mb:g}) after warm-up")
    if tally.total_errors:
        flags.append(f"{tally.total_errors} stream error(s)")
    if steady and np.mean(steady) < 0.9 * expected:
        flags.append(f"{np.mean(steady):.2f} results/s is behind real time ({expected:.2f})")
    for flag in flags:
        print(f"FLAG: {flag}")
    if not flags:
        print("OK: memory flat, every stream kept up")
    return 1 if flags else 0


if __name__ == "__main__":
    raise SystemExit(main())
