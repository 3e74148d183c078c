"""Fairness: the worst wait of a single hot plug behind a 500-plug burst in another namespace.

A discrete-event drain (no I/O, no wall clock) driven by the planner the agent runs,
:func:`agent.scheduler.plan_dispatch`: namespace ``burst`` gets 500 hot plugs at t = 0 (migrations of
lognormal length, mean ``--mean`` s, on 20 nodes; KubeVirt's default caps, 5 in the cluster and 2 per
node; the agent's token bucket 10/s, burst 10); namespace ``lone`` gets a single hot plug at some
moment during that drain. For a series of arrival moments (every ``--step`` seconds over the drain) the
single plug's wait — ready to migration created — is recorded, and the worst is printed, with:

* ``fair``: the agent's order (priority, namespaces in turn with the dispatcher's memory of who was
  served, then ``balanced`` within a namespace);
* ``one queue``: the order without namespaces (every candidate in one queue, ``balanced``): what the
  agent did before, the baseline;
* ``priority``: the single plug's VM annotated ``hotplug-agent.io/priority: "1"``.

The burst's own makespan is printed for each, to show what fairness costs the burst (one slot's worth).

    python -m bench.fairness [--burst 500] [--mean 30] [--step 20] [--quick]
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Any

from agent.model import Key
from agent.scheduler import ActiveMigration, Candidate, TokenBucket, plan_dispatch
from bench.common import Figure, base_parser, print_table, run_cli, write_results

NODES = 20
CLUSTER_CAP = 5
NODE_CAP = 2
RATE, BURST = 10.0, 10


@dataclass(frozen=True)
class Job:
    key: Key
    node: str
    ready: float
    seconds: float
    size: float
    priority: int = 0


def burst_jobs(n: int, mean: float, seed: int = 3) -> list[Job]:
    rng = random.Random(seed)
    sigma = 0.6
    out = []
    for i in range(n):
        gib = rng.choice([1, 2, 4, 8, 16])
        seconds = rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma) * (0.5 + gib / 16)
        out.append(Job(("burst", f"vm-{i:04d}"), f"node-{i % NODES:02d}", i * 0.002, seconds, gib * 2**30))
    return out


def drain(jobs: list[Job], *, one_queue: bool) -> dict[Key, tuple[float, float]]:
    """Each job's (ready, started): the planner at every event (a job ready, a migration finished)."""
    bucket = TokenBucket(RATE, BURST, 0.0)
    by_key = {j.key: j for j in jobs}
    arrivals = sorted(jobs, key=lambda j: j.ready)
    events: list[tuple[float, int, str, Key]] = []
    seq = 0
    for j in arrivals:
        heapq.heappush(events, (j.ready, seq, "ready", j.key))
        seq += 1
    ready: dict[Key, float] = {}
    running: dict[Key, str] = {}
    started: dict[Key, tuple[float, float]] = {}
    served: dict[str, int] = {}
    turn = 0
    while events:
        now, _s, kind, key = heapq.heappop(events)
        if kind == "ready":
            ready[key] = now
        elif kind == "done":
            running.pop(key, None)
        # the agent plans on every event; a token-bucket hold wakes it at the next token
        cands = [
            Candidate(
                ("all", f"{k[0]}/{k[1]}") if one_queue else k,
                by_key[k].node, since, by_key[k].size, 0 if one_queue else by_key[k].priority,
            )
            for k, since in ready.items()
        ]  # fmt: skip
        active = [ActiveMigration(k, node) for k, node in running.items()]
        plan = plan_dispatch(
            cands, active, cluster_cap=CLUSTER_CAP, node_cap=NODE_CAP, bucket=bucket, now=now,
            served=None if one_queue else served,
        )  # fmt: skip
        for cand in plan.dispatch:
            k = cand.key if not one_queue else tuple(cand.key[1].split("/", 1))  # type: ignore[assignment]
            job = by_key[k]  # type: ignore[index]
            del ready[job.key]
            running[job.key] = job.node
            started[job.key] = (job.ready, now)
            served[job.key[0]] = turn
            turn += 1
            heapq.heappush(events, (now + job.seconds, seq, "done", job.key))
            seq += 1
        if plan.wake_at is not None and ready:
            heapq.heappush(events, (plan.wake_at, seq, "tick", ("", "")))
            seq += 1
    return started


def lone_wait(burst: list[Job], at: float, *, one_queue: bool, priority: int = 0) -> tuple[float, float]:
    lone = Job(("lone", "vm-single"), "node-07", at, 30.0, 4 * 2**30, priority)
    started = drain([*burst, lone], one_queue=one_queue)
    ready, start = started[lone.key]
    burst_end = max(s + by.seconds for by in burst for (_r, s) in [started[by.key]])
    return start - ready, burst_end


async def run(args: Any) -> list[Figure]:
    n = 60 if args.quick else args.burst
    burst = burst_jobs(n, args.mean)
    horizon = drain(burst, one_queue=True)
    makespan = max(s + j.seconds for j in burst for (_r, s) in [horizon[j.key]])
    arrivals = [t for t in (i * args.step for i in range(int(makespan // args.step) + 1)) if t < makespan]
    data: dict[str, Any] = {"burst": n, "mean_seconds": args.mean, "arrivals": len(arrivals), "modes": {}}
    figures: list[Figure] = []
    for mode, one_queue, priority in (("fair", False, 0), ("one queue", True, 0), ("priority", False, 1)):
        waits, ends = [], []
        for t in arrivals:
            wait, end = lone_wait(burst, t, one_queue=one_queue, priority=priority)
            waits.append(wait)
            ends.append(end)
        worst = max(waits)
        mean = sum(waits) / len(waits)
        data["modes"][mode] = {"worst_wait": worst, "mean_wait": mean, "burst_makespan_max": max(ends)}
        figures.append(
            Figure(
                f"single hot plug's worst wait behind {n} ({mode})",
                round(worst, 1),
                "s",
                note=f"mean {mean:.1f} s over {len(arrivals)} arrival times; burst drained in "
                f"{max(ends):.0f} s (alone: {makespan:.0f} s)",
            )
        )
    print_table("fairness", figures)
    write_results("fairness", data, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.fairness", __doc__ or "")
    p.add_argument("--burst", type=int, default=500)
    p.add_argument("--mean", type=float, default=30.0, help="mean migration seconds")
    p.add_argument("--step", type=float, default=20.0, help="seconds between the single plug's arrivals")
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
