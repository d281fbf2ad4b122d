"""Reports of accuracy per codec path: one results schema, CSV, Markdown and plots.

Every ``results.json`` a report writes has a top-level ``"paths"`` list, one object per codec
path with at least ``"path"`` (``"none"`` for the uncoded reference, else the canonical spec),
``"kbps"`` (achieved, measured) and ``"accuracy"`` (0-1), so any tool, and the edge choosing a
codec, can read any report (``RESULTS_SCHEMA``). Plots are matplotlib PNGs next to the tables.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt
import numpy as np

from asc.codecs import CODECS, parse_spec
from training.augment import UNCODED

PCM_BITS = 16

_PATH_SCHEMA = {
    "type": "object",
    "required": ["path", "kbps", "accuracy"],
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": '"none" for the uncoded reference, else the canonical codec spec',
        },
        "kbps": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "achieved codec payload bitrate, measured; uncoded: 16-bit PCM",
        },
        "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "relative_decrease": {
            "type": ["number", "null"],
            "description": "(uncoded accuracy - accuracy) / uncoded accuracy, a fraction",
        },
        "quality": {
            "type": ["number", "null"],
            "description": "mean perceptual quality score (see the report's quality_metric)",
        },
    },
}
RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "asc-stream results.json",
    "type": "object",
    "required": ["paths"],
    "properties": {
        "paths": {"type": "array", "minItems": 1, "items": _PATH_SCHEMA},
        "conditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["condition", "paths"],
                "properties": {
                    "condition": {"type": "integer", "minimum": 1, "maximum": 7},
                    "paths": {"type": "array", "minItems": 1, "items": _PATH_SCHEMA},
                },
            },
        },
        "detectors": {
            "type": "object",
            "required": ["naive", "masked"],
            "additionalProperties": {
                "type": "object",
                "required": ["paths"],
                "properties": {"paths": {"type": "array", "minItems": 1, "items": _PATH_SCHEMA}},
            },
        },
    },
}


# --- numbers --------------------------------------------------------------------------------


def uncoded_kbps(rate: int, channels: int = 1) -> float:
    """The bitrate of the uncoded reference: 16-bit PCM at the model's rate and channels."""
    return rate * channels * PCM_BITS / 1000


def family_of_path(spec: str) -> str:
    """``none``, a codec family (``aac`` for aac and fdk-aac), or ``sbc>aac`` for a chain."""
    if spec == UNCODED:
        return UNCODED
    return ">".join(CODECS[stage.name].family for stage in parse_spec(spec).stages)


def relative_decrease(reference: float | None, accuracy: float) -> float | None:
    """(reference - accuracy) / reference, as a fraction; None without a usable reference."""
    if reference is None or reference <= 0:
        return None
    return (reference - accuracy) / reference


def r_squared(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Coefficient of determination of the least-squares line through (x, y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1] ** 2)


# --- files ----------------------------------------------------------------------------------


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- markdown -------------------------------------------------------------------------------


def percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.{digits}f} %"


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """``align``: one of l/r per column (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def paths_table(paths: Sequence[dict], quality_name: str | None = None) -> str:
    """The ASC paper's Experiment A table: path, kbps, (quality), accuracy, relative decrease."""
    header = ["path", "kbps", *([quality_name] if quality_name else []), "accuracy"]
    header.append("relative decrease")
    rows = []
    for p in paths:
        row = [f"`{p['path']}`", f"{p['kbps']:.1f}"]
        if quality_name:
            row.append(number(p.get("quality"), 2))
        row.append(f"{p['accuracy']:.3f}")
        row.append("n/a" if p["path"] == UNCODED else percent(p.get("relative_decrease")))
        rows.append(row)
    return markdown_table(header, rows)


def per_class_table(paths: Sequence[dict], classes: Sequence[str]) -> str:
    header = ["class", *(f"`{p['path']}`" for p in paths)]
    rows = [[c, *(f"{p['per_class'][c]:.2f}" for p in paths)] for c in classes]
    return markdown_table(header, rows)


def confusion_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """Rows: true class; columns: predicted, numbered as in the row labels (keeps it narrow)."""
    header = ["true \\ predicted", *(str(i) for i in range(len(classes)))]
    rows = [
        [f"{i} {c}", *(str(v) if v else "·" for v in confusion[i])] for i, c in enumerate(classes)
    ]
    return markdown_table(header, rows)


def confusion_sections(paths: Sequence[dict], classes: Sequence[str]) -> str:
    """One collapsible block per path, so the README stays readable."""
    blocks = []
    for p in paths:
        blocks.append(
            f"<details><summary><code>{p['path']}</code>: accuracy {p['accuracy']:.3f}"
            f"</summary>\n\n{confusion_table(p['confusion'], classes)}\n\n</details>"
        )
    return "\n\n".join(blocks)


# --- plots ----------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 4.5):
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _label_points(ax, points: Sequence[tuple[str, float, float]]) -> None:
    """Name each point beside it, moving a name up or down until it overlaps no earlier name
    (and no marker). Call after the axes' scales and limits are set."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the data -> pixel transform
    to_pixels = ax.transData.transform
    points_per_pixel = 72 / fig.dpi
    char_w, line_h = 7 * 0.62 / points_per_pixel, 7 * 1.3 / points_per_pixel  # 7-pt text
    markers = [to_pixels((x, y)) for _, x, y in points]
    boxes: list[tuple[float, float, float, float]] = [
        (mx - 4, my - 4, mx + 4, my + 4) for mx, my in markers
    ]
    for (name, x, y), (mx, my) in zip(points, markers, strict=True):
        width = char_w * len(name)
        for step in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5):
            dy = 3 / points_per_pixel + step * line_h
            box = (mx + 6, my + dy - 2, mx + 6 + width, my + dy + line_h - 2)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes
            ):
                break
        boxes.append(box)
        ax.annotate(
            name,
            (x, y),
            xytext=(6 * points_per_pixel, dy * points_per_pixel),
            textcoords="offset points",
            fontsize=7,
        )


def plot_accuracy_vs_kbps(paths: Sequence[dict], path: Path, title: str) -> Path:
    """Accuracy against achieved bitrate, one line per codec family; uncoded as a dashed line."""
    fig, ax = _figure()
    reference = next((p for p in paths if p["path"] == UNCODED), None)
    families = sorted({p.get("family") or family_of_path(p["path"]) for p in paths} - {UNCODED})
    for family in families:
        group = sorted(
            (p for p in paths if (p.get("family") or family_of_path(p["path"])) == family),
            key=lambda p: p["kbps"],
        )
        ax.plot(
            [p["kbps"] for p in group], [p["accuracy"] for p in group], "o-", label=family, ms=6
        )
    if reference:
        ax.axhline(reference["accuracy"], color="k", ls="--", lw=1, label="uncoded")
        ax.plot([reference["kbps"]], [reference["accuracy"]], "k*", ms=9)
    ax.set_xscale("log")
    ticks = [t for t in (8, 16, 32, 64, 128, 256, 512) if 0.7 * _min_kbps(paths) <= t]
    ticks = [t for t in ticks if t <= 1.3 * max(p["kbps"] for p in paths)]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("achieved bitrate (kbps, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _label_points(ax, [(p["path"], p["kbps"], p["accuracy"]) for p in paths])
    return save_figure(fig, path)


def _min_kbps(paths: Sequence[dict]) -> float:
    return min(p["kbps"] for p in paths)


def plot_accuracy_vs_quality(
    paths: Sequence[dict], path: Path, quality_name: str, title: str
) -> tuple[Path, float | None]:
    """Accuracy against the mean perceptual quality of each path, with a fitted line and R^2.

    The line and R^2 are over the coded paths (as the ASC paper's ODG figure); the uncoded
    reference is drawn as a star.
    """
    scored = [p for p in paths if p.get("quality") is not None]
    coded = [p for p in scored if p["path"] != UNCODED]
    fig, ax = _figure()
    x = [p["quality"] for p in coded]
    y = [p["accuracy"] for p in coded]
    ax.scatter(x, y, s=36, zorder=3, label="coded paths")
    for p in scored:
        if p["path"] == UNCODED:
            ax.plot([p["quality"]], [p["accuracy"]], "k*", ms=9, label="uncoded")
    r2 = r_squared(x, y)
    if r2 is not None:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(min(x), max(x), 50)
        ax.plot(xs, slope * xs + intercept, "--", color="gray", lw=1, label=f"fit, R² = {r2:.2f}")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"{quality_name} (higher: fewer audible artefacts)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    fig.tight_layout()
    _label_points(ax, [(p["path"], p["quality"], p["accuracy"]) for p in scored])
    return save_figure(fig, path), r2


def plot_matrix(
    matrix: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    title: str,
    label: str = "accuracy",
) -> Path:
    """A heat map with the value in each cell (NaN cells left blank)."""
    fig, ax = plt.subplots(
        figsize=(1.2 + 0.85 * len(columns), 1.2 + 0.5 * len(rows)), dpi=110
    )  # fmt: skip
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if not np.isnan(matrix[i, j]):
                color = "white" if matrix[i, j] < 0.6 else "black"
                ax.text(
                    j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                )
    fig.colorbar(image, ax=ax, label=label, fraction=0.04)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


# --- the per-path evaluation report ------------------------------------------------------------


def path_rows(paths: Sequence[dict], classes: Sequence[str], **extra) -> list[dict]:
    """CSV rows: one per path, the headline numbers then per-class accuracy."""
    rows = []
    for p in paths:
        row = {
            **extra,
            "path": p["path"],
            "family": p.get("family") or family_of_path(p["path"]),
            "kbps": round(p["kbps"], 3),
            "accuracy": round(p["accuracy"], 6),
            "relative_decrease": (
                None if p.get("relative_decrease") is None else round(p["relative_decrease"], 6)
            ),
            "quality": None if p.get("quality") is None else round(p["quality"], 4),
            "clips": p.get("clips"),
        }
        row.update({f"accuracy_{c}": round(p["per_class"][c], 4) for c in classes})
        rows.append(row)
    return rows


def worst_relative_accuracy(paths: Sequence[dict]) -> tuple[str, float] | None:
    """The coded path that keeps the smallest share of the uncoded accuracy, and that share."""
    coded = [p for p in paths if p["path"] != UNCODED and p.get("relative_decrease") is not None]
    if not coded:
        return None
    worst = max(coded, key=lambda p: p["relative_decrease"])
    return worst["path"], 1 - worst["relative_decrease"]


def write_evaluation_report(out: Path, results: dict, command: str) -> list[Path]:
    """results.json, results.csv, README.md and two plots for one model across codec paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths, classes = results["paths"], results["classes"]
    metric = results.get("quality_metric")
    quality_name = metric["short"] if metric else None
    written = [
        write_json(out / "results.json", {**results, "command": command}),
        write_csv(out / "results.csv", path_rows(paths, classes)),
        plot_accuracy_vs_kbps(
            paths, out / "accuracy_vs_kbps.png", "Accuracy against achieved bitrate"
        ),
    ]
    r2 = None
    if metric:
        png, r2 = plot_accuracy_vs_quality(
            paths, out / "accuracy_vs_quality.png", quality_name,
            f"Accuracy against {quality_name}",
        )  # fmt: skip
        written.append(png)
    lines = _evaluation_summary_lines(results, command, quality_name)
    if metric:
        lines += _quality_lines(results, metric, r2)
    lines += [
        "## Accuracy per class",
        "",
        per_class_table(paths, classes),
        "",
        "## Confusion matrices",
        "",
        "Rows: true class; columns: predicted class, numbered as the rows; · is zero.",
        "",
        confusion_sections(paths, classes),
        "",
    ]
    readme = out / "README.md"
    readme.write_text("\n".join(lines))
    return [*written, readme]


def _evaluation_summary_lines(results: dict, command: str, quality_name: str | None) -> list[str]:
    """The evaluation report's opening: what was scored on what, and accuracy per path."""
    paths = results["paths"]
    lines = [
        "# Accuracy per codec path",
        "",
        f"Model `{results['checkpoint']}` (trained with: "
        f"{', '.join(f'`{c}`' for c in results.get('codec_conditions') or []) or 'n/a'}), "
        f"evaluated on the test split of `{results['data']}` ({results['clips']} clips), each "
        "clip coded through the path first. kbps is the achieved codec payload bitrate measured "
        "on the coded clips (uncoded: 16-bit PCM).",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Accuracy per path (Experiment A)",
        "",
        paths_table(paths, quality_name),
        "",
    ]
    worst = worst_relative_accuracy(paths)
    if worst:
        lines += [
            f"Lowest share of the uncoded accuracy kept: {percent(worst[1])} on `{worst[0]}`.",
            "",
        ]
    return [*lines, "![accuracy against achieved kbps](accuracy_vs_kbps.png)", ""]


def _quality_lines(results: dict, metric: dict, r2: float | None) -> list[str]:
    quality_name = metric["short"]
    fit = f"; R² of a straight-line fit over the coded paths: {r2:.2f}" if r2 is not None else ""
    return [
        f"## Accuracy against perceptual quality ({quality_name})",
        "",
        f"Quality: {metric['name']} from `{metric['package']}` {metric['version']}, mean over "
        f"{results['quality_clips']} clips per path spread over the test split; scale "
        f"{metric['scale']}. This stands in for the ASC paper's PEAQ ODG (no maintained PEAQ "
        f"package installs here); it is not an ODG{fit}.",
        "",
        "![accuracy against perceptual quality](accuracy_vs_quality.png)",
        "",
    ]
