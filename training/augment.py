"""Codec-coded copies of training audio, made once and cached by content hash.

Coding is the slow part of codec augmentation, and the same (clip, codec path) pair is needed
in every epoch and every experiment, so each coded copy is written once as 16-bit FLAC under a
key of (audio content, canonical spec, rate, engine version) and reused. Work runs in worker
processes with a progress bar.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asc.audio import load, save
from asc.codecs import parse_spec, resolve, roundtrip
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


def _code_one(job: Job) -> Path:
    x, _ = load(job.source, rate=job.rate, channels=job.channels)
    y = roundtrip(x, job.rate, job.spec)
    tmp = job.target.with_name(job.target.stem + f".{os.getpid()}.tmp.flac")
    save(tmp, np.clip(y, -1.0, 32767 / 32768), job.rate)
    tmp.replace(job.target)  # atomic: an interrupted run never leaves a half-written copy
    return job.target


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
        for spec in specs:
            if spec != UNCODED:
                resolve(spec, self.rate, self.channels)  # fail before any work on a bad spec
        mapping: dict[tuple[Path, str], Path] = {}
        jobs: list[Job] = []
        for source in sources:
            for spec in specs:
                target = self.path_for(source, spec)
                mapping[(source, spec)] = target
                if spec != UNCODED and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    jobs.append(Job(source, spec, self.rate, self.channels, target))
        if not jobs:
            return mapping
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(jobs), desc="coded copies", unit="clip", disable=not progress)
        if workers == 1:
            for job in jobs:
                _code_one(job)
                bar.update()
        else:
            # fresh interpreters: forking a parent that holds torch's thread pools can hang
            with ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            ) as pool:
                for _ in pool.map(_code_one, jobs, chunksize=4):
                    bar.update()
        bar.close()
        return mapping
