"""What decoding ClassifyClip's files in a worker process costs, against decoding in-process.

Run: .venv/bin/python -m benchmarks.decode_sandbox [--codecs pcm16,flac,mp3:64k] [--rounds 3]
     [--quick]

The ten ``samples/`` recordings (10 s, 44.1 kHz) are coded whole through each codec, then
decoded to the model's rate by ``server.bounded_decode.decode_clip``, once in this process and
once through ``server.decode_sandbox.DecodeSandbox`` (a worker process, the bytes over a pipe
and the samples back), alternated clip by clip so a drift of the machine hits both alike.
Printed per codec: milliseconds per clip (wall clock, median over rounds) each way, their
ratio, and whether both gave the same samples; and, once, what starting a worker costs (its
first call minus a warm call).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from asc.codecs.clip import encode
from asc.codecs.spec import parse_spec
from server.bounded_decode import decode_clip
from server.decode_sandbox import DecodeSandbox

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MODEL_RATE = 44100
MAX_SECONDS = 120.0


def _files(codec: str) -> list[bytes]:
    files = []
    for path in sorted(SAMPLES.glob("*.flac")):
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        files.append(encode(audio, rate, codec))
    return files


async def _timed(sandbox: DecodeSandbox, data: bytes, raw: str | None) -> tuple[float, float, bool]:
    """(in-process ms, in-worker ms, same samples) for one file; ``raw`` names a codec FFmpeg
    cannot probe (sbc, aptx), as a ClassifyClip request must."""
    request = {"codec": raw, "raw_rate": 44100 if raw else 0}
    started = time.perf_counter()
    here = decode_clip(data, MODEL_RATE, "bench", MAX_SECONDS, **request)
    here_ms = 1000 * (time.perf_counter() - started)
    started = time.perf_counter()
    there = await sandbox.decode(
        data, round((MAX_SECONDS + 1) * MODEL_RATE), rate=MODEL_RATE, clip_id="bench",
        max_seconds=MAX_SECONDS, **request,
    )  # fmt: skip
    there_ms = 1000 * (time.perf_counter() - started)
    return here_ms, there_ms, bool(np.array_equal(here.mono, there.mono))


def _raw(codec: str) -> str | None:
    last = parse_spec(codec).stages[-1].name
    return last if last in ("sbc", "aptx") else None


async def main_async(codecs: list[str], rounds: int) -> None:
    pool = ThreadPoolExecutor(1)
    sandbox = DecodeSandbox(1, pool)
    first = _files(codecs[0])[0]
    _, cold, _ = await _timed(sandbox, first, _raw(codecs[0]))
    _, warm, _ = await _timed(sandbox, first, _raw(codecs[0]))
    print(f"worker start: {cold - warm:.0f} ms (first call {cold:.0f} ms, a warm one {warm:.0f})")
    print("\n| codec | in-process ms/clip | worker ms/clip | worker / in-process | same samples |")
    print("|---|---:|---:|---:|---|")
    for codec in codecs:
        files = _files(codec)
        here, there, same = [], [], True
        for _ in range(rounds):
            runs = [await _timed(sandbox, data, _raw(codec)) for data in files]
            here.append(sum(r[0] for r in runs) / len(runs))
            there.append(sum(r[1] for r in runs) / len(runs))
            same = same and all(r[2] for r in runs)
        h, t = statistics.median(here), statistics.median(there)
        print(f"| `{codec}` | {h:.1f} | {t:.1f} | {t / h:.2f} | {'yes' if same else 'NO'} |")
    sandbox.close()
    pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", default="pcm16,flac,mp3:64k,aac:64k,opus:32k,sbc:64k,aptx")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per codec (default 3)")
    parser.add_argument("--quick", action="store_true", help="flac and mp3:64k, one round")
    args = parser.parse_args()
    if args.quick:
        args.codecs, args.rounds = "flac,mp3:64k", 1
    asyncio.run(main_async(args.codecs.split(","), args.rounds))


if __name__ == "__main__":
    main()
