"""benchmarks/peer_bentoml.py, this server beside BentoML: its quick run prints one sane table.

Correctness only, as in tests/test_benchmarks.py: both real servers start, every clip comes back
from both with the same label (the same checkpoint, front end and runtime on both sides), and
the figures are positive, finite and consistent with each other. No test bounds a time or which
side is faster. BentoML is a benchmark-only peer, never in the lock `make setup` installs, so
without it the run is skipped, saying how to install it.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = (
    "BentoML is a benchmark-only peer, not in requirements/lock.txt: `make bench-peer` installs "
    "requirements/bench-peer.txt (hashed, the lock's own pins) into .venv and runs the benchmark"
)


def table_rows(out: str) -> list[list[str]]:
    """The data rows of the printed Markdown table, cells stripped."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, out
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def pair(cell: str) -> tuple[float, float]:
    left, right = cell.split(" / ")
    return float(left), float(right)


@pytest.mark.slow  # two servers start and take 2 x 20 clips: about 35 s on 2 shared cores
@pytest.mark.skipif(importlib.util.find_spec("bentoml") is None, reason=INSTALL)
def test_quick_run_prints_both_servers_side_by_side() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_bentoml", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert [row[0] for row in rows] == ["1", "4"], done.stdout
    for row in rows:
        ours, peer = float(row[1]), float(row[2])
        assert all(math.isfinite(x) and x > 0 for x in (ours, peer)), row
        assert float(row[3].rstrip("x")) == pytest.approx(ours / peer, abs=0.011), row
        for cell in (row[4], row[5]):
            p50, p99 = pair(cell)
            assert 0 < p50 <= p99, row
        assert all(x > 0 for x in pair(row[6])), row  # each server spent CPU on its clips
        assert row[8] == "100.0 %", f"the two sides disagree on a clip's label: {row}"
        assert row[9] == "0 / 0", f"clips failed: {row}"


def test_without_bentoml_it_says_how_to_install_it() -> None:
    """The benchmark's own message when the peer is missing names the make target."""
    hide = (
        "import runpy, sys; sys.modules['bentoml'] = None; "
        "runpy.run_module('benchmarks.peer_bentoml', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "make bench-peer" in done.stderr, done.stderr
