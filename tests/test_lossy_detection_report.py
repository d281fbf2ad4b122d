"""``asc-train experiment lossy-detection`` end to end on a small generated lossless corpus.

Real codecs build DS1 and DS2, two small detectors train for a few steps, and the report is read
back: the results schema, DS2 as DS1 plus a cutoff, every accuracy recomputed from the per-file
scores, the F1 curves, the plots and the lossless files flagged lossy.
"""

import csv
import json
from collections import defaultdict
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from asc.checkpoint import load
from tests.test_reports import asc_train, assert_png
from training.corpora import write_lossless_corpus
from training.detector_data import DS1_CODECS
from training.report import RESULTS_SCHEMA

TRACKS = 20


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lossy")
    data = write_lossless_corpus(root / "data", TRACKS, seed=5, seconds=3.0, workers=2)
    out = root / "report"
    result = asc_train(
        "experiment",
        "lossy-detection",
        *("--data", str(data), "--out", str(out), "--epochs", "2", "--steps-per-epoch", "6"),
        *("--batch-size", "8", "--cache-dir", str(root / "cache"), "--workers", "2"),
        *("--checkpoints", str(root / "checkpoints"), "--device", "cpu"),
    )
    assert "| cutoff | mp3 No | mp3 Mask |" in result.stdout  # Table 2 is printed
    return out


@pytest.fixture(scope="module")
def results(report) -> dict:
    return json.loads((report / "results.json").read_text())


@pytest.fixture(scope="module")
def files(report) -> list[dict]:
    with open(report / "files.csv", newline="") as f:
        return list(csv.DictReader(f))


def accuracy(rows: list[dict], detector: str, threshold: float = 0.5) -> float:
    return float(
        np.mean(
            [(float(r[f"score_{detector}"]) >= threshold) == (r["set"] != "lossless") for r in rows]
        )
    )


def test_results_follow_the_schema_with_both_detectors(results):
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert set(results["detectors"]) == {"naive", "masked"}
    assert results["detectors"]["naive"]["mask_prob"] == 0.0
    assert results["detectors"]["masked"]["mask_prob"] == 1.0
    assert results["paths"] == results["detectors"]["masked"]["paths"]
    for name, detector in results["detectors"].items():
        assert load(detector["checkpoint"]).config["mask_prob"] == detector["mask_prob"], name
        assert detector["paths"][0]["path"] == "none"
        assert detector["paths"][0]["kbps"] == pytest.approx(1411.2)  # 16-bit stereo 44.1 kHz


def test_ds2_is_ds1_with_a_cutoff_on_a_70_10_20_split(results, files):
    splits = results["splits"]
    assert sum(splits.values()) == TRACKS
    assert (splits["train"], splits["val"], splits["test"]) == (14, 2, 4)
    assert len(files) == 3 * splits["test"] == results["test_files"]
    by_track = defaultdict(dict)
    for row in files:
        by_track[row["track"]][row["set"]] = row
    assert len(by_track) == splits["test"]
    for track, sets in by_track.items():
        assert sets["lossless"]["path"] == "none"
        ds1, ds2 = sets["ds1"]["path"], sets["ds2"]["path"]
        assert ds1 in DS1_CODECS, track
        cutoff = int(sets["ds2"]["cutoff_hz"])
        assert cutoff in (14000, 16000, 18000, 20000)
        assert ds2 == f"{ds1},cutoff={cutoff // 1000}k"


def test_every_accuracy_follows_from_the_file_scores(results, files):
    for name, detector in results["detectors"].items():
        lossless = [r for r in files if r["set"] == "lossless"]
        assert detector["lossless_accuracy"] == pytest.approx(accuracy(lossless, name))
        for key, dataset in (("paths", "ds2"), ("ds1_paths", "ds1")):
            for p in detector[key]:
                rows = [r for r in files if r["path"] == p["path"]]
                if p["path"] != "none":
                    assert all(r["set"] == dataset for r in rows)
                assert p["files"] == len(rows)
                assert p["accuracy"] == pytest.approx(accuracy(rows, name))
        for dataset in ("ds1", "ds2"):
            row = detector["table1"][dataset]
            lossy = [r for r in files if r["set"] == dataset]
            assert row["all"] == pytest.approx(accuracy(lossless + lossy, name))
            for spec in DS1_CODECS:
                chosen = [r for r in lossy if r["path"].split(",")[0] == spec]
                assert row[spec] == (pytest.approx(accuracy(chosen, name)) if chosen else None)
        table2 = detector["table2"]
        assert list(table2) == ["14k", "16k", "18k", "20k", "mean"]
        ds2 = [r for r in files if r["set"] == "ds2"]
        assert table2["mean"]["mean"] == pytest.approx(accuracy(ds2, name))
        for cutoff in ("14k", "16k", "18k", "20k"):
            chosen = [r for r in ds2 if r["cutoff_hz"] == str(int(cutoff[:-1]) * 1000)]
            expected = pytest.approx(accuracy(chosen, name)) if chosen else None
            assert table2[cutoff]["mean"] == expected
        flagged = {x["track"] for x in detector["flagged_lossless"]}
        assert flagged == {r["track"] for r in lossless if float(r[f"score_{name}"]) >= 0.5}


def test_f1_curves_and_bitrates(results, files):
    lossless = np.array([float(r["score_masked"]) for r in files if r["set"] == "lossless"])
    for codec, curve in results["detectors"]["masked"]["f1"].items():
        assert len(curve["f1"]) == len(results["thresholds"]) == 99
        assert curve["peak"] == max(curve["f1"]) and curve["area"] == pytest.approx(
            np.mean(curve["f1"]), abs=1e-4
        )
        positives = np.array(
            [float(r["score_masked"]) for r in files if r["set"] == "ds2" and r["codec"] == codec]
        )
        t = curve["peak_threshold"]
        tp, fp = np.sum(positives >= t), np.sum(lossless >= t)
        fn = len(positives) - tp
        assert curve["peak"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-4)
    for p in results["paths"][1:]:
        asked = int(p["path"].split(":")[1].split("k")[0])
        assert asked * 0.85 < p["kbps"] < asked * 1.15, p  # CBR, and Vorbis's managed bitrate


def test_report_files_and_plots(report, results):
    readme = (report / "README.md").read_text()
    assert "(Table 1)" in readme and "(Table 2)" in readme and "Lossless accuracy" in readme
    assert "| masked | DS2 |" in readme and "| **mean** |" in readme
    assert_png(report / "f1_vs_threshold.png")
    saliency = sorted(report.glob("saliency-*.png"))
    assert len(saliency) == 3
    for png in saliency:
        assert_png(png)
        assert f"({png.name})" in readme
    for name, detector in results["detectors"].items():
        png = report / f"flagged-lossless-{name}.png"
        assert png.exists() == bool(detector["flagged_lossless"])
        if detector["flagged_lossless"]:
            assert_png(png)
    with open(report / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["detector"] for r in rows} == {"naive", "masked"}
    assert {r["data"] for r in rows} == {"DS1", "DS2"}
