"""Watch plumbing: events serialized once, per-watcher bounded queues, and the filter a watcher uses.

A mutation produces one `WatchEvent`; its JSON line is built lazily once and the same bytes are
handed to every interested watcher.  A watcher whose queue is full is closed (the real server also
drops unresponsive watchers) instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agent.aio import wait_event
from simulator.apiserver.meta import as_version
from simulator.apiserver.registry import ResourceType
from simulator.apiserver.selectors import FieldRequirement, Requirement, fields_match, labels_match
from simulator.apiserver.table import to_table


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class WatchEvent:
    """One stored mutation: `obj` is the stored object (shared, never mutated) and `old` its predecessor."""

    type: str
    rtype: ResourceType
    rv: int
    obj: dict[str, Any]
    old: dict[str, Any] | None = None
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(
        self,
        type_: str | None = None,
        *,
        table: bool = False,
        previous: bool = False,
        served: ResourceType | None = None,
    ) -> bytes:
        """The event as a watch line.

        `table=True` renders the object as a kubectl Table; `previous=True` sends the previous state
        stamped with this event's RV (what the watch cache sends when an object leaves a selector).
        """
        t = type_ or self.type
        view = served or self.rtype
        key = (
            ("T" if table else "")
            + ("P" if previous else "")
            + (view.version if view.converts or table else "")
            + t
        )
        cached = self._lines.get(key)
        if cached is None:
            obj = self.obj
            if previous and self.old is not None:
                obj = {**self.old, "metadata": {**self.old["metadata"], "resourceVersion": str(self.rv)}}
            obj = as_version(view, obj)
            if table:
                obj = to_table(view, [obj], self.rv)
            cached = b'{"type":"' + t.encode() + b'","object":' + encode(obj) + b"}\n"
            self._lines[key] = cached
        return cached

    def forget_lines(self) -> None:
        if self._lines:
            self._lines = {}


class Close(Enum):
    """Why a watcher's stream ends: cleanly (end of chunked body) or by resetting the connection."""

    EOF = "eof"
    ABORT = "abort"


@dataclass
class WatchFilter:
    namespace: str | None = None
    labels: list[Requirement] = field(default_factory=list)
    fields: list[FieldRequirement] = field(default_factory=list)

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return labels_match(self.labels, obj) and fields_match(self.fields, obj)


class Watcher:
    """A single open watch: a bounded line queue fed synchronously by the store."""

    def __init__(self, rtype: ResourceType, flt: WatchFilter, max_queue: int, *, table: bool = False) -> None:
        self.rtype = rtype
        self.table = table
        self.filter = flt
        self.max_queue = max_queue
        self._lines: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self.closed: Close | None = None
        self.overflowed = False
        #: Resets the connection at once (set by the HTTP handler): an abort must also interrupt a
        #: write that is blocked on a client that stopped reading.
        self.abort_hook: Callable[[], None] | None = None

    def select(self, ev: WatchEvent) -> bytes | None:
        """The line this watcher should see for `ev`, if any.

        Like the watch cache, an object entering the selector is ADDED and one leaving it DELETED.
        """
        now = self.filter.matches(ev.obj)
        if ev.type == "MODIFIED" and ev.old is not None:
            before = self.filter.matches(ev.old)
            if now and not before:
                return ev.line("ADDED", table=self.table, served=self.rtype)
            if before and not now:
                return ev.line("DELETED", table=self.table, previous=True, served=self.rtype)
        return ev.line(table=self.table, served=self.rtype) if now else None

    def offer(self, ev: WatchEvent) -> None:
        """Queue the event if it concerns this watcher."""
        if self.closed is None:
            line = self.select(ev)
            if line is not None:
                self.push(line)

    def push(self, line: bytes) -> None:
        if self.closed is not None:
            return
        if len(self._lines) >= self.max_queue:
            # Like the real server, drop a watcher that cannot keep up instead of buffering more. Abort:
            # a client that stopped reading would never receive a clean end of stream anyway.
            self.overflowed = True
            self.close(Close.ABORT)
            return
        self._lines.append(line)
        self._wakeup.set()

    def close(self, how: Close = Close.EOF) -> None:
        if self.closed is None:
            self.closed = how
            if how is Close.ABORT and self.abort_hook is not None:
                self.abort_hook()
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._lines)

    def drain(self) -> list[bytes]:
        out = list(self._lines)
        self._lines.clear()
        self._wakeup.clear()
        return out

    async def wait(self, max_wait: float | None) -> bool:
        """Wait for lines or a close; False on timeout."""
        if self._lines or self.closed is not None:
            return True
        return await wait_event(self._wakeup, max_wait)
