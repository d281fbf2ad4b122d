"""Which CPU runtime the models should run in: each candidate's speed beside eager PyTorch and
whether it gives the same answers on the evaluation split, both in one run.

Run: .venv/bin/python -m benchmarks.runtime_agreement [--data data/scenes]
     [--lossless data/lossless ../shared/data/kitchen20] [--candidates onnxruntime,...]
     [--quick]

A runtime is kept only if it agrees with eager fp32 on at least 99.5 % of the labels of the
evaluation split and moves no path's accuracy by more than 0.5 points; among those the fastest
wins. The ensemble is judged on the test split of a scene corpus coded through the evaluation
paths (``asc-train evaluate``'s), every clip on every path a label; the detector on held-out
lossless tracks (fit-detector's split, seed 0) as originals and through one common setting of
every codec family, its label being the file's lossy call at 0.5. Speed is the network alone at
a batch of 8 (the front end is the same torch code whatever runs the network), the candidates
timed in turn, best of ``--repeats``.

Candidates beside eager PyTorch:
- ``onnxruntime``: what the server runs by default (asc.runtimes: exported, checked, cached);
- ``onnxruntime-int8``: the same graph quantised by ONNX Runtime's own tools: static QDQ with
  per-channel weights, calibrated on 32 training clips, for the ensemble's convolutions;
  dynamic for the detector, whose LSTM ONNX Runtime quantises dynamically only;
- ``openvino``, ``openvino-bf16``: the same ONNX graph compiled by OpenVINO for the CPU, in
  float32 and with its bfloat16 precision hint (bfloat16 matrix work on CPUs that have
  instructions for it);
- ``torch-compile``: ``torch.compile`` (inductor) of the eager model; its compile time is shown.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asc.checkpoint import load
from asc.features import FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, cut_windows
from asc.runtimes import OnnxNetwork, OpenVinoNetwork, choose, export
from training.augment import UNCODED, CodedCache
from training.datasets import load_dataset
from training.detector_sources import lossless_set
from training.evaluate import coded_test_set
from training.fit_detector import load_mono
from training.fit_scene import clip_samples, compute_features

ENSEMBLE, DETECTOR = "models/ensemble.safetensors", "models/detector.safetensors"
SCENE_PATHS = "aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k"
DETECTOR_PATHS = "mp3:128k,aac:128k,he-aac:32k,opus:48k,vorbis:160k,sbc:bitpool=53,aptx"
CANDIDATES = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "torch-compile")
AGREEMENT, SHIFT = 0.995, 0.005  # the bar: labels kept, accuracy moved at most
Network = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class Candidate:
    name: str
    network: Network
    note: str = ""
    labels: dict[str, list[int]] = field(default_factory=dict)  # path -> label per item


def quantised(
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    calibration: torch.Tensor | None,
    threads: int,
) -> OnnxNetwork:
    """The model's ONNX graph in int8: static QDQ when calibration features are given,
    dynamic otherwise."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, features: torch.Tensor):
            self.items = iter([{"features": f[None].float().numpy()} for f in features])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(export(model, example, outputs))
        quant_pre_process(str(fp32), str(prepared))
        if calibration is None:
            quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
        else:
            quantize_static(
                str(prepared),
                str(int8),
                Reader(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        return OnnxNetwork(int8.read_bytes(), outputs, threads)


def candidates(
    names: list[str],
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    calibration: torch.Tensor | None,
    threads: int,
) -> list[Candidate]:
    """Eager first (the reference), then each candidate asked for, built and warmed."""
    cpu = torch.device("cpu")
    made = [Candidate("eager", model)]
    for name in names:
        started = time.perf_counter()
        if name == "onnxruntime":
            network = choose("onnxruntime", model, example, outputs, cpu, threads).network
        elif name == "onnxruntime-int8":
            network = quantised(model, example, outputs, calibration, threads)
        elif name in ("openvino", "openvino-bf16"):
            precision = "bf16" if name.endswith("bf16") else "f32"
            graph = export(model, example, outputs)
            network = OpenVinoNetwork(graph, outputs, threads, precision)
        elif name == "torch-compile":
            network = torch.compile(model)
            with torch.inference_mode():
                network(example)  # compiles here, not inside the timing
        else:
            raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
        made.append(Candidate(name, network, f"built in {time.perf_counter() - started:.0f} s"))
    return made


def best_rate(candidates: list[Candidate], batch: torch.Tensor, repeats: int) -> dict[str, float]:
    """Items per second of each network on ``batch``, timed in turn, best of ``repeats``."""
    best = {c.name: float("inf") for c in candidates}
    with torch.inference_mode():
        for c in candidates:
            c.network(batch)  # warm-up
        for _ in range(repeats):
            for c in candidates:
                started = time.perf_counter()
                c.network(batch)
                best[c.name] = min(best[c.name], time.perf_counter() - started)
    return {name: len(batch) / seconds for name, seconds in best.items()}


def judge(
    title: str, made: list[Candidate], truth: dict[str, list[int]], rates: dict[str, float]
) -> None:
    """One row per runtime: speed, labels equal to eager's, the largest accuracy shift."""
    reference = made[0].labels
    paths = list(reference)
    accuracy = {
        c.name: {p: float(np.mean(np.equal(c.labels[p], truth[p]))) for p in paths} for c in made
    }
    print(f"\n{title} ({sum(len(reference[p]) for p in paths)} labels over {len(paths)} paths)")
    print(
        "| runtime | items/s | ratio to eager | labels as eager | largest accuracy shift | kept |"
    )
    print("|---|---:|---:|---:|---|---|")
    faster = []
    for c in made:
        same = np.mean(np.concatenate([np.equal(c.labels[p], reference[p]) for p in paths]))
        shifts = {p: accuracy[c.name][p] - accuracy["eager"][p] for p in paths}
        worst = max(paths, key=lambda p: abs(shifts[p]))
        ratio = rates[c.name] / rates["eager"]
        ok = same >= AGREEMENT and abs(shifts[worst]) <= SHIFT
        verdict = "reference" if c.name == "eager" else ("yes" if ok else "no: answers differ")
        if ok and c.name != "eager":
            faster.append((ratio, c.name))
        print(
            f"| {c.name} | {rates[c.name]:.1f} | {ratio:.2f} | {100 * same:.2f} % | "
            f"{100 * shifts[worst]:+.1f} points (`{worst}`) | {verdict} |"
        )
    notes = [f"{c.name} {c.note}" for c in made if c.note]
    print(f"Built: {'; '.join(notes)}." if notes else "")
    if faster:
        ratio, name = max(faster)
        print(f"Fastest that agrees: {name}, {ratio:.2f}x eager.")


def ensemble_rows(args: argparse.Namespace) -> None:
    checkpoint = load(ENSEMBLE, expect_kind="scene_ensemble")
    model, cpu = checkpoint.model.eval(), torch.device("cpu")
    dataset = load_dataset(args.data)
    paths = SCENE_PATHS.split(",")[: 1 if args.quick else None]
    test = coded_test_set(
        dataset,
        paths,
        checkpoint.features,
        cpu,
        args.cache_dir,
        progress=False,
        max_clips_per_class=1 if args.quick else None,
    )
    extractor = FeatureExtractor(checkpoint.features)
    train = [c.path for c in dataset.split("train")[:: max(1, len(dataset.split("train")) // 32)]]
    calibration = compute_features(
        train[:32], extractor, clip_samples(dataset, extractor.config.sample_rate), cpu, False, ""
    )
    outputs = ("scores", "coarse_probs") if model.use_coarse else ("scores",)
    example = test.features[UNCODED][:2].float()
    made = candidates(args.candidates, model, example, outputs, calibration, args.threads)
    truth = {p: test.truth.tolist() for p in test.specs}
    with torch.inference_mode():
        for c in made:
            for p in test.specs:
                feats = test.features[p]
                c.labels[p] = [
                    int(k)
                    for i in range(0, len(feats), 8)
                    for k in c.network(feats[i : i + 8].float())["scores"].argmax(1)
                ]
    rates = best_rate(made, test.features[UNCODED][:8].float(), args.repeats)
    title = f"Compact ensemble, {len(test.clips)} test clips of {args.data}, 10 s clips"
    judge(title, made, truth, rates)


def detector_rows(args: argparse.Namespace) -> None:
    checkpoint = load(DETECTOR, expect_kind="lossy_detector")
    model = checkpoint.model.eval()
    rate = checkpoint.features.sample_rate
    window = int(WINDOW_SECONDS * rate)
    extractor = FeatureExtractor(checkpoint.features)
    found = lossless_set([Path(d) for d in args.lossless], 0)
    tracks = found.splits["test"][:: max(1, len(found.splits["test"]) // args.tracks)]
    paths = [UNCODED, *DETECTOR_PATHS.split(",")[: 1 if args.quick else None]]
    cache = CodedCache(args.cache_dir, rate=rate, channels=2)
    mapping = cache.ensure_pairs([(t, p) for t in tracks for p in paths], progress=False)
    outputs = ("lossy_prob", "family_probs")
    with torch.inference_mode():
        example = extractor(cut_windows(load_mono(tracks[0], rate), window)[:2])
    made = candidates(args.candidates, model, example, outputs, None, args.threads)
    truth = {p: [int(p != UNCODED)] * len(tracks) for p in paths}
    speed_batch = example[:0]
    with torch.inference_mode():
        for p in paths:
            for t in tracks:
                features = extractor(cut_windows(load_mono(mapping[(t, p)], rate), window))
                if speed_batch is None or len(speed_batch) < 8:
                    speed_batch = (
                        features if speed_batch is None else torch.cat([speed_batch, features])
                    )
                for c in made:
                    lossy = float(c.network(features)["lossy_prob"].mean())
                    c.labels.setdefault(p, []).append(int(lossy >= 0.5))
    rates = best_rate(made, speed_batch[:8], args.repeats)
    title = f"Lossy detector, {len(tracks)} held-out tracks, 2 s pieces"
    judge(title, made, truth, rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scenes", help="scene corpus (default: %(default)s)")
    parser.add_argument(
        "--lossless",
        nargs="+",
        default=["data/lossless", "../shared/data/kitchen20"],
        help="lossless track folders of the detector's split (default: %(default)s)",
    )
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        type=lambda s: [n for n in s.split(",") if n],
        help="runtimes beside eager (default: %(default)s)",
    )
    parser.add_argument("--models", default="ensemble,detector", help="default: %(default)s")
    parser.add_argument("--tracks", type=int, default=40, help="detector test tracks (default: 40)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    parser.add_argument("--cache-dir", default=".cache/coded", help="default: %(default)s")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one clip per class, one codec path, 2 detector tracks, ONNX Runtime only, one pass",
    )
    args = parser.parse_args()
    if args.quick:
        args.candidates, args.tracks, args.repeats = ["onnxruntime"], 2, 1
    torch.set_num_threads(args.threads)
    print(f"# {args.threads} threads, {platform.machine()}, torch {torch.__version__}")
    if "ensemble" in args.models:
        ensemble_rows(args)
    if "detector" in args.models:
        detector_rows(args)


if __name__ == "__main__":
    main()
