"""Where the real recordings are, and why a test that needs them skips when they are not.

Kitchen20 (real, full-band, lossless kitchen recordings) is never copied into this repository;
it sits in the shared data folder beside the checkout (``../shared/data/kitchen20``), or
wherever ``ASC_KITCHEN20`` points. CI has it, so these tests run there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KITCHEN20 = Path(os.environ.get("ASC_KITCHEN20", REPO.parent / "shared" / "data" / "kitchen20"))


def kitchen20_root() -> Path:
    """The Kitchen20 folder, or a skip that says what is missing and how to provide it."""
    if not (KITCHEN20 / "meta.csv").is_file() and not (KITCHEN20 / "kitchen20.csv").is_file():
        pytest.skip(
            f"real recordings absent: no Kitchen20 at {KITCHEN20} (meta.csv or kitchen20.csv); "
            "set ASC_KITCHEN20 to a copy to run this test"
        )
    return KITCHEN20


def kitchen20_clips(labels: tuple[str, ...], rate: int) -> list:
    """One Kitchen20 clip of each label, as recorded (mono, at ``rate``)."""
    import csv

    from asc.audio import load

    root = kitchen20_root()
    with (root / "meta.csv").open() as f:
        picked = {r["label"]: r for r in csv.DictReader(f) if r["label"] in labels}
    assert len(picked) == len(labels), sorted(picked)
    return [load(root / picked[label]["filename"], rate=rate, channels=1)[0] for label in labels]
