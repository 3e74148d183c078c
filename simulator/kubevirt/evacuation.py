"""virt-controller's evacuation controller: a node carrying KubeVirt's drain taint is emptied by migrations.

What KubeVirt does (v1.7.0 ``pkg/virt-controller/watch/drain/evacuation/evacuation.go``): for every
node with the ``nodeDrainTaintKey`` taint (``kubevirt.io/drain``) it migrates the VMIs running there
that can be live migrated, creating VMIMs with ``generateName: kubevirt-evacuation-`` and the annotation
``kubevirt.io/evacuationMigration: <node>``, no more than the cluster limit allows (unfinished migrations
count) and at most the per-node limit from that node; it looks again every few seconds until the node
is empty. The target pods avoid the node (the taint), so each VM lands elsewhere — with the networks its
VMI spec has now, hot plugs included.

Simulated here: that loop, over the node and VMI caches (every ``pending_requeue`` while a tainted node
still has VMIs). Not simulated: the eviction-API path (``status.evacuationNodeName`` set by virt-api's
pod-eviction webhook), ``evictionStrategy`` per VM (every live-migratable VMI is moved).
"""

from __future__ import annotations

import asyncio

import structlog

from agent.aio import wait_event
from agent.kubevirt import (
    ANNOTATION_EVACUATION,
    COND_LIVE_MIGRATABLE,
    DRAIN_TAINT_KEY,
    KUBEVIRT_EVACUATION_PREFIX,
    VMIMS,
    is_final,
)
from simulator.kubevirt import status
from simulator.kubevirt.kube import Obj, key_of
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.evacuation")


def draining(node: Obj) -> bool:
    return any(t.get("key") == DRAIN_TAINT_KEY for t in (node.get("spec") or {}).get("taints") or [])


class EvacuationController:
    name = "evacuation-controller"

    def __init__(self, world: World) -> None:
        self.world = world
        self._wake = asyncio.Event()
        world.node_objects.add_handler(self._changed)
        world.vmims.add_handler(self._changed)

    async def _changed(self, type_: str, obj: Obj, old: Obj | None) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            busy = await self.evacuate()
            await wait_event(self._wake, self.world.config.pending_requeue if busy else 3600.0)

    async def evacuate(self) -> bool:
        """One pass over the drained nodes; True while one still has VMIs to move."""
        nodes = {key_of(n)[1] for n in self.world.node_objects.cache.values() if draining(n)}
        if not nodes:
            return False
        unfinished = [m for m in self.world.vmims.cache.values() if not is_final(_phase(m))]
        migrating = {(key_of(m)[0], str((m.get("spec") or {}).get("vmiName", ""))) for m in unfinished}
        cluster_limit, node_limit = self.world.limits()
        budget = cluster_limit - len(unfinished)
        from_node: dict[str, int] = {}
        left = False
        for vmi in list(self.world.vmis.cache.values()):
            node = str((vmi.get("status") or {}).get("nodeName", ""))
            if node not in nodes or key_of(vmi) in migrating:
                continue
            lm = status.get_condition(vmi, COND_LIVE_MIGRATABLE)
            if lm is None or lm.get("status") != "True":
                continue
            left = True
            if budget <= 0 or from_node.get(node, 0) >= node_limit:
                continue
            await self._migrate(vmi, node)
            budget -= 1
            from_node[node] = from_node.get(node, 0) + 1
        return left

    async def _migrate(self, vmi: Obj, node: str) -> None:
        ns, name = key_of(vmi)
        body: Obj = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstanceMigration",
            "metadata": {
                "generateName": KUBEVIRT_EVACUATION_PREFIX,
                "namespace": ns,
                "annotations": {ANNOTATION_EVACUATION: node},
            },
            "spec": {"vmiName": name},
        }
        created = await self.world.kube.create(VMIMS, ns, body)
        self.world.vmims.write_through(created)
        log.info("evacuation migration created", vmi=f"{ns}/{name}", node=node)


def _phase(vmim: Obj) -> str:
    return str((vmim.get("status") or {}).get("phase", ""))


__all__ = ["EvacuationController", "draining"]
