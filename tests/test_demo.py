"""`make demo`'s main job end to end: server, edge, six codec paths, metrics, clean stop."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_streams_every_sample_through_every_path():
    run = subprocess.run(
        [sys.executable, "scripts/demo.py"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "0 result(s) missing" in out and "exit code 0" in out
    for path in ("pcm16", "opus:32k", "mp3:64k", "aac:32k", "he-aac:16k", "sbc:64k"):
        assert path in out
    assert "asc_accuracy" in out and "kbps on the wire" in out
    assert "lossy probability" in out and "family guess" in out
