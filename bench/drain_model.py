"""A drain as discrete events: the agent's own planner, and KubeVirt's workload updater at its real timing.

No I/O and no wall clock: every migration's run time is given (:class:`Job`), so a whole 1,000-VM drain
takes well under a second and every order of the agent can be compared on exactly the same work. The
agent side calls :func:`agent.scheduler.plan_dispatch`, the function the agent runs; the peer side
follows KubeVirt's code at v1.6/v1.7 (``pkg/virt-controller/watch/workload-updater/workload-updater.go``
and ``pkg/virt-controller/watch/migration/migration.go``):

* the workload updater's first pass comes ``throttle`` (5 s) after the hot plug (``updateVmi`` →
  ``AddAfter(key, 5s)``); a pass creates up to ``parallelMigrationsPerCluster`` minus the migrations
  that are *running* (``FilterRunningMigrations``: Pending and unset phases do not count), for
  candidates in random order (``rand.Shuffle``); a pass that leaves candidates re-runs at once
  (``AddAfter(key, 30)``, 30 ns) and acts once its creations are observed in the informer: on the real
  tier that re-run follows a creating pass by about ``rerun`` (60 ms), before the new migrations are
  admitted (``admission``, 100 ms to a target pod), so it counts them as free budget and creates more,
  which wait Pending for the migration controller's re-check; a pass that created nothing while
  candidates remain re-runs without end, so it takes a freed slot the moment it frees; with no
  candidate left it waits for an event (a failed migration makes its VMI a candidate again) plus
  ``throttle``;
* the migration controller admits a Pending migration when fewer than the cluster limit are running
  and its source node has fewer than the per-node limit outbound; over a limit it re-checks it every
  ``pending_requeue`` (5 s); with the ``MigrationPriorityQueue`` gate (v1.7+, off by default) a
  finished migration re-checks the Pending ones at once;
* a workload-update migration created after a failed one for the same VMI waits ``backoff_initial``
  (20 s) after that failure, doubling per further failure (``handleMigrationBackoff``).

Not modelled: API latency (``overhead`` per dispatch stands for the agent's reaction and KubeVirt's
admission), the race of the updater's expectations (its creations are taken as observed before the
next event), the target pod's scheduling (part of each migration's run time).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.model import Key
from agent.scheduler import ActiveMigration, Candidate, Order, TokenBucket, plan_dispatch
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.migration import sized_plan
from simulator.kubevirt.node import MIGRATION_STEPS, NEXT_STEP


@dataclass(frozen=True)
class Job:
    """One VM's pending hot plug: its source node, its size (guest memory, GiB: what the agent knows)
    and the run time of each migration attempt (every attempt but the last fails)."""

    key: Key
    node: str
    size: float
    attempts: tuple[float, ...]


@dataclass(frozen=True)
class KubeVirtTiming:
    """KubeVirt's periods (seconds, real time) that pace its own migrations."""

    pending_requeue: float = 5.0
    priority_gate: bool = False
    throttle: float = 5.0
    backoff_initial: float = 20.0
    rerun: float = 0.06
    admission: float = 0.1


@dataclass(frozen=True)
class AgentTiming:
    """The agent's side: ``overhead`` from a freed slot (or a ready VM) to its migration running;
    ``backoff_initial`` before a failed VM is retried (doubling, as ``--backoff-initial-seconds``)."""

    overhead: float = 0.1
    backoff_initial: float = 5.0
    backoff_max: float = 300.0


@dataclass
class Outcome:
    """When each VM's hot plug was done (seconds after the hot plug), and the drain's makespan."""

    attached: dict[Key, float] = field(default_factory=dict)
    attempts: int = 0

    @property
    def makespan(self) -> float:
        return max(self.attached.values(), default=0.0)

    @property
    def mean(self) -> float:
        return sum(self.attached.values()) / max(1, len(self.attached))

    def percentile(self, q: float) -> float:
        ordered = sorted(self.attached.values())
        if not ordered:
            return 0.0
        return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def lower_bound(jobs: Sequence[Job], cap: int, node_cap: int) -> dict[str, float]:
    """Lower bounds of any schedule's makespan (every attempt is work that needs a slot of both limits):

    * ``cluster``: all the work over the ``cap`` slots, ΣD / C;
    * ``node``: a node's work over its ``node_cap`` outbound slots, max over nodes of ΣD_node / 2;
    * ``chain``: one VM's attempts run one after the other, max over VMs of Σ attempts;
    * ``pair``: of the C + 1 longest attempts two share a slot, so the C-th and (C+1)-th longest
      run back to back: D_(C) + D_(C+1) (likewise per node with its limit).

    ``bound`` is the largest of them.
    """
    runs = sorted((d for j in jobs for d in j.attempts), reverse=True)
    out = {
        "cluster": sum(runs) / max(1, cap),
        "chain": max((sum(j.attempts) for j in jobs), default=0.0),
        "pair": runs[cap - 1] + runs[cap] if len(runs) > cap >= 1 else (runs[0] if runs else 0.0),
    }
    per_node: dict[str, list[float]] = {}
    for j in jobs:
        per_node.setdefault(j.node, []).extend(j.attempts)
    node_bound = 0.0
    for work in per_node.values():
        work.sort(reverse=True)
        node_bound = max(node_bound, sum(work) / max(1, node_cap))
        if len(work) > node_cap >= 1:
            node_bound = max(node_bound, work[node_cap - 1] + work[node_cap])
    out["node"] = node_bound
    out["bound"] = max(out.values())
    return out


class _Clock:
    """A heap of (time, sequence, event) with a monotonic sequence for ties."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, tuple[str, Key]]] = []
        self.seq = itertools.count()

    def at(self, t: float, kind: str, key: Key = ("", "")) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), (kind, key)))

    def pop_batch(self) -> tuple[float, list[tuple[str, Key]]]:
        """Every event at the earliest time."""
        t, _, ev = heapq.heappop(self.heap)
        batch = [ev]
        while self.heap and self.heap[0][0] <= t + 1e-9:
            batch.append(heapq.heappop(self.heap)[2])
        return t, batch


def run_agent(
    jobs: Sequence[Job], *, cap: int, node_cap: int, order: Order, timing: AgentTiming | None = None
) -> Outcome:
    """The agent: at every event, :func:`~agent.scheduler.plan_dispatch` over the ready VMs."""
    timing = timing or AgentTiming()
    by_key = {j.key: j for j in jobs}
    ready: dict[Key, float] = {j.key: 0.0 for j in jobs}
    attempt: dict[Key, int] = dict.fromkeys(by_key, 0)
    running: dict[Key, str] = {}
    out = Outcome()
    clock = _Clock()
    bucket = TokenBucket(1e9, 10**9)
    t = 0.0
    events: list[tuple[str, Key]] = []
    while True:
        for kind, key in events:
            job = by_key[key]
            if kind == "end":
                running.pop(key)
                attempt[key] += 1
                if attempt[key] >= len(job.attempts):
                    out.attached[key] = t
                else:
                    delay = min(timing.backoff_max, timing.backoff_initial * 2 ** (attempt[key] - 1))
                    clock.at(t + delay, "ready", key)
            elif kind == "ready":
                ready[key] = t
        if ready:
            plan = plan_dispatch(
                [Candidate(k, by_key[k].node, since, by_key[k].size) for k, since in ready.items()],
                [ActiveMigration(k, node) for k, node in running.items()],
                cluster_cap=cap,
                node_cap=node_cap,
                bucket=bucket,
                now=t,
                order=order,
            )
            for c in plan.dispatch:
                del ready[c.key]
                running[c.key] = c.source_node
                out.attempts += 1
                clock.at(t + timing.overhead + by_key[c.key].attempts[attempt[c.key]], "end", c.key)
        if not clock.heap:
            return out
        t, events = clock.pop_batch()


def run_peer(
    jobs: Sequence[Job], *, cap: int, node_cap: int, timing: KubeVirtTiming | None = None, seed: int = 1
) -> Outcome:
    """KubeVirt's workload updater (``LiveMigrate``) and migration controller, as described above."""
    timing = timing or KubeVirtTiming()
    rng = random.Random(seed)
    by_key = {j.key: j for j in jobs}
    attempt: dict[Key, int] = dict.fromkeys(by_key, 0)
    failed_at: dict[Key, float] = {}
    pending: dict[Key, float] = {}  # VMI → when its Pending migration may be admitted (backoff)
    running: dict[Key, str] = {}
    waiting_check: set[Key] = set()  # Pending with a re-check scheduled
    out = Outcome()
    clock = _Clock()
    clock.at(timing.throttle, "pass")
    next_pass: float | None = timing.throttle
    spin = False  # the updater re-runs at the next freed slot (candidates left, no budget)
    idle = False  # no candidates: the next migration event + throttle wakes it
    t = 0.0

    def node_load(node: str) -> int:
        return sum(1 for n in running.values() if n == node)

    def check(key: Key) -> bool:
        """The migration controller's Pending → admitted check."""
        if t + 1e-9 < pending[key]:
            clock.at(pending[key], "check", key)
            waiting_check.add(key)
            return False
        node = by_key[key].node
        if len(running) >= cap or node_load(node) >= node_cap:
            clock.at(t + timing.pending_requeue, "check", key)
            waiting_check.add(key)
            return False
        del pending[key]
        running[key] = node
        out.attempts += 1
        clock.at(t + by_key[key].attempts[attempt[key]], "end", key)
        return True

    while clock.heap:
        t, events = clock.pop_batch()
        freed = False
        passes = False
        for kind, key in events:
            if kind == "end":
                running.pop(key)
                freed = True
                attempt[key] += 1
                if attempt[key] >= len(by_key[key].attempts):
                    out.attached[key] = t
                else:
                    failed_at[key] = t
                if idle:
                    idle = False
                    if next_pass is None or next_pass > t + timing.throttle:
                        next_pass = t + timing.throttle
                        clock.at(next_pass, "pass")
            elif kind == "check":
                waiting_check.discard(key)
                if key in pending:
                    check(key)
            elif kind == "pass" and next_pass is not None and abs(t - next_pass) < 1e-9:
                passes = True
        if freed and timing.priority_gate:
            for key in sorted(pending, key=lambda k: pending[k])[:cap]:
                if key in pending:
                    check(key)
        if freed and spin:
            passes = True
        if not passes:
            continue
        next_pass = None
        spin = idle = False
        candidates = [k for k in by_key if k not in out.attached and k not in pending and k not in running]
        budget = max(0, cap - len(running))
        rng.shuffle(candidates)
        created = candidates[:budget]
        for key in created:
            failures = attempt[key]
            backoff = timing.backoff_initial * 2 ** (failures - 1) if failures else 0.0
            pending[key] = max(t + timing.admission, failed_at.get(key, 0.0) + backoff)
            clock.at(pending[key], "check", key)
        if created:
            next_pass = t + timing.rerun
            clock.at(next_pass, "pass")
        elif candidates:
            spin = True
        else:
            idle = True
    return out


def lognormal_gib(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    """Guest memory in whole GiB from a lognormal (``median``, ``sigma``), clipped to [low, high]."""
    return float(min(high, max(low, round(rng.lognormvariate(math.log(median), sigma)))))


@dataclass(frozen=True)
class Profile:
    """A drain's work: guest memory per VM (lognormal ``median_gib``/``sigma``, whole GiB, clipped to
    [``min_gib``, ``max_gib``]); a migration takes ``setup_seconds + seconds_per_gib x memory`` (real
    seconds); each attempt fails with ``failure_rate``, per VMI and attempt as the simulator draws it
    (:func:`simulator.kubevirt.migration.sized_plan`: a failure ends the attempt at the simulator's
    failing step, 35 % or 100 % of its run)."""

    median_gib: float = 4.0
    sigma: float = 1.0
    min_gib: float = 1.0
    max_gib: float = 64.0
    setup_seconds: float = 10.0
    seconds_per_gib: float = 2.0
    failure_rate: float = 0.05

    def memory(self, n: int, seed: int) -> list[float]:
        rng = random.Random(seed)
        return [lognormal_gib(rng, self.median_gib, self.sigma, self.min_gib, self.max_gib) for _ in range(n)]

    def seconds(self, gib: float) -> float:
        """A successful migration's run time (real seconds)."""
        return self.setup_seconds + self.seconds_per_gib * gib

    def sim_config(self, seed: int, scale: float = 1.0) -> KubeVirtSimConfig:
        """The simulator's migration timing for this work, durations multiplied by ``scale``."""
        return KubeVirtSimConfig(
            migration_mean_seconds=self.setup_seconds * scale,
            migration_seconds_per_gib=self.seconds_per_gib * scale,
            migration_distribution="fixed",
            failure_rate=self.failure_rate,
            seed=seed,
        )

    def jobs(self, placed: Sequence[tuple[Key, str, float]], seed: int, max_attempts: int = 8) -> list[Job]:
        """``placed``: (VM, node, memory GiB). The attempts the simulator with ``seed`` will run (a VM
        that fails ``max_attempts`` times is taken as succeeding at the last)."""
        config = self.sim_config(seed)
        out = []
        for key, node, gib in placed:
            runs: list[float] = []
            for attempt in range(max_attempts):
                plan = sized_plan(config, key, attempt, gib, node, [node, "elsewhere"])
                if plan.fate == "fail" and attempt < max_attempts - 1:
                    runs.append(plan.deadline(NEXT_STEP[plan.fail_phase]))
                    continue
                runs.append(plan.deadline(MIGRATION_STEPS[-1]))
                break
            out.append(Job(key, node, gib, tuple(runs)))
        return out
