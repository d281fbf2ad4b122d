"""The codecs' grid tests beside the detector's network, in the detector-families report.

The network sees a spectrogram, and on real recordings SBC's and high-rate AAC's noise hides
under the recording's own (``asc.codecs.grid_tests``), so the report scores each file twice: the
network alone, and the detector as the server would run it, the network joined by the grid
tests. A file is as lossy as the surer of the two says, and its family is the one whose grid a
test finds. Both sets of figures are kept, so the report shows what the tests add and what they
cost in false alarms.

The grid tests take most of a report's time (57 of 76 minutes for the committed one on two
cores) and depend on nothing but the file and the tests' code, so each file's result is kept
in the coded-copy cache's ``grid-tests`` folder, keyed by the file's bytes and the code of
``asc.audio`` and ``asc.codecs``: a report run again with another checkpoint, or stopped
halfway, redoes only what changed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import scipy

import asc.audio
import asc.codecs
from asc.audio import load
from asc.codecs.grid_tests import join_detector, named_family, surer_call
from asc.codecs.mdct_trace import mdct_trace
from asc.codecs.sbc_trace import sbc_trace
from training.augment import parallel_map
from training.experiments.detector_families_scores import DETECTOR, NETWORK, ScoredFile

GRID_CACHE = "grid-tests"  # beside the coded copies' two-letter folders


def grid_scores(
    files: list[ScoredFile], workers: int | None, progress: bool, cache_dir: Path | None = None
) -> None:
    """Each file's grid tests on the file as stored (its rate, its channels), in parallel;
    from ``cache_dir`` where a file's result is kept there (None: no cache)."""
    jobs = [(str(f.audio), str(cache_dir) if cache_dir else None) for f in files]
    traced = parallel_map(_cached_trace, jobs, workers, progress, "grid tests", unit="file")
    for f, (contrast, mdct, call) in zip(files, traced, strict=True):
        f.sbc_contrast_db, f.grid = contrast, call
        f.mdct_family, f.mdct_excess, f.mdct_lattice = mdct.family, mdct.excess, mdct.lattice
        f.mdct_vorbis_lattice = mdct.vorbis_lattice


def combine(files: list[ScoredFile]) -> None:
    """The detector's call, joined as the server joins it (``join_detector``)."""
    for f in files:
        lossy, families = join_detector(f.scores[NETWORK], f.network_families, f.grid)
        f.scores[DETECTOR] = lossy
        f.family_guess = named_family(lossy, families)


def network_alone(files: list[ScoredFile]) -> list[ScoredFile]:
    """The same files as the network alone scored them."""
    return [
        replace(f, scores={DETECTOR: f.scores[NETWORK]}, family_guess=f.network_guess)
        for f in files
    ]


@cache
def grid_code_version() -> str:
    """A digest of the code a grid test's result depends on: ``asc.audio``, every module of
    ``asc.codecs`` (more than the tests use, so that no change they see is missed), and the
    numpy and scipy they run on."""
    digest = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    sources = [Path(asc.audio.__file__), *sorted(Path(asc.codecs.__file__).parent.glob("*.py"))]
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def grid_cache_path(cache_dir: Path, audio: Path) -> Path:
    key = hashlib.sha256(grid_code_version().encode() + audio.read_bytes()).hexdigest()
    return cache_dir / key[:2] / f"{key}.pkl"


def _cached_trace(job: tuple[str, str | None]):
    path, cache_dir = job
    if cache_dir is None:
        return _trace(path)
    kept = grid_cache_path(Path(cache_dir), Path(path))
    try:
        return pickle.loads(kept.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        pass  # absent, or left broken by a run stopped mid-write: test the file again
    result = _trace(path)
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(pickle.dumps(result))
    partial.replace(kept)  # whole or not at all
    return result


def _trace(path: str):
    wave, rate = load(path)
    sbc, mdct = sbc_trace(wave, rate), mdct_trace(wave, rate)
    return sbc.contrast_db, mdct, surer_call(sbc, mdct)
