"""The grid tests (asc.codecs.grid_tests) of streams' clips and ClassifyClip files, off the
windows' path.

A test costs more than the detector's network does on a 10 s clip. Run where a window was cut,
it held that stream's window back by its whole cost and took a decode thread from every other
stream. Here the tests run in one thread of their own, which rests after each step of a test
(a few milliseconds of CPU) so that together they take at most ``share`` of one core
(``--grid-cpu-share``). A stream has one test
at a time (a clip cut while its stream's test runs shares it), and at most ``GRID_QUEUE``
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


class GridRunner:
    def __init__(self, outcomes: Counter, share: float, queue: int = GRID_QUEUE):
        """``outcomes``: the asc_grid_tests counter (labelled run, failed, skipped). ``share``:
        the most of one core the tests take (after each step the thread rests its CPU time
        times ``1 / share - 1``: at 0.25, three times); 0: no tests. The windows come first,
        and a forward pass runs on every core: a test that held one core for its whole half
        second held up each pass that ran beside it, so the rests come between steps, not
        between tests."""
        self.share = share
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grid")
        self.queue = queue
        self.waiting = 0  # submitted and not yet done
        self.outcomes = outcomes
        self._rested_at = 0.0  # time.monotonic() when the thread may take its next step
        self._step_started = 0.0  # time.thread_time() when the current step began

    def submit(self, samples: np.ndarray, rate: int) -> asyncio.Future | None:
        """The test of one clip's window, or None where ``queue`` tests already wait (or
        there are no tests)."""
        if self.share <= 0:
            return None
        if self.waiting >= self.queue:
            self.outcomes.labels("skipped").inc()
            return None
        self.waiting += 1
        future = asyncio.get_running_loop().run_in_executor(self.pool, self._test, samples, rate)
        future.add_done_callback(self._done)
        return future

    def _test(self, samples: np.ndarray, rate: int) -> GridCall | None:
        """One test on the grid thread, resting between its steps."""
        self._pace()  # the rest the last test's last step earned
        return grid_call(samples, rate, self._pace)

    def _pace(self) -> None:
        """Between two steps: the rest the step just done earned, then the next begins."""
        spent = time.thread_time() - self._step_started if self._step_started else 0.0
        self._rested_at = max(self._rested_at, time.monotonic()) + spent * (1 / self.share - 1)
        time.sleep(max(0.0, self._rested_at - time.monotonic()))
        self._step_started = time.thread_time()

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
