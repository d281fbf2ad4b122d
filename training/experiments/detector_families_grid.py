"""The codecs' grid tests beside the detector's network, in the detector-families report.

The network sees a spectrogram, and on real recordings SBC's and high-rate AAC's noise hides
under the recording's own (``asc.codecs.grid_tests``), so the report scores each file twice: the
network alone, and the detector as the server would run it, the network joined by the grid
tests. A file is as lossy as the surer of the two says, and its family is the one whose grid a
test finds. Both sets of figures are kept, so the report shows what the tests add and what they
cost in false alarms.

The grid tests take most of a report's time (57 of 76 minutes for the committed one on two
cores) and depend on nothing but the file and the tests' code, so each test's result on each
file is kept in the coded-copy cache's ``grid-tests`` folder, keyed by the file's bytes and the
code of the test's own module and every ``asc`` module it imports, directly or not: a report
run again with another checkpoint, stopped halfway, or with one test changed, redoes only what
changed.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import scipy

import asc
from asc.audio import load
from asc.codecs.grid_tests import join_detector, named_family, surer_call
from asc.codecs.mdct_trace import mdct_trace
from asc.codecs.mp3_trace import mp3_trace
from asc.codecs.sbc_trace import sbc_trace
from asc.codecs.vorbis_short_blocks import short_block_trace
from training.augment import parallel_map
from training.experiments.detector_families_scores import DETECTOR, NETWORK, ScoredFile

GRID_CACHE = "grid-tests"  # beside the coded copies' two-letter folders
# Each grid test, by the name its results are kept under, in ``surer_call``'s argument order.
GRID_TESTS: dict[str, Callable] = {
    "sbc": sbc_trace,
    "mdct": mdct_trace,
    "mp3": mp3_trace,
    "vorbis-short": short_block_trace,
}


def grid_scores(
    files: list[ScoredFile], workers: int | None, progress: bool, cache_dir: Path | None = None
) -> None:
    """Each file's grid tests on the file as stored (its rate, its channels), in parallel;
    from ``cache_dir`` where a file's result is kept there (None: no cache)."""
    jobs = [(str(f.audio), str(cache_dir) if cache_dir else None) for f in files]
    traced = parallel_map(_cached_trace, jobs, workers, progress, "grid tests", unit="file")
    for f, (sbc, mdct, mp3, short) in zip(files, traced, strict=True):
        f.sbc_contrast_db, f.grid = sbc.contrast_db, surer_call(sbc, mdct, mp3, short)
        f.mdct_family, f.mdct_excess, f.mdct_lattice = mdct.family, mdct.excess, mdct.lattice
        f.mdct_vorbis_lattice = mdct.vorbis_lattice
        f.mp3_excess, f.mp3_lattice = (mp3.excess, mp3.lattice) if mp3.tested else (None, None)
        f.vorbis_short_lattice = short.excess if short.tested else None


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
def grid_code_version(test: str) -> str:
    """A digest of the code one grid test's result depends on: its module and every ``asc``
    module that imports, directly or not (``asc.audio``, which loads the file, among them),
    as code (their docstrings and comments left out, so that prose keeps results), and the
    numpy and scipy they run on."""
    digest = hashlib.sha256(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    digest.update(test.encode())
    sources = _imported_sources(GRID_TESTS[test].__module__) | _imported_sources(load.__module__)
    for source in sorted(sources):
        digest.update(source.name.encode() + b"\0" + _code_of(source).encode())
    return digest.hexdigest()


def _code_of(source: Path) -> str:
    """A module's syntax tree without its docstrings: what it runs."""
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _imported_sources(module: str) -> set[Path]:
    """The source files of ``module`` and of every ``asc`` module it imports, directly or not,
    with the packages' ``__init__`` files that importing them runs."""
    root = Path(asc.__file__).parent.parent
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = root / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        todo.append(name.rpartition(".")[0])  # its package
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
        todo = [n for n in todo if n == "asc" or n.startswith("asc.")]
    return seen


def grid_cache_path(cache_dir: Path, audio: Path, test: str) -> Path:
    return _cache_path(cache_dir, audio.read_bytes(), test)


def _cache_path(cache_dir: Path, data: bytes, test: str) -> Path:
    key = hashlib.sha256(grid_code_version(test).encode() + data).hexdigest()
    return cache_dir / key[:2] / f"{key}.pkl"


def _cached_trace(job: tuple[str, str | None]) -> list:
    """Each grid test's result on one file, from the cache where kept there (the file read
    once for all the tests' keys)."""
    path, cache_dir = job
    data = Path(path).read_bytes() if cache_dir else b""
    loaded = None
    traces = []
    for test, run in GRID_TESTS.items():
        kept = _cache_path(Path(cache_dir), data, test) if cache_dir else None
        trace = _read(kept) if kept else None
        if trace is None:
            loaded = loaded or load(path)
            trace = run(*loaded)
            if kept:
                _write(kept, trace)
        traces.append(trace)
    return traces


def _read(kept: Path):
    try:
        return pickle.loads(kept.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None  # absent, or left broken by a run stopped mid-write: test the file again


def _write(kept: Path, trace) -> None:
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(pickle.dumps(trace))
    partial.replace(kept)  # whole or not at all
