"""Fair order between streams in the batcher: start-time fair queuing, by audio classified.

Each owner (a stream, or one ClassifyClip call) has its own FIFO. An item's start tag is the
later of the queue's virtual time and the finish tag of its owner's previous item; its finish
tag adds its cost (samples of audio). Items leave in start-tag order, so every owner with work
waiting gets its share of forward passes: a stream that floods the queue only pushes its own
tags ahead and waits behind itself, while a stream sending at real time finds its windows near
the front whenever they arrive. The order is work-conserving: a lone flood still uses all of
the models' time.

Forward passes need one tensor shape, so ``take`` fills a pass with items of the same size as
the first item in fair order, skipping (not reordering within an owner) the others.

A pass cannot be interrupted, so a window arriving while one runs waits for it to end, and the
models' passes take the cores that decoding and the event loop need too. Items of a flood (a
stream past its burst of classification, ``server.budgets.ClassifyRate``) can be kept to a few
per pass, behind every other item, while other streams are about; the batcher does so, and
lets a flood fill whole passes when it is alone.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    item: Any
    future: Any  # asyncio.Future: a cancelled one is dropped, never run
    owner: Hashable
    cost: float
    queued: float  # time.perf_counter() when submitted
    start: float = 0.0
    finish: float = 0.0
    taken: bool = False
    flood: bool = False  # its stream is past its burst of classification (server.budgets)


@dataclass
class _Owner:
    items: deque = field(default_factory=deque)
    last_finish: float = 0.0


class FairQueue:
    def __init__(self) -> None:
        self._owners: dict[Hashable, _Owner] = {}
        self._heads: list[tuple[float, int, Hashable]] = []  # each owner's first item
        self._arrivals: deque[Entry] = deque()  # every entry in submission order
        self._seq = itertools.count()
        self.virtual = 0.0
        self.count = 0
        self.light_seen = float("-inf")  # when an item not from a flood was last submitted

    def __len__(self) -> int:
        return self.count

    def push(self, entry: Entry) -> None:
        owner = self._owners.get(entry.owner)
        if owner is None:
            owner = self._owners[entry.owner] = _Owner(last_finish=self.virtual)
        entry.start = max(self.virtual, owner.last_finish)
        entry.finish = owner.last_finish = entry.start + entry.cost
        if not entry.flood:
            self.light_seen = entry.queued
        owner.items.append(entry)
        if len(owner.items) == 1:
            heapq.heappush(self._heads, (entry.start, next(self._seq), entry.owner))
        self._arrivals.append(entry)
        self.count += 1

    def oldest(self) -> float | None:
        """When the longest-waiting live entry was submitted (None: nothing waits)."""
        while self._arrivals and (self._arrivals[0].taken or self._arrivals[0].future.cancelled()):
            self._arrivals.popleft()
        return self._arrivals[0].queued if self._arrivals else None

    def _pop_head(self) -> Entry | None:
        """The first live entry in fair order, removed; cancelled entries are dropped."""
        while self._heads:
            _, _, key = heapq.heappop(self._heads)
            owner = self._owners[key]
            entry = owner.items.popleft()
            self._requeue(key, owner)
            entry.taken = True
            self.count -= 1
            if not entry.future.cancelled():
                return entry
        return None

    def _requeue(self, key: Hashable, owner: _Owner) -> None:
        if owner.items:
            heapq.heappush(self._heads, (owner.items[0].start, next(self._seq), key))
        elif owner.last_finish <= self.virtual:
            del self._owners[key]  # idle and not ahead of the clock: nothing to remember

    def _pop_light_head(self) -> Entry | None:
        """The first live entry in fair order that is not a flood's, removed (or None)."""
        best = None
        for index, (start, seq, key) in enumerate(self._heads):
            entry = self._owners[key].items[0]
            if entry.flood or entry.future.cancelled():
                continue
            if best is None or (start, seq) < best[1]:
                best = (index, (start, seq))
        if best is None:
            return None
        _, _, key = self._heads.pop(best[0])
        heapq.heapify(self._heads)
        owner = self._owners[key]
        entry = owner.items.popleft()
        self._requeue(key, owner)
        entry.taken = True
        self.count -= 1
        return entry

    def flood_waiting(self) -> bool:
        """An entry from a flood waits."""
        return any(self._owners[key].items[0].flood for _, _, key in self._heads)

    def light_waiting(self) -> bool:
        """An entry not from a flood waits."""
        return any(
            not (e := self._owners[key].items[0]).flood and not e.future.cancelled()
            for _, _, key in self._heads
        )

    def take(
        self,
        limit: Callable[[Entry], int],
        shape: Callable[[Any], Hashable],
        floods: int | None = None,
    ) -> list[Entry]:
        """Up to ``limit(first)`` entries of the first entry's shape, in fair order.

        With ``floods`` set, the pass starts with the first entry not from a flood, if any,
        and holds at most ``floods`` entries of floods.
        """
        first = self._pop_light_head() if floods is not None else None
        if first is None:
            first = self._pop_head()
        if first is None:
            return []
        self.virtual = max(self.virtual, first.start)
        batch = [first]
        most = limit(first)
        heavy = int(first.flood)
        wanted = shape(first.item)
        skipped: list[tuple[float, int, Hashable]] = []
        while len(batch) < most and self._heads:
            head = heapq.heappop(self._heads)
            owner = self._owners[head[2]]
            entry = owner.items[0]
            if entry.future.cancelled():
                owner.items.popleft()
                entry.taken = True
                self.count -= 1
                self._requeue(head[2], owner)
                continue
            if shape(entry.item) != wanted or (
                entry.flood and floods is not None and heavy >= floods
            ):
                skipped.append(head)
                continue
            heavy += int(entry.flood)
            owner.items.popleft()
            entry.taken = True
            self.count -= 1
            self._requeue(head[2], owner)
            batch.append(entry)
        for head in skipped:
            heapq.heappush(self._heads, head)
        return batch

    def has_items(self, key: Hashable) -> bool:
        owner = self._owners.get(key)
        return owner is not None and bool(owner.items)

    def forget(self, key: Hashable) -> None:
        """An owner that will submit no more (its stream ended): drop its idle state."""
        owner = self._owners.get(key)
        if owner is not None and not owner.items:
            del self._owners[key]

    def drop_cancelled(self) -> None:
        """Forget entries whose futures were cancelled (their streams ended)."""
        for owner in self._owners.values():
            live = deque(e for e in owner.items if not e.future.cancelled())
            removed = len(owner.items) - len(live)
            if removed:
                for e in owner.items:
                    if e.future.cancelled():
                        e.taken = True
                self.count -= removed
                owner.items = live
        self._heads = [
            (o.items[0].start, next(self._seq), k) for k, o in self._owners.items() if o.items
        ]
        heapq.heapify(self._heads)
