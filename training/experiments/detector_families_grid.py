"""The SBC grid test beside the detector's network, in the detector-families report.

The network sees a spectrogram, and SBC's noise hides under a real recording's own
(``asc.codecs.sbc_trace``), so the report scores each file twice: the network alone, and the
detector as the server would run it, the network joined by the grid test. A file is as lossy as
the surer of the two says, and its family is ``sbc`` where the grid test calls it. Both sets of
figures are kept, so the report shows what the test adds and what it costs in false alarms.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from asc.audio import load
from asc.codecs.registry import CODEC_FAMILIES
from asc.codecs.sbc_trace import join_detector, sbc_trace
from training.augment import parallel_map
from training.experiments.detector_families_scores import DETECTOR, ScoredFile

NETWORK = "network"
SBC_GRID = "sbc_grid"


def grid_scores(files: list[ScoredFile], workers: int | None, progress: bool) -> None:
    """Each file's grid test on the file as stored (its rate, its channels), in parallel."""
    paths = [str(f.audio) for f in files]
    traced = parallel_map(_trace, paths, workers, progress, "sbc grid", unit="file")
    for f, (contrast, probability) in zip(files, traced, strict=True):
        f.sbc_contrast_db = contrast
        f.scores[SBC_GRID] = probability


def combine(files: list[ScoredFile]) -> None:
    """The detector's call, joined as the server joins it (``join_detector``)."""
    for f in files:
        lossy, families = join_detector(
            f.scores[NETWORK], f.network_families, f.scores.get(SBC_GRID, 0.0)
        )
        f.scores[DETECTOR] = lossy
        f.family_guess = CODEC_FAMILIES[int(np.argmax(families))]


def network_alone(files: list[ScoredFile]) -> list[ScoredFile]:
    """The same files as the network alone scored them."""
    return [
        replace(f, scores={DETECTOR: f.scores[NETWORK]}, family_guess=f.network_guess)
        for f in files
    ]


def _trace(path: str) -> tuple[float, float]:
    wave, rate = load(path)
    trace = sbc_trace(wave, rate)
    return trace.contrast_db, trace.lossy_probability
