"""The grid tests (asc.codecs.grid_tests) of streams' clips and ClassifyClip files, off the
windows' path.

A test costs about two thirds of what the detector's network does on a 10 s clip. Run where a
window was cut, it held that stream's window back by its whole cost and took a decode thread
from every other stream. Here the tests run in one thread of their own, which rests between
tests so that together they take at most ``GRID_CPU_SHARE`` of one core. A stream has one
test at a time (a clip cut while its stream's test runs shares it), and at most ``GRID_QUEUE``
wait: past that a clip goes untested (its stream's next clip tries again) rather than holding
audio for a test that would come too late. A clip's windows take its call once it is there;
its summary (or a ClassifyClip answer) waits for it up to ``GRID_WAIT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import Counter

from asc.codecs.grid_tests import GridCall, grid_call

GRID_QUEUE = 16
GRID_WAIT_SECONDS = 10.0
# The most of one core the tests take: after a test, the thread rests three times its CPU time
# before the next. Cheaper tests would otherwise just run more often under load and take the
# windows' CPU (the windows come first: a clip past the queue takes its stream's last call).
GRID_CPU_SHARE = 0.25


class GridRunner:
    def __init__(self, outcomes: Counter, queue: int = GRID_QUEUE):
        """``outcomes``: the asc_grid_tests counter (labelled run, failed, skipped)."""
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grid")
        self.queue = queue
        self.waiting = 0  # submitted and not yet done
        self.outcomes = outcomes
        self._rested_at = 0.0  # time.monotonic() when the thread may start its next test

    def submit(self, samples: np.ndarray, rate: int) -> asyncio.Future | None:
        """The test of one clip's window, or None where ``queue`` tests already wait."""
        if self.waiting >= self.queue:
            self.outcomes.labels("skipped").inc()
            return None
        self.waiting += 1
        future = asyncio.get_running_loop().run_in_executor(self.pool, self._test, samples, rate)
        future.add_done_callback(self._done)
        return future

    def _test(self, samples: np.ndarray, rate: int) -> GridCall:
        """One test on the grid thread, after the rest the last one earned."""
        time.sleep(max(0.0, self._rested_at - time.monotonic()))
        started = time.thread_time()
        try:
            return grid_call(samples, rate)
        finally:
            spent = time.thread_time() - started
            self._rested_at = time.monotonic() + spent * (1 / GRID_CPU_SHARE - 1)

    def _done(self, future: asyncio.Future) -> None:
        self.waiting -= 1
        if future.cancelled():
            return
        self.outcomes.labels("failed" if future.exception() is not None else "run").inc()

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
