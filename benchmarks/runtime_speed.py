"""Model-alone clips per second in each CPU runtime, side by side in one run: the compact
ensemble (10 s windows) and the lossy detector (2 s pieces), front end included.

Run: .venv/bin/python -m benchmarks.runtime_speed [--threads 2] [--repeats 5]
Each row times eager PyTorch and ONNX Runtime on the same batches, alternating, and prints the
ratio; the agreement columns give the largest probability difference and the share of equal
labels on those batches (labels of the evaluation split: benchmarks.runtime_agreement).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from server.inference import DetectorRunner, SceneRunner

ENSEMBLE, DETECTOR = "models/ensemble.safetensors", "models/detector.safetensors"


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-pass allocations and, for ONNX Runtime, its graph's first plan
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def compare(kind: str, runners: dict, waves: list[np.ndarray], repeats: int) -> str:
    outputs = {name: runner(waves) for name, runner in runners.items()}
    times = {name: best_seconds(lambda r=r: r(waves), repeats) for name, r in runners.items()}
    pairs = list(zip(outputs["eager"], outputs["onnxruntime"], strict=True))
    if kind == "ensemble":
        diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in pairs)
        same = np.mean([a.scores.argmax() == b.scores.argmax() for a, b in pairs])
    else:
        diff = max(abs(a.lossy - b.lossy) for a, b in pairs)
        same = np.mean([(a.lossy > 0.5) == (b.lossy > 0.5) for a, b in pairs])
    rate = {name: len(waves) / t for name, t in times.items()}
    return (
        f"| {kind} | {len(waves)} | {rate['eager']:.1f} | {rate['onnxruntime']:.1f} | "
        f"{rate['onnxruntime'] / rate['eager']:.2f} | {diff:.1e} | {100 * same:.1f} % |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, one timed pass")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    scene = {n: SceneRunner(ENSEMBLE, cpu, n) for n in ("eager", "onnxruntime")}
    detector = {n: DetectorRunner(DETECTOR, cpu, n) for n in ("eager", "onnxruntime")}
    rng = np.random.default_rng(0)
    print(f"# {args.threads} threads, {platform.machine()}, torch {torch.__version__}")
    print("| model | batch | eager /s | ONNX Runtime /s | ratio | largest difference | same |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for batch in (1,) if args.quick else (1, 8):
        waves = [(0.1 * rng.standard_normal(441000)).astype(np.float32) for _ in range(batch)]
        print(compare("ensemble", scene, waves, args.repeats))
    for batch in (1,) if args.quick else (1, 8, 32):
        pieces = [(0.1 * rng.standard_normal(88200)).astype(np.float32) for _ in range(batch)]
        print(compare("detector", detector, pieces, args.repeats))


if __name__ == "__main__":
    main()
