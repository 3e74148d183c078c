"""Pure core of the migration scheduler: a token bucket, the dispatch planner and a work queue.

Why pure: the limits are the agent's promise to the cluster (never more in flight than KubeVirt's own
``parallelMigrationsPerCluster`` / ``parallelOutboundMigrationsPerNode``, counting migrations others
started; never more SR-IOV migrations for a device resource than it has free VFs; creations paced by a
token bucket; an order of the pending that serves the VMs' priorities first, every namespace in turn,
and within a namespace keeps a drain short and the wait for each VM low, see :func:`fair_order` and
:func:`order_candidates`). Those invariants are checked with property-based tests here, without an
event loop; the async layer (another module) only feeds events in and acts on the plan.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from agent.infra import Resources
from agent.model import Key

Limit = Literal["cluster", "node", "token-bucket", "capacity"]
Order = Literal["fifo", "shortest-first", "longest-first", "balanced"]
ORDERS: tuple[Order, ...] = ("fifo", "shortest-first", "longest-first", "balanced")
#: The agent's order (``bench.drain --profile realistic`` measures every order; docs/performance.md).
DEFAULT_ORDER: Order = "balanced"
#: ``balanced``: a candidate is *urgent* (longest first, ahead of the rest) once the smaller pending work
#: per slot no longer exceeds its size by this factor (see :func:`order_candidates`). 1.0 kept the drain
#: within 1.04 x its lower bound on heavy-tailed work; larger values lower the mean wait and lengthen
#: the drain (docs/performance.md).
URGENT_SHARE = 1.0


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
    """A VMI ready to migrate: its key, the node it would migrate from, since when it is ready, and the
    size of its migration (guest memory in bytes, ``VMIRecord.memory_bytes``; 0 = unknown): a live
    migration copies guest memory, so its time grows with it."""

    key: Key
    source_node: str
    ready_since: float
    size: float = 0.0
    #: the VM's ``hotplug-agent.io/priority`` (higher first)
    priority: int = 0
    #: SR-IOV VFs its target pod needs, per device resource
    needs: Resources = ()

    @property
    def namespace(self) -> str:
        return self.key[0]


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

    Rules: candidates are offered in the planner's :data:`Order` (:func:`order_candidates`; ties by
    ``ready_since``, then key, so the order is total); a candidate whose VMI already has an active
    migration, or that appears twice, is skipped (one migration per VMI); the global cap counts *all*
    active migrations; the per-node cap counts active migrations by source node (unknown source nodes
    are not counted per node, they still count globally); a candidate held by its node, or by the free
    VFs of a device resource it needs (``capacity``), does not block later candidates (no head-of-line
    blocking), while the cluster cap and the token bucket stop the batch. Each dispatch takes one
    token. A cap ≤ 0 dispatches nothing.
    """

    __slots__ = ("bucket", "cluster_cap", "node_cap", "order")

    def __init__(
        self, cluster_cap: int, node_cap: int, bucket: TokenBucket, order: Order = DEFAULT_ORDER
    ) -> None:
        self.cluster_cap = cluster_cap
        self.node_cap = node_cap
        self.bucket = bucket
        self.order = order

    def plan(
        self,
        candidates: Iterable[Candidate],
        active: Iterable[ActiveMigration],
        now: float,
        *,
        capacity: Mapping[str, int] | None = None,
        served: Mapping[str, int] | None = None,
    ) -> Plan:
        return plan_dispatch(
            candidates,
            active,
            cluster_cap=self.cluster_cap,
            node_cap=self.node_cap,
            bucket=self.bucket,
            now=now,
            order=self.order,
            capacity=capacity,
            served=served,
        )


def fair_order(
    candidates: Sequence[Candidate],
    order: Order,
    slots: int,
    served: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """Priority first, then every namespace in turn, then :func:`order_candidates` within a namespace.

    Within one priority the namespaces take turns, one candidate each round (round-robin), so one
    namespace's burst of 500 hot plugs cannot hold a single hot plug of another behind all of it: that
    one waits for at most one turn. The turn starts with the namespace served longest ago (``served``:
    namespace → a sequence number of its last dispatch, kept by the caller; never served goes first),
    ties by the oldest candidate — without that memory, a burst whose oldest candidate is older would
    win every turn whenever a single slot frees. Within a namespace the planner's size-aware order
    applies unchanged (``slots`` is the cluster cap, as for :func:`order_candidates`).
    """
    last = served or {}
    out: list[Candidate] = []
    by_priority: dict[int, list[Candidate]] = {}
    for c in candidates:
        by_priority.setdefault(c.priority, []).append(c)
    for priority in sorted(by_priority, reverse=True):
        by_namespace: dict[str, list[Candidate]] = {}
        for c in by_priority[priority]:
            by_namespace.setdefault(c.namespace, []).append(c)
        queues = [deque(order_candidates(group, order, slots)) for group in by_namespace.values()]
        queues.sort(key=lambda q: (last.get(q[0].namespace, -1), min(c.ready_since for c in q), q[0].key))
        while queues:
            for q in queues:
                out.append(q.popleft())
            queues = [q for q in queues if q]
    return out


def order_candidates(
    candidates: Sequence[Candidate], order: Order, slots: int, urgent_share: float = URGENT_SHARE
) -> list[Candidate]:
    """The order in which the planner offers ``candidates`` (distinct VMIs, none migrating) to the limits.

    * ``fifo``: oldest ``ready_since`` first. Blind to size: a large VM that happens to come late ends
      the drain late.
    * ``shortest-first``: smallest first: the lowest mean wait, but the largest migrations start last,
      so the drain ends about one large migration after the rest.
    * ``longest-first``: largest first (LPT): a drain within a few percent of its lower bound, and the
      highest mean wait (every small VM waits behind the large ones).
    * ``balanced`` (the default): shortest first, except that *urgent* candidates go first, longest
      first. A candidate is urgent when the work of the candidates before it in shortest-first order
      (the smaller ones, and older ones as large), spread over the ``slots`` of the cluster cap, no
      longer outlasts its own run (``size x slots ≥ urgent_share x that work``): started later, it
      would run on alone at the end of the drain. Small VMs are served first while there is plenty of
      smaller work (the low mean wait of shortest-first); a large one starts while enough smaller
      work is left to fill the other slots beside it (the short drain of longest-first); as the
      pending work shrinks, more candidates become urgent. (The few smallest are "urgent" too, having
      little work before them: they come right after the large ones, which changes nothing that
      matters.) Under a steady stream of new hot plugs faster than the cluster migrates, a large VM
      waits until the stream pauses.

    Sizes are relative (guest memory bytes): only their ratios matter. A candidate of unknown size (0)
    counts as the mean known size; when no size is known every order is ``fifo``.
    """
    by_age = sorted(candidates, key=lambda c: (c.ready_since, c.key))
    if order == "fifo":
        return by_age
    known = [c.size for c in by_age if c.size > 0]
    if not known:
        return by_age
    default = sum(known) / len(known)
    sized = sorted(((c.size if c.size > 0 else default, c) for c in by_age), key=_first)  # stable
    if order == "shortest-first":
        return [c for _, c in sized]
    if order == "longest-first":
        return [c for _, c in sorted(sized, key=_first, reverse=True)]  # stable: ties oldest first
    smaller = 0.0  # the work of the candidates before this one in shortest-first order
    urgent: list[tuple[float, Candidate]] = []
    rest: list[Candidate] = []
    for size, c in sized:
        if size * max(1, slots) >= urgent_share * smaller:
            urgent.append((size, c))
        else:
            rest.append(c)
        smaller += size
    return [c for _, c in sorted(urgent, key=_first, reverse=True)] + rest


def _first(pair: tuple[float, Candidate]) -> float:
    return pair[0]


def plan_dispatch(
    candidates: Iterable[Candidate],
    active: Iterable[ActiveMigration],
    *,
    cluster_cap: int,
    node_cap: int,
    bucket: TokenBucket,
    now: float,
    order: Order = DEFAULT_ORDER,
    capacity: Mapping[str, int] | None = None,
    served: Mapping[str, int] | None = None,
) -> Plan:
    """The planner as a function (see :class:`DispatchPlanner`). ``capacity``: free VFs per device
    resource left for new migrations (None: not known, not limited); ``served``: see :func:`fair_order`."""
    busy, per_node = _occupied(active)
    in_flight = len(busy)
    fresh, skipped = _distinct_idle(candidates, busy)
    dispatch: list[Candidate] = []
    held: list[tuple[Candidate, Limit]] = []
    bucket_empty = False
    free = dict(capacity) if capacity is not None else None
    for c in fair_order(fresh, order, cluster_cap, served):
        limit = _held_by(c, in_flight >= cluster_cap, per_node.get(c.source_node, 0) >= node_cap, free)
        if limit is None and (bucket_empty or not bucket.try_take(now)):
            bucket_empty = True
            limit = "token-bucket"
        if limit is not None:
            held.append((c, limit))
            continue
        dispatch.append(c)
        in_flight += 1
        if c.source_node:
            per_node[c.source_node] = per_node.get(c.source_node, 0) + 1
        if free is not None:
            for r, k in c.needs:
                free[r] = free.get(r, 0) - k
    wake_at = now + bucket.wait_time(now) if bucket_empty else None
    return Plan(tuple(dispatch), tuple(held), tuple(skipped), wake_at)


def _held_by(
    c: Candidate, cluster_full: bool, node_full: bool, free: Mapping[str, int] | None
) -> Limit | None:
    """The cap that holds ``c`` back (before the token bucket): the cluster's, its node's, the VFs'."""
    if cluster_full:
        return "cluster"
    if node_full:
        return "node"
    if free is not None and any(free.get(r, 0) < k for r, k in c.needs):
        return "capacity"
    return None


def _occupied(active: Iterable[ActiveMigration]) -> tuple[set[Key], dict[str, int]]:
    """The VMIs with an unfinished migration, and those migrations per source node."""
    busy: set[Key] = set()
    per_node: dict[str, int] = {}
    for m in active:
        if m.vmi_key in busy:
            continue  # two unfinished VMIMs for one VMI still occupy one migration
        busy.add(m.vmi_key)
        if m.source_node:
            per_node[m.source_node] = per_node.get(m.source_node, 0) + 1
    return busy, per_node


def _distinct_idle(
    candidates: Iterable[Candidate], busy: set[Key]
) -> tuple[list[Candidate], list[Candidate]]:
    """(one candidate per idle VMI — the oldest —, the rest: already migrating or duplicates)."""
    skipped: list[Candidate] = []
    fresh: dict[Key, Candidate] = {}
    for c in candidates:
        if c.key in busy:
            skipped.append(c)
            continue
        kept = fresh.get(c.key)
        if kept is None:
            fresh[c.key] = c
        elif (c.ready_since, c.size) < (kept.ready_since, kept.size):  # keep the oldest
            skipped.append(kept)
            fresh[c.key] = c
        else:
            skipped.append(c)
    return list(fresh.values()), skipped


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
