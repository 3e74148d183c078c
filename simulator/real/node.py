"""The node side of the real-KubeVirt tier: what the kubelet, the scheduler, Multus and virt-handler do.

Real virt-controller and virt-api run next to this; they cannot tell it from real nodes for the parts
they read. Everything here is emulated because it cannot run on this machine (no container runtime, no
kubelet, no QEMU), and nothing more is emulated:

* **Nodes**: Ready, with the labels virt-handler's node labeller sets (``kubevirt.io/schedulable``,
  ``machine-type.node.kubevirt.io/q35``, the host CPU model), allocatable KubeVirt devices and extended
  resources (SR-IOV VFs), and virt-handler's heartbeat annotation.
* **Scheduler**: binds each ``virt-launcher`` pod to a node that fits: Ready and not cordoned, node
  selector and required node affinity, required pod anti-affinity (a migration's target pod avoids the
  source's node), extended resources still free. An unschedulable pod stays Pending with
  ``PodScheduled=False``/``Unschedulable``, as the real scheduler leaves it.
* **Kubelet**: a bound pod goes Running after a start delay with a pod IP, ``Ready``, and container
  statuses whose ``imageID`` has a digest (virt-controller refuses to migrate without one); a pod being
  deleted is removed (the kubelet's final delete); a migration's source pod ends ``Succeeded``.
* **Multus**: a running pod gets ``k8s.v1.cni.cncf.io/network-status`` for the networks its
  ``k8s.v1.cni.cncf.io/networks`` annotation asks for (virt-controller turns that into the VMI's
  ``multus-status`` interface entries).
* **virt-handler**, with its own identity (``system:serviceaccount:kubevirt:kubevirt-handler``): starts
  the domain of a VMI virt-controller scheduled on its node (:func:`simulator.kubevirt.node.boot_status`),
  keeps the VMI's interfaces, ``LiveMigratable`` and ``Synchronized`` in line with the domain and hot
  plugs NICs into it within its free PCI ports (:func:`simulator.kubevirt.node.handler_sync` and
  :func:`~simulator.kubevirt.node.handler_status`, the same code the simulated cluster runs), and plays
  both ends of a live migration on ``status.migrationState``: the target's address and ports, the source's
  start, the end (or failure, or abort), the move of ``status.nodeName``; timing and fate from
  :func:`simulator.kubevirt.node.plan_migration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from agent.kubevirt import (
    COND_MIGRATION_REQUIRED,
    INFO_SOURCE_MULTUS_STATUS,
    LABEL_APP,
    LABEL_CREATED_BY,
    LABEL_NODE_NAME,
    LAUNCHER_APP,
    PHASE_RUNNING,
    PHASE_SCHEDULED,
    VMIS,
)
from simulator.kubevirt import node as node_side
from simulator.kubevirt import rules, status
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.kube import MERGE_KW, NODES, PODS, Controller, Informer, Key, Kube, Obj, key_of
from simulator.kubevirt.pci import Domain
from simulator.kubevirt.scheduling import choose_node, labels_of, terminated

log = structlog.get_logger("simulator.real.node")

LAUNCHER_SELECTOR: Final = f"{LABEL_APP}={LAUNCHER_APP}"
#: The CPU model every stand-in node reports (any name works; all nodes share it, so any can be a target).
HOST_CPU_MODEL: Final = "Skylake-Client-IBRS"
NETWORKS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS_ANNOTATION: Final = "k8s.v1.cni.cncf.io/network-status"
HEARTBEAT_ANNOTATION: Final = "kubevirt.io/heartbeat"
HEARTBEAT_SECONDS: Final = 30.0
STRATEGIC_KW: dict[str, Any] = {"_content_type": "application/strategic-merge-patch+json"}
#: What a node offers KubeVirt's launcher pods (virt-handler's device plugins).
KUBEVIRT_DEVICES: Final = {"devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k",
                           "devices.kubevirt.io/vhost-net": "1k"}  # fmt: skip


_ts = status.rfc3339_seconds


@dataclass(frozen=True)
class NodeSpec:
    """One emulated node. ``address`` is only ever written into status fields (never contacted);
    ``devices``: extended resources, e.g. ``{"intel.com/sriov_net": 4}`` SR-IOV VFs."""

    name: str
    address: str
    devices: Mapping[str, int] = field(default_factory=dict)


def node_specs(count: int, devices: Mapping[str, int] | None = None) -> list[NodeSpec]:
    """``node01`` … with addresses from TEST-NET-1 (192.0.2.0/24, reserved for documentation)."""
    return [NodeSpec(f"node{i:02d}", f"192.0.2.{i}", dict(devices or {})) for i in range(1, count + 1)]


def node_object(spec: NodeSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": {
                "kubernetes.io/hostname": spec.name,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubevirt.io/schedulable": "true",
                "machine-type.node.kubevirt.io/q35": "true",
                # virt-handler's node labeller: the host CPU model. virt-controller v1.5 refuses to render
                # a migration target pod of a host-model VMI without it ("node does not contain label
                # host-model-cpu.node.kubevirt.io/"), and selects target nodes by the migration label.
                f"host-model-cpu.node.kubevirt.io/{HOST_CPU_MODEL}": "true",
                f"cpu-model-migration.node.kubevirt.io/{HOST_CPU_MODEL}": "true",
                f"cpu-model.node.kubevirt.io/{HOST_CPU_MODEL}": "true",
            },
        },
    }


def node_status(spec: NodeSpec) -> Obj:
    allocatable = {"cpu": "64", "memory": "256Gi", "pods": "250", **KUBEVIRT_DEVICES}
    allocatable.update({k: str(v) for k, v in spec.devices.items()})
    return {
        "capacity": dict(allocatable),
        "allocatable": allocatable,
        "addresses": [
            {"type": "InternalIP", "address": spec.address},
            {"type": "Hostname", "address": spec.name},
        ],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.34.4",
                     "containerRuntimeVersion": "none://node-stand-in", "kernelVersion": "", "osImage": "",
                     "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""},
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Pod status as the kubelet and Multus write it (pure)
# ------------------------------------------------------------------------------------------------


def _digest(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()


def pod_ip(namespace: str, name: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return f"10.{128 + digest[0] % 64}.{digest[1]}.{max(digest[2], 2)}"


def running_pod_status(pod: Mapping[str, Any], now: float) -> Obj:
    """Phase Running, Ready, an IP, and a started/ready status with a digest per container."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ts = _ts(now)
    ip = pod_ip(str(meta.get("namespace", "")), str(meta.get("name", "")))

    def container_status(c: Mapping[str, Any], *, init: bool) -> Obj:
        image = str(c.get("image", ""))
        base = image.split("@", maxsplit=1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        state: Obj = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts, "finishedAt": ts}}
        if not init:
            state = {"running": {"startedAt": ts}}
        return {
            "name": c.get("name"), "image": image, "imageID": f"{base}@sha256:{_digest(image)}",
            "containerID": f"containerd://{_digest(str(meta.get('uid', '')) + str(c.get('name')))}",
            "ready": not init, "started": not init, "restartCount": 0, "state": state,
        }  # fmt: skip

    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": ts,
        "qosClass": "Burstable",
        "initContainerStatuses": [container_status(c, init=True) for c in spec.get("initContainers") or []],
        "containerStatuses": [container_status(c, init=False) for c in spec.get("containers") or []],
    }


def network_status(pod: Mapping[str, Any]) -> list[Obj]:
    """Multus's ``network-status`` for what the pod's ``networks`` annotation asks: the cluster network
    on ``eth0`` (default) and each requested network on its requested interface."""
    meta = pod.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    out: list[Obj] = [{"name": "k8s-pod-network", "interface": "eth0", "ips": [pod_ip(ns, name)],
                       "mac": status.mac_for(ns, name, "eth0"), "default": True, "dns": {}}]  # fmt: skip
    raw = ((meta.get("annotations") or {}).get(NETWORKS_ANNOTATION)) or "[]"
    try:
        requests = json.loads(raw)
    except ValueError:
        requests = []
    for req in requests if isinstance(requests, list) else []:
        if not isinstance(req, dict):
            continue
        nad = f"{req.get('namespace') or ns}/{req.get('name')}"
        iface = str(req.get("interface") or "")
        out.append({"name": nad, "interface": iface, "mac": status.mac_for(ns, name, iface), "dns": {}})
    return out


# ------------------------------------------------------------------------------------------------
# The stand-in
# ------------------------------------------------------------------------------------------------


@dataclass
class _Migration:
    uid: str
    plan: node_side.MigrationPlan
    source_pod: str
    target_pod: str


class NodeSide:
    """``await start()`` … ``check()`` … ``await stop()``.

    ``admin_kubeconfig`` acts for the kubelet, scheduler and Multus; ``handler_kubeconfig`` is
    virt-handler's identity. ``timing`` gives the migration durations, failure and stuck rates and the
    pod start delay (``pod_start_seconds``); ``version`` the KubeVirt release (PCI topology).
    """

    def __init__(
        self,
        admin_kubeconfig: Path,
        handler_kubeconfig: Path,
        nodes: list[NodeSpec],
        timing: KubeVirtSimConfig,
        version: str,
        *,
        pod_start_seconds: float = 0.2,
    ) -> None:
        self.admin_kubeconfig = admin_kubeconfig
        self.handler_kubeconfig = handler_kubeconfig
        self.nodes = nodes
        self.timing = timing
        self.version = version
        self.pod_start_seconds = pod_start_seconds
        self.rng = random.Random(timing.seed)
        self._clients: list[ApiClient] = []
        self._runner: asyncio.Task[None] | None = None
        self.domains: dict[str, Domain] = {}  # VMI uid → domain
        self.migrations: dict[str, _Migration] = {}  # migration uid → plan
        self.admin: Kube | None = None
        self.handler: Kube | None = None

    async def _kube(self, path: Path) -> Kube:
        client = await new_client_from_config(config_file=str(path))
        self._clients.append(client)
        return Kube(client)

    async def start(self) -> None:
        self.admin = await self._kube(self.admin_kubeconfig)
        self.handler = await self._kube(self.handler_kubeconfig)
        for spec in self.nodes:
            body: Any = node_object(spec)
            with contextlib.suppress(ApiException):  # already there
                await self.admin.core.create_node(body)
            await self.admin.core.patch_node_status(spec.name, {"status": node_status(spec)}, **MERGE_KW)
        await self._heartbeat()
        self.pods = Informer(self.admin, PODS, label_selector=LAUNCHER_SELECTOR)
        self.node_objects = Informer(self.admin, NODES)
        self.vmis = Informer(self.admin, VMIS)
        self.kubelet = _Kubelet(self)
        self.virt_handler = _VirtHandler(self)
        started = asyncio.Event()
        self._runner = asyncio.create_task(self._run(started), name="node-side")
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait({waiter, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if self._runner in done:
            waiter.cancel()
            self._runner.result()

    async def _run(self, started: asyncio.Event) -> None:
        informers = (self.pods, self.node_objects, self.vmis)
        async with asyncio.TaskGroup() as tg:
            for inf in informers:
                tg.create_task(inf.run(), name=f"node-side-informer-{inf.plural}")
            for inf in informers:
                await inf.synced.wait()
            tg.create_task(self.kubelet.run(), name="node-side-kubelet")
            tg.create_task(self.virt_handler.run(), name="node-side-virt-handler")
            tg.create_task(self._heartbeats(), name="node-side-heartbeats")
            started.set()

    async def _heartbeat(self) -> None:
        assert self.handler is not None
        stamp = _ts(time.time())
        for spec in self.nodes:
            patch = {"metadata": {"annotations": {HEARTBEAT_ANNOTATION: stamp}}}
            await self.handler.core.patch_node(spec.name, patch, **MERGE_KW)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(ApiException, OSError):
                await self._heartbeat()

    def check(self) -> None:
        if self._runner is not None and self._runner.done() and not self._runner.cancelled():
            self._runner.result()

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None
        for client in self._clients:
            await client.close()
        self._clients.clear()

    # -- lookups ----------------------------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> Obj | None:
        return self.pods.get((namespace, name))

    def launcher_pods_of(self, vmi: Obj) -> list[Obj]:
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        return [p for p in self.pods.cache.values() if labels_of(p).get(LABEL_CREATED_BY) == uid]

    def vmi_of_pod(self, pod: Obj) -> Key:
        meta = pod.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachineInstance":
                return (str(meta.get("namespace", "")), str(ref.get("name", "")))
        return (str(meta.get("namespace", "")), str(labels_of(pod).get("vm.kubevirt.io/name", "")))


class _Kubelet(Controller):
    """Scheduler, kubelet and Multus for virt-launcher pods (admin identity)."""

    name = "node-side-kubelet"

    def __init__(self, side: NodeSide) -> None:
        super().__init__(workers=2)
        self.side = side
        self.bound_at: dict[str, float] = {}  # pod uid → when bound
        side.pods.add_handler(self._on_pod)
        side.node_objects.add_handler(self._on_node)

    async def _on_pod(self, type_: str, obj: Obj, old: Obj | None) -> None:
        if type_ != "DELETED":
            await self.enqueue(key_of(obj))
        await self.side.virt_handler.enqueue(self.side.vmi_of_pod(obj))

    async def _on_node(self, type_: str, obj: Obj, old: Obj | None) -> None:
        # a freed or uncordoned node may fit pods that were unschedulable
        for key, pod in list(self.side.pods.cache.items()):
            if not (pod.get("spec") or {}).get("nodeName"):
                await self.enqueue(key)

    async def sync(self, key: Key) -> None:
        side = self.side
        assert side.admin is not None
        pod = side.pods.get(key)
        if pod is None:
            return
        ns, name = key
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        st = pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            # the kubelet's last word: the containers are gone, the pod object goes
            with contextlib.suppress(ApiException):
                await side.admin.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            return
        if not spec.get("nodeName"):
            await self._schedule(pod)
            return
        if st.get("phase") in ("Running", "Succeeded", "Failed"):
            return
        uid = str(meta.get("uid", ""))
        bound = self.bound_at.setdefault(uid, time.time())
        wait = bound + self.side.pod_start_seconds - time.time()
        if wait > 0:
            self.queue.add_after(key, wait)
            return
        annotations = {NETWORK_STATUS_ANNOTATION: json.dumps(network_status(pod))}
        await side.admin.core.patch_namespaced_pod(
            name, ns, {"metadata": {"annotations": annotations}}, **MERGE_KW
        )
        await side.admin.core.patch_namespaced_pod_status(
            name, ns, {"status": running_pod_status(pod, time.time())}, **STRATEGIC_KW
        )

    async def _schedule(self, pod: Obj) -> None:
        side = self.side
        assert side.admin is not None
        ns, name = key_of(pod)
        target = choose_node(pod, side.node_objects.cache.values(), side.pods.cache.values())
        if target is None:
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": f"0/{len(side.node_objects.cache)} nodes are available",
                    "lastProbeTime": None, "lastTransitionTime": _ts(time.time())}  # fmt: skip
            with contextlib.suppress(ApiException):
                await side.admin.core.patch_namespaced_pod_status(
                    name, ns, {"status": {"conditions": [cond]}}, **STRATEGIC_KW
                )
            return
        body: Any = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": target}}  # fmt: skip
        try:
            # the answer is a Status, which the typed client cannot read as a Binding: take it raw
            await side.admin.core.create_namespaced_pod_binding(name, ns, body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or bound already
                raise
        # the pod watch brings the bound pod back; its start delay runs from now
        self.bound_at[str((pod.get("metadata") or {}).get("uid", ""))] = time.time()

    async def finish_source_pod(self, namespace: str, name: str) -> None:
        """The source domain is gone after a migration: the launcher's compute container exits."""
        assert self.side.admin is not None
        pod = self.side.pod(namespace, name)
        if pod is None or terminated(pod):
            return
        st = copy.deepcopy(pod.get("status") or {})
        ts = _ts(time.time())
        for c in st.get("containerStatuses") or []:
            started = ((c.get("state") or {}).get("running") or {}).get("startedAt", ts)
            c["state"] = {
                "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": ts}
            }
            c["ready"] = False
            c["started"] = False
        st["phase"] = "Succeeded"
        st["conditions"] = [
            {**c, "status": "False", "lastTransitionTime": ts}
            if c.get("type") in ("Ready", "ContainersReady")
            else c
            for c in st.get("conditions") or []
        ]
        with contextlib.suppress(ApiException):
            await self.side.admin.core.patch_namespaced_pod_status(
                name, namespace, {"status": st}, **MERGE_KW
            )


#: virt-launcher's failure texts (HEAD:pkg/virt-launcher/virtwrap/live-migration-source.go).
ABORTED_REASON: Final = "Live migration aborted "
FAILED_REASON: Final = "Live migration failed: simulated node-side failure"
#: The target's migration proxy ports as virt-handler advertises them (listener → libvirt port).
TARGET_PORTS: Final = {"38247": 0, "40331": 49152, "43785": 49153}


class _VirtHandler(Controller):
    """virt-handler on every emulated node, keyed by VMI (its own identity for every VMI write)."""

    name = "node-side-virt-handler"

    def __init__(self, side: NodeSide) -> None:
        super().__init__(workers=4)
        self.side = side
        self.node_names = {n.name for n in side.nodes}
        self.address = {n.name: n.address for n in side.nodes}
        self._sync_failed_reported: set[str] = set()
        side.vmis.add_handler(self._on_vmi)

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        if type_ == "DELETED":
            self.side.domains.pop(str((obj.get("metadata") or {}).get("uid", "")), None)
            return
        await self.enqueue(key_of(obj))

    def domain(self, vmi: Obj) -> Domain:
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        dom = self.side.domains.get(uid)
        if dom is None:
            dom = self.side.domains[uid] = node_side.adopt_domain(vmi, self.side.version)
        return dom

    async def _write(self, key: Key, mutate: Any) -> Obj | None:
        """Read-modify-write of the VMI as virt-handler (a full update: the VMI has no status
        subresource); 409 → re-read and retry."""
        kube = self.side.handler
        assert kube is not None
        for _ in range(8):
            vmi = self.side.vmis.get(key) or await kube.get(VMIS, *key)
            if vmi is None:
                return None
            body = copy.deepcopy(vmi)
            if mutate(body) is False:
                return vmi
            try:
                out = await kube.replace(VMIS, body)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
                fresh = await kube.get(VMIS, *key)
                if fresh is None:
                    return None
                self.side.vmis.write_through(fresh)
                continue
            self.side.vmis.write_through(out)
            return out
        self.queue.add_after(key, 0.1)
        return None

    async def sync(self, key: Key) -> None:
        vmi = self.side.vmis.get(key)
        if vmi is None:
            return
        st = vmi.get("status") or {}
        node = str(st.get("nodeName") or "")
        if node not in self.node_names:
            return
        phase = str(st.get("phase", ""))
        now = time.time()
        if (vmi.get("metadata") or {}).get("deletionTimestamp"):
            if phase in (PHASE_SCHEDULED, PHASE_RUNNING):
                await self._shut_down(key)
            return
        if phase == PHASE_SCHEDULED:
            await self._boot(key, node, now)
            return
        if phase != PHASE_RUNNING:
            return
        ms = st.get("migrationState") or {}
        if ms.get("migrationUid") and not ms.get("completed") and not ms.get("failed"):
            await self._migrate(key, vmi, ms, now)
            return
        await self._sync_domain(key, vmi, now)

    async def _shut_down(self, key: Key) -> None:
        def mutate(body: Obj) -> None:
            body["status"]["phase"] = "Succeeded"

        await self._write(key, mutate)

    async def _boot(self, key: Key, node: str, now: float) -> None:
        vmi = self.side.vmis.get(key)
        assert vmi is not None
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        domain = self.side.domains[uid] = node_side.new_domain(vmi, self.side.version)

        def mutate(body: Obj) -> None:
            body["status"] = node_side.boot_status(
                body, domain, node=node, version=self.side.version, now=now, stamp=_ts
            )

        await self._write(key, mutate)

    async def _sync_domain(self, key: Key, vmi: Obj, now: float) -> None:
        domain = self.domain(vmi)
        entries = rules.status_entries(vmi.get("status") or {})
        # the networks the current launcher pod has, as virt-controller reports them from Multus
        domain.pod_networks = {
            n for n, e in entries.items() if INFO_SOURCE_MULTUS_STATUS in rules.info_sources(e)
        }
        error = node_side.handler_sync(vmi.get("spec") or {}, domain)
        new_status = node_side.handler_status(vmi, domain, now=now, sync_error=error, stamp=_ts)
        if new_status == (vmi.get("status") or {}):
            return

        def mutate(body: Obj) -> bool:
            if body.get("metadata", {}).get("resourceVersion") != vmi.get("metadata", {}).get(
                "resourceVersion"
            ):
                return False  # changed meanwhile: the watch event brings it back here
            body["status"] = new_status
            return True

        out = await self._write(key, mutate)
        if out is not None and out is not vmi:
            uid = str((out.get("metadata") or {}).get("uid", ""))
            if error and uid not in self._sync_failed_reported:
                self._sync_failed_reported.add(uid)
                assert self.side.handler is not None
                await self.side.handler.event(out, "VirtualMachineInstance", "SyncFailed", error, "Warning",
                                              component="virt-handler")  # fmt: skip
            elif not error:
                self._sync_failed_reported.discard(uid)

    # -- live migration, both ends --------------------------------------------------------------

    async def _migrate(self, key: Key, vmi: Obj, ms: Mapping[str, Any], now: float) -> None:
        uid = str(ms["migrationUid"])
        m = self.side.migrations.get(uid)
        ns = key[0]
        if m is None:
            target_pod = self.side.pod(ns, str(ms.get("targetPod") or ""))
            if not ms.get("targetNode") or target_pod is None:
                return  # not handed off yet
            if (target_pod.get("status") or {}).get("phase") != "Running":
                return  # the target pod's events bring us back
            plan = node_side.plan_migration(
                self.side.timing, self.side.rng, str(ms.get("sourceNode") or ""),
                sorted(self.node_names), target=str(ms["targetNode"]),
            )  # fmt: skip
            plan.started = now
            m = self.side.migrations[uid] = _Migration(
                uid, plan, str(ms.get("sourcePod") or ""), str(ms["targetPod"])
            )
        plan = m.plan
        if ms.get("abortRequested"):
            await self._end(key, uid, now, failed=True, reason=ABORTED_REASON, abort=True)
            return
        ready_at = plan.started + plan.durations.get("TargetReady", 0.0)
        start_at = ready_at + plan.durations.get("Running", 0.0)
        end_at = start_at + plan.durations.get("Succeeded", 0.0)
        if not ms.get("targetNodeAddress"):
            if now < ready_at:
                self.queue.add_after(key, ready_at - now)
                return
            if plan.fate == "fail" and plan.fail_phase == PHASE_SCHEDULED:
                await self._end(key, uid, now, failed=True, reason=FAILED_REASON)
                return
            await self._patch_state(key, uid, targetNodeAddress=self.address[plan.target_node],
                                    targetDirectMigrationNodePorts=dict(TARGET_PORTS))  # fmt: skip
            return
        if not ms.get("startTimestamp"):
            if now < start_at:
                self.queue.add_after(key, start_at - now)
                return
            await self._patch_state(
                key, uid, startTimestamp=_ts(now), mode="PreCopy", targetNodeDomainDetected=True
            )
            return
        if plan.fate == "stuck":
            return  # copying forever, until someone aborts
        fail_at = start_at + plan.durations.get("Succeeded", 0.0) / 2
        due = fail_at if plan.fate == "fail" else end_at
        if now < due:
            self.queue.add_after(key, due - now)
            return
        await self._end(key, uid, now, failed=plan.fate == "fail", reason=FAILED_REASON)

    async def _patch_state(self, key: Key, uid: str, **fields: Any) -> None:
        def mutate(body: Obj) -> bool:
            ms = body["status"].get("migrationState") or {}
            if ms.get("migrationUid") != uid or ms.get("completed") or ms.get("failed"):
                return False
            ms.update(fields)
            body["status"]["migrationState"] = ms
            return True

        await self._write(key, mutate)

    async def _end(
        self, key: Key, uid: str, now: float, *, failed: bool, reason: str, abort: bool = False
    ) -> None:
        """The end of a migration as both handlers report it: the source's failure (or abort), or the
        target's completion with the VMI moved to the target node."""
        m = self.side.migrations.get(uid)
        assert m is not None

        def mutate(body: Obj) -> bool:
            st = body["status"]
            ms = st.get("migrationState") or {}
            if ms.get("migrationUid") != uid or ms.get("completed") or ms.get("failed"):
                return False
            ms["endTimestamp"] = _ts(now)
            if failed:
                ms.update(failed=True, failureReason=reason)
                if abort:
                    ms["abortStatus"] = "Succeeded"
                st["migrationState"] = ms
                return True
            ms.update(targetNodeDomainDetected=True, targetNodeDomainReadyTimestamp=_ts(now), completed=True)
            st["migrationState"] = ms
            st["nodeName"] = m.plan.target_node
            st["migrationTransport"] = "Unix"
            st["launcherContainerImageVersion"] = ""
            st["conditions"] = status.remove_condition(
                list(st.get("conditions") or []), COND_MIGRATION_REQUIRED
            )
            labels = dict((body.get("metadata") or {}).get("labels") or {})
            labels[LABEL_NODE_NAME] = m.plan.target_node
            body["metadata"]["labels"] = labels
            return True

        out = await self._write(key, mutate)
        if out is not None and not failed:
            await self.side.kubelet.finish_source_pod(key[0], m.source_pod)
        self.side.migrations.pop(uid, None)
