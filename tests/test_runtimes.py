"""The models' CPU runtimes (asc/runtimes.py): an ONNX graph derived from the loaded model must
answer like it, on any batch size and window length, or not be used at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asc.models.detector import LossyDetector
from asc.models.scene import SceneEnsemble
from asc.runtimes import (
    BF16_TOLERANCE,
    OpenVinoNetwork,
    RuntimeChoiceError,
    choose,
    disagreement,
    export,
    graph_path,
    onnx_runtime,
    onnxruntime_available,
    openvino_available,
    openvino_bf16,
    openvino_runtime,
)

pytestmark = pytest.mark.skipif(
    not (onnxruntime_available() and openvino_available()),
    reason="onnx, onnxruntime and openvino are in the server extra: make setup",
)
CPU = torch.device("cpu")
SCENE_OUTPUTS = ("scores", "coarse_probs")


def scene_model() -> SceneEnsemble:
    torch.manual_seed(0)
    model = SceneEnsemble(["a", "b", "c", "d"], ["x", "y"], [0, 0, 1, 1], "compact").eval()
    return model


def features(batch: int, frames: int, channels: int = 3, bins: int = 128) -> torch.Tensor:
    return torch.randn(batch, channels, bins, frames, generator=torch.Generator().manual_seed(1))


def test_the_ensemble_answers_the_same_in_onnx_runtime(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASC_ONNX_CACHE", str(tmp_path))
    model = scene_model()
    runtime = onnx_runtime(model, features(2, 120), SCENE_OUTPUTS)
    assert runtime.name == "onnxruntime"
    for batch, frames in ((1, 120), (5, 120), (3, 64)):  # batch and window length are free
        x = features(batch, frames)
        with torch.inference_mode():
            want, got = model(x), runtime.network(x)
        for key in SCENE_OUTPUTS:
            assert got[key].shape == want[key].shape
            assert torch.allclose(got[key], want[key], atol=1e-5)
        assert torch.equal(got["scores"].argmax(1), want["scores"].argmax(1))


def test_the_detector_answers_the_same_in_onnx_runtime(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASC_ONNX_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = LossyDetector(bins=64, hidden=16).eval()
    outputs = ("lossy_prob", "family_probs")
    runtime = onnx_runtime(model, features(2, 160, channels=1, bins=64), outputs)
    x = features(4, 200, channels=1, bins=64)
    with torch.inference_mode():
        want, got = model(x), runtime.network(x)
    for key in outputs:
        assert torch.allclose(got[key], want[key], atol=1e-5)


def test_both_models_answer_the_same_in_openvino_float32() -> None:
    """The same ONNX graph compiled by OpenVINO, BiLSTM included, on free batch and time axes."""
    torch.manual_seed(0)
    detector = LossyDetector(bins=64, hidden=16).eval()
    cases = [
        (scene_model(), SCENE_OUTPUTS, features(2, 120), features(3, 64)),
        (
            detector,
            ("lossy_prob", "family_probs"),
            *(features(n, t, 1, 64) for n, t in ((2, 160), (4, 200))),
        ),
    ]
    for model, outputs, example, other in cases:
        network = OpenVinoNetwork(export(model, example, outputs), outputs, 2, "f32")
        with torch.inference_mode():
            want, got = model(other), network(other)
        for key in outputs:
            assert got[key].shape == want[key].shape
            assert torch.allclose(got[key], want[key], atol=1e-5)


def test_the_openvino_runtime_takes_bfloat16_where_the_cpu_has_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASC_ONNX_CACHE", str(tmp_path))
    model, example = scene_model(), features(2, 80)
    runtime = openvino_runtime(model, example, SCENE_OUTPUTS, cache_key="w1")
    assert runtime.name == "openvino"
    assert ("OpenVINO bf16" if openvino_bf16() else "OpenVINO f32") in runtime.note
    assert disagreement(model, runtime.network, example, SCENE_OUTPUTS) <= BF16_TOLERANCE
    assert "cached graph" in openvino_runtime(model, example, SCENE_OUTPUTS, cache_key="w1").note


def test_a_graph_is_cached_and_a_damaged_one_exported_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASC_ONNX_CACHE", str(tmp_path))
    model, example = scene_model(), features(2, 80)
    first = onnx_runtime(model, example, SCENE_OUTPUTS, cache_key="w1")
    path = graph_path("w1", example, SCENE_OUTPUTS)
    assert "exported" in first.note and path.is_file()
    assert "cached graph" in onnx_runtime(model, example, SCENE_OUTPUTS, cache_key="w1").note
    path.write_bytes(b"not an onnx graph")
    again = onnx_runtime(model, example, SCENE_OUTPUTS, cache_key="w1")
    assert "exported" in again.note and path.stat().st_size > 1000


def test_a_network_that_disagrees_is_measured_as_such() -> None:
    model, example = scene_model(), features(2, 80)

    def off_by_a_little(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v + 1e-3 for k, v in model(x).items()}

    assert disagreement(model, model, example, SCENE_OUTPUTS) == 0.0
    worst = disagreement(model, off_by_a_little, example, SCENE_OUTPUTS)
    assert worst == pytest.approx(1e-3, rel=1e-3)


def test_choosing_a_runtime() -> None:
    model, example = scene_model(), features(2, 80)
    assert choose("eager", model, example, SCENE_OUTPUTS, CPU).network is model
    assert choose("auto", model, example, SCENE_OUTPUTS, CPU).name == "onnxruntime"
    assert choose("openvino", model, example, SCENE_OUTPUTS, CPU).name == "openvino"
    # auto takes the first of the model's own order that builds and agrees
    picked = choose("auto", model, example, SCENE_OUTPUTS, CPU, auto=("openvino", "onnxruntime"))
    assert picked.name == "openvino"
    with pytest.raises(RuntimeChoiceError, match="unknown runtime 'tensorrt'"):
        choose("tensorrt", model, example, SCENE_OUTPUTS, CPU)
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(RuntimeChoiceError, match="CPU only"):
            choose(name, model, example, SCENE_OUTPUTS, torch.device("meta"))
    assert choose("auto", model, example, SCENE_OUTPUTS, torch.device("meta")).name == "eager"


def test_a_runtime_that_cannot_compile_the_graph_is_refused_by_name() -> None:
    """A build that fails (here: OpenVINO asked for a precision it does not know) is a refused
    runtime, which auto passes over, not a crash at start."""
    from asc.runtimes import checked_graph

    model, example = scene_model(), features(2, 80)

    def build(graph: bytes):
        return OpenVinoNetwork(graph, SCENE_OUTPUTS, 1, "f7")

    with pytest.raises(RuntimeChoiceError, match="OpenVINO cannot run the model here"):
        checked_graph("OpenVINO", build, 1e-4, model, example, SCENE_OUTPUTS, None)


def test_auto_falls_back_to_eager_naming_why(monkeypatch) -> None:
    import asc.runtimes as runtimes

    def refuses(*args, **kwargs):
        raise RuntimeChoiceError("ONNX Runtime disagrees with the eager model by 1.00e-01")

    monkeypatch.setitem(runtimes.BUILDERS, "onnxruntime", refuses)
    model, example = scene_model(), features(2, 80)
    fallback = choose("auto", model, example, SCENE_OUTPUTS, CPU)
    assert fallback.name == "eager" and "disagrees" in fallback.note


def test_the_shipped_models_serve_the_same_labels_in_every_runtime() -> None:
    from server.inference import DetectorRunner, SceneRunner

    rng = np.random.default_rng(2)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (441000, 441000, 120000)]
    fast, eager = (
        SceneRunner("models/ensemble.safetensors", CPU, "onnxruntime"),
        SceneRunner("models/ensemble.safetensors", CPU, "eager"),
    )
    assert fast.runtime.name == "onnxruntime" and eager.runtime.name == "eager"
    for a, b in zip(fast(waves), eager(waves), strict=True):
        assert int(a.scores.argmax()) == int(b.scores.argmax())
        assert np.allclose(a.scores, b.scores, atol=1e-5)
    assert fast.shortest_input() == eager.shortest_input()
    auto = SceneRunner("models/ensemble.safetensors", CPU, "auto")
    assert auto.runtime.name == "openvino"
    for a, b in zip(auto(waves), eager(waves), strict=True):
        assert int(a.scores.argmax()) == int(b.scores.argmax())
        assert np.allclose(a.scores, b.scores, atol=BF16_TOLERANCE)
    detector = DetectorRunner("models/detector.safetensors", CPU, "onnxruntime")
    pieces = detector.pieces(waves[0])
    reference = DetectorRunner("models/detector.safetensors", CPU, "eager")
    for a, b in zip(detector(pieces), reference(pieces), strict=True):
        assert abs(a.lossy - b.lossy) < 1e-5
