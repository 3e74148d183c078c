"""The cancel-safety of the agent's long-running waits (a lost cancel hangs a TaskGroup's shutdown).

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` returns instead of raising when the task is
cancelled in the same loop iteration as the event is set; these pin that our waits do not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from agent.aio import wait_event
from agent.wakeups import Wakeups


async def _cancel_while_woken(body: Callable[[], Awaitable[None]], wake: Callable[[], None]) -> None:
    """Start ``body`` as a task, then wake it and cancel it in the same iteration: it must end."""
    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)  # parked in its wait
    wake()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):  # a lost cancel shows up as TimeoutError here, not a hang
            await task


async def test_wait_event_delivers_a_cancel_that_races_the_event() -> None:
    event = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait_event(event, 10)
            event.clear()

    await _cancel_while_woken(loop, event.set)


async def test_wait_event_times_out_and_sees_a_set_event() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, None) is True


async def test_wakeups_loop_stops_when_cancelled_as_a_deadline_is_added() -> None:
    fired: list[str] = []
    wakeups: Wakeups[str] = Wakeups(fired.append)
    wakeups.schedule("far", time.time() + 60)  # the loop sleeps with a timeout

    await _cancel_while_woken(wakeups.run, lambda: wakeups.schedule("near", time.time() + 30))
    assert fired == []
