"""Encode and decode speed per codec, as multiples of real time on one core, and kbps achieved.

Run: .venv/bin/python benchmarks/codec_speed.py [--seconds 10] [--repeats 3]
Each path codes the same generated full-band clip (44.1 kHz mono; he-aac-v2 stereo) through the
engine's StreamEncoder/StreamDecoder, the code the edge and the server run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from asc.codecs import StreamDecoder, StreamEncoder, parse_spec
from asc.codecs.registry import REFERENCE_SPECS
from asc.signals import full_band_clip

SPECS = list(REFERENCE_SPECS)
RATE = 44100


def best_of(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    mono = full_band_clip(RATE, args.seconds, 1, seed=0)
    stereo = full_band_clip(RATE, args.seconds, 2, seed=0)

    print(f"# codec speed: {args.seconds:g} s clip at {RATE} Hz, best of {args.repeats}, one core")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print()
    print("| path | channels | kbps | encode x real time | decode x real time |")
    print("|---|---:|---:|---:|---:|")
    for spec in SPECS:
        x = stereo if parse_spec(spec).last.name == "he-aac-v2" else mono
        channels = x.shape[1]
        StreamDecoder(spec, RATE, channels)  # measure the codec delay outside the timing
        encoded: dict[str, bytes | int] = {}

        def run_encode(spec=spec, x=x, channels=channels, encoded=encoded):
            encoder = StreamEncoder(spec, RATE, channels)
            encoded["data"] = encoder.encode(x) + encoder.finish()
            encoded["payload"] = encoder.payload_bytes

        def run_decode(spec=spec, channels=channels, encoded=encoded):
            decoder = StreamDecoder(spec, RATE, channels)
            decoder.feed(encoded["data"])
            decoder.finish()

        t_encode = best_of(args.repeats, run_encode)
        t_decode = best_of(args.repeats, run_decode)
        kbps = encoded["payload"] * 8 / args.seconds / 1000
        print(
            f"| `{spec}` | {channels} | {kbps:.1f} | {args.seconds / t_encode:.0f} "
            f"| {args.seconds / t_decode:.0f} |"
        )


if __name__ == "__main__":
    main()
