"""Accuracy of a scene ensemble per codec path: the test split coded through each path.

The same cache of coded copies and the same feature function as training, so a number here
means what the server would see for audio that travelled through that path. Each path also
gets its achieved bitrate (measured on the coded copies) and, optionally, a perceptual quality
score (``training.quality``). The coded test set is built once and can score many models, as the
codec-augmentation experiment does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from asc.checkpoint import load
from asc.features import FeatureConfig, FeatureExtractor
from asc.models.scene import SceneEnsemble
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.datasets import Clip, SceneDataset, load_dataset
from training.fit_scene import (
    clip_samples,
    compute_features,
    limit_per_class,
    predict,
)
from training.loop import pick_device
from training.quality import ViSQOL, mean_quality, quality_metric, spread_subset
from training.report import family_of_path, relative_decrease, uncoded_kbps


@dataclass
class PathResult:
    path: str  # "none" for the uncoded reference, else the canonical codec spec
    family: str
    kbps: float  # achieved: codec payload bits per second (uncoded: 16-bit PCM)
    accuracy: float
    relative_decrease: float | None  # (uncoded - this) / uncoded; None without "none"
    clips: int
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    quality: float | None = None  # mean perceptual quality score, when measured
    # The predicted class index of each test clip, in the order of the report's test_clips:
    # what a paired comparison (bootstrap over clips) between paths or models needs.
    predicted: list[int] = field(default_factory=list)


@dataclass
class Evaluation:
    checkpoint: str
    data: str
    clips: int
    classes: list[str]
    paths: list[PathResult] = field(default_factory=list)
    codec_conditions: list[str] = field(default_factory=list)  # what the model trained on
    quality_metric: dict | None = None
    quality_clips: int = 0
    test_clips: list[str] = field(default_factory=list)  # relative to the data set's root
    truth: list[int] = field(default_factory=list)  # class index of each test clip

    def accuracy(self, spec: str) -> float:
        return next(p.accuracy for p in self.paths if p.path == spec)

    def to_dict(self) -> dict:
        return {"report": "evaluate", **asdict(self)}


@dataclass
class CodedTestSet:
    """The test clips coded through each path, as features ready for any model."""

    dataset: SceneDataset
    clips: list[Clip]
    specs: list[str]
    files: dict[str, list[Path]]  # spec -> the coded copy of each clip, in clip order
    features: dict[str, torch.Tensor]  # spec -> float16 features
    truth: torch.Tensor
    kbps: dict[str, float]
    quality: dict[str, float] = field(default_factory=dict)
    quality_clips: int = 0


def evaluation_specs(codecs: str | list[str]) -> list[str]:
    """Canonical, without repeats, with the uncoded reference first."""
    specs = list(dict.fromkeys(parse_spec_list(codecs)))
    return [UNCODED] + [s for s in specs if s != UNCODED]


def coded_test_set(
    dataset: SceneDataset,
    codecs: str | list[str],
    features_config: FeatureConfig,
    device: torch.device,
    cache_dir: str | Path = ".cache/coded",
    workers: int | None = None,
    progress: bool = True,
    max_clips_per_class: int | None = None,
    quality_clips: int = 0,
) -> CodedTestSet:
    """Code the test split through every path once; measure kbps and optionally quality."""
    test = limit_per_class(dataset.split("test"), max_clips_per_class)
    if not test:
        raise ValueError(f"{dataset.root}: the test split is empty")
    specs = evaluation_specs(codecs)
    rate = features_config.sample_rate
    cache = CodedCache(cache_dir, rate=rate, channels=1)
    sources = [c.path for c in test]
    mapping = cache.ensure(sources, specs, workers=workers, progress=progress)
    extractor = FeatureExtractor(features_config).to(device)
    samples = clip_samples(dataset, rate)
    files, features, kbps = {}, {}, {}
    for spec in specs:
        files[spec] = [mapping[(s, spec)] for s in sources]
        features[spec] = compute_features(
            files[spec], extractor, samples, device, progress, f"features {spec}"
        )
        kbps[spec] = (
            uncoded_kbps(rate)
            if spec == UNCODED
            else cache.achieved_kbps(sources, spec, workers=workers, progress=progress)
        )
    quality: dict[str, float] = {}
    picked = spread_subset(len(test), quality_clips)
    if picked:
        scorer = ViSQOL()
        for spec in specs:
            pairs = [(sources[i], files[spec][i]) for i in picked]
            quality[spec] = mean_quality(pairs, scorer, progress, f"quality {spec}")
    truth = torch.tensor([dataset.label_index(c.label) for c in test])
    return CodedTestSet(dataset, test, specs, files, features, truth, kbps, quality, len(picked))


def score_paths(
    model: SceneEnsemble, test_set: CodedTestSet, device: torch.device
) -> list[PathResult]:
    """Accuracy, per-class accuracy and confusion of ``model`` on every coded path."""
    classes = test_set.dataset.fine_classes
    n = len(classes)
    truth = test_set.truth.numpy()
    model = model.to(device).eval()
    results = []
    for spec in test_set.specs:
        predicted = predict(model, test_set.features[spec], device).argmax(1).numpy()
        confusion = np.zeros((n, n), dtype=int)
        np.add.at(confusion, (truth, predicted), 1)
        per_class = {
            name: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else 0.0
            for i, name in enumerate(classes)
        }
        results.append(
            PathResult(
                path=spec,
                family=family_of_path(spec),
                kbps=round(test_set.kbps[spec], 3),
                accuracy=float(np.mean(predicted == truth)),
                relative_decrease=None,
                clips=len(truth),
                per_class=per_class,
                confusion=confusion.tolist(),
                quality=test_set.quality.get(spec),
                predicted=predicted.tolist(),
            )
        )
    reference = next((r.accuracy for r in results if r.path == UNCODED), None)
    for r in results:
        r.relative_decrease = relative_decrease(reference, r.accuracy)
    return results


def evaluate_ensemble(
    checkpoint: str | Path,
    data: str | Path,
    codecs: str | list[str],
    device: str = "auto",
    cache_dir: str | Path = ".cache/coded",
    workers: int | None = None,
    progress: bool = True,
    fold: int = 1,
    quality_clips: int = 0,
    max_clips_per_class: int | None = None,
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
    test_set = coded_test_set(
        dataset,
        codecs,
        ckpt.features,
        dev,
        cache_dir,
        workers,
        progress,
        max_clips_per_class,
        quality_clips,
    )
    return Evaluation(
        checkpoint=str(checkpoint),
        data=str(data),
        clips=len(test_set.clips),
        classes=list(dataset.fine_classes),
        paths=score_paths(model, test_set, dev),
        codec_conditions=list(ckpt.codec_conditions),
        quality_metric=quality_metric() if test_set.quality else None,
        quality_clips=test_set.quality_clips,
        test_clips=test_clip_names(test_set),
        truth=test_set.truth.tolist(),
    )


def test_clip_names(test_set: CodedTestSet) -> list[str]:
    """The test clips as paths relative to the data set, in the order of every ``predicted``."""
    return [test_set.dataset.relative_path(c.path) for c in test_set.clips]
