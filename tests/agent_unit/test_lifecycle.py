"""agent.lifecycle: each transition of the state diagram (docs/decisions.md), then random observation
sequences against a small model of KubeVirt (hypothesis): at most one migration of ours at a time,
and every track ends completed, blocked with a reason, or forgotten."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from agent.config import DEFAULTS
from agent.decide import BlockReason
from agent.lifecycle import (
    OBSERVED,
    Action,
    CancelFailed,
    CancelMigration,
    CheckRestart,
    Context,
    Count,
    CreateAbandoned,
    Created,
    CreateFailed,
    CreateMigration,
    Dispatched,
    Emit,
    EventReason,
    Failure,
    Forget,
    HotplugCompleted,
    MigrationEnded,
    Observation,
    Phase,
    QueueWait,
    Ready,
    RestartChecked,
    SucceededBeforeStart,
    Track,
    Unready,
    View,
    WakeAt,
    backoff_seconds,
    step,
)
from agent.model import KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.outcomes import Forbidden, MigrationInFlight, MigrationRejected, Transient
from agent.restart import RestartCheck
from tests.agent_unit.builders import MAX_EXAMPLES, NAME, NS, iface, net, vm, vmi, vmim

KEY = (NS, NAME)
BRIDGE = (iface("hp1", "bridge"), net("hp1"))
SETTINGS = dataclasses.replace(
    DEFAULTS,
    settle_seconds=0,
    bridge_grace_seconds=0,
    mode="active",
    max_attempts=3,
    backoff_initial_seconds=10,
)
T0 = 1_000_000.0
PENDING = vmi([BRIDGE])
DELIVERED = vmi([BRIDGE], {"hp1": "domain, guest-agent, multus-status"})
VM = vm([BRIDGE])


def ctx(now: float = T0, **kw: Any) -> Context:
    return Context(now=now, settings=kw.pop("settings", SETTINGS), **kw)


def view(
    the_vmi: VMIRecord | None = PENDING, the_vm: VMRecord | None = VM, migration: VMIMRecord | None = None
) -> View:
    return View(KEY, the_vmi, the_vm, migration)


def of(actions: Sequence[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def counted(actions: Sequence[Action], kind: type) -> list[Any]:
    return [a.metric for a in of(actions, Count) if isinstance(a.metric, kind)]


def queued() -> Track:
    track, actions = step(None, OBSERVED, view(), ctx())
    assert track is not None and track.state == "queued" and of(actions, Ready)
    return track


def creating() -> Track:
    track, actions = step(queued(), Dispatched("node-a"), view(), ctx())
    assert track is not None and track.phase is Phase.CREATING and of(actions, CreateMigration)
    return track


def migrating(name: str = "hotplug-vm1-xyz") -> Track:
    track, _ = step(creating(), Created(name), view(), ctx())
    track, _ = step(track, OBSERVED, view(migration=vmim("Running", name=name)), ctx())
    assert track is not None and track.phase is Phase.MIGRATING and track.ours == name
    return track


# -------------------------------------------------------------------------------- PENDING


def test_nothing_pending_is_not_tracked() -> None:
    assert step(None, OBSERVED, view(DELIVERED), ctx()) == (None, [])


def test_a_pending_plug_starts_a_track_and_waits_the_settle_window() -> None:
    slow = dataclasses.replace(SETTINGS, settle_seconds=5)
    track, actions = step(None, OBSERVED, view(), ctx(settings=slow))
    assert track is not None and track.phase is Phase.PENDING and track.state == "settling"
    assert track.first_seen == {"hp1": T0} and track.kinds == {"hp1": "plug"}
    assert WakeAt(T0 + 5) in actions and Unready() in actions


def test_a_timed_wait_is_told_once_when_it_begins() -> None:
    slow = dataclasses.replace(SETTINGS, settle_seconds=5, bridge_grace_seconds=15)
    track, actions = step(None, OBSERVED, view(), ctx(settings=slow))
    (event,) = of(actions, Emit)
    assert event.reason is EventReason.WAITING and event.message.startswith(
        "hot plug waiting (settling) for 5s"
    )
    track, actions = step(track, OBSERVED, view(), ctx(T0 + 1, settings=slow))
    assert not of(actions, Emit)  # still the same wait
    track, actions = step(track, OBSERVED, view(), ctx(T0 + 6, settings=slow))
    (event,) = of(actions, Emit)
    assert "(bridge-grace) for 9s" in event.message


def test_ready_when_every_window_passed() -> None:
    track = queued()
    assert track.queued_since == T0


def test_blocked_writes_one_event_as_leader_and_none_as_follower() -> None:
    nlm = vmi([BRIDGE], live_migratable="False", lm_reason="InterfaceNotLiveMigratable")
    track, actions = step(None, OBSERVED, view(nlm), ctx(leading=False, acting=False))
    assert track is not None and track.blocked is BlockReason.NOT_LIVE_MIGRATABLE
    assert not of(actions, Emit) and track.announced is None
    track, actions = step(track, OBSERVED, view(nlm), ctx())
    (event,) = of(actions, Emit)
    assert event.type == "Warning" and event.reason is EventReason.BLOCKED and not event.defer
    assert "hot plug blocked (not-live-migratable)" in event.message
    _, again = step(track, OBSERVED, view(nlm), ctx())
    assert not of(again, Emit)  # announced once


def test_a_block_lifts_when_its_cause_goes() -> None:
    nlm = vmi([BRIDGE], live_migratable="False")
    track, _ = step(None, OBSERVED, view(nlm), ctx())
    track, actions = step(track, OBSERVED, view(), ctx())
    assert track is not None and track.blocked is None and of(actions, Ready)


def test_restart_required_on_v151_is_checked_once_per_generation() -> None:
    v151 = KubeVirtRecord(key=("kubevirt", "kubevirt"), version=(1, 5, 1))
    flagged = vm([BRIDGE], restart_required=True)
    track, actions = step(None, OBSERVED, view(the_vm=flagged), ctx(kubevirt=v151))
    assert of(actions, CheckRestart) == [CheckRestart(KEY, flagged.generation)]
    assert track is not None and track.state == "waiting-for-kubevirt"
    _, again = step(track, OBSERVED, view(the_vm=flagged), ctx(kubevirt=v151))
    assert not of(again, CheckRestart)
    only_plug = RestartChecked(flagged.generation, RestartCheck(False, "only the network edit"))
    track, actions = step(track, only_plug, view(the_vm=flagged), ctx(kubevirt=v151))
    assert track is not None and of(actions, Ready)


# -------------------------------------------------------------------------------- CREATING


def test_dispatched_creates_once_and_expects_it() -> None:
    track = creating()
    assert track.expected_since == T0 and track.expected_node == "node-a" and track.request_out
    assert track.dispatched == frozenset({"hp1"})
    _, again = step(track, Dispatched("node-a"), view(), ctx())
    assert not of(again, CreateMigration)


def test_dispatched_never_creates_over_an_unfinished_migration_or_as_follower() -> None:
    _, actions = step(queued(), Dispatched("node-a"), view(migration=vmim("Running", ours=False)), ctx())
    assert not of(actions, CreateMigration)
    _, actions = step(queued(), Dispatched("node-a"), view(), ctx(acting=False))
    assert not of(actions, CreateMigration)


def test_dry_run_creates_nothing() -> None:
    dry = dataclasses.replace(SETTINGS, dry_run=True)
    track, actions = step(queued(), Dispatched("node-a"), view(), ctx(settings=dry))
    assert track is not None and track.phase is Phase.PENDING and not of(actions, CreateMigration)


def test_created_names_ours_reports_and_counts_the_queue_wait() -> None:
    track, actions = step(creating(), Created("hotplug-vm1-abc"), view(), ctx(T0 + 2))
    assert track is not None and track.ours == "hotplug-vm1-abc" and not track.request_out
    (event,) = of(actions, Emit)
    assert event.reason is EventReason.MIGRATION_STARTED and "plug hp1" in event.message
    assert counted(actions, QueueWait) == [QueueWait(2.0, f"{NS}/{NAME}")]
    assert WakeAt(T0 + 2 + 60) in actions


def test_the_cache_showing_ours_makes_it_migrating() -> None:
    assert migrating().expected_since is None


def test_in_flight_answer_waits_without_an_attempt() -> None:
    track, actions = step(creating(), CreateFailed(MigrationInFlight("in-flight")), view(), ctx())
    assert track is not None and track.phase is Phase.PENDING and track.attempts == 0
    assert WakeAt(T0 + 2) in actions and not of(actions, Ready) and not of(actions, CreateMigration)


def test_rejected_answer_blocks() -> None:
    track, actions = step(creating(), CreateFailed(MigrationRejected("Cannot migrate VMI: x")), view(), ctx())
    assert track is not None and track.blocked is BlockReason.MIGRATION_REJECTED
    assert counted(actions, Failure) == [Failure("create-rejected")]


def test_forbidden_answer_backs_off_for_the_maximum() -> None:
    outcome = Forbidden("no", "create", "virtualmachineinstancemigrations")
    track, actions = step(creating(), CreateFailed(outcome), view(), ctx())
    assert track is not None and track.next_retry_at == T0 + SETTINGS.backoff_max_seconds
    assert counted(actions, Failure) == [Failure("forbidden")]


def test_transient_answer_is_a_failed_attempt_with_a_retry_event() -> None:
    track, actions = step(creating(), CreateFailed(Transient("boom", 500)), view(), ctx(jitter=0.0))
    assert track is not None and track.attempts == 1 and track.next_retry_at == T0 + 5
    reasons = [e.reason for e in of(actions, Emit)]
    assert reasons == [EventReason.MIGRATION_RETRY, EventReason.WAITING]  # the backoff wait begins


def test_abandoned_create_goes_back_to_pending() -> None:
    track, _ = step(creating(), CreateAbandoned(), view(), ctx())
    assert track is not None and track.phase is Phase.PENDING and track.expected_since is None


def test_an_expectation_the_cache_never_shows_expires() -> None:
    track, _ = step(creating(), Created("hotplug-vm1-abc"), view(), ctx())
    track, actions = step(track, OBSERVED, view(), ctx(T0 + 30))
    assert track is not None and track.phase is Phase.CREATING and WakeAt(T0 + 60) in actions
    track, actions = step(track, OBSERVED, view(), ctx(T0 + 61))
    assert track is not None and track.phase is Phase.PENDING and track.ours is None and of(actions, Ready)


# -------------------------------------------------------------------------------- MIGRATING


def test_past_the_deadline_ours_is_cancelled_by_the_leader_only() -> None:
    running = vmim("Running")
    assert running.creation_ts is not None
    late = running.creation_ts + SETTINGS.migration_deadline_seconds + 1
    track, actions = step(migrating(), OBSERVED, view(migration=running), ctx(late, acting=False))
    assert not of(actions, CancelMigration)
    track, actions = step(migrating(), OBSERVED, view(migration=running), ctx(late))
    assert of(actions, CancelMigration) == [CancelMigration(KEY, running.name)]
    assert track is not None and track.cancelled
    track, actions = step(track, CancelFailed("503"), view(migration=running), ctx(late))
    assert track is not None and not track.cancelled and WakeAt(late + 2) in actions


def test_succeeded_moves_to_verifying_and_delivered_completes() -> None:
    track, actions = step(migrating(), MigrationEnded(vmim("Succeeded")), view(), ctx(T0 + 5))
    assert track is not None and track.phase is Phase.VERIFYING and track.verify_until == T0 + 65
    track, actions = step(track, OBSERVED, view(DELIVERED), ctx(T0 + 6))
    assert track is None and Forget() in actions
    assert counted(actions, HotplugCompleted)[0].operation == "plug"
    assert [e.reason for e in of(actions, Emit)] == [EventReason.HOTPLUG_COMPLETED]


def test_failed_retries_with_backoff_then_gives_up() -> None:
    track: Track | None = migrating()
    for attempt in (1, 2, 3):
        assert track is not None
        track, actions = step(track, MigrationEnded(vmim("Failed")), view(), ctx(T0, jitter=0.5))
        assert track is not None and track.attempts == attempt
        reasons = [e.reason for e in of(actions, Emit)]
        if attempt < 3:
            assert reasons[0] is EventReason.MIGRATION_RETRY
            track = dataclasses.replace(track, phase=Phase.MIGRATING, ours="hotplug-vm1-xyz")
        else:
            assert EventReason.GAVE_UP in reasons and track.blocked is BlockReason.RETRIES_EXHAUSTED


def test_deleted_after_our_cancel_is_a_deadline_failure() -> None:
    track = dataclasses.replace(migrating(), cancelled=True)
    _, actions = step(track, MigrationEnded(vmim("Running"), deleted=True), view(), ctx())
    assert counted(actions, Failure) == [Failure("deadline-exceeded")]


def test_succeeded_as_our_cancel_landed_counts_as_succeeded() -> None:
    track = dataclasses.replace(migrating(), cancelled=True)
    track, actions = step(track, MigrationEnded(vmim("Succeeded")), view(), ctx())
    assert track is not None and track.phase is Phase.VERIFYING and track.attempts == 0
    assert not counted(actions, Failure)


def test_someone_elses_migration_is_only_counted() -> None:
    theirs = vmim("Succeeded", ours=False, name="kubevirt-workload-update-x")
    track, actions = step(None, MigrationEnded(theirs), view(DELIVERED), ctx())
    assert track is None and len(of(actions, Count)) == 1


# -------------------------------------------------------------------------------- VERIFYING


def test_verify_timeout_is_a_failed_attempt() -> None:
    track, _ = step(migrating(), MigrationEnded(vmim("Succeeded")), view(), ctx())
    track, actions = step(track, OBSERVED, view(), ctx(T0 + 61))
    assert track is not None and track.phase is Phase.PENDING and track.attempts == 1
    assert counted(actions, Failure) == [Failure("verify-failed")]


def test_our_success_before_a_restart_is_verified_not_redone() -> None:
    finished_at = T0 - 10
    done = dataclasses.replace(vmim("Succeeded"), phase_transitions=(("Succeeded", finished_at),))
    track, _ = step(None, SucceededBeforeStart(done), view(), ctx(finished_at + 1))
    track, actions = step(track, OBSERVED, view(), ctx(finished_at + 2))
    assert track is not None and track.phase is Phase.VERIFYING and not of(actions, Ready)


def test_the_backoff_has_full_jitter_with_a_floor() -> None:
    assert backoff_seconds(1, 10, 300, 0.0) == 5
    assert backoff_seconds(3, 10, 300, 0.5) == 20
    assert backoff_seconds(10, 10, 300, 0.99) == 297


# -------------------------------------------------------------------------------- the model


class World:
    """A VMI with a pending bridge plug, and KubeVirt as the lifecycle meets it: creates answered
    (or not), migrations that run, succeed, fail or deliver nothing, other initiators' migrations."""

    def __init__(self) -> None:
        self.migration: VMIMRecord | None = None
        self.delivered = False
        self.migratable = True
        self.now = T0
        self.created = 0

    def view(self) -> View:
        base = DELIVERED if self.delivered else PENDING
        if not self.migratable:
            base = dataclasses.replace(base, live_migratable=False, live_migratable_reason="X")
        return View(KEY, base, VM, self.migration)


EVENTS = st.sampled_from(
    ["tick", "dispatch", "answer-ok", "answer-busy", "answer-error", "answer-rejected", "run-theirs",
     "succeed", "succeed-deliver", "fail", "delete", "unmigratable", "migratable"]
)  # fmt: skip


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(st.lists(EVENTS, max_size=40), st.floats(0, 0.999))
def test_random_lives_keep_the_invariants(events: list[str], jitter: float) -> None:
    w = World()
    track: Track | None = None
    create_out = False
    ours_unfinished = False

    def apply(obs: Observation) -> None:
        nonlocal track, create_out, ours_unfinished
        before = track.phase if track is not None else None
        track, actions = step(track, obs, w.view(), Context(now=w.now, settings=SETTINGS, jitter=jitter))
        creates = of(actions, CreateMigration)
        if creates:
            # at most one migration of ours at a time: only from PENDING, nothing unfinished anywhere
            assert before is Phase.PENDING and isinstance(obs, Dispatched) and len(creates) == 1
            assert not create_out and not ours_unfinished and w.migration is None
            create_out = True
            w.created += 1
        if track is not None:
            assert track.phase is not Phase.CREATING or track.expected_since is not None
            assert track.phase is not Phase.VERIFYING or track.verify_until is not None
            assert track.blocked is None or track.state == ""

    for e in events:
        w.now += 7
        if e == "dispatch" and track is not None and track.state == "queued":
            apply(Dispatched("node-a"))
        elif e.startswith("answer") and create_out:
            create_out = False
            outcome = {
                "answer-busy": MigrationInFlight("x"),
                "answer-error": Transient("x", 500),
                "answer-rejected": MigrationRejected("Cannot migrate VMI"),
            }.get(e)
            if outcome is None:
                apply(Created("hotplug-vm1-xyz"))
                w.migration = vmim("Running")
                ours_unfinished = True
            else:
                apply(CreateFailed(outcome))
        elif e == "run-theirs" and w.migration is None and not create_out:
            w.migration = vmim("Running", ours=False, name="other")
        elif e in ("succeed", "succeed-deliver", "fail", "delete") and w.migration is not None:
            ended = dataclasses.replace(
                w.migration, phase="Failed" if e in ("fail", "delete") else "Succeeded"
            )
            w.migration = None
            ours_unfinished = False
            w.delivered = w.delivered or e == "succeed-deliver"
            apply(MigrationEnded(ended, deleted=e == "delete"))
        elif e == "unmigratable":
            w.migratable = False
        elif e == "migratable":
            w.migratable = True
        apply(OBSERVED)

    # Quiescence: let time pass with KubeVirt answering and finishing what is open; the track must end
    # completed (None), blocked with a reason, or be plainly waiting for the next decision.
    for _ in range(60):
        w.now += 400
        if create_out:
            create_out = False
            apply(Created("hotplug-vm1-xyz"))
            w.migration = vmim("Running")
            ours_unfinished = True
        elif w.migration is not None:
            ended = dataclasses.replace(w.migration, phase="Succeeded")
            w.migration, ours_unfinished, w.delivered = None, False, True
            apply(MigrationEnded(ended))
        apply(OBSERVED)
        if track is not None and track.state == "queued":
            apply(Dispatched("node-a"))
    assert track is None or track.blocked is not None, track
    event(f"migrations created: {min(w.created, 3)}{'+' if w.created > 3 else ''}")
    event(f"ended {'completed' if track is None else f'blocked {track.blocked}'}")


def test_a_missing_nad_blocks_registers_its_trigger_and_clears_it_once_created() -> None:
    from agent.infra import NADRecord
    from agent.lifecycle import Await
    from agent.preflight import Infrastructure, Trigger, TriggerKind

    missing = Infrastructure(nads={})
    track, actions = step(None, OBSERVED, view(), ctx(infra=missing))
    assert track is not None and track.blocked is BlockReason.NETWORK_MISSING
    (await_,) = of(actions, Await)
    assert await_.triggers == frozenset({Trigger(TriggerKind.NAD, f"{NS}/nad-hp1")})
    assert not of(actions, Ready)
    created = Infrastructure(nads={(NS, "nad-hp1"): NADRecord((NS, "nad-hp1"))})
    track, actions = step(track, OBSERVED, view(), ctx(infra=created))
    assert track is not None and track.blocked is None and of(actions, Ready)
    assert of(actions, Await) == [Await(frozenset())]  # deregistered from the release index


def test_ready_carries_the_vms_priority_and_the_vfs_its_target_needs() -> None:
    from agent.infra import NADRecord, parse_node
    from agent.preflight import Infrastructure

    sriov = (iface("sr1", "sriov"), net("sr1"))
    vf = "vendor.example/vf"
    node_b = parse_node(
        {"metadata": {"name": "node-b"}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                    "allocatable": {vf: "2"}}}
    )  # fmt: skip
    infra = Infrastructure(
        nads={(NS, "nad-sr1"): NADRecord((NS, "nad-sr1"), vf)}, nodes={"node-b": node_b}, targets={"node-b"}
    )
    the_vm = dataclasses.replace(vm([sriov]), priority=7)
    _track, actions = step(None, OBSERVED, view(vmi([sriov]), the_vm), ctx(infra=infra))
    (ready,) = of(actions, Ready)
    assert ready.priority == 7 and ready.needs == ((vf, 1),)
