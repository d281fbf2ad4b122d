"""Where a model's forward pass runs on a CPU: eager PyTorch, ONNX Runtime or OpenVINO.

The checkpoint stays the one format (safetensors + metadata); an ONNX graph is derived from the
loaded model in memory when a server or an evaluation starts, so there is nothing second to
ship or to drift. Both runtimes run that graph several times faster than eager PyTorch on the
same threads, and their threads sleep rather than spin when the cores are busy with decoding
(eager PyTorch's OpenMP threads stall each other when the server oversubscribes its cores).
Which one a model takes by default is measured, not assumed: ``benchmarks/runtime_agreement.py``
times each beside eager and keeps the fastest that gives eager's labels on the evaluation split.
That is OpenVINO for the scene ensemble (in bfloat16 where the CPU has bfloat16 instructions,
else in float32, which also beat ONNX Runtime there) and ONNX Runtime for the detector (its
bfloat16 answers moved a path by more than the bar allows, and OpenVINO's float32 only tied);
``--runtime eager`` is always there to fall back to.

Every derived network is checked against the eager model on a random batch before it is used:
a runtime that disagrees is refused, naming the largest difference, instead of serving
different answers. Exporting takes seconds, so a graph is kept in a cache folder
(``ASC_ONNX_CACHE``, default ``~/.cache/asc-stream/onnx``) under a key of the checkpoint's
bytes and the exporter's versions; a cached graph is checked like a fresh one, and exported
again if it fails.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("auto", "eager", "onnxruntime", "openvino")
# Largest absolute difference in any output probability allowed between runtimes (float32
# kernels sum in a different order; anything near a label flip is far above this).
TOLERANCE = 1e-4
# OpenVINO's bfloat16 matrix work moves probabilities by about 1e-3; a broken graph by far more.
# Whether labels hold is measured on the evaluation split (benchmarks/runtime_agreement.py).
BF16_TOLERANCE = 2e-2
OPSET = 17
Network = Callable[[torch.Tensor], dict[str, torch.Tensor]]


class RuntimeChoiceError(RuntimeError):
    """A runtime that cannot run here or disagrees with the eager model."""


@dataclass
class Runtime:
    """The forward pass a loaded model runs through, and how it was chosen."""

    name: str
    network: Network
    note: str  # one line for the server's log: why this runtime, how long the export took


def _installed(*modules: str) -> bool:
    """Found without importing: onnx alone takes about a second to import, and a server that
    loads a cached graph never needs it (only the exporter writes through it)."""
    return all(importlib.util.find_spec(name) is not None for name in modules)


def onnxruntime_available() -> bool:
    return _installed("onnx", "onnxruntime")


def openvino_available() -> bool:
    return _installed("onnx", "openvino")


def openvino_bf16() -> bool:
    """Whether OpenVINO runs bfloat16 matrix work on this CPU (AVX-512 BF16 or AMX)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def choose(
    name: str,
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    device: torch.device,
    threads: int | None = None,
    cache_key: str | None = None,
    auto: tuple[str, ...] = ("onnxruntime",),
    passes: int = 1,
) -> Runtime:
    """The runtime ``name`` asks for. ``auto`` tries the model's own order of runtimes on a
    CPU (the fastest that kept its labels in benchmarks/runtime_agreement.py first) and takes
    the first that is installed, builds and agrees with the eager model, else eager PyTorch
    (always on a GPU). ``passes``: forward passes the caller may run at once, each on
    ``threads`` threads."""
    if name not in RUNTIMES:
        raise RuntimeChoiceError(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    if name == "eager":
        return Runtime("eager", model, "eager PyTorch")
    if device.type != "cpu":
        if name != "auto":
            raise RuntimeChoiceError(f"--runtime {name} runs on the CPU only, not on {device}")
        return Runtime("eager", model, f"eager PyTorch (on {device})")
    if name != "auto":
        return BUILDERS[name](model, example, outputs, threads, cache_key, passes)
    skipped = []
    for candidate in auto:
        try:
            return BUILDERS[candidate](model, example, outputs, threads, cache_key, passes)
        except RuntimeChoiceError as e:
            skipped.append(str(e))
    return Runtime("eager", model, f"eager PyTorch ({'; '.join(skipped)})")


def onnx_runtime(
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    threads: int | None = None,
    cache_key: str | None = None,
    passes: int = 1,
) -> Runtime:
    """``model`` (batch and time axes free) in ONNX Runtime, once checked against it. Its
    session runs concurrent calls as they come (``passes`` needs nothing of it)."""
    return graph_runtime(
        "onnxruntime", "ONNX Runtime", onnxruntime_available(), OnnxNetwork, TOLERANCE,
        model, example, outputs, threads, cache_key,
    )  # fmt: skip


def openvino_runtime(
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    threads: int | None = None,
    cache_key: str | None = None,
    passes: int = 1,
) -> Runtime:
    """``model``'s ONNX graph compiled by OpenVINO, in bfloat16 where the CPU has it, once
    checked against the eager model; with a stream of ``threads`` threads per pass."""
    precision = "bf16" if openvino_bf16() else "f32"

    def network(graph: bytes, outputs: tuple[str, ...], threads: int) -> Network:
        return OpenVinoNetwork(graph, outputs, threads, precision, passes)

    return graph_runtime(
        "openvino", f"OpenVINO {precision}", openvino_available(), network,
        BF16_TOLERANCE if precision == "bf16" else TOLERANCE,
        model, example, outputs, threads, cache_key,
    )  # fmt: skip


def graph_runtime(
    name: str,
    label: str,
    available: bool,
    network: Callable[[bytes, tuple[str, ...], int], Network],
    tolerance: float,
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    threads: int | None,
    cache_key: str | None,
) -> Runtime:
    """What every runtime that runs the exported ONNX graph shares: refused by name when its
    package is missing, built on ``threads`` (torch's count by default), checked, timed."""
    if not available:
        raise RuntimeChoiceError(
            f"{label}: onnx or its runtime is not installed (the server extra has both)"
        )
    start = time.perf_counter()
    count = threads or torch.get_num_threads()

    def build(graph: bytes) -> Network:
        return network(graph, outputs, count)

    built, how, worst = checked_graph(label, build, tolerance, model, example, outputs, cache_key)
    return Runtime(name, built, _note(label, how, start, worst))


def checked_graph(
    label: str,
    build: Callable[[bytes], Network],
    tolerance: float,
    model: torch.nn.Module,
    example: torch.Tensor,
    outputs: tuple[str, ...],
    cache_key: str | None,
) -> tuple[Network, str, float]:
    """A network built from the cached graph if it still agrees, else from a fresh export
    (then cached); refused if even that disagrees. Returns it, how it was had, and the
    largest difference."""
    cached = graph_path(cache_key, example, outputs) if cache_key else None
    if cached is not None and cached.is_file():
        try:
            network = build(cached.read_bytes())
            worst = disagreement(model, network, example, outputs)
            if worst <= tolerance:
                return network, "cached graph", worst
        except Exception:  # a damaged or foreign file: export afresh below
            pass
    try:  # an exporter that cannot load (onnx is only found, not imported, beforehand) too
        graph = export(model, example, outputs)
        network = build(graph)
        worst = disagreement(model, network, example, outputs)
    except Exception as e:  # a runtime that cannot compile or run this graph here
        raise RuntimeChoiceError(f"{label} cannot run the model here: {e}") from e
    if worst > tolerance:
        raise RuntimeChoiceError(
            f"{label} disagrees with the eager model by {worst:.2e} (allowed {tolerance:g})"
        )
    if cached is not None:
        _store(cached, graph)
    return network, "exported", worst


BUILDERS = {"onnxruntime": onnx_runtime, "openvino": openvino_runtime}


def _note(label: str, how: str, start: float, worst: float) -> str:
    seconds = time.perf_counter() - start
    return f"{label} ({how} and checked in {seconds:.1f} s; largest difference {worst:.1e})"


def cache_root() -> Path:
    if os.environ.get("ASC_ONNX_CACHE"):
        return Path(os.environ["ASC_ONNX_CACHE"])
    try:
        return Path.home() / ".cache/asc-stream/onnx"
    except RuntimeError:  # a container user without a home: a shared temporary folder
        return Path(tempfile.gettempdir()) / "asc-stream-onnx"


def graph_path(cache_key: str, example: torch.Tensor, outputs: tuple[str, ...]) -> Path:
    """Where the graph of these weights, this input layout and these outputs is kept; the
    exporter's versions are in the key, so an upgrade exports afresh."""
    parts = [cache_key, str(tuple(example.shape[1:-1])), ",".join(outputs)]
    parts += [torch.__version__, importlib.metadata.version("onnx"), str(OPSET)]
    return cache_root() / (hashlib.sha256("|".join(parts).encode()).hexdigest()[:24] + ".onnx")


def _store(path: Path, graph: bytes) -> None:
    """Atomically, or not at all: a read-only home only costs the next start an export."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
            f.write(graph)
        Path(f.name).replace(path)
    except OSError:
        pass


class _Outputs(torch.nn.Module):
    """The named outputs as a tuple: what an ONNX graph can return."""

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...]):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(features)
        return tuple(result[k] for k in self.outputs)


def export(model: torch.nn.Module, example: torch.Tensor, outputs: tuple[str, ...]) -> bytes:
    """The model as an ONNX graph whose batch (0) and time (last) axes take any size."""
    import warnings

    buffer = io.BytesIO()
    axes = {"features": {0: "batch", example.dim() - 1: "frames"}}
    axes |= {k: {0: "batch"} for k in outputs}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter is the one that needs no extra packages; torch warns
        # that a newer exporter exists.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Outputs(model, outputs).eval(),
            (example,),
            buffer,
            input_names=["features"],
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


class OnnxNetwork:
    """An ONNX Runtime session that answers like the model: a dict of named tensors."""

    def __init__(self, graph: bytes, outputs: tuple[str, ...], threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Sleep between passes instead of spinning: the decode threads need those cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.outputs = outputs

    def __call__(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        array = np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
        values = self.session.run(list(self.outputs), {"features": array})
        return {k: torch.from_numpy(v) for k, v in zip(self.outputs, values, strict=True)}


class OpenVinoNetwork:
    """An OpenVINO compiled model that answers like the model: a dict of named tensors.

    ``precision`` is OpenVINO's inference precision hint: ``f32``, or ``bf16``, which runs the
    matrix work in bfloat16 where the CPU has instructions for it (AVX-512 BF16, AMX) and in
    float32 where it has none. An infer request holds its own buffers, so each thread that calls
    gets one of its own.
    """

    def __init__(
        self, graph: bytes, outputs: tuple[str, ...], threads: int, precision: str, passes: int = 1
    ):
        import openvino as ov

        core = ov.Core()
        # One stream per pass that may run at once: a stream runs one request at a time, so
        # with fewer, concurrent passes would queue inside OpenVINO.
        config = {
            "INFERENCE_NUM_THREADS": max(1, threads) * max(1, passes),
            "NUM_STREAMS": max(1, passes),
            "INFERENCE_PRECISION_HINT": precision,
            "ENABLE_CPU_PINNING": False,  # the decode threads share these cores
        }
        self.compiled = core.compile_model(core.read_model(graph, b""), "CPU", config)
        self.outputs = outputs
        self.ports = [self.compiled.output(k) for k in outputs]
        self.requests = threading.local()

    def __call__(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        request = getattr(self.requests, "request", None)
        if request is None:
            request = self.requests.request = self.compiled.create_infer_request()
        array = np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
        values = request.infer({"features": array})
        return {
            k: torch.from_numpy(values[p].copy())
            for k, p in zip(self.outputs, self.ports, strict=True)
        }


def disagreement(
    model: torch.nn.Module, network: Network, example: torch.Tensor, outputs: tuple[str, ...]
) -> float:
    """Largest absolute difference between the eager model and ``network`` on ``example`` and
    on a batch of another size and length (so the free axes are exercised too)."""
    other = torch.cat([example, example.flip(0)])[..., : max(1, example.shape[-1] * 3 // 4)]
    worst = 0.0
    with torch.inference_mode():
        for batch in (example, other):
            want, got = model(batch), network(batch)
            for key in outputs:
                diff = (want[key].float() - got[key].float()).abs().max()
                worst = max(worst, float(diff))
    return worst
