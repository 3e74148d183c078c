"""Every decision path and every block reason, plus totality (hypothesis)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from agent.decide import BlockReason, Decision, DecisionContext, Kind, WaitReason, decide, resolve_mode
from agent.detect import detect
from agent.model import KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.preflight import ClusterFacts
from agent.restart import RestartCheck
from agent.window import WindowState
from tests.agent_unit.builders import MAX_EXAMPLES, iface, net, vm, vmi, vmim

NOW = 1_000.0
BR1 = (iface("br1", "bridge"), net("br1"))
BR2 = (iface("br2", "bridge"), net("br2"))
BR1_ABSENT = (iface("br1", "bridge", "absent"), net("br1"))
SR1 = (iface("sr1", "sriov"), net("sr1"))

#: A context in which a pending bridge plug is past every window.
READY = DecisionContext(now=NOW, first_seen={"br1": 0.0, "br2": 0.0}, last_change=0.0, slot_model="v1")


def run(
    the_vmi: VMIRecord,
    the_vm: VMRecord | None,
    ctx: DecisionContext = READY,
    migrations: tuple[VMIMRecord, ...] = (),
) -> Decision:
    return decide(the_vmi, the_vm, detect(the_vmi, the_vm, migrations), ctx)


def with_(ctx: DecisionContext, **kw: Any) -> DecisionContext:
    return dataclasses.replace(ctx, **kw)


# ----------------------------------------------------------------------------------------- NOTHING


def test_nothing_when_not_running() -> None:
    assert run(vmi([BR1], phase="Pending"), vm([BR1])).kind is Kind.NOTHING


def test_nothing_when_done() -> None:
    d = run(vmi([BR1], {"br1": "domain, multus-status"}), vm([BR1]))
    assert d.kind is Kind.NOTHING


def test_nothing_when_attaching_in_place() -> None:
    d = run(vmi([BR1], {"br1": "multus-status"}), vm([BR1]))
    assert d.kind is Kind.NOTHING and "in place" in d.message


def test_nothing_when_someone_else_migrates_and_nothing_pending() -> None:
    d = run(vmi([]), vm([]), migrations=(vmim("Running", ours=False),))
    assert d.kind is Kind.NOTHING


# ----------------------------------------------------------------------------------------- MIGRATE


def test_migrate_bridge_plug_after_grace() -> None:
    d = run(vmi([BR1]), vm([BR1]))
    assert d.kind is Kind.MIGRATE and "plug br1" in d.message
    assert d.slots is not None and not d.slots.exhausted


def test_migrate_sriov_without_grace() -> None:
    ctx = with_(READY, first_seen={"sr1": NOW})
    assert run(vmi([SR1]), vm([SR1]), ctx).kind is Kind.MIGRATE


def test_migrate_unplug() -> None:
    d = run(vmi([BR1_ABSENT], {"br1": "multus-status"}), vm([BR1_ABSENT]))
    assert d.kind is Kind.MIGRATE and "unplug br1" in d.message


def test_migrate_after_kubevirt_sync_wait_with_part_still_waiting() -> None:
    ctx = with_(READY, last_change=NOW - 31.0)
    assert run(vmi([BR1]), vm([BR1, BR2]), ctx).kind is Kind.MIGRATE


def test_restart_required_blocks_even_a_deliverable_change() -> None:
    # RestartRequired is a block reason: the restart applies the change anyway.
    blocked(run(vmi([BR1]), vm([BR1], restart_required=True)), BlockReason.RESTART_REQUIRED)


def test_an_interface_removed_instead_of_absent_blocks_even_with_a_plug_pending() -> None:
    # KubeVirt sets RestartRequired for it; blocking at once does not race the condition.
    d = run(vmi([BR1, BR2]), vm([BR2, (iface("br3", "bridge"), net("br3"))]))
    blocked(d, BlockReason.RESTART_REQUIRED)
    assert "br1: removed from the VM template" in d.message


def test_restart_required_that_comes_only_from_the_hot_plug_is_ignored() -> None:
    # KubeVirt v1.5.1 sets RestartRequired for the hot plug itself; the agent showed it is only that.
    ctx = with_(READY, restart_check=RestartCheck(False, "only the network edit"))
    assert run(vmi([BR1]), vm([BR1], restart_required=True), ctx).kind is Kind.MIGRATE


def test_restart_required_that_a_check_confirmed_blocks_and_says_why() -> None:
    ctx = with_(READY, restart_check=RestartCheck(True, "spec.template.spec.domain.cpu.cores changed"))
    d = blocked(run(vmi([BR1]), vm([BR1], restart_required=True), ctx), BlockReason.RESTART_REQUIRED)
    assert "domain.cpu.cores changed" in d.message


def test_restart_required_waits_while_it_is_being_checked() -> None:
    d = run(vmi([BR1]), vm([BR1], restart_required=True), with_(READY, restart_check_pending=True))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.WAITING_FOR_KUBEVIRT
    assert d.recheck_at is None  # the check's answer re-queues the VMI


# ----------------------------------------------------------------------------------------- WAIT


def test_wait_bridge_grace_until_first_seen_plus_15() -> None:
    ctx = with_(READY, first_seen={"br1": NOW - 5.0})
    d = run(vmi([BR1]), vm([BR1]), ctx)
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.BRIDGE_GRACE
    assert d.recheck_at == pytest.approx(NOW + 10.0)


def test_wait_bridge_grace_uses_kubevirt_condition_time() -> None:
    # first seen now by the agent, but KubeVirt flagged it 20 s ago: grace is over.
    ctx = with_(READY, first_seen={"br1": NOW})
    the_vmi = vmi([BR1], migration_required=("False", "AutoMigrationPending", "1970-01-01T00:16:20Z"))
    assert run(the_vmi, vm([BR1]), ctx).kind is Kind.MIGRATE


def test_wait_bridge_grace_for_unseen_interface_starts_now() -> None:
    d = run(vmi([BR1]), vm([BR1]), with_(READY, first_seen={}))
    assert d.wait_reason is WaitReason.BRIDGE_GRACE and d.recheck_at == pytest.approx(NOW + 15.0)


def test_wait_settling() -> None:
    d = run(vmi([BR1]), vm([BR1]), with_(READY, last_change=NOW - 2.0))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.SETTLING
    assert d.recheck_at == pytest.approx(NOW + 3.0)


def test_wait_in_flight() -> None:
    d = run(vmi([BR1]), vm([BR1]), migrations=(vmim("Pending"),))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.IN_FLIGHT and d.recheck_at is None
    d = run(vmi([BR1], migrating=True), vm([BR1]))
    assert d.wait_reason is WaitReason.IN_FLIGHT


def test_vmi_status_alone_is_waited_on_until_the_migration_deadline() -> None:
    """The VMI says "migrating" but no unfinished VMIM is known: wait (the object may still be on its way
    to the cache), but not forever: past the deadline from the migration's start the status is stale."""
    started = "1970-01-01T00:10:00Z"  # 600 s
    ctx = with_(READY, migration_deadline_seconds=300.0)
    d = run(vmi([BR1], migrating=True, migration_start=started), vm([BR1]), with_(ctx, now=899.0))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.IN_FLIGHT
    assert d.recheck_at == pytest.approx(900.0)
    d = run(vmi([BR1], migrating=True, migration_start=started), vm([BR1]), with_(ctx, now=900.0))
    assert d.kind is Kind.MIGRATE
    # Without a start time there is nothing to measure from: keep waiting on the status (event-driven).
    d = run(vmi([BR1], migrating=True), vm([BR1]), with_(ctx, now=10_000.0))
    assert d.kind is Kind.WAIT and d.recheck_at is None
    # A known unfinished migration object is always waited on.
    d = run(
        vmi([BR1], migrating=True, migration_start=started),
        vm([BR1]),
        with_(ctx, now=10_000.0),
        migrations=(vmim("Running"),),
    )
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.IN_FLIGHT


def test_wait_for_kubevirt_event_driven() -> None:
    d = run(vmi([]), vm([BR1]))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.WAITING_FOR_KUBEVIRT
    assert d.recheck_at is None


def test_wait_for_kubevirt_bounded_when_more_is_coming() -> None:
    d = run(vmi([BR1]), vm([BR1, BR2]), with_(READY, last_change=NOW - 10.0))
    assert d.wait_reason is WaitReason.WAITING_FOR_KUBEVIRT
    assert d.recheck_at == pytest.approx(NOW + 20.0)


def test_wait_retry_backoff() -> None:
    d = run(vmi([BR1]), vm([BR1]), with_(READY, attempts=1, next_retry_at=NOW + 7.0))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.RETRY_BACKOFF and d.recheck_at == NOW + 7.0


# ----------------------------------------------------------------------------------------- BLOCKED


def blocked(d: Decision, reason: BlockReason) -> Decision:
    assert d.kind is Kind.BLOCKED, d
    assert d.block_reason is reason
    assert d.message
    return d


def test_blocked_namespace_excluded_or_not_included() -> None:
    blocked(
        run(vmi([BR1]), vm([BR1]), with_(READY, exclude_namespaces=frozenset({"ns1"}))),
        BlockReason.NAMESPACE_NOT_SELECTED,
    )
    blocked(
        run(vmi([BR1]), vm([BR1]), with_(READY, include_namespaces=frozenset({"other"}))),
        BlockReason.NAMESPACE_NOT_SELECTED,
    )
    # Nothing pending in an excluded namespace: no block, no Event spam.
    d = run(vmi([]), vm([]), with_(READY, exclude_namespaces=frozenset({"ns1"})))
    assert d.kind is Kind.NOTHING


def test_blocked_opted_out() -> None:
    blocked(run(vmi([BR1]), vm([BR1], opted_out=True)), BlockReason.OPTED_OUT)


def test_blocked_not_live_migratable() -> None:
    d = run(vmi([BR1], live_migratable="False", lm_reason="DisksNotLiveMigratable"), vm([BR1]))
    blocked(d, BlockReason.NOT_LIVE_MIGRATABLE)
    assert "DisksNotLiveMigratable" in d.message


def test_live_migratable_unknown_is_tried() -> None:
    assert run(vmi([BR1], live_migratable=None), vm([BR1])).kind is Kind.MIGRATE


def test_blocked_slots_observed() -> None:
    d = run(vmi([BR1], sync_pci=True), vm([BR1]), with_(READY, slot_model="none"))
    blocked(d, BlockReason.SLOTS_EXHAUSTED)
    assert "restart the VM to get a fresh PCI topology" in d.message
    assert d.slots is not None and d.slots.model == "observed"


def test_blocked_slots_observed_for_in_place_attach() -> None:
    d = run(vmi([BR1], {"br1": "multus-status"}, sync_pci=True), vm([BR1]))
    blocked(d, BlockReason.SLOTS_EXHAUSTED)


def test_observed_slots_do_not_block_an_unplug() -> None:
    d = run(vmi([BR1_ABSENT], {"br1": "multus-status"}, sync_pci=True), vm([BR1_ABSENT]))
    assert d.kind is Kind.MIGRATE


def test_blocked_slots_predicted_v1() -> None:
    extra = [(iface(f"b{i}"), net(f"b{i}")) for i in range(3)]
    statuses = {f"b{i}": "domain, multus-status" for i in range(3)}
    the_vmi = vmi([*extra, BR1], statuses)  # default + 3 + br1 = 5 > 4
    d = run(the_vmi, vm([*extra, BR1]))
    blocked(d, BlockReason.SLOTS_EXHAUSTED)
    # The same VMI with v2 (1 GiB): not certain → tried.
    assert run(the_vmi, vm([*extra, BR1]), with_(READY, slot_model="v2")).kind is Kind.MIGRATE


def test_blocked_sriov_unplug() -> None:
    d = run(vmi([SR1], {"sr1": "domain, multus-status"}), vm([]))
    blocked(d, BlockReason.SRIOV_UNPLUG)


def test_blocked_restart_required_for_undeliverable_change() -> None:
    d = run(vmi([BR1], {"br1": "domain, multus-status"}), vm([]))
    blocked(d, BlockReason.RESTART_REQUIRED)
    assert "br1" in d.message
    masq = (iface("m1", "masquerade"), net("m1"))
    blocked(run(vmi([]), vm([masq])), BlockReason.RESTART_REQUIRED)


def test_blocked_restart_required_while_waiting_for_kubevirt() -> None:
    the_vm = vm([BR1], restart_required=True)
    blocked(run(vmi([]), the_vm, with_(READY, last_change=NOW - 5.0)), BlockReason.RESTART_REQUIRED)
    d = run(vmi([]), vm([BR1]), with_(READY, last_change=NOW - 5.0))
    assert d.wait_reason is WaitReason.WAITING_FOR_KUBEVIRT and d.recheck_at is None


def test_blocked_migration_rejected() -> None:
    msg = "Cannot migrate VMI, Reason: DisksNotLiveMigratable, Message: nope"
    d = run(vmi([BR1]), vm([BR1]), with_(READY, rejected_message=msg, attempts=1))
    blocked(d, BlockReason.MIGRATION_REJECTED)
    assert msg in d.message


def test_blocked_retries_exhausted() -> None:
    d = run(vmi([BR1]), vm([BR1]), with_(READY, attempts=3, max_attempts=3))
    blocked(d, BlockReason.RETRIES_EXHAUSTED)


def test_blocked_network_missing_names_the_nad() -> None:
    facts = ClusterFacts(missing_networks=("ns1/nad-br1",))
    d = blocked(run(vmi([BR1]), vm([BR1]), with_(READY, facts=facts)), BlockReason.NETWORK_MISSING)
    assert "ns1/nad-br1" in d.message
    # A restart-needing diagnosis is more specific: it wins.
    lm = run(vmi([BR1], live_migratable="False"), vm([BR1]), with_(READY, facts=facts))
    blocked(lm, BlockReason.NOT_LIVE_MIGRATABLE)


def test_blocked_no_target_capacity_names_the_resource() -> None:
    facts = ClusterFacts(needs=(("vendor.example/vf", 1),), short=("vendor.example/vf",))
    d = blocked(run(vmi([SR1]), vm([SR1]), with_(READY, facts=facts)), BlockReason.NO_TARGET_CAPACITY)
    assert "vendor.example/vf" in d.message
    # Capacity is a fact about now: a missing NAD (which would hang the migration anyway) comes first.
    both = dataclasses.replace(facts, missing_networks=("ns1/nad-sr1",))
    blocked(run(vmi([SR1]), vm([SR1]), with_(READY, facts=both)), BlockReason.NETWORK_MISSING)


def test_every_block_reason_is_covered() -> None:
    # Guard: if a reason is added, a test above must be added too.
    assert {r.value for r in BlockReason} == {
        "not-live-migratable",
        "slots-exhausted",
        "sriov-unplug",
        "restart-required",
        "opted-out",
        "namespace-not-selected",
        "retries-exhausted",
        "migration-rejected",
        "network-missing",
        "no-target-capacity",
    }


def test_wait_evacuating_is_left_to_kubevirt() -> None:
    d = run(vmi([SR1]), vm([SR1]), with_(READY, facts=ClusterFacts(evacuating="node-a")))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.EVACUATING and d.recheck_at is None
    assert "node-a" in d.message


def test_wait_no_target_node_is_event_driven() -> None:
    d = run(vmi([SR1]), vm([SR1]), with_(READY, facts=ClusterFacts(no_target_node=True)))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.NO_TARGET_NODE and d.recheck_at is None


def test_wait_outside_window_until_it_opens() -> None:
    closed = WindowState(False, NOW + 3600.0, "2026-03-02 22:00 CET")
    d = run(vmi([SR1]), vm([SR1]), with_(READY, window=closed))
    assert d.kind is Kind.WAIT and d.wait_reason is WaitReason.OUTSIDE_WINDOW
    assert d.recheck_at == NOW + 3600.0 and "2026-03-02 22:00 CET" in d.message
    opened = WindowState(True, NOW + 3600.0)
    assert run(vmi([SR1]), vm([SR1]), with_(READY, window=opened)).kind is Kind.MIGRATE
    # A block still says what a person must do, window or not.
    facts = ClusterFacts(missing_networks=("ns1/nad-sr1",))
    blocked(run(vmi([SR1]), vm([SR1]), with_(READY, window=closed, facts=facts)), BlockReason.NETWORK_MISSING)


# ----------------------------------------------------------------------------------------- OBSERVE / mode


def test_observe_mode_reports_what_it_would_do() -> None:
    d = run(vmi([BR1]), vm([BR1]), with_(READY, mode="observe"))
    assert d.kind is Kind.OBSERVE and d.would is Kind.MIGRATE and d.block_reason is None
    d = run(vmi([BR1], live_migratable="False"), vm([BR1]), with_(READY, mode="observe"))
    assert d.kind is Kind.OBSERVE and d.would is Kind.BLOCKED
    assert d.block_reason is BlockReason.NOT_LIVE_MIGRATABLE
    assert run(vmi([]), vm([]), with_(READY, mode="observe")).kind is Kind.NOTHING


def kv(version: tuple[int, int, int] | None, methods: frozenset[str]) -> KubeVirtRecord:
    return KubeVirtRecord(key=("kubevirt", "kubevirt"), version=version, workload_update_methods=methods)


@pytest.mark.parametrize(
    ("configured", "record", "expected"),
    [
        ("auto", kv((1, 6, 0), frozenset({"LiveMigrate"})), "observe"),
        ("auto", kv((1, 9, 2), frozenset({"LiveMigrate", "Evict"})), "observe"),
        ("auto", kv((1, 6, 0), frozenset()), "active"),
        ("auto", kv((1, 6, 0), frozenset({"Evict"})), "active"),
        ("auto", kv((1, 5, 9), frozenset({"LiveMigrate"})), "active"),
        ("auto", kv(None, frozenset({"LiveMigrate"})), "active"),
        ("auto", None, "active"),
        ("active", kv((1, 6, 0), frozenset({"LiveMigrate"})), "active"),
        ("observe", None, "observe"),
    ],
)
def test_resolve_mode(configured: str, record: KubeVirtRecord | None, expected: str) -> None:
    assert resolve_mode(configured, record) == expected


# ----------------------------------------------------------------------------------------- totality

IFACE_CHOICES = [
    BR1,
    BR2,
    BR1_ABSENT,
    SR1,
    (iface("sr1", "sriov", "absent"), net("sr1")),
    (iface("m1", "masquerade"), net("m1")),
    (iface("p1", "passt"), net("p1")),
    (iface("bp", "binding-plugin"), net("bp")),
    (iface("dm", "bridge"), net("dm", default=True)),
]
INFO = st.sampled_from(
    ["", "multus-status", "domain", "domain, multus-status", "domain, guest-agent, multus-status"]
)


def unique_by_name(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for p in pairs:
        out.setdefault(p[0]["name"], p)
    return list(out.values())


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[VMIRecord, VMRecord | None, tuple[VMIMRecord, ...], DecisionContext]:
    vmi_ifaces = unique_by_name(draw(st.lists(st.sampled_from(IFACE_CHOICES), max_size=6)))
    vm_ifaces = unique_by_name(draw(st.lists(st.sampled_from(IFACE_CHOICES), max_size=6)))
    statuses = {p[0]["name"]: draw(INFO) for p in vmi_ifaces if draw(st.booleans())}
    statuses = {k: v for k, v in statuses.items() if v}
    the_vmi = vmi(
        vmi_ifaces,
        statuses,
        phase=draw(st.sampled_from(["Running"] * 8 + ["Pending", "Failed"])),
        live_migratable=draw(st.sampled_from([None, "True", "True", "True", "False"])),
        sync_pci=draw(st.sampled_from([False] * 4 + [True])),
        memory=draw(st.sampled_from([None, "1Gi", "4Gi"])),
        migrating=draw(st.sampled_from([False] * 5 + [True])),
        annotations=draw(
            st.sampled_from(
                [
                    {},
                    {"kubevirt.io/placePCIDevicesOnRootComplex": "true"},
                    {"kubevirt.io/pci-interface-slot-count": "2"},
                ]
            )
        ),
        hotplug_volumes=draw(st.integers(0, 2)),
        ordinal=draw(st.booleans()),
    )
    the_vm = (
        vm(
            vm_ifaces,
            opted_out=draw(st.sampled_from([False] * 4 + [True])),
            restart_required=draw(st.booleans()),
        )
        if draw(st.booleans())
        else None
    )
    migrations = tuple(
        vmim(
            draw(st.sampled_from(["", "Pending", "Running", "Succeeded", "Failed"])), ours=draw(st.booleans())
        )
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2])))
    )
    times = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    ctx = DecisionContext(
        now=draw(times),
        mode=draw(st.sampled_from(["active", "observe"])),
        settle_seconds=draw(st.floats(0, 100)),
        bridge_grace_seconds=draw(st.floats(0, 100)),
        include_namespaces=draw(st.sampled_from([None, None, None, frozenset({"ns1"}), frozenset({"x"})])),
        exclude_namespaces=draw(st.sampled_from([frozenset()] * 4 + [frozenset({"ns1"})])),
        slot_model=draw(st.sampled_from(["v1", "v2", "annotation", "none"])),
        known_hotplugged=draw(st.integers(-2, 10)),
        first_seen={n: draw(times) for n in ("br1", "br2", "sr1") if draw(st.booleans())},
        last_change=draw(st.none() | times),
        attempts=draw(st.integers(0, 4)),
        max_attempts=draw(st.sampled_from([3, 3, 3, 0, 1, 5])),
        next_retry_at=draw(st.none() | times),
        rejected_message=draw(st.sampled_from([None, None, None, "", "Cannot migrate VMI, Reason: x"])),
        facts=ClusterFacts(
            missing_networks=draw(st.sampled_from([(), (), ("ns1/nad-br1",)])),
            evacuating=draw(st.sampled_from(["", "", "", "node-a"])),
            no_target_node=draw(st.sampled_from([False] * 3 + [True])),
            short=draw(st.sampled_from([(), (), ("vendor.example/vf",)])),
        ),
        window=draw(st.sampled_from([None, None, WindowState(True, 1e7), WindowState(False, 2e6, "later")])),
    )
    return the_vmi, the_vm, migrations, ctx


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(scenarios())
def test_decide_is_total_and_consistent(
    scenario: tuple[VMIRecord, VMRecord | None, tuple[VMIMRecord, ...], DecisionContext],
) -> None:
    the_vmi, the_vm, migrations, ctx = scenario
    det = detect(the_vmi, the_vm, migrations)
    d = decide(the_vmi, the_vm, det, ctx)
    assert isinstance(d.kind, Kind)
    event(f"{d.kind.value}:{d.block_reason or d.wait_reason or ''}")
    if d.kind is Kind.BLOCKED:
        assert d.block_reason is not None and d.message and d.wait_reason is None
    elif d.kind is Kind.OBSERVE:  # what the agent would do in active mode, its reason included
        assert (d.block_reason is not None) == (d.would is Kind.BLOCKED)
        assert (d.wait_reason is not None) == (d.would is Kind.WAIT)
    else:
        assert d.block_reason is None
    if d.kind is Kind.WAIT:
        assert d.wait_reason is not None
        assert d.recheck_at is None or d.recheck_at > ctx.now
    if d.kind is Kind.MIGRATE:
        assert ctx.mode == "active"
        assert det.changes and det.active_migration is None and not the_vmi.migrating
        assert the_vmi.live_migratable is not False
        assert ctx.attempts < ctx.max_attempts
        assert the_vm is None or not the_vm.opted_out
        f = ctx.facts
        assert not (f.missing_networks or f.evacuating or f.no_target_node or f.short)
        assert ctx.window is None or ctx.window.open
    if d.kind is Kind.OBSERVE:
        assert ctx.mode == "observe" and d.would
    if the_vmi.phase != "Running":
        assert d.kind is Kind.NOTHING
