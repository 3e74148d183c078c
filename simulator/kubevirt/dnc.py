"""Multus dynamic networks controller (DNC), optional: in-place bridge hot plug/unplug, no migration.

With the DNC (and thick Multus) the running virt-launcher pod gains a new bridge network after
virt-controller patches its ``k8s.v1.cni.cncf.io/networks`` annotation, and loses an ``absent`` one.
The simulator applies that to the pod's networks after ``dnc_delay_seconds``;
virt-handler then attaches the NIC (VMI controller). SR-IOV is never plugged in place.
"""

from __future__ import annotations

import structlog

from agent.kubevirt import STATE_ABSENT
from simulator.kubevirt import rules
from simulator.kubevirt.kube import Controller, Key, Obj, key_of
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.dnc")


class DynamicNetworksController(Controller):
    name = "dynamic-networks-controller"

    def __init__(self, world: World) -> None:
        super().__init__(2)
        self.world = world
        world.vmis.add_handler(self._on_vmi)

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        if type_ == "DELETED":
            return
        add, remove = self._changes(obj)
        if add or remove:
            self.queue.add_after(key_of(obj), self.world.config.dnc_delay_seconds)

    def _changes(self, vmi: Obj) -> tuple[set[str], set[str]]:
        spec = vmi.get("spec") or {}
        nets = rules.network_by_name(spec)
        dom = self.world.domain_for(vmi)
        add: set[str] = set()
        remove: set[str] = set()
        for iface in rules.interfaces(spec):
            name = str(iface.get("name"))
            if rules.binding(iface) != "bridge" or not rules.is_secondary_multus(nets.get(name, {})):
                continue
            if iface.get("state") == STATE_ABSENT:
                if name in dom.pod_networks and name not in dom.attached:
                    remove.add(name)
            elif name not in dom.pod_networks:
                add.add(name)
        return add, remove

    async def sync(self, key: Key) -> None:
        vmi = self.world.vmis.get(key)
        if vmi is None:
            return
        add, remove = self._changes(vmi)
        if not add and not remove:
            return
        dom = self.world.domain_for(vmi)
        dom.pod_networks |= add
        dom.pod_networks -= remove
        log.debug(
            "pod networks changed in place", vmi="/".join(key), added=sorted(add), removed=sorted(remove)
        )
        await self.world.node_side_changed(key)
