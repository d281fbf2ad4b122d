"""The one checkpoint format for every model: safetensors weights + JSON metadata in one file.

The metadata (architecture, preset, feature config, class lists and coarse map, codec
conditions trained on, data fingerprint, metrics) sits in the safetensors header under the key
``asc``, so a checkpoint is a single file that never runs pickle. Loading rebuilds the model
from the metadata and fails with a message naming the problem on any mismatch or corruption.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from asc.features import FeatureConfig, FeatureConfigError
from asc.models.detector import LossyDetector
from asc.models.scene import SceneEnsemble

FORMAT = "asc-stream-checkpoint"
FORMAT_VERSION = 1
MODEL_KINDS = ("scene_ensemble", "lossy_detector")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match what the code expects."""


@dataclass
class Checkpoint:
    kind: str
    config: dict[str, Any]  # constructor arguments of the model
    features: FeatureConfig
    model: torch.nn.Module
    codec_conditions: list[str] = field(default_factory=list)
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: command, versions, id

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config,
            "features": self.features.to_dict(),
            "codec_conditions": self.codec_conditions,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "extra": self.extra,
        }


def build_model(kind: str, config: dict[str, Any]) -> torch.nn.Module:
    if kind == "scene_ensemble":
        return SceneEnsemble(**{**config, "architectures": tuple(config["architectures"])})
    if kind == "lossy_detector":
        return LossyDetector(**{**config, "widths": tuple(config["widths"])})
    raise CheckpointError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")


def save(checkpoint: Checkpoint, path: str | Path, half: bool = False) -> Path:
    """Write weights (optionally as float16, to keep shipped files small) and metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in checkpoint.model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"asc": json.dumps(checkpoint.metadata())})
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt or truncated): {e}"
        ) from e
    if "asc" not in header:
        raise CheckpointError(f"{path}: a safetensors file without asc-stream metadata")
    try:
        meta = json.loads(header["asc"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its metadata is not valid JSON: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')} is not the "
            f"supported version {FORMAT_VERSION}"
        )
    return meta


def load(path: str | Path, expect_kind: str | None = None, device: str = "cpu") -> Checkpoint:
    """Rebuild the model a checkpoint describes and load its weights, in eval mode."""
    path = Path(path)
    meta = read_metadata(path)
    kind = meta.get("kind")
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{path}: holds a {kind}, but a {expect_kind} is needed here")
    try:
        features = FeatureConfig.from_dict(meta["features"])
    except (FeatureConfigError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: feature config cannot be honoured: {e}") from e
    try:
        model = build_model(kind, meta["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: model config does not build a {kind}: {e}") from e
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: weights are corrupt or truncated: {e}") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the {kind} its metadata describes "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: weight {name} has shape {tuple(tensor.shape)}, "
                f"the model needs {tuple(expected[name].shape)}"
            )
        state[name] = tensor.to(expected[name].dtype)
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(
        kind=kind,
        config=meta["config"],
        features=features,
        model=model,
        codec_conditions=list(meta.get("codec_conditions", [])),
        data_fingerprint=meta.get("data_fingerprint", ""),
        metrics=dict(meta.get("metrics", {})),
        extra=dict(meta.get("extra", {})),
    )
