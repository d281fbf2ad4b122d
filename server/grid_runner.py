"""The grid tests (asc.codecs.grid_tests) of streams' clips and ClassifyClip files, off the
windows' path.

A test costs a few times what the detector's network does on a 10 s clip. Run where a window
is cut, it held that stream's window back by its whole cost and took a decode thread from every
other stream. Here the tests run in one thread of their own, so together they never take more
than one core. A stream has one test at a time (a clip cut while its stream's test runs shares
it), and at most ``GRID_QUEUE`` wait: past that a clip goes untested (its stream's next clip
tries again) rather than holding audio for a test that would come too late. A clip's
windows take its call once it is there; its summary (or a ClassifyClip answer) waits for it up
to ``GRID_WAIT_SECONDS``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from asc.codecs.grid_tests import GridCall, grid_call

GRID_QUEUE = 16
GRID_WAIT_SECONDS = 10.0


class GridRunner:
    def __init__(self, queue: int = GRID_QUEUE):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grid")
        self.queue = queue
        self.waiting = 0  # submitted and not yet done

    def submit(self, samples: np.ndarray, rate: int) -> asyncio.Future | None:
        """The test of one clip's window, or None where ``queue`` tests already wait."""
        if self.waiting >= self.queue:
            return None
        self.waiting += 1
        future = asyncio.get_running_loop().run_in_executor(self.pool, grid_call, samples, rate)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: asyncio.Future) -> None:
        self.waiting -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def wait_for_call(future: asyncio.Future | None) -> GridCall | None:
    """A test's call, waited for at most ``GRID_WAIT_SECONDS``; None if it failed or is late."""
    if future is None:
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(future), GRID_WAIT_SECONDS)
    except Exception:  # too late (TimeoutError), or the test failed: the clip goes untested
        return None
