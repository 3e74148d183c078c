"""Small asyncio helpers that stay correct on Python 3.11.

``asyncio.wait_for`` on 3.11 returns the awaited result when a cancellation of the calling task races
the awaited thing finishing (CPython gh-86296, rewritten in 3.12): the cancel is lost. In a loop such as
``while True: await wait_for(event.wait(), t)`` the task then never ends, and a TaskGroup shutting down
waits for it forever (seen as intermittent test hangs). ``asyncio.timeout`` delivers the cancel.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set, at most ``timeout`` seconds (None: no limit); True when set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


__all__ = ["wait_event"]
