"""A dynamic batcher: items from every stream share one forward pass.

Items wait until ``max_batch`` have gathered or the oldest has waited ``max_delay``, whichever
comes first; then the batch runs on the inference thread while the event loop keeps reading
streams, so the next batch fills during the current forward pass. ``max_batch=1`` is the naive
server (one forward pass per item) that the throughput benchmark compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

from server.metrics import ServerMetrics

log = logging.getLogger(__name__)
In = TypeVar("In")
Out = TypeVar("Out")


class BatcherClosed(RuntimeError):
    """Submitted after the batcher stopped (the server is shutting down)."""


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
        self.metrics = metrics
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out], float]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._busy = False  # a forward pass is running
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    def submit_nowait(self, item: In) -> asyncio.Future[Out]:
        """Queue ``item``; the returned future resolves when its batch has run."""
        if self._closed:
            raise BatcherClosed(f"{self.name} batcher is closed")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future, time.perf_counter()))
        return future

    async def close(self) -> None:
        """Stop taking items, run every item already queued, then stop."""
        self._closed = True
        while not self._queue.empty() or self._busy:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _gather(self) -> list[tuple[In, asyncio.Future[Out], float]]:
        first = await self._queue.get()
        self._busy = True  # from here until the batch is answered, close() must wait
        batch = [first]
        deadline = first[2] + self.max_delay_s
        while len(batch) < self.max_batch:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self._queue.get_nowait())
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            try:
                await self._run(loop, batch)
            finally:
                self._busy = False

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        batch = [entry for entry in batch if not entry[1].cancelled()]
        if not batch:
            return
        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.name).observe(len(batch))
            for _, _, queued in batch:
                self.metrics.queue_delay.labels(self.name).observe(started - queued)
        try:
            outputs = await loop.run_in_executor(
                self.executor, self.run, [item for item, _, _ in batch]
            )
        except Exception as e:  # a failed pass fails its items, never the batcher
            log.exception("%s forward pass failed", self.name)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(e)
            return
        if self.metrics is not None:
            self.metrics.inference.labels(self.name).observe(time.perf_counter() - started)
        self.batches += 1
        self.items += len(batch)
        for (_, future, _), output in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(output)
