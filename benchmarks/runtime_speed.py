"""Model-alone clips per second in each CPU runtime, side by side in one run: the compact
ensemble (10 s windows) and the lossy detector (2 s pieces), front end included.

Run: .venv/bin/python -m benchmarks.runtime_speed [--threads 2] [--repeats 5]
     [--runtimes onnxruntime,openvino]
Each runtime runs the server's own loaders (``server.inference``), front end included, on the
same batches as eager PyTorch, the runtimes timed in turn, best of ``--repeats``; a row gives the
ratio to eager and, against eager's answers on those batches, the largest probability difference
and the share of equal labels (labels of the evaluation split: benchmarks.runtime_agreement).
``as`` is how the runtime ran (OpenVINO in bf16 where the CPU has bfloat16 instructions).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from server.inference import DetectorRunner, SceneRunner

ENSEMBLE, DETECTOR = "models/ensemble.safetensors", "models/detector.safetensors"
RUNTIMES = ("onnxruntime", "openvino")


def compare(kind: str, runners: dict, waves: list[np.ndarray], repeats: int) -> list[str]:
    """One row per runtime: clips per second, the ratio to eager, and its answers against
    eager's (largest probability difference, share of equal labels)."""
    # The first pass is the warm-up too (first-pass allocations, a runtime's first plan).
    outputs = {name: runner(waves) for name, runner in runners.items()}
    seconds = {name: float("inf") for name in runners}
    for _ in range(repeats):  # in turn, so a slow moment of the machine hits every runtime
        for name, runner in runners.items():
            start = time.perf_counter()
            runner(waves)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    rows = []
    for name in runners:
        pairs = list(zip(outputs["eager"], outputs[name], strict=True))
        if kind == "ensemble":
            diff = max(float(np.abs(a.scores - b.scores).max()) for a, b in pairs)
            same = np.mean([a.scores.argmax() == b.scores.argmax() for a, b in pairs])
        else:
            diff = max(abs(a.lossy - b.lossy) for a, b in pairs)
            same = np.mean([(a.lossy > 0.5) == (b.lossy > 0.5) for a, b in pairs])
        rate = len(waves) / seconds[name]
        ratio = seconds["eager"] / seconds[name]
        note = runners[name].runtime.note.split(" (")[0]
        rows.append(
            f"| {kind} | {len(waves)} | {name} | {note} | {rate:.1f} | {ratio:.2f} | {diff:.1e} "
            f"| {100 * same:.1f} % |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    parser.add_argument(
        "--runtimes", default=",".join(RUNTIMES),
        help="beside eager, comma-separated (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="batch 1 only, one timed pass")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    names = ["eager", *(n for n in args.runtimes.split(",") if n and n != "eager")]
    scene = {n: SceneRunner(ENSEMBLE, cpu, n) for n in names}
    detector = {n: DetectorRunner(DETECTOR, cpu, n) for n in names}
    rng = np.random.default_rng(0)
    print(f"# {args.threads} threads, {platform.machine()}, torch {torch.__version__}")
    print("| model | batch | runtime | as | clips/s | ratio to eager | largest difference | same |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for batch in (1,) if args.quick else (1, 8):
        waves = [(0.1 * rng.standard_normal(441000)).astype(np.float32) for _ in range(batch)]
        print("\n".join(compare("ensemble", scene, waves, args.repeats)))
    for batch in (1,) if args.quick else (1, 8, 32):
        pieces = [(0.1 * rng.standard_normal(88200)).astype(np.float32) for _ in range(batch)]
        print("\n".join(compare("detector", detector, pieces, args.repeats)))


if __name__ == "__main__":
    main()
