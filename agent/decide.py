"""The per-VMI decision: migrate now, wait (and until when), blocked (and why), nothing, or observe.

Why a pure function: every path must be testable without a cluster, and the async layer must be able
to re-run it on any event or timer and get the same answer for the same inputs. Time is passed in;
per-VMI memory (first-seen times, attempts) is owned by the caller and passed in a small context.

Order of the rules (first match wins; docs/decisions.md explains each):

1. not Running / being deleted → NOTHING;  nothing pending or only in-place work → NOTHING
2. namespace not selected → BLOCKED ``namespace-not-selected``
3. opted out → BLOCKED ``opted-out``
4. mode observe (KubeVirt migrates by itself) → OBSERVE
5. a migration of this VMI is in flight (any initiator) → WAIT ``in-flight`` (the VMI's status alone:
   until the migration deadline past its start)
6. SR-IOV unplug → BLOCKED ``sriov-unplug``
7. only undeliverable template changes, an interface removed instead of set ``absent``, or
   ``RestartRequired`` (unless the agent showed it comes only from the hot plug, on KubeVirt releases
   that flag every network edit: ``agent.restart``; while that check runs → WAIT
   ``waiting-for-kubevirt``) → BLOCKED ``restart-required``
8. only template changes KubeVirt has not copied to the VMI yet → WAIT ``waiting-for-kubevirt``
   (event-driven: KubeVirt's copy is the next VMI event)
9. slots exhausted (observed, or predicted with certainty) → BLOCKED ``slots-exhausted``
10. ``LiveMigratable=False`` → BLOCKED ``not-live-migratable``
11. a NetworkAttachmentDefinition the VMI's networks name does not exist → BLOCKED ``network-missing``
12. the webhook answered ``Cannot migrate VMI`` → BLOCKED ``migration-rejected``
13. attempts ≥ max → BLOCKED ``retries-exhausted``
14. KubeVirt is evacuating the VMI's node → WAIT ``evacuating`` (its migration carries the change)
15. no node but the VMI's own could take it → WAIT ``no-target-node``
16. no node has the SR-IOV VFs its target pod needs → BLOCKED ``no-target-capacity``
17. outside every migration window → WAIT ``outside-window`` (until the next window opens)
18. backoff → WAIT ``retry-backoff``; settle window → WAIT ``settling``; more template changes on the way →
    WAIT ``waiting-for-kubevirt`` (bounded); bridge grace → WAIT ``bridge-grace``
19. → MIGRATE

Rules 11 and 14-16 read the cluster's infrastructure (``agent.preflight``: NADs, Nodes, Pods), rule 17 the
migration window (``agent.window``); both reach this function as plain values in the context.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from agent.config import DEFAULTS
from agent.detect import Detection
from agent.kubevirt import WORKLOAD_UPDATE_LIVE_MIGRATE
from agent.model import KubeVirtRecord, VMIRecord, VMRecord
from agent.preflight import NO_FACTS, ClusterFacts
from agent.restart import RestartCheck
from agent.slots import RESTART_HINT, SlotModel, SlotPrediction, assess
from agent.window import WindowState

Mode = Literal["active", "observe"]

#: How long deliverable changes wait for further template changes to reach the VMI spec.
DEFAULT_KUBEVIRT_SYNC_WAIT_SECONDS: Final = 30.0


class Kind(StrEnum):
    MIGRATE = "migrate"
    WAIT = "wait"
    BLOCKED = "blocked"
    NOTHING = "nothing"
    OBSERVE = "observe"


class WaitReason(StrEnum):
    SETTLING = "settling"
    BRIDGE_GRACE = "bridge-grace"
    IN_FLIGHT = "in-flight"
    WAITING_FOR_KUBEVIRT = "waiting-for-kubevirt"
    RETRY_BACKOFF = "retry-backoff"
    EVACUATING = "evacuating"
    NO_TARGET_NODE = "no-target-node"
    OUTSIDE_WINDOW = "outside-window"


class BlockReason(StrEnum):
    NOT_LIVE_MIGRATABLE = "not-live-migratable"
    SLOTS_EXHAUSTED = "slots-exhausted"
    SRIOV_UNPLUG = "sriov-unplug"
    RESTART_REQUIRED = "restart-required"
    OPTED_OUT = "opted-out"
    NAMESPACE_NOT_SELECTED = "namespace-not-selected"
    RETRIES_EXHAUSTED = "retries-exhausted"
    MIGRATION_REJECTED = "migration-rejected"
    NETWORK_MISSING = "network-missing"
    NO_TARGET_CAPACITY = "no-target-capacity"


def resolve_mode(configured_mode: str, kubevirt: KubeVirtRecord | None) -> Mode:
    """``auto`` → ``observe`` when KubeVirt ≥ 1.6 has ``LiveMigrate`` in ``workloadUpdateMethods``
    (its workload updater then migrates for hot plugs itself and our VMIMs would collide with its own),
    else ``active``. Unknown KubeVirt (CR not visible) → ``active``: without a KubeVirt that migrates,
    standing down would leave every hot plug pending. Explicit ``active``/``observe`` are kept.
    """
    if configured_mode == "observe":
        return "observe"
    if configured_mode == "active":
        return "active"
    if (
        kubevirt is not None
        and kubevirt.version is not None
        and kubevirt.version[:2] >= (1, 6)
        and WORKLOAD_UPDATE_LIVE_MIGRATE in kubevirt.workload_update_methods
    ):
        return "observe"
    return "active"


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Inputs beyond the records: configuration, the clock and the caller's per-VMI memory.

    ``first_seen``: interface name → when the agent first saw it pending (for the bridge grace).
    ``last_change``: when the VM or VMI last changed in a way that matters (for the settle window).
    ``rejected_message``: the ``Cannot migrate VMI`` text of the last create attempt, if it was rejected.
    """

    now: float
    mode: Mode = "active"
    settle_seconds: float = DEFAULTS.settle_seconds
    bridge_grace_seconds: float = DEFAULTS.bridge_grace_seconds
    kubevirt_sync_wait_seconds: float = DEFAULT_KUBEVIRT_SYNC_WAIT_SECONDS
    #: the namespaces selected (None: all) and excluded
    include_namespaces: Collection[str] | None = None
    exclude_namespaces: Collection[str] = ()
    slot_model: SlotModel = "none"
    known_hotplugged: int = 0
    first_seen: Mapping[str, float] = field(default_factory=dict)
    last_change: float | None = None
    attempts: int = 0
    max_attempts: int = DEFAULTS.max_attempts
    next_retry_at: float | None = None
    rejected_message: str | None = None
    #: What the agent found out about the VM's ``RestartRequired`` (None: not checked — the condition is
    #: trusted); ``restart_check_pending``: the check is running.
    restart_check: RestartCheck | None = None
    restart_check_pending: bool = False
    #: After this long, a VMI whose status still says "migrating" with no unfinished migration object
    #: is not waited on any more (KubeVirt's admission still refuses a second migration if one exists).
    migration_deadline_seconds: float = DEFAULTS.migration_deadline_seconds
    #: What NADs, Nodes and Pods say about migrating this VMI now (``agent.preflight``).
    facts: ClusterFacts = NO_FACTS
    #: The migration window now (None: no window configured, always open).
    window: WindowState | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    detection: Detection
    wait_reason: WaitReason | None = None
    block_reason: BlockReason | None = None
    #: Human text: the Kubernetes Event message for BLOCKED, a log line otherwise.
    message: str = ""
    #: When to evaluate again (absolute, same clock as ``now``); None = on the next event only.
    recheck_at: float | None = None
    slots: SlotPrediction | None = None
    #: In OBSERVE: what the agent would have done in active mode (its wait or block reason is set too).
    would: Kind | None = None


def namespace_selected(namespace: str, include: Collection[str] | None, exclude: Collection[str]) -> bool:
    return namespace not in exclude and (include is None or namespace in include)


def _names(items: tuple[str, ...]) -> str:
    return ", ".join(items)


def decide(vmi: VMIRecord, vm: VMRecord | None, detection: Detection, ctx: DecisionContext) -> Decision:
    """Decide for one VMI (see the module docstring for the rule order). Pure and total."""
    d = detection
    if d.status == "not-running":
        return Decision(Kind.NOTHING, d, message="VMI is not running")
    blocked_slots_in_place = bool(d.attaching) and vmi.sync_failed_pci
    if d.status == "done" and not blocked_slots_in_place:
        msg = (
            "hot plug attaching in place"
            if d.attaching
            else "hot unplug detaching in place"
            if d.detaching
            else "no pending hot plug"
        )
        return Decision(Kind.NOTHING, d, message=msg)
    if d.status == "in-progress" and not (
        d.changes or d.waiting_for_kubevirt or d.undeliverable or d.sriov_unplugs
    ):
        # A migration (maybe not ours) is running and nothing of ours is pending.
        return Decision(Kind.NOTHING, d, message="migration in progress, nothing pending")

    if not namespace_selected(vmi.namespace, ctx.include_namespaces, ctx.exclude_namespaces):
        return _blocked(
            d,
            BlockReason.NAMESPACE_NOT_SELECTED,
            f"namespace {vmi.namespace} is excluded from hotplug-agent; migrate the VM manually "
            "to complete the hot plug",
        )
    if vm is not None and vm.opted_out:
        return _blocked(
            d,
            BlockReason.OPTED_OUT,
            'VM has hotplug-agent.io/auto-migrate="false" (label or annotation); '
            "migrate it manually to complete the hot plug",
        )

    inner = _active(vmi, vm, d, ctx)
    if ctx.mode == "observe":
        return Decision(
            Kind.OBSERVE,
            d,
            wait_reason=inner.wait_reason,
            block_reason=inner.block_reason,
            message="KubeVirt migrates for hot plugs itself (workload updater with LiveMigrate)"
            + (f"; {inner.message}" if inner.message else ""),
            slots=inner.slots,
            would=inner.kind,
        )
    return inner


def _blocked(
    d: Detection, reason: BlockReason, message: str, slots: SlotPrediction | None = None
) -> Decision:
    return Decision(Kind.BLOCKED, d, block_reason=reason, message=message, slots=slots)


def _wait(d: Detection, reason: WaitReason, message: str, until: float | None) -> Decision:
    return Decision(Kind.WAIT, d, wait_reason=reason, message=message, recheck_at=until)


def _active(vmi: VMIRecord, vm: VMRecord | None, d: Detection, ctx: DecisionContext) -> Decision:
    """Rules 5 to 14 (the module docstring), in order: the first that decides wins."""
    for rule in (_in_flight, _sriov_unplug, _restart_required, _only_template_changes):
        if (decision := rule(vmi, vm, d, ctx)) is not None:
            return decision
    slots = assess(vmi, ctx.slot_model, len(d.plugs) + len(d.attaching), ctx.known_hotplugged)
    blockers = (
        _slots_exhausted, _attaching_only, _not_live_migratable, _network_missing, _rejected,
        _retries_exhausted, _evacuating, _no_target_node, _no_target_capacity,
    )  # fmt: skip
    for blocker in blockers:
        if (decision := blocker(vmi, d, ctx, slots)) is not None:
            return decision
    for wait in (_outside_window, _backing_off, _settling, _more_on_the_way, _bridge_grace):
        if (decision := wait(vmi, d, ctx)) is not None:
            return decision
    names = _names(tuple(f"{c.kind} {c.iface}" for c in d.changes))
    return Decision(Kind.MIGRATE, d, message=f"migrating to {names}", slots=slots)


def _in_flight(vmi: VMIRecord, vm: VMRecord | None, d: Detection, ctx: DecisionContext) -> Decision | None:
    if d.active_migration is not None:
        return _wait(d, WaitReason.IN_FLIGHT, f"migration {d.active_migration.name} in flight", None)
    if not vmi.migrating:
        return None
    # The status says a migration runs but no unfinished migration object is known: the object may not
    # be in the cache yet, so wait; past the deadline from its start the status is stale (a KubeVirt
    # write that never landed) and waiting on it would leave the hot plug pending forever.
    started = vmi.migration_started
    stale_at = started + ctx.migration_deadline_seconds if started is not None else None
    if stale_at is None or ctx.now < stale_at:
        return _wait(d, WaitReason.IN_FLIGHT, "the VMI status shows a migration in flight", stale_at)
    return None


def _sriov_unplug(vmi: VMIRecord, vm: VMRecord | None, d: Detection, ctx: DecisionContext) -> Decision | None:
    if not d.sriov_unplugs:
        return None
    return _blocked(
        d,
        BlockReason.SRIOV_UNPLUG,
        f"SR-IOV interface(s) {_names(d.sriov_unplugs)} cannot be hot unplugged; restart the VM to "
        "remove them",
    )


def _restart_required(
    vmi: VMIRecord, vm: VMRecord | None, d: Detection, ctx: DecisionContext
) -> Decision | None:
    """A VM whose template has a non-live-updatable change (RestartRequired) is blocked: the restart it
    needs applies the pending network change too, so a migration would be wasted. Some KubeVirt
    releases set the condition for the hot plug itself; the agent checks those (agent.restart). An
    interface removed instead of set absent makes KubeVirt set RestartRequired too: blocked at once
    rather than racing the condition (a migration now would deliver the rest and still need a restart)."""
    required = vm is not None and vm.restart_required
    if required and ctx.restart_check_pending:
        why = "checking whether RestartRequired comes only from the hot plug (VM start revision)"
        return _wait(d, WaitReason.WAITING_FOR_KUBEVIRT, why, None)
    check = ctx.restart_check if required else None
    if check is not None and not check.needed:
        required = False
    if not (required or d.removed or (not d.changes and not d.waiting_for_kubevirt and d.undeliverable)):
        return None
    details = "; ".join(f"{n}: {why}" for n, why in d.undeliverable)
    if not details:
        details = check.reason if check is not None else "VM condition RestartRequired"
    return _blocked(
        d,
        BlockReason.RESTART_REQUIRED,
        f"network change needs a restart ({details}); restart the VM to apply it",
    )


def _only_template_changes(
    vmi: VMIRecord, vm: VMRecord | None, d: Detection, ctx: DecisionContext
) -> Decision | None:
    """Only template changes KubeVirt has not copied to the VMI yet: event-driven."""
    if d.changes or d.attaching:
        return None
    why = f"interface(s) {_names(d.waiting_for_kubevirt)} not yet in the VMI spec"
    return _wait(d, WaitReason.WAITING_FOR_KUBEVIRT, why, None)


def _slots_exhausted(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    if slots.exhausted and slots.certain:
        return _blocked(d, BlockReason.SLOTS_EXHAUSTED, f"no free PCI slot: {slots.explanation}", slots)
    return None


def _attaching_only(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    """Only in-place attaches remain and they are not blocked on slots: KubeVirt is on it."""
    if d.changes:
        return None
    return Decision(Kind.NOTHING, d, message="hot plug attaching in place", slots=slots)


def _not_live_migratable(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    if vmi.live_migratable is not False:
        return None
    why = vmi.live_migratable_reason or "LiveMigratable=False"
    text = f": {vmi.live_migratable_message}" if vmi.live_migratable_message else ""
    return _blocked(
        d,
        BlockReason.NOT_LIVE_MIGRATABLE,
        f"VMI is not live-migratable ({why}{text}); restart the VM to apply the interface change",
        slots,
    )


def _network_missing(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    """Real virt-controller keeps such a migration Pending (it cannot render the target pod) until the
    agent's deadline; the NAD's arrival releases the VMI (the mirror re-queues exactly its waiters)."""
    missing = ctx.facts.missing_networks
    if not missing:
        return None
    return _blocked(
        d,
        BlockReason.NETWORK_MISSING,
        f"NetworkAttachmentDefinition {_names(missing)} not found; create it (the hot plug then migrates by "
        "itself) or remove the interface",
        slots,
    )


def _rejected(vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction) -> Decision | None:
    if not ctx.rejected_message:
        return None
    message = f"KubeVirt rejected the migration: {ctx.rejected_message}"
    return _blocked(d, BlockReason.MIGRATION_REJECTED, message, slots)


def _retries_exhausted(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    if ctx.attempts < ctx.max_attempts:
        return None
    return _blocked(
        d,
        BlockReason.RETRIES_EXHAUSTED,
        f"gave up after {ctx.attempts} failed migration attempt(s); migrate the VM manually or restart it",
        slots,
    )


def _evacuating(vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction) -> Decision | None:
    """KubeVirt's evacuation migrates the VMI off the node; the new pod has the new networks."""
    node = ctx.facts.evacuating
    if not node:
        return None
    why = f"KubeVirt is evacuating node {node}; its migration applies it"
    return _wait(d, WaitReason.EVACUATING, why, None)


def _no_target_node(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    if not ctx.facts.no_target_node:
        return None
    why = "no other node is schedulable and Ready (cordoned, NotReady or drained)"
    return _wait(d, WaitReason.NO_TARGET_NODE, why, None)


def _no_target_capacity(
    vmi: VMIRecord, d: Detection, ctx: DecisionContext, slots: SlotPrediction
) -> Decision | None:
    f: ClusterFacts = ctx.facts
    if not f.short:
        return None
    need = ", ".join(f"{k} x {r}" for r, k in f.needs if r in f.short)
    return _blocked(
        d,
        BlockReason.NO_TARGET_CAPACITY,
        f"no other schedulable node has free SR-IOV VFs for the target pod ({need}); free VFs of "
        f"{_names(f.short)} (the hot plug then migrates by itself)",
        slots,
    )


def _outside_window(vmi: VMIRecord, d: Detection, ctx: DecisionContext) -> Decision | None:
    window = ctx.window
    if window is None or window.open:
        return None
    why = f"outside the migration window; the next one opens {window.next_open}"
    return _wait(d, WaitReason.OUTSIDE_WINDOW, why, window.changes_at)


def _backing_off(vmi: VMIRecord, d: Detection, ctx: DecisionContext) -> Decision | None:
    if ctx.next_retry_at is not None and ctx.next_retry_at > ctx.now:
        return _wait(d, WaitReason.RETRY_BACKOFF, "backing off after a failed migration", ctx.next_retry_at)
    return None


def _settling(vmi: VMIRecord, d: Detection, ctx: DecisionContext) -> Decision | None:
    if ctx.last_change is not None and ctx.last_change + ctx.settle_seconds > ctx.now:
        return _wait(
            d, WaitReason.SETTLING, "waiting for changes to settle", ctx.last_change + ctx.settle_seconds
        )
    return None


def _more_on_the_way(vmi: VMIRecord, d: Detection, ctx: DecisionContext) -> Decision | None:
    """Deliverable changes wait (bounded) for further template changes to reach the VMI: one migration."""
    if not d.waiting_for_kubevirt or ctx.last_change is None:
        return None
    until = ctx.last_change + ctx.kubevirt_sync_wait_seconds
    if until <= ctx.now:
        return None
    why = f"more interface(s) on the way ({_names(d.waiting_for_kubevirt)}), one migration for all"
    return _wait(d, WaitReason.WAITING_FOR_KUBEVIRT, why, until)


def _bridge_grace(vmi: VMIRecord, d: Detection, ctx: DecisionContext) -> Decision | None:
    """The dynamic networks controller may plug a bridge in place: give it KubeVirt's grace period
    (from the earliest of when we saw the change and KubeVirt's MigrationRequired)."""
    if any(c.immediate for c in d.changes):
        return None
    seen = [ctx.first_seen.get(c.iface, ctx.now) for c in d.changes]
    if vmi.migration_required is not None and vmi.migration_required.since is not None:
        seen.append(vmi.migration_required.since)
    until = min(seen) + ctx.bridge_grace_seconds
    if until <= ctx.now:
        return None
    return _wait(
        d,
        WaitReason.BRIDGE_GRACE,
        "grace period for an in-place hot plug by the dynamic networks controller",
        until,
    )


__all__ = [
    "RESTART_HINT",
    "BlockReason",
    "Decision",
    "DecisionContext",
    "Kind",
    "Mode",
    "WaitReason",
    "decide",
    "namespace_selected",
    "resolve_mode",
]
