"""A simulated KubeVirt cluster: the embedded API server plus KubeVirt's controllers and webhooks.

Why one assembler: tests, ``hotplug-agent cluster``/``simulate`` and the benchmarks all need the same
world — API server, KubeVirt CR, nodes, controllers talking to it over HTTP through kubernetes-asyncio,
admission as in-process hooks — started and stopped as a unit, with every controller task supervised
(a crashed controller fails the cluster loudly instead of going unnoticed).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from simulator.apiserver import ApiServer
from simulator.kubevirt.admission import KubeVirtAdmission
from simulator.kubevirt.config import Distribution, KubeVirtSimConfig
from simulator.kubevirt.dnc import DynamicNetworksController
from simulator.kubevirt.kube import Kube
from simulator.kubevirt.migration import MigrationController
from simulator.kubevirt.vm_controller import VMController
from simulator.kubevirt.vmi_controller import VMIController
from simulator.kubevirt.workload_updater import WorkloadUpdater
from simulator.kubevirt.world import World, vmi_from_vm

log = structlog.get_logger("simulator.cluster")

KUBEVIRT_NAMESPACE = "kubevirt"


@dataclass
class ClusterConfig:
    """Everything that shapes a simulated cluster. Durations are in simulated (wall-clock) seconds."""

    kubevirt_version: str = "v1.5.2"
    workload_update_methods: tuple[str, ...] = ()
    nodes: int = 4
    migration_mean_seconds: float = 2.0
    migration_distribution: Distribution = "lognormal"
    failure_rate: float = 0.0
    stuck_rate: float = 0.0
    dnc_enabled: bool = False
    dnc_delay_seconds: float = 0.3
    #: None = absent from the KubeVirt CR (KubeVirt's defaults 5 / 2 apply).
    parallel_migrations_per_cluster: int | None = None
    parallel_outbound_migrations_per_node: int | None = None
    seed: int = 0
    history_size: int = 100_000
    #: Scales KubeVirt's real-world periods (15 s MigrationRequired grace, 5 s workload updater).
    time_scale: float = 1.0
    token: str | None = None
    port: int = 0
    workers: int = 4
    finalized_migrations_kept: int = 5

    def kubevirt_config(self) -> KubeVirtSimConfig:
        return KubeVirtSimConfig(
            kubevirt_version=self.kubevirt_version,
            workload_update_methods=tuple(self.workload_update_methods),
            nodes=self.nodes,
            migration_mean_seconds=self.migration_mean_seconds,
            migration_distribution=self.migration_distribution,
            failure_rate=self.failure_rate,
            stuck_rate=self.stuck_rate,
            dnc_enabled=self.dnc_enabled,
            dnc_delay_seconds=self.dnc_delay_seconds,
            parallel_migrations_per_cluster=self.parallel_migrations_per_cluster,
            parallel_outbound_migrations_per_node=self.parallel_outbound_migrations_per_node,
            seed=self.seed,
            time_scale=self.time_scale,
            workers=self.workers,
            finalized_migrations_kept=self.finalized_migrations_kept,
        )


def node_names(n: int) -> list[str]:
    return [f"node-{i}" for i in range(1, n + 1)]


def kubevirt_cr(config: ClusterConfig) -> dict[str, Any]:
    migrations: dict[str, Any] = {}
    if config.parallel_migrations_per_cluster is not None:
        migrations["parallelMigrationsPerCluster"] = config.parallel_migrations_per_cluster
    if config.parallel_outbound_migrations_per_node is not None:
        migrations["parallelOutboundMigrationsPerNode"] = config.parallel_outbound_migrations_per_node
    spec: dict[str, Any] = {
        "configuration": {"migrations": migrations} if migrations else {},
        "workloadUpdateStrategy": (
            {"workloadUpdateMethods": list(config.workload_update_methods)}
            if config.workload_update_methods
            else {}
        ),
    }
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": KUBEVIRT_NAMESPACE},
        "spec": spec,
    }


class SimulatedCluster:
    """``await start()``; ``url``, ``kubeconfig_path``; ``await seed(vms)``; ``await stop()``."""

    def __init__(self, config: ClusterConfig | None = None, *, kubeconfig_path: Path | None = None) -> None:
        self.config = config or ClusterConfig()
        self.server = ApiServer(
            token=self.config.token, seed=self.config.seed, history_size=self.config.history_size
        )
        self.admission = KubeVirtAdmission()
        self.url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._kubeconfig_path = kubeconfig_path
        self._client: ApiClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self.world: World | None = None
        self.vm_controller: VMController | None = None
        self.vmi_controller: VMIController | None = None
        self.migration_controller: MigrationController | None = None
        self.workload_updater: WorkloadUpdater | None = None
        self.dnc: DynamicNetworksController | None = None
        self.nodes = node_names(self.config.nodes)

    @property
    def kubeconfig_path(self) -> Path:
        assert self._kubeconfig_path is not None, "start() first"
        return self._kubeconfig_path

    async def start(self) -> None:
        self.server.add_admission(self.admission)
        self.server.add_event_observer(self.admission.observe)
        self.url = await self.server.start(port=self.config.port)
        if self._kubeconfig_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hotplug-sim-")
            self._kubeconfig_path = Path(self._tmp.name) / "kubeconfig"
        self.server.write_kubeconfig(self._kubeconfig_path, token=self.config.token)
        await self._bootstrap()
        self._client = await new_client_from_config(config_file=str(self._kubeconfig_path))
        kube = Kube(self._client)
        world = World(self.config.kubevirt_config(), kube, self.nodes)
        self.world = world
        self.vm_controller = VMController(world)
        self.vmi_controller = VMIController(world)
        self.migration_controller = MigrationController(world)
        self.workload_updater = WorkloadUpdater(world)
        if self.config.dnc_enabled:
            self.dnc = DynamicNetworksController(world)
        started = asyncio.Event()
        self._runner = asyncio.create_task(self._run(world, started), name="simulated-kubevirt")
        self._runner.add_done_callback(_log_crash)
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait({waiter, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if self._runner in done:
            waiter.cancel()
            self._runner.result()  # raises the controller's crash
        log.info("simulated cluster started", url=self.url, kubevirt=self.config.kubevirt_version)

    async def _run(self, world: World, started: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            for inf in world.informers:
                tg.create_task(inf.run(), name=f"informer-{inf.plural}")
            for inf in world.informers:
                await inf.synced.wait()
            for ctrl in (self.vm_controller, self.vmi_controller, self.migration_controller, self.dnc):
                if ctrl is not None:
                    tg.create_task(ctrl.run(), name=ctrl.name)
            if self.workload_updater is not None:
                tg.create_task(self.workload_updater.run(), name="workload-updater")
            started.set()

    def check(self) -> None:
        """Raise if a controller crashed (the TaskGroup ended)."""
        if self._runner is not None and self._runner.done() and not self._runner.cancelled():
            self._runner.result()

    async def _bootstrap(self) -> None:
        """KubeVirt CR (Deployed, observed version), its namespace, and Ready nodes."""
        store = self.server.store
        if store.try_get("namespaces", None, KUBEVIRT_NAMESPACE) is None:
            await store.create(
                "namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUBEVIRT_NAMESPACE}},
            )
        for node in self.nodes:
            if store.try_get("nodes", None, node) is None:
                await store.create("nodes", _node(node))
                await store.update(
                    "nodes",
                    {**store.get("nodes", None, node), "status": _node_status()},
                    subresource="status",
                )
        if store.try_get("kubevirts", KUBEVIRT_NAMESPACE, "kubevirt") is None:
            await store.create("kubevirts", kubevirt_cr(self.config))
            obj = store.get("kubevirts", KUBEVIRT_NAMESPACE, "kubevirt")
            await store.update(
                "kubevirts",
                {
                    **obj,
                    "status": {
                        "phase": "Deployed",
                        "observedKubeVirtVersion": self.config.kubevirt_version,
                        "targetKubeVirtVersion": self.config.kubevirt_version,
                        "observedDeploymentID": "sim",
                        "targetDeploymentID": "sim",
                        "conditions": [],
                    },
                },
                subresource="status",
            )

    async def ensure_namespaces(self, namespaces: Sequence[str]) -> None:
        store = self.server.store
        for ns in namespaces:
            if store.try_get("namespaces", None, ns) is None:
                await store.create(
                    "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )

    async def seed(
        self,
        vms: int | Sequence[dict[str, Any]],
        *,
        mix: dict[str, float] | None = None,
        namespaces: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> list[dict[str, Any]]:
        """Create running VMs with their VMIs in-process (fast path for thousands of VMs).

        ``vms`` is either VM bodies or a count: then the scenario's VM mix (``simulator.scenario.DEFAULT_MIX``
        or ``mix``) over ``namespaces`` builds them, deterministic from ``seed`` (default: the config's).
        The VMIs are what the VM controller would create; the controllers then pick them up from their
        informers like pre-existing objects. Returns the VM bodies.
        """
        if isinstance(vms, int):
            from simulator.scenario import ScenarioConfig, build_plan

            scen = ScenarioConfig(
                vms=vms,
                seed=self.config.seed if seed is None else seed,
                kubevirt_version=self.config.kubevirt_version,
            )
            if mix is not None:
                scen.mix = dict(mix)
            if namespaces:
                scen.namespaces = tuple(namespaces)
            vms = [p.body for p in build_plan(scen)]
        store = self.server.store
        await self.ensure_namespaces(sorted({str(vm["metadata"]["namespace"]) for vm in vms}))
        version = self.config.kubevirt_version
        for vm in vms:
            created = await store.create("virtualmachines", vm)
            meta = created["metadata"]
            key = (str(meta["namespace"]), str(meta["name"]))
            node = self.nodes[_node_index(key, len(self.nodes))]
            vmi = vmi_from_vm(created, node, version)
            vmi_obj = await store.create("virtualmachineinstances", vmi, admission=False)
            ready = {
                "type": "Ready",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": vmi_obj["status"]["conditions"][0]["lastTransitionTime"],
            }
            lm = next(c for c in vmi_obj["status"]["conditions"] if c["type"] == "LiveMigratable")
            await store.update(
                "virtualmachines",
                {
                    **created,
                    "status": {
                        "printableStatus": "Running",
                        "ready": True,
                        "created": True,
                        "conditions": [ready, lm],
                    },
                },
                subresource="status",
            )
        return list(vms)

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        await self.server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> SimulatedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("simulated KubeVirt controller crashed", exc_info=task.exception())


def _node_index(key: tuple[str, str], n: int) -> int:
    import zlib

    return zlib.crc32("/".join(key).encode()) % max(1, n)


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubevirt.io/schedulable": "true"},
        },
    }


def _node_status() -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
    }
