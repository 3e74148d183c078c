"""Workload generators shared by the benchmarks: a paced stream of irrelevant VMI status updates."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence

from agent.kubevirt import VMIS
from simulator.testing import SimHarness


async def status_stream(
    h: SimHarness,
    keys: Sequence[tuple[str, str]],
    *,
    rate: float,
    count: int | None = None,
    stop: asyncio.Event | None = None,
    tick: float = 0.01,
    on_tick: Callable[[int], None] | None = None,
    seed: int = 1,
) -> tuple[int, float]:
    """Patch ``status.guestOSInfo.kernelRelease`` of random VMIs at ``rate`` per second (in-process,
    the way virt-handler's status heartbeats look to a watcher) until ``count`` or ``stop``.

    Irrelevant to hot plug by design: the agent must parse and discard them. Returns (events, seconds).
    """
    rng = random.Random(seed)
    store = h.store
    sent = 0
    start = time.perf_counter()
    per_tick = rate * tick
    owed = 0.0
    next_at = start
    while (count is None or sent < count) and not (stop is not None and stop.is_set()):
        owed += per_tick
        while owed >= 1.0 and (count is None or sent < count):
            ns, name = keys[rng.randrange(len(keys))]
            await store.patch(VMIS, ns, name, {"status": {"guestOSInfo": {"kernelRelease": f"6.{sent}"}}})
            sent += 1
            owed -= 1.0
        if on_tick is not None:
            on_tick(sent)
        next_at += tick
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
    return sent, time.perf_counter() - start
