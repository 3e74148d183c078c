"""The agent end to end on a real kube-apiserver + etcd (controlplane tier, issue 6 items 4 and 5).

The simulated KubeVirt controllers (:class:`KubeVirtControllers`, no admission webhooks: the real server
has none) and the real agent (``agent.app.run``) both work against the session's kube-apiserver. The
default scenario mix (fewer VMs) is judged by the ground-truth :class:`~simulator.report.Recorder`, fed
by watches over HTTP (:class:`~simulator.watch_recorder.WatchRecorder`), with the same invariants as
on the embedded server: every hot plug completed or blocked with a reason (the agent's Warning Event),
never two concurrent migrations for one VMI, none for opted-out / non-migratable / RestartRequired VMs,
the caps never exceeded.

The second test runs the agent as a client-certificate user that holds exactly the chart's RBAC
(rendered by Helm, applied for real) and checks the same user is refused what the chart does not grant.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from agent import app
from agent.config import AgentConfig, validate
from metrics.definitions import HotplugMetrics
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.controllers import KubeVirtControllers, node_names
from simulator.report import Report
from simulator.scenario import ScenarioConfig, ScenarioDriver, build_plan
from simulator.watch_recorder import WatchRecorder
from tests.controlplane.cluster import ControlPlane

pytestmark = pytest.mark.controlplane

G, V = "kubevirt.io", "v1"
VMS = 60
VMIMS_PLURAL = "virtualmachineinstancemigrations"
#: Safety nets only (the run ends as soon as every request is resolved).
SETTLE_DEADLINE = 90.0
#: KubeVirt's defaults when the KubeVirt CR sets no limits (``caps`` reads the shared CR).
CLUSTER_CAP, NODE_CAP = 5, 2
AGENT_SETTINGS: dict[str, Any] = {
    "mode": "auto",
    "settle_seconds": 0.2,
    "bridge_grace_seconds": 0.3,
    "backoff_initial_seconds": 0.2,
    "backoff_max_seconds": 0.5,
    "verify_timeout_seconds": 10.0,
    "migration_deadline_seconds": 60.0,
    "shutdown_grace_seconds": 0.0,
    "log_level": "warning",
    "creates_per_second": 50.0,
    "create_burst": 20,
}


async def wait_until(check: Callable[[], bool], what: str, seconds: float, *also: Callable[[], None]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        for f in also:
            f()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.1)


def admin_create_namespace(cp: ControlPlane, name: str) -> None:
    res = cp.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert res.status in (201, 409), res.body[:500]


async def run_scenario(
    cp: ControlPlane,
    ns: str,
    agent_kubeconfig: Path,
    *,
    seed: int,
    agent_overrides: dict[str, Any] | None = None,
    on_agent_running: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Report, WatchRecorder, HotplugMetrics]:
    """Seed ``VMS`` VMs of the default mix in ``ns`` (the VM controller creates their VMIs), start the
    agent with ``agent_kubeconfig``, issue the scenario's edits and wait until every accepted request
    is completed or explained by an agent Event, with no migration in flight."""
    admin_create_namespace(cp, ns)
    kv_config = KubeVirtSimConfig(
        migration_mean_seconds=0.3,
        migration_distribution="fixed",
        failure_rate=0.05,
        seed=seed,
        time_scale=0.1,
        watch_namespace=ns,
    )
    controllers = KubeVirtControllers(kv_config, cp.kubeconfig, node_names(4))
    watcher = WatchRecorder(cp.kubeconfig, [ns])
    client = await new_client_from_config(config_file=str(cp.kubeconfig))
    stop = asyncio.Event()
    agent_task: asyncio.Task[int] | None = None
    metrics = HotplugMetrics()
    try:
        await controllers.bootstrap()
        await controllers.start()
        await watcher.start()
        scen = ScenarioConfig(vms=VMS, namespaces=(ns,), seed=seed, request_window_seconds=1.0)
        plans = build_plan(scen)
        api = CustomObjectsApi(client)
        sem = asyncio.Semaphore(16)

        async def create(body: dict[str, Any]) -> None:
            async with sem:
                await api.create_namespaced_custom_object(G, V, ns, "virtualmachines", body)

        await asyncio.gather(*(create(p.body) for p in plans))

        def vmis_ready() -> bool:
            vmis = watcher.objects("virtualmachineinstances")
            return len(vmis) == len(plans) and all(
                any(
                    c.get("type") == "LiveMigratable" for c in (v.get("status") or {}).get("conditions") or []
                )
                for v in vmis
            )

        await wait_until(vmis_ready, "every VMI created and reporting LiveMigratable", 60, controllers.check)

        config = AgentConfig(
            kubeconfig=str(agent_kubeconfig),
            namespaces=(ns,),
            listen_address="127.0.0.1:0",
            **{"identity": f"agent-{ns}", "leader_elect": False, **AGENT_SETTINGS, **(agent_overrides or {})},
        )
        validate(config)
        agent_task = asyncio.create_task(app.run(config, stop, metrics=metrics, install_signals=False))

        def agent_alive() -> None:
            if agent_task is not None and agent_task.done():
                raise AssertionError(f"the agent exited: {agent_task.result()!r}")

        def synced() -> bool:
            return metrics.registry.get_sample_value("hotplug_agent_cache_synced") == 1.0

        await wait_until(synced, "the agent's caches synced", 30, agent_alive)
        if on_agent_running is not None:
            await on_agent_running()

        recorder = watcher.recorder
        driver = ScenarioDriver(api, plans, scen, on_request=recorder.add_request)
        await driver.run()
        accepted = sum(1 for r in driver.requests if r.accepted)

        def settled() -> bool:
            return recorder.resolved_count >= accepted and recorder.in_flight == 0

        await wait_until(
            settled, "every request completed or blocked by the agent", SETTLE_DEADLINE,
            agent_alive, controllers.check, watcher.check,
        )  # fmt: skip
        controllers.check()
        watcher.check()
        return recorder.report(), watcher, metrics
    finally:
        stop.set()
        if agent_task is not None:
            try:
                await asyncio.wait_for(agent_task, 30)
            except (TimeoutError, asyncio.CancelledError):
                agent_task.cancel()
        await watcher.stop()
        await controllers.stop()
        await client.close()


def caps(cp: ControlPlane) -> tuple[int, int]:
    """parallelMigrationsPerCluster, parallelOutboundMigrationsPerNode of the (session-shared) KubeVirt CR."""
    res = cp.request("GET", "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts/kubevirt")
    assert res.status == 200, res.body[:300]
    migrations = ((res.json().get("spec") or {}).get("configuration") or {}).get("migrations") or {}
    return (
        int(migrations.get("parallelMigrationsPerCluster", CLUSTER_CAP)),
        int(migrations.get("parallelOutboundMigrationsPerNode", NODE_CAP)),
    )


def assert_invariants(report: Report, watcher: WatchRecorder, limits: tuple[int, int]) -> None:
    cluster_cap, node_cap = limits
    m = report.migrations
    lines = "\n".join(report.summary_lines())
    assert not report.violations, lines
    assert report.requested >= VMS // 2, lines
    assert report.unexplained == 0, (
        lines,
        [r for r in report.requests if r.accepted and not r.completed and not r.agent_block],
    )
    assert report.completed > 0 and m.by_creator["agent"] > 0, lines
    assert m.max_concurrent_per_vmi == 1, lines
    assert m.for_opted_out == 0 and m.for_not_live_migratable == 0 and m.for_restart_required == 0, lines
    assert m.by_creator["manual"] == 0 and m.by_creator["kubevirt"] == 0, lines
    assert m.max_concurrent <= cluster_cap and m.max_concurrent_running <= cluster_cap, lines
    assert m.max_running_per_node <= node_cap, lines
    assert m.unfinished == 0, lines
    # Per category, the outcome the embedded-server scenario gets (tests/simulator/test_simulate.py).
    for r in report.requests:
        if r.category in ("bridge-plug", "sriov-plug") and r.accepted:
            assert r.completed or r.agent_block == "retries-exhausted", (r, lines)
        if r.category == "opted-out":
            assert not r.completed and r.final_state == "opted-out", (r, lines)
        if r.category.startswith("not-"):
            assert not r.completed and r.final_state == "not-live-migratable", (r, lines)
    # Every migration is for a VMI of the scenario and carries KubeVirt's vmi-name label (added by the
    # simulated migration controller: the real server has no mutating webhook).
    for vmim in watcher.objects("virtualmachineinstancemigrations"):
        labels = vmim["metadata"].get("labels") or {}
        assert labels.get("kubevirt.io/vmi-name") == vmim["spec"]["vmiName"], vmim["metadata"]


async def test_default_scenario_on_the_real_apiserver(controlplane: ControlPlane) -> None:
    ns = f"e2e-real-{uuid.uuid4().hex[:6]}"
    report, watcher, _ = await run_scenario(controlplane, ns, controlplane.kubeconfig, seed=11)
    assert_invariants(report, watcher, caps(controlplane))
    print("\n".join(report.summary_lines()), f"relists {watcher.relists}, events {watcher.events_seen}")


# ------------------------------------------------------------------------------ item 5: the chart's RBAC

RELEASE_NAMESPACE = "hotplug-agent"


def forbidden_counts(metrics: HotplugMetrics) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "hotplug_agent_api_errors_total" and sample.labels.get("code") == "403":
                total += sample.value
    return total


@pytest.mark.tools
async def test_scenario_as_the_chart_rbac_user(controlplane: ControlPlane) -> None:
    """The chart (rendered by Helm, ``watchNamespaces`` = the scenario's namespace) applied for real; the
    agent runs as a client-certificate user carrying the chart ServiceAccount's identity, so it holds the
    chart's ClusterRole/Roles and nothing else. The scenario completes with the same invariants; the
    same user is refused (403) what the chart does not grant."""
    from tests.chart.helm import Helm, find_helm
    from tests.chart.test_controlplane import ensure_namespace, install

    helm = Helm(find_helm())
    ns = f"e2e-rbac-{uuid.uuid4().hex[:6]}"
    release = f"agent-{ns}"
    admin_create_namespace(controlplane, ns)
    ensure_namespace(controlplane, RELEASE_NAMESPACE)
    rendered = install(
        controlplane,
        helm,
        release,
        f"watchNamespaces={{{ns}}}",
        f"leaderElection.leaseName={release}",
    )
    kinds = {o["kind"] for o in rendered.objects}
    assert {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} <= kinds, kinds
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    user = controlplane.make_user(
        f"system:serviceaccount:{RELEASE_NAMESPACE}:{sa}",
        ["system:serviceaccounts", f"system:serviceaccounts:{RELEASE_NAMESPACE}"],
    )

    refused: list[tuple[str, int]] = []

    async def probe_as_user() -> None:
        """With the agent running: what the chart grants works, what it does not is 403."""
        client = await new_client_from_config(config_file=str(user))
        try:
            custom, core = CustomObjectsApi(client), CoreV1Api(client)
            vms = await custom.list_namespaced_custom_object(G, V, ns, "virtualmachines")
            assert vms["items"], "the chart's Role lets the agent list the VMs"
            name = vms["items"][0]["metadata"]["name"]
            attempts: dict[str, Callable[[], Awaitable[Any]]] = {
                "list secrets": lambda: core.list_namespaced_secret(ns),
                "get secret": lambda: core.read_namespaced_secret("anything", ns),
                "list secrets (release namespace)": lambda: core.list_namespaced_secret(RELEASE_NAMESPACE),
                "delete VM": lambda: custom.delete_namespaced_custom_object(
                    G, V, ns, "virtualmachines", name
                ),
                "delete VMs (collection)": lambda: custom.delete_collection_namespaced_custom_object(
                    G, V, ns, "virtualmachines"
                ),
                "list VMs outside watchNamespaces": lambda: custom.list_namespaced_custom_object(
                    G, V, "default", "virtualmachines"
                ),
            }
            for what, call in attempts.items():
                with pytest.raises(ApiException) as info:
                    await call()
                refused.append((what, info.value.status))
        finally:
            await client.close()

    report, watcher, metrics = await run_scenario(
        controlplane,
        ns,
        user,
        seed=23,
        agent_overrides={
            "leader_elect": True,
            "lease_name": release,
            "lease_namespace": RELEASE_NAMESPACE,
            "identity": f"{release}-0",
        },
        on_agent_running=probe_as_user,
    )
    assert_invariants(report, watcher, caps(controlplane))
    print("\n".join(report.summary_lines()), refused)
    assert refused and all(status == 403 for _, status in refused), refused
    assert forbidden_counts(metrics) == 0
    lease = controlplane.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{RELEASE_NAMESPACE}/leases/{release}"
    )
    assert lease.status == 200, lease.body[:300]
    # The VM the user tried to delete is still there.
    vms = controlplane.request("GET", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines")
    assert len(vms.json()["items"]) == VMS


# ------------------------------------------------------------------------------ the judge itself


async def test_watch_recorder_survives_an_apiserver_restart(controlplane: ControlPlane) -> None:
    """After a kube-apiserver restart the watches get 410 and relist: objects already seen are not
    counted again (no second ADDED), what changed meanwhile is seen, and later events still arrive."""
    ns = f"e2e-watch-{uuid.uuid4().hex[:6]}"
    admin_create_namespace(controlplane, ns)
    base = f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstancemigrations"

    def vmim(name: str, vmi: str) -> dict[str, Any]:
        return {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"vmiName": vmi},
        }

    watcher = WatchRecorder(controlplane.kubeconfig, [ns])
    await watcher.start()
    try:
        stats = watcher.recorder.stats
        assert controlplane.request("POST", base, vmim("a", "vm-a")).status == 201
        await wait_until(lambda: stats.created == 1, "VMIM a seen", 30, watcher.check)
        # ~12 s, not the ~4 s of an idle restart: kube-apiserver waits for the open watches to end
        await asyncio.to_thread(controlplane.restart_apiserver)
        assert controlplane.request("DELETE", f"{base}/a").status == 200
        assert controlplane.request("POST", base, vmim("b", "vm-b")).status == 201
        await wait_until(
            lambda: stats.created == 2 and watcher.try_get(VMIMS_PLURAL, ns, "a") is None,
            "VMIM b seen, VMIM a gone",
            60,
            watcher.check,
        )
        assert watcher.relists >= 1
        assert watcher.recorder.in_flight == 1
        assert controlplane.request("POST", base, vmim("c", "vm-c")).status == 201
        await wait_until(lambda: stats.created == 3, "VMIM c seen after the relist", 30, watcher.check)
        assert not watcher.recorder.violations
    finally:
        await watcher.stop()
