"""Reports per codec path, end to end on a small generated corpus with real codecs and models.

``asc-train evaluate`` (the shipped ensemble) and ``asc-train experiment codec-augmentation``
(seven small FCNNs) run as a user would run them; the tests read back what they wrote and check
the one results schema, the files, the plots and that the numbers agree with each other.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from asc.audio import load
from asc.checkpoint import load as load_checkpoint
from training.augment import CodedCache, measurement_path
from training.corpora import write_scene_corpus
from training.report import RESULTS_SCHEMA, relative_decrease

ROOT = Path(__file__).resolve().parent.parent
ENSEMBLE = ROOT / "models" / "ensemble.safetensors"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """A TAU-layout corpus: 6 clips per class of 4 s (40 train, 20 test)."""
    root = tmp_path_factory.mktemp("scenes")
    return write_scene_corpus(root, 6, seed=3, seconds=4.0, workers=2, progress=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("coded")


def asc_train(*args: str) -> subprocess.CompletedProcess:
    """Run ``asc-train`` as a user would; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_png(path: Path, min_size: int = 200) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_size, (path, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path} is blank"


def assert_path_consistent(p: dict, reference: float | None) -> None:
    """Accuracy, per-class accuracy and relative decrease all follow from the confusion."""
    confusion = np.array(p["confusion"])
    assert confusion.sum() == p["clips"]
    assert p["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    rows = confusion.sum(axis=1)
    assert list(p["per_class"].values()) == pytest.approx(
        [confusion[i, i] / rows[i] if rows[i] else 0.0 for i in range(len(rows))]
    )
    if reference is not None:
        assert p["relative_decrease"] == pytest.approx((reference - p["accuracy"]) / reference)


def test_coded_copies_keep_their_measurements_and_can_be_measured_again(tmp_path, scenes):
    sources = sorted((scenes / "audio").glob("*.wav"))[:3]
    cache = CodedCache(tmp_path / "cache")
    mapping = cache.ensure(sources, ["mp3:64k"], workers=1, progress=False)
    coded = mapping[(sources[0], "mp3:64k")]
    stamp = coded.stat().st_mtime_ns
    measured = json.loads(measurement_path(coded).read_text())
    assert measured["spec"] == "mp3:64k" and measured["seconds"] == pytest.approx(4.0)
    assert 64 * 0.85 < measured["kbps"] < 64 * 1.15
    assert measured["payload_bytes"] == pytest.approx(measured["kbps"] * 1000 / 8 * 4.0)
    kbps = cache.achieved_kbps(sources, "mp3:64k", workers=1, progress=False)
    measurement_path(coded).unlink()  # a copy made before measurements were kept
    again = cache.achieved_kbps(sources, "mp3:64k", workers=1, progress=False)
    assert again == pytest.approx(kbps)
    assert measurement_path(coded).exists() and coded.stat().st_mtime_ns == stamp
    assert cache.measurements(sources, "none") == []


def test_evaluate_writes_the_experiment_a_report(tmp_path, scenes, cache):
    out = tmp_path / "report"
    result = asc_train(
        "evaluate",
        "--checkpoint",
        str(ENSEMBLE),
        "--data",
        str(scenes),
        "--codecs",
        "aac:64k,mp3:64k,mp3:32k,sbc:64k",  # no "none": the uncoded reference is always added
        "--chains",
        "sbc:bitpool=53>aac:64k",
        "--quality-clips",
        "2",
        "--cache-dir",
        str(cache),
        "--workers",
        "2",
        "--out",
        str(out),
    )
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    paths = {p["path"]: p for p in results["paths"]}
    chain = "sbc:bitpool=53>aac:64k"
    assert list(paths) == ["none", "aac:64k", "mp3:64k", "mp3:32k", "sbc:64k", chain]
    assert results["clips"] == 20 and len(results["classes"]) == 10
    reference = paths["none"]["accuracy"]
    for p in results["paths"]:
        assert p["clips"] == 20
        assert_path_consistent(p, reference)
    assert paths["none"]["relative_decrease"] == 0
    # achieved bitrates, measured on the coded clips, near what was asked
    assert paths["none"]["kbps"] == pytest.approx(705.6)
    for spec, asked in [("aac:64k", 64), ("mp3:64k", 64), ("mp3:32k", 32), ("sbc:64k", 64)]:
        assert asked * 0.85 < paths[spec]["kbps"] < asked * 1.15, (spec, paths[spec]["kbps"])
    assert 64 * 0.85 < paths["sbc:bitpool=53>aac:64k"]["kbps"] < 64 * 1.15  # the last hop's
    assert [p["family"] for p in results["paths"]] == [
        "none",
        "aac",
        "mp3",
        "mp3",
        "sbc",
        "sbc>aac",
    ]
    # perceptual quality: identical audio scores ViSQOL's top; LAME at 32k scores far lower
    metric = results["quality_metric"]
    assert metric["package"] == "visqol-python" and metric["version"]
    assert results["quality_clips"] == 2
    assert paths["none"]["quality"] > 4.5
    assert 1.0 <= paths["mp3:32k"]["quality"] < paths["none"]["quality"] - 1.0
    assert paths["aac:64k"]["quality"] > paths["mp3:32k"]["quality"]

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == list(paths)
    for row in rows:
        assert float(row["accuracy"]) == pytest.approx(paths[row["path"]]["accuracy"], abs=1e-6)
        assert float(row["kbps"]) == pytest.approx(paths[row["path"]]["kbps"], abs=1e-3)
        assert float(row["accuracy_tram"]) == pytest.approx(
            paths[row["path"]]["per_class"]["tram"], abs=1e-4
        )

    readme = (out / "README.md").read_text()
    for p in results["paths"]:
        decrease = "n/a" if p["path"] == "none" else f"{100 * p['relative_decrease']:.1f} %"
        assert f"| `{p['path']}` | {p['kbps']:.1f} | " in readme
        assert f"| {p['accuracy']:.3f} | {decrease} |" in readme
    assert readme.count("<details>") == len(paths)  # one confusion matrix per path
    assert "`visqol-python` 3." in readme and "not an ODG" in readme
    assert "(accuracy_vs_kbps.png)" in readme and "(accuracy_vs_quality.png)" in readme
    assert_png(out / "accuracy_vs_kbps.png")
    assert_png(out / "accuracy_vs_quality.png")
    assert "| `mp3:32k` |" in result.stdout  # the table is printed too


CONDITION_CODECS = {
    1: [],
    2: [],
    3: ["mp3:64k"],
    4: ["mp3:64k", "he-aac:16k"],
    5: ["mp3:64k", "he-aac:32k"],
    6: ["mp3:64k", "he-aac:16k", "aac:32k"],
    7: ["mp3:64k", "he-aac:16k", "aac:32k"],
}


def test_codec_augmentation_experiment_trains_seven_conditions(tmp_path, scenes, cache):
    out = tmp_path / "codec-augmentation"
    checkpoints = tmp_path / "checkpoints"
    result = asc_train(
        "experiment",
        "codec-augmentation",
        "--data",
        str(scenes),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--cache-dir",
        str(cache),
        "--checkpoints",
        str(checkpoints),
        "--workers",
        "2",
        "--device",
        "cpu",
    )
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    evaluation = ["none", "aac:32k", "mp3:64k", "mp3:32k", "aac:48k", "aac:64k"]
    evaluation += ["opus:64k", "sbc:64k"]
    assert results["evaluation_codecs"] == evaluation
    assert results["groups"] == {
        "none": "uncoded",
        "aac:32k": "seen codec and bitrate",
        "mp3:64k": "seen codec and bitrate",
        "mp3:32k": "seen codec, unseen bitrate",
        "aac:48k": "seen codec, unseen bitrate",
        "aac:64k": "seen codec, unseen bitrate",
        "opus:64k": "unseen codec",
        "sbc:64k": "unseen codec",
    }
    conditions = results["conditions"]
    assert [c["condition"] for c in conditions] == [1, 2, 3, 4, 5, 6, 7]
    for c in conditions:
        assert c["training_codecs"] == CONDITION_CODECS[c["condition"]]
        assert c["baseline_augmentations"] == (c["condition"] in (2, 7))
        assert c["train_examples"] == 40 * (1 + len(c["training_codecs"]))
        assert [p["path"] for p in c["paths"]] == evaluation
        reference = c["paths"][0]["accuracy"]
        for p in c["paths"]:
            assert_path_consistent(p, reference if reference > 0 else None)
        # one coded test set for every model: the same measured bitrates
        assert [p["kbps"] for p in c["paths"]] == [p["kbps"] for p in conditions[0]["paths"]]
        model = load_checkpoint(c["checkpoint"]).model
        assert list(model.fine) == ["fcnn"] and not model.coarse
    assert results["paths"] == conditions[6]["paths"] and results["paths_condition"] == 7
    by_path = {p["path"]: p for p in conditions[6]["paths"]}
    assert 32 * 0.85 < by_path["aac:32k"]["kbps"] < 32 * 1.15
    assert 64 * 0.85 < by_path["sbc:64k"]["kbps"] < 64 * 1.15
    for spec, change in results["relative_change_7_over_2"].items():
        a2 = next(p["accuracy"] for p in conditions[1]["paths"] if p["path"] == spec)
        if a2 == 0:
            assert change is None
        else:
            assert change == pytest.approx((by_path[spec]["accuracy"] - a2) / a2)
    assert relative_decrease(None, 0.5) is None

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 * 8
    for row in rows:
        c = conditions[int(row["condition"]) - 1]
        p = next(p for p in c["paths"] if p["path"] == row["path"])
        assert float(row["accuracy"]) == pytest.approx(p["accuracy"], abs=1e-6)
        assert row["group"] == results["groups"][row["path"]]

    readme = (out / "README.md").read_text()
    for c in conditions:
        cells = " | ".join(f"{p['accuracy']:.3f}" for p in c["paths"])
        assert f"| {c['condition']} | {c['name']} | {c['train_examples']} | {cells} |" in readme
    assert "relative change of 7 over 2" in readme and "## Against the goals" in readme
    assert_png(out / "accuracy_matrix.png")
    assert_png(out / "accuracy_vs_kbps.png")
    printed = result.stdout.splitlines()
    header = next(i for i, line in enumerate(printed) if line.startswith("cond "))
    assert printed[header].split()[1:] == evaluation
    assert [line.split()[0] for line in printed[header + 1 : header + 9]] == [
        *"1234567",
        "7/2",
    ]


def test_experiment_refuses_unknown_conditions(tmp_path, scenes):
    options = ["--data", str(scenes), "--out", str(tmp_path), "--conditions", "2,9"]
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", "experiment", "codec-augmentation", *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "give condition numbers 1 to 7" in result.stderr
    assert not any(tmp_path.iterdir())


def test_quality_score_orders_a_clean_and_a_damaged_copy(scenes):
    from asc.codecs import roundtrip
    from training.quality import QUALITY_RATE, ViSQOL

    clip = sorted((scenes / "audio").glob("*.wav"))[0]
    x, _ = load(clip, rate=QUALITY_RATE, channels=1)
    scorer = ViSQOL()
    same = scorer.score(x[:, 0], x[:, 0])
    coded = scorer.score(x[:, 0], roundtrip(x, QUALITY_RATE, "mp3:32k")[:, 0])
    noisy = x[:, 0] + 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    assert same > 4.5
    assert 1.0 <= coded < same and scorer.score(x[:, 0], noisy) < same


@pytest.mark.slow
def test_rate_accuracy_command_writes_its_report(tmp_path, scenes, cache):
    second = tmp_path / "copy" / "ensemble.safetensors"
    second.parent.mkdir()
    shutil.copy(ENSEMBLE, second)
    out = tmp_path / "report"
    result = asc_train(
        "rate-accuracy", "--checkpoint", str(ENSEMBLE), "--checkpoint", str(second),
        "--data", str(scenes), "--families", "mp3,opus", "--max-clips-per-class", "1",
        "--cache-dir", str(cache), "--workers", "2", "--out", str(out),
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert [p["path"] for p in results["paths"]][:2] == ["none", "mp3:32k"]
    assert len(results["paths"]) == 1 + 5 + 5
    models = [r for r in results["comparisons"] if r["kind"] == "models"]
    # The same weights under two names: no difference on any family.
    assert {r["within"] for r in models} == {"mp3", "opus"}
    assert all(r["difference"] == 0 for r in models)
    assert "mp3 - opus" in result.stdout or "opus - mp3" in result.stdout
    readme = (out / "README.md").read_text()
    assert "Bjøntegaard" in readme and (out / "accuracy_vs_kbps_2.png").is_file()
