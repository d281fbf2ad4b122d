"""Perceptual quality of a codec path: ViSQOL v3 in audio mode, original against coded audio.

The ASC paper plots accuracy against PEAQ's objective difference grade (ODG). No maintained PEAQ
package installs here, so reports use ViSQOL v3's audio mode instead (the ``visqol-python``
port of Google's C++ ViSQOL, whose audio mode matches the C++ scores in its conformance tests):
a full-reference model of perceived quality for music and general audio at 48 kHz, mapped by
its SVR model to a MOS-LQO between 1 (bad) and about 4.73 (indistinguishable). It is not an ODG
and is never called one; like the ODG, higher means fewer audible coding artefacts.

Scoring is about a second per 10-second clip on one CPU core once Numba has compiled its kernels
(the first call of a fresh install compiles them, about ten seconds), so reports score a subset
of the evaluation clips per path.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc.audio import load

QUALITY_RATE = 48000  # ViSQOL's audio mode works at 48 kHz
PACKAGE = "visqol-python"


class QualityUnavailable(RuntimeError):
    """The quality package is not installed."""


def quality_metric() -> dict:
    """What the ``quality`` numbers in a report are, for the report itself to say."""
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = None
    return {
        "name": "ViSQOL v3 audio mode MOS-LQO",
        "short": "ViSQOL MOS-LQO",
        "package": PACKAGE,
        "version": version,
        "rate_hz": QUALITY_RATE,
        "scale": "1 (bad) to about 4.73 (no audible difference); higher is better",
        "reference": "the uncoded clip; mono, both resampled to 48 kHz",
    }


class ViSQOL:
    """One ViSQOL audio-mode scorer (its SVR model loads once)."""

    def __init__(self) -> None:
        try:
            from visqol import VisqolApi
        except ImportError as e:  # pragma: no cover - the train extra installs it
            raise QualityUnavailable(
                f"perceptual quality needs the {PACKAGE} package, pinned in requirements/lock.txt "
                f"(make setup): {e}"
            ) from e
        self.api = VisqolApi()
        self.api.create(mode="audio")

    def score(self, reference: np.ndarray, degraded: np.ndarray) -> float:
        """MOS-LQO of ``degraded`` against ``reference``: mono float arrays at 48 kHz."""
        n = min(len(reference), len(degraded))
        result = self.api.measure_from_arrays(
            reference[:n].astype(np.float64),
            degraded[:n].astype(np.float64),
            sample_rate=QUALITY_RATE,
        )
        return float(result.moslqo)

    def score_files(self, reference: Path, degraded: Path) -> float:
        ref, _ = load(reference, rate=QUALITY_RATE, channels=1)
        deg, _ = load(degraded, rate=QUALITY_RATE, channels=1)
        return self.score(ref[:, 0], deg[:, 0])


def mean_quality(
    pairs: Sequence[tuple[Path, Path]],
    scorer: ViSQOL | None = None,
    progress: bool = True,
    desc: str = "quality",
) -> float:
    """Mean ViSQOL MOS-LQO over (original, coded) file pairs."""
    scorer = scorer or ViSQOL()
    scores = [
        scorer.score_files(ref, deg)
        for ref, deg in tqdm(pairs, desc=desc, unit="clip", disable=not progress)
    ]
    return float(np.mean(scores))


def spread_subset(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({round(float(i)) for i in np.linspace(0, n - 1, k)})
