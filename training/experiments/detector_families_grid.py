"""The SBC grid test beside the detector's network, in the detector-families report.

The network sees a spectrogram, and SBC's noise hides under a real recording's own
(``asc.codecs.sbc_trace``), so the report scores each file twice: the network alone, and the
detector as the server would run it, the network joined by the grid test. A file is as lossy as
the surer of the two says, and its family is ``sbc`` where the grid test calls it. Both sets of
figures are kept, so the report shows what the test adds and what it costs in false alarms.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from tqdm import tqdm

from asc.audio import load
from asc.codecs.sbc_trace import sbc_trace
from training.experiments.detector_families_scores import DETECTOR, ScoredFile

NETWORK = "network"
SBC_GRID = "sbc_grid"


def grid_scores(files: list[ScoredFile], workers: int | None, progress: bool) -> None:
    """Each file's grid test on the file as stored (its rate, its channels), in parallel."""
    paths = [str(f.audio) for f in files]
    workers = max(1, min(workers or multiprocessing.cpu_count(), len(paths)))
    bar = tqdm(total=len(paths), desc="sbc grid", unit="file", disable=not progress)
    # fresh interpreters: forking a parent that holds torch's thread pools can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for f, (contrast, probability) in zip(
            files, pool.map(_trace, paths, chunksize=8), strict=True
        ):
            f.sbc_contrast_db = contrast
            f.scores[SBC_GRID] = probability
            bar.update()
    bar.close()


def combine(files: list[ScoredFile]) -> None:
    """The detector's call: the surer of network and grid test; the grid test names SBC."""
    for f in files:
        grid = f.scores.get(SBC_GRID, 0.0)
        f.scores[DETECTOR] = max(f.scores[NETWORK], grid)
        f.family_guess = "sbc" if grid >= 0.5 else f.network_guess


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
