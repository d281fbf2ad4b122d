"""Prints a digest of what pyproject.toml asks of the lock: its dependency tables.

scripts/lock.sh writes it into each lock file's header; tests/test_lock.py recomputes it, so an
edit to any dependency without `make lock` fails the tests instead of installing something else.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path


def pyproject_digest(path: Path) -> str:
    data = tomllib.loads(path.read_text())
    wanted = {
        "requires-python": data["project"].get("requires-python"),
        "dependencies": data["project"].get("dependencies", []),
        "optional-dependencies": data["project"].get("optional-dependencies", {}),
        "build-system": data["build-system"].get("requires", []),
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write(pyproject_digest(root / "pyproject.toml") + "\n")
