"""Scale on the real kube-apiserver: one agent process against 1,000, 10,000 and 100,000 VMs.

The real control plane (kube-apiserver + etcd, :mod:`simulator.real.controlplane`, KubeVirt's CRDs of
``simulator/crds``) holds the VMs and their Running VMIs, written by the bulk loader
(:mod:`bench.bulkload`, straight into etcd; its time is printed) in steps: 1,000, then 9,000 more,
then 90,000 more. At each size a fresh agent (``hotplug-agent run``, a subprocess) starts against the
whole cluster and is measured:

- memory: RSS (``/proc/<pid>/status``) 2 s after ready, minus the RSS of an agent on the empty cluster,
  per VM;
- time to sync: process spawn → ``/readyz`` 200 (the caches synced);
- LIST requests after sync: kube-apiserver's own ``apiserver_request_total{verb="LIST"}`` from the
  agent's ready to the end of the size's measurements (no other client lists meanwhile);
- reaction: hot plugs of SR-IOV NICs into marker VMs of their own namespace, which the simulated
  KubeVirt controllers (watching only that namespace, KubeVirt v1.7.0, in this process) sync into the
  VMIs; from the VMI watch event whose spec first carries the NIC (as ``bench.reaction`` defines
  actionable) to the agent's VMIM's ``ADDED`` event, both seen by one watcher in this process (so the
  watch latency of both streams is in it); p50 / p99 / max over the markers, no background event
  stream. From the user's patch of the VM instead (the simulated VM→VMI sync inside) in the note.

How memory and sync time grow is printed as the exponent of a power law fitted through the three sizes
(1 = linear).

    python -m bench.scale_real [--sizes 1000,10000,100000] [--markers 40] [--quick] [--profile FILE]
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import watch
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from bench.bulkload import load
from bench.common import Figure, at_most, base_parser, percentile, print_table, run_cli, write_results
from bench.scale import profiled_command
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.controllers import KubeVirtControllers, node_names
from simulator.manifests import plug_patch, vm_manifest
from simulator.real.controlplane import ControlPlane
from simulator.testing import AgentProcess, wait_until

KUBEVIRT = "v1.7.0"
MARKERS_NS = "markers"
NAMESPACES = 100
G, V = "kubevirt.io", "v1"
CRD_DIR = Path(__file__).resolve().parents[1] / "simulator" / "crds"
FLAGS = [
    "--settle-seconds",
    "0",
    "--bridge-grace-seconds",
    "0",
    "--log-level",
    "warning",
    "--no-leader-elect",
]
LIST_RE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def list_count(cp: ControlPlane) -> int:
    """LIST requests kube-apiserver has served so far (all resources, all clients)."""
    body = cp.request("GET", "/metrics").body.decode()
    return int(sum(float(v) for labels, v in LIST_RE.findall(body) if 'verb="LIST"' in labels))


async def served(cp: ControlPlane, plural: str, count: int, limit_seconds: float = 600.0) -> float:
    """Wait until kube-apiserver serves ``count`` objects of ``plural`` in a consistent LIST: its watch
    cache follows etcd, and after a bulk load it is still decoding the new objects for a while (a
    consistent LIST meanwhile waits, or answers 504 "Too large resource version"). Returns the seconds
    waited, so that catching up is not counted as the agent's sync."""
    t0 = time.perf_counter()
    path = f"/apis/{G}/{V}/{plural}?limit=1"
    while True:
        res = await asyncio.to_thread(cp.request, "GET", path)
        if res.status == 200:
            doc = res.json()
            have = len(doc.get("items") or []) + int(
                (doc.get("metadata") or {}).get("remainingItemCount") or 0
            )
            if have >= count:
                return time.perf_counter() - t0
        if time.perf_counter() - t0 > limit_seconds:
            raise TimeoutError(f"kube-apiserver serves {plural} short of {count} after {limit_seconds:.0f} s")
        await asyncio.sleep(0.5)


def exponent(sizes: list[int], values: list[float]) -> float | None:
    """Slope of log(value) over log(size), least squares (1 = linear growth)."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


class MarkerWatch:
    """Watches VMIs and VMIMs of the markers' namespace (``perf_counter`` on arrival): when each marker's
    VMI spec first carries ``iface``, and when a VMIM for it appeared that was not there before
    (``known``: the VMIMs of earlier sizes, which a new watch lists as ``ADDED``); ``plugged`` is
    filled by the caller when it sends each hot plug."""

    def __init__(self, custom: CustomObjectsApi, iface: str, known: set[str]) -> None:
        self.custom = custom
        self.iface = iface
        self.known = known
        self.plugged: dict[str, float] = {}
        self.actionable: dict[str, float] = {}
        self.vmim: dict[str, float] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def _follow(self, plural: str) -> None:
        while True:
            w = watch.Watch()
            async with w.stream(
                self.custom.list_namespaced_custom_object, G, V, MARKERS_NS, plural, timeout_seconds=600
            ) as stream:
                async for event in stream:
                    t = time.perf_counter()
                    obj = event["raw_object"]
                    if plural == "virtualmachineinstancemigrations":
                        if event["type"] == "ADDED" and obj["metadata"]["name"] not in self.known:
                            self.vmim.setdefault(str(obj["spec"]["vmiName"]), t)
                        continue
                    devices = ((obj.get("spec") or {}).get("domain") or {}).get("devices") or {}
                    if any(i.get("name") == self.iface for i in devices.get("interfaces") or []):
                        self.actionable.setdefault(str(obj["metadata"]["name"]), t)

    def start(self) -> None:
        for plural in ("virtualmachineinstances", "virtualmachineinstancemigrations"):
            self.tasks.append(asyncio.create_task(self._follow(plural)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def measure(
    cp: ControlPlane, n: int, baseline_rss: int | None, markers: list[str], custom: CustomObjectsApi,
    profile: Path | None,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"vms": n}
    agent = AgentProcess(cp.kubeconfig, args=FLAGS, leader_elect=False, command=profiled_command(profile))
    await agent.start()
    try:
        out["ready_seconds"] = await agent.wait_ready(600)
        out["cpu_seconds_at_ready"] = agent.cpu_seconds()
        lists_at_ready = await asyncio.to_thread(list_count, cp)
        await asyncio.sleep(2.0)
        out["rss_bytes"] = agent.rss_bytes()
        if baseline_rss is not None and n:
            out["rss_per_vm_bytes"] = (out["rss_bytes"] - baseline_rss) / n
        if markers:
            iface = f"hp{n}"
            before = await custom.list_namespaced_custom_object(
                G, V, MARKERS_NS, "virtualmachineinstancemigrations"
            )
            watcher = MarkerWatch(custom, iface, {str(i["metadata"]["name"]) for i in before["items"]})
            watcher.start()
            await asyncio.sleep(0.5)
            for name in markers:
                vm = await custom.get_namespaced_custom_object(G, V, MARKERS_NS, "virtualmachines", name)
                watcher.plugged[name] = time.perf_counter()
                await custom.patch_namespaced_custom_object(
                    G, V, MARKERS_NS, "virtualmachines", name, plug_patch(vm, iface, "sriov"),
                    _content_type="application/merge-patch+json",
                )  # fmt: skip
                await asyncio.sleep(0.2)
            await wait_until(lambda: len(watcher.vmim) >= len(markers), 120, "a VMIM for every marker")
            await watcher.stop()
            reaction = [watcher.vmim[m] - watcher.actionable[m] for m in markers if m in watcher.actionable]
            plug_to_vmim = [watcher.vmim[m] - watcher.plugged[m] for m in markers]
            out["reaction_ms"] = {
                "p50": (percentile(reaction, 50) or 0) * 1000,
                "p99": (percentile(reaction, 99) or 0) * 1000,
                "max": max(reaction, default=0) * 1000,
                "count": len(reaction),
                "plug_p50": (percentile(plug_to_vmim, 50) or 0) * 1000,
                "plug_p99": (percentile(plug_to_vmim, 99) or 0) * 1000,
            }
            # let the markers' migrations finish before the next size plugs them again
            await asyncio.sleep(3.0)
        out["lists_after_sync"] = await asyncio.to_thread(list_count, cp) - lists_at_ready
        out["cpu_seconds"] = agent.cpu_seconds()
    finally:
        await agent.terminate()
    return out


async def run(args: Any) -> list[Figure]:
    sizes = [1000, 5000] if args.quick else [int(s) for s in args.sizes.split(",")]
    n_markers = 8 if args.quick else args.markers
    from tests.controlplane.cluster import build_binaries

    figures: list[Figure] = []
    data: dict[str, Any] = {"sizes": {}, "kubevirt": KUBEVIRT}
    try:
        bindir = build_binaries()
    except Exception as exc:  # reported as n/a, the other benchmarks go on
        figures.append(Figure("real control plane", None, note=f"not available: {exc}"))
        print_table("scale (real kube-apiserver)", figures)
        write_results("scale_real", data, figures)
        return figures
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-real-"))
    cp = ControlPlane(bindir, workdir)
    cp.start()
    controllers: KubeVirtControllers | None = None
    client = None
    try:
        cp.install_crds(sorted(CRD_DIR.glob("*.yaml")))
        for ns in [MARKERS_NS, *(f"scale-{i:02d}" for i in range(NAMESPACES))]:
            cp.request(
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            )
        kv = KubeVirtSimConfig(
            kubevirt_version=KUBEVIRT,
            migration_mean_seconds=0.5,
            migration_distribution="fixed",
            time_scale=0.05,
            watch_namespace=MARKERS_NS,
            seed=5,
        )
        controllers = KubeVirtControllers(kv, cp.kubeconfig, node_names(4))
        await controllers.bootstrap()
        await controllers.start()
        client = await new_client_from_config(config_file=str(cp.kubeconfig))
        custom = CustomObjectsApi(client)
        markers = [f"marker-{i:03d}" for i in range(n_markers)]
        for name in markers:
            await custom.create_namespaced_custom_object(
                G, V, MARKERS_NS, "virtualmachines", vm_manifest(MARKERS_NS, name, [("net-a", "bridge")])
            )

        async def markers_running() -> bool:
            items = (await custom.list_namespaced_custom_object(G, V, MARKERS_NS, "virtualmachineinstances"))[
                "items"
            ]
            return len(items) == len(markers) and all(
                (i.get("status") or {}).get("phase") == "Running" for i in items
            )

        await wait_until(markers_running, 120, "marker VMIs running")
        baseline = await measure(cp, 0, None, [], custom, None)
        data["baseline"] = baseline
        figures.append(
            Figure("idle agent RSS", baseline["rss_bytes"] / 2**20, "MiB", note=f"{len(markers)} marker VMs")
        )
        figures.append(Figure("idle agent spawn → ready", baseline["ready_seconds"], "s"))
        loaded = 0
        prototype = vm_manifest("scale-00", "proto", [("net-a", "bridge")])
        for n in sizes:
            keys = [(f"scale-{i % NAMESPACES:02d}", f"vm-{i:06d}") for i in range(loaded, n)]
            seconds = await load(cp.etcd_url, keys, prototype, node_names(50), KUBEVIRT)
            loaded = n
            catch_up = max(
                [
                    await served(cp, plural, n + len(markers))
                    for plural in ("virtualmachines", "virtualmachineinstances")
                ]
            )
            m = await measure(
                cp, n, baseline["rss_bytes"], markers, custom, args.profile if n == max(sizes) else None
            )
            m["load_seconds"] = seconds
            m["apiserver_catch_up_seconds"] = catch_up
            m["load_count"] = len(keys)
            data["sizes"][str(n)] = m
            big = n >= 100_000
            per_vm = m["rss_per_vm_bytes"] / 1024
            figures.append(
                Figure(
                    f"{n:,} VMs: bulk load (+{len(keys):,} VMs and VMIs)",
                    seconds,
                    "s",
                    note=f"{2 * len(keys) / seconds:,.0f} objects/s into etcd; then {catch_up:.0f} s until"
                    " kube-apiserver serves them all",
                )
            )
            figures.append(
                Figure(
                    f"{n:,} VMs: memory per VM above idle",
                    per_vm,
                    "KiB",
                    "≤ 4 KiB at 100,000" if big else "",
                    at_most(per_vm, 4.0) if big else None,
                    f"RSS {m['rss_bytes'] / 2**20:,.0f} MiB",
                )
            )
            figures.append(
                Figure(
                    f"{n:,} VMs: spawn → caches synced",
                    m["ready_seconds"],
                    "s",
                    "≤ 15 s at 100,000" if big else "",
                    at_most(m["ready_seconds"], 15.0) if big else None,
                    f"{m['ready_seconds'] - baseline['ready_seconds']:.1f} s above the idle start;"
                    f" agent CPU {m['cpu_seconds_at_ready']:.1f} s",
                )
            )
            figures.append(
                Figure(
                    f"{n:,} VMs: LIST requests after sync",
                    m["lists_after_sync"],
                    "",
                    "0",
                    m["lists_after_sync"] == 0,
                    "kube-apiserver's apiserver_request_total, agent ready → end of its measurements",
                )
            )
            r = m.get("reaction_ms")
            if r:
                figures.append(
                    Figure(
                        f"{n:,} VMs: reaction p99, VMI event → VMIM",
                        r["p99"],
                        "ms",
                        note=f"p50 {r['p50']:.1f} ms, max {r['max']:.1f} ms, {r['count']} markers; VM patch"
                        f" → VMIM p50 {r['plug_p50']:.0f} ms p99 {r['plug_p99']:.0f} ms",
                    )
                )
        measured = [int(s) for s in data["sizes"]]
        for what, key, unit in (
            ("memory above idle", "rss_above", "bytes"),
            ("time to sync above the idle start", "sync_above", "s"),
        ):
            values = []
            for s in measured:
                m = data["sizes"][str(s)]
                values.append(
                    m["rss_bytes"] - baseline["rss_bytes"]
                    if key == "rss_above"
                    else m["ready_seconds"] - baseline["ready_seconds"]
                )
            e = exponent(measured, values)
            figures.append(
                Figure(
                    f"growth of {what}: exponent",
                    e,
                    "",
                    note=" → ".join(
                        f"{v / 2**20:,.0f} MiB" if unit == "bytes" else f"{v:.1f} s" for v in values
                    )
                    + f" at {' / '.join(f'{s:,}' for s in measured)} VMs (1 = linear)",
                )
            )
        p99s = [data["sizes"][str(s)].get("reaction_ms", {}).get("p99") for s in measured]
        if len(p99s) >= 2 and all(p99s):
            figures.append(
                Figure(
                    "reaction p99, largest / smallest size",
                    p99s[-1] / p99s[0],
                    "",
                    "unchanged (about 1)",
                    note=" / ".join(f"{p:.1f} ms" for p in p99s),
                )
            )
    finally:
        if client is not None:
            await client.close()
        if controllers is not None:
            await controllers.stop()
        cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # etcd's data: ~0.5 GB at 100,000 VMs
    print_table("scale (real kube-apiserver)", figures)
    write_results("scale_real", data, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.scale_real", __doc__ or "")
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--markers", type=int, default=40)
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
