"""virt-launcher pods and the networks they attach: what the simulated cluster needs of both.

Why pods at all: an SR-IOV interface takes a virtual function of the NAD's device resource
(``k8s.v1.cni.cncf.io/resourceName``) on the node its virt-launcher pod runs on; the pod requests it, the
node's ``allocatable`` bounds it, and a migration's *target* pod needs its own VFs on another node before
it can be scheduled. Only the parts of a pod that placement reads are rendered here (labels, node
selector, the target's anti-affinity to its source, extended-resource requests, phase); virt-controller
renders far more. Pure: bodies and names, no I/O.

The network catalogue of the simulated cluster (:func:`nad_body`, :func:`network_resource`): SR-IOV
networks take VFs of :data:`SRIOV_RESOURCE` (16 per node), those named ``cx5-…`` of
:data:`SCARCE_RESOURCE` (one per node: a VM booted on one and plugging a second finds no node with two
free, which is how the default scenario exhausts a resource).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.kubevirt import NAD_GROUP, NAD_RESOURCE_ANNOTATION, NAD_VERSION, NADS, STATE_ABSENT
from simulator.kubevirt import rules
from simulator.kubevirt.config import DEFAULT_SRIOV_RESOURCES, SCARCE_RESOURCE, SRIOV_RESOURCE
from simulator.kubevirt.node import LAUNCHER_IMAGE

SCARCE_PREFIX: Final = "cx5-"
LAUNCHER_LABEL: Final = "kubevirt.io"
LAUNCHER_VALUE: Final = "virt-launcher"
LAUNCHER_SELECTOR: Final = f"{LAUNCHER_LABEL}={LAUNCHER_VALUE}"
CREATED_BY_LABEL: Final = "kubevirt.io/created-by"
MIGRATION_JOB_LABEL: Final = "kubevirt.io/migrationJobUID"

Obj = dict[str, Any]
Key = tuple[str, str]


def network_resource(name: str, binding: str) -> str:
    """The device resource the simulated cluster's NAD for network ``name`` names ("" for bridge)."""
    if binding != "sriov":
        return ""
    return SCARCE_RESOURCE if name.startswith(SCARCE_PREFIX) else SRIOV_RESOURCE


def nad_body(namespace: str, name: str, resource: str = "") -> Obj:
    """A NetworkAttachmentDefinition as an admin writes it (bridge CNI, or SR-IOV with its resource)."""
    meta: Obj = {"name": name, "namespace": namespace}
    cni = {"cniVersion": "0.3.1", "name": name, "type": "sriov" if resource else "bridge"}
    if resource:
        meta["annotations"] = {NAD_RESOURCE_ANNOTATION: resource}
    return {
        "apiVersion": f"{NAD_GROUP}/{NAD_VERSION}",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": json.dumps(cni)},
    }


def nad_of(reference: str, namespace: str) -> Key:
    """KubeVirt's reading of a Multus ``networkName``: ``namespace/name`` or ``name`` in the VM's."""
    ns, sep, name = reference.partition("/")
    return (ns, name) if sep else (namespace, reference)


def networks_of(spec: Mapping[str, Any], namespace: str) -> list[tuple[Key, str]]:
    """The NADs a VMI (or VM template) spec's non-absent secondary interfaces need, with their binding."""
    nets = rules.network_by_name(spec)
    out: list[tuple[Key, str]] = []
    for iface in rules.interfaces(spec):
        net = nets.get(str(iface.get("name")), {})
        if iface.get("state") == STATE_ABSENT or not rules.is_secondary_multus(net):
            continue
        binding = "sriov" if "sriov" in iface else "bridge" if "bridge" in iface else "other"
        out.append((nad_of(str((net.get("multus") or {}).get("networkName", "")), namespace), binding))
    return out


def missing_nads(spec: Mapping[str, Any], namespace: str, exists: Callable[[Key], bool]) -> list[str]:
    """``ns/name`` of the NADs the spec needs that do not exist (virt-controller cannot render the pod)."""
    return [f"{k[0]}/{k[1]}" for k, _ in networks_of(spec, namespace) if not exists(k)]


def vf_requests(spec: Mapping[str, Any], namespace: str, nad: Callable[[Key], Obj | None]) -> dict[str, int]:
    """SR-IOV VFs the virt-launcher pod requests: one per SR-IOV interface, of its NAD's resource."""
    out: dict[str, int] = {}
    for key, binding in networks_of(spec, namespace):
        obj = nad(key) if binding == "sriov" else None
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        resource = str(annotations.get(NAD_RESOURCE_ANNOTATION, "") or "")
        if resource:
            out[resource] = out.get(resource, 0) + 1
    return out


def launcher_pod(
    vmi: Mapping[str, Any],
    node: str,
    requests: Mapping[str, int],
    *,
    migration_uid: str = "",
) -> Obj:
    """The virt-launcher pod of ``vmi`` (its migration target's when ``migration_uid`` is given: it
    avoids the nodes where a pod of the same VMI runs). ``node`` "" leaves it unscheduled."""
    meta = vmi.get("metadata") or {}
    name, ns, uid = str(meta.get("name", "")), str(meta.get("namespace", "")), str(meta.get("uid", ""))
    suffix = hashlib.sha1(f"{uid}/{migration_uid}".encode()).hexdigest()[:5]
    labels = {LAUNCHER_LABEL: LAUNCHER_VALUE, CREATED_BY_LABEL: uid, "vm.kubevirt.io/name": name}
    if migration_uid:
        labels[MIGRATION_JOB_LABEL] = migration_uid
    resources = {k: str(v) for k, v in sorted(requests.items())}
    spec: Obj = {
        "containers": [
            {
                "name": "compute",
                "image": LAUNCHER_IMAGE,
                "resources": {"requests": dict(resources), "limits": dict(resources)},
            }
        ],
        "nodeSelector": {"kubevirt.io/schedulable": "true"},
    }
    if node:
        spec["nodeName"] = node
    if migration_uid:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {CREATED_BY_LABEL: uid}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"virt-launcher-{name}-{suffix}", "namespace": ns, "labels": labels},
        "spec": spec,
        "status": {"phase": "Running" if node else "Pending"},
    }


__all__ = [
    "CREATED_BY_LABEL",
    "DEFAULT_SRIOV_RESOURCES",
    "LAUNCHER_SELECTOR",
    "NADS",
    "NAD_GROUP",
    "NAD_VERSION",
    "SCARCE_RESOURCE",
    "SRIOV_RESOURCE",
    "launcher_pod",
    "missing_nads",
    "nad_body",
    "nad_of",
    "network_resource",
    "networks_of",
    "vf_requests",
]
