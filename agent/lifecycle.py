"""One hot plug's life, as a pure state machine: ``step(track, observation, view, ctx) -> (track, actions)``.

Why pure: "what happens to a hot plug after its migration failed" must be answerable by reading one
function, testable without an event loop, and the same for the same inputs. So this module holds every
rule of a VMI's lifecycle and nothing else: no I/O, no clock, no randomness (the caller passes ``now``
and a ``jitter`` sample), no callbacks. The controller (``agent.controller``) feeds it observations and
performs the actions it returns: API calls through the executor, Events and metrics through the
reporter, wake-ups, the dispatcher's ready set.

A **track** is the agent's memory of one VMI with something pending; ``None`` means untracked
(nothing pending, or forgotten). Its phase (docs/decisions.md draws the diagram):

* ``PENDING`` — deciding on every observation (``agent.decide``): waiting (settle window, bridge
  grace, retry backoff, someone else's migration, KubeVirt's sync), queued for the dispatcher, or
  blocked with a reason (a Warning Event, once);
* ``CREATING`` — the dispatcher chose it; our create is sent, or answered and not yet in the cache
  (an *expectation*, as in client-go: never a second create meanwhile; it expires after
  ``EXPECTATION_TTL_SECONDS``);
* ``MIGRATING`` — our migration is unfinished; past the deadline it is cancelled (deleted);
* ``VERIFYING`` — our migration succeeded; the VMI status must show the change within the verify
  timeout, else the attempt failed.

Observations: :class:`Observed` (the caches changed, or a wake-up: look at the view again),
:class:`MigrationEnded` (a VMIM of this VMI finished or was deleted), :class:`SucceededBeforeStart`,
:class:`Dispatched`, :class:`Created`, :class:`CreateFailed`, :class:`CreateAbandoned`,
:class:`CancelFailed`, :class:`RestartChecked`. Actions: :class:`CreateMigration`,
:class:`CancelMigration`, :class:`CheckRestart`, :class:`Emit`, :class:`Count`, :class:`WakeAt`,
:class:`Ready`, :class:`Unready`, :class:`Hotplugged`, :class:`Log`, :class:`Forget`.

Invariants (checked by a hypothesis test): at most one migration of ours per VMI — a
:class:`CreateMigration` only from ``PENDING`` on :class:`Dispatched`, never while the view shows an
unfinished migration; every track ends completed (interfaces reported done), blocked with a reason,
or forgotten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from agent.decide import BlockReason, Decision, DecisionContext, Kind, Mode, WaitReason, decide
from agent.detect import Detection, detect
from agent.infra import Resources
from agent.kubevirt import PHASE_SUCCEEDED
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.names import EventReason
from agent.outcomes import Forbidden, MigrationInFlight, MigrationRejected, Outcome
from agent.preflight import NO_FACTS, ClusterFacts, Infrastructure, Trigger, TriggerKind, facts
from agent.restart import RestartCheck, flags_every_network_edit
from agent.slots import SlotPrediction, choose_slot_model
from agent.window import WindowState

#: How long a create the cache has not shown yet still counts as our migration (client-go: 5 min).
EXPECTATION_TTL_SECONDS: Final = 60.0
#: After ``in-flight migration detected`` the cache will show the other migration soon; look again then.
BUSY_RECHECK_SECONDS: Final = 2.0
#: Waits that end at a known time: entering one is told on the VM (an Event and a log line), so a user
#: sees why nothing happens yet without running ``plan``.
TIMED_WAITS: Final = frozenset({WaitReason.SETTLING, WaitReason.BRIDGE_GRACE, WaitReason.RETRY_BACKOFF})
#: Block reasons that are the agent's own policy; they do not stop KubeVirt's workload updater.
AGENT_ONLY_BLOCKS: Final = frozenset({BlockReason.OPTED_OUT, BlockReason.NAMESPACE_NOT_SELECTED})


class Phase(StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    MIGRATING = "migrating"
    VERIFYING = "verifying"


class Settings(Protocol):
    """The settings the lifecycle reads (``agent.config``'s ``AgentConfig`` provides them)."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def settle_seconds(self) -> float: ...
    @property
    def bridge_grace_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_initial_seconds(self) -> float: ...
    @property
    def backoff_max_seconds(self) -> float: ...
    @property
    def migration_deadline_seconds(self) -> float: ...
    @property
    def verify_timeout_seconds(self) -> float: ...
    @property
    def slot_model(self) -> str: ...
    @property
    def namespaces(self) -> tuple[str, ...]: ...
    @property
    def exclude_namespaces(self) -> tuple[str, ...]: ...


# ------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True)
class Track:
    """The agent's memory of one VMI with something pending (see the module docstring for phases)."""

    phase: Phase = Phase.PENDING
    #: interface → when it was first seen pending; interface → "plug" | "unplug"
    first_seen: Mapping[str, float] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    #: what restarts the settle window when it changes (the interface sets, not every status write)
    signature: tuple[Any, ...] | None = None
    last_change: float | None = None
    attempts: int = 0
    next_retry_at: float | None = None
    #: KubeVirt's ``Cannot migrate VMI`` text, and ``LiveMigratable`` (status, reason) when it said so
    rejected: str | None = None
    rejected_lm: tuple[bool | None, str] | None = None
    #: CREATING: since when, from which node (counted against the caps), whether the request is out
    expected_since: float | None = None
    expected_node: str = ""
    request_out: bool = False
    #: KubeVirt answered "in-flight migration detected": not before this time again (the cache catches up)
    busy_until: float | None = None
    #: since when only the dispatcher's limits (a slot, a token) hold it back: the queue wait
    queued_since: float | None = None
    #: our migration's name (CREATING once the create answered, MIGRATING)
    ours: str | None = None
    cancelled: bool = False
    verify_until: float | None = None
    #: the interfaces our last migration was created for (what VERIFYING checks)
    dispatched: frozenset[str] = frozenset()
    #: reporting: the state gauge's label, the block reason, the reason an Event was written for
    state: str = ""
    blocked: BlockReason | None = None
    announced: BlockReason | None = None
    #: the wait the track is in (told once when it begins, see TIMED_WAITS)
    waiting: WaitReason | None = None
    slot_kind: str | None = None
    dry_run_done: bool = False
    #: (VM generation, what its RestartRequired is — None while being checked), see agent.restart
    restart: tuple[int, RestartCheck | None] | None = None
    #: the cluster changes that could end its block or wait (the mirror re-queues it on them)
    awaits: frozenset[Trigger] = frozenset()


@dataclass(frozen=True, slots=True)
class View:
    """What the caches say about one VMI now. ``migration``: its unfinished VMIM, any initiator;
    ``hotplugged``: hot plugs minus unplugs the agent saw complete for this VMI uid (slot bound)."""

    key: Key
    vmi: VMIRecord | None
    vm: VMRecord | None
    migration: VMIMRecord | None = None
    hotplugged: int = 0


@dataclass(frozen=True, slots=True)
class Context:
    """Everything else a step reads: the clock, the configuration, the cluster's mode, leadership."""

    now: float
    settings: Settings
    mode: Mode = "active"
    kubevirt: KubeVirtRecord | None = None
    #: this replica writes Events and counts (leader); may create and delete migrations (acting)
    leading: bool = True
    acting: bool = True
    #: the informers' initial lists are in
    synced: bool = True
    #: a uniform sample in [0, 1) for the retry backoff's full jitter
    jitter: float = 0.5
    #: NADs, Nodes and Pods as cached (None: no preflight, as without those caches)
    infra: Infrastructure | None = None
    #: the migration window now (None: none configured)
    window: WindowState | None = None


# ------------------------------------------------------------------------------------ observations


@dataclass(frozen=True, slots=True)
class Observed:
    """The caches changed, or a wake-up fired: decide again from the view."""


@dataclass(frozen=True, slots=True)
class MigrationEnded:
    """A VMIM of this VMI became final, or was deleted while unfinished (``deleted``: cancelled)."""

    vmim: VMIMRecord
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class SucceededBeforeStart:
    """In the initial list: our migration of this VMI had already succeeded (verify it, do not redo it)."""

    vmim: VMIMRecord


@dataclass(frozen=True, slots=True)
class Dispatched:
    """The dispatcher chose this VMI within every limit: create its migration now."""

    node: str


@dataclass(frozen=True, slots=True)
class Created:
    name: str


@dataclass(frozen=True, slots=True)
class CreateFailed:
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class CreateAbandoned:
    """The create was cut short (leadership lost): the cache will show the VMIM if it was stored."""


@dataclass(frozen=True, slots=True)
class CancelFailed:
    message: str


@dataclass(frozen=True, slots=True)
class RestartChecked:
    generation: int
    check: RestartCheck


Observation = (
    Observed
    | MigrationEnded
    | SucceededBeforeStart
    | Dispatched
    | Created
    | CreateFailed
    | CreateAbandoned
    | CancelFailed
    | RestartChecked
)
OBSERVED: Final = Observed()

# ----------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class CreateMigration:
    key: Key


@dataclass(frozen=True, slots=True)
class CancelMigration:
    key: Key
    name: str


@dataclass(frozen=True, slots=True)
class CheckRestart:
    key: Key
    generation: int


@dataclass(frozen=True, slots=True)
class Emit:
    """A Kubernetes Event on the VM. ``defer``: a follower keeps it for a resumed leadership (block
    Events are re-derived by every new leader instead, so they are emitted by the leader only)."""

    key: Key
    vm_uid: str
    type: Literal["Normal", "Warning"]
    reason: EventReason
    message: str
    defer: bool = True


@dataclass(frozen=True, slots=True)
class HotplugCompleted:
    operation: str
    seconds: float
    vmi: str


@dataclass(frozen=True, slots=True)
class MigrationFinished:
    vmim: VMIMRecord
    cancelled: bool
    vmi: str
    #: when it was seen to end (the duration of one that ended without a terminal timestamp)
    at: float


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    pass


@dataclass(frozen=True, slots=True)
class MigrationCreatedMetric:
    pass


@dataclass(frozen=True, slots=True)
class QueueWait:
    """From ready (only a slot or a token missing) to our migration created."""

    seconds: float
    vmi: str


@dataclass(frozen=True, slots=True)
class SlotExhaustion:
    kind: str


Metric = (
    HotplugCompleted
    | MigrationFinished
    | Failure
    | Retry
    | MigrationCreatedMetric
    | QueueWait
    | SlotExhaustion
)


@dataclass(frozen=True, slots=True)
class Count:
    """A counter or histogram update: by the leader now, kept by a follower for a resumed leadership."""

    metric: Metric


@dataclass(frozen=True, slots=True)
class WakeAt:
    at: float


@dataclass(frozen=True, slots=True)
class Ready:
    """A candidate for the dispatcher: ready ``since`` (oldest first), the VM's ``priority`` (higher
    first) and the SR-IOV VFs its target pod ``needs`` (the dispatcher's capacity budget)."""

    since: float
    priority: int = 0
    needs: Resources = ()


@dataclass(frozen=True, slots=True)
class Await:
    """The cluster changes that could end this VMI's block or wait (replaces the previous set): the
    mirror re-queues exactly these VMIs when one happens (a NAD created, a node freed up)."""

    triggers: frozenset[Trigger]


@dataclass(frozen=True, slots=True)
class Unready:
    pass


@dataclass(frozen=True, slots=True)
class Hotplugged:
    """Hot plugs minus unplugs that just completed for VMI ``uid`` (the v2 slot bound remembers them)."""

    uid: str
    delta: int


@dataclass(frozen=True, slots=True)
class Log:
    level: Literal["info", "warning", "error"]
    event: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Forget:
    pass


Action = (
    CreateMigration
    | CancelMigration
    | CheckRestart
    | Emit
    | Count
    | WakeAt
    | Ready
    | Unready
    | Await
    | Hotplugged
    | Log
    | Forget
)
Result = tuple[Track | None, list[Action]]

# -------------------------------------------------------------------------------------------- step


def step(track: Track | None, obs: Observation, view: View, ctx: Context) -> Result:
    """Apply one observation to one VMI's track. Pure and total."""
    tracked = track is not None
    out: list[Action] = []
    match obs:
        case Observed():
            track = _observed(track, view, ctx, out)
        case MigrationEnded(vmim, deleted):
            track = _migration_ended(track, vmim, deleted, view, ctx, out)
        case SucceededBeforeStart(vmim):
            track = _succeeded_before_start(track, vmim, ctx, out)
        case Dispatched(node):
            track = _dispatched(track, node, view, ctx, out)
        case Created(name):
            track = _created(track, name, view, ctx, out)
        case CreateFailed(outcome):
            track = _create_failed(track, outcome, view, ctx, out)
        case CreateAbandoned():
            track = _creation_over(track) if track is not None else None
            track = _observed(track, view, ctx, out)
        case CancelFailed(message):
            track = _cancel_failed(track, message, view, ctx, out)
        case RestartChecked(generation, check):
            if track is not None and track.restart is not None and track.restart[0] == generation:
                track = dataclasses.replace(track, restart=(generation, check))
            track = _observed(track, view, ctx, out)
    if track is None and tracked:
        out.append(Forget())
    return track, out


# -------------------------------------------------------------------------------- the level rules


def _observed(track: Track | None, view: View, ctx: Context, out: list[Action]) -> Track | None:
    """Decide again from the view: the reconcile of one VMI."""
    vmi, vm = view.vmi, view.vm
    if vmi is None:  # the VMI is gone; our unfinished migration still ends in a MigrationEnded
        keep = track is not None and (track.ours is not None or track.phase is Phase.CREATING)
        return track if keep else None
    detection = detect(vmi, vm, (view.migration,) if view.migration is not None else ())
    track = _adopt(track, view, out)
    if track is None:
        if not detection.anything_pending:
            return None
        track = Track()
    track = _note_changes(track, detection, view, ctx, out)
    delivered = not (detection.attaching or detection.detaching or vmi.sync_failed_pci)
    if detection.status == "done" and delivered and track.phase is not Phase.CREATING:
        _finish_interfaces(track, Detection(status="done"), view, ctx, out)
        return None
    if not detection.anything_pending and track.ours is None and track.phase is not Phase.CREATING:
        return None
    if track.phase in (Phase.CREATING, Phase.MIGRATING):
        return _watch_ours(track, view, ctx, out)
    if track.phase is Phase.VERIFYING:
        track = _verify(track, detection, view, ctx, out)
        if track.phase is Phase.VERIFYING:
            return track
    return _decide(track, detection, view, ctx, out)


def _adopt(track: Track | None, view: View, out: list[Action]) -> Track | None:
    """Our VMIM in the cache: ours from now on (seen before the create answered, or after a restart)."""
    m = view.migration
    if m is None or m.initiator != "agent":
        return track
    track = track or Track()
    if track.ours is None:
        out.append(Log("info", "migration_tracked", {"vmi": _name(view.key), "vmim": m.name}))
        track = dataclasses.replace(track, ours=m.name, dispatched=track.dispatched or frozenset(track.kinds))
    return dataclasses.replace(track, phase=Phase.MIGRATING, expected_since=None, request_out=False)


def _note_changes(track: Track, d: Detection, view: View, ctx: Context, out: list[Action]) -> Track:
    """Remember when each interface was first seen pending and when the VM last changed (the settle
    window); a changed VMI forgets KubeVirt's earlier refusal; report interfaces that are done."""
    vmi, vm = view.vmi, view.vm
    assert vmi is not None
    changes: dict[str, Any] = {}
    sig = (
        tuple((i.name, i.state) for i in vmi.interfaces),
        tuple((i.name, i.state) for i in vm.template_interfaces) if vm is not None else (),
    )
    if sig != track.signature:
        changes.update(signature=sig, last_change=ctx.now, dry_run_done=False, rejected=None)
    if track.rejected is not None and track.rejected_lm != (vmi.live_migratable, vmi.live_migratable_reason):
        changes["rejected"] = None  # the VMI changed since the webhook said no: try again
    first_seen, kinds = dict(track.first_seen), dict(track.kinds)
    for change in d.changes:
        if change.iface not in first_seen:
            first_seen[change.iface] = ctx.now
            kinds[change.iface] = change.kind
    for name in d.waiting_for_kubevirt:
        first_seen.setdefault(name, ctx.now)
        iface = vm.template_interface(name) if vm is not None else None
        kinds.setdefault(name, "unplug" if iface is not None and iface.absent else "plug")
    track = dataclasses.replace(track, first_seen=first_seen, kinds=kinds, **changes)
    if d.status != "not-running" and not vmi.sync_failed_pci:
        track = _finish_interfaces(track, d, view, ctx, out)
    return track


def _finish_interfaces(track: Track, d: Detection, view: View, ctx: Context, out: list[Action]) -> Track:
    """Report each tracked interface done once it is no longer pending in any way (per interface, so a
    plug that reached the guest is reported even while another change of the VM is still pending)."""
    pending = {c.iface for c in d.changes}
    pending.update(d.waiting_for_kubevirt, d.attaching, d.detaching, d.sriov_unplugs)
    pending.update(name for name, _why in d.undeliverable)
    done = [name for name in track.kinds if name not in pending]
    if not done:
        return track
    vmi_name = _name(view.key)
    parts: dict[str, list[str]] = {"plug": [], "unplug": []}
    for name in done:
        kind = track.kinds[name]
        seen = track.first_seen.get(name, ctx.now)
        out.append(Count(HotplugCompleted(kind, ctx.now - seen, vmi_name)))
        parts[kind].append(name)
    if view.vmi is not None:
        out.append(Hotplugged(view.vmi.uid, len(parts["plug"]) - len(parts["unplug"])))
    text = "; ".join(
        f"{'attached' if kind == 'plug' else 'detached'} {', '.join(sorted(names))}"
        for kind, names in parts.items()
        if names
    )
    _emit(out, view, "Normal", EventReason.HOTPLUG_COMPLETED, f"hot plug completed: {text}")
    out.append(Log("info", "hotplug_completed", {"vmi": vmi_name, "changes": text}))
    return dataclasses.replace(
        track,
        kinds={k: v for k, v in track.kinds.items() if k not in done},
        first_seen={k: v for k, v in track.first_seen.items() if k not in done},
        attempts=0,
        next_retry_at=None,
    )


def _watch_ours(track: Track, view: View, ctx: Context, out: list[Action]) -> Track | None:
    """CREATING / MIGRATING: cancel past the deadline; let an unanswered expectation expire."""
    track = _set_state(track, "in-progress", None)
    m = view.migration
    if track.phase is Phase.MIGRATING and m is not None and m.initiator == "agent":
        return _check_deadline(track, m, view, ctx, out)
    if track.phase is Phase.CREATING and track.expected_since is not None and not track.request_out:
        expires = track.expected_since + EXPECTATION_TTL_SECONDS
        if ctx.now < expires:
            out.append(WakeAt(expires))
            return track
        out.append(Log("warning", "expectation_expired", {"vmi": _name(view.key)}))
        return _decide_again(_creation_over(track), view, ctx, out)
    return track


def _check_deadline(track: Track, m: VMIMRecord, view: View, ctx: Context, out: list[Action]) -> Track:
    if m.creation_ts is None or track.cancelled:
        return track
    deadline = m.creation_ts + ctx.settings.migration_deadline_seconds
    if ctx.now < deadline:
        out.append(WakeAt(deadline))
        return track
    if not ctx.acting:
        return track
    out.append(Log("warning", "migration_deadline_exceeded", {"vmi": _name(view.key), "vmim": m.name}))
    out.append(CancelMigration(view.key, m.name))
    return dataclasses.replace(track, cancelled=True)


def _verify(track: Track, d: Detection, view: View, ctx: Context, out: list[Action]) -> Track:
    """Verify what the migration was created for; a change that arrived later is new work. An adopted
    migration (restart, failover) has no record of what it was for: all of it."""
    assert view.vmi is not None and track.verify_until is not None
    mine = [c for c in d.changes if not track.dispatched or c.iface in track.dispatched]
    if mine and ctx.now < track.verify_until and not view.vmi.sync_failed_pci:
        return _set_state(track, "verifying", None)
    track = dataclasses.replace(track, phase=Phase.PENDING, verify_until=None)
    if mine and not view.vmi.sync_failed_pci:
        timeout = ctx.settings.verify_timeout_seconds
        message = f"migration succeeded but the interface change did not reach the guest in {timeout:.0f}s"
        track = _attempt_failed(track, "verify-failed", message, view, ctx, out)
    return track


def _decide(track: Track, d: Detection, view: View, ctx: Context, out: list[Action]) -> Track:
    """PENDING: ``agent.decide`` says migrate, wait, blocked, nothing or observe; act on it."""
    assert view.vmi is not None
    if track.busy_until is not None and ctx.now < track.busy_until:
        out.append(Unready())
        out.append(WakeAt(track.busy_until))
        return _set_state(track, "in-progress", None)
    track, checking = _restart_check(track, view, ctx, out)
    restart = track.restart[1] if track.restart is not None else None
    found = facts(view.vmi, ctx.infra) if ctx.infra is not None and d.changes else NO_FACTS
    decision = decide(view.vmi, view.vm, d, _decision_context(track, view, ctx, restart, checking, found))
    awaits = _awaits(decision, found)
    if awaits != track.awaits:
        out.append(Await(awaits))
        track = dataclasses.replace(track, awaits=awaits)
    if decision.kind is not Kind.WAIT and track.waiting is not None:
        track = dataclasses.replace(track, waiting=None)
    if decision.kind is Kind.MIGRATE:
        priority = view.vm.priority if view.vm is not None else 0
        out.append(Ready(min(track.first_seen.values(), default=ctx.now), priority, found.needs))
        queued_since = track.queued_since if track.queued_since is not None else ctx.now
        return dataclasses.replace(_set_state(track, "queued", None), queued_since=queued_since)
    out.append(Unready())
    track = dataclasses.replace(track, queued_since=None)
    if decision.recheck_at is not None:
        out.append(WakeAt(decision.recheck_at))
    blocked = decision.block_reason  # BLOCKED, or OBSERVE where the agent would be blocked
    if blocked is not None and ctx.mode == "observe" and blocked in AGENT_ONLY_BLOCKS:
        # Our opt-out and namespace selection do not stop KubeVirt's own migrations.
        return _set_state(track, "pending-plug", None)
    if blocked is not None:
        return _blocked(track, blocked, decision.message, decision.slots, view, ctx, out)
    if decision.kind is Kind.WAIT and decision.wait_reason is not track.waiting:
        track = _start_wait(track, decision, view, ctx, out)
    return _set_state(track, _state_of(decision), None)


def _start_wait(track: Track, decision: Decision, view: View, ctx: Context, out: list[Action]) -> Track:
    """A timed wait begins: say which and until when, once (the leader writes the Event)."""
    reason = decision.wait_reason
    if reason in TIMED_WAITS and decision.recheck_at is not None:
        seconds = max(0.0, decision.recheck_at - ctx.now)
        text = f"hot plug waiting ({reason}) for {seconds:.0f}s: {decision.message}"
        _emit(out, view, "Normal", EventReason.WAITING, text, defer=False)
        fields = {"vmi": _name(view.key), "reason": str(reason), "seconds": round(seconds, 1)}
        out.append(Log("info", "hotplug_waiting", fields))
    return dataclasses.replace(track, waiting=reason)


def _decide_again(track: Track, view: View, ctx: Context, out: list[Action]) -> Track | None:
    """Back to PENDING after an outcome: decide from the view at once."""
    return _observed(track, view, ctx, out)


def _restart_check(track: Track, view: View, ctx: Context, out: list[Action]) -> tuple[Track, bool]:
    """On KubeVirt releases that set RestartRequired for every hot plug, ask once per VM generation
    whether the condition is only the hot plug's (``agent.restart``). Returns (track, checking)."""
    vm = view.vm
    version = ctx.kubevirt.version if ctx.kubevirt is not None else None
    if vm is None or not vm.restart_required or not flags_every_network_edit(version):
        return track, False
    if track.restart is not None and track.restart[0] == vm.generation:
        return track, track.restart[1] is None
    out.append(CheckRestart(view.key, vm.generation))
    return dataclasses.replace(track, restart=(vm.generation, None)), True


def _awaits(decision: Decision, found: ClusterFacts) -> frozenset[Trigger]:
    """What could end a block or wait that the infrastructure caused (empty for every other)."""
    match decision.block_reason or decision.wait_reason:
        case BlockReason.NETWORK_MISSING:
            return frozenset(Trigger(TriggerKind.NAD, n) for n in found.missing_networks)
        case BlockReason.NO_TARGET_CAPACITY:
            resources = (Trigger(TriggerKind.RESOURCE, r) for r in found.short)
            return frozenset((*resources, Trigger(TriggerKind.NODES)))
        case WaitReason.NO_TARGET_NODE | WaitReason.EVACUATING:
            return frozenset({Trigger(TriggerKind.NODES)})
    return frozenset()


def _decision_context(
    track: Track,
    view: View,
    ctx: Context,
    restart: RestartCheck | None,
    checking: bool,
    found: ClusterFacts,
) -> DecisionContext:
    s = ctx.settings
    assert view.vmi is not None
    return DecisionContext(
        now=ctx.now,
        mode=ctx.mode,
        settle_seconds=s.settle_seconds,
        bridge_grace_seconds=s.bridge_grace_seconds,
        include_namespaces=s.namespaces or None,
        exclude_namespaces=s.exclude_namespaces,
        slot_model=choose_slot_model(s.slot_model, ctx.kubevirt, view.vmi),
        known_hotplugged=view.hotplugged,
        first_seen=track.first_seen,
        last_change=track.last_change,
        attempts=track.attempts,
        max_attempts=s.max_attempts,
        next_retry_at=track.next_retry_at,
        rejected_message=track.rejected,
        migration_deadline_seconds=s.migration_deadline_seconds,
        restart_check=restart,
        restart_check_pending=checking,
        facts=found,
        window=ctx.window,
    )


_WAIT_STATES: Final = {
    WaitReason.SETTLING: "settling",
    WaitReason.BRIDGE_GRACE: "bridge-grace",
    WaitReason.IN_FLIGHT: "in-progress",
    WaitReason.WAITING_FOR_KUBEVIRT: "waiting-for-kubevirt",
    WaitReason.RETRY_BACKOFF: "queued",
    WaitReason.EVACUATING: "evacuating",
    WaitReason.NO_TARGET_NODE: "no-target-node",
    WaitReason.OUTSIDE_WINDOW: "outside-window",
}


def _state_of(decision: Decision) -> str:
    """The pending-state gauge's label for a WAIT, NOTHING or OBSERVE decision."""
    if decision.kind is Kind.WAIT:
        return _WAIT_STATES[decision.wait_reason or WaitReason.SETTLING]
    d = decision.detection
    if d.status == "in-progress" or d.active_migration is not None:
        return "in-progress"
    if (d.unplugs and not d.plugs) or (d.detaching and not d.changes):
        return "pending-unplug"
    if d.changes or d.attaching:
        return "pending-plug"
    return "waiting-for-kubevirt"


def _blocked(
    track: Track,
    reason: BlockReason,
    message: str,
    slots: SlotPrediction | None,
    view: View,
    ctx: Context,
    out: list[Action],
) -> Track:
    """Blocked with a reason: counted and logged once per reason; the Warning Event is written by the
    leader (a follower knows the reason, a new leader tells what its predecessor may not have sent)."""
    slot_kind = track.slot_kind
    if track.blocked is not reason:
        if reason is BlockReason.SLOTS_EXHAUSTED:
            slot_kind = "observed" if slots is not None and slots.model == "observed" else "predicted"
            out.append(Count(SlotExhaustion(slot_kind)))
        out.append(
            Log("info", "hotplug_blocked", {"vmi": _name(view.key), "reason": reason.value, "msg": message})
        )
    track = dataclasses.replace(_set_state(track, "", reason), slot_kind=slot_kind)
    if track.announced is not reason and ctx.leading and view.vm is not None:
        event = EventReason.SLOTS_EXHAUSTED if reason is BlockReason.SLOTS_EXHAUSTED else EventReason.BLOCKED
        _emit(out, view, "Warning", event, f"hot plug blocked ({reason.value}): {message}", defer=False)
        track = dataclasses.replace(track, announced=reason)
    return track


def _set_state(track: Track, state: str, blocked: BlockReason | None) -> Track:
    if track.state == state and track.blocked is blocked:
        return track
    slot_kind = track.slot_kind if blocked is BlockReason.SLOTS_EXHAUSTED else None
    return dataclasses.replace(track, state=state, blocked=blocked, slot_kind=slot_kind)


# ------------------------------------------------------------------------------ our own migration


def _dispatched(track: Track | None, node: str, view: View, ctx: Context, out: list[Action]) -> Track | None:
    """The dispatcher's choice: create the migration — only from PENDING, never over an unfinished one."""
    if track is None or track.phase is not Phase.PENDING or view.migration is not None or not ctx.acting:
        return _observed(track, view, ctx, out)
    if ctx.settings.dry_run:
        if not track.dry_run_done:
            out.append(Log("info", "dry_run_would_migrate", {"vmi": _name(view.key), "node": node}))
        return dataclasses.replace(_set_state(track, "queued", None), dry_run_done=True)
    out.append(CreateMigration(view.key))
    return dataclasses.replace(
        _set_state(track, "in-progress", None),
        phase=Phase.CREATING,
        expected_since=ctx.now,
        expected_node=node,
        request_out=True,
        dispatched=frozenset(track.kinds),
    )


def _created(track: Track | None, name: str, view: View, ctx: Context, out: list[Action]) -> Track | None:
    out.append(Count(MigrationCreatedMetric()))
    if track is None:
        return None
    attempt = track.attempts + 1
    if track.queued_since is not None:
        out.append(Count(QueueWait(max(0.0, ctx.now - track.queued_since), _name(view.key))))
        track = dataclasses.replace(track, queued_since=None)
    if track.phase is Phase.CREATING:
        track = dataclasses.replace(track, request_out=False, expected_since=ctx.now)
        if track.ours is None:
            track = dataclasses.replace(track, ours=name)
    changes = ", ".join(f"{k} {n}" for n, k in sorted(track.kinds.items()))
    _emit(
        out,
        view,
        "Normal",
        EventReason.MIGRATION_STARTED,
        f"created migration {name} to {changes or 'apply'}",
    )
    out.append(Log("info", "migration_created", {"vmi": _name(view.key), "vmim": name, "attempt": attempt}))
    out.append(WakeAt(ctx.now + EXPECTATION_TTL_SECONDS))
    out.append(WakeAt(ctx.now + ctx.settings.migration_deadline_seconds))
    return track


def _creation_over(track: Track) -> Track:
    """Leave CREATING for PENDING (the expectation is gone; a name the cache never showed is forgotten)."""
    if track.phase is not Phase.CREATING:
        return track
    return dataclasses.replace(
        track, phase=Phase.PENDING, expected_since=None, expected_node="", request_out=False, ours=None
    )


def _create_failed(
    track: Track | None, outcome: Outcome, view: View, ctx: Context, out: list[Action]
) -> Track | None:
    if track is None:
        return _observed(None, view, ctx, out)
    track = _creation_over(track)
    vmi = _name(view.key)
    match outcome:
        case MigrationInFlight():
            # Someone else's migration is running (KubeVirt's, a user's, or ours the cache hasn't shown).
            out.append(Log("info", "migration_busy", {"vmi": vmi}))
            track = dataclasses.replace(track, busy_until=ctx.now + BUSY_RECHECK_SECONDS)
        case MigrationRejected(message):
            lm = (view.vmi.live_migratable, view.vmi.live_migratable_reason) if view.vmi is not None else None
            track = dataclasses.replace(track, rejected=message, rejected_lm=lm)
            out.append(Count(Failure("create-rejected")))
            out.append(Log("warning", "migration_rejected", {"vmi": vmi, "msg": message}))
        case Forbidden(message, verb, resource):
            hint = f"the agent's ServiceAccount needs {verb} on {resource} (see the chart's ClusterRole)"
            out.append(Log("error", "migration_create_forbidden", {"vmi": vmi, "msg": message, "hint": hint}))
            out.append(Count(Failure("forbidden")))
            retry_at = ctx.now + ctx.settings.backoff_max_seconds
            track = dataclasses.replace(track, next_retry_at=retry_at)
            out.append(WakeAt(retry_at))
        case _:
            track = _attempt_failed(
                track, "api-error", f"creating the migration failed: {outcome.message}", view, ctx, out
            )
    return _decide_again(track, view, ctx, out)


def _cancel_failed(
    track: Track | None, message: str, view: View, ctx: Context, out: list[Action]
) -> Track | None:
    if track is not None:
        track = dataclasses.replace(track, cancelled=False)
    out.append(Log("warning", "migration_cancel_failed", {"vmi": _name(view.key), "error": message}))
    out.append(WakeAt(ctx.now + BUSY_RECHECK_SECONDS))
    return track


def _migration_ended(
    track: Track | None, vmim: VMIMRecord, deleted: bool, view: View, ctx: Context, out: list[Action]
) -> Track | None:
    """A VMIM of this VMI finished (anyone's: it is counted); ours moves the track on."""
    ours = track is not None and vmim.initiator == "agent" and track.ours == vmim.name
    # A migration that reached Succeeded succeeded, even if our cancel (deadline) crossed it.
    succeeded = vmim.phase == PHASE_SUCCEEDED
    cancelled = not succeeded and (deleted or (ours and track is not None and track.cancelled))
    out.append(Count(MigrationFinished(vmim, cancelled, _name(view.key), ctx.now)))
    if track is None or not ours:
        return _observed(track, view, ctx, out)
    deadline_hit = track.cancelled
    track = dataclasses.replace(
        track, phase=Phase.PENDING, ours=None, cancelled=False, expected_since=None,
        request_out=False,
    )  # fmt: skip
    if succeeded:
        until = ctx.now + ctx.settings.verify_timeout_seconds
        out.append(WakeAt(until))
        out.append(Log("info", "migration_succeeded", {"vmi": _name(view.key), "vmim": vmim.name}))
        track = dataclasses.replace(track, phase=Phase.VERIFYING, verify_until=until)
        return _observed(track, view, ctx, out)
    reason = "deadline-exceeded" if deadline_hit else "migration-failed"
    why = vmim.failure_reason or ("cancelled past the deadline" if deadline_hit else "")
    track = _attempt_failed(
        track, reason, f"migration {vmim.name} failed: {why or vmim.phase}", view, ctx, out
    )
    return _observed(track, view, ctx, out)


def _succeeded_before_start(
    track: Track | None, vmim: VMIMRecord, ctx: Context, out: list[Action]
) -> Track | None:
    """Our migration succeeded just before a restart: verify it instead of migrating again while the
    VMI status catches up (the next Observed decides whether anything is still pending)."""
    done_at = vmim.phase_ts(PHASE_SUCCEEDED)
    if done_at is None or done_at + ctx.settings.verify_timeout_seconds <= ctx.now:
        return track
    until = done_at + ctx.settings.verify_timeout_seconds
    out.append(WakeAt(until))
    return dataclasses.replace(track or Track(), phase=Phase.VERIFYING, verify_until=until)


def _attempt_failed(
    track: Track, reason: str, message: str, view: View, ctx: Context, out: list[Action]
) -> Track:
    """One attempt failed: back off and retry (a Warning Event says when), or give up at the limit."""
    s = ctx.settings
    attempts = track.attempts + 1
    out.append(Count(Failure(reason)))
    next_retry_at = track.next_retry_at
    if attempts < s.max_attempts:
        delay = backoff_seconds(attempts, s.backoff_initial_seconds, s.backoff_max_seconds, ctx.jitter)
        next_retry_at = ctx.now + delay
        out.append(Count(Retry()))
        text = f"{message}; retry {attempts + 1}/{s.max_attempts} in {delay:.0f}s"
        _emit(out, view, "Warning", EventReason.MIGRATION_RETRY, text)
        out.append(WakeAt(next_retry_at))
    else:
        text = f"{message}; gave up after {attempts} attempts: migrate or restart the VM manually"
        _emit(out, view, "Warning", EventReason.GAVE_UP, text)
    out.append(
        Log("warning", "migration_attempt_failed", {"vmi": _name(view.key), "reason": reason, "msg": message})
    )
    return dataclasses.replace(track, attempts=attempts, next_retry_at=next_retry_at)


def backoff_seconds(attempt: int, initial: float, maximum: float, jitter: float) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th failure: ``jitter`` (uniform in
    [0, 1)) of ``min(maximum, initial * 2**(attempt-1))``, at least ``initial / 2`` — tenacity's
    ``wait_random_exponential`` with the random draw passed in."""
    high = min(maximum, initial * 2.0 ** max(0, attempt - 1))
    return max(initial / 2, jitter * high)


# ---------------------------------------------------------------------------------------- helpers


def _emit(
    out: list[Action],
    view: View,
    etype: Literal["Normal", "Warning"],
    reason: EventReason,
    message: str,
    *,
    defer: bool = True,
) -> None:
    if view.vm is not None:
        out.append(Emit(view.key, view.vm.uid, etype, reason, message, defer))


def _name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


__all__ = [
    "AGENT_ONLY_BLOCKS",
    "BUSY_RECHECK_SECONDS",
    "EXPECTATION_TTL_SECONDS",
    "OBSERVED",
    "Action",
    "Await",
    "CancelFailed",
    "CancelMigration",
    "CheckRestart",
    "Context",
    "Count",
    "CreateAbandoned",
    "CreateFailed",
    "CreateMigration",
    "Created",
    "Dispatched",
    "Emit",
    "EventReason",
    "Failure",
    "Forget",
    "HotplugCompleted",
    "Hotplugged",
    "Log",
    "Metric",
    "MigrationCreatedMetric",
    "MigrationEnded",
    "MigrationFinished",
    "Observation",
    "Observed",
    "Phase",
    "QueueWait",
    "Ready",
    "RestartChecked",
    "Retry",
    "Settings",
    "SlotExhaustion",
    "SucceededBeforeStart",
    "Track",
    "Unready",
    "View",
    "WakeAt",
    "backoff_seconds",
    "step",
]
