"""Kubernetes Events on VirtualMachines, sent off the hot path.

Why a queue: the reconcile loop must never wait on the API server to tell a user something. Events
are best effort (as in client-go's EventRecorder): a bounded queue, one sender task, and when the queue
is full the event is dropped and logged (at 1, 2, 4, 8 … drops: a stalled API server must not flood the
log either) rather than growing memory without bound. Reasons are in :mod:`agent.names`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from agent.kubevirt import KIND_VM

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VMEvent:
    namespace: str
    name: str
    uid: str
    type: str  # Normal | Warning
    reason: str
    message: str


class EventSink(Protocol):
    async def create_event(
        self, involved: tuple[str, str, str, str], event_type: str, reason: str, message: str
    ) -> None: ...


class EventRecorder:
    """Bounded, fire-and-forget recorder. ``record`` never blocks; ``run`` sends."""

    def __init__(
        self, sink: EventSink | None, *, maxsize: int = 1000, attempts: int = 4, retry_seconds: float = 0.5
    ) -> None:
        self._sink = sink
        self.attempts = attempts
        self.retry_seconds = retry_seconds
        self._queue: asyncio.Queue[VMEvent] = asyncio.Queue(maxsize=maxsize)
        self._dropped = 0

    def record(self, event: VMEvent) -> None:
        if self._sink is None:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped & (self._dropped - 1) == 0:  # a power of two
                log.warning("events_dropped", total=self._dropped, reason=event.reason, vm=event.name)

    async def run(self) -> None:
        """Send queued events until cancelled; API failures are logged, never raised."""
        if self._sink is None:
            return
        while True:
            event = await self._queue.get()
            # A few tries: the blocked-with-a-reason Event is how a user learns why nothing happens, and
            # the API client does not retry a create after a 500 (it may have been stored).
            for attempt in range(1, self.attempts + 1):
                try:
                    await self._sink.create_event(
                        (KIND_VM, event.namespace, event.name, event.uid),
                        event.type,
                        event.reason,
                        event.message,
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # best effort, like client-go's recorder
                    if attempt == self.attempts:
                        log.warning("event_send_failed", reason=event.reason, vm=event.name, error=str(exc))
                    else:
                        await asyncio.sleep(self.retry_seconds * attempt)
