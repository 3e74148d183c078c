"""What the agent tells: Kubernetes Events on VMs, counters and histograms, the state gauges — and,
while this replica follows, the backlog of what it would have told.

Why one object: only the leader counts and writes Events (replicas must not count twice), yet a
replica that lost its Lease under API errors and then *resumed* it (nobody else led in between) must
report what it saw meanwhile, because nobody else did. So every report goes through here: the leader
applies it now, a follower keeps it (bounded), and :meth:`Reporter.set_leading` flushes the backlog on
a resumed leadership or drops it after a takeover (the other leader reported it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from agent.events import EventRecorder, VMEvent
from agent.lifecycle import (
    Count,
    Emit,
    Failure,
    HotplugCompleted,
    Metric,
    MigrationCreatedMetric,
    MigrationFinished,
    QueueWait,
    Retry,
    SlotExhaustion,
    Track,
)
from metrics.definitions import HotplugMetrics

#: Reports a replica produced while not leading, kept until it leads again (bounded).
BACKLOG_MAX: Final = 10_000
#: Gauges are recomputed at most this often (they scan the tracked VMIs).
GAUGE_REFRESH_SECONDS: Final = 0.5


class Reporter:
    def __init__(self, metrics: HotplugMetrics, events: EventRecorder) -> None:
        self.metrics = metrics
        self.events = events
        self.leading = False
        self._backlog: deque[Count | Emit] = deque(maxlen=BACKLOG_MAX)
        self._gauges_at = float("-inf")
        self.gauges_dirty = True

    def report(self, action: Count | Emit) -> None:
        """Apply now when leading; a follower keeps counts and deferrable Events for a resumed leadership."""
        if self.leading:
            self._apply(action)
        elif isinstance(action, Count) or action.defer:
            self._backlog.append(action)

    def set_leading(self, leading: bool, *, resumed: bool = False) -> int:
        """Leadership changed; returns how many backlogged reports were applied (resumed only)."""
        backlog = list(self._backlog) if leading and resumed else []
        self._backlog.clear()
        self.leading = leading
        self.metrics.set_leader(leading)
        for action in backlog:
            self._apply(action)
        return len(backlog)

    def _apply(self, action: Count | Emit) -> None:
        if isinstance(action, Emit):
            namespace, name = action.key
            self.events.record(
                VMEvent(namespace, name, action.vm_uid, action.type, action.reason, action.message)
            )
        else:
            _COUNTERS[type(action.metric)](self.metrics, action.metric)
        self.gauges_dirty = True

    async def run_gauges(
        self, snapshot: Callable[[], tuple[Iterable[Track], Mapping[str, int], float]]
    ) -> None:
        """Gauges follow the worker's refreshes; this only makes sure a dirty snapshot gets published."""
        while True:
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)
            with contextlib.suppress(Exception):
                self.refresh_gauges(*snapshot(), force=True)

    def refresh_gauges(
        self, tracks: Iterable[Track], in_flight: Mapping[str, int], now: float, *, force: bool
    ) -> None:
        """The state gauges from the tracks (pending by state, blocked by reason, slot exhaustion, the
        oldest pending hot plug) and the in-flight migrations by initiator; throttled unless ``force``."""
        if not self.gauges_dirty or (not force and now - self._gauges_at < GAUGE_REFRESH_SECONDS):
            return
        self.gauges_dirty = False
        self._gauges_at = now
        pending: Counter[str] = Counter()
        blocked: Counter[str] = Counter()
        slots: Counter[str] = Counter()
        oldest: float | None = None
        for track in tracks:
            if track.blocked is not None:
                blocked[track.blocked.value] += 1
                if track.slot_kind:
                    slots[track.slot_kind] += 1
                continue
            if track.state:
                pending[track.state] += 1
            first = min(track.first_seen.values(), default=None)
            if first is not None and (oldest is None or first < oldest):
                oldest = first
        self.metrics.set_pending(pending)
        self.metrics.set_blocked(blocked)
        self.metrics.set_slot_exhausted(slots)
        self.metrics.set_oldest_pending(oldest)
        self.metrics.set_in_flight(in_flight)


def _finished(m: HotplugMetrics, metric: Metric) -> None:
    assert isinstance(metric, MigrationFinished)
    v = metric.vmim
    points = tuple((t, p) for p, t in v.phase_transitions)
    m.observe_finished_points(
        v.uid,
        v.phase,
        points,
        v.creation_ts,
        v.initiator,
        cancelled=metric.cancelled,
        now=metric.at,
        vmi=metric.vmi,
    )


def _completed(m: HotplugMetrics, metric: Metric) -> None:
    assert isinstance(metric, HotplugCompleted)
    m.observe_hotplug_completed(metric.operation, metric.seconds, vmi=metric.vmi)


def _failure(m: HotplugMetrics, metric: Metric) -> None:
    assert isinstance(metric, Failure)
    m.record_failure(metric.reason)


def _queue_wait(m: HotplugMetrics, metric: Metric) -> None:
    assert isinstance(metric, QueueWait)
    m.observe_queue_wait(metric.seconds, vmi=metric.vmi)


def _slots(m: HotplugMetrics, metric: Metric) -> None:
    assert isinstance(metric, SlotExhaustion)
    m.record_slot_exhaustion(metric.kind)


_COUNTERS: Final[dict[type, Callable[[HotplugMetrics, Metric], None]]] = {
    MigrationFinished: _finished,
    HotplugCompleted: _completed,
    Failure: _failure,
    SlotExhaustion: _slots,
    QueueWait: _queue_wait,
    Retry: lambda m, _metric: m.record_retry(),
    MigrationCreatedMetric: lambda m, _metric: m.record_migration_created(),
}


def summary(tracks: Iterable[Track]) -> dict[str, int]:
    """Tracked VMIs by state (``blocked:<reason>`` for blocked ones), for logs and tests."""
    counts: Counter[str] = Counter()
    for track in tracks:
        counts[f"blocked:{track.blocked.value}" if track.blocked else track.state or "tracked"] += 1
    return dict(counts)


__all__ = ["BACKLOG_MAX", "GAUGE_REFRESH_SECONDS", "Reporter", "summary"]
