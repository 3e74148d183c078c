"""Drain: N pending hot plugs under an in-flight cap C with migrations of fixed duration D.

Makespan (first hot-plug request → last completion, judged by the simulator's report) against the
ideal ``ceil(N/C)·D``, for the agent and, in the same run, for the peer: KubeVirt 1.6's own workload
updater with ``LiveMigrate`` at KubeVirt's timing (docs/simulator.md: a pass 5 s after the hot plugs,
budget = cap - running VMIMs, Pending ones not counted, passes again at once while candidates remain;
Pending VMIMs over the cap re-checked every 5 s).

Both sides get the same cluster: KubeVirt v1.6, ``parallelMigrationsPerCluster = C``, per-node limit
high, SR-IOV plugs (``MigrationRequired`` at once, so neither side waits for a bridge grace period).
Time is scaled: KubeVirt's periods (the updater's 5 s) are multiplied by ``D / real migration
seconds`` so the peer keeps its real pass-to-migration ratio. The agent runs as a subprocess talking to
the simulated API server directly; with ``--count-requests`` it goes through the harness's counting
proxy instead (its requests by verb), which relays every byte in the simulator's event loop and so
slows KubeVirt's side down (docs/performance.md).

    python -m bench.drain [--vms 1000 --cap 20 --duration 1.2] [--quick] [--no-peer] [--no-agent]
                          [--count-requests]
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench.common import (
    GC_FREEZE_SECONDS,
    Figure,
    at_most,
    base_parser,
    percentile,
    print_table,
    run_cli,
    vfs_for,
    write_results,
)
from simulator.cluster import ClusterConfig
from simulator.manifests import vm_manifest
from simulator.testing import SimHarness, agent_available, wait_until

KUBEVIRT = "v1.6.0"
NAMESPACES = 10


def cluster_config(
    *, peer: bool, n: int, cap: int, duration: float, real: float, nodes: int
) -> ClusterConfig:
    return ClusterConfig(
        kubevirt_version=KUBEVIRT,
        workload_update_methods=("LiveMigrate",) if peer else (),
        nodes=nodes,
        migration_mean_seconds=duration,
        migration_distribution="fixed",
        parallel_migrations_per_cluster=cap,
        parallel_outbound_migrations_per_node=100_000,
        time_scale=duration / real,
        history_size=max(100_000, 30 * n),
        seed=7,
        gc_freeze_seconds=GC_FREEZE_SECONDS,
        sriov_resources=vfs_for(n),
    )


class SlotTimeline:
    """Server-side times (``perf_counter``) of each VMIM's create, start (``Scheduling``) and end.

    A slot of the cap costs D plus two overheads the makespan pays once per round: *admission* (create
    → Scheduling: KubeVirt's migration controller) and *refill* (a migration ends → the next create
    arrives: the migrating side's reaction, i.e. the agent's or the updater's).
    """

    def __init__(self) -> None:
        self.created: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        #: VMIM name → its VMI ("namespace/name"), in creation order.
        self.vmi_of: dict[str, str] = {}

    def observe(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        if resource != "virtualmachineinstancemigrations":
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        phase = str((obj.get("status") or {}).get("phase", ""))
        if event_type == "ADDED":
            self.created.setdefault(name, t)
            meta = obj.get("metadata") or {}
            self.vmi_of.setdefault(
                name, f"{meta.get('namespace', '')}/{(obj.get('spec') or {}).get('vmiName', '')}"
            )
        if phase == "Pending":
            self.pending.setdefault(name, t)
        elif phase == "Scheduling":
            self.started.setdefault(name, t)
        elif phase in ("Succeeded", "Failed"):
            self.ended.setdefault(name, t)

    def summary(self, cap: int) -> dict[str, Any]:
        admission = [self.started[n] - t for n, t in self.created.items() if n in self.started]
        accept = [self.pending[n] - t for n, t in self.created.items() if n in self.pending]
        start = [self.started[n] - t for n, t in self.pending.items() if n in self.started]
        running = [self.ended[n] - t for n, t in self.started.items() if n in self.ended]
        # The k-th migration to end frees the slot the (cap + k)-th create fills.
        creates = sorted(self.created.values())
        ends = sorted(self.ended.values())
        refill = [creates[cap + k] - end for k, end in enumerate(ends) if cap + k < len(creates)]

        def stats(values: list[float]) -> dict[str, float | None]:
            return {
                "mean": sum(values) / len(values) if values else None,
                "p50": percentile(values, 50),
                "p90": percentile(values, 90),
                "max": max(values, default=None),
            }

        return {
            "admission": stats(admission),
            "accept": stats(accept),
            "start": stats(start),
            "running": stats(running),
            "refill": stats(refill),
        }


def timeline_figures(summary: dict[str, Any], label: str, duration: float) -> list[Figure]:
    out: list[Figure] = []
    for part, what in (
        ("admission", "create → Scheduling (KubeVirt's controller)"),
        ("accept", "create → Pending"),
        ("start", "Pending → Scheduling (waits for a free slot)"),
        ("refill", "migration end → next create"),
        ("running", f"Scheduling → end (D = {duration:g}s)"),
    ):
        st = summary[part]
        if st["mean"] is None:
            continue
        out.append(
            Figure(
                f"{label}: {part} per round, mean",
                st["mean"],
                "s",
                note=f"{what}; p50 {st['p50']:.3f} p90 {st['p90']:.3f} max {st['max']:.3f}",
            )
        )
    return out


def agent_flags(cap: int, duration: float) -> list[str]:
    # The token bucket must allow C/D creates per second, or it (not the cap) paces the drain.
    rate = max(10.0, 2.0 * cap / duration)
    return [
        "--settle-seconds",
        "0",
        "--bridge-grace-seconds",
        "0",
        "--creates-per-second",
        f"{rate:g}",
        "--create-burst",
        str(cap),
        "--lease-duration-seconds",
        "4",
        "--renew-deadline-seconds",
        "3",
        "--retry-period-seconds",
        "1",
        "--log-level",
        "warning",
    ]


async def drain_once(
    *,
    peer: bool,
    n: int,
    cap: int,
    duration: float,
    real: float,
    nodes: int,
    profile: Path | None = None,
    count_requests: bool = False,
) -> dict[str, Any]:
    cfg = cluster_config(peer=peer, n=n, cap=cap, duration=duration, real=real, nodes=nodes)
    bodies = [vm_manifest(f"drain-{i % NAMESPACES}", f"vm-{i:05d}", [("net-a", "bridge")]) for i in range(n)]
    return await run_drain(
        cfg,
        bodies,
        peer=peer,
        flags=agent_flags(cap, duration),
        safety=20 * math.ceil(n / cap) * duration + 120,
        cap=cap,
        profile=profile,
        count_requests=count_requests,
    )


async def run_drain(
    cfg: ClusterConfig,
    bodies: list[dict[str, Any]],
    *,
    peer: bool,
    flags: list[str],
    safety: float,
    cap: int,
    profile: Path | None = None,
    count_requests: bool = False,
) -> dict[str, Any]:
    """Seed ``bodies``, start the agent (unless ``peer``: then KubeVirt's updater migrates), hot plug an
    SR-IOV NIC into every VM, wait until every hot plug completed. The simulator's report, the
    per-round timeline, the agent's metrics; ``placement`` (VM → node) and ``attach_seconds`` (hot plug
    → attached, per VM)."""
    n = len(bodies)
    out: dict[str, Any] = {"side": "kubevirt-workload-updater" if peer else "agent"}
    timeline = SlotTimeline()
    async with SimHarness(cfg) as h:
        await h.seed(bodies)
        out["placement"] = {
            f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["status"]["nodeName"]
            for o in h.store.list("virtualmachineinstances")[0]
        }
        h.server.add_event_observer(timeline.observe)
        agent = None
        proxy = None
        if not peer:
            kc = None
            if count_requests:
                proxy = await h.proxy()
                kc = proxy.write_kubeconfig(h.workdir / "agent.kubeconfig")
            command = None
            if profile is not None:
                from simulator.testing import agent_command

                command = [
                    str(Path(agent_command()[0]).with_name("pyinstrument")),
                    "-r",
                    "text",
                    "--show-all",
                    "-o",
                    str(profile),
                    *agent_command(),
                ]
            agent = h.agent(*flags, kubeconfig=kc, identity="drain", command=command)
            await agent.start()
            out["agent_ready_seconds"] = await agent.wait_ready(120)
            await wait_until(agent.is_leader, 60, "agent leadership")
        t_start = time.perf_counter()
        for body in bodies:
            await h.plug(body["metadata"]["namespace"], body["metadata"]["name"], "hp-sriov", "sriov")
        out["edit_seconds"] = time.perf_counter() - t_start
        await wait_until(lambda: h.recorder.completed_count >= n, safety, f"{n} completed hot plugs")
        out["wall_seconds"] = time.perf_counter() - t_start
        rep = h.report()
        out["makespan_seconds"] = rep.makespan_seconds
        out["completed"] = rep.completed
        out["requested"] = rep.requested
        out["migrations"] = {
            "created": rep.migrations.created,
            "by_creator": rep.migrations.by_creator,
            "succeeded": rep.migrations.succeeded,
            "failed": rep.migrations.failed,
            "max_concurrent": rep.migrations.max_concurrent,
            "max_concurrent_running": rep.migrations.max_concurrent_running,
            "max_concurrent_per_vmi": rep.migrations.max_concurrent_per_vmi,
        }
        out["violations"] = rep.violations
        out["attach_seconds"] = {
            f"{r.namespace}/{r.vm}": r.latency_seconds for r in rep.requests if r.latency_seconds is not None
        }
        out["slots"] = timeline.summary(cap)
        out["created_vmis"] = list(timeline.vmi_of.values())
        out["runs"] = [
            (timeline.vmi_of.get(name, ""), timeline.ended[name] - started)
            for name, started in timeline.started.items()
            if name in timeline.ended
        ]
        if agent is not None:
            metrics = await agent.scrape()
            out["agent_metrics"] = {
                "creates": metrics.sum("hotplug_agent_migration_creates_total"),
                "hotplugs_completed": metrics.sum("hotplug_agent_hotplugs_completed_total"),
                "rate_limited": metrics.by_label("hotplug_agent_rate_limited_dispatches_total", "limit"),
            }
        if agent is not None and proxy is not None:
            ready_at = agent.started_at + float(out["agent_ready_seconds"])
            out["agent_requests"] = {f"{verb} {res}": c for (verb, res), c in sorted(proxy.counts().items())}
            out["agent_requests_after_ready"] = {
                f"{verb} {res}": c for (verb, res), c in sorted(proxy.counts(since=ready_at).items())
            }
        if agent is not None:
            out["agent_cpu_seconds"] = agent.cpu_seconds()
            out["agent_rss_bytes"] = agent.rss_bytes()
            await agent.terminate()
        h.check()
    return out


def economy_figures(run: dict[str, Any], label: str) -> list[Figure]:
    done = max(1, int(run.get("completed", 0)))
    after: dict[str, int] | None = run.get("agent_requests_after_ready")
    creates = run["migrations"]["by_creator"]["agent"]
    failed = run["migrations"]["failed"]
    figs = [
        Figure(
            f"{label}: VMIM creates per completed hot plug",
            creates / done,
            "",
            "≤ 1 + retries of failed",
            creates <= done + failed,
            f"{creates} creates, {failed} failed migrations",
        ),
    ]
    if after is None:
        return figs  # requests are counted with --count-requests (and in bench.economy)
    lists_after = sum(c for k, c in after.items() if k.startswith("list "))
    figs.append(Figure(f"{label}: LIST requests after caches synced", lists_after, "", "0", lists_after == 0))
    per_verb: dict[str, int] = {}
    for key, c in after.items():
        verb = key.split(" ", 1)[0]
        per_verb[verb] = per_verb.get(verb, 0) + c
    for verb in sorted(per_verb):
        figs.append(Figure(f"{label}: {verb} requests per completed hot plug", per_verb[verb] / done))
    return figs


async def run(args: Any) -> list[Figure]:
    n = 60 if args.quick else args.vms
    cap = 10 if args.quick else args.cap
    duration = 0.5 if args.quick else args.duration
    ideal = math.ceil(n / cap) * duration
    runs: dict[str, Any] = {
        "vms": n,
        "cap": cap,
        "duration_seconds": duration,
        "ideal_seconds": ideal,
        "real_migration_seconds": args.real_migration_seconds,
        "kubevirt": KUBEVIRT,
    }
    figures: list[Figure] = [Figure("ideal ceil(N/C)·D", ideal, "s", note=f"N={n} C={cap} D={duration:g}s")]
    have_agent = agent_available() and not args.no_agent
    agent_run = peer_run = None
    if have_agent:
        agent_run = await drain_once(
            peer=False,
            n=n,
            cap=cap,
            duration=duration,
            real=args.real_migration_seconds,
            nodes=args.nodes,
            profile=args.profile,
            count_requests=args.count_requests,
        )
        runs["agent"] = agent_run
        mk = agent_run["makespan_seconds"]
        figures.append(
            Figure(
                "agent makespan",
                mk,
                "s",
                note=f"max {agent_run['migrations']['max_concurrent']} unfinished VMIMs",
            )
        )
        ratio = mk / ideal if mk else None
        figures.append(Figure("agent makespan / ideal", ratio, "", "≤ 1.10", at_most(ratio, 1.10)))
        figures.extend(timeline_figures(agent_run["slots"], "agent", duration))
    else:
        figures.append(Figure("agent makespan", None, note="agent not available (agent.app/agent.cli)"))
    if not args.no_peer:
        peer_run = await drain_once(
            peer=True, n=n, cap=cap, duration=duration, real=args.real_migration_seconds, nodes=args.nodes
        )
        runs["peer"] = peer_run
        pk = peer_run["makespan_seconds"]
        figures.append(
            Figure(
                "KubeVirt 1.6 LiveMigrate makespan",
                pk,
                "s",
                note=f"KubeVirt's 5 s periods scaled to {5 * duration / args.real_migration_seconds:.2f} s",
            )
        )
        figures.append(Figure("KubeVirt 1.6 makespan / ideal", pk / ideal if pk else None))
        figures.extend(timeline_figures(peer_run["slots"], "KubeVirt 1.6", duration))
    if agent_run and peer_run and agent_run["makespan_seconds"] and peer_run["makespan_seconds"]:
        figures.append(
            Figure(
                "agent / KubeVirt 1.6 makespan",
                agent_run["makespan_seconds"] / peer_run["makespan_seconds"],
                "",
                "< 1 (faster than the peer)",
                agent_run["makespan_seconds"] < peer_run["makespan_seconds"],
            )
        )
    if agent_run:
        figures.extend(economy_figures(agent_run, "drain"))
    print_table("drain", figures)
    write_results("drain", runs, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.drain", __doc__ or "")
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--cap", type=int, default=20)
    p.add_argument("--duration", type=float, default=1.2, help="simulated migration time D (fixed)")
    p.add_argument(
        "--real-migration-seconds",
        type=float,
        default=10.0,
        help="real migration time D stands for (scales KubeVirt's 5 s updater period)",
    )
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument(
        "--count-requests",
        action="store_true",
        help="put the agent behind the counting proxy (requests by verb; slows the simulated side down)",
    )
    p.add_argument("--no-agent", action="store_true")
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
