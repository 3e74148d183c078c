"""The scheduler's part for virt-launcher pods: which node a pod may go to (pure).

Why here, once: the kube-scheduler cannot run on this machine, and both clusters need it — the
real-KubeVirt tier's node stand-in (:mod:`simulator.real.node`) binds the pods real virt-controller
renders, and the simulated cluster's migration controller places its target pods. The filters are the
ones virt-launcher pods meet: the node Ready and not cordoned, no ``NoSchedule``/``NoExecute`` taint the
pod does not tolerate (KubeVirt's drain taint among them), the node selector and required node affinity,
required pod anti-affinity (a migration's target pod avoids its source's node), and extended resources
(SR-IOV VFs) still free: allocatable minus what the node's running pods request. Among the nodes that
fit, the least loaded (fewest running launcher pods, ties by name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _match_expression(labels: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, values = str(expr.get("key")), str(expr.get("operator")), list(expr.get("values") or [])
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def _selector_matches(labels: Mapping[str, str], selector: Mapping[str, Any]) -> bool:
    match = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    return all(_match_expression(labels, e) for e in selector.get("matchExpressions") or [])


def requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """Extended-resource requests (whole numbers) of a pod's containers, summed (limits stand for
    requests where only they are set, as the API server defaults them)."""
    out: dict[str, int] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, qty in wanted.items():
            if "/" in name and str(qty).isdigit():
                out[name] = out.get(name, 0) + int(qty)
    return out


def terminated(pod: Mapping[str, Any]) -> bool:
    return str((pod.get("status") or {}).get("phase", "")) in ("Succeeded", "Failed")


#: Taints kube-apiserver puts on a new node and kube-controller-manager's node lifecycle controller keeps in
#: line with its Ready condition; no such controller runs here, so readiness is read from the condition.
_CONDITION_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def _tolerated(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.get("effect")):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def fits(pod: Mapping[str, Any], node: Mapping[str, Any], pods_on_node: Iterable[Mapping[str, Any]]) -> bool:
    """The scheduler's filters that virt-launcher pods meet (module docstring)."""
    running = [p for p in pods_on_node if not terminated(p)]
    return (
        _node_open(pod, node)
        and _node_selected(pod, node)
        and not _anti_affine(pod, running)
        and _resources_free(pod, node, running)
    )


def _node_open(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Ready, not cordoned, no taint the pod does not tolerate (condition taints aside)."""
    nspec = node.get("spec") or {}
    conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    if nspec.get("unschedulable") or conditions.get("Ready") != "True":
        return False
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return not any(
        taint.get("key") not in _CONDITION_TAINTS
        and taint.get("effect") in ("NoSchedule", "NoExecute")
        and not _tolerated(taint, tolerations)
        for taint in nspec.get("taints") or []
    )


def _node_selected(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The pod's node selector and required node affinity."""
    spec = pod.get("spec") or {}
    labels = labels_of(node)
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    affinity = spec.get("affinity") or {}
    required = (
        (affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(
        all(_match_expression(labels, e) for e in t.get("matchExpressions") or []) for t in terms
    )


def _anti_affine(pod: Mapping[str, Any], running: list[Mapping[str, Any]]) -> bool:
    """A required pod anti-affinity term matches a pod running on the node (a migration's source)."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    anti = (affinity.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return any(
        _selector_matches(labels_of(p), term.get("labelSelector") or {}) for term in anti for p in running
    )


def _resources_free(
    pod: Mapping[str, Any], node: Mapping[str, Any], running: list[Mapping[str, Any]]
) -> bool:
    """The node's allocatable extended resources cover the pod's requests beside the running pods'."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    used: dict[str, int] = {}
    for p in running:
        for name, n in requests(p).items():
            used[name] = used.get(name, 0) + n
    for name, n in requests(pod).items():
        if name.startswith("devices.kubevirt.io/"):
            continue
        have = str(allocatable.get(name, "0"))
        if not have.isdigit() or used.get(name, 0) + n > int(have):
            return False
    return True


def choose_node(
    pod: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> str | None:
    """The node with the fewest running launcher pods among those that fit (ties by name), or None."""
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for p in pods:
        name = str((p.get("spec") or {}).get("nodeName") or "")
        if name:
            by_node.setdefault(name, []).append(p)
    best: tuple[int, str] | None = None
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name", ""))
        on_node = by_node.get(name, [])
        if not fits(pod, node, on_node):
            continue
        load = sum(1 for p in on_node if not terminated(p))
        if best is None or (load, name) < best:
            best = (load, name)
    return best[1] if best else None


__all__ = ["choose_node", "fits", "labels_of", "requests", "terminated"]
