"""Codec-coded copies of training audio, made once and cached by content hash.

Coding is the slow part of codec augmentation, and the same (clip, codec path) pair is needed
in every epoch and every experiment, so each coded copy is written once as 16-bit FLAC under a
key of (audio content, canonical spec, rate, engine version) and reused. Beside each copy a small
JSON file records what the path did to that clip (achieved kbps of the codec payload, SNR,
bandwidth left), so reports can state measured bitrates without coding anything again. Work
runs in worker processes with a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc.audio import load, save
from asc.codecs import CodecError, parse_spec, resolve
from asc.codecs.measure import measure_roundtrip
from asc.codecs.spec import split_spec_list

CACHE_VERSION = "1"  # bump when the engine's output for a spec changes
UNCODED = "none"


def canonical(spec: str) -> str:
    """``none`` (the original audio) or the engine's canonical spelling of a codec path."""
    return UNCODED if spec.strip().lower() in ("", "none", "original") else str(parse_spec(spec))


def parse_spec_list(text: str | Sequence[str]) -> list[str]:
    """A comma-separated list (or a sequence) of codec paths, canonical, ``none`` allowed."""
    items = split_spec_list(text) if isinstance(text, str) else list(text)
    return [canonical(s) for s in items]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Job:
    source: Path
    spec: str
    rate: int
    channels: int
    target: Path


def measurement_path(target: Path) -> Path:
    return target.with_suffix(".json")


def _code_one(job: Job, write_audio: bool = True) -> Path:
    """Code one clip through one path; write the decoded copy and its measurements."""
    x, _ = load(job.source, rate=job.rate, channels=job.channels)
    report = measure_roundtrip(x, job.rate, job.spec)  # the same stream code as ``roundtrip``
    if len(report.decoded) != len(x):  # the stream carries the length: this is an engine bug
        raise CodecError(f"{job.spec}: {len(report.decoded)} samples back for {len(x)}")
    if write_audio:
        tmp = job.target.with_name(job.target.stem + f".{os.getpid()}.tmp.flac")
        save(tmp, np.clip(report.decoded, -1.0, 32767 / 32768), job.rate)
        tmp.replace(job.target)  # atomic: an interrupted run never leaves a half-written copy
    measured = {
        "spec": job.spec,
        "seconds": len(x) / job.rate,
        "payload_bytes": report.payload_bytes,
        "kbps": report.kbps,
        "snr_db": report.snr_db,
        "bandwidth_hz": report.bandwidth_hz,
    }
    side = measurement_path(job.target)
    tmp = side.with_name(side.stem + f".{os.getpid()}.tmp.json")
    tmp.write_text(json.dumps(measured))
    tmp.replace(side)
    return job.target


def _measure_one(job: Job) -> Path:
    return _code_one(job, write_audio=False)


class CodedCache:
    """Where coded copies live: ``root/<key[:2]>/<key>.flac``."""

    def __init__(self, root: str | Path, rate: int = 44100, channels: int = 1):
        self.root = Path(root)
        self.rate, self.channels = rate, channels
        self._digests: dict[Path, str] = {}

    def path_for(self, source: Path, spec: str) -> Path:
        spec = canonical(spec)
        if spec == UNCODED:
            return source
        if source not in self._digests:
            self._digests[source] = file_digest(source)
        key = hashlib.sha256(
            f"{CACHE_VERSION}|{self._digests[source]}|{spec}|{self.rate}|{self.channels}".encode()
        ).hexdigest()
        return self.root / key[:2] / f"{key}.flac"

    def ensure(
        self,
        sources: Iterable[Path],
        specs: Sequence[str],
        workers: int | None = None,
        progress: bool = True,
    ) -> dict[tuple[Path, str], Path]:
        """Make every missing coded copy; returns (source, canonical spec) -> audio path."""
        specs = [canonical(s) for s in specs]
        return self.ensure_pairs(
            [(source, spec) for source in sources for spec in specs], workers, progress
        )

    def ensure_pairs(
        self,
        pairs: Iterable[tuple[Path, str]],
        workers: int | None = None,
        progress: bool = True,
    ) -> dict[tuple[Path, str], Path]:
        """Like ``ensure`` for chosen (source, spec) pairs, e.g. one codec setting per track."""
        pairs = [(source, canonical(spec)) for source, spec in pairs]
        for spec in dict.fromkeys(spec for _, spec in pairs):
            if spec != UNCODED:
                resolve(spec, self.rate, self.channels)  # fail before any work on a bad spec
        mapping: dict[tuple[Path, str], Path] = {}
        jobs: list[Job] = []
        for source, spec in pairs:
            if (source, spec) in mapping:
                continue
            target = self.path_for(source, spec)
            mapping[(source, spec)] = target
            if spec != UNCODED and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                jobs.append(Job(source, spec, self.rate, self.channels, target))
        parallel_map(_code_one, jobs, workers, progress, "coded copies")
        return mapping

    def measurements(
        self,
        sources: Iterable[Path],
        spec: str,
        workers: int | None = None,
        progress: bool = True,
    ) -> list[dict]:
        """What ``spec`` did to each source (kbps, SNR, bandwidth), measured when coded.

        Copies made before measurements were kept are coded once more to measure them (their
        audio is left as it is). ``none`` has no measurements: an empty list.
        """
        spec = canonical(spec)
        if spec == UNCODED:
            return []
        sources = list(sources)
        targets = [self.path_for(s, spec) for s in sources]
        missing = [
            Job(s, spec, self.rate, self.channels, t)
            for s, t in zip(sources, targets, strict=True)
            if not measurement_path(t).exists()
        ]
        for job in missing:
            job.target.parent.mkdir(parents=True, exist_ok=True)
        parallel_map(_measure_one, missing, workers, progress, f"measuring {spec}")
        return [json.loads(measurement_path(t).read_text()) for t in targets]

    def achieved_kbps(
        self, sources: Iterable[Path], spec: str, workers: int | None = None, progress: bool = True
    ) -> float:
        """Codec payload bitrate of ``spec`` over ``sources``: total bits over total seconds."""
        measured = self.measurements(sources, spec, workers, progress)
        if not measured:
            raise ValueError(f"no coded copies to measure for {spec!r}")
        bits = sum(8 * m["payload_bytes"] for m in measured)
        return bits / sum(m["seconds"] for m in measured) / 1000


def parallel_map(
    work, jobs: list, workers: int | None, progress: bool, desc: str, unit: str = "clip"
) -> list:
    """``work`` over ``jobs`` in worker processes (one: in this process), results in order."""
    if not jobs:
        return []
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(work(job))
            bar.update()
    else:
        # fresh interpreters: forking a parent that holds torch's thread pools can hang
        context = multiprocessing.get_context("spawn")
        with _one_thread_each(), ProcessPoolExecutor(workers, mp_context=context) as pool:
            for result in pool.map(work, jobs, chunksize=4):
                results.append(result)
                bar.update()
    bar.close()
    return results


# The thread pools of the numerical libraries a worker loads (numpy's OpenBLAS, OpenMP).
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _one_thread_each() -> Iterator[None]:
    """Workers spawned inside start their libraries with one thread each: the workers already
    fill the cores, and a library's second thread there only spins against them (the MP3 grid
    test's matrix products took twice the CPU in the same wall time with two)."""
    kept = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
