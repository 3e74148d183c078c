"""State shared by the simulated KubeVirt controllers: caches, node-side domains, configuration.

Why node-side state lives here and not in the API: a virt-launcher pod's Multus ``network-status`` and
the libvirt domain's devices are not API objects the agent reads (the simulator has no Pods); only
their effect on the VMI (``status.interfaces``, conditions) is. :class:`~simulator.kubevirt.pci.Domain`
holds them per VMI; a domain unknown to the simulator (an object created before it started, or by the
seeder) is adopted from the VMI's status.
"""

from __future__ import annotations

import copy
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.kubevirt import (
    DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER,
    DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
    KUBEVIRTS,
    LABEL_NODE_NAME,
    STATE_ABSENT,
    VMIMS,
    VMIS,
    VMS,
)
from simulator.kubevirt import node, pci, pods, rules, scheduling, status
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.kube import NODES, PODS, Informer, Key, Kube, Obj, key_of


class World:
    def __init__(self, config: KubeVirtSimConfig, kube: Kube, nodes: list[str]) -> None:
        self.config = config
        self.kube = kube
        self.nodes = nodes
        self.rng = random.Random(config.seed)
        ns = config.watch_namespace
        self.vms = Informer(kube, VMS, namespace=ns)
        self.vmis = Informer(kube, VMIS, namespace=ns)
        self.vmims = Informer(kube, VMIMS, namespace=ns)
        self.kubevirts = Informer(kube, KUBEVIRTS, namespace=None if ns is None else "kubevirt")
        self.nads = Informer(kube, pods.NADS, namespace=ns, group=pods.NAD_GROUP, version=pods.NAD_VERSION)
        self.node_objects = Informer(kube, NODES)
        self.pods = Informer(kube, PODS, label_selector=pods.LAUNCHER_SELECTOR)
        self.domains: dict[Key, pci.Domain] = {}
        self._vmi_listeners: list[Callable[[Key], Awaitable[None]]] = []

    @property
    def informers(self) -> list[Informer]:
        return [self.vms, self.vmis, self.vmims, self.kubevirts, self.nads, self.node_objects, self.pods]

    def on_node_side_change(self, cb: Callable[[Key], Awaitable[None]]) -> None:
        """Called with a VMI key when its pod or domain changed (the VMI controller re-syncs it)."""
        self._vmi_listeners.append(cb)

    async def node_side_changed(self, key: Key) -> None:
        for cb in self._vmi_listeners:
            await cb(key)

    # -- KubeVirt CR ------------------------------------------------------------------------------

    def kubevirt(self) -> Obj | None:
        for obj in self.kubevirts.cache.values():
            return obj
        return None

    def version(self) -> str:
        kv = self.kubevirt()
        observed = ((kv or {}).get("status") or {}).get("observedKubeVirtVersion")
        return str(observed) if observed else self.config.kubevirt_version

    def _migrations_config(self) -> Mapping[str, Any]:
        kv = self.kubevirt() or {}
        return ((kv.get("spec") or {}).get("configuration") or {}).get("migrations") or {}

    def limits(self) -> tuple[int, int]:
        """``parallelMigrationsPerCluster``/``parallelOutboundMigrationsPerNode`` with KubeVirt's
        defaults 5/2."""
        cfg = self._migrations_config()
        cluster = cfg.get("parallelMigrationsPerCluster")
        per_node = cfg.get("parallelOutboundMigrationsPerNode")
        return (
            int(cluster) if isinstance(cluster, int) else DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER,
            int(per_node) if isinstance(per_node, int) else DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
        )

    def live_update(self) -> bool:
        """``vmRolloutStrategy: LiveUpdate`` in the KubeVirt CR (else KubeVirt's default ``Stage``)."""
        kv = self.kubevirt() or {}
        return ((kv.get("spec") or {}).get("configuration") or {}).get("vmRolloutStrategy") == "LiveUpdate"

    def workload_update_methods(self) -> list[str]:
        kv = self.kubevirt() or {}
        methods = ((kv.get("spec") or {}).get("workloadUpdateStrategy") or {}).get("workloadUpdateMethods")
        return [str(m) for m in methods] if isinstance(methods, list) else []

    # -- domains ----------------------------------------------------------------------------------

    def domain_for(self, vmi: Obj) -> pci.Domain:
        """The running domain of a VMI; adopted from its status when the simulator has none for its uid."""
        key = key_of(vmi)
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        dom = self.domains.get(key)
        if dom is not None and dom.uid == uid:
            return dom
        dom = node.adopt_domain(vmi, self.version())
        self.domains[key] = dom
        return dom

    # -- networks and virt-launcher pods ----------------------------------------------------------

    def nad(self, key: Key) -> Obj | None:
        return self.nads.get(key)

    def missing_nads(self, vmi: Obj) -> list[str]:
        """The NADs the VMI's pod needs that do not exist: virt-controller cannot render it."""
        ns = str((vmi.get("metadata") or {}).get("namespace", ""))
        return pods.missing_nads(vmi.get("spec") or {}, ns, lambda k: self.nads.get(k) is not None)

    def launcher_pods(self, vmi: Obj) -> list[Obj]:
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        ns = str((vmi.get("metadata") or {}).get("namespace", ""))
        return [
            p
            for (pns, _), p in self.pods.cache.items()
            if pns == ns and scheduling.labels_of(p).get(pods.CREATED_BY_LABEL) == uid
        ]

    async def create_launcher(self, vmi: Obj, node_name: str, migration_uid: str = "") -> Obj:
        """The VMI's virt-launcher pod on ``node_name``, or — for a migration target (``migration_uid``)
        — wherever the scheduler places it ("" leaves it Pending, unschedulable)."""
        ns = str((vmi.get("metadata") or {}).get("namespace", ""))
        requests = pods.vf_requests(vmi.get("spec") or {}, ns, self.nad)
        body = pods.launcher_pod(vmi, node_name, requests, migration_uid=migration_uid)
        if migration_uid:
            node_name = self.place(body) or ""
            body = pods.launcher_pod(vmi, node_name, requests, migration_uid=migration_uid)
        existing = self.pods.get(key_of(body))
        if existing is not None:
            return existing
        created = await self.kube.create_pod(body)
        self.pods.write_through(created)
        return created

    def place(self, pod: Obj) -> str | None:
        """The scheduler's choice for an unscheduled pod (None: no node fits)."""
        return scheduling.choose_node(pod, self.node_objects.cache.values(), self.pods.cache.values())

    async def bind(self, pod: Obj, node_name: str) -> Obj:
        """Schedule a Pending pod on ``node_name`` and start it (scheduler and kubelet). The API has no
        binding here to use, and ``spec.nodeName`` is immutable: an unscheduled pod is deleted at once
        and created again bound."""
        await self.kube.delete_pod(*key_of(pod))
        body = {
            **pod,
            "metadata": {
                k: v for k, v in (pod.get("metadata") or {}).items() if k in ("name", "namespace", "labels")
            },
            "spec": {**(pod.get("spec") or {}), "nodeName": node_name},
            "status": {"phase": "Running"},
        }
        out = await self.kube.create_pod(body)
        self.pods.write_through(out)
        return out

    async def end_pod(self, pod: Obj) -> None:
        """A source pod after its VMI left: the kubelet reports it Succeeded."""
        out = await self.kube.patch_pod(pod, {"status": {"phase": "Succeeded"}}, status=True)
        self.pods.write_through(out)

    async def delete_pod(self, pod: Obj) -> None:
        await self.kube.delete_pod(*key_of(pod))

    def pick_node(self, key: Key) -> str:
        return self.nodes[zlib.crc32("/".join(key).encode()) % len(self.nodes)] if self.nodes else "node-1"


def start_revision_name(vm: Obj) -> str:
    """``revision-start-vm-<uid>-<generation>``: the ControllerRevision holding the VM spec a VMI started
    from (vm.go ``getVMRevisionName``); KubeVirt compares the template with it for RestartRequired."""
    meta = vm.get("metadata") or {}
    return f"revision-start-vm-{meta.get('uid', '')}-{meta.get('generation', 1)}"


def start_revision(vm: Obj) -> Obj:
    """The ControllerRevision KubeVirt writes when it starts a VM (vm.go ``createVMRevision``): data is
    ``{"spec": <the VM's spec>}``, owned by the VM."""
    meta = vm.get("metadata") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": start_revision_name(vm),
            "namespace": meta.get("namespace"),
            "ownerReferences": [
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachine",
                    "name": meta.get("name"),
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"spec": copy.deepcopy(vm.get("spec") or {})},
        "revision": int(meta.get("generation", 1) or 1),
    }


def vmi_from_vm(vm: Obj, node_name: str, version: str, now: float | None = None) -> Obj:
    """The VMI KubeVirt creates for a running VM, already Running on ``node_name`` (the simulator skips
    scheduling/booting): spec from the template without ``absent`` interfaces, owner reference,
    label ``kubevirt.io/nodeName``, the name of its start revision (:func:`start_revision`), and the
    status virt-handler writes once the domain is up (:func:`simulator.kubevirt.node.boot_status`)."""
    now = time.time() if now is None else now
    meta = vm.get("metadata") or {}
    template = (vm.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    absent = {str(i.get("name")) for i in rules.interfaces(spec) if i.get("state") == STATE_ABSENT}
    if absent:
        devices = spec.setdefault("domain", {}).setdefault("devices", {})
        devices["interfaces"] = [i for i in rules.interfaces(spec) if str(i.get("name")) not in absent]
        spec["networks"] = [n for n in rules.networks(spec) if str(n.get("name")) not in absent]
    labels = dict(tmeta.get("labels") or {})
    labels[LABEL_NODE_NAME] = node_name
    vmi_meta: dict[str, Any] = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "name": meta.get("name"),
                "uid": meta.get("uid", ""),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("annotations"):
        vmi_meta["annotations"] = dict(tmeta["annotations"])
    vmi: Obj = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": vmi_meta,
        "spec": spec,
    }
    stamps = [
        {"phase": p, "phaseTransitionTimestamp": status.rfc3339(now)}
        for p in ("Pending", "Scheduling", "Scheduled")
    ]
    vmi["status"] = {
        "phaseTransitionTimestamps": stamps,
        "qosClass": "Burstable",
        "virtualMachineRevisionName": start_revision_name(vm),
    }
    vmi["status"] = node.boot_status(
        vmi, node.new_domain(vmi, version), node=node_name, version=version, now=now
    )
    return vmi
