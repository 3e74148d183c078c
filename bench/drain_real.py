"""Peer on real code: a small drain on the real-KubeVirt tier, the agent against KubeVirt's real workload
updater, with the same drain on the simulated cluster printed beside it.

The simulator's timing of KubeVirt (the 5 s re-check of a Pending migration, the workload updater's
budget and cadence: docs/simulator.md) is trusted only as far as the two ratios agree.

**Work**: N VMs (16) on 4 nodes, each gets an SR-IOV NIC hot plugged (``MigrationRequired`` at once),
``parallelMigrationsPerCluster`` C = 4, ``parallelOutboundMigrationsPerNode`` 2; every migration lasts
D = 6 s (the node-side stand-in, :mod:`simulator.real.node`). KubeVirt's own periods are real on the
real tier (its code is not scaled), so D is short and real; the simulated run scales both D and
KubeVirt's periods by ``--sim-scale`` (same ratios, shorter run).

**Sides** (each on a fresh namespace of one tier, KubeVirt v1.7.0 without the ``MigrationPriorityQueue``
gate): the agent (a subprocess, ``--namespaces`` the drain's, KubeVirt's ``workloadUpdateMethods`` empty)
and KubeVirt's updater (``LiveMigrate``, no agent). Makespan (first hot plug → last attached) and time
to attach per VM come from :class:`simulator.watch_recorder.WatchRecorder`, the API server's watches.

    python -m bench.drain_real [--vms 16 --cap 4 --duration 6] [--quick] [--no-sim]

Needs the tier's binaries (``hack/controlplane/build.sh``, ``hack/kubevirt/build.sh``); without them
it prints why and n/a.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.config import new_client_from_config

from bench.common import Figure, base_parser, percentile, print_table, run_cli, vfs_for, write_results
from bench.drain import run_drain
from simulator.cluster import ClusterConfig
from simulator.kubevirt import status
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.manifests import vm_manifest
from simulator.real.kubevirt import HANDLER_SA, KubeVirtSettings
from simulator.real.node import NodeSide, node_specs
from simulator.scenario import Request
from simulator.testing import AgentProcess, wait_until
from simulator.watch_recorder import WatchRecorder
from tests.kubevirt.cluster import DEFAULT_VERSION, Tier, start_tier
from tests.kubevirt.helpers import NAD_GROUP, NAD_VERSION, NADS, SRIOV_RESOURCE, VMIS, VMS, G, V

NODES = 4
#: Share of a planned migration time the simulated cluster realizes from Scheduling to Succeeded (its
#: plan skips the Scheduling step's share, 5 %).
SIM_REALIZED = 0.95
NODE_CAP = 2
IFACE = "hp-sriov"


def settings(cap: int, peer: bool) -> KubeVirtSettings:
    return KubeVirtSettings(
        parallel_migrations_per_cluster=cap,
        parallel_outbound_migrations_per_node=NODE_CAP,
        workload_update_methods=("LiveMigrate",) if peer else (),
    )


def agent_flags(ns: str) -> list[str]:
    return [
        "--namespaces", ns, "--settle-seconds", "0", "--bridge-grace-seconds", "0",
        "--creates-per-second", "100", "--create-burst", "20", "--log-level", "warning",
    ]  # fmt: skip


def summary(report: Any, n: int) -> dict[str, Any]:
    latencies = [r.latency_seconds for r in report.requests if r.latency_seconds is not None]
    return {
        "makespan": report.makespan_seconds,
        "completed": report.completed,
        "requested": n,
        "mean_attach": sum(latencies) / len(latencies) if latencies else None,
        "p95_attach": percentile(latencies, 95),
        "vmims": report.migrations.created,
        "by_creator": report.migrations.by_creator,
        "max_running": report.migrations.max_concurrent_running,
        "max_running_per_node": report.migrations.max_running_per_node,
        "violations": report.violations,
    }


async def real_side(tier: Tier, side: NodeSide, *, peer: bool, n: int, cap: int) -> dict[str, Any]:
    """One drain on the tier: a fresh namespace, N running VMs, the hot plugs, until all attached."""
    tier.set_kubevirt(settings(cap, peer))
    client = await new_client_from_config(config_file=str(tier.cluster.kubeconfig))
    from kubernetes_asyncio.client import CustomObjectsApi

    custom = CustomObjectsApi(client)
    ns = f"drain-{'peer' if peer else 'agent'}-{int(time.time()) % 100000}"
    out: dict[str, Any] = {"namespace": ns}
    agent: AgentProcess | None = None
    watcher = WatchRecorder(tier.cluster.kubeconfig, [ns])
    names = [f"vm-{i:03d}" for i in range(n)]
    try:
        body: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        await CoreV1Api(client).create_namespace(body)
        nad = {
            "apiVersion": f"{NAD_GROUP}/{NAD_VERSION}", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": IFACE, "namespace": ns,
                         "annotations": {"k8s.v1.cni.cncf.io/resourceName": SRIOV_RESOURCE}},
            "spec": {"config": '{"cniVersion": "0.3.1", "name": "hp-sriov", "type": "sriov"}'},
        }  # fmt: skip
        await custom.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, ns, NADS, nad)
        t0 = time.perf_counter()
        for name in names:
            await custom.create_namespaced_custom_object(G, V, ns, VMS, vm_manifest(ns, name, []))

        async def running() -> bool:
            side.check()
            items = (await custom.list_namespaced_custom_object(G, V, ns, VMIS)).get("items") or []
            up = [i for i in items if (i.get("status") or {}).get("phase") == "Running"]
            return len(up) == n and all(
                any(
                    c.get("type") == "LiveMigratable" for c in (i.get("status") or {}).get("conditions") or []
                )
                for i in up
            )

        await wait_until(running, 300, f"{n} VMIs running")
        out["vms_seconds"] = time.perf_counter() - t0
        await watcher.start()
        if not peer:
            agent = AgentProcess(tier.cluster.kubeconfig, args=agent_flags(ns), leader_elect=False)
            await agent.start()
            out["agent_ready_seconds"] = await agent.wait_ready(120)
        for name in names:
            patch = [
                {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/-",
                 "value": {"name": IFACE, "sriov": {}}},
                {"op": "add", "path": "/spec/template/spec/networks/-",
                 "value": {"name": IFACE, "multus": {"networkName": f"{ns}/{IFACE}"}}},
            ]  # fmt: skip
            t = time.time()
            await custom.patch_namespaced_custom_object(
                G, V, ns, VMS, name, patch, _content_type="application/json-patch+json"
            )
            watcher.recorder.add_request(Request(ns, name, IFACE, "plug", "sriov", "plug", t))

        async def done() -> bool:
            watcher.check()
            side.check()
            return watcher.recorder.completed_count >= n

        await wait_until(done, 600, f"{n} hot plugs attached")
        out.update(summary(watcher.recorder.report(), n))
        out["migration_seconds"] = migration_seconds(watcher.objects("virtualmachineinstancemigrations"))
    finally:
        if agent is not None:
            await agent.terminate()
        await watcher.stop()
        for name in names:
            with contextlib.suppress(Exception):
                await custom.delete_namespaced_custom_object(G, V, ns, VMS, name)
        await client.close()
    return out


async def run_real(args: Any, n: int, cap: int, duration: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-drain-real-"))
    t0 = time.perf_counter()
    try:
        tier = start_tier(DEFAULT_VERSION, workdir)
    except (pytest.skip.Exception, pytest.fail.Exception, RuntimeError, OSError) as exc:
        return {"error": f"the real-KubeVirt tier did not start: {exc}"}
    out: dict[str, Any] = {"version": tier.version, "tier_start_seconds": time.perf_counter() - t0}
    timing = KubeVirtSimConfig(migration_mean_seconds=duration, migration_distribution="fixed", seed=7)
    side = NodeSide(
        tier.cluster.kubeconfig,
        tier.kubevirt.kubeconfigs[HANDLER_SA],
        node_specs(NODES, {SRIOV_RESOURCE: 2 * n // NODES + 2 * cap}),
        timing,
        tier.version,
    )
    try:
        await side.start()
        for peer in (False, True):
            out["peer" if peer else "agent"] = await real_side(tier, side, peer=peer, n=n, cap=cap)
    finally:
        await side.stop()
        tier.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


async def run_sim(n: int, cap: int, duration: float, scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {"scale": scale}
    for peer in (False, True):
        cfg = ClusterConfig(
            kubevirt_version=DEFAULT_VERSION,
            workload_update_methods=("LiveMigrate",) if peer else (),
            nodes=NODES,
            migration_mean_seconds=duration * scale,
            migration_distribution="fixed",
            parallel_migrations_per_cluster=cap,
            parallel_outbound_migrations_per_node=NODE_CAP,
            time_scale=scale,
            seed=7,
            sriov_resources=vfs_for(n),
        )
        bodies = [vm_manifest("drain", f"vm-{i:03d}", [("net-a", "bridge")]) for i in range(n)]
        flags = ["--settle-seconds", "0", "--bridge-grace-seconds", "0", "--creates-per-second", "100",
                 "--create-burst", "20", "--log-level", "warning"]  # fmt: skip
        res = await run_drain(cfg, bodies, peer=peer, flags=flags, safety=600, cap=cap)
        lat = [v / scale for v in res["attach_seconds"].values()]
        out["peer" if peer else "agent"] = {
            "makespan": res["makespan_seconds"] / scale,
            "mean_attach": sum(lat) / len(lat) if lat else None,
            "p95_attach": percentile(lat, 95),
            "vmims": res["migrations"]["created"],
        }
    return out


def migration_seconds(vmims: list[dict[str, Any]]) -> float | None:
    """Mean Scheduling → Succeeded of the VMIMs (their phaseTransitionTimestamps, whole seconds on the
    real tier): how long the node side made a migration last."""
    spans = []
    for vmim in vmims:
        stamps = {
            s["phase"]: s["phaseTransitionTimestamp"]
            for s in vmim.get("status", {}).get("phaseTransitionTimestamps") or []
        }
        if "Scheduling" in stamps and "Succeeded" in stamps:
            spans.append(
                status.parse_rfc3339(stamps["Succeeded"]) - status.parse_rfc3339(stamps["Scheduling"])
            )
    return sum(spans) / len(spans) if spans else None


def ratio(side: dict[str, Any], key: str) -> float | None:
    a, p = (side.get("agent") or {}).get(key), (side.get("peer") or {}).get(key)
    return a / p if a and p else None


async def run(args: Any) -> list[Figure]:
    n = 8 if args.quick else args.vms
    cap = 2 if args.quick else args.cap
    duration = args.duration
    data: dict[str, Any] = {"vms": n, "cap": cap, "node_cap": NODE_CAP, "nodes": NODES, "duration": duration}
    figures = [
        Figure("ideal ceil(N/C)·D", -(-n // cap) * duration, "s", note=f"N={n} C={cap} D={duration:g}s")
    ]
    real = await run_real(args, n, cap, duration)
    data["real"] = real
    sim: dict[str, Any] = {}
    if not args.no_sim:
        # The simulated run's migrations last as long as the tier's node side made them (its planned D
        # is realized differently by the two node sides: docs/performance.md).
        spans = [s for s in ((real.get(k) or {}).get("migration_seconds") for k in ("agent", "peer")) if s]
        realized = sum(spans) / len(spans) if spans else duration * SIM_REALIZED
        sim = await run_sim(n, cap, realized / SIM_REALIZED, args.sim_scale)
        sim["migration_seconds_real_tier"] = realized
        data["simulated"] = sim
    if "error" in real:
        figures.append(Figure("real tier", None, note=real["error"]))
    if sim.get("migration_seconds_real_tier"):
        figures.append(
            Figure(
                "migration Scheduling → Succeeded, real tier",
                sim["migration_seconds_real_tier"],
                "s",
                note=f"planned D {duration:g} s; the simulated run is given D = this / {SIM_REALIZED}",
            )
        )
    for where, res in (("real", real), ("simulated", sim)):
        for side in ("agent", "peer"):
            r = res.get(side)
            if not r:
                continue
            label = f"{where}: {'agent' if side == 'agent' else 'KubeVirt updater'}"
            figures.append(
                Figure(
                    f"{label}: makespan",
                    r["makespan"],
                    "s",
                    note=f"mean attach {r['mean_attach']:.1f} s, p95 {r['p95_attach']:.1f} s,"
                    f" {r['vmims']} VMIMs",
                )
            )
    for key, what in (("makespan", "makespan"), ("mean_attach", "mean hot plug → attached")):
        r_real, r_sim = ratio(real, key), ratio(sim, key)
        agree = r_real / r_sim if r_real and r_sim else None
        figures.append(
            Figure(
                f"agent / KubeVirt updater, {what}: real",
                r_real,
                "",
                note=f"simulated {r_sim:.3f}; real / simulated {agree:.2f}" if agree else "",
            )
        )
    print_table("drain on the real-KubeVirt tier", figures)
    write_results("drain_real", data, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.drain_real", __doc__ or "")
    p.add_argument("--vms", type=int, default=16)
    p.add_argument("--cap", type=int, default=4)
    p.add_argument("--duration", type=float, default=6.0, help="migration time D on the tier (real seconds)")
    p.add_argument("--sim-scale", type=float, default=0.25, help="time scale of the simulated run")
    p.add_argument("--no-sim", action="store_true")
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
