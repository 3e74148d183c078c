"""The ready set and the limits: which ready VMIs migrate now (``agent.scheduler``'s planner).

Why apart from the loop: "oldest ready first, never over the cluster and per-node caps (counting every
unfinished migration, anyone's, and our creates the cache has not shown), creations paced by a token
bucket" is one job with its own memory — the ready set, the bucket, which candidates a limit already
held back (counted once each). The controller asks it to plan when something changed and steps each
chosen VMI's lifecycle at once, so the next plan already counts it.
"""

from __future__ import annotations

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

    def add(self, key: Key, since: float) -> bool:
        """A new candidate; False when it was one already."""
        if key in self.ready:
            return False
        self.ready[key] = since
        return True

    def remove(self, key: Key) -> None:
        if self.ready.pop(key, None) is not None:
            self._held.discard(key)

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
        for key in (*skipped, *(c.key for c in plan.dispatch)):
            self.remove(key)
        return list(plan.dispatch), skipped, plan.wake_at


__all__ = ["Dispatcher"]
