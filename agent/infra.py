"""Typed records of the cluster's infrastructure a migration depends on: NADs, Nodes and Pods.

Why these three: a live migration renders a new virt-launcher pod on another node. virt-controller
cannot render it without the NetworkAttachmentDefinition every secondary network names (the migration
then stays ``Pending``), the scheduler cannot place it without a node that is schedulable, Ready and
not being drained, nor — for SR-IOV — without a free virtual function of the network's device resource
(the NAD's ``k8s.v1.cni.cncf.io/resourceName``: node allocatable minus what running pods request). The
agent's preflight (:mod:`agent.preflight`) reads exactly that, so the records keep exactly that and
nothing else: a NAD is its key and resource name (not its CNI config), a Node its schedulability and
its *extended* resources, a Pod its node and its extended-resource requests. Every other pod — most of
a cluster's — parses to one shared record (:data:`IDLE_POD`), so the Pod cache costs a key per pod.

Parsed once at the informer boundary like :mod:`agent.model` (whose parsing helpers these reuse);
anything malformed raises :class:`~agent.model.InvalidObject` and nothing else. Pure: no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.kubevirt import DRAIN_TAINT_KEY, NAD_RESOURCE_ANNOTATION, parse_quantity
from agent.model import (
    InvalidObject,
    Key,
    _cond_status,
    _conditions,
    _Ctx,
    _dict,
    _items,
    _key,
    _map_value,
    _metadata,
    _str,
    _string_map,
)

#: virt-handler labels the nodes it can run VMs on; virt-launcher pods select ``"true"``.
LABEL_SCHEDULABLE: Final = "kubevirt.io/schedulable"
#: Resources every virt-launcher pod requests from KubeVirt's own device plugins (never scarce for a
#: network): not kept, to keep the records small.
_KUBEVIRT_DEVICE_PREFIX: Final = "devices.kubevirt.io/"
_POD_TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})

_intern = sys.intern
Resources = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NADRecord:
    """A NetworkAttachmentDefinition: it exists, and the device resource its VFs come from ("" none)."""

    key: Key
    resource_name: str = ""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as a migration target: may the scheduler place a virt-launcher pod there, and which
    extended resources (SR-IOV VFs among them) it offers."""

    name: str
    #: not cordoned (``spec.unschedulable``) and not labelled ``kubevirt.io/schedulable: "false"``
    schedulable: bool
    #: condition ``Ready=True``
    ready: bool
    #: carries KubeVirt's drain taint: KubeVirt is evacuating its VMIs
    draining: bool
    #: ``status.allocatable`` of extended resources (``vendor/name``), sorted by name
    allocatable: Resources = ()

    @property
    def key(self) -> Key:
        return ("", self.name)

    @property
    def target(self) -> bool:
        """A new virt-launcher pod can be placed here."""
        return self.schedulable and self.ready and not self.draining

    def offers(self, resource: str) -> int:
        for name, count in self.allocatable:
            if name == resource:
                return count
        return 0


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A pod that holds extended resources on a node: scheduled, not terminated, requesting some."""

    key: Key
    node: str
    requests: Resources


#: Every pod that holds no extended resource (no requests, not scheduled yet, or terminated).
IDLE_POD: Final = PodRecord(("", ""), "", ())


def is_extended(resource: str) -> bool:
    """``vendor.example/name`` resources (device plugins), not KubeVirt's own per-pod devices."""
    return "/" in resource and not resource.startswith(("kubernetes.io/", _KUBEVIRT_DEVICE_PREFIX))


def _extended(ctx: _Ctx, values: Mapping[str, Any], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, raw in values.items():
        if not isinstance(name, str) or not is_extended(name):
            continue
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise ctx.fail(f"{where}[{name!r}] is not a quantity")
        try:
            out[_intern(name)] = parse_quantity(raw)
        except ValueError as exc:
            raise ctx.fail(f"{where}[{name!r}]: {exc}") from None
    return out


def _sorted(resources: Mapping[str, int]) -> Resources:
    return tuple(sorted((k, v) for k, v in resources.items() if v > 0))


def parse_nad(obj: object) -> NADRecord:
    """NetworkAttachmentDefinition → :class:`NADRecord`. Raises :class:`InvalidObject` only."""
    ctx = _Ctx("NetworkAttachmentDefinition")
    _obj, meta = _metadata(ctx, obj)
    annotations = _string_map(ctx, meta, "annotations", "metadata")
    resource = _map_value(ctx, annotations, NAD_RESOURCE_ANNOTATION, "metadata.annotations") or ""
    return NADRecord(_key(ctx), _intern(resource.strip()))


def parse_node(obj: object) -> NodeRecord:
    """Node → :class:`NodeRecord`. Raises :class:`InvalidObject` only."""
    ctx = _Ctx("Node")
    obj, meta = _metadata(ctx, obj, namespaced=False)
    labels = _string_map(ctx, meta, "labels", "metadata")
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    unschedulable = spec.get("unschedulable")
    if unschedulable is not None and not isinstance(unschedulable, bool):
        raise ctx.fail("spec.unschedulable is not a boolean")
    draining = False
    for taint in _items(ctx, spec, "taints", "spec"):
        if _str(ctx, taint, "key", "spec.taints[]") == DRAIN_TAINT_KEY:
            draining = True
    kubevirt_label = _map_value(ctx, labels, LABEL_SCHEDULABLE, "metadata.labels")
    ready = _cond_status(_conditions(ctx, status).get("Ready")) is True
    allocatable = _extended(ctx, _dict(ctx, status, "allocatable", "status"), "status.allocatable")
    return NodeRecord(
        name=_intern(ctx.name),
        schedulable=not unschedulable and (kubevirt_label or "").strip().lower() != "false",
        ready=ready,
        draining=draining,
        allocatable=_sorted(allocatable),
    )


def _container_requests(ctx: _Ctx, container: Mapping[str, Any], where: str) -> dict[str, int]:
    """Extended-resource requests of one container (limits stand for requests when only they are set,
    as the API server defaults them)."""
    resources = _dict(ctx, container, "resources", where)
    limits = _extended(ctx, _dict(ctx, resources, "limits", f"{where}.resources"), f"{where}.limits")
    requests = _extended(ctx, _dict(ctx, resources, "requests", f"{where}.resources"), f"{where}.requests")
    return {**limits, **requests}


def parse_pod(obj: object) -> PodRecord:
    """Pod → :class:`PodRecord`, or :data:`IDLE_POD` when it holds no extended resource on a node.

    A pod's effective request is the sum over its containers or the largest init container's,
    whichever is larger (the scheduler's rule). Raises :class:`InvalidObject` only.
    """
    ctx = _Ctx("Pod")
    obj, _meta = _metadata(ctx, obj)
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    node = _str(ctx, spec, "nodeName", "spec")
    if not node or _str(ctx, status, "phase", "status") in _POD_TERMINAL_PHASES:
        return IDLE_POD
    total: dict[str, int] = {}
    for container in _items(ctx, spec, "containers", "spec"):
        for name, count in _container_requests(ctx, container, "spec.containers[]").items():
            total[name] = total.get(name, 0) + count
    for init in _items(ctx, spec, "initContainers", "spec"):
        for name, count in _container_requests(ctx, init, "spec.initContainers[]").items():
            total[name] = max(total.get(name, 0), count)
    requests = _sorted(total)
    if not requests:
        return IDLE_POD
    return PodRecord(_key(ctx), _intern(node), requests)


__all__ = [
    "IDLE_POD",
    "LABEL_SCHEDULABLE",
    "InvalidObject",
    "NADRecord",
    "NodeRecord",
    "PodRecord",
    "Resources",
    "is_extended",
    "parse_nad",
    "parse_node",
    "parse_pod",
]
