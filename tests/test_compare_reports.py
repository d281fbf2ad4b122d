"""asc-train compare: two evaluation reports paired clip by clip, with bootstrap intervals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.compare_reports import compare, comparison_table

CLIPS = 60
TRUTH = [k % 3 for k in range(CLIPS)]


def report(folder: Path, right: dict[str, int], clips: list[str] | None = None) -> Path:
    """An evaluate-style results.json whose model gets the first ``right[path]`` clips right."""
    paths = []
    for path, count in right.items():
        predicted = [t if k < count else (t + 1) % 3 for k, t in enumerate(TRUTH)]
        paths.append({"path": path, "kbps": 64.0, "quality": None, "predicted": predicted})
    folder.mkdir(parents=True)
    results = {
        "truth": TRUTH,
        "test_clips": clips or [f"clip{k}.wav" for k in range(CLIPS)],
        "paths": paths,
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_a_model_against_itself_differs_by_nothing_with_no_spread(tmp_path: Path):
    a = report(tmp_path / "a", {"none": 40, "sbc:64k": 30})
    result = compare(a, a)
    for row in result["rows"]:
        assert row["accuracy"]["difference"] == 0 and row["accuracy"]["ci"] == (0.0, 0.0)
    assert "within the noise" in comparison_table(result)


def test_a_large_paired_gain_is_called_and_a_small_one_is_not(tmp_path: Path):
    a = report(tmp_path / "a", {"none": 40, "sbc:64k": 20, "mp3:32k": 30})
    b = report(tmp_path / "b", {"none": 40, "sbc:64k": 44, "mp3:32k": 31})
    rows = {r["path"]: r for r in compare(a, b)["rows"]}
    sbc, mp3 = rows["sbc:64k"], rows["mp3:32k"]
    assert sbc["a"] == pytest.approx(20 / CLIPS) and sbc["b"] == pytest.approx(44 / CLIPS)
    assert sbc["accuracy"]["difference"] == pytest.approx(24 / CLIPS)
    assert sbc["accuracy"]["ci"][0] > 0  # 24 of 60 clips gained, none lost
    assert mp3["accuracy"]["ci"][0] <= 0 <= mp3["accuracy"]["ci"][1]  # one clip is noise
    # the share of the uncoded accuracy kept: 44/40 against 20/40
    assert sbc["kept"]["difference"] == pytest.approx(24 / 40)
    assert "none" not in {p for p, r in rows.items() if "kept" in r}


def test_folds_pool_and_reports_on_other_clips_are_refused(tmp_path: Path):
    for k in (1, 2):
        report(tmp_path / "a" / f"fold{k}", {"none": 30})
        report(tmp_path / "b" / f"fold{k}", {"none": 45})
    pooled = compare(tmp_path / "a", tmp_path / "b")["rows"][0]
    assert pooled["accuracy"]["clips"] == 2 * CLIPS
    assert pooled["accuracy"]["difference"] == pytest.approx(15 / CLIPS)

    other = report(tmp_path / "c", {"none": 30}, clips=[f"x{k}.wav" for k in range(CLIPS)])
    with pytest.raises(ValueError, match="tested different clips"):
        compare(tmp_path / "a" / "fold1", other)
    with pytest.raises(ValueError, match="fold"):
        compare(tmp_path / "a", other)


def test_the_command_prints_the_table_and_names_a_missing_report(tmp_path: Path):
    a = report(tmp_path / "a", {"none": 40, "sbc:64k": 20})
    b = report(tmp_path / "b", {"none": 40, "sbc:64k": 50})
    run = [sys.executable, "-m", "training.cli", "compare"]
    done = subprocess.run([*run, str(a), str(b)], capture_output=True, text=True, check=True)
    assert "| `sbc:64k` | 60 | 0.333 | 0.833 | +50.0 |" in done.stdout
    assert "b higher" in done.stdout
    missing = subprocess.run([*run, str(a), str(tmp_path / "nowhere")], capture_output=True,
                             text=True)  # fmt: skip
    assert missing.returncode == 2 and "nowhere" in missing.stderr
