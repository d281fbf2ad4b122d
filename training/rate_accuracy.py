"""Accuracy against bitrate, per codec family, and a Bjøntegaard-style summary between curves.

A researcher choosing a transmission codec asks "at the bitrates I can afford, how much accuracy
does codec B buy over codec A?" One operating point cannot answer it: codecs are tuned at
different rates. Each family is scored over a ladder of bitrates; two curves are compared by
their mean accuracy difference over the bitrate range both cover, on a log-rate axis, as
Bjøntegaard's BD-PSNR compares video codecs (here with piecewise-linear interpolation, which
needs no monotone fit and stays defined for three points). The same summary compares two
training conditions on one family.
"""

from __future__ import annotations

from dataclasses import asdict
from itertools import combinations
from pathlib import Path

import numpy as np

from asc.checkpoint import load
from training.augment import UNCODED
from training.datasets import load_dataset
from training.evaluate import coded_test_set, score_paths, test_clip_names
from training.loop import pick_device
from training.report import (
    family_of_path,
    markdown_table,
    plot_accuracy_vs_kbps,
    write_json,
)

# Bitrates a device would use, per family (SBC by bitpool, as Bluetooth negotiates it).
LADDERS = {
    "opus": ("opus:12k", "opus:16k", "opus:24k", "opus:32k", "opus:64k"),
    "mp3": ("mp3:32k", "mp3:48k", "mp3:64k", "mp3:96k", "mp3:128k"),
    "aac": ("aac:32k", "aac:48k", "aac:64k", "aac:96k", "aac:128k"),
    "he-aac": ("he-aac:16k", "he-aac:24k", "he-aac:32k", "he-aac:48k"),
    "vorbis": ("vorbis:48k", "vorbis:64k", "vorbis:96k", "vorbis:128k"),
    "sbc": ("sbc:bitpool=12", "sbc:bitpool=20", "sbc:bitpool=35", "sbc:bitpool=53"),
}
GRID = 256  # points of the log-rate grid the two curves are compared on
BOOTSTRAP = 1000  # clip resamples behind each summary's 95 % interval


def bd_accuracy(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> tuple[float, float, float] | None:
    """Mean accuracy of curve ``b`` minus curve ``a`` over their common bitrate range.

    Each curve is a list of (kbps, accuracy). Returns (difference, low kbps, high kbps), or None
    when the curves share no range (fewer than two points each, or disjoint bitrates).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    a, b = sorted(a), sorted(b)
    xa, ya = np.log10([k for k, _ in a]), np.array([v for _, v in a])
    xb, yb = np.log10([k for k, _ in b]), np.array([v for _, v in b])
    low, high = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if high <= low:
        return None
    grid = np.linspace(low, high, GRID)
    difference = float(np.mean(np.interp(grid, xb, yb) - np.interp(grid, xa, ya)))
    return difference, float(10**low), float(10**high)


def curves(paths: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """(kbps, accuracy) per codec family, from one model's per-path results."""
    by_family: dict[str, list[tuple[float, float]]] = {}
    for p in paths:
        if p["path"] != UNCODED:
            by_family.setdefault(family_of_path(p["path"]), []).append((p["kbps"], p["accuracy"]))
    return by_family


def comparisons(
    models: dict[str, list[dict]], truth: list[int] | None = None, seed: int = 0
) -> list[dict]:
    """Every pair of families within each model, and each family between every pair of models;
    with ``truth`` (and each path's per-clip ``predicted``), each with a 95 % interval over
    clip resamples shared by both curves, so a difference is claimed only beyond the noise."""
    per_model = {name: curves(paths) for name, paths in models.items()}
    draws = _resampled_curves(models, truth, seed) if truth is not None else []
    rows = []
    for kind, within, (ma, fa), (mb, fb) in _pairs(per_model):
        bd = bd_accuracy(per_model[ma][fa], per_model[mb][fb])
        if bd:
            row = _row(
                kind, within, fa if kind == "codecs" else ma, fb if kind == "codecs" else mb, bd
            )
            if draws:
                values = [bd_accuracy(d[ma][fa], d[mb][fb]) for d in draws]
                low, high = np.percentile([v[0] for v in values if v], [2.5, 97.5])
                row["ci"] = (float(low), float(high))
            rows.append(row)
    return rows


def _pairs(per_model: dict[str, dict]) -> list[tuple]:
    """(kind, within, (model, family) of A, (model, family) of B) for every comparison."""
    out = []
    for name, fams in per_model.items():
        for fa, fb in combinations(sorted(fams), 2):
            out.append(("codecs", name, (name, fa), (name, fb)))
    for ma, mb in combinations(list(per_model), 2):
        for family in sorted(set(per_model[ma]) & set(per_model[mb])):
            out.append(("models", family, (ma, family), (mb, family)))
    return out


def _resampled_curves(
    models: dict[str, list[dict]], truth: list[int], seed: int
) -> list[dict[str, dict[str, list[tuple[float, float]]]]]:
    """Per clip resample, every model's (kbps, accuracy) curve per family, the accuracies
    recomputed on the same clips for every model and path, so paired comparisons stay paired."""
    rng = np.random.default_rng(seed)
    coded = {name: [p for p in paths if p["path"] != UNCODED] for name, paths in models.items()}
    right = {
        name: [(family_of_path(p["path"]), p["kbps"], np.array(p["predicted"]) == truth)
               for p in paths]
        for name, paths in coded.items()
    }  # fmt: skip
    draws = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(truth), len(truth))
        draw: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for name, rows in right.items():
            fams = draw.setdefault(name, {})
            for family, kbps, hits in rows:
                fams.setdefault(family, []).append((kbps, float(hits[pick].mean())))
        draws.append(draw)
    return draws


def _row(kind: str, within: str, a: str, b: str, bd: tuple[float, float, float]) -> dict:
    return {"kind": kind, "within": within, "a": a, "b": b, "difference": bd[0],
            "kbps_from": bd[1], "kbps_to": bd[2]}  # fmt: skip


def rate_accuracy(
    checkpoints: list[Path],
    data: Path,
    families: list[str],
    fold: int = 1,
    device: str = "auto",
    cache_dir: Path = Path(".cache/coded"),
    workers: int | None = None,
    progress: bool = True,
    max_clips_per_class: int | None = None,
) -> dict:
    """Score each checkpoint on every rung of every family's ladder; compare the curves."""
    unknown = sorted(set(families) - set(LADDERS))
    if unknown:
        raise ValueError(f"unknown codec families {unknown}; known: {', '.join(LADDERS)}")
    dev = pick_device(device)
    loaded = {
        _label(c, checkpoints): load(c, expect_kind="scene_ensemble", device=str(dev))
        for c in checkpoints
    }
    features = {str(ck.features) for ck in loaded.values()}
    if len(features) > 1:
        raise ValueError("the checkpoints use different feature settings; compare like with like")
    dataset = load_dataset(data, fold=fold)
    first = next(iter(loaded.values()))
    specs = [UNCODED] + [s for f in families for s in LADDERS[f]]
    test_set = coded_test_set(dataset, specs, first.features, dev, cache_dir, workers, progress,
                              max_clips_per_class)  # fmt: skip
    models = {
        label: [asdict(p) for p in score_paths(ck.model, test_set, dev)]
        for label, ck in loaded.items()
    }
    return {
        "report": "rate-accuracy",
        "data": str(data),
        "fold": fold,
        "clips": len(test_set.clips),
        "classes": list(dataset.fine_classes),
        "checkpoints": {label: str(c) for label, c in zip(loaded, checkpoints, strict=True)},
        "families": {f: list(LADDERS[f]) for f in families},
        "models": models,
        "comparisons": comparisons(models, test_set.truth.tolist()),
        "truth": test_set.truth.tolist(),
        "bootstrap": {"resamples": BOOTSTRAP, "seed": 0, "interval": 0.95},
        "paths": models[next(iter(models))],
        "test_clips": test_clip_names(test_set),
    }


def _label(checkpoint: Path, all_checkpoints: list[Path]) -> str:
    """A short name for a checkpoint: its file stem, or its parent folder too when stems clash."""
    stems = [c.stem for c in all_checkpoints]
    if stems.count(checkpoint.stem) == 1:
        return checkpoint.stem
    return f"{checkpoint.parent.name}/{checkpoint.stem}"


def write_rate_accuracy_report(out: Path, results: dict, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [write_json(out / "results.json", {**results, "command": command})]
    lines = [
        "# Accuracy against bitrate, per codec family",
        "",
        f"Test split of `{results['data']}` (fold {results['fold']}, {results['clips']} clips), "
        "each clip coded through every rung of each family's ladder; kbps is the achieved "
        "payload bitrate measured on the coded clips.",
        "",
        "```sh",
        command,
        "```",
        "",
    ]
    for k, (label, paths) in enumerate(results["models"].items()):
        png = out / f"accuracy_vs_kbps_{k + 1}.png"
        written.append(plot_accuracy_vs_kbps(paths, png, f"{label}: accuracy against bitrate"))
        rows = [[f"`{p['path']}`", f"{p['kbps']:.1f}", f"{p['accuracy']:.3f}"] for p in paths]
        lines += [
            f"## `{label}`",
            "",
            markdown_table(["path", "kbps", "accuracy"], rows),
            "",
            f"![accuracy against bitrate]({png.name})",
            "",
        ]
    lines += [
        "## Bjøntegaard-style summary",
        "",
        "Mean accuracy of B minus A over the bitrates both curves cover (log-rate axis, "
        "piecewise-linear). Positive: B is more accurate at equal bitrate. Intervals: 95 % over "
        f"{BOOTSTRAP} resamples of the test clips, the same clips for both curves; a difference "
        "is beyond the noise only where its interval excludes zero.",
        "",
        markdown_table(
            ["compares", "within", "A", "B", "B - A (points)", "95 % interval", "common kbps"],
            [_comparison_cells(r) for r in results["comparisons"]],
        ),
        "",
    ]
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def _comparison_cells(r: dict) -> list[str]:
    return [
        r["kind"],
        f"`{r['within']}`",
        f"`{r['a']}`",
        f"`{r['b']}`",
        f"{100 * r['difference']:+.1f}",
        "[{:+.1f}, {:+.1f}]".format(*(100 * x for x in r["ci"])) if "ci" in r else "n/a",
        f"{r['kbps_from']:.0f}-{r['kbps_to']:.0f}",
    ]
