"""All simulated KubeVirt controllers against any API server reachable through a kubeconfig.

Why separate from :mod:`simulator.cluster`: the controllers are plain API clients, so the same set runs
against the embedded server (``SimulatedCluster``) and against a real kube-apiserver with the KubeVirt
CRDs installed (there, without admission: webhooks are in-process hooks of the embedded server only).
Every task runs in one TaskGroup; :meth:`check` re-raises a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from agent.kubevirt import KUBEVIRTS
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.dnc import DynamicNetworksController
from simulator.kubevirt.evacuation import EvacuationController
from simulator.kubevirt.kube import MERGE_KW, Kube
from simulator.kubevirt.migration import MigrationController
from simulator.kubevirt.vm_controller import VMController
from simulator.kubevirt.vmi_controller import VMIController
from simulator.kubevirt.workload_updater import WorkloadUpdater
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt")

KUBEVIRT_NAMESPACE = "kubevirt"


def node_names(n: int) -> list[str]:
    return [f"node-{i}" for i in range(1, n + 1)]


def kubevirt_cr(config: KubeVirtSimConfig) -> dict[str, Any]:
    """The KubeVirt CR: only the limits that are set (absent → KubeVirt's defaults 5 / 2)."""
    migrations: dict[str, Any] = {}
    if config.parallel_migrations_per_cluster is not None:
        migrations["parallelMigrationsPerCluster"] = config.parallel_migrations_per_cluster
    if config.parallel_outbound_migrations_per_node is not None:
        migrations["parallelOutboundMigrationsPerNode"] = config.parallel_outbound_migrations_per_node
    methods = list(config.workload_update_methods)
    configuration: dict[str, Any] = {"vmRolloutStrategy": config.vm_rollout_strategy}
    if migrations:
        configuration["migrations"] = migrations
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": KUBEVIRT_NAMESPACE},
        "spec": {
            "configuration": configuration,
            "workloadUpdateStrategy": {"workloadUpdateMethods": methods} if methods else {},
        },
    }


def kubevirt_cr_status(version: str) -> dict[str, Any]:
    return {
        "phase": "Deployed",
        "observedKubeVirtVersion": version,
        "targetKubeVirtVersion": version,
        "observedDeploymentID": "sim",
        "targetDeploymentID": "sim",
        "conditions": [],
    }


def node_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubevirt.io/schedulable": "true"},
        },
    }


def node_status(resources: dict[str, int] | None = None) -> dict[str, Any]:
    """A Ready node's status with ``resources`` (SR-IOV VFs per device resource) allocatable."""
    extended = {name: str(count) for name, count in (resources or {}).items()}
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250", **extended},
    }


class KubeVirtControllers:
    """``await start()`` … ``check()`` … ``await stop()``; ``bootstrap()`` for an empty real cluster."""

    def __init__(self, config: KubeVirtSimConfig, kubeconfig_path: Path | str, nodes: list[str]) -> None:
        self.config = config
        self.kubeconfig_path = str(kubeconfig_path)
        self.nodes = nodes
        self._client: ApiClient | None = None
        self._runner: asyncio.Task[None] | None = None
        self.world: World | None = None
        self.vm_controller: VMController | None = None
        self.vmi_controller: VMIController | None = None
        self.migration_controller: MigrationController | None = None
        self.workload_updater: WorkloadUpdater | None = None
        self.dnc: DynamicNetworksController | None = None
        self.evacuation: EvacuationController | None = None

    async def _kube(self) -> Kube:
        if self._client is None:
            self._client = await new_client_from_config(config_file=self.kubeconfig_path)
        return Kube(self._client)

    async def bootstrap(self) -> None:
        """Create namespace ``kubevirt``, the KubeVirt CR (Deployed) and Ready nodes through the API."""
        kube = await self._kube()
        namespace: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUBEVIRT_NAMESPACE}}
        with contextlib.suppress(ApiException):  # 409: already there
            await kube.core.create_namespace(namespace)
        for node in self.nodes:
            body: Any = node_body(node)
            with contextlib.suppress(ApiException):
                await kube.core.create_node(body)
            status = {"status": node_status(self.config.sriov_resources)}
            await kube.core.patch_node_status(node, status, **MERGE_KW)
        if await kube.get(KUBEVIRTS, KUBEVIRT_NAMESPACE, "kubevirt") is None:
            await kube.create(KUBEVIRTS, KUBEVIRT_NAMESPACE, kubevirt_cr(self.config))
        await kube.merge_patch(
            KUBEVIRTS,
            KUBEVIRT_NAMESPACE,
            "kubevirt",
            {"status": kubevirt_cr_status(self.config.kubevirt_version)},
            status=True,
        )

    async def start(self) -> None:
        kube = await self._kube()
        world = World(self.config, kube, self.nodes)
        self.world = world
        self.vm_controller = VMController(world)
        self.vmi_controller = VMIController(world)
        self.migration_controller = MigrationController(world)
        self.workload_updater = WorkloadUpdater(world)
        self.evacuation = EvacuationController(world)
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

    async def _run(self, world: World, started: asyncio.Event) -> None:
        t0 = time.perf_counter()
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
            if self.evacuation is not None:
                tg.create_task(self.evacuation.run(), name="evacuation")
            log.debug("kubevirt controllers started", seconds=round(time.perf_counter() - t0, 3))
            started.set()

    def check(self) -> None:
        """Raise if a controller crashed (the TaskGroup ended)."""
        if self._runner is not None and self._runner.done() and not self._runner.cancelled():
            self._runner.result()

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("simulated KubeVirt controller crashed", exc_info=task.exception())
