"""The grid tests (asc.codecs.grid_tests) of streams' clips and ClassifyClip files, off the
windows' path.

A test costs more than the detector's network does on a 10 s clip. Run where a window was cut,
it held that stream's window back by its whole cost and took a decode thread from every other
stream. Here the tests run in one thread of their own, which rests after each step of a test
(a few milliseconds of CPU) so that together they take at most ``share`` of one core
(``--grid-cpu-share``) once ``GRID_BURST_SECONDS`` of CPU is spent, while the windows' path has
work: a step taken while no window waits for a forward pass and none runs cost no window
anything, and is not counted. So on an idle or lightly loaded server a test runs at full speed
(at a quarter of a core, the four tests on a lossless 10 s window took longer than the next
window takes to arrive, and every stream's summary waited for them), and under load the share
holds. A stream
has one test at a time (a clip cut while its stream's test runs shares it), and at most
``GRID_QUEUE`` wait: past that a clip goes untested (its stream's next clip tries again) rather
than holding audio for a test that would come too late. A clip's windows take its call once it
is there; a ClassifyClip answer waits for it as long as the dearest test of a window takes at
the share (``GridRunner.wait_seconds``), and so does a stream's summary while no other test
waits (``GridRunner.summary_wait_seconds``); behind others it does not wait, and the stream's
later clips take the call: a backlog of tests, each seconds of CPU, must not become every
stream's latency. A stream that asks (``StreamConfig.wait_for_grid_tests``, for files replayed
faster than real time) has every summary wait ``wait_seconds``: its own latency only.

The tests' matrix products are small, and numpy's BLAS would run each on every core: in the
same wall time, a second thread only spins, outside this thread's CPU time that the share
counts (the MP3 test took twice the CPU with two). So where the tests run, numpy's and scipy's
BLAS run on one thread (the models' runtimes keep their own pools).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import Counter
from threadpoolctl import threadpool_limits

from asc.codecs.grid_tests import GridCall, grid_call

GRID_QUEUE = 16
GRID_WAIT_SECONDS = 10.0  # the least a summary waits for its clip's test
GRID_BURST_SECONDS = 0.5  # CPU the tests may take at full speed before the share applies
# The most CPU the tests take on one window (10 s), with a margin: all four, on a lossless clip,
# the dearest case, took 2.6 to 2.7 s here (`python -m benchmarks.grid_tests`, whose last line
# holds its dearest clip against this).
GRID_TEST_CPU_SECONDS = 4.0


class GridRunner:
    def __init__(
        self,
        outcomes: Counter,
        share: float,
        queue: int = GRID_QUEUE,
        busy: Callable[[], bool] | None = None,
    ):
        """``outcomes``: the asc_grid_tests counter (labelled run, failed, skipped). ``share``:
        the most of one core the tests take, sustained; 0: no tests. The tests earn CPU at
        ``share`` seconds per second, up to ``GRID_BURST_SECONDS``, and spend what each step
        takes; a step that leaves them in debt is followed by the rest that repays it. The
        windows come first, and a forward pass runs on every core: a test that held one core
        for its whole half second held up each pass that ran beside it, so under load the
        rests come between a test's steps, not between tests. ``busy``: whether the windows'
        path has work (a window waiting for a pass, or a pass running), read from the grid
        thread after each step; a step taken while it had none is free. None: every step
        counts."""
        self.share = share
        if share > 0:
            threadpool_limits(1, user_api="blas")  # for the process: see the module's docstring
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grid")
        self.queue = queue
        self.waiting = 0  # submitted and not yet done
        self.outcomes = outcomes
        self._busy = busy
        self._credit = GRID_BURST_SECONDS  # CPU seconds the tests may spend without a rest
        self._credit_at = time.monotonic()  # when the credit was last brought up to date
        self._step_started = 0.0  # time.thread_time() when the current step began

    def summary_wait_seconds(self, asked: bool = False) -> float:
        """How long a stream's summary waits for its clip's test: ``wait_seconds`` while at
        most that one test is waiting or running, or where its stream ``asked`` to wait
        (``StreamConfig.wait_for_grid_tests``); else 0 (it takes the call only if done)."""
        return self.wait_seconds if asked or self.waiting <= 1 else 0.0

    @property
    def wait_seconds(self) -> float:
        """How long a summary waits for its clip's test: as long as the dearest test takes at
        the share once the burst is spent, and never less than ``GRID_WAIT_SECONDS``."""
        if self.share <= 0:
            return GRID_WAIT_SECONDS
        return max(GRID_WAIT_SECONDS, (GRID_TEST_CPU_SECONDS - GRID_BURST_SECONDS) / self.share)

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
        """One test on the grid thread, resting between its steps where it must."""
        self._pace()  # the last test's last step is paid for first
        return grid_call(samples, rate, self._pace)

    def _pace(self) -> None:
        """Between two steps: the step just done is paid from the credit, and a debt is
        repaid by resting; then the next step begins."""
        spent = time.thread_time() - self._step_started if self._step_started else 0.0
        if self._busy is not None and not self._busy():
            spent = 0.0  # no window waited or ran beside it: it took no one's CPU
        now = time.monotonic()
        earned = (now - self._credit_at) * self.share
        self._credit = min(GRID_BURST_SECONDS, self._credit + earned) - spent
        self._credit_at = now
        if self._credit < 0:
            time.sleep(-self._credit / self.share)
            self._credit, self._credit_at = 0.0, time.monotonic()
        self._step_started = time.thread_time()

    def _done(self, future: asyncio.Future) -> None:
        self.waiting -= 1
        if future.cancelled():
            return
        self.outcomes.labels("failed" if future.exception() is not None else "run").inc()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def wait_for_call(future: asyncio.Future | None, seconds: float) -> GridCall | None:
    """A test's call, waited for at most ``seconds`` (``GridRunner.wait_seconds``); None if it
    failed or is late."""
    if future is None:
        return None
    try:
        return await asyncio.wait_for(asyncio.shield(future), seconds)
    except Exception:  # too late (TimeoutError), or the test failed: the clip goes untested
        return None
