"""End-to-end window latency under real-time streams: last packet of a window -> its result.

Run: .venv/bin/python -m benchmarks.stream_latency [--streams 1,8,64] [--device auto]
     [--preset compact] [--clips 3] [--codec pcm16]

Each stream sends 10 s clips paced at real time (one 0.2 s packet every 0.2 s), starting at
staggered offsets as independent devices would. Latency is measured by the client from the
moment the clip's last packet is handed to gRPC to the arrival of that window's result, so it
holds decode, windowing, queueing in the batcher, the forward pass and the way back. Goals:
p99 under 50 ms on a GPU with the compact ensemble, under 500 ms on 2 CPU cores at 8 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import platform

import torch

from asc.runtimes import RUNTIMES
from benchmarks.loopback import encoded_clip, paced_streams, percentile, scene_runner
from server.inference import pick_device
from server.service import Models

PACKET_SECONDS = 0.2


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,64", help="default: %(default)s")
    parser.add_argument(
        "--clips", type=int, default=3, help="clips per stream (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="default: %(default)s")
    parser.add_argument("--preset", default="compact", help="default: %(default)s")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES, help="default: auto")
    parser.add_argument("--codec", default="pcm16", help="default: %(default)s")
    parser.add_argument("--max-batch", type=int, default=64, help="default: %(default)s")
    args = parser.parse_args()
    device = pick_device(args.device)
    models = Models(scene_runner(args.preset, device, args.runtime), None)
    payloads = encoded_clip(args.codec, 10.0, PACKET_SECONDS)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"# {args.preset} ensemble on {device} ({name}), {torch.get_num_threads()} torch "
        f"threads; {args.codec}, 10 s clips at real time, {args.clips} per stream"
    )
    print("| streams | windows | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---:|---:|---:|---:|---:|")
    for streams in (int(s) for s in args.streams.split(",")):
        stats = await paced_streams(
            models, streams, args.clips, args.codec, payloads, PACKET_SECONDS, args.max_batch
        )
        if sum(s.clips for s in stats) != streams * args.clips:
            raise RuntimeError(f"{streams} streams: not every clip came back")
        ms = [1000 * x for s in stats for x in s.latencies]
        print(
            f"| {streams} | {len(ms)} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} | "
            f"{max(ms):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
