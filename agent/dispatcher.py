"""The ready set and the limits: which ready VMIs migrate now (``agent.scheduler``'s planner).

Why apart from the loop: "oldest ready first, never over the cluster and per-node caps (counting every
unfinished migration, anyone's, and our creates the cache has not shown), creations paced by a token
bucket" is one job with its own memory — the ready set, the bucket, which candidates a limit already
held back (counted once each). The controller asks it to plan when something changed and steps each
chosen VMI's lifecycle at once, so the next plan already counts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from agent.model import Key
from agent.scheduler import ActiveMigration, Candidate, DispatchPlanner, TokenBucket
from metrics.definitions import HotplugMetrics


class Dispatcher:
    def __init__(self, bucket: TokenBucket, metrics: HotplugMetrics) -> None:
        self.bucket = bucket
        self.metrics = metrics
        #: candidates: VMI key → ready since (oldest first)
        self.ready: dict[Key, float] = {}
        self._held: set[Key] = set()
        #: perf_counter of the watch event each candidate became ready on, until its create is sent
        self._ready_event_at: dict[Key, float] = {}

    def add(self, key: Key, since: float, event_at: float) -> bool:
        """A new candidate (ready on the watch event stamped ``event_at``); False when it was one already."""
        if key in self.ready:
            return False
        self.ready[key] = since
        self._ready_event_at[key] = event_at
        return True

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
    ) -> tuple[list[Candidate], list[Key], float | None]:
        """``(dispatch now, skipped, wake at)``: the chosen leave the ready set; ``skipped`` (already
        migrating) too, to be decided again; ``wake at`` when a token is next due, if one held back.
        ``size_of``: a VMI's migration size (guest memory; 0 unknown) for the planner's order."""
        candidates = [Candidate(k, node_of(k) or "", since, size_of(k)) for k, since in self.ready.items()]
        plan = DispatchPlanner(caps[0], caps[1], self.bucket).plan(candidates, active, now)
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
        return list(plan.dispatch), skipped, plan.wake_at


__all__ = ["Dispatcher"]
