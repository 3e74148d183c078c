"""What tests on the real-KubeVirt tier do as a user would: NADs, VMs, edits, migrations; the agent.

Everything goes through the real kube-apiserver (so through KubeVirt's real webhooks) with the
kubernetes-asyncio client, as an admin user.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from agent import app
from agent.config import AgentConfig, validate
from agent.kubevirt import GROUP, VERSION, VMIMS, VMIS, VMS
from metrics.definitions import HotplugMetrics
from simulator.cluster import ClusterConfig, SimulatedCluster
from simulator.kubevirt.config import SRIOV_RESOURCE, KubeVirtSimConfig
from simulator.kubevirt.kube import JSON_PATCH_KW, MERGE_KW, Informer, Kube, Obj
from simulator.kubevirt.pods import NAD_GROUP, NAD_VERSION, NADS
from simulator.manifests import vm_manifest
from simulator.real.kubevirt import HANDLER_SA, NAMESPACE, KubeVirtSettings
from simulator.real.node import NodeSide, node_specs
from tests.kubevirt.cluster import Tier

G, V = GROUP, VERSION
NODES = 3
VFS_PER_NODE = 4
#: Agent settings for short runs (the settle window and bridge grace shortened; real KubeVirt is not).
AGENT_SETTINGS: dict[str, Any] = {
    "mode": "auto",
    "settle_seconds": 0.2,
    "bridge_grace_seconds": 0.5,
    "backoff_initial_seconds": 0.5,
    "backoff_max_seconds": 1.0,
    "verify_timeout_seconds": 20.0,
    "migration_deadline_seconds": 120.0,
    "shutdown_grace_seconds": 0.0,
    "log_level": "warning",
    "creates_per_second": 50.0,
    "create_burst": 20,
    "leader_elect": False,
}


def timing(**overrides: Any) -> KubeVirtSimConfig:
    """Node-side timing for tests: migrations of ~1 s, no failures unless asked."""
    base: dict[str, Any] = {"migration_mean_seconds": 1.0, "migration_distribution": "fixed", "seed": 7}
    return KubeVirtSimConfig(**{**base, **overrides})


async def start_node_side(tier: Tier, **timing_overrides: Any) -> NodeSide:
    side = NodeSide(
        tier.cluster.kubeconfig,
        tier.kubevirt.kubeconfigs[HANDLER_SA],
        node_specs(NODES, {SRIOV_RESOURCE: VFS_PER_NODE}),
        timing(**timing_overrides),
        tier.version,
    )
    await side.start()
    return side


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what} (last: {last!r})")


def sample(metrics: HotplugMetrics, name: str, **labels: str) -> float:
    """One sample of the agent's registry (0 when absent)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def info_sources(vmi: dict[str, Any] | None, iface: str) -> set[str]:
    for entry in ((vmi or {}).get("status") or {}).get("interfaces") or []:
        if entry.get("name") == iface:
            return {s.strip() for s in str(entry.get("infoSource", "")).split(",") if s.strip()}
    return set()


@dataclass
class Backend:
    """A KubeVirt to test against: ``real`` (a tier with its node side) or ``simulated`` (the simulated
    cluster), reached through a kubeconfig either way."""

    name: str
    version: str
    kubeconfig: Path
    #: the node-side timing knobs (failure and stuck rates) of this backend
    timing: KubeVirtSimConfig
    tier: Tier | None = None
    side: NodeSide | None = None

    @property
    def virtctl(self) -> Path | None:
        return self.tier.virtctl() if self.tier is not None else None


@contextlib.asynccontextmanager
async def real_backend(tier: Tier, **timing_overrides: Any) -> AsyncIterator[Backend]:
    side = await start_node_side(tier, **timing_overrides)
    try:
        yield Backend("real", tier.version, tier.cluster.kubeconfig, side.timing, tier, side)
    finally:
        await side.stop()


@contextlib.asynccontextmanager
async def simulated_backend(version: str, workdir: Path, **config: Any) -> AsyncIterator[Backend]:
    """The simulated cluster with the real tier's node timing (``timing()``): same durations, no failures."""
    t = timing()
    cfg = ClusterConfig(
        kubevirt_version=version, nodes=NODES, migration_mean_seconds=t.migration_mean_seconds,
        migration_distribution=t.migration_distribution, seed=t.seed, **config,
    )  # fmt: skip
    async with SimulatedCluster(cfg, kubeconfig_path=workdir / "sim.kubeconfig") as cluster:
        assert cluster.world is not None
        yield Backend("simulated", version, cluster.kubeconfig_path, cluster.world.config)


@dataclass
class History:
    """Watch events ``(type, object)`` in arrival order (:meth:`Env.history`)."""

    events: list[tuple[str, Obj]] = field(default_factory=list)

    def versions(self, name: str) -> list[Obj]:
        """Every version of object ``name`` seen, oldest first (its DELETED event's last one included)."""
        return [obj for _, obj in self.events if obj["metadata"]["name"] == name]

    def last(self, name: str) -> Obj | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def phase(self, name: str) -> str:
        """The last ``status.phase`` seen of object ``name`` ("" if none)."""
        return str(((self.last(name) or {}).get("status") or {}).get("phase", ""))


@dataclass
class Env:
    """One test's world: a backend, a fresh namespace and an admin client."""

    backend: Backend
    ns: str
    client: ApiClient
    custom: CustomObjectsApi
    vm_names: list[str] = field(default_factory=list)

    @property
    def tier(self) -> Tier:
        assert self.backend.tier is not None, "a real-tier test"
        return self.backend.tier

    @property
    def side(self) -> NodeSide:
        assert self.backend.side is not None, "a real-tier test"
        return self.backend.side

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, backend: Backend) -> AsyncIterator[Env]:
        ns = f"t-{uuid.uuid4().hex[:8]}"
        client = await new_client_from_config(config_file=str(backend.kubeconfig))
        body: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        await CoreV1Api(client).create_namespace(body)
        env = cls(backend, ns, client, CustomObjectsApi(client))
        try:
            yield env
        finally:
            await env.delete_vms()
            await client.close()

    def client_core(self) -> CoreV1Api:
        return CoreV1Api(self.client)

    # -- objects ----------------------------------------------------------------------------------

    async def create_nad(self, name: str, *, sriov: bool = False) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": self.ns}
        if sriov:
            meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": SRIOV_RESOURCE}
        cni = {"cniVersion": "0.3.1", "name": name, "type": "sriov" if sriov else "bridge"}
        body = {"apiVersion": f"{NAD_GROUP}/{NAD_VERSION}", "kind": "NetworkAttachmentDefinition",
                "metadata": meta, "spec": {"config": json.dumps(cni)}}  # fmt: skip
        await self.custom.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, self.ns, NADS, body)

    async def create_vm(
        self, name: str, secondary: Sequence[tuple[str, str]] = (), **kwargs: Any
    ) -> dict[str, Any]:
        """Create a running VM (its NADs first) and wait until virt-handler reports its VMI Running."""
        for net, binding in secondary:
            with contextlib.suppress(ApiException):
                await self.create_nad(net, sriov=binding == "sriov")
        body = vm_manifest(self.ns, name, list(secondary), **kwargs)
        await self.custom.create_namespaced_custom_object(G, V, self.ns, VMS, body)
        self.vm_names.append(name)
        return await self.wait_vmi_running(name)

    async def wait_vmi_running(self, name: str, seconds: float = 60.0) -> dict[str, Any]:
        async def running() -> dict[str, Any] | None:
            vmi = await self.get(VMIS, name)
            ok = vmi is not None and (vmi.get("status") or {}).get("phase") == "Running"
            return vmi if ok and condition(vmi, "LiveMigratable") is not None else None

        vmi: dict[str, Any] = await wait_for(running, f"VMI {self.ns}/{name} Running", seconds)
        return vmi

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(G, V, self.ns, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def list(self, plural: str) -> list[dict[str, Any]]:
        out = await self.custom.list_namespaced_custom_object(G, V, self.ns, plural)
        return list(out.get("items") or [])

    async def patch_vm(self, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
            G, V, self.ns, VMS, name, ops, **JSON_PATCH_KW
        )
        return out

    async def merge_vm(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
            G, V, self.ns, VMS, name, patch, **MERGE_KW
        )
        return out

    async def plug(self, vm: str, iface: str, binding: str = "bridge") -> None:
        """Hot plug the way the docs say: add an interface and its Multus network to the VM template."""
        await self.plug_all(vm, [(iface, binding)])

    async def plug_all(self, vm: str, plugs: Sequence[tuple[str, str]]) -> None:
        """Hot plug several interfaces ``(name, binding)`` in one edit of the VM template, in that order."""
        ops: list[dict[str, Any]] = []
        for iface, binding in plugs:
            with contextlib.suppress(ApiException):
                await self.create_nad(iface, sriov=binding == "sriov")
            ops.append({"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/-",
                        "value": {"name": iface, binding: {}}})  # fmt: skip
        for iface, _ in plugs:
            network = {"name": iface, "multus": {"networkName": f"{self.ns}/{iface}"}}
            ops.append({"op": "add", "path": "/spec/template/spec/networks/-", "value": network})
        await self.patch_vm(vm, ops)

    async def unplug(self, vm: str, iface: str) -> None:
        """Hot unplug: set the interface's ``state: absent`` in the VM template."""
        current = await self.get(VMS, vm)
        assert current is not None
        ifaces = current["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
        index = next(i for i, x in enumerate(ifaces) if x["name"] == iface)
        await self.patch_vm(
            vm, [{"op": "add", "path": f"/spec/template/spec/domain/devices/interfaces/{index}/state",
                  "value": "absent"}]
        )  # fmt: skip

    async def migrate(self, vmi: str, prefix: str = "test-") -> dict[str, Any]:
        meta = {"generateName": f"{prefix}{vmi}-", "namespace": self.ns}
        body = {"apiVersion": f"{G}/{V}", "kind": "VirtualMachineInstanceMigration", "metadata": meta,
                "spec": {"vmiName": vmi}}  # fmt: skip
        out: dict[str, Any] = await self.custom.create_namespaced_custom_object(G, V, self.ns, VMIMS, body)
        return out

    async def wait_vmim_final(self, name: str, seconds: float = 60.0) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            vmim = await self.get(VMIMS, name)
            phase = ((vmim or {}).get("status") or {}).get("phase")
            return vmim if phase in ("Succeeded", "Failed") else None

        vmim: dict[str, Any] = await wait_for(final, f"VMIM {self.ns}/{name} final", seconds)
        return vmim

    async def wait_vmim_phase(self, name: str, phase: str, seconds: float = 60.0) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            vmim = await self.get(VMIMS, name)
            return vmim if ((vmim or {}).get("status") or {}).get("phase") == phase else None

        vmim: dict[str, Any] = await wait_for(reached, f"VMIM {self.ns}/{name} {phase}", seconds)
        return vmim

    async def delete_vmim(self, name: str) -> None:
        """Cancel a migration the documented way: delete its VMIM."""
        await self.custom.delete_namespaced_custom_object(G, V, self.ns, VMIMS, name)

    async def wait_gone(self, plural: str, name: str, seconds: float = 60.0) -> None:
        async def gone() -> bool:
            return await self.get(plural, name) is None

        await wait_for(gone, f"{plural} {self.ns}/{name} deleted", seconds)

    async def configure_kubevirt(self, settings: KubeVirtSettings) -> None:
        """Replace the KubeVirt CR's spec (both KubeVirts read it live: virt-controller's cluster config
        and workload updater, the simulator's controllers on every decision)."""
        path = (G, V, NAMESPACE, "kubevirts", "kubevirt")
        current = await self.custom.get_namespaced_custom_object(*path)
        current["spec"] = settings.spec()
        await self.custom.replace_namespaced_custom_object(*path, current)

    @contextlib.asynccontextmanager
    async def history(self, plural: str) -> AsyncIterator[History]:
        """Every version of this namespace's ``plural`` objects the watch delivers while the block runs."""
        informer = Informer(Kube(self.client), plural, namespace=self.ns)
        recorded = History()

        async def record(type_: str, obj: Obj, old: Obj | None) -> None:
            recorded.events.append((type_, copy.deepcopy(obj)))

        informer.add_handler(record)
        task = asyncio.create_task(informer.run())
        try:
            await informer.synced.wait()
            yield recorded
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def delete_vms(self) -> None:
        for name in self.vm_names:
            with contextlib.suppress(ApiException):
                await self.custom.delete_namespaced_custom_object(G, V, self.ns, VMS, name)

    # -- the agent --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def agent(self, **overrides: Any) -> AsyncIterator[HotplugMetrics]:
        """The real agent (``agent.app.run``) on this namespace, until the block ends."""
        config = AgentConfig(
            kubeconfig=str(self.backend.kubeconfig),
            namespaces=(self.ns,),
            listen_address="127.0.0.1:0",
            identity=f"agent-{self.ns}",
            **{**AGENT_SETTINGS, **overrides},
        )
        validate(config)
        metrics = HotplugMetrics()
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(config, stop, metrics=metrics, install_signals=False))

        async def synced() -> bool:
            if task.done():
                raise AssertionError(f"the agent exited: {task.result()!r}")
            return metrics.registry.get_sample_value("hotplug_agent_cache_synced") == 1.0

        try:
            await wait_for(synced, "the agent's caches synced", 30)
            yield metrics
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 30)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
