"""VMI status: virt-controller's VMI part (simulated) and virt-handler's (the shared node side).

What it writes:

* virt-handler's part, from :mod:`simulator.kubevirt.node`: ``status.interfaces`` from the pod's networks
  (``multus-status``; on a real cluster virt-controller writes that part from the pod's Multus
  ``network-status``, HEAD:pkg/network/controllers/vmi.go) and the domain's devices
  (``domain, guest-agent``), hot attach/detach with ``Synchronized=False`` "No more available PCI slots"
  when no root port is free, ``LiveMigratable``;
* virt-controller's part, KubeVirt ≥ 1.6: ``MigrationRequired`` (HEAD:pkg/network/migration/evaluator.go,
  HEAD:pkg/virt-controller/watch/vmi/lifecycle.go:1193-1243 ``syncMigrationRequiredCondition``): SR-IOV plug →
  True/AutoMigrationDueToLiveUpdate at once; bridge plug or unplug → False/AutoMigrationPending, flipped to
  True
  after the dynamic-networks grace period (15 s, scaled); not re-evaluated while migrating.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import structlog
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import (
    COND_MIGRATION_REQUIRED,
    REASON_AUTO_MIGRATION_DUE_TO_LIVE_UPDATE,
    REASON_AUTO_MIGRATION_PENDING,
    VMIS,
    parse_timestamp,
    parse_version,
)
from simulator.kubevirt import node, pci, rules, status
from simulator.kubevirt.kube import Controller, Key, Obj, key_of
from simulator.kubevirt.vm_controller import is_migrating
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.vmi")


def desired_status(
    vmi: Obj,
    domain: pci.Domain,
    *,
    version: str,
    now: float,
    grace: float,
    sync_error: str,
) -> tuple[dict[str, Any], float | None]:
    """The VMI status KubeVirt would converge to, and when to re-evaluate (grace period), if needed."""
    spec = vmi.get("spec") or {}
    new = node.handler_status(vmi, domain, now=now, sync_error=sync_error)
    conds: list[dict[str, Any]] = new["conditions"]
    requeue: float | None = None
    parsed = parse_version(version)
    if parsed is not None and parsed >= (1, 6, 0) and not is_migrating(vmi):
        urgency = rules.migration_urgency(spec, {"interfaces": new["interfaces"]})
        current = next((c for c in conds if c.get("type") == COND_MIGRATION_REQUIRED), None)
        if urgency is None:
            conds = status.remove_condition(conds, COND_MIGRATION_REQUIRED)
        elif urgency == "immediate" or (current is not None and current.get("status") == "True"):
            conds = status.set_condition(
                conds, COND_MIGRATION_REQUIRED, "True", REASON_AUTO_MIGRATION_DUE_TO_LIVE_UPDATE, now=now
            )
        else:
            since = now
            if current is not None and current.get("lastTransitionTime"):
                try:
                    since = parse_timestamp(str(current["lastTransitionTime"]))
                except ValueError:
                    since = now
            if current is not None and now - since >= grace:
                conds = status.set_condition(
                    conds, COND_MIGRATION_REQUIRED, "True", REASON_AUTO_MIGRATION_DUE_TO_LIVE_UPDATE, now=now
                )
            else:
                conds = status.set_condition(
                    conds, COND_MIGRATION_REQUIRED, "False", REASON_AUTO_MIGRATION_PENDING, now=now
                )
                requeue = max(0.0, since + grace - now) + 0.001
    new["conditions"] = conds
    return new, requeue


class VMIController(Controller):
    name = "vmi-controller"

    def __init__(self, world: World) -> None:
        super().__init__(world.config.workers)
        self.world = world
        world.vmis.add_handler(self._on_vmi)
        world.on_node_side_change(self.enqueue)
        self._sync_failed_reported: set[str] = set()

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        if type_ == "DELETED":
            self.world.domains.pop(key_of(obj), None)
            return
        await self.enqueue(key_of(obj))

    async def sync(self, key: Key) -> None:
        for _ in range(5):
            vmi = self.world.vmis.get(key)
            if vmi is None or (vmi.get("metadata") or {}).get("deletionTimestamp"):
                return
            if (vmi.get("status") or {}).get("phase") != "Running":
                return
            domain = self.world.domain_for(vmi)
            error = node.handler_sync(vmi.get("spec") or {}, domain)
            new_status, requeue = desired_status(
                vmi,
                domain,
                version=self.world.version(),
                now=time.time(),
                grace=self.world.config.grace_seconds,
                sync_error=error,
            )
            if requeue is not None:
                self.queue.add_after(key, requeue)
            if new_status == (vmi.get("status") or {}):
                return
            body = copy.copy(vmi)
            body["status"] = new_status
            try:
                out = await self.world.kube.replace(VMIS, body)
            except ApiException as exc:
                if exc.status == 409:
                    fresh = await self.world.kube.get(VMIS, *key)
                    if fresh is None:
                        return
                    self.world.vmis.write_through(fresh)
                    continue
                if exc.status == 404:
                    return
                raise
            self.world.vmis.write_through(out)
            uid = str((out.get("metadata") or {}).get("uid", ""))
            if error and uid not in self._sync_failed_reported:
                self._sync_failed_reported.add(uid)
                await self.world.kube.event(out, "VirtualMachineInstance", "SyncFailed", error, "Warning")
            elif not error:
                self._sync_failed_reported.discard(uid)
            return
        self.queue.add_after(key, 0.05)
