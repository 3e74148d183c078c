"""Pure core of the migration scheduler: a token bucket, the dispatch planner and a work queue.

Why pure: the limits are the agent's promise to the cluster (never more in flight than KubeVirt's own
``parallelMigrationsPerCluster`` / ``parallelOutboundMigrationsPerNode``, counting migrations others
started; creations paced by a token bucket; oldest pending first). Those invariants are checked with
property-based tests here, without an event loop; the async layer (another module) only feeds events
in and acts on the plan.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from agent.model import Key

Limit = Literal["cluster", "node", "token-bucket"]


class TokenBucket:
    """Classic token bucket: ``burst`` tokens, refilled at ``rate`` per second, starts full.

    Time is passed in (monotonic seconds). A clock that goes backwards refills nothing (the last
    time is kept), so a jittery clock can never mint tokens.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive finite number, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._last: float | None = now

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
            return
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (refills as a side effect)."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float) -> bool:
        """Take one token if available."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 when one is available now)."""
        self._refill(now)
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Candidate:
    """A VMI ready to migrate: its key, the node it would migrate from, since when it is ready."""

    key: Key
    source_node: str
    ready_since: float


@dataclass(frozen=True, slots=True)
class ActiveMigration:
    """An unfinished migration in the cluster (anyone's), counted against the caps."""

    vmi_key: Key
    source_node: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now: ``dispatch`` in this order; ``held`` with the limit that held each back;
    ``skipped`` (already migrating or duplicate in the queue); ``wake_at`` = when a token is next
    available if the bucket held anything back (a freed slot wakes the caller via an event instead).
    """

    dispatch: tuple[Candidate, ...]
    held: tuple[tuple[Candidate, Limit], ...]
    skipped: tuple[Candidate, ...]
    wake_at: float | None


class DispatchPlanner:
    """Chooses the batch of migrations to create now within every limit.

    Rules: candidates are taken oldest ``ready_since`` first (ties by key, so the order is total); a
    candidate whose VMI already has an active migration, or that appears twice, is skipped (one
    migration per VMI); the global cap counts *all* active migrations; the per-node cap counts active
    migrations by source node (unknown source nodes are not counted per node, they still count
    globally); a candidate held by its node does not block younger candidates on other nodes (no
    head-of-line blocking), while the cluster cap and the token bucket stop the batch. Each dispatch
    takes one token. A cap ≤ 0 dispatches nothing.
    """

    __slots__ = ("bucket", "cluster_cap", "node_cap")

    def __init__(self, cluster_cap: int, node_cap: int, bucket: TokenBucket) -> None:
        self.cluster_cap = cluster_cap
        self.node_cap = node_cap
        self.bucket = bucket

    def plan(self, candidates: Iterable[Candidate], active: Iterable[ActiveMigration], now: float) -> Plan:
        return plan_dispatch(
            candidates,
            active,
            cluster_cap=self.cluster_cap,
            node_cap=self.node_cap,
            bucket=self.bucket,
            now=now,
        )


def plan_dispatch(
    candidates: Iterable[Candidate],
    active: Iterable[ActiveMigration],
    *,
    cluster_cap: int,
    node_cap: int,
    bucket: TokenBucket,
    now: float,
) -> Plan:
    """The planner as a function (see :class:`DispatchPlanner`)."""
    busy: set[Key] = set()
    per_node: dict[str, int] = {}
    for m in active:
        if m.vmi_key in busy:
            continue  # two unfinished VMIMs for one VMI still occupy one migration
        busy.add(m.vmi_key)
        if m.source_node:
            per_node[m.source_node] = per_node.get(m.source_node, 0) + 1
    in_flight = len(busy)

    ordered = sorted(candidates, key=lambda c: (c.ready_since, c.key))
    dispatch: list[Candidate] = []
    held: list[tuple[Candidate, Limit]] = []
    skipped: list[Candidate] = []
    seen: set[Key] = set()
    bucket_empty = False
    for c in ordered:
        if c.key in busy or c.key in seen:
            skipped.append(c)
            continue
        seen.add(c.key)
        if in_flight >= cluster_cap:
            held.append((c, "cluster"))
            continue
        if per_node.get(c.source_node, 0) >= node_cap:
            held.append((c, "node"))
            continue
        if bucket_empty or not bucket.try_take(now):
            bucket_empty = True
            held.append((c, "token-bucket"))
            continue
        dispatch.append(c)
        in_flight += 1
        if c.source_node:
            per_node[c.source_node] = per_node.get(c.source_node, 0) + 1
    wake_at = now + bucket.wait_time(now) if bucket_empty else None
    return Plan(tuple(dispatch), tuple(held), tuple(skipped), wake_at)


K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """client-go workqueue semantics, without the waiting (the async wrapper adds that).

    * ``add`` dedups: a key already queued is not queued twice (stingy);
    * a key being processed that is added again is *not* handed out concurrently: it is re-queued
      when ``done(key)`` is called (client-go's ``dirty``/``processing`` sets);
    * FIFO order of first add (fair);
    * bounded: ``add`` returns ``False`` when ``maxsize`` distinct keys are already waiting and the
      key is not one of them (never raises; the caller counts the drop and retries later). A key
      re-added while processing counts against the bound (it will be queued on ``done``).
    """

    __slots__ = ("_dirty", "_processing", "_queue", "maxsize")

    def __init__(self, maxsize: int = 100_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()

    def add(self, key: K) -> bool:
        """Queue ``key``; True if it is (now or already) queued or marked for re-queue."""
        if key in self._dirty:
            return True
        if len(self._dirty) >= self.maxsize:
            return False
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
        return True

    def get(self) -> K | None:
        """Next key to process (marked processing), or None when nothing is queued."""
        if not self._queue:
            return None
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; re-queue it if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)

    def __len__(self) -> int:
        """Keys waiting to be handed out (client-go ``Len``)."""
        return len(self._queue)

    def __contains__(self, key: object) -> bool:
        return key in self._dirty
