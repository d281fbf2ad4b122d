"""Stream capacity: how many concurrent 10 s real-time streams one server sustains.

Run: .venv/bin/python -m benchmarks.stream_capacity [--device auto] [--preset compact]
     [--runtime auto] [--detector] [--budget-ms 1000] [--start 8] [--max-streams 4096]
     [--clips 2] [--codec pcm16] [--packet-ms 500] [--audio-memory-mb 16384]
     [--grid-cpu-share 0.25] [--at STREAMS [--repeat 3]] [--quick]

A number of streams is sustained when every clip comes back and the p99 latency from a clip's
last packet to its result stays within ``--budget-ms`` while each stream sends one packet of
``--packet-ms`` of audio every ``--packet-ms`` (staggered starts, as independent devices; 500 ms
is what asc-edge sends, the figures before this flag used 200). The count doubles from
``--start`` until a probe fails, then bisects between the last pass and the first failure to
within 10 %. The models run in ``--runtime`` (``auto`` is the server's default: on a CPU,
OpenVINO for the ensemble, bfloat16 where the CPU has it, and ONNX Runtime for the detector;
``eager`` is how this was measured first), and with ``--detector`` every stream asks for the
detector, and each probe also prints how many grid tests ran per clip sent (a stream's clips
within 10 s of its last test, and clips that found the grid tests' queue full, go untested) and
how many clips found the queue full; ``--grid-cpu-share`` sets the most of one core the grid
tests take, as the server's flag does (0: off). ``--at`` probes one number of streams,
``--repeat`` times, instead of searching: a fixed load, for setups compared side by side. Each
probe also prints the CPU time this process (the server and the clients) spent per clip sent.
The server's budget for reserved audio memory is raised (each 10 s stream reserves about 8 MB,
so the server's 2,048 MB default turns streams away past about 250): a probe measures the CPU.

The clients run in this process, on its event loop. Their packets keep to a fixed schedule, and
how late they go out is measured: when the p99 send lag passes a quarter of the budget, the
client, not the server, is the limit, the search stops and the figure printed is a lower bound
(run the server alone and clients elsewhere to go further).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
from dataclasses import dataclass

import torch

from asc.runtimes import RUNTIMES
from benchmarks.cpu_time import cpu_seconds
from benchmarks.loopback import (
    detector_runner,
    encoded_clip,
    paced_streams,
    percentile,
    scene_runner,
)
from server.budgets import Budgets
from server.inference import pick_device
from server.service import Models


@dataclass
class Probe:
    streams: int
    clips_back: int
    clips_sent: int
    p50_ms: float
    p99_ms: float
    send_lag_p99_ms: float
    grid_tested: float  # share of the clips whose grid test ran (with --detector)
    grid_skipped: int  # clips that found the grid tests' queue full
    cpu_ms_per_clip: float  # this process's CPU (server and clients) per clip sent

    def sustained(self, budget_ms: float) -> bool:
        return self.clips_back == self.clips_sent and self.p99_ms <= budget_ms

    def client_bound(self, budget_ms: float) -> bool:
        return self.send_lag_p99_ms > budget_ms / 4


async def probe(
    models: Models,
    streams: int,
    clips: int,
    codec: str,
    payloads: list[bytes],
    max_batch: int,
    limits: Budgets,
    packet_seconds: float,
) -> Probe:
    detector = models.detector is not None
    grid: dict[str, float] = {}
    cpu = cpu_seconds()
    stats = await paced_streams(
        models, streams, clips, codec, payloads, packet_seconds, max_batch, detector, limits, grid
    )
    cpu = cpu_seconds() - cpu
    ms = [1000 * x for s in stats for x in s.latencies]
    lags = [1000 * x for s in stats for x in s.send_lags]
    return Probe(
        streams=streams,
        clips_back=sum(s.clips for s in stats),
        clips_sent=streams * clips,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99) if ms else float("inf"),
        send_lag_p99_ms=percentile(lags, 99),
        grid_tested=grid["run"] / (streams * clips),
        grid_skipped=round(grid["skipped"]),
        cpu_ms_per_clip=1000 * cpu / (streams * clips),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--preset", default="compact", help="ensemble size (default: compact)")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES, help="default: auto")
    parser.add_argument(
        "--passes", type=int, default=0,
        help="forward passes at once; 0: the server's default, 2 on a CPU (default: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--detector", action="store_true", help="every stream asks for it too (default: off)"
    )
    parser.add_argument("--codec", default="pcm16", help="the streams' codec path (default: pcm16)")
    parser.add_argument(
        "--packet-ms",
        type=float,
        default=500.0,
        help="audio per packet, as asc-edge cuts it (default: 500, asc-edge's --packet-ms)",
    )
    parser.add_argument(
        "--clips", type=int, default=2, help="clips per stream in each probe (default: 2)"
    )
    parser.add_argument(
        "--budget-ms", type=float, default=1000.0, help="p99 latency allowed (default: 1000)"
    )
    parser.add_argument("--start", type=int, default=8, help="first probe's streams (default: 8)")
    parser.add_argument(
        "--max-streams", type=int, default=4096, help="stop the search here (default: 4096)"
    )
    parser.add_argument("--max-batch", type=int, default=64, help="batcher limit (default: 64)")
    parser.add_argument(
        "--audio-memory-mb",
        type=float,
        default=16384.0,
        help="the server's reserved audio memory for all streams, set high so that the CPU, not "
        "this budget, is what a probe finds (default: %(default)s; the server's own: 2048)",
    )
    parser.add_argument(
        "--grid-cpu-share",
        type=float,
        default=0.25,
        help="the most of one core the detector's grid tests take, as the server's flag "
        "(default: %(default)s, the server's; 0: off)",
    )
    parser.add_argument(
        "--at", type=int, default=0, help="probe this many streams only (default: search)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="with --at: probes in turn (default: 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 and 2 streams, 1 clip each (default: off)"
    )
    args = parser.parse_args()
    if args.quick:
        args.start, args.max_streams, args.clips = 1, 2, 1
    device = pick_device(args.device)
    scene = scene_runner(args.preset, device, args.runtime, args.passes)
    detector = detector_runner(device, args.runtime, args.passes) if args.detector else None
    models = Models(scene, detector)
    packet_seconds = args.packet_ms / 1000
    payloads = encoded_clip(args.codec, 10.0, packet_seconds)
    limits = Budgets(
        audio_bytes=round(args.audio_memory_mb * 2**20), grid_cpu_share=args.grid_cpu_share
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"# {args.preset} ensemble{' and detector' if args.detector else ''} on {device} "
        f"({name}), {scene.runtime.name}, {torch.get_num_threads()} torch "
        f"threads; {args.codec}, 10 s clips at real time in {args.packet_ms:g} ms packets, "
        f"{args.clips} per stream; "
        f"budget p99 <= {args.budget_ms:.0f} ms"
        + (f"; grid tests' share of a core {args.grid_cpu_share:g}" if args.detector else "")
    )
    tested = " grid tests run / clips (skipped: queue full) |" if args.detector else ""
    head = "| streams | clips back | p50 (ms) | p99 (ms) | client send lag p99 (ms) |"
    print(f"{head}{tested} CPU per clip (ms) | verdict |")
    print(f"|---:|---:|---:|---:|---:|{'---:|' if args.detector else ''}---:|---|")

    async def run(n: int) -> Probe:
        p = await probe(
            models, n, args.clips, args.codec, payloads, args.max_batch, limits, packet_seconds
        )
        verdict = (
            "client-bound"
            if p.client_bound(args.budget_ms)
            else "sustained"
            if p.sustained(args.budget_ms)
            else "falls behind"
        )
        tested = f" {100 * p.grid_tested:.0f} % ({p.grid_skipped}) |" if args.detector else ""
        print(
            f"| {n} | {p.clips_back}/{p.clips_sent} | {p.p50_ms:.0f} | {p.p99_ms:.0f} | "
            f"{p.send_lag_p99_ms:.0f} |{tested} {p.cpu_ms_per_clip:.0f} | {verdict} |",
            flush=True,
        )
        return p

    if args.at:
        for _ in range(args.repeat):
            await run(args.at)
        return
    best, failed, bound = 0, None, False
    n = args.start
    while n <= args.max_streams:  # doubling
        p = await run(n)
        if p.client_bound(args.budget_ms):
            bound = True
            break
        if not p.sustained(args.budget_ms):
            failed = n
            break
        best, n = n, n * 2
    while failed is not None and not bound and failed - best > max(1, best // 10):  # bisection
        n = (best + failed) // 2
        p = await run(n)
        if p.client_bound(args.budget_ms):
            bound = True
        elif p.sustained(args.budget_ms):
            best = n
        else:
            failed = n
    if bound:
        print(f"\nat least {best} streams: the in-process clients could not keep real time")
    elif failed is None:
        print(f"\nat least {best} streams: every probe up to --max-streams was sustained")
    else:
        print(f"\nsustains {best} concurrent real-time streams ({failed} fall behind)")


if __name__ == "__main__":
    asyncio.run(main())
