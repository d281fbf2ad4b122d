"""Scene ensemble on a GPU: fp32 eager against bf16 autocast and torch.compile, side by side.

Run: python -m benchmarks.gpu_ensemble [--preset paper|compact] [--batch 64] [--clips 200]

For each execution path it prints ten-second clips per second at the given batch size, the
ratio to fp32 eager, and how often its predicted class matches fp32's on an evaluation set of
generated clips (seeded, every class in turn), with the largest probability difference. The
server runs fp32 eager on a GPU: on one H200 the compact ensemble lost speed in bfloat16 and
gained 1.15x compiled (docs/performance.md, On a GPU).
The paper preset has no trained checkpoint here, so it runs with untrained weights (speed and
numerical agreement only); the compact preset runs the shipped checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from asc.labels import DCASE_CLASSES
from benchmarks.loopback import RATE, scene_runner
from server.inference import pick_device
from training.corpora import synth_clip


def evaluation_set(count: int, seconds: float = 10.0) -> torch.Tensor:
    """Generated clips of every class (seeded, so every run sees the same set; cached)."""
    cache = Path(tempfile.gettempdir()) / f"asc-eval-{count}-{seconds:g}.npy"
    if cache.exists():
        return torch.from_numpy(np.load(cache))
    clips = []
    for i in range(count):
        rng = np.random.default_rng([424242, i])
        scene = DCASE_CLASSES[i % len(DCASE_CLASSES)]
        clips.append(synth_clip(scene, "a", rng, seconds=seconds, rate=RATE))
    array = np.stack(clips).astype(np.float32)
    np.save(cache, array)
    return torch.from_numpy(array)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` seconds for one batch, synchronised with the GPU."""
    for _ in range(3):
        fn(batch)  # warm-up (and compilation)
    sync(batch.device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        sync(batch.device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", help="default: %(default)s")
    parser.add_argument("--batch", type=int, default=64, help="default: %(default)s")
    parser.add_argument(
        "--clips", type=int, default=200, help="evaluation clips (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="default: %(default)s")
    parser.add_argument("--device", default="cuda", help="default: %(default)s")
    args = parser.parse_args()
    device = pick_device(args.device)
    runner = scene_runner(args.preset, device)
    model, extractor = runner.model, runner.extractor

    def eager(wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(extractor(wave))["scores"].float()

    def bf16(wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return model(extractor(wave))["scores"].float()

    compiled_model = torch.compile(model)

    def compiled_bf16(wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return compiled_model(extractor(wave))["scores"].float()

    def compiled(wave: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled_model(extractor(wave))["scores"].float()

    paths = {
        "fp32 eager": eager,
        "bf16 autocast": bf16,
        "fp32 torch.compile": compiled,
        "bf16 torch.compile": compiled_bf16,
    }
    clips = evaluation_set(args.clips).to(device)
    batch = clips[: args.batch]
    if len(batch) < args.batch:
        batch = batch.repeat((args.batch + len(batch) - 1) // len(batch), 1)[: args.batch]
    reference = torch.cat([eager(clips[i : i + 64]) for i in range(0, len(clips), 64)])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(
        f"# {args.preset} ensemble ({sum(p.numel() for p in model.parameters()):,} parameters) "
        f"on {where}, batch {args.batch}, 10 s clips; agreement on {len(clips)} generated clips"
    )
    print("| path | clips/s | ratio to fp32 eager | same class as fp32 | max prob diff |")
    print("|---|---:|---:|---:|---:|")
    base = None
    for name, fn in paths.items():
        seconds = timed(fn, batch, args.repeats)
        rate = args.batch / seconds
        base = base or rate
        scores = torch.cat([fn(clips[i : i + 64]) for i in range(0, len(clips), 64)])
        agree = (scores.argmax(1) == reference.argmax(1)).float().mean().item()
        diff = scores / scores.sum(1, keepdim=True) - reference / reference.sum(1, keepdim=True)
        print(
            f"| {name} | {rate:.0f} | {rate / base:.2f}x | {agree:.3f} | "
            f"{diff.abs().max().item():.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
