"""A device installs the edge alone, from requirements/edge.txt, and it works without torch.

The test does what a device's setup does: a fresh virtual environment, the edge lock with its
hashes, the project's edge sources without dependencies; then `asc-edge --help`, an encode
with `asc-codec`, and one clip streamed to a real server on loopback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asc.audio import save
from asc.signals import full_band_clip
from tests.servers import start_server

ROOT = Path(__file__).resolve().parent.parent
# What edge/Dockerfile copies: the device needs nothing else of the repository.
EDGE_SOURCES = ("pyproject.toml", "README.md", "asc", "edge", "proto")


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("edge-install")
    src = base / "src"
    src.mkdir()
    for name in EDGE_SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name)
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    run([*pip, "--require-hashes", "-r", str(ROOT / "requirements" / "edge.txt")])
    run([*pip, "--no-deps", "--no-build-isolation", str(src)])
    return venv


@pytest.mark.slow
def test_the_edge_lock_installs_a_working_device_without_torch(edge_venv, tmp_path):
    bin_dir = edge_venv / "bin"
    python = str(bin_dir / "python")
    no_torch = run([python, "-c", "import importlib.util as u; print(u.find_spec('torch'))"])
    assert no_torch.stdout.strip() == "None"

    assert "stream" in run([str(bin_dir / "asc-edge"), "--help"]).stdout

    wav = tmp_path / "clip.wav"
    save(wav, full_band_clip(44100, 2.0, 1, seed=7), 44100)
    coded = run([str(bin_dir / "asc-codec"), "roundtrip", str(wav), "opus:32k", "-o",
                 str(tmp_path / "coded.wav")])  # fmt: skip
    assert (tmp_path / "coded.wav").stat().st_size > 0, coded.stdout

    server = start_server()
    try:
        out = tmp_path / "results.jsonl"
        run([str(bin_dir / "asc-edge"), "stream", "--server", server.target, "--codec",
             "opus:32k", "--label", "park", "--jsonl", str(out), str(wav)])  # fmt: skip
    finally:
        server.stop()
    summaries = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "summary"]
    assert len(summaries) == 1
    assert summaries[0]["codec_path"] == "opus:32k" and summaries[0]["true_label"] == "park"
