"""Deadline-ordered wake-ups for keys, without a polling loop.

Why: decisions say "look again at time t" (settle window, bridge grace, retry backoff, migration
deadline). One heap and one sleeping task serve all of them: the task sleeps exactly until the earliest
deadline, or until an earlier deadline is added. A key has at most one pending wake-up (the earliest
one asked for), so memory is bounded by the number of tracked keys.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from agent.aio import wait_event

K = TypeVar("K", bound=Hashable)


class Wakeups(Generic[K]):
    def __init__(self, fire: Callable[[K], None], clock: Callable[[], float] = time.time) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, key: K, at: float) -> None:
        """Wake ``key`` at wall time ``at`` (keeps the earlier one if a wake-up is already pending)."""
        current = self._due.get(key)
        if current is not None and current <= at:
            return
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        if self._heap[0][2] == key:
            self._changed.set()

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)  # the heap entry is skipped lazily

    async def run(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                at, _seq, key = heapq.heappop(self._heap)
                if self._due.get(key) == at:
                    del self._due[key]
                    self._fire(key)
            # Drop stale heads so the sleep is computed from a live deadline.
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)
            if not self._heap:
                await self._changed.wait()
                continue
            delay = max(0.0, self._heap[0][0] - now)
            await wait_event(self._changed, delay)
