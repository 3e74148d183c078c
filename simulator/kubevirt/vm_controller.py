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

from agent.model import COND_LIVE_MIGRATABLE, COND_RESTART_REQUIRED, parse_version
from simulator.kubevirt import rules, status
from simulator.kubevirt.kube import VMIS, VMS, Controller, Key, Obj, key_of
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
        ns, name = key
        vm = self.world.vms.get(key)
        vmi = self.world.vmis.get(key)
        kube = self.world.kube
        if vm is None:
            # The VMI watch can be ahead of the VM watch: confirm with the API before acting as the
            # garbage collector for the owner reference.
            if vmi is not None and _owned_by_vm(vmi) and await kube.get(VMS, ns, name) is None:
                await self._stop(vmi)
            return
        if (vm.get("metadata") or {}).get("deletionTimestamp"):
            return
        if not wants_running(vm):
            if vmi is not None:
                await self._stop(vmi)
            await self._sync_status(vm, None)
            return
        if vmi is None:
            node = self.world.pick_node(key)
            await kube.create_revision(start_revision(vm))
            try:
                created = await kube.create(VMIS, ns, vmi_from_vm(vm, node, self.world.version()))
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # AlreadyExists: the VMI watch is behind the VM watch; read it and continue from there.
                existing = await kube.get(VMIS, ns, name)
                if existing is not None:
                    self.world.vmis.write_through(existing)
                    await self.enqueue(key)
                return
            self.world.vmis.write_through(created)
            await self.world.create_launcher(created, node)
            log.debug("vmi created", vmi=f"{ns}/{name}", node=node)
            await self._sync_status(vm, created)
            return
        if (vmi.get("metadata") or {}).get("deletionTimestamp"):
            return
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        vmi_spec = vmi.get("spec") or {}
        vmi_status = vmi.get("status") or {}
        # Hot plug / unplug requests VM → VMI.
        change = rules.propagate(template_spec, vmi_spec)
        if change is None:
            change = rules.cleanup_vmi(vmi_spec, vmi_status)
        if change is not None:
            ops = rules.spec_json_patch(vmi_spec, *change)
            try:
                out = await kube.json_patch(VMIS, ns, name, ops)
            except ApiException as exc:
                if exc.status == 422:  # a `test` failed: our cache is stale; the watch brings the news
                    self.queue.add_after(key, 0.05)
                    return
                raise
            self.world.vmis.write_through(out)
            vmi = out
            vmi_spec = vmi.get("spec") or {}
        # Unplug complete: drop the absent interface from the VM template.
        cleanup = rules.cleanup_vm(template_spec, vmi_spec, vmi_status)
        if cleanup is not None:
            old_tpl = {"networks": template_spec.get("networks"), "domain": template_spec.get("domain") or {}}
            ops = [
                {"op": op["op"], "path": "/spec/template" + op["path"], "value": op["value"]}
                for op in rules.spec_json_patch(old_tpl, *cleanup)
            ]
            try:
                out = await kube.json_patch(VMS, ns, name, ops)
            except ApiException as exc:
                if exc.status == 422:
                    self.queue.add_after(key, 0.05)
                    return
                raise
            self.world.vms.write_through(out)
            vm = out
        await self._sync_status(vm, vmi)

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
