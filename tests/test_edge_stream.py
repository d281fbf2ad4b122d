"""asc-edge against a real asc-server on loopback: results, totals, kbps and reconnects."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from asc.audio import save
from asc.signals import full_band_clip
from edge.client import classify_file, stream_clips
from edge.clips import Clip
from edge.sources import file_clips, find_audio_files
from tests.servers import start_server

RATE = 44100
EDGE = [sys.executable, "-m", "edge.cli"]


@pytest.fixture(scope="module")
def server():
    process = start_server()
    yield process
    process.stop()


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    """Two short files: one makes two clips of 2 s, the other one clip of 1.5 s."""
    save(tmp_path / "in" / "a.wav", full_band_clip(RATE, 4.0, 1, seed=1), RATE)
    save(tmp_path / "in" / "b.wav", full_band_clip(RATE, 1.5, 1, seed=2), RATE)
    return tmp_path / "in"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edge(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASC_EDGE_")}
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_one_summary_per_clip(lines: list[dict], paths: list[str], clip_ids: list[str]) -> None:
    summaries = Counter((r["path"], r["clip_id"]) for r in lines if r["type"] == "summary")
    assert summaries == Counter({(p, c): 1 for p in paths for c in clip_ids})
    for r in lines:
        if r["type"] == "summary":
            windows = [
                w for w in lines
                if w["type"] == "window" and (w["path"], w["clip_id"]) == (r["path"], r["clip_id"])
            ]  # fmt: skip
            assert len(windows) == r["windows"] >= 1
            assert r["codec_path"] == r["path"]


def test_stream_command_through_pcm16_and_opus(server, audio_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    result = edge(
        "stream", "--server", server.target, "--codec", "pcm16", "--codec", "opus:32k",
        "--clip-seconds", "2", "--window-seconds", "1", "--label", "park",
        "--jsonl", str(out), str(audio_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = records(out)
    check_one_summary_per_clip(lines, ["pcm16", "opus:32k"], ["a#0", "a#1", "b"])
    summary = next(r for r in lines if r["type"] == "summary" and r["clip_id"] == "a#0")
    assert summary["windows"] == 2 and summary["clip_seconds"] == pytest.approx(2.0)
    assert summary["true_label"] == "park" and summary["fine_label"]
    assert {p["label"] for p in summary["fine"]} >= {"park", "airport"}
    totals = {r["path"]: r for r in lines if r["type"] == "totals"}
    assert set(totals) == {"pcm16", "opus:32k"}
    for t in totals.values():
        assert t["clips"] == 3 and t["results"] == 5 and t["labelled"] == 3
        assert t["audio_seconds"] == pytest.approx(5.5)
        assert t["reconnects"] == 0 and t["resent_clips"] == 0
    assert 700 < totals["pcm16"]["wire_kbps"] < 720  # 705.6 kbps of PCM plus a little
    assert 28 < totals["opus:32k"]["payload_kbps"] < 40
    assert totals["opus:32k"]["wire_ratio"] <= 1.05
    # Not a terminal: one plain line per clip, then one per path.
    rows = result.stdout.splitlines()
    assert sum(r.startswith("summary path=") for r in rows) == 6
    assert sum(r.startswith("totals path=") for r in rows) == 2


def test_library_stream_with_the_detector(server, audio_dir):
    files = find_audio_files([audio_dir])
    got = []
    report = stream_clips(
        server.target,
        ["opus:32k"],
        file_clips(files, clip_seconds=2.0),
        detector=True,
        window_seconds=2.0,
        device_id="test-edge",
        on_result=lambda path, result, label: got.append((path, result)),
    )
    summaries = [r for _, r in got if r.clip_summary]
    assert [r.clip_id for r in summaries] == ["a#0", "a#1", "b"]
    assert all(path == "opus:32k" and r.codec_path == "opus:32k" for path, r in got)
    assert all(r.detector_ran and 0 <= r.lossy_probability <= 1 for r in summaries)
    assert all(r.model_id and r.model_version for _, r in got)
    totals = report.totals["opus:32k"]
    assert (totals.clips, totals.results) == (3, 3)
    assert totals.wire_ratio <= 1.05


def test_classify_command_with_a_spec_and_by_probing(server, audio_dir, tmp_path):
    result = edge(
        "classify", str(audio_dir / "a.wav"), "--server", server.target, "--codec", "mp3:64k",
        "--window-seconds", "2", "--jsonl", str(tmp_path / "c.jsonl"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = records(tmp_path / "c.jsonl")
    assert [r["type"] for r in lines] == ["window", "window", "summary"]
    assert lines[-1]["codec_path"] == "mp3:64k" and lines[-1]["clip_id"] == "a"
    result = edge(
        "classify", str(audio_dir / "b.wav"), "--server", server.target, "--codec", "probe"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("summary clip=b ")


def test_an_edge_started_before_its_server_gets_every_clip_exactly_once(audio_dir, tmp_path):
    port = free_port()
    out = tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASC_EDGE_")}
    proc = subprocess.Popen(
        [
            *EDGE, "stream", "--server", f"127.0.0.1:{port}", "--codec", "opus:32k",
            "--clip-seconds", "2", "--max-retries", "12", "--jsonl", str(out), str(audio_dir),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    time.sleep(2)
    assert proc.poll() is None  # still trying
    server = start_server(port=port)
    try:
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 0, stderr
    assert "retrying in" in stderr
    lines = records(out)
    check_one_summary_per_clip(lines, ["opus:32k"], ["a#0", "a#1", "b"])
    (totals,) = [r for r in lines if r["type"] == "totals"]
    assert totals["clips"] == 3 and totals["reconnects"] >= 1


@pytest.mark.slow
def test_a_server_restart_mid_stream_loses_and_repeats_nothing(tmp_path):
    """SIGTERM the server while clips are in flight, start a new one: each clip once."""
    save(tmp_path / "in" / "long.wav", full_band_clip(RATE, 16.0, 1, seed=3), RATE)
    port = free_port()
    out = tmp_path / "results.jsonl"
    first = start_server(port=port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASC_EDGE_")}
    proc = subprocess.Popen(
        [
            *EDGE, "stream", "--server", f"127.0.0.1:{port}", "--codec", "pcm16",
            "--clip-seconds", "2", "--window-seconds", "1", "--realtime", "--max-in-flight", "2",
            "--max-retries", "12", "--jsonl", str(out), str(tmp_path / "in"),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    second = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the first clip is through
            if out.exists() and '"summary"' in out.read_text():
                break
            time.sleep(0.2)
        first.stop(signal.SIGTERM)
        second = start_server(port=port)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        first.stop()
        if second is not None:
            second.stop()
    assert proc.returncode == 0, stderr
    lines = records(out)
    check_one_summary_per_clip(lines, ["pcm16"], [f"long#{k}" for k in range(8)])
    (totals,) = [r for r in lines if r["type"] == "totals"]
    assert totals["reconnects"] >= 1 and totals["clips"] == 8


def test_a_clip_through_a_chain(server):
    pcm = full_band_clip(RATE, 2.0, 1, seed=4)
    report = stream_clips(server.target, "sbc:bitpool=53>aac:64k", [Clip("chain", pcm, RATE)])
    totals = report.totals["sbc:bitpool=53>aac:64k"]
    assert totals.clips == 1 and 50 < totals.payload_kbps < 80


def test_classify_file_returns_windows_and_a_summary(server, audio_dir):
    result = classify_file(server.target, audio_dir / "a.wav", "opus:32k", window_seconds=2.0)
    assert len(result.windows) == 2 and result.summary.windows == 2
    assert result.summary.codec_path == "opus:32k"
