"""API economy: the agent's requests per completed hot plug on the default scenario.

The default scenario (200 VMs, the category mix of ``simulator.scenario``, 5 % failed migrations) with
the agent as a subprocess behind a counting proxy, so only *its* requests are counted (the simulated
KubeVirt controllers use the same API server). Figures: requests by verb per completed hot plug,
LIST requests after the caches synced (the agent never relists on a timer, so 0 without faults), VMIM
creates per completed hot plug (≤ 1 + retries of failed migrations).

    python -m bench.economy [--vms 200] [--failure-rate 0.05] [--quick]
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import GC_FREEZE_SECONDS, Figure, base_parser, print_table, run_cli, write_results
from simulator.cluster import ClusterConfig
from simulator.scenario import ScenarioConfig
from simulator.testing import SimHarness, agent_available, wait_until

FLAGS = [
    *("--settle-seconds", "0.5", "--bridge-grace-seconds", "1"),
    # the default 900 s at the cluster's time scale (0.1), as KubeVirt's own periods are scaled
    *("--migration-deadline-seconds", "90"),
    *("--backoff-initial-seconds", "0.5", "--backoff-max-seconds", "2"),
    *("--log-level", "warning", "--no-leader-elect"),
]


async def run(args: Any) -> list[Figure]:
    n = 60 if args.quick else args.vms
    cfg = ClusterConfig(
        migration_mean_seconds=1.0,
        failure_rate=args.failure_rate,
        time_scale=0.1,
        nodes=4,
        seed=21,
        gc_freeze_seconds=GC_FREEZE_SECONDS,
    )
    scen = ScenarioConfig(vms=n, seed=21, request_window_seconds=2.0)
    data: dict[str, Any] = {"vms": n, "failure_rate": args.failure_rate}
    figures: list[Figure] = []
    if not agent_available():
        figures.append(Figure("API economy", None, note="agent not available (agent.app.run_agent)"))
        print_table("economy", figures)
        return figures
    async with SimHarness(cfg) as h:
        plans = h.scenario(scen)
        await h.seed([p.body for p in plans])
        proxy = await h.proxy()
        kc = proxy.write_kubeconfig(h.workdir / "agent.kubeconfig")
        agent = h.agent(*FLAGS, kubeconfig=kc, identity="economy")
        await agent.start()
        ready = await agent.wait_ready(120)
        ready_at = agent.started_at + ready
        await h.run_scenario(plans, scen)

        accepted = sum(1 for t in h.recorder.tracks if t.request.accepted)

        def resolved() -> bool:
            return h.recorder.in_flight == 0 and h.recorder.resolved_count >= accepted

        try:
            await wait_until(resolved, 300, "every request completed or explained", interval=0.5)
        except TimeoutError as exc:
            data["timeout"] = str(exc)
        await asyncio.sleep(1.0)
        rep = h.report()
        after = proxy.counts(since=ready_at)
        data["requests_after_ready"] = {f"{v} {r}": c for (v, r), c in sorted(after.items())}
        data["report"] = {
            "requested": rep.requested,
            "completed": rep.completed,
            "by_final_state": rep.by_final_state,
            "blocked_by_agent": rep.blocked_by_agent,
            "unexplained": rep.unexplained,
            "migrations": rep.migrations.by_creator,
            "failed": rep.migrations.failed,
            "failed_by_cause": rep.migrations.failed_by_cause,
            "unfinished": rep.migrations.unfinished,
        }
        await agent.terminate()
        h.check()
    done = max(1, rep.completed)
    creates = rep.migrations.by_creator["agent"]
    # A VM whose slots turn out exhausted only after its migration (Synchronized=False, the cluster's
    # "slots-exhausted") needed that migration to find out: it resolves the hot plug without completing it.
    n_resolved = rep.completed + rep.by_final_state.get("slots-exhausted", 0)
    lists = sum(c for (v, _), c in after.items() if v == "list")
    figures += [
        Figure("completed hot plugs", rep.completed, note=f"of {rep.requested} requested"),
        Figure(
            "VMIM creates per resolved hot plug",
            creates / max(1, n_resolved),
            "",
            "≤ 1 + retries of failed",
            creates <= n_resolved + rep.migrations.failed,
            f"{creates} creates; {rep.completed} completed, {n_resolved - rep.completed} slot exhaustion "
            f"observed, {rep.migrations.failed} failed",
        ),
        Figure("VMIM creates per completed hot plug", creates / done),
        Figure(
            "migrations failed for a cause a preflight knows",
            sum(rep.migrations.failed_by_cause.values()),
            "",
            "0 (no migration started that a preflight could have known would fail)",
            sum(rep.migrations.failed_by_cause.values()) == 0,
            ", ".join(f"{k} {v}" for k, v in rep.migrations.failed_by_cause.items()),
        ),
        Figure("LIST requests after caches synced", lists, "", "0 (no periodic LISTs)", lists == 0),
    ]
    per_verb: dict[str, int] = {}
    for (verb, _res), c in after.items():
        per_verb[verb] = per_verb.get(verb, 0) + c
    for verb in sorted(per_verb):
        figures.append(Figure(f"{verb} requests per completed hot plug", per_verb[verb] / done))
    print_table("economy", figures)
    write_results("economy", data, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.economy", __doc__ or "")
    p.add_argument("--vms", type=int, default=200)
    p.add_argument("--failure-rate", type=float, default=0.05)
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
