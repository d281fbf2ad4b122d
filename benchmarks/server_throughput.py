"""Server throughput: the dynamic batcher against one forward pass per window, side by side.

Run: .venv/bin/python -m benchmarks.server_throughput [--streams 1,8,32,128] [--device auto]
     [--preset compact|paper] [--clips 2]

Same process, same loaded model, same gRPC service: the naive server is the service with
``max_batch=1``. N concurrent streams each send ``--clips`` ten-second pcm16 clips as fast as
the server takes them; the table prints clips per second for both and their ratio (goal: at
least 3x at 32 streams on CPU, 10x on a GPU).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time

import torch

from asc.runtimes import RUNTIMES
from benchmarks.loopback import StreamStats, encoded_clip, run_stream, scene_runner, serving
from server.inference import pick_device
from server.service import Models


async def clips_per_second(
    models: Models, streams: int, clips: int, payloads: list[bytes], max_batch: int
) -> float:
    async with serving(models, max_batch=max_batch, max_delay_ms=10.0) as (target, _):
        stats = [StreamStats() for _ in range(streams)]
        started = time.perf_counter()
        await asyncio.gather(
            *(run_stream(target, "pcm16", payloads, clips, None, s) for s in stats)
        )
        elapsed = time.perf_counter() - started
    done = sum(s.clips for s in stats)
    if done != streams * clips:
        raise RuntimeError(f"{done} of {streams * clips} clips came back")
    return done / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,32,128", help="default: %(default)s")
    parser.add_argument(
        "--clips", type=int, default=2, help="clips per stream (default: %(default)s)"
    )
    parser.add_argument("--device", default="auto", help="default: %(default)s")
    parser.add_argument("--preset", default="compact", help="default: %(default)s")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES, help="default: auto")
    parser.add_argument("--max-batch", type=int, default=64, help="default: %(default)s")
    args = parser.parse_args()
    device = pick_device(args.device)
    models = Models(scene_runner(args.preset, device, args.runtime), None)
    payloads = encoded_clip("pcm16", 10.0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"# {args.preset} ensemble on {device} ({name or platform.machine()}), "
        f"{torch.get_num_threads()} torch threads, 10 s clips, {args.clips} per stream"
    )
    print("| streams | one pass per window (clips/s) | dynamic batcher (clips/s) | ratio |")
    print("|---:|---:|---:|---:|")
    await clips_per_second(models, 2, 1, payloads, args.max_batch)  # warm-up
    for streams in (int(s) for s in args.streams.split(",")):
        naive = await clips_per_second(models, streams, args.clips, payloads, 1)
        batched = await clips_per_second(models, streams, args.clips, payloads, args.max_batch)
        print(f"| {streams} | {naive:.1f} | {batched:.1f} | {batched / naive:.2f}x |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
