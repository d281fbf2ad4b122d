"""Several sources at once: one :class:`~edge.streamer.EdgeStreamer` per source, run as one.

Why one streamer per source rather than one stream for all: each source's clip streams to the
server while it is being recorded, so a source that stalls or reconnects never delays
another; each source keeps its own totals and its own spool (``--spool DIR`` becomes
``DIR/<source name>``, since a spool belongs to one stream of clips); and every call still
carries the edge's one ``--device-id``, the identity its certificate or token vouches for.
Clip ids start with the source's name, so the server's per-device memory keeps them apart.

Stopping follows :meth:`EdgeStreamer.run`: Ctrl-C (or SIGTERM) once drains every source (no
new clips, the clips in flight get their summaries), twice cancels; a source whose stream
fails (the server refuses it) drains the others and its error is raised after they finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from edge.stream_totals import PathTotals
from edge.streamer import EdgeStreamer, run_draining


class StreamGroup:
    """Named streamers started, joined and stopped together; see the module docstring."""

    def __init__(
        self,
        streamers: Mapping[str, EdgeStreamer],
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if not streamers:
            raise ValueError("no sources to stream")
        self.streamers = dict(streamers)
        self.on_event = on_event  # messages about the whole group (Ctrl-C)
        self.interrupted = False

    def start(self) -> None:
        for streamer in self.streamers.values():
            streamer.start()

    def stop(self, drain: bool = True) -> None:
        for streamer in self.streamers.values():
            streamer.stop(drain)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every streamer; as soon as one has failed, drain the others."""
        deadline = None if timeout is None else time.monotonic() + timeout
        stopping = False
        while True:
            pending = [s for s in self.streamers.values() if not s.join(timeout=0.2)]
            if not pending:
                return True
            if not stopping and self.first_error() is not None:
                stopping = True
                self.stop(drain=True)
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def first_error(self) -> BaseException | None:
        return next(
            (e for s in self.streamers.values() if (e := s.first_error()) is not None), None
        )

    @property
    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.streamers.values())

    @property
    def totals(self) -> dict[str, dict[str, PathTotals]]:
        return {name: s.totals for name, s in self.streamers.items()}

    def run(self) -> bool:
        """Start, wait, raise the first error; True when Ctrl-C (or SIGTERM) ended the run."""
        self.interrupted = run_draining(self, self.on_event)
        return self.interrupted
