"""Encode and decode speed per codec, as multiples of real time on one core, and kbps achieved.

Run: .venv/bin/python -m benchmarks.codec_speed [--seconds 10] [--repeats 3]
Each path codes the same generated full-band clip (44.1 kHz mono; he-aac-v2 stereo) through the
engine's StreamEncoder/StreamDecoder, the code the edge and the server run. ``measure`` is also
what benchmarks/edge_cost.py times the edge's encoders with.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from dataclasses import dataclass

from asc.codecs import StreamDecoder, StreamEncoder, codec_delay, parse_spec
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


@contextlib.contextmanager
def one_core():
    """Pin this process to its first allowed core for the block, then restore the set."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@dataclass
class CodecTiming:
    spec: str
    channels: int
    kbps: float  # the codec payload's bitrate
    encode_x: float  # seconds of audio encoded per second of wall time
    decode_x: float | None  # None when decoding was not timed


def measure(spec: str, seconds: float, repeats: int, decode: bool = True) -> CodecTiming:
    """Time one path's StreamEncoder (and StreamDecoder) on a generated full-band clip."""
    channels = 2 if parse_spec(spec).last.name == "he-aac-v2" else 1
    x = full_band_clip(RATE, seconds, channels, seed=0)
    encoded: dict[str, bytes | int] = {}

    def run_encode():
        encoder = StreamEncoder(spec, RATE, channels)
        encoded["data"] = encoder.encode(x) + encoder.finish()
        encoded["payload"] = encoder.payload_bytes

    def run_decode():
        decoder = StreamDecoder(spec, RATE, channels, encoded["delay"])
        decoder.feed(encoded["data"])
        decoder.finish()

    t_encode = best_of(repeats, run_encode)
    t_decode = None
    if decode:
        encoded["delay"] = codec_delay(spec, RATE, channels)  # measured outside the timing
        t_decode = best_of(repeats, run_decode)
    return CodecTiming(
        spec,
        channels,
        kbps=encoded["payload"] * 8 / seconds / 1000,
        encode_x=seconds / t_encode,
        decode_x=seconds / t_decode if t_decode else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    args = parser.parse_args()
    print(f"# codec speed: {args.seconds:g} s clip at {RATE} Hz, best of {args.repeats}, one core")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print()
    print("| path | channels | kbps | encode x real time | decode x real time |")
    print("|---|---:|---:|---:|---:|")
    with one_core():
        for spec in SPECS:
            t = measure(spec, args.seconds, args.repeats)
            speeds = f"{t.encode_x:.0f} | {t.decode_x:.0f}"
            print(f"| `{spec}` | {t.channels} | {t.kbps:.1f} | {speeds} |", flush=True)


if __name__ == "__main__":
    main()
