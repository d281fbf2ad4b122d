"""Accuracy of a scene ensemble per codec path: the test split coded through each path.

The same cache of coded copies and the same feature function as training, so a number here
means what the server would see for audio that travelled through that path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asc.checkpoint import load
from asc.features import FeatureExtractor
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.datasets import load_dataset
from training.fit_scene import clip_samples, compute_features, pick_device, predict


@dataclass
class PathResult:
    spec: str
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted


@dataclass
class Evaluation:
    checkpoint: str
    data: str
    clips: int
    classes: list[str]
    paths: list[PathResult] = field(default_factory=list)

    def accuracy(self, spec: str) -> float:
        return next(p.accuracy for p in self.paths if p.spec == spec)


def evaluate_ensemble(
    checkpoint: str | Path,
    data: str | Path,
    codecs: str | list[str],
    device: str = "auto",
    cache_dir: str | Path = ".cache/coded",
    workers: int | None = None,
    progress: bool = True,
    fold: int = 1,
) -> Evaluation:
    """Classify the test split after each codec path; ``none`` is the uncoded reference."""
    dev = pick_device(device)
    ckpt = load(checkpoint, expect_kind="scene_ensemble", device=str(dev))
    model = ckpt.model
    dataset = load_dataset(data, fold=fold)
    if dataset.fine_classes != model.fine_classes:
        raise ValueError(
            f"{checkpoint} was trained on classes {model.fine_classes}, "
            f"but {data} has {dataset.fine_classes}"
        )
    test = dataset.split("test")
    specs = parse_spec_list(codecs)
    rate = ckpt.features.sample_rate
    cache = CodedCache(cache_dir, rate=rate, channels=1)
    mapping = cache.ensure([c.path for c in test], specs, workers=workers, progress=progress)
    extractor = FeatureExtractor(ckpt.features).to(dev)
    samples = clip_samples(dataset, rate)
    truth = torch.tensor([dataset.label_index(c.label) for c in test])
    n = len(dataset.fine_classes)
    result = Evaluation(str(checkpoint), str(data), len(test), list(dataset.fine_classes))
    for spec in specs:
        paths = [mapping[(c.path, spec)] for c in test]
        features = compute_features(paths, extractor, samples, dev, progress, f"features {spec}")
        predicted = predict(model, features, dev).argmax(1)
        confusion = np.zeros((n, n), dtype=int)
        np.add.at(confusion, (truth.numpy(), predicted.numpy()), 1)
        per_class = {
            name: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else 0.0
            for i, name in enumerate(dataset.fine_classes)
        }
        accuracy = float((predicted == truth).float().mean())
        result.paths.append(PathResult(spec, accuracy, per_class, confusion.tolist()))
    return result


def summary_table(evaluation: Evaluation) -> str:
    """Markdown: path, accuracy, relative decrease from the uncoded reference."""
    reference = next((p.accuracy for p in evaluation.paths if p.spec == UNCODED), None)
    lines = ["| path | accuracy | relative decrease |", "|---|---:|---:|"]
    for p in evaluation.paths:
        if reference and p.spec != UNCODED:
            decrease = f"{100 * (reference - p.accuracy) / reference:.1f} %"
        else:
            decrease = "n/a"
        lines.append(f"| `{p.spec}` | {p.accuracy:.3f} | {decrease} |")
    return "\n".join(lines)
