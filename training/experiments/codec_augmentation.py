"""The ASC paper's Experiment B (its Table 3): codec-augmented training of the 10-class FCNN.

Seven training conditions, each a fresh FCNN (fine classes only, no coarse stage) trained by
``fit_ensemble`` with the same seed and settings:

1. the original training clips only, no augmentation;
2. the baseline augmentations (mixup, random time crop, spectrum masks) on the original clips;
3. 1 + a coded copy of every training clip through MP3 64k;
4. 3 + HE-AAC 16k;  5. 3 + HE-AAC 32k;  6. 4 + AAC 32k;
7. 2 + 6: the baseline augmentations and the MP3 64k, HE-AAC 16k and AAC 32k copies.

Every model is scored on the same coded test set (``coded_test_set``): None, AAC 32k, MP3 64k,
MP3 32k, AAC 48k, AAC 64k, Opus 64k and SBC 64k, grouped as seen codec and bitrate, seen codec at
an unseen bitrate, and unseen codec (relative to condition 7's training codecs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asc.codecs import parse_spec
from asc.features import LOGMEL
from training.augment import UNCODED
from training.datasets import SceneDataset, load_dataset
from training.evaluate import CodedTestSet, coded_test_set, score_paths, test_clip_names
from training.fit_scene import SceneTrainConfig, fit_ensemble
from training.loop import pick_device
from training.quality import quality_metric
from training.report import (
    markdown_table,
    number,
    path_rows,
    percent,
    plot_accuracy_vs_kbps,
    plot_matrix,
    write_csv,
    write_json,
)


@dataclass(frozen=True)
class Condition:
    index: int
    name: str
    codecs: tuple[str, ...]  # coded copies added to the original training clips
    baseline: bool  # mixup, time crop and spectrum masks


CONDITIONS = (
    Condition(1, "original training data only", (), False),
    Condition(2, "baseline augmentations", (), True),
    Condition(3, "1 + MP3 64k", ("mp3:64k",), False),
    Condition(4, "3 + HE-AAC 16k", ("mp3:64k", "he-aac:16k"), False),
    Condition(5, "3 + HE-AAC 32k", ("mp3:64k", "he-aac:32k"), False),
    Condition(6, "4 + AAC 32k", ("mp3:64k", "he-aac:16k", "aac:32k"), False),
    Condition(7, "2 + 6", ("mp3:64k", "he-aac:16k", "aac:32k"), True),
)
EVALUATION_CODECS = (
    "none",
    "aac:32k",
    "mp3:64k",
    "mp3:32k",
    "aac:48k",
    "aac:64k",
    "opus:64k",
    "sbc:64k",
)
GROUPS = ("uncoded", "seen codec and bitrate", "seen codec, unseen bitrate", "unseen codec")
SHORT_GROUP = {
    GROUPS[0]: "",
    GROUPS[1]: "seen",
    GROUPS[2]: "unseen bitrate",
    GROUPS[3]: "unseen codec",
}


def path_group(spec: str, training_codecs: tuple[str, ...]) -> str:
    """Where an evaluation path stands relative to the codecs a model was trained with."""
    if spec == UNCODED:
        return GROUPS[0]
    if spec in training_codecs:
        return GROUPS[1]
    seen = {stage.name for c in training_codecs for stage in parse_spec(c).stages}
    names = {stage.name for stage in parse_spec(spec).stages}
    return GROUPS[2] if names <= seen else GROUPS[3]


@dataclass
class CodecAugmentationConfig:
    data: Path
    out: Path
    conditions: tuple[int, ...] = tuple(c.index for c in CONDITIONS)
    codecs: tuple[str, ...] = EVALUATION_CODECS
    preset: str = "compact"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    epoch_size: int | None = None
    max_clips_per_class: int | None = None
    mixup: float = 0.4
    crop_frames: int = 400
    seed: int = 0
    device: str = "auto"
    fold: int = 1
    cache_dir: Path = Path(".cache/coded")
    checkpoints: Path = Path(".cache/experiments/codec-augmentation")
    workers: int | None = None
    quality_clips: int = 0
    resume: bool = True
    progress: bool = True
    command: str = ""  # how the run was started, for the report


def run_codec_augmentation(cfg: CodecAugmentationConfig) -> dict:
    """Train the chosen conditions, score each on every evaluation path; returns the results."""
    unknown = sorted(set(cfg.conditions) - {c.index for c in CONDITIONS})
    if unknown or not cfg.conditions:
        raise ValueError(f"conditions are numbered 1 to 7; got {list(cfg.conditions)}")
    device = pick_device(cfg.device)
    dataset = load_dataset(cfg.data, fold=cfg.fold)
    test_set = coded_test_set(
        dataset,
        list(cfg.codecs),
        LOGMEL,
        device,
        cfg.cache_dir,
        cfg.workers,
        cfg.progress,
        cfg.max_clips_per_class,
        cfg.quality_clips,
    )
    records = []
    chosen = [c for c in CONDITIONS if c.index in cfg.conditions]
    for condition in tqdm(chosen, desc="conditions", unit="model", disable=not cfg.progress):
        tqdm.write(f"condition {condition.index}: {condition.name}")
        records.append(train_condition(cfg, condition, test_set, device))
    return _results(cfg, dataset, test_set, device, records)


def train_condition(
    cfg: CodecAugmentationConfig, condition: Condition, test_set: CodedTestSet, device: torch.device
) -> dict:
    """One condition's FCNN, trained by ``fit_ensemble`` and scored on every path."""
    train_cfg = SceneTrainConfig(
        data=cfg.data,
        out=cfg.checkpoints / f"condition-{condition.index}.safetensors",
        preset=cfg.preset,
        augment_codecs=list(condition.codecs),
        architectures=("fcnn",),
        coarse=False,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        device=cfg.device,
        mixup_alpha=cfg.mixup if condition.baseline else 0.0,
        crop_frames=cfg.crop_frames if condition.baseline else 0,
        spec_masks=condition.baseline,
        cache_dir=cfg.cache_dir,
        workers=cfg.workers,
        resume=cfg.resume,
        progress=cfg.progress,
        max_clips_per_class=cfg.max_clips_per_class,
        epoch_size=cfg.epoch_size,
        fold=cfg.fold,
    )
    checkpoint = fit_ensemble(train_cfg)
    paths = score_paths(checkpoint.model, test_set, device)
    return {
        "condition": condition.index,
        "name": condition.name,
        "training_codecs": list(condition.codecs),
        "baseline_augmentations": condition.baseline,
        "train_examples": checkpoint.metrics["train_clips"] * (1 + len(condition.codecs)),
        "train_seconds": checkpoint.metrics["train_seconds"],
        "checkpoint": str(train_cfg.out),
        "paths": [asdict(p) for p in paths],
    }


def relative_change_7_over_2(records: list[dict]) -> dict[str, float | None] | None:
    """Per path, how much condition 7 gains over condition 2, when both were trained."""
    by_index = {r["condition"]: r for r in records}
    if not (2 in by_index and 7 in by_index):
        return None
    return {
        p7["path"]: (p7["accuracy"] - p2["accuracy"]) / p2["accuracy"]
        if p2["accuracy"] > 0
        else None
        for p2, p7 in zip(by_index[2]["paths"], by_index[7]["paths"], strict=True)
    }


def _results(
    cfg: CodecAugmentationConfig,
    dataset: SceneDataset,
    test_set: CodedTestSet,
    device: torch.device,
    records: list[dict],
) -> dict:
    """What results.json holds."""
    reference = CONDITIONS[-1].codecs  # the paper groups paths by condition 7's training codecs
    headline = next((r for r in records if r["condition"] == 7), records[-1])
    return {
        "report": "codec-augmentation",
        "data": str(cfg.data),
        "clips": len(test_set.clips),
        "classes": list(dataset.fine_classes),
        "test_clips": test_clip_names(test_set),
        "truth": test_set.truth.tolist(),
        "model": {"architecture": "fcnn", "preset": cfg.preset, "coarse": False},
        "training": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "epoch_size": cfg.epoch_size,
            "max_clips_per_class": cfg.max_clips_per_class,
            "mixup": cfg.mixup,
            "crop_frames": cfg.crop_frames,
            "seed": cfg.seed,
            "device": str(device),
        },
        "evaluation_codecs": list(test_set.specs),
        "groups": {s: path_group(s, reference) for s in test_set.specs},
        "quality_metric": quality_metric() if test_set.quality else None,
        "quality_clips": test_set.quality_clips,
        "conditions": records,
        "paths_condition": headline["condition"],
        "paths": headline["paths"],
        "relative_change_7_over_2": relative_change_7_over_2(records),
        "command": cfg.command,
    }


def accuracy_matrix(results: dict) -> tuple[np.ndarray, list[str], list[str]]:
    """Rows: conditions; columns: evaluation paths (grouped as in the paper)."""
    columns = ordered_paths(results)
    rows = [f"{r['condition']}: {r['name']}" for r in results["conditions"]]
    matrix = np.array(
        [
            [next(p["accuracy"] for p in r["paths"] if p["path"] == c) for c in columns]
            for r in results["conditions"]
        ]
    )
    return matrix, rows, columns


def ordered_paths(results: dict) -> list[str]:
    groups = results["groups"]
    return sorted(results["evaluation_codecs"], key=lambda s: GROUPS.index(groups[s]))


def matrix_markdown(results: dict) -> str:
    """Table 3's layout: one row per condition, one column per evaluation path."""
    columns = ordered_paths(results)
    groups = results["groups"]
    header = ["#", "training condition", "examples"]
    header += [
        f"`{c}`" + (f"<br>{SHORT_GROUP[groups[c]]}" if SHORT_GROUP[groups[c]] else "")
        for c in columns
    ]
    rows = []
    for r in results["conditions"]:
        accuracy = {p["path"]: p["accuracy"] for p in r["paths"]}
        rows.append(
            [str(r["condition"]), r["name"], str(r["train_examples"])]
            + [f"{accuracy[c]:.3f}" for c in columns]
        )
    change = results.get("relative_change_7_over_2")
    if change:
        rows.append(
            ["", "**relative change of 7 over 2**", ""]
            + [percent(change[c]) if change[c] is not None else "n/a" for c in columns]
        )
    return markdown_table(header, rows, "rlr" + "r" * len(columns))


def matrix_text(results: dict) -> str:
    """The matrix for a terminal."""
    matrix, _, columns = accuracy_matrix(results)
    width = max(9, *(len(c) for c in columns))
    lines = ["cond " + " ".join(f"{c:>{width}}" for c in columns)]
    for r, values in zip(results["conditions"], matrix, strict=True):
        lines.append(f"{r['condition']:>4} " + " ".join(f"{v:>{width}.3f}" for v in values))
    change = results.get("relative_change_7_over_2")
    if change:
        lines.append(
            "7/2  "
            + " ".join(
                f"{percent(change[c]):>{width}}" if change[c] is not None else f"{'n/a':>{width}}"
                for c in columns
            )
        )
    return "\n".join(lines)


def write_codec_augmentation_report(out: Path, results: dict) -> list[Path]:
    """results.json, results.csv (one row per condition and path), README.md and plots."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results["conditions"]:
        rows += path_rows(r["paths"], results["classes"], condition=r["condition"])
    for row in rows:
        row["group"] = results["groups"][row["path"]]
    matrix, row_names, columns = accuracy_matrix(results)
    written = [
        write_json(out / "results.json", results),
        write_csv(out / "results.csv", rows),
        plot_matrix(
            matrix,
            row_names,
            columns,
            out / "accuracy_matrix.png",
            "FCNN accuracy per training condition and evaluation path",
        ),
        plot_accuracy_vs_kbps(
            results["paths"],
            out / "accuracy_vs_kbps.png",
            f"Condition {results['paths_condition']}: accuracy against achieved bitrate",
        ),
    ]
    lines = _summary_lines(results) + goal_lines(results) + _headline_path_lines(results)
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def _summary_lines(results: dict) -> list[str]:
    """The report's opening: data, model, training, the paths' groups and Table 3's matrix."""
    groups = results["groups"]
    named = {g: [f"`{s}`" for s in results["evaluation_codecs"] if groups[s] == g] for g in GROUPS}
    training = results["training"]
    return [
        "# Codec-augmented training of the 10-class FCNN (the ASC paper's Table 3)",
        "",
        f"Data: the test split of `{results['data']}` ({results['clips']} clips), each clip "
        f"coded through every evaluation path. Model: FCNN, preset `{results['model']['preset']}`"
        f", fine classes only; baseline augmentations (conditions 2 and 7): mixup "
        f"(alpha {training['mixup']}), random time crop ({training['crop_frames']} frames) and "
        f"spectrum masks; {training['epochs']} epochs, batch {training['batch_size']}, "
        f"seed {training['seed']}, on `{training['device']}`. An epoch is "
        + (
            f"{training['epoch_size']} examples drawn at random (every example once where a "
            "condition has fewer)"
            if training["epoch_size"]
            else "every training example once (more coded copies: more steps, as in the paper)"
        )
        + ".",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        "Evaluation paths, grouped by condition 7's training codecs: seen codec and bitrate: "
        f"{', '.join(named[GROUPS[1]]) or 'none'}; seen codec at an unseen bitrate: "
        f"{', '.join(named[GROUPS[2]]) or 'none'}; unseen codec: "
        f"{', '.join(named[GROUPS[3]]) or 'none'}.",
        "",
        "## Accuracy per training condition and evaluation path",
        "",
        matrix_markdown(results),
        "",
        "![accuracy matrix](accuracy_matrix.png)",
        "",
    ]


def _headline_path_lines(results: dict) -> list[str]:
    """The headline condition's accuracy per path, as the schema's ``paths``."""
    groups = results["groups"]
    return [
        f"## Condition {results['paths_condition']} per path",
        "",
        "The `paths` of results.json (achieved kbps measured on the coded test clips):",
        "",
        markdown_table(
            ["path", "group", "kbps", "accuracy", "relative decrease"],
            [
                [
                    f"`{p['path']}`",
                    groups[p["path"]],
                    f"{p['kbps']:.1f}",
                    f"{p['accuracy']:.3f}",
                    "n/a" if p["path"] == UNCODED else percent(p["relative_decrease"]),
                ]
                for p in results["paths"]
            ],
            "llrrr",
        ),
        "",
        "![accuracy against achieved kbps](accuracy_vs_kbps.png)",
        "",
        "Per-class accuracy and confusion matrices of every condition are in results.json.",
        "",
    ]


def goal_lines(results: dict) -> list[str]:
    """How condition 7 stands against the project's goals (every path keeps >= 90 % of the
    uncoded accuracy; uncoded accuracy at most 1 point below the baseline, condition 2)."""
    by_index = {r["condition"]: r for r in results["conditions"]}
    if 7 not in by_index:
        return []
    paths = by_index[7]["paths"]
    coded = [p for p in paths if p["path"] != UNCODED and p["relative_decrease"] is not None]
    lines = ["## Against the goals", ""]
    if coded:
        worst = max(coded, key=lambda p: p["relative_decrease"])
        kept = 1 - worst["relative_decrease"]
        verdict = "meets" if kept >= 0.9 else "misses"
        lines.append(
            f"- Condition 7 keeps at least {percent(kept)} of its uncoded accuracy on every path "
            f"(lowest: `{worst['path']}`); the goal is 90 %: it {verdict} it."
        )
    if 2 in by_index:
        a7 = next(p["accuracy"] for p in paths if p["path"] == UNCODED)
        a2 = next(p["accuracy"] for p in by_index[2]["paths"] if p["path"] == UNCODED)
        points = 100 * (a7 - a2)
        verdict = "meets" if points >= -1 else "misses"
        lines.append(
            f"- Uncoded accuracy: condition 7 {number(a7)} against condition 2 {number(a2)} "
            f"({points:+.1f} points); the goal is at most 1 point lost: it {verdict} it."
        )
    return [*lines, ""]
