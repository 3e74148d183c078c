"""The reconcile loop: from informer events to decisions, dispatches, retries and verification.

Why one class: the controller owns the agent's *memory* (when a change was first seen, how many
attempts failed, which migration is ours, which create is in flight) and nothing else. Decisions are
pure (``agent.detect`` / ``agent.decide`` / ``agent.scheduler``); the API is reached only through the
``MigrationApi`` protocol that ``agent.kube`` implements. Informer callbacks only mark keys dirty, so a
watch event costs a dict update and a queue insert; the reconcile worker decides, the dispatcher creates.

Invariants:
- never two migrations for one VMI: a VMI with an unfinished VMIM in the cache, a create in flight, or
  a recent create the cache has not shown yet (an *expectation*, as in client-go's
  ControllerExpectations) is never a candidate; after our migration succeeds the VMI is *verifying*
  (not a candidate) until its status shows the change or the verify timeout passes;
- only the leader, in active mode, creates or deletes migrations; followers keep their memory warm so a
  takeover is immediate;
- every pending hot plug ends completed or blocked with a reason (and a Kubernetes Event).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog
import tenacity

from agent.aio import wait_event
from agent.decide import BlockReason, Decision, DecisionContext, Kind, Mode, WaitReason, decide, resolve_mode
from agent.detect import Detection, detect
from agent.events import EventRecorder, VMEvent
from agent.kubevirt import MSG_CANNOT_MIGRATE, MSG_IN_FLIGHT, PHASE_SUCCEEDED, is_final
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.names import (
    REASON_BLOCKED,
    REASON_GAVE_UP,
    REASON_HOTPLUG_COMPLETED,
    REASON_MIGRATION_RETRY,
    REASON_MIGRATION_STARTED,
    REASON_SLOTS_EXHAUSTED,
)
from agent.scheduler import ActiveMigration, Candidate, DispatchPlanner, TokenBucket, WorkQueue
from agent.slots import SlotModel, SlotPrediction, choose_slot_model
from agent.wakeups import Wakeups
from metrics.definitions import HotplugMetrics

log = structlog.get_logger(__name__)

#: How long a create the cache has not shown yet still counts as an active migration (client-go: 5 min).
EXPECTATION_TTL_SECONDS = 60.0
#: After ``in-flight migration detected`` the cache will show the other migration soon; look again then.
BUSY_RECHECK_SECONDS = 2.0
#: Gauges are recomputed at most this often (they scan the tracked VMIs).
GAUGE_REFRESH_SECONDS = 0.5
_DISPATCH: Key = ("", "")  # wake-up key of the dispatcher
#: Action counters and Events a replica produced while not leading, kept until it leads again (bounded).
UNREPORTED_MAX = 10_000
#: Block reasons that are the agent's own policy; they do not stop KubeVirt's workload updater.
AGENT_ONLY_BLOCKS = frozenset({BlockReason.OPTED_OUT, BlockReason.NAMESPACE_NOT_SELECTED})


class MigrationApi(Protocol):
    """What the controller needs from ``agent.kube`` (kept narrow so tests can see every call)."""

    async def create_vmim(self, namespace: str, vmi_name: str) -> Mapping[str, Any]: ...

    async def delete_vmim(self, namespace: str, name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """The part of ``AgentConfig`` the controller uses (times in seconds)."""

    mode: str = "auto"
    dry_run: bool = False
    max_in_flight: int = 0
    max_per_node: int = 0
    creates_per_second: float = 10.0
    create_burst: int = 10
    settle_seconds: float = 5.0
    bridge_grace_seconds: float = 15.0
    max_attempts: int = 3
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    migration_deadline_seconds: float = 900.0
    verify_timeout_seconds: float = 60.0
    slot_model: str = "auto"
    include_namespaces: frozenset[str] | None = None
    exclude_namespaces: frozenset[str] = frozenset()


@dataclass(slots=True)
class Track:
    """The agent's memory of one VMI with something pending (dropped once nothing is)."""

    first_seen: dict[str, float] = field(default_factory=dict)  # iface → wall time first pending
    kinds: dict[str, str] = field(default_factory=dict)  # iface → plug | unplug
    signature: tuple[Any, ...] | None = None
    last_change: float | None = None
    attempts: int = 0
    next_retry_at: float | None = None
    rejected: str | None = None
    rejected_lm: tuple[bool | None, str] | None = None  # LiveMigratable when the webhook said no
    ours: str | None = None  # name of our unfinished migration
    created_at: float | None = None
    cancelled: bool = False
    verify_until: float | None = None
    dispatched: frozenset[str] = frozenset()  # interfaces our last migration was created for
    state: str = ""
    blocked: BlockReason | None = None
    announced: BlockReason | None = None  # the block reason an Event was written for
    slot_kind: str | None = None
    dry_run_done: bool = False


def _signature(vmi: VMIRecord, vm: VMRecord | None) -> tuple[Any, ...]:
    """What, when it changes, restarts the settle window: the interface sets, not every status write."""
    vmi_part = tuple((i.name, i.state) for i in vmi.interfaces)
    vm_part = tuple((i.name, i.state) for i in vm.template_interfaces) if vm is not None else ()
    return (vmi_part, vm_part)


def backoff_seconds(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th failure, computed by tenacity."""
    wait = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
    state = tenacity.RetryCallState(retry_object=tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    return max(initial / 2, float(wait(state)))


class Controller:
    def __init__(
        self,
        settings: ControllerSettings,
        api: MigrationApi | None,
        metrics: HotplugMetrics,
        events: EventRecorder,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self._rng = rng or random.Random()
        self.vms: dict[Key, VMRecord] = {}
        self.vmis: dict[Key, VMIRecord] = {}
        self.kubevirt: KubeVirtRecord | None = None
        #: unfinished VMIMs by VMI key (any initiator); a VMI has at most one in KubeVirt.
        self.active: dict[Key, VMIMRecord] = {}
        #: VMIM key → VMI key, to find an unfinished VMIM again on its DELETED event.
        self._vmim_index: dict[Key, Key] = {}
        #: creates sent (or in flight) that the VMIM cache has not shown yet: VMI key → (node, since).
        self.expected: dict[Key, tuple[str, float]] = {}
        self.tracks: dict[Key, Track] = {}
        #: hot plugs minus unplugs this agent saw complete, per VMI uid (for the v2 slot bound).
        self.hotplugged: dict[str, int] = {}
        self.ready: dict[Key, float] = {}  # candidates: VMI key → ready since (oldest first)
        self._held: set[Key] = set()
        self.queue: WorkQueue[Key] = WorkQueue(maxsize=1_000_000)
        self._queue_ready = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        self._ours_changed = asyncio.Event()
        self.wakeups: Wakeups[Key] = Wakeups(self._on_wakeup, clock=clock)
        self.mode: Mode = "active"
        self.leading = False
        self.draining = False
        #: set once the informers' initial lists are in (``mark_synced``)
        self.synced = False
        self.bucket = TokenBucket(settings.creates_per_second, settings.create_burst, now=clock())
        self._creates: dict[Key, asyncio.Task[None]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._gauges_dirty = True
        self._gauges_at = 0.0
        self._in_flight_counts: Counter[str] = Counter()
        #: what this replica saw while following (see :meth:`set_leading`)
        self._unreported: deque[Callable[[], object]] = deque(maxlen=UNREPORTED_MAX)
        self._apply_mode()

    # ------------------------------------------------------------------ configuration views

    @property
    def cluster_cap(self) -> int:
        if self.settings.max_in_flight > 0:
            return self.settings.max_in_flight
        return self.kubevirt.parallel_per_cluster if self.kubevirt is not None else 5

    @property
    def node_cap(self) -> int:
        if self.settings.max_per_node > 0:
            return self.settings.max_per_node
        return self.kubevirt.parallel_per_node if self.kubevirt is not None else 2

    def slot_model_for(self, vmi: VMIRecord) -> SlotModel:
        return choose_slot_model(self.settings.slot_model, self.kubevirt, vmi)

    def _apply_mode(self) -> None:
        new = resolve_mode(self.settings.mode, self.kubevirt)
        changed = new != self.mode
        self.mode = new
        label = "dry-run" if self.settings.dry_run and new == "active" else new
        self.metrics.set_mode(label)
        self.metrics.set_limits(self.cluster_cap, self.node_cap)
        if changed:
            log.info("mode_changed", mode=new)
            for key in list(self.tracks):
                self.enqueue(key)

    @property
    def acting(self) -> bool:
        """True when this replica may create migrations now."""
        return self.leading and self.mode == "active" and not self.draining

    # ------------------------------------------------------------------ informer callbacks (cheap)

    def enqueue(self, key: Key) -> None:
        if not self.queue.add(key):
            log.error("work_queue_full", key=f"{key[0]}/{key[1]}")
            return
        self._queue_ready.set()

    def on_vm(self, event: str, old: VMRecord | None, new: VMRecord | None) -> None:
        rec = new or old
        if rec is None:
            return
        if event == "DELETED" or new is None:
            self.vms.pop(rec.key, None)
        else:
            self.vms[rec.key] = new
        self.enqueue(rec.key)

    def on_vmi(self, event: str, old: VMIRecord | None, new: VMIRecord | None) -> None:
        rec = new or old
        if rec is None:
            return
        if event == "DELETED" or new is None:
            self.vmis.pop(rec.key, None)
            self.hotplugged.pop(rec.uid, None)
        else:
            self.vmis[rec.key] = new
        self.enqueue(rec.key)

    def on_kubevirt(self, event: str, old: KubeVirtRecord | None, new: KubeVirtRecord | None) -> None:
        self.kubevirt = None if event == "DELETED" else new
        self._apply_mode()
        self._dispatch_wake.set()

    def on_vmim(self, event: str, old: VMIMRecord | None, new: VMIMRecord | None) -> None:
        rec = new or old
        if rec is None:
            return
        vmi_key: Key = (rec.namespace, rec.vmi_name)
        gone = event == "DELETED" or new is None
        if not gone and rec.initiator == "agent":
            self.expected.pop(vmi_key, None)
        finished = gone or is_final(rec.phase)
        current = self.active.get(vmi_key)
        if not finished:
            if current is None or current.uid == rec.uid:
                if current is None:
                    self._in_flight_counts[rec.initiator] += 1
                self.active[vmi_key] = rec
                self._vmim_index[rec.key] = vmi_key
                self._gauges_dirty = True
            if rec.initiator == "agent":
                track = self.tracks.setdefault(vmi_key, Track())
                if track.ours is None:  # ours, seen before the create returned, or adopted after a restart
                    track.ours = rec.name
                    track.created_at = rec.creation_ts
                    if not track.dispatched:
                        track.dispatched = frozenset(track.kinds)
                    log.info("migration_tracked", vmi=f"{vmi_key[0]}/{vmi_key[1]}", vmim=rec.name)
                self._schedule_deadline(vmi_key, rec)
        else:
            if current is not None and current.uid == rec.uid:
                del self.active[vmi_key]
                self._in_flight_counts[current.initiator] -= 1
                self._gauges_dirty = True
                self._dispatch_wake.set()  # a finished migration frees its slot at once
            self._vmim_index.pop(rec.key, None)
            was_final_before = old is not None and is_final(old.phase)
            # A VMIM already final in the initial list is history (counting it would count it again
            # after every restart); one that appears final later (created and finished during a watch
            # gap, seen on relist) is new and counts.
            seen_finish = self.synced or not (event == "ADDED" and is_final(rec.phase))
            if not was_final_before and seen_finish:
                self._finished(vmi_key, rec, cancelled=gone and not is_final(rec.phase))
            elif not seen_finish and rec.initiator == "agent" and rec.phase == PHASE_SUCCEEDED:
                self._verify_recent(vmi_key, rec)
        self._ours_changed.set()
        self.enqueue(vmi_key)

    # ------------------------------------------------------------------ migration outcomes

    def _schedule_deadline(self, vmi_key: Key, rec: VMIMRecord) -> None:
        if rec.creation_ts is not None:
            self.wakeups.schedule(vmi_key, rec.creation_ts + self.settings.migration_deadline_seconds)

    def _verify_recent(self, vmi_key: Key, rec: VMIMRecord) -> None:
        """Our migration succeeded just before a restart: verify it instead of migrating again while
        the VMI status catches up."""
        done_at = rec.phase_ts(PHASE_SUCCEEDED)
        if done_at is None:
            return
        until = done_at + self.settings.verify_timeout_seconds
        if until <= self.clock():
            return
        track = self.tracks.setdefault(vmi_key, Track())
        track.verify_until = until
        self.wakeups.schedule(vmi_key, until)

    def _finished(self, vmi_key: Key, rec: VMIMRecord, *, cancelled: bool) -> None:
        now = self.clock()
        track = self.tracks.get(vmi_key)
        ours = track is not None and rec.initiator == "agent" and track.ours == rec.name
        # A migration that reached Succeeded succeeded, even if our cancel (deadline) crossed it.
        succeeded = rec.phase == PHASE_SUCCEEDED
        cancelled = not succeeded and (cancelled or (ours and track is not None and track.cancelled))
        points = tuple((t, p) for p, t in rec.phase_transitions)
        self._report(
            lambda: self.metrics.observe_finished_points(
                rec.uid,
                rec.phase,
                points,
                rec.creation_ts,
                rec.initiator,
                cancelled=cancelled,
                now=now,
                vmi=f"{vmi_key[0]}/{vmi_key[1]}",
            )
        )
        if not ours or track is None:
            return
        vm_rec = self.vms.get(vmi_key)
        track.ours = None
        track.created_at = None
        if succeeded:
            track.cancelled = False
            track.verify_until = now + self.settings.verify_timeout_seconds
            self.wakeups.schedule(vmi_key, track.verify_until)
            log.info("migration_succeeded", vmi=f"{vmi_key[0]}/{vmi_key[1]}", vmim=rec.name)
            return
        reason = "deadline-exceeded" if track.cancelled else "migration-failed"
        track.cancelled = False
        why = rec.failure_reason or ("cancelled past the deadline" if reason == "deadline-exceeded" else "")
        self._attempt_failed(
            vmi_key, track, reason, f"migration {rec.name} failed: {why or rec.phase}", vm_rec
        )

    def _attempt_failed(
        self, vmi_key: Key, track: Track, reason: str, message: str, vm: VMRecord | None
    ) -> None:
        now = self.clock()
        track.attempts += 1
        self._report(lambda: self.metrics.record_failure(reason))
        if track.attempts < self.settings.max_attempts:
            delay = backoff_seconds(
                track.attempts, self.settings.backoff_initial_seconds, self.settings.backoff_max_seconds
            )
            track.next_retry_at = now + delay
            self._report(self.metrics.record_retry)
            self._event(
                vmi_key,
                vm,
                "Warning",
                REASON_MIGRATION_RETRY,
                f"{message}; retry {track.attempts + 1}/{self.settings.max_attempts} in {delay:.0f}s",
            )
            self.wakeups.schedule(vmi_key, track.next_retry_at)
        else:
            self._event(
                vmi_key,
                vm,
                "Warning",
                REASON_GAVE_UP,
                f"{message}; gave up after {track.attempts} attempts: migrate or restart the VM manually",
            )
        log.warning("migration_attempt_failed", vmi=f"{vmi_key[0]}/{vmi_key[1]}", reason=reason, msg=message)

    # ------------------------------------------------------------------ reconcile

    def _on_wakeup(self, key: Key) -> None:
        if key == _DISPATCH:
            self._dispatch_wake.set()
        else:
            self.enqueue(key)

    async def reconcile_loop(self) -> None:
        processed = 0
        while True:
            key = self.queue.get()
            if key is None:
                self._refresh_gauges(force=False)
                self._queue_ready.clear()
                await self._queue_ready.wait()
                continue
            try:
                self.reconcile(key)
            finally:
                self.queue.done(key)
            processed += 1
            if processed % 256 == 0:
                await asyncio.sleep(0)  # let watches and the dispatcher run during a big sync

    def reconcile(self, key: Key) -> None:
        """Decide for one VMI and act on the decision. Synchronous: no I/O here."""
        vmi = self.vmis.get(key)
        track = self.tracks.get(key)
        if vmi is None:
            if track is not None and track.ours is None and key not in self.expected:
                self._forget(key)
            return
        vm = self.vms.get(key)
        now = self.clock()
        active = self.active.get(key)
        detection = detect(vmi, vm, (active,) if active is not None else ())
        if track is None:
            if not detection.anything_pending:
                return
            track = self.tracks[key] = Track()
        self._observe_changes(key, track, detection, vmi=vmi, vm=vm, now=now)

        if (
            detection.status == "done"
            and not detection.attaching
            and not detection.detaching
            and not vmi.sync_failed_pci
        ):
            self._completed(key, track, vmi, vm, now)
            return
        if not detection.anything_pending and track.ours is None and key not in self.expected:
            self._forget(key)
            return

        # Our own bookkeeping first: a create in flight, a migration of ours, the verify window.
        if key in self.expected or track.ours is not None:
            self._check_deadline(key, track, active, now)
            self._check_expectation(key, now)
            self._set_state(key, track, "in-progress", None)
            return
        if track.verify_until is not None:
            # Verify what the migration was created for; a change that arrived later is new work.
            # An adopted migration (restart, failover) has no record of what it was for: all of it.
            mine = [c for c in detection.changes if not track.dispatched or c.iface in track.dispatched]
            if mine and now < track.verify_until and not vmi.sync_failed_pci:
                self._set_state(key, track, "verifying", None)
                return
            track.verify_until = None
            if mine and not vmi.sync_failed_pci:
                self._attempt_failed(
                    key,
                    track,
                    "verify-failed",
                    "migration succeeded but the interface change did not reach the guest in "
                    f"{self.settings.verify_timeout_seconds:.0f}s",
                    vm,
                )
        decision = decide(vmi, vm, detection, self._context(key, track, vmi, now))
        self._act(key, track, vm=vm, decision=decision, now=now)

    def _observe_changes(
        self, key: Key, track: Track, d: Detection, *, vmi: VMIRecord, vm: VMRecord | None, now: float
    ) -> None:
        sig = _signature(vmi, vm)
        if sig != track.signature:
            track.signature = sig
            track.last_change = now
            track.dry_run_done = False
            track.rejected = None
        if track.rejected is not None and track.rejected_lm != (
            vmi.live_migratable,
            vmi.live_migratable_reason,
        ):
            track.rejected = None  # the VMI changed since the webhook said no: try again
        for change in d.changes:
            if change.iface not in track.first_seen:
                track.first_seen[change.iface] = now
                track.kinds[change.iface] = change.kind
        for name in d.waiting_for_kubevirt:
            track.first_seen.setdefault(name, now)
            iface = vm.template_interface(name) if vm is not None else None
            track.kinds.setdefault(name, "unplug" if iface is not None and iface.absent else "plug")
        if d.status != "not-running" and not vmi.sync_failed_pci:
            self._finish_interfaces(key, track, d, vmi=vmi, vm=vm, now=now)

    def _finish_interfaces(
        self, key: Key, track: Track, d: Detection, *, vmi: VMIRecord, vm: VMRecord | None, now: float
    ) -> None:
        """Complete each tracked interface once it is no longer pending in any way (per interface, so a
        plug that reached the guest is reported even while another change of the VM is still pending)."""
        pending = {c.iface for c in d.changes}
        pending.update(d.waiting_for_kubevirt, d.attaching, d.detaching, d.sriov_unplugs)
        pending.update(name for name, _why in d.undeliverable)
        done = [name for name in track.kinds if name not in pending]
        if not done:
            return
        vmi_name = f"{key[0]}/{key[1]}"
        parts: dict[str, list[str]] = {"plug": [], "unplug": []}
        for name in done:
            kind = track.kinds.pop(name)
            seen = track.first_seen.pop(name, now)
            self._report(partial(self.metrics.observe_hotplug_completed, kind, now - seen, vmi=vmi_name))
            parts[kind].append(name)
        delta = len(parts["plug"]) - len(parts["unplug"])
        self.hotplugged[vmi.uid] = self.hotplugged.get(vmi.uid, 0) + delta
        text = "; ".join(
            f"{'attached' if kind == 'plug' else 'detached'} {', '.join(sorted(names))}"
            for kind, names in parts.items()
            if names
        )
        track.attempts = 0
        track.next_retry_at = None
        self._event(key, vm, "Normal", REASON_HOTPLUG_COMPLETED, f"hot plug completed: {text}")
        log.info("hotplug_completed", vmi=vmi_name, changes=text)
        self._gauges_dirty = True

    def _context(self, key: Key, track: Track, vmi: VMIRecord, now: float) -> DecisionContext:
        return DecisionContext(
            now=now,
            mode=self.mode,
            settle_seconds=self.settings.settle_seconds,
            bridge_grace_seconds=self.settings.bridge_grace_seconds,
            include_namespaces=self.settings.include_namespaces,
            exclude_namespaces=self.settings.exclude_namespaces,
            slot_model=self.slot_model_for(vmi),
            known_hotplugged=self.hotplugged.get(vmi.uid, 0),
            first_seen=track.first_seen,
            last_change=track.last_change,
            attempts=track.attempts,
            max_attempts=self.settings.max_attempts,
            next_retry_at=track.next_retry_at,
            rejected_message=track.rejected,
            migration_deadline_seconds=self.settings.migration_deadline_seconds,
        )

    def _act(self, key: Key, track: Track, *, vm: VMRecord | None, decision: Decision, now: float) -> None:
        if decision.kind is Kind.MIGRATE:
            if key not in self.ready:
                self.ready[key] = min(track.first_seen.values(), default=now)
                self._dispatch_wake.set()
            self._set_state(key, track, "queued", None)
            return
        self._unready(key)
        if decision.recheck_at is not None:
            self.wakeups.schedule(key, decision.recheck_at)
        if decision.kind is Kind.BLOCKED and decision.block_reason is not None:
            if self.mode == "observe" and decision.block_reason in AGENT_ONLY_BLOCKS:
                # Our opt-out and namespace selection do not stop KubeVirt's own migrations.
                self._set_state(key, track, "pending-plug", None)
                return
            self._blocked(key, track, vm, decision.block_reason, decision.message, decision.slots)
            return
        if decision.kind is Kind.WAIT:
            state = {
                WaitReason.SETTLING: "settling",
                WaitReason.BRIDGE_GRACE: "bridge-grace",
                WaitReason.IN_FLIGHT: "in-progress",
                WaitReason.WAITING_FOR_KUBEVIRT: "waiting-for-kubevirt",
                WaitReason.RETRY_BACKOFF: "queued",
            }[decision.wait_reason or WaitReason.SETTLING]
            self._set_state(key, track, state, None)
            return
        # OBSERVE / NOTHING: report where the change is.
        d = decision.detection
        if d.status == "in-progress" or d.active_migration is not None:
            state = "in-progress"
        elif (d.unplugs and not d.plugs) or (d.detaching and not d.changes):
            state = "pending-unplug"
        elif d.changes or d.attaching:
            state = "pending-plug"
        else:
            state = "waiting-for-kubevirt"
        if decision.kind is Kind.OBSERVE and decision.would.startswith("blocked:"):
            reason = BlockReason(decision.would.removeprefix("blocked:"))
            if reason not in AGENT_ONLY_BLOCKS:
                # KubeVirt cannot migrate it either: say so on the VM, as in active mode.
                self._blocked(key, track, vm, reason, decision.message, decision.slots)
                return
        self._set_state(key, track, state, None)

    def _blocked(
        self,
        key: Key,
        track: Track,
        vm: VMRecord | None,
        reason: BlockReason,
        message: str,
        slots: SlotPrediction | None,
    ) -> None:
        if track.blocked is not reason:
            if reason is BlockReason.SLOTS_EXHAUSTED:
                kind = "observed" if slots is not None and slots.model == "observed" else "predicted"
                track.slot_kind = kind
                self._report(lambda: self.metrics.record_slot_exhaustion(kind))
            log.info("hotplug_blocked", vmi=f"{key[0]}/{key[1]}", reason=reason.value, msg=message)
        self._set_state(key, track, "", reason)
        # Announced separately from the state: a follower knows the reason but only a leader writes the
        # Event, so after a failover the new leader tells what its predecessor may not have sent.
        if track.announced is not reason:
            event_reason = REASON_SLOTS_EXHAUSTED if reason is BlockReason.SLOTS_EXHAUSTED else REASON_BLOCKED
            text = f"hot plug blocked ({reason.value}): {message}"
            if self._event(key, vm, "Warning", event_reason, text, defer=False):
                track.announced = reason

    def _completed(self, key: Key, track: Track, vmi: VMIRecord, vm: VMRecord | None, now: float) -> None:
        """Nothing pending any more: report what is left (normally done per interface already), forget."""
        if track.kinds:
            self._finish_interfaces(key, track, Detection(status="done"), vmi=vmi, vm=vm, now=now)
        self._forget(key)

    def _forget(self, key: Key) -> None:
        self._unready(key)
        if key in self.tracks:
            del self.tracks[key]
            self._gauges_dirty = True
        self.wakeups.cancel(key)

    def _unready(self, key: Key) -> None:
        if self.ready.pop(key, None) is not None:
            self._held.discard(key)

    def _set_state(self, key: Key, track: Track, state: str, blocked: BlockReason | None) -> None:
        if track.state != state or track.blocked is not blocked:
            track.state = state
            track.blocked = blocked
            if blocked is not BlockReason.SLOTS_EXHAUSTED:
                track.slot_kind = None
            self._gauges_dirty = True

    def _check_deadline(self, key: Key, track: Track, active: VMIMRecord | None, now: float) -> None:
        if active is None or active.initiator != "agent" or active.creation_ts is None or track.cancelled:
            return
        deadline = active.creation_ts + self.settings.migration_deadline_seconds
        if now < deadline:
            self.wakeups.schedule(key, deadline)
            return
        if not self.acting or self.api is None or self._tg is None:
            return
        track.cancelled = True
        log.warning("migration_deadline_exceeded", vmi=f"{key[0]}/{key[1]}", vmim=active.name)
        self._tg.create_task(self._cancel(key, active))

    def _check_expectation(self, key: Key, now: float) -> None:
        expected = self.expected.get(key)
        if expected is None or key in self._creates:
            return
        if now - expected[1] >= EXPECTATION_TTL_SECONDS:
            log.warning("expectation_expired", vmi=f"{key[0]}/{key[1]}")
            del self.expected[key]
            track = self.tracks.get(key)
            if track is not None and key not in self.active:
                track.ours = None
            self.enqueue(key)
        else:
            self.wakeups.schedule(key, expected[1] + EXPECTATION_TTL_SECONDS)

    # ------------------------------------------------------------------ dispatch

    async def dispatch_loop(self) -> None:
        while True:
            await self._dispatch_wake.wait()
            self._dispatch_wake.clear()
            self.dispatch_once()
            await asyncio.sleep(0)

    def active_migrations(self) -> list[ActiveMigration]:
        result = [ActiveMigration(k, m.source_node or self._node_of(k)) for k, m in self.active.items()]
        result.extend(
            ActiveMigration(k, node) for k, (node, _since) in self.expected.items() if k not in self.active
        )
        return result

    def _node_of(self, key: Key) -> str | None:
        vmi = self.vmis.get(key)
        return vmi.node if vmi is not None and vmi.node else None

    def dispatch_once(self) -> None:
        if not self.ready or not self.acting:
            return
        now = self.clock()
        candidates = [
            Candidate(k, self._node_of(k) or "", since)
            for k, since in self.ready.items()
            if k not in self.expected
        ]
        planner = DispatchPlanner(self.cluster_cap, self.node_cap, self.bucket)
        plan = planner.plan(candidates, self.active_migrations(), now)
        for cand, limit in plan.held:
            if cand.key not in self._held:
                self._held.add(cand.key)
                self.metrics.record_rate_limited(limit)
        for cand in plan.skipped:
            self.ready.pop(cand.key, None)
            self.enqueue(cand.key)
        for cand in plan.dispatch:
            self._unready(cand.key)
            self._start_create(cand.key, cand.source_node, now)
        if plan.wake_at is not None:
            self.wakeups.schedule(_DISPATCH, plan.wake_at)

    def _start_create(self, key: Key, node: str, now: float) -> None:
        track = self.tracks.setdefault(key, Track())
        if self.settings.dry_run:
            if not track.dry_run_done:
                track.dry_run_done = True
                log.info("dry_run_would_migrate", vmi=f"{key[0]}/{key[1]}", node=node)
            self._set_state(key, track, "queued", None)
            return
        if self.api is None or self._tg is None:
            return
        self.expected[key] = (node, now)
        track.dispatched = frozenset(track.kinds)
        self._set_state(key, track, "in-progress", None)
        self._creates[key] = self._tg.create_task(self._create(key))

    async def _create(self, key: Key) -> None:
        namespace, name = key
        assert self.api is not None
        track = self.tracks.setdefault(key, Track())
        vm = self.vms.get(key)
        try:
            obj = await self.api.create_vmim(namespace, name)
        except asyncio.CancelledError:
            self.expected.pop(key, None)
            raise
        except Exception as exc:
            self.expected.pop(key, None)
            self._create_failed(key, track, vm, exc)
            return
        finally:
            self._creates.pop(key, None)
            self._ours_changed.set()
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        vmim_name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
        self.metrics.record_migration_created()
        if key in self.expected and track.ours is None:
            track.ours = vmim_name
            track.created_at = self.clock()
        changes = ", ".join(f"{k} {n}" for n, k in sorted(track.kinds.items()))
        self._event(
            key,
            vm,
            "Normal",
            REASON_MIGRATION_STARTED,
            f"created migration {vmim_name} to {changes or 'apply'}",
        )
        log.info("migration_created", vmi=f"{namespace}/{name}", vmim=vmim_name, attempt=track.attempts + 1)
        self.wakeups.schedule(key, self.clock() + EXPECTATION_TTL_SECONDS)
        self.wakeups.schedule(key, self.clock() + self.settings.migration_deadline_seconds)

    def _create_failed(self, key: Key, track: Track, vm: VMRecord | None, exc: Exception) -> None:
        status = getattr(exc, "status", None)
        message = str(getattr(exc, "message", "") or exc)
        vmi = f"{key[0]}/{key[1]}"
        if MSG_IN_FLIGHT in message:
            # Someone else's migration is running (KubeVirt's, a user's, or ours the cache hasn't shown).
            log.info("migration_busy", vmi=vmi)
            self.wakeups.schedule(key, self.clock() + BUSY_RECHECK_SECONDS)
            return
        if MSG_CANNOT_MIGRATE in message:
            track.rejected = message
            vmi_now = self.vmis.get(key)
            if vmi_now is not None:
                track.rejected_lm = (vmi_now.live_migratable, vmi_now.live_migratable_reason)
            self._report(lambda: self.metrics.record_failure("create-rejected"))
            log.warning("migration_rejected", vmi=vmi, msg=message)
            self.enqueue(key)
            return
        if status == 403:
            log.error(
                "migration_create_forbidden",
                vmi=vmi,
                msg=message,
                hint="the agent's ServiceAccount needs create on "
                "virtualmachineinstancemigrations.kubevirt.io (see the chart's ClusterRole)",
            )
            self._report(lambda: self.metrics.record_failure("forbidden"))
            track.next_retry_at = self.clock() + self.settings.backoff_max_seconds
            self.wakeups.schedule(key, track.next_retry_at)
            self.enqueue(key)
            return
        self._attempt_failed(key, track, "api-error", f"creating the migration failed: {message}", vm)
        self.enqueue(key)

    async def _cancel(self, key: Key, vmim: VMIMRecord) -> None:
        assert self.api is not None
        try:
            await self.api.delete_vmim(vmim.namespace, vmim.name)
            log.info("migration_cancelled", vmi=f"{key[0]}/{key[1]}", vmim=vmim.name)
        except Exception as exc:
            track = self.tracks.get(key)
            if track is not None:
                track.cancelled = False
            log.warning("migration_cancel_failed", vmim=vmim.name, error=str(exc))
            self.wakeups.schedule(key, self.clock() + BUSY_RECHECK_SECONDS)

    # ------------------------------------------------------------------ leadership and lifecycle

    def mark_synced(self) -> None:
        """The initial lists are in: from now on every VMIM we see finish is counted."""
        self.synced = True

    def set_leading(self, leading: bool, *, resumed: bool = False) -> None:
        """Leadership changes take effect at once: a lost leader stops creating immediately.

        Only the leader moves action counters and writes Events (so replicas do not count twice); a
        follower keeps what it would have reported. ``resumed`` says this process held the Lease before
        and nobody else held it since (a renew deadline missed under API errors): then nobody reported
        the follower's backlog and the leader does now; after a takeover it was the other leader's.
        """
        backlog = list(self._unreported) if leading and resumed else []
        self._unreported.clear()
        self.leading = leading
        self.metrics.set_leader(leading)
        for action in backlog:
            action()
        if backlog:
            log.info("reported_backlog", actions=len(backlog))
        if leading:
            self._dispatch_wake.set()
            for key in list(self.tracks):
                self.enqueue(key)
        else:
            for task in list(self._creates.values()):
                task.cancel()

    def ours_in_flight(self) -> int:
        return sum(1 for m in self.active.values() if m.initiator == "agent") + len(self.expected)

    async def wait_idle(self, grace_seconds: float) -> bool:
        """Wait until none of our migrations is in flight (drain on shutdown); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self.ours_in_flight():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._ours_changed.clear()
            await wait_event(self._ours_changed, remaining)
        return True

    def _report(self, action: Callable[[], object]) -> None:
        """Run a counter update (or Event) now when leading, else keep it for a resumed leadership."""
        if self.leading:
            action()
        else:
            self._unreported.append(action)

    def _event(
        self, key: Key, vm: VMRecord | None, etype: str, reason: str, message: str, *, defer: bool = True
    ) -> bool:
        """Queue an Event on the VM; True when queued now (leader). A follower keeps it for a resumed
        leadership when ``defer`` (block Events are re-derived by every new leader instead)."""
        if vm is None:
            return False
        event = VMEvent(key[0], key[1], vm.uid, etype, reason, message)
        if self.leading:
            self.events.record(event)
            return True
        if defer:
            self._unreported.append(lambda: self.events.record(event))
        return False

    def _refresh_gauges(self, *, force: bool) -> None:
        now = self.clock()
        if not self._gauges_dirty or (not force and now - self._gauges_at < GAUGE_REFRESH_SECONDS):
            return
        self._gauges_dirty = False
        self._gauges_at = now
        pending: Counter[str] = Counter()
        blocked: Counter[str] = Counter()
        slots: Counter[str] = Counter()
        oldest: float | None = None
        for track in self.tracks.values():
            if track.blocked is not None:
                blocked[track.blocked.value] += 1
                if track.slot_kind:
                    slots[track.slot_kind] += 1
                continue
            if track.state:
                pending[track.state] += 1
            first = min(track.first_seen.values(), default=None)
            if first is not None and (oldest is None or first < oldest):
                oldest = first
        self.metrics.set_pending(pending)
        self.metrics.set_blocked(blocked)
        self.metrics.set_slot_exhausted(slots)
        self.metrics.set_oldest_pending(oldest)
        self.metrics.set_in_flight({k: v for k, v in self._in_flight_counts.items() if v > 0})

    async def run(self) -> None:
        """Run the reconcile worker, dispatcher, wake-ups and event sender until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self.reconcile_loop(), name="reconcile")
            tg.create_task(self.dispatch_loop(), name="dispatch")
            tg.create_task(self.wakeups.run(), name="wakeups")
            tg.create_task(self.events.run(), name="events")
            tg.create_task(self._gauge_loop(), name="gauges")

    async def _gauge_loop(self) -> None:
        """Gauges follow the dispatcher's wake-ups; this only makes sure a dirty snapshot is published."""
        while True:
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)
            with contextlib.suppress(Exception):
                self._refresh_gauges(force=True)

    def summary(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for track in self.tracks.values():
            counts[f"blocked:{track.blocked.value}" if track.blocked else track.state or "tracked"] += 1
        return dict(counts)


__all__ = [
    "Controller",
    "ControllerSettings",
    "MigrationApi",
    "Track",
    "backoff_seconds",
]
