"""The performance benchmarks run, in their --quick configuration, and print sane tables.

Correctness only: every benchmark runs as ``python -m benchmarks.NAME --quick`` in its own
process, exits 0 and prints Markdown tables whose figures are positive and finite, with the
invariants that do not depend on speed (the front ends agree within tolerance, framing only
adds bytes, the engine's coded copies are as long as their sources, the edge never loads
torch). No test here compares or bounds a time.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asc.codecs.registry import REFERENCE_SPECS

REPO = Path(__file__).resolve().parent.parent


def run_benchmark(name: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"benchmarks.{name} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text``, as rows keyed by the header's cells."""
    found: list[list[dict[str, str]]] = []
    lines = [line.strip() for line in text.splitlines()]
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                assert len(cells) == len(header), lines[i]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            found.append(rows)
        else:
            i += 1
    return found


def number(cell: str) -> float:
    """A table cell's figure ('12.5', '3.10x', '4.2e-05', '0 / 1656' takes the first)."""
    return float(cell.split(" / ")[0].split(" ")[0].rstrip("x"))


def positive(cell: str) -> float:
    value = number(cell)
    assert math.isfinite(value) and value > 0, cell
    return value


def test_edge_cost_table():
    encode, memory = tables(run_benchmark("edge_cost"))
    assert [row["path"].strip("`") for row in encode] == list(REFERENCE_SPECS)
    for row in encode:
        positive(row["kbps"])
        positive(row["encode x real time"])
        assert row["goal"] in ("met", "missed")
    assert len(memory) == 3  # interpreter, imports, one streaming run
    for row in memory:
        positive(row["peak RSS (MB)"])
        assert row["torch imported or mapped"] == "no"
    streaming = memory[-1]
    assert streaming["edge process"].startswith("`asc-edge stream`")
    assert number(streaming["clips summarised"]) == 4  # 2 files x 2 codec paths
    # the edge imports more than a bare interpreter and streams on top of that
    assert number(memory[0]["peak RSS (MB)"]) < number(memory[1]["peak RSS (MB)"])


def test_wire_efficiency_table():
    main, causes = tables(run_benchmark("wire_efficiency"))
    assert [row["path"].strip("`") for row in main] == ["opus:32k", "mp3:64k", "he-aac:16k"]
    for row in main:
        for column in ("payload kbps", "codec packets/s", "messages/s", "mean message (B)"):
            positive(row[column])
        framed, wire = number(row["framed / payload"]), number(row["wire / payload"])
        tcp, ip = number(row["TCP / payload"]), number(row["+ TCP/IP (est.)"])
        assert 1 < framed < wire < tcp < ip < 2, row  # each layer only adds bytes
    assert main[0]["goal"].startswith("<= 1.05: ")
    assert [row["path"] for row in causes] == [row["path"] for row in main]
    for row in causes:
        for column in list(row)[1:]:
            positive(row[column])


def test_features_speed_table():
    pytest.importorskip("librosa", reason="librosa (a dev dependency) is absent")
    from benchmarks.features_speed import TOLERANCE

    out = run_benchmark("features_speed", "--device", "cpu", "--quick")
    (rows,) = tables(out)
    assert rows[0]["front end"].startswith("librosa")
    assert number(rows[0]["ratio to librosa"]) == 1.0
    assert any(row["front end"].startswith("asc.features") for row in rows)
    for row in rows:
        positive(row["clips/s"])
        positive(row["ratio to librosa"])
        difference = number(row["max abs difference from librosa"])
        assert 0 <= difference <= TOLERANCE, row
    assert "same values within" in out and ": yes," in out


def test_coding_pipeline_table():
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is absent (Debian package ffmpeg; `make setup` installs it)")
    (rows,) = tables(run_benchmark("coding_pipeline"))
    assert [row["path"].strip("`") for row in rows] == ["mp3:64k", "aac:32k", "opus:32k"]
    for row in rows:
        for column in list(row)[1:6]:
            positive(row[column])
        engine_off = row["length off by, samples (engine / ffmpeg)"].split(" / ")
        assert engine_off[0] == "0"  # the engine's copies line up with their sources
        assert int(engine_off[1]) >= 0


def test_stream_capacity_searches_and_reports():
    out = run_benchmark("stream_capacity", timeout=240)
    (probes,) = tables(out)
    assert [int(r["streams"]) for r in probes][:1] == [1]
    for r in probes:
        back, sent = (int(x) for x in r["clips back"].split("/"))
        assert sent == int(r["streams"]) and 0 <= back <= sent
        assert r["verdict"] in ("sustained", "falls behind", "client-bound")
        if r["verdict"] == "sustained":
            assert back == sent and number(r["p99 (ms)"]) <= 1000
        positive(r["CPU per clip (ms)"])
    last = out.strip().splitlines()[-1]
    assert last.startswith(("sustains ", "at least ")), last


def test_stream_capacity_probes_a_fixed_load_with_the_detector():
    """--at probes one number of streams --repeat times, no search; with --detector and the
    grid tests off (--grid-cpu-share 0) no clip is grid-tested."""
    out = run_benchmark(
        "stream_capacity", "--detector", "--at", "2", "--repeat", "2", "--grid-cpu-share", "0",
        timeout=240,
    )  # fmt: skip
    (probes,) = tables(out)
    assert [int(r["streams"]) for r in probes] == [2, 2]
    column = "grid tests run / clips (skipped: queue full)"
    assert all(r[column] == "0 % (0)" for r in probes)
    assert "sustains" not in out and "grid tests' share of a core 0" in out


def test_runtime_speed_table():
    (rows,) = tables(run_benchmark("runtime_speed"))
    assert [(r["model"], r["runtime"]) for r in rows] == [
        (model, runtime)
        for model in ("ensemble", "detector")
        for runtime in ("eager", "onnxruntime", "openvino")
    ]
    for r in rows:
        positive(r["clips/s"])
        positive(r["ratio to eager"])
        # the runtimes agree: float32 to 1e-4, OpenVINO's bfloat16 to its own tolerance
        bound = 2e-2 if r["as"] == "OpenVINO bf16" else 1e-4
        assert number(r["largest difference"]) < bound
        assert r["same"] == "100.0 %"


def test_server_profile_splits_the_servers_cpu():
    (rows,) = tables(run_benchmark("server_profile", timeout=400))
    assert [r["runtime"] for r in rows] == ["eager", "onnxruntime"]
    for r in rows:
        total = positive(r["server CPU"])
        stages = [
            number(r[s])
            for s in ("decode", "windows", "ensemble_features", "ensemble_model", "results")
        ]
        assert all(s > 0 for s in stages) and sum(stages) <= total + 0.5  # ms, rounded
        assert number(r["detector_model"]) == 0  # served without the detector
        positive(r["model alone"])
        positive(r["clients"])
        speed = positive(r["model alone clips/s"])
        share = number(r["server / model alone clips/s"].removesuffix(" %"))
        assert abs(share - 100 * number(r["clips/s"]) / speed) <= 1  # of rounded cells


def test_runtime_agreement_judges_the_runtimes_on_real_labels(tmp_path):
    """Both models on a tiny corpus: ONNX Runtime must give eager's labels and be kept."""
    from training.corpora.lossless_corpus import write_lossless_corpus
    from training.corpora.scene_corpus import write_scene_corpus

    scenes = write_scene_corpus(tmp_path / "scenes", 3, seed=3, seconds=4.0, progress=False)
    lossless = write_lossless_corpus(tmp_path / "lossless", 10, seed=1, seconds=4.0, progress=False)
    out = run_benchmark(
        "runtime_agreement", "--data", str(scenes), "--lossless", str(lossless),
        "--cache-dir", str(tmp_path / "coded"), timeout=600,
    )  # fmt: skip
    ensemble, detector = tables(out)
    for rows in (ensemble, detector):
        assert [r["runtime"] for r in rows] == ["eager", "onnxruntime"]
        eager, onnx = rows
        assert eager["kept"] == "reference" and onnx["kept"] == "yes"
        assert onnx["labels as eager"] == "100.00 %"
        positive(onnx["items/s"])
    assert out.count("Fastest that agrees: onnxruntime") == 2


def test_decode_sandbox_table():
    out = run_benchmark("decode_sandbox")
    assert out.startswith("worker start: ")
    (rows,) = tables(out)
    assert [row["codec"].strip("`") for row in rows] == ["flac", "mp3:64k"]
    for row in rows:
        for column in ("in-process ms/clip", "worker ms/clip", "worker / in-process"):
            positive(row[column])
        assert row["same samples"] == "yes"


def test_grid_tests_table():
    (rows,) = tables(run_benchmark("grid_tests"))
    assert [row["work per clip"] for row in rows] == [
        "detector network, every piece",
        "SBC test, lossless clip",
        "SBC test, sbc:bitpool=53 copy",
        "MDCT test, lossless clip",
        "MDCT test, aac:128k copy",
        "MDCT test, he-aac:64k copy (found at half the rate)",
        "MP3 test, lossless clip",
        "MP3 test, mp3:128k copy",
        "Vorbis short-block test, lossless clip",
        "all four, as the server runs them, lossless clip",
        "all four, as the server runs them, sbc:bitpool=53 copy",
        "all four, as the server runs them, mp3:128k copy",
    ]
    for row in rows:
        positive(row["CPU ms (mean)"])
    called = [row["called coded"] for row in rows[1:]]
    assert called == [
        "0 of 1", "1 of 1", "0 of 1", "1 of 1", "1 of 1", "0 of 1", "1 of 1", "0 of 1", "0 of 1",
        "1 of 1", "1 of 1",
    ]  # fmt: skip
