"""Pooling fold reports: per-clip predictions in, accuracies with bootstrap intervals out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.experiments.fold_summary import summarize, write_summary

SPECS = ("none", "aac:32k", "mp3:64k", "mp3:32k", "aac:48k", "aac:64k", "opus:64k", "sbc:64k")


def predictions(truth: np.ndarray, correct: int, rng) -> list[int]:
    """``correct`` of the clips right (a random choice of which), the rest off by one class."""
    right = np.zeros(len(truth), bool)
    right[rng.choice(len(truth), correct, replace=False)] = True
    return np.where(right, truth, (truth + 1) % 4).tolist()


def paths(truth, rng, correct: dict[str, int]) -> list[dict]:
    return [
        {"path": s, "kbps": 32.0 if s != "none" else 705.6, "accuracy": correct[s] / len(truth),
         "predicted": predictions(truth, correct[s], rng), "quality": None}
        for s in correct
    ]  # fmt: skip


def write_folds(root: Path, folds: int = 2, clips: int = 100) -> None:
    rng = np.random.default_rng(0)
    for fold in range(1, folds + 1):
        truth = rng.integers(0, 4, clips)
        names = [f"audio/{fold}-{i}.flac" for i in range(clips)]
        common = {"data": "k20", "clips": clips, "test_clips": names, "truth": truth.tolist()}
        conditions = [
            {"condition": c, "name": f"condition {c}",
             "paths": paths(truth, rng, {s: 70 if s == "none" else 35 for s in SPECS})}
            for c in (1, 2)
        ]  # fmt: skip
        training = {"epochs": 30, "epoch_size": 600}
        reports = {
            "codec-augmentation": {**common, "conditions": conditions, "training": training},
            "ensemble": {**common, "paths": paths(truth, rng, {"none": 80, "sbc:64k": 60})},
            "ensemble-recipe": {**common, "paths": paths(truth, rng, {"none": 80, "sbc:64k": 79})},
        }
        for name, report in reports.items():
            out = root / name / f"fold{fold}"
            out.mkdir(parents=True)
            (out / "results.json").write_text(json.dumps(report))


def test_pooled_figures_and_intervals(tmp_path: Path) -> None:
    write_folds(tmp_path)
    results = summarize(tmp_path)
    assert results["folds"] == 2 and results["clips"] == 200
    recipe = {r["path"]: r for r in results["models"]["ensemble-recipe"]}
    assert recipe["none"]["accuracy"] == pytest.approx(0.80)
    assert recipe["sbc:64k"]["relative"] == pytest.approx(79 / 80)
    low, high = recipe["sbc:64k"]["relative_ci"]
    assert low < 79 / 80 < high
    assert recipe["none"]["fold_accuracy"] == [0.8, 0.8]
    plain = {r["path"]: r for r in results["models"]["ensemble"]}
    assert plain["sbc:64k"]["relative"] == pytest.approx(0.75)
    assert plain["sbc:64k"]["relative_ci"][1] < 0.97  # clearly below the goal
    # Same uncoded accuracy: the paired interval must straddle zero.
    same = results["comparisons"]["recipe minus ensemble, uncoded"]
    assert same["difference"] == pytest.approx(0.0) and same["ci"][0] < 0 < same["ci"][1]
    # 0.80 against 0.70 on 200 clips: a difference the interval resolves.
    better = results["comparisons"]["ensemble minus FCNN alone (condition 2), uncoded"]
    assert better["difference"] == pytest.approx(0.10) and better["ci"][0] > 0
    calibration = {r["path"]: r for r in results["calibration"]}
    assert calibration["aac:32k"]["real"] == pytest.approx(0.5)
    assert calibration["aac:32k"]["paper_tau"] == pytest.approx(0.458 / 0.703)


def test_report_quotes_its_figures(tmp_path: Path) -> None:
    write_folds(tmp_path)
    written = write_summary(tmp_path, summarize(tmp_path), "asc-train summarize-folds x")
    assert {p.name for p in written} == {"results.json", "kept_per_path.png", "README.md"}
    readme = (tmp_path / "README.md").read_text()
    assert "`sbc:64k`" in readme and "0.790" in readme
    assert "98.8 %" in readme and "missed" not in readme.split("Against the goals")[1][:200]


def test_missing_or_mismatched_folds_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no fold reports under codec-augmentation/"):
        summarize(tmp_path)
    write_folds(tmp_path)
    report = tmp_path / "ensemble" / "fold1" / "results.json"
    data = json.loads(report.read_text())
    data["test_clips"] = data["test_clips"][::-1]
    report.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="tested different clips"):
        summarize(tmp_path)


def test_a_remedy_is_summarized_on_its_own_folds_against_the_recipe(tmp_path: Path) -> None:
    write_folds(tmp_path)
    recipe = json.loads((tmp_path / "ensemble-recipe" / "fold1" / "results.json").read_text())
    truth = np.array(recipe["truth"])
    remedy = {
        **recipe,
        "paths": paths(truth, np.random.default_rng(1), {"none": 80, "sbc:64k": 80}),
    }
    (tmp_path / "ensemble-broad" / "fold1").mkdir(parents=True)
    (tmp_path / "ensemble-broad" / "fold1" / "results.json").write_text(json.dumps(remedy))
    results = summarize(tmp_path)
    broad = results["remedies"]["ensemble-broad"]
    assert broad["fold_numbers"] == [1]
    assert {r["path"]: r["relative"] for r in broad["paths"] if "relative" in r} == {
        "sbc:64k": pytest.approx(1.0)
    }
    assert broad["minus_recipe"]["sbc:64k"]["difference"] == pytest.approx(0.01)
    write_summary(tmp_path, results, "asc-train summarize-folds x")
    readme = (tmp_path / "README.md").read_text()
    assert "## ensemble-broad" in readme
    # judged against the goal like the recipe: it keeps every uncoded-accuracy point on sbc:64k
    goals = readme.split("## Against the goals")[1]
    assert "- ensemble-broad (fold 1): lowest share kept 100.0 % on `sbc:64k`" in goals
    assert "on every path: met." in goals.split("- ensemble-broad")[1].splitlines()[0]


def test_calibration_goal_names_the_paths_outside_ten_points():
    from training.experiments.fold_summary import _goal_lines

    rows = [
        {"path": "aac:32k", "generated_minus_real": 0.04},
        {"path": "sbc:64k", "generated_minus_real": -0.25},
        {"path": "opus:64k", "generated_minus_real": None},
    ]
    recipe = [{"path": "none", "accuracy": 0.7}, {"path": "aac:32k", "relative": 0.99,
                                                   "relative_ci": (0.95, 1.02)}]  # fmt: skip
    lines = _goal_lines(
        {"models": {"ensemble-recipe": recipe}, "comparisons": {}, "calibration": rows}
    )
    text = "\n".join(lines)
    assert "largest gap -25 points on `sbc:64k`" in text
    assert "missed on `sbc:64k`." in text
    rows[1]["generated_minus_real"] = -0.08
    assert "points on every path: met." in "\n".join(
        _goal_lines({"models": {"ensemble-recipe": recipe}, "comparisons": {}, "calibration": rows})
    )


def test_a_missed_goal_names_each_path_below_it_and_whether_the_noise_covers_it():
    from training.experiments.fold_summary import _kept_line

    rows = [
        {"path": "none", "accuracy": 0.7},
        {"path": "opus:16k", "relative": 0.944, "relative_ci": [0.894, 0.992]},
        {"path": "mp3:32k", "relative": 0.80, "relative_ci": [0.73, 0.87]},
        {"path": "aac:64k", "relative": 1.01, "relative_ci": [0.98, 1.04]},
    ]
    line = _kept_line("X", rows)
    assert line.startswith("- X: lowest share kept 80.0 % on `mp3:32k`")
    assert line.endswith(
        "missed: `mp3:32k` 80.0 %; `opus:16k` 94.4 %, its interval reaching the goal."
    )


def test_a_paths_misses_are_found_class_by_class(tmp_path: Path) -> None:
    """A remedy that loses its path's clips in one class: the summary names that class, its
    clips right uncoded and on the path, and what they were taken for; a class that lost one
    clip is not named."""
    write_folds(tmp_path)
    recipe = json.loads((tmp_path / "ensemble-recipe" / "fold1" / "results.json").read_text())
    truth = np.array(recipe["truth"])
    uncoded = truth.copy()
    coded = truth.copy()
    coded[np.flatnonzero(truth == 2)[:6]] = 3  # six clips of class "c" taken for "d"
    coded[np.flatnonzero(truth == 0)[:1]] = 1  # one of class "a": under the two named
    remedy = {
        **recipe,
        "classes": ["a", "b", "c", "d"],
        "paths": [
            {"path": "none", "kbps": 705.6, "predicted": uncoded.tolist(), "quality": None},
            {"path": "sbc:64k", "kbps": 66.0, "predicted": coded.tolist(), "quality": None},
        ],
    }
    (tmp_path / "ensemble-broad" / "fold1").mkdir(parents=True)
    (tmp_path / "ensemble-broad" / "fold1" / "results.json").write_text(json.dumps(remedy))
    results = summarize(tmp_path)
    (miss,) = results["misses"]["ensemble-broad"]
    assert miss["path"] == "sbc:64k" and miss["lost"] == 7 and miss["clips"] == 100
    (row,) = miss["classes"]
    c_clips = int((truth == 2).sum())
    assert row == {"class": "c", "clips": c_clips, "right_uncoded": c_clips,
                   "right": c_clips - 6, "taken_for": "d", "taken_for_clips": 6}  # fmt: skip
    write_summary(tmp_path, results, "asc-train summarize-folds x")
    lines = (tmp_path / "README.md").read_text().split("## Where the misses lie")[1]
    assert (
        f"- ensemble-broad, `sbc:64k`: 7 of 100 clips lost net; the classes that lost two or "
        f"more lost 6 together: c {c_clips} -> {c_clips - 6} of {c_clips} (6 taken for d)."
    ) in lines
