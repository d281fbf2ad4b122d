"""The loaded models and their batched forward passes, as the batchers call them.

Each runner takes a list of mono float32 waveforms at the model's rate and returns one result
per item. Waveforms of different lengths (a short clip's only window, another stream's window
size) are grouped by length so every forward pass sees one tensor shape.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asc.checkpoint import Checkpoint, load, read_metadata
from asc.codecs.registry import CODEC_FAMILIES
from asc.features import FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, window_starts
from asc.runtimes import Runtime, choose


def pick_device(name: str) -> torch.device:
    """``auto`` is the first GPU when CUDA works, else the CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def file_version(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256: names exactly which weights answered."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@dataclass
class SceneOutput:
    scores: np.ndarray  # fused posterior over the fine classes, summing to 1
    coarse: np.ndarray  # coarse-group probabilities (empty for a fine-only model)


@dataclass
class DetectorOutput:
    lossy: float
    families: np.ndarray  # probabilities over CODEC_FAMILIES


# On a CPU, passes larger than this run slower per window (the full-resolution convolutions
# leave the cache; benchmarks/ensemble_speed.py prints the curve), so a big batch is cut up.
CPU_PASS = 8
# ... and a pass holds at most this much audio, CPU_PASS default 10 s windows: a pass cannot be
# interrupted, so this bounds how long a window that just arrived waits behind another's pass.
CPU_PASS_SECONDS = CPU_PASS * 10.0


class NonFiniteOutput(ValueError):
    """A forward pass produced NaN or infinite scores (the batcher then finds the item)."""


class LoadedModel:
    """A checkpoint on a device with its feature extractor and identity."""

    outputs: tuple[str, ...] = ()  # what the runners read from a forward pass
    example_seconds = 10.0  # the input length the runtime is exported and checked at
    # What --runtime auto tries on a CPU, in order: the fastest that kept eager's labels on the
    # evaluation split in benchmarks/runtime_agreement.py first.
    auto_runtimes: tuple[str, ...] = ("onnxruntime",)

    def __init__(
        self,
        path: str | Path,
        kind: str,
        device: torch.device,
        runtime: str = "eager",
        passes: int = 1,
    ):
        self.path = Path(path)
        self.checkpoint: Checkpoint = load(self.path, expect_kind=kind, device=str(device))
        self.metadata = read_metadata(self.path)
        self.device = device
        self.model = self.checkpoint.model
        self.extractor = FeatureExtractor(self.checkpoint.features).to(device)
        self.rate = self.checkpoint.features.sample_rate
        self.model_id = str(self.checkpoint.extra.get("model_id") or self.path.stem)
        self.version = file_version(self.path)
        cpu = device.type == "cpu"
        self.max_pass: int | None = CPU_PASS if cpu else None  # read by the batcher
        self.max_pass_samples: int | None = int(CPU_PASS_SECONDS * self.rate) if cpu else None
        # Passes the batcher may run at once (read by it): on a GPU one, which has it to itself.
        self.passes = max(1, passes) if cpu else 1
        self.warmed = False  # one pass of the largest size has run (server.service.warm_up)
        self.runtime: Runtime = self._runtime(runtime)
        # Told the CPU time of each pass's front end and network (the service counts them).
        self.on_stage: Callable[[str, float], None] | None = None

    def _runtime(self, name: str) -> Runtime:
        example = torch.from_numpy(
            0.1
            * np.random.default_rng(0).standard_normal((2, int(self.example_seconds * self.rate)))
        ).float()
        with torch.no_grad():  # not inference mode: the exporter traces through these
            features = self.extractor(example.to(self.device))
        key = f"{self.checkpoint.kind}-{self.version}"
        outputs = self.output_names()
        return choose(
            name, self.model, features, outputs, self.device, None, key, self.auto_runtimes,
            self.passes,
        )  # fmt: skip

    def output_names(self) -> tuple[str, ...]:
        return self.outputs

    def metadata_json(self) -> str:
        return json.dumps(self.metadata, sort_keys=True)

    def forward(self, waves: list[np.ndarray], eager: bool = False):
        """(indices, model output) per forward pass; equal lengths batched, CPU passes capped.
        ``eager`` runs the PyTorch model itself, whatever the runtime."""
        max_pass = CPU_PASS if self.device.type == "cpu" else None
        network = self.model if eager else self.runtime.network
        for indices in _passes(waves, max_pass):
            started = time.thread_time()
            batch = torch.from_numpy(np.stack([waves[i] for i in indices])).to(self.device)
            features = self.extractor(batch)
            featured = time.thread_time()
            result = network(features)
            if self.on_stage is not None:
                self.on_stage("features", featured - started)
                self.on_stage("model", time.thread_time() - featured)
            yield indices, result


class SceneRunner(LoadedModel):
    # OpenVINO ran fastest with eager's labels kept (bfloat16: 99.9 % of them, no path moved by
    # more than 0.5 points; float32: all); the detector's bfloat16 did not keep them and its
    # float32 only tied ONNX Runtime, so the detector keeps the default order.
    auto_runtimes = ("openvino", "onnxruntime")

    def __init__(
        self, path: str | Path, device: torch.device, runtime: str = "eager", passes: int = 1
    ):
        super().__init__(path, "scene_ensemble", device, runtime, passes)
        self.fine_classes: list[str] = list(self.model.fine_classes)
        self.coarse_classes: list[str] = (
            list(self.model.coarse_classes) if self.model.use_coarse else []
        )
        self._shortest: int | None = None

    def output_names(self) -> tuple[str, ...]:
        return ("scores", "coarse_probs") if self.model.use_coarse else ("scores",)

    def shortest_input(self, most_seconds: float = 2.0) -> int:
        """The fewest samples the ensemble takes, measured by bisection at start-up.

        The front end's frames and the networks' pooling set it (7168 samples, 0.16 s, for the
        shipped checkpoint); anything shorter makes the forward pass raise, so the service
        refuses such clips at the door instead of letting them into a batch.
        """
        if self._shortest is not None:
            return self._shortest
        rng = np.random.default_rng(0)

        def takes(n: int) -> bool:  # the PyTorch model's own limit, whatever the runtime
            try:
                self([(0.1 * rng.standard_normal(n)).astype(np.float32)], eager=True)
            except Exception:
                return False
            return True

        lo, hi = 1, int(most_seconds * self.rate)
        if not takes(hi):
            raise RuntimeError(f"{self.path}: the ensemble refuses {most_seconds:g} s of audio")
        while lo < hi:
            mid = (lo + hi) // 2
            if takes(mid):
                hi = mid
            else:
                lo = mid + 1
        self._shortest = lo
        return lo

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray], eager: bool = False) -> list[SceneOutput]:
        out: list[SceneOutput | None] = [None] * len(waves)
        for indices, result in self.forward(waves, eager):
            scores = result["scores"]
            scores = (scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)).float().cpu()
            coarse = result.get("coarse_probs")
            coarse = coarse.float().cpu() if coarse is not None else None
            _check_finite(scores, coarse)
            for row, i in enumerate(indices):
                out[i] = SceneOutput(
                    scores=scores[row].numpy(),
                    coarse=coarse[row].numpy() if coarse is not None else np.zeros(0, np.float32),
                )
        return out  # type: ignore[return-value]


class DetectorRunner(LoadedModel):
    """The lossy detector on 2-second pieces; a window's score is the mean over its pieces."""

    outputs = ("lossy_prob", "family_probs")
    example_seconds = WINDOW_SECONDS

    def __init__(
        self, path: str | Path, device: torch.device, runtime: str = "eager", passes: int = 1
    ):
        super().__init__(path, "lossy_detector", device, runtime, passes)
        self.families: list[str] = list(CODEC_FAMILIES)
        self.piece = int(WINDOW_SECONDS * self.rate)

    def pieces(self, wave: np.ndarray) -> list[np.ndarray]:
        """50 %-overlapping 2 s pieces, as in training; a short wave is zero-padded to one."""
        if len(wave) < self.piece:
            wave = np.pad(wave, (0, self.piece - len(wave)))
        return [wave[s : s + self.piece] for s in window_starts(len(wave), self.piece)]

    @torch.inference_mode()
    def __call__(self, pieces: list[np.ndarray]) -> list[DetectorOutput]:
        out: list[DetectorOutput | None] = [None] * len(pieces)
        for indices, result in self.forward(pieces):
            lossy = result["lossy_prob"].float().cpu()
            families = result["family_probs"].float().cpu()
            _check_finite(lossy, families)
            lossy, families = lossy.numpy(), families.numpy()
            for row, i in enumerate(indices):
                out[i] = DetectorOutput(float(lossy[row]), families[row])
        return out  # type: ignore[return-value]


def _check_finite(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and not bool(torch.isfinite(t).all()):
            raise NonFiniteOutput("the model produced non-finite scores")


def _passes(waves: list[np.ndarray], max_pass: int | None) -> list[list[int]]:
    """Indices per forward pass: equal lengths together, at most ``max_pass`` per pass."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, wave in enumerate(waves):
        groups[len(wave)].append(i)
    size = max_pass or len(waves)
    return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]
