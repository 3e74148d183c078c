"""KubeVirt ≥ 1.6 workload updater, LiveMigrate path "
"(HEAD:pkg/virt-controller/watch/workload-updater/workload-updater.go).

Each pass (at most one every 5 s real, scaled by ``time_scale``) creates up to
``parallelMigrationsPerCluster - unfinished migrations`` VMIMs (``generateName: kubevirt-workload-update-``,
annotation ``kubevirt.io/workloadUpdateMigration: ""``), in random order, for VMIs with
``MigrationRequired=True`` (``isHotplugInProgress``) that are ``LiveMigratable=True``, not migrating and
without an
unfinished VMIM — only when the KubeVirt CR is ``Deployed`` and lists ``LiveMigrate``.
Candidates and unfinished VMIMs are kept as sets updated per watch event (no scan of all VMIs per pass).
Not simulated: ``Evict`` (would restart VMs), ``spec.priority`` (v1.7+), the VMI ``SuccessfulCreate`` event.
"""

from __future__ import annotations

import asyncio

import structlog
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import (
    ANNOTATION_WORKLOAD_UPDATE,
    COND_LIVE_MIGRATABLE,
    COND_MIGRATION_REQUIRED,
    KUBEVIRT_WORKLOAD_UPDATE_PREFIX,
    VMIMS,
    WORKLOAD_UPDATE_LIVE_MIGRATE,
    is_final,
    parse_version,
)
from simulator.kubevirt import status
from simulator.kubevirt.kube import Key, Obj, key_of
from simulator.kubevirt.vm_controller import is_migrating
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.workload_updater")


class WorkloadUpdater:
    name = "workload-updater"

    def __init__(self, world: World) -> None:
        self.world = world
        self.candidates: set[Key] = set()
        self.unfinished: dict[Key, Key] = {}  # vmim key → vmi key
        self.busy_vmis: dict[Key, int] = {}
        world.vmis.add_handler(self._on_vmi)
        world.vmims.add_handler(self._on_vmim)

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        key = key_of(obj)
        mr = status.get_condition(obj, COND_MIGRATION_REQUIRED)
        lm = status.get_condition(obj, COND_LIVE_MIGRATABLE)
        if (
            type_ != "DELETED"
            and mr is not None
            and mr.get("status") == "True"
            and lm is not None
            and lm.get("status") == "True"
            and not is_migrating(obj)
        ):
            self.candidates.add(key)
        else:
            self.candidates.discard(key)

    async def _on_vmim(self, type_: str, obj: Obj, old: Obj | None) -> None:
        key = key_of(obj)
        vmi_key = (key[0], str((obj.get("spec") or {}).get("vmiName", "")))
        done = type_ == "DELETED" or is_final(str((obj.get("status") or {}).get("phase", "")))
        if done:
            if self.unfinished.pop(key, None) is not None:
                self.busy_vmis[vmi_key] -= 1
                if self.busy_vmis[vmi_key] <= 0:
                    del self.busy_vmis[vmi_key]
        elif key not in self.unfinished:
            self.unfinished[key] = vmi_key
            self.busy_vmis[vmi_key] = self.busy_vmis.get(vmi_key, 0) + 1

    def enabled(self) -> bool:
        parsed = parse_version(self.world.version())
        kv = self.world.kubevirt() or {}
        deployed = (kv.get("status") or {}).get("phase") == "Deployed"
        return (
            parsed is not None
            and parsed >= (1, 6, 0)
            and deployed
            and WORKLOAD_UPDATE_LIVE_MIGRATE in self.world.workload_update_methods()
        )

    async def run_pass(self) -> int:
        if not self.enabled():
            return 0
        limit, _ = self.world.limits()
        free = limit - len(self.unfinished)
        if free <= 0:
            return 0
        keys = sorted(k for k in self.candidates if k not in self.busy_vmis)
        self.world.rng.shuffle(keys)
        created = 0
        for ns, name in keys[:free]:
            body: Obj = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstanceMigration",
                "metadata": {
                    "generateName": KUBEVIRT_WORKLOAD_UPDATE_PREFIX,
                    "namespace": ns,
                    "annotations": {ANNOTATION_WORKLOAD_UPDATE: ""},
                },
                "spec": {"vmiName": name},
            }
            try:
                out = await self.world.kube.create(VMIMS, ns, body)
            except ApiException as exc:
                log.info("workload update migration not created", vmi=f"{ns}/{name}", status=exc.status)
                continue
            self.world.vmims.write_through(out)
            await self._on_vmim("ADDED", out, None)
            created += 1
        return created

    async def run(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.world.config.updater_interval))
            await self.run_pass()
