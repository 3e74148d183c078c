"""virt-controller's migration controller: the VMIM phase machine, cluster/node limits, cancel, hand-off.

Sources in KubeVirt: phases and transitions
HEAD:pkg/virt-controller/watch/migration/migration.go:715-855;
limits HEAD:…/migration.go:1355-1400 (over a limit a VMIM stays Pending; running = ``IsRunning()``) and
their timing (v1.7.0 ``handleTargetPodCreation``: a Pending VMIM over a limit is re-checked after
5 s, nothing wakes it when a slot frees; with the ``MigrationPriorityQueue`` feature gate, v1.7+,
after 1/3/5 s by ``spec.priority``, and a finished migration re-enqueues the highest-priority Pending
ones, ``reEnqueueHighestPriorityPendingMigrations``); the backoff of a workload-update or evacuation
VMIM after a failed one (``handleMigrationBackoff``: 20 s, doubling);
finalizer ``kubevirt.io/migrationJobFinalize``; delete before completion = cancel
(``handlePreHandoffMigrationCancel``, "Migration failed due to being canceled"); events
``SuccessfulMigration``/``FailedMigration``; GC of finalized VMIMs beyond 5 per VMI.

The target pod, as v1.7.0 renders and places it: a NetworkAttachmentDefinition one of the VMI's networks
names is missing → the VMIM stays ``Pending``, re-queued ("failed to render launch manifest: failed to
locate network attachment definition ns/name"), until the NAD exists or the VMIM is deleted; the pod is
placed by the scheduler's filters (:mod:`simulator.kubevirt.scheduling`: Ready, not cordoned or
drained, another node than the source, the SR-IOV VFs its interfaces need free); one no node fits stays
``Pending`` (the VMIM in ``Scheduling``) until the ``unschedulablePendingTimeoutSeconds`` (300 s) pass,
then it is deleted and the migration fails. A succeeded migration ends the source pod (``Succeeded``),
a failed or cancelled one deletes the target pod.

Simulated, not real: the target pod's networks are captured when the VMIM enters Scheduling (an
interface plugged later misses this migration, as on a real cluster), phase durations drawn from a
configurable distribution, a seeded failure/stuck fate per VMIM.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from typing import Any, Final

import structlog
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import (
    ANNOTATION_EVACUATION,
    ANNOTATION_WORKLOAD_UPDATE,
    LABEL_NODE_NAME,
    LABEL_VMI_NAME,
    PHASE_FAILED,
    PHASE_PENDING,
    PHASE_RUNNING,
    PHASE_SCHEDULED,
    PHASE_SCHEDULING,
    PHASE_SUCCEEDED,
    STATE_ABSENT,
    VMIMS,
    VMIS,
    is_final,
    is_running,
    parse_timestamp,
    parse_version,
)
from simulator.kubevirt import pci, rules, status
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.kube import ConflictError, Controller, Key, Obj, key_of
from simulator.kubevirt.node import NEXT_STEP as NEXT
from simulator.kubevirt.node import MigrationPlan, plan_migration
from simulator.kubevirt.pods import MIGRATION_JOB_LABEL
from simulator.kubevirt.scheduling import labels_of, terminated
from simulator.kubevirt.world import World

log = structlog.get_logger("simulator.kubevirt.migration")

FINALIZER: Final = "kubevirt.io/migrationJobFinalize"
CANCELED_REASON: Final = "Migration failed due to being canceled"
#: virt-controller's log line when it cannot render the target pod for a missing NAD (v1.7.0).
NAD_MISSING_MESSAGE: Final = (
    "failed to render launch manifest: failed to locate network attachment definition"
)
UNSCHEDULABLE_REASON: Final = "target pod was unschedulable past the unschedulable pending timeout"
FAILED_REASON: Final = "source node reported migration failed"
SUCCEEDED_MESSAGE: Final = "Source node reported migration succeeded"
#: The feature gate of KubeVirt's migration priority queue (v1.7 alpha, v1.8 beta, off by default).
PRIORITY_QUEUE_GATE: Final = "MigrationPriorityQueue"
#: ``spec.priority`` → re-check delay of a Pending migration over a limit, with the gate (seconds).
PRIORITY_REQUEUE_SECONDS: Final = {"system-critical": 1.0, "user-triggered": 3.0}


def unfinished(vmim: Obj) -> bool:
    return not is_final(str((vmim.get("status") or {}).get("phase", "")))


class MigrationController(Controller):
    name = "migration-controller"

    def __init__(self, world: World) -> None:
        super().__init__(world.config.workers)
        self.world = world
        self.plans: dict[str, MigrationPlan] = {}
        #: VMIMs counted against the limits (IsRunning), with their source node.
        self.running: dict[Key, str] = {}
        #: Pending VMIMs in arrival order (re-enqueued when a slot frees, with the priority-queue gate).
        self.pending: OrderedDict[Key, None] = OrderedDict()
        #: Unfinished VMIMs per VMI → their creationTimestamp (the "another migration in progress" check).
        self.unfinished_by_vmi: dict[Key, dict[Key, str]] = {}
        #: Migrations planned per VMI (the attempt number of :func:`sized_plan`).
        self.attempts: dict[Key, int] = {}
        #: Finalized VMIMs per VMI, oldest first (garbage collection beyond the kept count).
        self.finalized: dict[Key, OrderedDict[Key, None]] = {}
        world.vmims.add_handler(self._on_vmim)

    # -- bookkeeping --------------------------------------------------------------------------------

    def _track(self, obj: Obj, deleted: bool = False) -> None:
        key = key_of(obj)
        st = obj.get("status") or {}
        phase = str(st.get("phase", ""))
        # Monotonic: a VMIM never goes back to Pending, so a stale Pending event must not un-count one
        # this controller already admitted (its own write may be ahead of the watch).
        if deleted or is_final(phase):
            self.running.pop(key, None)
        elif is_running(phase):
            self.running[key] = str((st.get("migrationState") or {}).get("sourceNode", ""))
        if deleted or phase != PHASE_PENDING:
            self.pending.pop(key, None)
        vmi_key = (key[0], str((obj.get("spec") or {}).get("vmiName", "")))
        if deleted or is_final(phase):
            active = self.unfinished_by_vmi.get(vmi_key)
            if active is not None:
                active.pop(key, None)
                if not active:
                    del self.unfinished_by_vmi[vmi_key]
        elif phase:
            created = str((obj.get("metadata") or {}).get("creationTimestamp", ""))
            self.unfinished_by_vmi.setdefault(vmi_key, {})[key] = created
        if deleted:
            bucket = self.finalized.get(vmi_key)
            if bucket is not None:
                bucket.pop(key, None)
        elif is_final(phase):
            self.finalized.setdefault(vmi_key, OrderedDict())[key] = None

    async def _on_vmim(self, type_: str, obj: Obj, old: Obj | None) -> None:
        freed = key_of(obj) in self.running
        self._track(obj, deleted=type_ == "DELETED")
        if type_ == "DELETED":
            self.plans.pop(str((obj.get("metadata") or {}).get("uid", "")), None)
        else:
            await self.enqueue(key_of(obj))
        if freed and key_of(obj) not in self.running:
            await self._slot_freed()

    def _priority_queue(self) -> bool:
        """The ``MigrationPriorityQueue`` gate is on (it exists from v1.7.0)."""
        parsed = parse_version(self.world.version())
        gates = _feature_gates(self.world)
        return parsed is not None and parsed >= (1, 7, 0) and PRIORITY_QUEUE_GATE in gates

    def _requeue_delay(self, vmim: Obj) -> float:
        """How long a Pending VMIM over a limit waits for its next check (scaled)."""
        seconds = self.world.config.pending_requeue_seconds
        if self._priority_queue():
            priority = str((vmim.get("spec") or {}).get("priority", ""))
            seconds = PRIORITY_REQUEUE_SECONDS.get(priority, seconds)
        return seconds * self.world.config.time_scale

    async def _slot_freed(self) -> None:
        """A migration became final. Only with the priority-queue gate does KubeVirt re-check the
        Pending ones now (highest priority first, as many as the cluster limit); without it each
        waits for its own re-check."""
        if not self._priority_queue() or not self.pending:
            return
        cluster_limit, _ = self.world.limits()

        def rank(key: Key) -> int:
            priority = str(((self.world.vmims.get(key) or {}).get("spec") or {}).get("priority", ""))
            return -PRIORITY_RANK.get(priority, 0)

        for key in sorted(self.pending, key=rank)[:cluster_limit]:
            await self.enqueue(key)

    def _backoff_left(self, vmi_key: Key, vmim: Obj, now: float) -> float:
        """Seconds this workload-update/evacuation VMIM must still wait after the VMI's failed ones."""
        if not _backoff_eligible(vmim):
            return 0.0
        keys = [*self.finalized.get(vmi_key, {}), *self.unfinished_by_vmi.get(vmi_key, {})]
        eligible = [o for o in (self.world.vmims.get(k) for k in set(keys)) if o and _backoff_eligible(o)]
        if len(eligible) < 2:
            return 0.0
        eligible.sort(key=lambda o: (_created(o), key_of(o)), reverse=True)
        if key_of(eligible[0]) != key_of(vmim):
            return 0.0
        backoff = 0.0
        for older in eligible[1:]:
            phase = str((older.get("status") or {}).get("phase", ""))
            if phase == PHASE_SUCCEEDED:
                break
            if (older.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if phase == PHASE_FAILED:
                backoff = 2 * backoff if backoff else self.world.config.migration_backoff
        if not backoff:
            return 0.0
        return _failed_at(eligible[1]) + backoff - now

    def _plan(self, source: str, vmi_key: Key, vmi: Obj) -> MigrationPlan:
        config = self.world.config
        if config.migration_seconds_per_gib <= 0:
            return plan_migration(config, self.world.rng, source, self.world.nodes)
        attempt = self.attempts.get(vmi_key, 0)
        self.attempts[vmi_key] = attempt + 1
        gib = (pci.memory_bytes(vmi.get("spec") or {}) or 0) / 2**30
        return sized_plan(config, vmi_key, attempt, gib, source, self.world.nodes)

    # -- writes -------------------------------------------------------------------------------------

    async def _write_status(self, vmim: Obj, new_status: dict[str, Any]) -> Obj:
        ns, name = key_of(vmim)
        out = await self.world.kube.merge_patch(VMIMS, ns, name, {"status": new_status}, status=True)
        self.world.vmims.write_through(out)
        self._track(out)
        return out

    def _transition(self, vmim: Obj, phase: str, now: float, **state: Any) -> dict[str, Any]:
        st = dict(vmim.get("status") or {})
        stamps = list(st.get("phaseTransitionTimestamps") or [])
        stamps.append({"phase": phase, "phaseTransitionTimestamp": status.rfc3339(now)})
        st["phase"] = phase
        st["phaseTransitionTimestamps"] = stamps
        if state:
            ms = dict(st.get("migrationState") or {})
            ms.update(state)
            st["migrationState"] = ms
        return st

    async def _update_vmi(self, key: Key, mutate: Any) -> Obj | None:
        """Read-modify-write of a VMI with optimistic concurrency (409 → re-read, retry)."""
        for _ in range(8):
            vmi = self.world.vmis.get(key)
            if vmi is None:
                vmi = await self.world.kube.get(VMIS, *key)
                if vmi is None:
                    return None
            body = {
                **vmi,
                "metadata": dict(vmi.get("metadata") or {}),
                "status": dict(vmi.get("status") or {}),
            }
            mutate(body)
            try:
                out = await self.world.kube.replace(VMIS, body)
            except ApiException as exc:
                if exc.status == 409:
                    fresh = await self.world.kube.get(VMIS, *key)
                    if fresh is None:
                        return None
                    self.world.vmis.write_through(fresh)
                    continue
                if exc.status == 404:
                    return None
                raise
            self.world.vmis.write_through(out)
            return out
        raise ConflictError(f"VMI {key} kept conflicting")

    # -- the phase machine --------------------------------------------------------------------------

    async def sync(self, key: Key) -> None:
        """One step of the VMIM's phase machine; its state chooses which (one method per case)."""
        vmim = self.world.vmims.get(key)
        if vmim is None:
            self.running.pop(key, None)
            self.pending.pop(key, None)
            return
        phase = _phase(vmim)
        vmi_key = _vmi_key(vmim)
        vmi = self.world.vmis.get(vmi_key)
        now = time.time()
        if (vmim.get("metadata") or {}).get("deletionTimestamp"):
            await self._sync_deleted(vmim, vmi_key, now)
        elif is_final(phase):
            await self._sync_final(vmim, vmi_key)
        elif phase == "":
            await self._sync_new(key, vmim, vmi, now)
        elif vmi is None:
            await self._fail(vmim, now, "VMI does not exist", vmi_key, started=False)
        elif phase == PHASE_PENDING:
            await self._sync_pending(key, vmim, vmi, now)
        else:
            await self._progress(key, vmim, vmi, now)

    async def _sync_deleted(self, vmim: Obj, vmi_key: Key, now: float) -> None:
        """Deleted (deletionTimestamp): cancelled if not final yet; then the finalizer and the plan go."""
        uid = _uid(vmim)
        if not is_final(_phase(vmim)):
            vmim = await self._cancel(vmim, vmi_key, now)
        await self._drop_finalizer(vmim)
        self.plans.pop(uid, None)

    async def _cancel(self, vmim: Obj, vmi_key: Key, now: float) -> Obj:
        """Delete before completion = cancel: the VMI's migration failed (if it started), the VMIM Failed
        and aborted, its event, the target pod deleted, the slot freed. Returns the VMIM as written."""
        uid = _uid(vmim)
        ms = dict((vmim.get("status") or {}).get("migrationState") or {})
        # The VMI first, then the VMIM: if the second write fails the retry redoes both (once the VMIM
        # is final it is not cancelled again, and the VMI would stay "migrating").
        if ms.get("startTimestamp"):
            await self._update_vmi(vmi_key, lambda b: _vmi_migration_failed(b, uid, now, CANCELED_REASON))
        vmim = await self._write_status(
            vmim,
            self._transition(
                vmim,
                PHASE_FAILED,
                now,
                failed=True,
                abortStatus="Succeeded",
                abortRequested=True,
                failureReason=CANCELED_REASON,
                endTimestamp=status.rfc3339(now),
            ),
        )
        await self.world.kube.event(
            vmim, "VirtualMachineInstanceMigration", "FailedMigration", CANCELED_REASON, "Warning"
        )
        await self._drop_target(vmim, vmi_key)
        await self._slot_freed()
        return vmim

    async def _sync_final(self, vmim: Obj, vmi_key: Key) -> None:
        """Final (Succeeded or Failed): the finalizer and the plan go; the VMI's old VMIMs are collected."""
        # KubeVirt drops its finalizer from every final VMIM (migration.go updateStatus).
        await self._drop_finalizer(vmim)
        self.plans.pop(_uid(vmim), None)
        await self._gc(vmi_key)

    async def _sync_new(self, key: Key, vmim: Obj, vmi: Obj | None, now: float) -> None:
        """New (no phase yet): Pending and queued for admission, or Failed when the VMI is not running or
        another migration of it is in progress."""
        vmi_key = _vmi_key(vmim)
        vmim = await self._add_finalizer_and_label(key, vmim)
        if vmi is None or (vmi.get("status") or {}).get("phase") != "Running":
            await self._write_status(
                vmim,
                self._transition(vmim, PHASE_FAILED, now, failed=True, failureReason="VMI is not running"),
            )
            return
        if self._other_unfinished(vmi_key, key, vmim):
            reason = "VMI is not eligible for migration because another migration job is in progress."
            await self._write_status(
                vmim, self._transition(vmim, PHASE_FAILED, now, failed=True, failureReason=reason)
            )
            await self.world.kube.event(
                vmim, "VirtualMachineInstanceMigration", "FailedMigration", reason, "Warning"
            )
            return
        await self._write_status(vmim, self._transition(vmim, PHASE_PENDING, now))
        self.pending[key] = None
        await self.enqueue(key)

    async def _add_finalizer_and_label(self, key: Key, vmim: Obj) -> Obj:
        """The finalizer and the ``kubevirt.io/vmi-name`` label on a new VMIM; returns the VMIM as it is."""
        meta = vmim.get("metadata") or {}
        vmi_name = _vmi_key(vmim)[1]
        labels = dict(meta.get("labels") or {})
        finalizers = list(meta.get("finalizers") or [])
        # KubeVirt's mutating webhook adds both at create; without it (a bare API server) we do.
        if FINALIZER in finalizers and labels.get(LABEL_VMI_NAME) == vmi_name:
            return vmim
        labels[LABEL_VMI_NAME] = vmi_name
        patch = {"metadata": {"labels": labels, "finalizers": [*finalizers, FINALIZER]}}
        out = await self.world.kube.merge_patch(VMIMS, *key, patch)
        self.world.vmims.write_through(out)
        return out

    async def _sync_pending(self, key: Key, vmim: Obj, vmi: Obj, now: float) -> None:
        """Pending: admitted (→ Scheduling, the target pod made) once its backoff is over and nothing holds
        it back (:meth:`_held_back`); until then checked again later."""
        self.pending[key] = None
        vmi_key = _vmi_key(vmim)
        wait = self._backoff_left(vmi_key, vmim, now)
        if wait > 0:
            self.queue.add_after(key, wait)
            return
        source = str((vmi.get("status") or {}).get("nodeName", ""))
        if self._held_back(key, vmim, vmi, source):
            self.queue.add_after(key, self._requeue_delay(vmim))
            return
        new_plan = self._plan(source, vmi_key, vmi)
        self.running[key] = source  # count it before any await (no over-admission by other workers)
        try:
            await self._admit(vmim, vmi, new_plan, source, now)
        except BaseException:
            # Not admitted after all (an API error): the retry checks the limits again. A Scheduling
            # write that landed despite the error is counted back by the VMIM's watch event.
            self.running.pop(key, None)
            raise
        self.queue.add_after(key, new_plan.durations.get(PHASE_SCHEDULED, 0.0))

    def _held_back(self, key: Key, vmim: Obj, vmi: Obj, source: str) -> bool:
        """A Pending VMIM stays Pending: at the cluster's limit of running migrations, at the source
        node's outbound limit, or a NAD the VMI's networks name is missing (the target pod cannot be
        rendered). Logged as virt-controller logs it."""
        ns, name = key
        cluster_limit, node_limit = self.world.limits()
        if len(self.running) >= cluster_limit:
            log.debug(
                "Waiting to schedule target pod for vmi migration because total running parallel "
                "migration count is currently at the global cluster limit.",
                vmi=f"{ns}/{_vmi_key(vmim)[1]}",
                count=len(self.running),
            )
            return True
        if sum(1 for n in self.running.values() if n == source) >= node_limit:
            log.debug("Waiting to schedule target pod: outbound migrations per node limit", node=source)
            return True
        missing = self.world.missing_nads(vmi)
        if missing:
            log.info(NAD_MISSING_MESSAGE, nads=missing, vmim=f"{ns}/{name}")
            return True
        return False

    async def _progress(self, key: Key, vmim: Obj, vmi: Obj, now: float) -> None:
        """Scheduling → Scheduled → PreparingTarget → TargetReady → Running → Succeeded, each step when
        the plan makes it due; not past Scheduling before the target pod is placed, never out of Running
        for a stuck migration."""
        phase = _phase(vmim)
        plan = self.plans.get(_uid(vmim))
        if plan is None:  # adopted after a restart: continue from now
            plan = self._adopt_plan(vmim, vmi)
        nxt = NEXT.get(phase)
        if nxt is None:
            return
        if phase == PHASE_SCHEDULING and not await self._target_placed(vmim, vmi, plan, now):
            return
        if phase == PHASE_RUNNING and plan.fate == "stuck":
            return
        due = _due(vmim, plan, nxt, now)
        if now < due:
            self.queue.add_after(key, due - now)
            return
        await self._step(key, vmim, vmi, plan, nxt, now)

    def _adopt_plan(self, vmim: Obj, vmi: Obj) -> MigrationPlan:
        """A plan for a migration under way that this controller did not admit (it restarted): from the
        source and target the VMIM names, the target pod with every interface of the VMI not absent."""
        ms = (vmim.get("status") or {}).get("migrationState") or {}
        source = str(ms.get("sourceNode") or (vmi.get("status") or {}).get("nodeName", ""))
        plan = self._plan(source, _vmi_key(vmim), vmi)
        if ms.get("targetNode"):
            plan.target_node = str(ms["targetNode"])
        plan.target_pod_networks = {
            str(i.get("name"))
            for i in rules.interfaces(vmi.get("spec") or {})
            if i.get("state") != STATE_ABSENT
        }
        self.plans[_uid(vmim)] = plan
        return plan

    async def _step(self, key: Key, vmim: Obj, vmi: Obj, plan: MigrationPlan, nxt: str, now: float) -> None:
        """The due step out of the VMIM's phase: Failed where the plan fails, else the next phase ``nxt``."""
        phase = _phase(vmim)
        if plan.fate == "fail" and phase == plan.fail_phase:
            await self._fail(vmim, now, FAILED_REASON, _vmi_key(vmim), started=phase == PHASE_RUNNING)
        elif nxt == PHASE_RUNNING:
            await self._start_running(key, vmim, plan, now)
        elif nxt == PHASE_SUCCEEDED:
            await self._succeed(vmim, vmi, plan, now)
        else:
            await self._write_status(vmim, self._transition(vmim, nxt, now))
            self.queue.add_after(key, plan.durations.get(NEXT[nxt], 0.0))

    async def _start_running(self, key: Key, vmim: Obj, plan: MigrationPlan, now: float) -> None:
        """TargetReady → Running: the VMI's migrationState (started), then the VMIM's; a stuck migration
        is not queued again."""
        uid = _uid(vmim)
        start = status.rfc3339(now)
        await self._update_vmi(_vmi_key(vmim), lambda b: _vmi_migration_started(b, uid, plan, start))
        await self._write_status(vmim, self._transition(vmim, PHASE_RUNNING, now, startTimestamp=start))
        if plan.fate != "stuck":
            self.queue.add_after(key, plan.durations.get(PHASE_SUCCEEDED, 0.0))

    async def _succeed(self, vmim: Obj, vmi: Obj, plan: MigrationPlan, now: float) -> None:
        """Running → Succeeded: the VMI on the target node, the source pod ended, the domain with the
        target pod's networks; then the VMIM's status, the freed slot, the event and the VMI's GC."""
        uid = _uid(vmim)
        vmi_key = _vmi_key(vmim)
        end = status.rfc3339(now)
        moved = await self._update_vmi(vmi_key, lambda b: _vmi_migration_completed(b, uid, plan, end))
        for pod in self.world.launcher_pods(vmi):
            on_source = (pod.get("spec") or {}).get("nodeName") == plan.source_node
            if on_source and _job_of(pod) != uid and not terminated(pod):
                await self.world.end_pod(pod)
        if moved is not None:
            dom = self.world.domain_for(moved)
            dom.pod_networks = set(plan.target_pod_networks)
            await self.world.node_side_changed(vmi_key)
        await self._write_status(
            vmim,
            self._transition(
                vmim,
                PHASE_SUCCEEDED,
                now,
                completed=True,
                endTimestamp=end,
                targetNodeDomainDetected=True,
                targetNodeDomainReadyTimestamp=end,
            ),
        )
        await self._slot_freed()  # first: the freed slot must not wait for the event write
        await self.world.kube.event(
            vmim, "VirtualMachineInstanceMigration", "SuccessfulMigration", SUCCEEDED_MESSAGE
        )
        await self._gc(vmi_key)

    async def _admit(self, vmim: Obj, vmi: Obj, new_plan: MigrationPlan, source: str, now: float) -> None:
        """Pending → Scheduling: the target pod (placed if a node fits) and the VMIM's status."""
        key = key_of(vmim)
        uid = str((vmim.get("metadata") or {}).get("uid", ""))
        vmi_name = str((vmim.get("spec") or {}).get("vmiName", ""))
        target = await self.world.create_launcher(vmi, "", migration_uid=uid)
        new_plan.target_node = str((target.get("spec") or {}).get("nodeName") or "")
        spec = vmi.get("spec") or {}
        nets = rules.network_by_name(spec)
        new_plan.target_pod_networks = {
            str(i.get("name"))
            for i in rules.interfaces(spec)
            if i.get("state") != STATE_ABSENT and rules.is_secondary_multus(nets.get(str(i.get("name")), {}))
        }
        new_plan.due = now + new_plan.durations.get(PHASE_SCHEDULING, 0.0)
        new_plan.started = now
        self.plans[uid] = new_plan
        self.pending.pop(key, None)
        placed = {"targetNode": new_plan.target_node} if new_plan.target_node else {}
        await self._write_status(
            vmim,
            self._transition(
                vmim,
                PHASE_SCHEDULING,
                now,
                sourceNode=source,
                **placed,
                migrationUid=uid,
                sourcePod=f"virt-launcher-{vmi_name}-src",
                targetPod=f"virt-launcher-{vmi_name}-{uid[:5]}",
                mode="PreCopy",
            ),
        )

    async def _target_placed(self, vmim: Obj, vmi: Obj, plan: MigrationPlan, now: float) -> bool:
        """Scheduling: is the target pod placed? Place it when a node fits now; past the unschedulable
        timeout the pod is deleted and the migration fails. False: not yet (checked again later)."""
        uid = str((vmim.get("metadata") or {}).get("uid", ""))
        target = next((p for p in self.world.launcher_pods(vmi) if _job_of(p) == uid), None)
        if target is None:  # adopted after a restart, or its write was lost
            target = await self.world.create_launcher(vmi, "", migration_uid=uid)
        node_name = str((target.get("spec") or {}).get("nodeName") or "")
        if not node_name:
            node_name = self.world.place(target) or ""
            if node_name:
                await self.world.bind(target, node_name)
        if node_name:
            if not plan.target_node:
                # Placed late: the remaining steps take their planned time from now.
                plan.started = now - plan.durations.get(PHASE_SCHEDULING, 0.0)
            plan.target_node = node_name
            return True
        waited = now - (plan.started or now)
        if waited >= self.world.config.unschedulable_timeout:
            await self.world.delete_pod(target)
            await self._fail(
                vmim,
                now,
                UNSCHEDULABLE_REASON,
                (vmim["metadata"]["namespace"], vmi["metadata"]["name"]),
                started=False,
            )
            return False
        self.queue.add_after(key_of(vmim), self._requeue_delay(vmim))
        return False

    async def _drop_target(self, vmim: Obj, vmi_key: Key) -> None:
        """A failed or cancelled migration's target pod is deleted."""
        uid = str((vmim.get("metadata") or {}).get("uid", ""))
        vmi = self.world.vmis.get(vmi_key)
        if vmi is None:
            return
        for pod in self.world.launcher_pods(vmi):
            if _job_of(pod) == uid:
                await self.world.delete_pod(pod)

    async def _drop_finalizer(self, vmim: Obj) -> None:
        meta = vmim.get("metadata") or {}
        current = list(meta.get("finalizers") or [])
        if FINALIZER not in current:
            return
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in current if f != FINALIZER],
            },
        ]
        try:
            out = await self.world.kube.json_patch(VMIMS, *key_of(vmim), ops)
        except ApiException as exc:
            if exc.status not in (404, 422):  # gone, or changed meanwhile (its event brings it back)
                raise
            return
        self.world.vmims.write_through(out)

    def _other_unfinished(self, vmi_key: Key, key: Key, vmim: Obj) -> bool:
        """Another VMIM for the VMI already accepted (has a phase) and not final: O(1) via the index."""
        created = str((vmim.get("metadata") or {}).get("creationTimestamp", ""))
        active = self.unfinished_by_vmi.get(vmi_key) or {}
        return any(k != key and ts <= created for k, ts in active.items())

    async def _fail(self, vmim: Obj, now: float, reason: str, vmi_key: Key, *, started: bool) -> None:
        uid = str((vmim.get("metadata") or {}).get("uid", ""))
        if started:
            await self._update_vmi(vmi_key, lambda b: _vmi_migration_failed(b, uid, now, reason))
        await self._write_status(
            vmim,
            self._transition(
                vmim, PHASE_FAILED, now, failed=True, failureReason=reason, endTimestamp=status.rfc3339(now)
            ),
        )
        self.plans.pop(uid, None)
        await self._drop_target(vmim, vmi_key)
        await self._slot_freed()
        await self.world.kube.event(
            vmim, "VirtualMachineInstanceMigration", "FailedMigration", reason, "Warning"
        )

    async def _gc(self, vmi_key: Key) -> None:
        """Keep the newest N finalized VMIMs per VMI (KubeVirt's garbage collection)."""
        bucket = self.finalized.get(vmi_key)
        keep = self.world.config.finalized_migrations_kept
        if bucket is None or keep <= 0:
            return
        while len(bucket) > keep:
            old_key, _ = bucket.popitem(last=False)
            await self.world.kube.delete(VMIMS, *old_key)
        if not bucket:
            self.finalized.pop(vmi_key, None)


def sized_plan(
    config: KubeVirtSimConfig, vmi: Key, attempt: int, gib: float, source: str, nodes: list[str]
) -> MigrationPlan:
    """A migration of ``gib`` GiB of guest memory: ``migration_mean_seconds + migration_seconds_per_gib
    x gib`` in all, split by the phase shares; fate, failing step and target drawn from (``seed``, VMI,
    attempt) alone, so the agent and KubeVirt's updater meet the same failures on the same work, and a
    model of the drain (``bench/drain_model.py``) can replay them."""
    rng = random.Random(f"{config.seed}/{vmi[0]}/{vmi[1]}/{attempt}")
    plan = plan_migration(config, rng, source, nodes)
    total = config.migration_mean_seconds + config.migration_seconds_per_gib * gib
    weight = sum(plan.durations.values()) or 1.0
    plan.durations = {phase: total * d / weight for phase, d in plan.durations.items()}
    return plan


#: ``spec.priority`` → queue priority (KubeVirt's ``PriorityFromMigration``; higher first).
PRIORITY_RANK: Final = {"system-critical": 100, "user-triggered": 50, "system-maintenance": 20}


def _job_of(pod: Obj) -> str:
    """The migration a target pod was made for ("" for a VMI's own pod)."""
    return str(labels_of(pod).get(MIGRATION_JOB_LABEL, ""))


def _feature_gates(world: World) -> list[str]:
    """``spec.configuration.developerConfiguration.featureGates`` of the KubeVirt CR."""
    spec = (world.kubevirt() or {}).get("spec") or {}
    gates = ((spec.get("configuration") or {}).get("developerConfiguration") or {}).get("featureGates")
    return [str(g) for g in gates] if isinstance(gates, list) else []


def _backoff_eligible(vmim: Obj) -> bool:
    annotations = (vmim.get("metadata") or {}).get("annotations") or {}
    return ANNOTATION_WORKLOAD_UPDATE in annotations or ANNOTATION_EVACUATION in annotations


def _created(vmim: Obj) -> str:
    return str((vmim.get("metadata") or {}).get("creationTimestamp", ""))


def _uid(vmim: Obj) -> str:
    return str((vmim.get("metadata") or {}).get("uid", ""))


def _phase(vmim: Obj) -> str:
    return str((vmim.get("status") or {}).get("phase", ""))


def _vmi_key(vmim: Obj) -> Key:
    """The key of the VMI the VMIM migrates (``spec.vmiName``, in the VMIM's namespace)."""
    return (key_of(vmim)[0], str((vmim.get("spec") or {}).get("vmiName", "")))


def _due(vmim: Obj, plan: MigrationPlan, nxt: str, now: float) -> float:
    """When the step to ``nxt`` is due: the plan's absolute deadline; for a plan adopted after a restart
    (no start known), the step's planned time from when the VMIM entered its phase."""
    if plan.started:
        return plan.deadline(nxt)
    return _entered_phase_at(vmim, now) + plan.durations.get(nxt, 0.0)


def _entered_phase_at(vmim: Obj, default: float) -> float:
    """The VMIM's last phase transition time, ``default`` when it has none readable."""
    stamps = (vmim.get("status") or {}).get("phaseTransitionTimestamps") or []
    if not stamps:
        return default
    try:
        return parse_timestamp(str(stamps[-1].get("phaseTransitionTimestamp")))
    except (ValueError, AttributeError):
        return default


def _failed_at(vmim: Obj) -> float:
    for stamp in (vmim.get("status") or {}).get("phaseTransitionTimestamps") or []:
        if stamp.get("phase") == PHASE_FAILED:
            try:
                return parse_timestamp(str(stamp.get("phaseTransitionTimestamp")))
            except (ValueError, AttributeError):
                break
    return 0.0


def _vmi_migration_started(body: Obj, uid: str, plan: MigrationPlan, start: str) -> None:
    st = body["status"]
    st["migrationState"] = {
        "migrationUid": uid,
        "sourceNode": plan.source_node,
        "targetNode": plan.target_node,
        "startTimestamp": start,
        "mode": "PreCopy",
    }


def _vmi_migration_completed(body: Obj, uid: str, plan: MigrationPlan, end: str) -> None:
    st = body["status"]
    ms = dict(st.get("migrationState") or {})
    ms.update(
        migrationUid=uid,
        sourceNode=plan.source_node,
        targetNode=plan.target_node,
        completed=True,
        endTimestamp=end,
        targetNodeDomainDetected=True,
        targetNodeDomainReadyTimestamp=end,
    )
    ms.setdefault("startTimestamp", end)
    st["migrationState"] = ms
    st["nodeName"] = plan.target_node
    labels = dict(body["metadata"].get("labels") or {})
    labels[LABEL_NODE_NAME] = plan.target_node
    body["metadata"]["labels"] = labels
    # virt-handler removes MigrationRequired once the target domain runs (migration-target.go:355).
    st["conditions"] = status.remove_condition(list(st.get("conditions") or []), "MigrationRequired")


def _vmi_migration_failed(body: Obj, uid: str, now: float, reason: str) -> None:
    st = body["status"]
    ms = dict(st.get("migrationState") or {})
    if ms.get("migrationUid") not in (None, uid):
        return
    ms.update(migrationUid=uid, failed=True, completed=True, endTimestamp=status.rfc3339(now))
    st["migrationState"] = ms
