"""Two evaluation reports side by side, clip by clip, with the noise measured.

Whether a retrained model beats the one it would replace is a paired question: both were scored
on the same test clips, so what counts is the clips one gets right and the other does not. A
test split of a few hundred clips moves an accuracy by a third of a point per clip; this puts a
95 % bootstrap interval (clips resampled, the same draw for both models) on every difference, so
that one is only called better where the interval excludes zero.

Each side is an ``asc-train evaluate`` report (a folder with results.json, or the file), or a
folder of fold reports (``fold*/results.json``, as ``scripts/real-audio-reports.sh`` writes),
whose folds are pooled and resampled within each fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.augment import UNCODED
from training.experiments.fold_summary import (
    Outcomes,
    check_same_clips,
    fold_numbers,
    interval,
    outcomes,
    paired,
    ratio,
    read_folds,
)
from training.report import markdown_table


def read_reports(where: Path) -> list[dict]:
    """The report(s) at ``where``: one results.json, or every fold of a folder of folds."""
    if where.is_file():
        return [json.loads(where.read_text())]
    if (where / "results.json").is_file():
        return [json.loads((where / "results.json").read_text())]
    folds = sorted(fold_numbers(where))
    if not folds:
        raise ValueError(f"{where}: no results.json and no fold*/results.json")
    return read_folds(where, folds)


def _kept_difference(a: Outcomes, a0: Outcomes, b: Outcomes, b0: Outcomes, rng) -> dict:
    """Share of its own uncoded accuracy that b keeps minus the share a keeps, paired."""

    def stat(pa, pa0, pb, pb0):
        return ratio(pb, pb0) - ratio(pa, pa0)

    flat = [np.concatenate(o.folds) for o in (a, a0, b, b0)]
    low, high = interval(stat, [a.folds, a0.folds, b.folds, b0.folds], rng)
    return {"difference": stat(*flat), "ci": (low, high)}


def compare(a_where: Path, b_where: Path, seed: int = 0) -> dict:
    """Per path both accuracies, b minus a with its interval, and the same for the share of
    the uncoded accuracy kept (where both reports scored the uncoded path)."""
    names = (str(a_where), str(b_where))
    reports_a, reports_b = read_reports(a_where), read_reports(b_where)
    check_same_clips(reports_a, reports_b, names=names)
    table_a, table_b = outcomes(reports_a), outcomes(reports_b)
    common = [path for path in table_a if path in table_b]
    if not common:
        raise ValueError(f"{names[0]} and {names[1]} share no codec path")
    rng = np.random.default_rng(seed)
    rows = []
    for path in common:
        a, b = table_a[path], table_b[path]
        row = {"path": path, "a": a.accuracy, "b": b.accuracy, "accuracy": paired(b, a, rng)}
        if path != UNCODED and UNCODED in common:
            row["kept"] = _kept_difference(a, table_a[UNCODED], b, table_b[UNCODED], rng)
        rows.append(row)
    return {"a": names[0], "b": names[1], "seed": seed, "rows": rows}


def verdict(ci: tuple[float, float]) -> str:
    if ci[0] > 0:
        return "b higher"
    if ci[1] < 0:
        return "b lower"
    return "within the noise"


def comparison_table(result: dict) -> str:
    def points(value: float) -> str:
        return f"{100 * value:+.1f}"

    def span(ci: tuple[float, float]) -> str:
        return f"[{points(ci[0])}, {points(ci[1])}]"

    lines = [f"a: {result['a']}", f"b: {result['b']}", ""]
    header = ["path", "clips", "a", "b", "b - a, points", "95 % interval", "verdict", "kept, b - a"]
    body = []
    for r in result["rows"]:
        acc = r["accuracy"]
        kept = r.get("kept")
        body.append(
            [
                f"`{r['path']}`",
                str(acc["clips"]),
                f"{r['a']:.3f}",
                f"{r['b']:.3f}",
                points(acc["difference"]),
                span(acc["ci"]),
                verdict(acc["ci"]),
                f"{points(kept['difference'])} {span(kept['ci'])}" if kept else "",
            ]
        )
    lines.append(markdown_table(header, body, align="l" + "r" * 5 + "lr"))
    return "\n".join(lines)
