"""KubeVirt ≥ 1.6 workload updater, LiveMigrate path, at KubeVirt's own timing
(v1.7.0 ``pkg/virt-controller/watch/workload-updater/workload-updater.go``).

**What a pass does** (``sync``): it creates up to ``parallelMigrationsPerCluster`` minus the *running*
migrations (``FilterRunningMigrations``: ``IsRunning()`` phases only; Pending and unset VMIMs — its own,
the agent's, a user's — do not count) VMIMs (``generateName: kubevirt-workload-update-``, annotation
``kubevirt.io/workloadUpdateMigration: ""``), in random order (``rand.Shuffle``), for VMIs with
``MigrationRequired=True`` (``isHotplugInProgress``) that are ``LiveMigratable=True``, not migrating and
without an unfinished VMIM — only when the KubeVirt CR is ``Deployed`` and lists ``LiveMigrate``.

**When a pass runs** (one key, one worker):

* a VMIM added, updated or deleted, a VMI updated while a hot plug is in progress and not migrating,
  a KubeVirt CR change: ``AddAfter(key, 5 s)`` (the earliest pending time wins);
* a pass that leaves candidates re-enqueues itself at once (``AddAfter(key, 30)``: 30 ns);
* a pass is skipped (and nothing re-enqueued) until its previous creations are observed in the
  informer (``migrationExpectations``). Whether the immediate re-run after a creating pass does
  anything is a race between the workqueue and the informer; on the real tier (v1.7.0, the
  ``bench.drain_real`` logs) the informer usually wins: the next pass follows within about 60 ms,
  still counts its new Pending migrations as free budget, and creates more (which then wait for the
  migration controller's 5 s re-check). The simulator runs that pass when the creations are observed
  within :data:`RERUN_WINDOW_SECONDS`; later, the next event's 5 s applies;
* while it has candidates and no budget it re-runs at once and takes a slot the moment one frees. The
  simulator does not spin: a pass that created nothing with candidates left waits for the next VMIM or
  VMI event, then runs at once, which is when a spinning updater would see the change.

Candidates, unfinished and running VMIMs are kept as sets updated per watch event (no scan of all VMIs
per pass). Not simulated: ``Evict`` (would restart VMs), ``spec.priority`` (v1.7+), the VMI
``SuccessfulCreate`` event, the deployment-ID check, the outdated-launcher candidates.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from kubernetes_asyncio.client.exceptions import ApiException

from agent.aio import wait_event
from agent.kubevirt import (
    ANNOTATION_WORKLOAD_UPDATE,
    COND_LIVE_MIGRATABLE,
    COND_MIGRATION_REQUIRED,
    KUBEVIRT_WORKLOAD_UPDATE_PREFIX,
    VMIMS,
    WORKLOAD_UPDATE_LIVE_MIGRATE,
    is_final,
    is_running,
    parse_version,
)
from simulator.kubevirt import status
from simulator.kubevirt.kube import Key, Obj, key_of
from simulator.kubevirt.vm_controller import is_migrating
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.workload_updater")

#: How soon after a creating pass its creations must be observed for the immediate re-run to act
#: (real seconds: informer latency does not scale with the simulated time).
RERUN_WINDOW_SECONDS = 0.1


class WorkloadUpdater:
    name = "workload-updater"

    def __init__(self, world: World) -> None:
        self.world = world
        self.candidates: set[Key] = set()
        self.unfinished: dict[Key, Key] = {}  # vmim key → vmi key
        self.running: set[Key] = set()  # unfinished VMIMs in an IsRunning phase
        self.busy_vmis: dict[Key, int] = {}
        #: Our creations not yet seen in the informer (``migrationExpectations``).
        self.expected = 0
        #: The last pass left candidates and created nothing: the next event runs a pass at once.
        self.spinning = False
        #: Until when the re-run after a creating pass acts if the creations are observed by then.
        self._rerun_until = 0.0
        self._due: float | None = None
        self._wake = asyncio.Event()
        world.vmis.add_handler(self._on_vmi)
        world.vmims.add_handler(self._on_vmim)
        world.kubevirts.add_handler(self._on_kubevirt)

    # -- the queue of the one key ---------------------------------------------------------------------

    def _add_after(self, delay: float) -> None:
        due = time.monotonic() + delay
        if self._due is None or due < self._due:
            self._due = due
            self._wake.set()

    def _event(self) -> None:
        self._add_after(0.0 if self.spinning else self.world.config.updater_interval)

    # -- informer handlers ----------------------------------------------------------------------------

    async def _on_vmi(self, type_: str, obj: Obj, old: Obj | None) -> None:
        key = key_of(obj)
        mr = status.get_condition(obj, COND_MIGRATION_REQUIRED)
        lm = status.get_condition(obj, COND_LIVE_MIGRATABLE)
        in_progress = mr is not None and mr.get("status") == "True"
        migrating = is_migrating(obj)
        migratable = lm is not None and lm.get("status") == "True"
        if type_ != "DELETED" and in_progress and migratable and not migrating:
            self.candidates.add(key)
        else:
            self.candidates.discard(key)
        if type_ == "MODIFIED" and in_progress and not migrating:
            self._event()

    async def _on_vmim(self, type_: str, obj: Obj, old: Obj | None) -> None:
        key = key_of(obj)
        vmi_key = (key[0], str((obj.get("spec") or {}).get("vmiName", "")))
        phase = str((obj.get("status") or {}).get("phase", ""))
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if type_ == "ADDED" and ANNOTATION_WORKLOAD_UPDATE in annotations and self.expected > 0:
            self.expected -= 1
            if self.expected == 0 and time.monotonic() <= self._rerun_until:
                self._add_after(0.0)  # the 30 ns re-run finds the creations observed
        done = type_ == "DELETED" or is_final(phase)
        if done:
            self.running.discard(key)
            if self.unfinished.pop(key, None) is not None:
                self.busy_vmis[vmi_key] -= 1
                if self.busy_vmis[vmi_key] <= 0:
                    del self.busy_vmis[vmi_key]
        else:
            if key not in self.unfinished:
                self.unfinished[key] = vmi_key
                self.busy_vmis[vmi_key] = self.busy_vmis.get(vmi_key, 0) + 1
            if is_running(phase):
                self.running.add(key)
        self._event()

    async def _on_kubevirt(self, type_: str, obj: Obj, old: Obj | None) -> None:
        self._event()

    # -- the pass -------------------------------------------------------------------------------------

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
        """One ``execute`` of the key: nothing while creations are unobserved or when disabled; else
        create up to the budget. Returns the VMIMs created."""
        self.spinning = False
        if self.expected > 0 or not self.enabled():
            return 0
        keys = sorted(k for k in self.candidates if k not in self.busy_vmis)
        if not keys:
            return 0
        limit, _ = self.world.limits()
        free = max(0, limit - len(self.running))
        self.world.rng.shuffle(keys)
        chosen = keys[:free]
        self.expected = len(chosen)
        created = 0
        for ns, name in chosen:
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
                self.expected = max(0, self.expected - 1)  # KubeVirt counts a failed create as observed
                continue
            self.world.vmims.write_through(out)
            created += 1
        # Candidates were left: KubeVirt re-enqueues the key after 30 ns. After creations that pass
        # does something only if they are observed by then; with nothing created it would re-run
        # without end, which the simulator replaces by a pass at the next event.
        if self.expected == 0 and chosen:
            self._add_after(0.0)
        elif chosen:
            self._rerun_until = time.monotonic() + RERUN_WINDOW_SECONDS
        else:
            self.spinning = True
        return created

    async def run(self) -> None:
        while True:
            timeout = None if self._due is None else max(0.0, self._due - time.monotonic())
            if timeout is None or timeout > 0:
                self._wake.clear()
                await wait_event(self._wake, timeout)
                continue
            self._due = None
            await self.run_pass()
            await asyncio.sleep(0)
