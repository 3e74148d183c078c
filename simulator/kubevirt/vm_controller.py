"""virt-controller's VM controller, network part: VMI lifecycle, hot-plug propagation, cleanup, VM status.

Sources: pkg/virt-controller/watch/vm/vm.go (VMI creation with its start ControllerRevision,
``addRestartRequiredIfNeeded`` per release, printable status), pkg/network/controllers/vm.go
(``applyDynamicIfaceRequestOnVMI`` as a JSON patch with ``test`` ops,
``clearDetachedIfacesFromVMI``/``clearDetachedIfacesFromVM``), pkg/network/vmliveupdate/restart.go
(``IsRestartRequired``).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import COND_LIVE_MIGRATABLE, COND_RESTART_REQUIRED, VMIS, VMS, parse_version
from simulator.kubevirt import rules, status
from simulator.kubevirt.kube import Controller, Key, Obj, key_of
from simulator.kubevirt.world import World, start_revision, vmi_from_vm

log = structlog.get_logger("simulator.kubevirt.vm")

RUNNING_STRATEGIES = frozenset({"Always", "RerunOnFailure", "Once"})


def wants_running(vm: Obj) -> bool:
    spec = vm.get("spec") or {}
    if spec.get("running") is True:
        return True
    return spec.get("runStrategy") in RUNNING_STRATEGIES


def is_migrating(vmi: Obj) -> bool:
    """``migrations.IsMigrating``: a migration started and neither completed nor failed."""
    ms = (vmi.get("status") or {}).get("migrationState") or {}
    return bool(ms.get("startTimestamp")) and not ms.get("completed") and not ms.get("failed")


class VMController(Controller):
    name = "vm-controller"

    def __init__(self, world: World) -> None:
        super().__init__(world.config.workers)
        self.world = world
        world.vms.add_handler(self._on_vm)
        world.vmis.add_handler(self._on_vmi)
        #: VMI uids whose VM got RestartRequired: sticky until the VMI is recreated (restart).
        self._restart_required: set[str] = set()
        #: VMI uid → the VM spec it started from (its start ControllerRevision's data), None if it has none.
        self._start_specs: dict[str, Obj | None] = {}

    async def _on_vm(self, type_: str, obj: Obj, old: Obj | None) -> None:
        await self.enqueue(key_of(obj))

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        if type_ == "DELETED":
            uid = str((obj.get("metadata") or {}).get("uid", ""))
            self._restart_required.discard(uid)
            self._start_specs.pop(uid, None)
        await self.enqueue(key_of(obj))

    async def sync(self, key: Key) -> None:
        vm = self.world.vms.get(key)
        vmi = self.world.vmis.get(key)
        if vm is None:
            await self._collect_orphan(key, vmi)
            return
        if (vm.get("metadata") or {}).get("deletionTimestamp"):
            return
        if not wants_running(vm):
            if vmi is not None:
                await self._stop(vmi)
            await self._sync_status(vm, None)
            return
        if vmi is None:
            await self._start(key, vm)
            return
        if (vmi.get("metadata") or {}).get("deletionTimestamp"):
            return
        vmi = await self._sync_vmi_interfaces(key, vm, vmi)
        if vmi is None:
            return
        vm = await self._clean_template(key, vm, vmi)
        if vm is not None:
            await self._sync_status(vm, vmi)

    async def _collect_orphan(self, key: Key, vmi: Obj | None) -> None:
        """No VM: the VMI watch can be ahead of the VM watch, so confirm with the API before acting as
        the garbage collector for the owner reference."""
        if vmi is not None and _owned_by_vm(vmi) and await self.world.kube.get(VMS, *key) is None:
            await self._stop(vmi)

    async def _start(self, key: Key, vm: Obj) -> None:
        """Start the VM: its start revision, then its VMI (already Running on a node, see ``vmi_from_vm``)."""
        kube = self.world.kube
        node = self.world.pick_node(key)
        await kube.create_revision(start_revision(vm))
        try:
            created = await kube.create(VMIS, key[0], vmi_from_vm(vm, node, self.world.version()))
        except ApiException as exc:
            if exc.status != 409:
                raise
            # AlreadyExists: the VMI watch is behind the VM watch; read it and continue from there.
            existing = await kube.get(VMIS, *key)
            if existing is not None:
                self.world.vmis.write_through(existing)
                await self.enqueue(key)
            return
        self.world.vmis.write_through(created)
        await self.world.create_launcher(created, node)
        log.debug("vmi created", vmi=f"{key[0]}/{key[1]}", node=node)
        await self._sync_status(vm, created)

    async def _sync_vmi_interfaces(self, key: Key, vm: Obj, vmi: Obj) -> Obj | None:
        """Hot plug / unplug requests VM → VMI, and detached interfaces out of the VMI spec. Returns the
        VMI as it is now, None when a stale cache made the patch fail (re-queued)."""
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        vmi_spec = vmi.get("spec") or {}
        change = rules.propagate(template_spec, vmi_spec) or rules.cleanup_vmi(
            vmi_spec, vmi.get("status") or {}
        )
        if change is None:
            return vmi
        out = await self._patch(key, VMIS, rules.spec_json_patch(vmi_spec, *change))
        if out is not None:
            self.world.vmis.write_through(out)
        return out

    async def _clean_template(self, key: Key, vm: Obj, vmi: Obj) -> Obj | None:
        """Unplug complete: drop the absent interface from the VM template. Returns the VM as it is now,
        None when a stale cache made the patch fail (re-queued)."""
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        cleanup = rules.cleanup_vm(template_spec, vmi.get("spec") or {}, vmi.get("status") or {})
        if cleanup is None:
            return vm
        old_tpl = {"networks": template_spec.get("networks"), "domain": template_spec.get("domain") or {}}
        ops = [
            {"op": op["op"], "path": "/spec/template" + op["path"], "value": op["value"]}
            for op in rules.spec_json_patch(old_tpl, *cleanup)
        ]
        out = await self._patch(key, VMS, ops)
        if out is not None:
            self.world.vms.write_through(out)
        return out

    async def _patch(self, key: Key, plural: str, ops: list[Obj]) -> Obj | None:
        """A JSON patch with ``test`` ops; a failed test (422) means our cache is stale: the watch brings
        the news, the key is looked at again shortly (None)."""
        try:
            return await self.world.kube.json_patch(plural, key[0], key[1], ops)
        except ApiException as exc:
            if exc.status == 422:
                self.queue.add_after(key, 0.05)
                return None
            raise

    async def _stop(self, vmi: Obj) -> None:
        """Delete the VMI and its virt-launcher pods (the garbage collector's part, by owner)."""
        for pod in self.world.launcher_pods(vmi):
            await self.world.delete_pod(pod)
        await self.world.kube.delete(VMIS, *key_of(vmi))

    async def _sync_status(self, vm: Obj, vmi: Obj | None) -> None:
        ns, name = key_of(vm)
        old = vm.get("status") or {}
        conds: list[dict[str, Any]] = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
        now = time.time()
        new: dict[str, Any] = {}
        if vmi is None:
            new["printableStatus"] = "Stopped"
            new["ready"] = False
            new["created"] = False
            conds = status.remove_condition(conds, COND_RESTART_REQUIRED)
            conds = status.remove_condition(conds, "Ready")
            conds = status.remove_condition(conds, COND_LIVE_MIGRATABLE)
        else:
            ready = status.get_condition(vmi, "Ready")
            migratable = status.get_condition(vmi, COND_LIVE_MIGRATABLE)
            new["printableStatus"] = "Migrating" if is_migrating(vmi) else "Running"
            new["ready"] = bool(ready and ready.get("status") == "True")
            new["created"] = True
            for src in (ready, migratable):
                if src is not None:
                    conds = status.set_condition(
                        conds,
                        str(src["type"]),
                        str(src["status"]),
                        str(src.get("reason", "")),
                        str(src.get("message", "")),
                        now,
                    )
            uid = str((vmi.get("metadata") or {}).get("uid", ""))
            if uid not in self._restart_required and await self._needs_restart(vm, vmi, migratable):
                self._restart_required.add(uid)
            if uid in self._restart_required:
                conds = status.set_condition(
                    conds, COND_RESTART_REQUIRED, "True", message=rules.RESTART_REQUIRED_MESSAGE, now=now
                )
            else:
                conds = status.remove_condition(conds, COND_RESTART_REQUIRED)
        new["conditions"] = conds
        if all(old.get(k) == v for k, v in new.items()):
            return
        out = await self.world.kube.merge_patch(VMS, ns, name, {"status": new}, status=True)
        self.world.vms.write_through(out)

    async def _needs_restart(self, vm: Obj, vmi: Obj, migratable: Obj | None) -> bool:
        uid = str((vmi.get("metadata") or {}).get("uid", ""))
        name = str((vmi.get("status") or {}).get("virtualMachineRevisionName") or "")
        if name.endswith(f"-{(vm.get('metadata') or {}).get('generation', '')}"):
            return False  # the template is the one the VMI started from (the name ends in its generation)
        if uid not in self._start_specs:
            revision = await self.world.kube.get_revision(key_of(vmi)[0], name) if name else None
            data = (revision or {}).get("data")
            spec = data.get("spec") if isinstance(data, dict) else None
            self._start_specs[uid] = spec if isinstance(spec, dict) else None
        start = self._start_specs[uid]
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        start_template = ((start or {}).get("template") or {}).get("spec") if start is not None else None
        return rules.restart_required(
            parse_version(self.world.version()),
            start_template if isinstance(start_template, dict) else None,
            template_spec,
            vmi.get("spec") or {},
            vmi_migratable=bool(migratable and migratable.get("status") == "True"),
            live_update=self.world.live_update(),
        )


def _owned_by_vm(vmi: Obj) -> bool:
    refs = (vmi.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(r, dict) and r.get("kind") == "VirtualMachine" for r in refs)
