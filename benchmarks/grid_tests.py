"""What the codecs' grid tests cost beside the detector's network, per 10-second mono clip.

Run: .venv/bin/python -m benchmarks.grid_tests [--clips 4] [--threads 1] [--quick]
The server runs the grid tests (asc.codecs.grid_tests: SBC's, the MDCT codecs', MP3's and
Vorbis's short blocks') once per clip with the detector on; the network runs on every 2-second
piece of every window. All are timed here in one run, on the same generated clips, as CPU
seconds of this process: each test on each clip as sent losslessly and as a copy its test should
find (`sbc:bitpool=53`, `aac:128k`, `mp3:128k`, and `he-aac:64k`, whose core the MDCT test looks
for at half the rate only where the full rate shows no grid, as for a lossless clip), and the
network (features and model, eager PyTorch) on the clip's pieces. The server runs the tests
cheapest first and stops at the first that finds a grid, so all four cost most on a clip none
finds one in; the last line holds that against the CPU the server's wait for a test allows
(server/grid_runner.py).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from asc.checkpoint import load
from asc.codecs import roundtrip
from asc.codecs.grid_tests import grid_call
from asc.codecs.mdct_trace import mdct_trace
from asc.codecs.mp3_trace import mp3_trace
from asc.codecs.sbc_trace import sbc_trace
from asc.codecs.vorbis_short_blocks import short_block_trace
from asc.features import FeatureExtractor
from asc.models.detector import WINDOW_SECONDS
from asc.signals import full_band_clip
from server.grid_runner import GRID_TEST_CPU_SECONDS
from training.fit_detector import file_scores

RATE = 44100


def timed(work):
    """(CPU seconds of this process, ``work()``'s value)."""
    started = time.process_time()
    value = work()
    return time.process_time() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=1, help="default: %(default)s")
    parser.add_argument("--checkpoint", default="models/detector.safetensors")
    parser.add_argument("--quick", action="store_true", help="one clip: a check that it runs")
    args = parser.parse_args()
    args.clips = 1 if args.quick else args.clips
    torch.set_num_threads(args.threads)
    threadpool_limits(1, user_api="blas")  # as the server runs the tests (server/grid_runner.py)
    checkpoint = load(args.checkpoint, expect_kind="lossy_detector")
    model = checkpoint.model.eval()
    extractor = FeatureExtractor(checkpoint.features)
    window = int(WINDOW_SECONDS * RATE)
    clips = [
        full_band_clip(RATE, seconds=10.0, channels=1, seed=s)[:, 0] for s in range(args.clips)
    ]
    sbc = [roundtrip(c, RATE, "sbc:bitpool=53") for c in clips]
    aac = [np.round(roundtrip(c, RATE, "aac:128k") * 32768) / 32768 for c in clips]  # as stored
    he_aac = [np.round(roundtrip(c, RATE, "he-aac:64k") * 32768) / 32768 for c in clips]
    mp3 = [np.round(roundtrip(c, RATE, "mp3:128k") * 32768) / 32768 for c in clips]
    file_scores(model, extractor, [torch.from_numpy(clips[0])], torch.device("cpu"), window)

    def network(c: np.ndarray) -> None:
        with torch.inference_mode():
            file_scores(model, extractor, [torch.from_numpy(c)], torch.device("cpu"), window)

    tests = {
        "SBC test": lambda c: sbc_trace(c, RATE).lossy_probability,
        "MDCT test": lambda c: mdct_trace(c, RATE).lossy_probability,
        "MP3 test": lambda c: mp3_trace(c, RATE).lossy_probability,
        "Vorbis short-block test": lambda c: short_block_trace(c, RATE).lossy_probability,
        "all four, as the server runs them": lambda c: grid_call(c, RATE).probability,
    }
    cases = [
        ("SBC test", "lossless clip", clips),
        ("SBC test", "sbc:bitpool=53 copy", sbc),
        ("MDCT test", "lossless clip", clips),
        ("MDCT test", "aac:128k copy", aac),
        ("MDCT test", "he-aac:64k copy (found at half the rate)", he_aac),
        ("MP3 test", "lossless clip", clips),
        ("MP3 test", "mp3:128k copy", mp3),
        ("Vorbis short-block test", "lossless clip", clips),
        ("all four, as the server runs them", "lossless clip", clips),
        ("all four, as the server runs them", "sbc:bitpool=53 copy", sbc),
        ("all four, as the server runs them", "mp3:128k copy", mp3),
    ]
    grid = {
        f"{test}, {what}": [timed(lambda c=c, t=tests[test]: t(c)) for c in waves]
        for test, what, waves in cases
    }
    base = float(np.mean([timed(lambda c=c: network(c))[0] for c in clips]))
    print(
        f"# {args.clips} clips of 10 s, mono {RATE} Hz, {args.threads} torch thread(s), "
        f"{platform.machine()}; CPU seconds of this process"
    )
    print("| work per clip | CPU ms (mean) | ratio to the network | called coded |")
    print("|---|---:|---:|---:|")
    print(f"| detector network, every piece | {1000 * base:.0f} | 1.00 | – |")
    for name, runs in grid.items():
        mean = float(np.mean([seconds for seconds, _ in runs]))
        called = sum(p >= 0.5 for _, p in runs)
        print(f"| {name} | {1000 * mean:.0f} | {mean / base:.2f} | {called} of {len(runs)} |")
    dearest = max(s for s, _ in grid["all four, as the server runs them, lossless clip"])
    print(
        f"\nall four on a lossless clip, the dearest of {args.clips}: {1000 * dearest:.0f} ms, "
        f"{dearest / GRID_TEST_CPU_SECONDS:.2f} of the {1000 * GRID_TEST_CPU_SECONDS:.0f} ms a "
        "server's wait for a window's test allows (GRID_TEST_CPU_SECONDS; goal: below 1)"
    )


if __name__ == "__main__":
    main()
