"""The edge's errors, and its one warning line.

They sit apart from the modules that raise them, so the command line, the streaming engine,
the spool and every source catch the same classes without importing one another.
"""

from __future__ import annotations

import sys


class SourceError(Exception):
    """An input the edge cannot use (missing file, bad label file, no microphone): one line."""


class SpoolError(SourceError):
    """A spool directory the edge cannot use (unwritable, locked by another edge, corrupt)."""


def warn(message: str) -> None:
    """Default warning sink: one line on stderr, so it never mixes into JSONL on stdout."""
    print(f"asc-edge: warning: {message}", file=sys.stderr, flush=True)


class EdgeError(Exception):
    """The server (or the connection) refused the work: a gRPC status name and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message
