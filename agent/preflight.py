"""The preflight: what the cluster's infrastructure says about migrating one VMI *now*.

Why before migrating: a migration whose target pod cannot be rendered or placed does not fail fast.
With a NetworkAttachmentDefinition missing, virt-controller keeps the VMIM ``Pending`` and re-queues it
("failed to locate network attachment definition ns/name") until someone deletes it — the agent's
deadline, 15 minutes by default, during which it holds one of the agent's slots. With no node that has
a free SR-IOV VF of the network's resource, the target pod stays ``Pending`` (unschedulable) until
KubeVirt gives up on it. With no schedulable, Ready node besides the VM's own there is nowhere to go.
And on a node KubeVirt is draining, its own evacuation migrations move the VMs (and carry their new
networks): a migration of ours would only compete with them. Each of these is known from the caches
before a single byte of guest memory is copied, so :func:`facts` says it and ``agent.decide`` blocks
or waits with a reason instead of starting a migration that cannot succeed.

Pure: the caller (``agent.mirror``) passes the cached records; nothing here reads the API or the clock.
What is *not* known is never a block: with the NAD API not served (no Multus), a NAD in a namespace the
agent does not watch, an SR-IOV NAD without a resource name, or no Node cache, the check is skipped and
the migration is tried as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from agent.infra import NADRecord, NodeRecord, Resources
from agent.model import Key, VMIRecord


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """The infrastructure's answer for one VMI (empty: nothing known stands in the way)."""

    #: NADs (``namespace/name``) the VMI's secondary networks name that do not exist
    missing_networks: tuple[str, ...] = ()
    #: the node KubeVirt is evacuating the VMI from ("" when it is not)
    evacuating: str = ""
    #: the nodes are known and none but the VMI's own could take a new virt-launcher pod
    no_target_node: bool = False
    #: SR-IOV VFs the target pod needs, per device resource (every SR-IOV interface of the VMI)
    needs: Resources = ()
    #: of those resources, the ones no possible target node has enough free VFs of
    short: tuple[str, ...] = ()


NO_FACTS: Final = ClusterFacts()


class TriggerKind(StrEnum):
    NAD = "nad"
    RESOURCE = "resource"
    NODES = "nodes"


@dataclass(frozen=True, slots=True)
class Trigger:
    """A change of the infrastructure that may end a block or a wait: the NAD ``name``
    (``namespace/name``) appears, VFs of the resource ``name`` are freed, a node changes."""

    kind: TriggerKind
    name: str = ""


def nad_key(reference: str, namespace: str) -> Key:
    """A Multus network reference as Multus resolves it: ``namespace/name``, or ``name`` in the VM's
    own namespace."""
    ns, sep, name = reference.partition("/")
    return (ns, name) if sep else (namespace, reference)


def nad_name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass(frozen=True, slots=True)
class Infrastructure:
    """What the caches hold, as the preflight reads it.

    ``nads``: ``None`` when the NAD API is not served or its cache not synced (check skipped);
    ``nad_namespaces``: the namespaces whose NADs are watched (``None``: all). ``nodes`` empty: the Node
    cache is not there (node checks skipped); ``targets``: the names of the nodes that could take a new
    virt-launcher pod (:attr:`NodeRecord.target`, kept by the caller as nodes change, so a preflight
    costs no scan of the nodes unless the VMI needs SR-IOV VFs). ``usage``: node → extended resource →
    requested by the pods that hold it.
    """

    nads: Mapping[Key, NADRecord] | None = None
    nad_namespaces: Collection[str] | None = None
    nodes: Mapping[str, NodeRecord] | None = None
    targets: Collection[str] = ()
    usage: Mapping[str, Mapping[str, int]] | None = None

    def free(self, node: NodeRecord, resource: str) -> int:
        used = (self.usage or {}).get(node.name, {}).get(resource, 0)
        return node.offers(resource) - used

    def target_nodes(self) -> Iterable[NodeRecord]:
        nodes = self.nodes or {}
        return (nodes[name] for name in self.targets if name in nodes)

    def free_total(self, resource: str) -> int:
        """Free VFs of ``resource`` over every node a target pod could go to (the dispatcher's budget)."""
        return sum(max(0, self.free(n, resource)) for n in self.target_nodes())


def _networks(vmi: VMIRecord, infra: Infrastructure) -> tuple[list[str], dict[str, int]]:
    """The NADs the VMI's secondary networks name that do not exist, and the SR-IOV VFs per device
    resource its target pod needs (NADs not known are neither)."""
    missing: list[str] = []
    needs: dict[str, int] = {}
    nads = infra.nads
    for iface in vmi.interfaces:
        if iface.absent or not iface.network.is_secondary_multus:
            continue
        key = nad_key(iface.network.multus_name, vmi.namespace)
        if nads is None or (infra.nad_namespaces is not None and key[0] not in infra.nad_namespaces):
            continue  # not known: never a block
        nad = nads.get(key)
        if nad is None:
            missing.append(nad_name(key))
        elif iface.binding == "sriov" and nad.resource_name:
            needs[nad.resource_name] = needs.get(nad.resource_name, 0) + 1
    return missing, needs


def vf_needs(vmi: VMIRecord, infra: Infrastructure) -> Resources:
    """``facts(vmi, infra).needs`` without the rest of the preflight (no scan of the nodes): what the
    dispatcher's VF budget counts for every unfinished migration, at each dispatch."""
    return tuple(sorted(_networks(vmi, infra)[1].items()))


def sriov_nads(vmi: VMIRecord) -> tuple[Key, ...]:
    """The NADs the VMI's SR-IOV interfaces name: the only NADs :func:`vf_needs` counts VFs of."""
    return tuple(
        nad_key(i.network.multus_name, vmi.namespace)
        for i in vmi.interfaces
        if i.binding == "sriov" and not i.absent and i.network.is_secondary_multus
    )


def facts(vmi: VMIRecord, infra: Infrastructure) -> ClusterFacts:
    """The preflight for ``vmi`` (see the module docstring for each fact)."""
    missing, needs = _networks(vmi, infra)
    nodes = infra.nodes or {}
    source = nodes.get(vmi.node)
    evacuating = vmi.evacuation_node or (vmi.node if source is not None and source.draining else "")
    if not nodes:
        return ClusterFacts(tuple(dict.fromkeys(missing)), evacuating, needs=tuple(sorted(needs.items())))
    targets = infra.targets
    no_target = not targets or (len(targets) == 1 and vmi.node in targets)
    short: tuple[str, ...] = ()
    if needs and not no_target:
        others = [n for n in infra.target_nodes() if n.name != vmi.node]
        if not any(_fits(n, needs, infra) for n in others):
            short = tuple(
                r for r, k in sorted(needs.items()) if not any(infra.free(n, r) >= k for n in others)
            )
            short = short or tuple(sorted(needs))  # each fits somewhere, never all on one node
    return ClusterFacts(
        missing_networks=tuple(dict.fromkeys(missing)),
        evacuating=evacuating,
        no_target_node=no_target,
        needs=tuple(sorted(needs.items())),
        short=short,
    )


def _fits(node: NodeRecord, needs: Mapping[str, int], infra: Infrastructure) -> bool:
    return all(infra.free(node, r) >= k for r, k in needs.items())


__all__ = [
    "NO_FACTS",
    "ClusterFacts",
    "Infrastructure",
    "Trigger",
    "TriggerKind",
    "facts",
    "nad_key",
    "nad_name",
    "sriov_nads",
    "vf_needs",
]
