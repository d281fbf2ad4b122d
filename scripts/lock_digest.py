"""Prints a digest of what pyproject.toml asks of the lock: its dependency tables.

scripts/lock.sh writes it into each lock file's header; tests/test_lock.py recomputes it, so an
edit to any dependency without `make lock` fails the tests instead of installing something else.

The benchmark-only extras (BENCHMARK_EXTRAS) are left out of the digest of the installed locks
(lock, server, edge, pylock.toml): those locks never hold them, so adding or changing a peer to
benchmark against must not touch what `make setup`, the images and devices install. The peer's
own lock carries the digest with them (``--with-benchmarks``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

# Extras only benchmarks install (each has its own lock, requirements/<extra>.txt).
BENCHMARK_EXTRAS = ("bench-peer",)


def pyproject_digest(path: Path, with_benchmarks: bool = False) -> str:
    data = tomllib.loads(path.read_text())
    extras = data["project"].get("optional-dependencies", {})
    if not with_benchmarks:
        extras = {k: v for k, v in extras.items() if k not in BENCHMARK_EXTRAS}
    wanted = {
        "requires-python": data["project"].get("requires-python"),
        "dependencies": data["project"].get("dependencies", []),
        "optional-dependencies": extras,
        "build-system": data["build-system"].get("requires", []),
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    full = "--with-benchmarks" in sys.argv[1:]
    sys.stdout.write(pyproject_digest(root / "pyproject.toml", with_benchmarks=full) + "\n")
