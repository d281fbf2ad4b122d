"""A dynamic batcher: items from every stream share forward passes, in fair order.

Items wait until a pass's worth has gathered, the oldest has waited ``max_delay``, or every
open owner (stream or call, ``open``) has an item queued, whichever comes first: with nobody
left who could join the pass, waiting only delays it, which matters to a lone device most.
Then the pass runs on an inference thread while the event loop keeps reading streams; up to
the runner's ``passes`` passes run at once (each formed while the others run), and what waits
when several are free and every open stream waits is shared among them: eight devices waiting
on one pass of eight would leave the other pass, and half the cores, idle. Which
items make the pass is decided by ``FairQueue`` (server/fairness.py): each stream (owner) gets
its share, so a stream flooding the queue delays only itself. A pass holds
at most ``max_batch`` items and, on a CPU, at most the runner's ``max_pass`` items and
``max_pass_samples`` of audio: a pass is the unit nobody can interrupt, so keeping it short
bounds how long a window that just arrived waits behind other streams' work.

While other streams are about, a flood's items (a stream past its burst of classification)
come after theirs, fill at most two places of a pass and wait while the models were busy more
than half of the last second: the pass a real-time window lands behind stays short, and the
cores stay partly free for decoding and the event loop.

A pass that raises is split in halves and each half run again, down to single items, so only
the item at fault fails and every other window of the batch gets its result. ``max_batch=1`` is
the naive server (one pass per item) that the throughput benchmark compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Generic, TypeVar

from server.fairness import Entry, FairQueue
from server.metrics import ServerMetrics
from server.safe_log import LogLimiter

log = logging.getLogger("asc.server.batcher")
# While a stream that is not flooding has submitted in the last LIGHT_SECONDS, a flood's items
# (see server.budgets.ClassifyRate) come after every other item, fill at most FLOOD_PER_PASS
# places of a pass, and wait while the models were busy more than FLOOD_DUTY of the last
# DUTY_SECONDS: the pass a real-time window lands behind stays short, and the cores the
# models share with decoding and the event loop are not all taken by a flood.
LIGHT_SECONDS = 2.0
FLOOD_PER_PASS = 2
FLOOD_DUTY = 0.5
DUTY_SECONDS = 1.0
In = TypeVar("In")
Out = TypeVar("Out")
_anonymous = itertools.count()


class BatcherClosed(RuntimeError):
    """Submitted after the batcher stopped (the server is shutting down)."""


def _size(item) -> int:
    try:
        return len(item)
    except TypeError:
        return 1


class DynamicBatcher(Generic[In, Out]):
    def __init__(
        self,
        name: str,
        run: Callable[[list[In]], list[Out]],
        executor: Executor,
        max_batch: int,
        max_delay_s: float,
        metrics: ServerMetrics | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max delay must not be negative, got {max_delay_s}")
        self.name, self.run, self.executor = name, run, executor
        self.max_batch, self.max_delay_s = max_batch, max_delay_s
        self.pass_size = min(max_batch, getattr(run, "max_pass", None) or max_batch)
        self.max_pass_samples: int | None = getattr(run, "max_pass_samples", None)
        self.metrics = metrics
        self._queue = FairQueue()
        self._open: set[Hashable] = set()  # owners that may still submit (open)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self._gathering = False  # a pass is being formed: close() must wait for it
        self._in_flight: set[asyncio.Task] = set()  # passes running
        # Passes that may run at once (the runner's ``passes``): on two CPU cores two passes
        # kept the cores busier than one pass on both (docs/performance.md).
        self.passes = max(1, getattr(run, "passes", 1))
        self._errors = LogLimiter(burst=5, interval=60.0)
        self._passes: deque[tuple[float, float]] = deque()  # (start, end) of recent passes
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    def submit_nowait(
        self, item: In, owner: Hashable | None = None, flood: bool = False
    ) -> asyncio.Future[Out]:
        """Queue ``item`` for ``owner`` (a stream); the future resolves when its pass has run.

        ``flood``: the owner is past its burst of classification (see the module docstring).
        Cancelling the future withdraws the item if its pass has not started.
        """
        if self._closed:
            raise BatcherClosed(f"{self.name} batcher is closed")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        key = owner if owner is not None else ("anonymous", next(_anonymous))
        entry = Entry(item, future, key, float(_size(item)), time.perf_counter(), flood=flood)
        self._queue.push(entry)
        if self._wake is not None:
            self._wake.set()
        return future

    @property
    def idle(self) -> bool:
        """No item waits and no pass runs; read from other threads too (the grid tests'), as
        two plain reads, so it may be a moment out of date."""
        return len(self._queue) == 0 and not self._in_flight

    def open(self, owner: Hashable) -> None:
        """``owner`` (a stream, a call) may submit from now until ``forget``: a pass waits
        for it only while it is open and has nothing queued."""
        self._open.add(owner)

    def forget(self, owner: Hashable) -> None:
        """``owner`` submits no more (its stream ended)."""
        self._open.discard(owner)
        self._queue.forget(owner)

    def _everyone_waiting(self) -> bool:
        """Every open owner has an item queued: no one else can join the pass."""
        return bool(self._open) and all(self._queue.has_items(o) for o in self._open)

    async def close(self) -> None:
        """Stop taking items, run every item already queued, then stop."""
        self._closed = True
        while self._queue.oldest() is not None or self._gathering or self._in_flight:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _duty(self, now: float) -> float:
        """Share of the last DUTY_SECONDS the models spent in passes."""
        since = now - DUTY_SECONDS
        while self._passes and self._passes[0][1] < since:
            self._passes.popleft()
        busy = sum(end - max(start, since) for start, end in self._passes)
        return busy / (DUTY_SECONDS * self.passes)

    def _pass_limit(self) -> Callable[[Entry], int]:
        """The most items the pass being formed takes, given its first item (``take``'s
        limit). Read before ``take`` empties the queue: when every open stream waits (no one
        else can join) and no flood waits, what waits is shared among the free passes, which
        then run at once; eight devices waiting on one pass of eight left the other pass, and
        half the cores, idle. Not otherwise: a pass of its own for a stream that floods or
        holds long windows would take the cores from the others' pass."""
        most = self.pass_size
        free = self.passes - len(self._in_flight)
        if free > 1 and self._everyone_waiting() and not self._queue.flood_waiting():
            most = min(most, max(1, -(-len(self._queue) // free)))
        if self.max_pass_samples is None:
            return lambda first: most
        samples = self.max_pass_samples
        return lambda first: max(1, min(most, samples // max(1, int(first.cost))))

    async def _gather(self) -> list[Entry]:
        assert self._wake is not None
        while True:
            oldest = self._queue.oldest()
            if oldest is None:
                self._queue.drop_cancelled()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._gathering = True  # from here until the pass is running, close() must wait
            remaining = oldest + self.max_delay_s - time.perf_counter()
            full = len(self._queue) >= self.pass_size or self._everyone_waiting()
            if full or remaining <= 0:
                now = time.perf_counter()
                light_about = now - self._queue.light_seen < LIGHT_SECONDS and not self._closed
                if light_about and not self._queue.light_waiting() and self._duty(now) > FLOOD_DUTY:
                    self._gathering = False  # only floods wait: let the cores rest a moment
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.02)
                    continue
                batch = self._queue.take(
                    self._pass_limit(), _shape, FLOOD_PER_PASS if light_about else None
                )
                if batch:
                    return batch
                self._gathering = False
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while len(self._in_flight) >= self.passes:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            batch = await self._gather()
            task = loop.create_task(self._run(loop, batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            self._gathering = False

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[Entry]) -> None:
        batch = [entry for entry in batch if not entry.future.cancelled()]
        if not batch:
            return
        started = time.perf_counter()
        if self.metrics is not None:
            for entry in batch:
                self.metrics.queue_delay.labels(self.name).observe(started - entry.queued)
        try:
            await self._isolating(loop, batch)
        except Exception as e:  # past the isolation (a runner's wrong count of outputs, say)
            log.error("%s pass failed outside its forward pass", self.name, exc_info=e)
            for entry in batch:  # fail them, so no caller waits for ever
                if not entry.future.done():
                    entry.future.set_exception(e)

    async def _isolating(self, loop: asyncio.AbstractEventLoop, batch: list[Entry]) -> None:
        """Run ``batch``; if the pass raises, run each half again, so only culprits fail."""
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(
                self.executor, self.run, [entry.item for entry in batch]
            )
        except Exception as e:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._isolating(loop, batch[:half])
                await self._isolating(loop, batch[half:])
                return
            if self._errors.allow("forward pass failure", log):
                log.error("%s forward pass failed for one item", self.name, exc_info=e)
            future = batch[0].future
            if not future.done():
                future.set_exception(e)
            return
        if len(outputs) != len(batch):  # no output can be trusted to be whose
            raise RuntimeError(f"{self.name} gave {len(outputs)} outputs for {len(batch)} items")
        ended = time.perf_counter()
        self._passes.append((started, ended))
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.name).observe(len(batch))
            self.metrics.inference.labels(self.name).observe(ended - started)
        self.batches += 1
        self.items += len(batch)
        for entry, output in zip(batch, outputs, strict=True):
            if not entry.future.done():
                entry.future.set_result(output)


def _shape(item) -> int:
    return _size(item)
