"""Clips per second through the full scene ensemble (features + all sub-models) on this CPU.

Run: .venv/bin/python benchmarks/ensemble_speed.py [--preset compact] [--threads 2]
The compact preset's target is at least 20 ten-second clips per second on two CPU cores; the
table prints each batch size's rate and its ratio to that target, measured in one run.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from asc.features import LOGMEL, FeatureExtractor
from asc.models.scene import SceneEnsemble, count_parameters

TARGET = 20.0
FINE = [f"class{i}" for i in range(10)]


def clips_per_second(model, extractor, batch: int, seconds: float, repeats: int) -> float:
    wave = torch.randn(batch, int(seconds * LOGMEL.sample_rate)) * 0.1
    with torch.inference_mode():
        model(extractor(wave))  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(extractor(wave))
            best = min(best, time.perf_counter() - start)
    return batch / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="compact", help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SceneEnsemble(FINE, ["a", "b", "c"], [i % 3 for i in range(10)], args.preset).eval()
    extractor = FeatureExtractor(LOGMEL)
    print(
        f"# {args.preset} ensemble, {count_parameters(model):,} parameters, "
        f"{args.threads} threads, {platform.machine()}, torch {torch.__version__}"
    )
    print("| batch | clips/s (10 s clips) | ratio to the 20 clips/s target |")
    print("|---:|---:|---:|")
    for batch in (1, 8, 32):
        rate = clips_per_second(model, extractor, batch, 10.0, args.repeats)
        print(f"| {batch} | {rate:.1f} | {rate / TARGET:.2f} |")


if __name__ == "__main__":
    main()
