"""The ready set and the limits: which ready VMIs migrate now (``agent.scheduler``'s planner).

Why apart from the loop: "highest priority first, every namespace in turn, never over the cluster and
per-node caps (counting every unfinished migration, anyone's, and our creates the cache has not shown)
nor over the free SR-IOV VFs, creations paced by a token bucket" is one job with its own memory — the
ready set, the bucket, which namespace was served when (the round-robin's turn), which candidates a
limit already held back (counted once each), and the watch event each candidate became ready on (the
agent's reaction time ends when its create is sent). The controller asks it to plan when something
changed and steps each chosen VMI's lifecycle at once, so the next plan already counts it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.infra import Resources
from agent.model import Key
from agent.scheduler import ActiveMigration, Candidate, DispatchPlanner, TokenBucket
from metrics.definitions import HotplugMetrics


@dataclass(frozen=True, slots=True)
class Entry:
    """A ready VMI: since when, its VM's priority, the VFs its target pod needs."""

    since: float
    priority: int = 0
    needs: Resources = ()


class Dispatcher:
    def __init__(self, bucket: TokenBucket, metrics: HotplugMetrics) -> None:
        self.bucket = bucket
        self.metrics = metrics
        #: candidates: VMI key → when ready, priority, needs
        self.ready: dict[Key, Entry] = {}
        self._held: set[Key] = set()
        #: namespace → sequence number of its last dispatch (the round-robin's memory)
        self.served: dict[str, int] = {}
        self._sequence = itertools.count()
        #: perf_counter of the watch event each candidate became ready on, until its create is sent
        self._ready_event_at: dict[Key, float] = {}

    def add(self, key: Key, since: float, event_at: float, priority: int = 0, needs: Resources = ()) -> bool:
        """A candidate (ready on the watch event stamped ``event_at``); False when it was one already (a
        changed priority or need is kept, the first readiness too)."""
        known = self.ready.get(key)
        self.ready[key] = Entry(since if known is None else known.since, priority, needs)
        if known is None:
            self._ready_event_at[key] = event_at
        return known is None

    def remove(self, key: Key) -> None:
        """No candidate any more (decided otherwise, or forgotten)."""
        if self.ready.pop(key, None) is not None:
            self._held.discard(key)
        self._ready_event_at.pop(key, None)

    def create_sent(self, key: Key) -> None:
        """Our create for a dispatched candidate is being sent: the agent's reaction time is over."""
        event_at = self._ready_event_at.pop(key, None)
        if event_at is not None:
            self.metrics.observe_reaction(time.perf_counter() - event_at)

    def plan(
        self,
        now: float,
        caps: tuple[int, int],
        active: Iterable[ActiveMigration],
        node_of: Callable[[Key], str | None],
        size_of: Callable[[Key], float],
        capacity: Mapping[str, int] | None = None,
    ) -> tuple[list[Candidate], list[Key], float | None]:
        """``(dispatch now, skipped, wake at)``: the chosen leave the ready set; ``skipped`` (already
        migrating) too, to be decided again; ``wake at`` when a token is next due, if one held back.
        ``size_of``: a VMI's migration size (guest memory; 0 unknown) for the planner's order;
        ``capacity``: free VFs per device resource for new migrations (None: not limited)."""
        candidates = [
            Candidate(k, node_of(k) or "", e.since, size_of(k), e.priority, e.needs)
            for k, e in self.ready.items()
        ]
        plan = DispatchPlanner(caps[0], caps[1], self.bucket).plan(
            candidates, active, now, capacity=capacity, served=self.served
        )
        for cand, limit in plan.held:
            if cand.key not in self._held:
                self._held.add(cand.key)
                self.metrics.record_rate_limited(limit)
        skipped = [c.key for c in plan.skipped]
        for key in skipped:
            self.remove(key)
        for cand in plan.dispatch:  # leaves the ready set, keeps its reaction stamp until the create
            self.ready.pop(cand.key, None)
            self._held.discard(cand.key)
            self.served[cand.namespace] = next(self._sequence)
        return list(plan.dispatch), skipped, plan.wake_at

    def needs(self) -> set[str]:
        """The device resources some ready VMI needs VFs of."""
        return {r for e in self.ready.values() for r, _ in e.needs}


__all__ = ["Dispatcher"]
