"""The preflight's records and facts (agent/infra.py, agent/preflight.py) and the mirror's release index."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.infra import IDLE_POD, InvalidObject, parse_nad, parse_node, parse_pod
from agent.mirror import Mirror
from agent.preflight import Infrastructure, Trigger, TriggerKind, facts, nad_key, vf_needs
from tests.agent_unit.builders import MAX_EXAMPLES, NS, iface, net, vmi

VF = "vendor.example/vf"


def node(name: str, *, vfs: int = 0, ready: bool = True, cordoned: bool = False, drain: bool = False) -> Any:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"kubevirt.io/schedulable": "true"}},
        "spec": {"unschedulable": cordoned},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "allocatable": {"cpu": "64", "devices.kubevirt.io/kvm": "1k", VF: str(vfs)},
        },
    }
    if drain:
        obj["spec"]["taints"] = [{"key": "kubevirt.io/drain", "effect": "NoSchedule"}]
    return parse_node(obj)


def pod(name: str, node_name: str, vfs: int, phase: str = "Running") -> Any:
    return parse_pod(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "nodeName": node_name,
                "containers": [{"name": "compute", "resources": {"limits": {VF: str(vfs)}}}],
            },
            "status": {"phase": phase},
        }
    )


def nad(name: str, resource: str = "") -> Any:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if resource:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource}
    return parse_nad({"metadata": meta, "spec": {"config": "{}"}})


SR = (iface("sr1", "sriov"), net("sr1"))
BR = (iface("br1", "bridge"), net("br1"))


# ----------------------------------------------------------------------------------------- records


def test_node_record_keeps_schedulability_and_extended_resources_only() -> None:
    n = node("n1", vfs=4)
    assert n.target and n.allocatable == ((VF, 4),)  # no cpu, no KubeVirt device
    assert not node("n2", cordoned=True).target
    assert not node("n3", ready=False).target
    assert not node("n4", drain=True).target and node("n4", drain=True).draining


def test_pods_that_hold_nothing_share_one_record() -> None:
    assert pod("p1", "n1", 2).requests == ((VF, 2),)
    assert pod("p2", "n1", 0) is IDLE_POD
    assert pod("p3", "", 2) is IDLE_POD  # not scheduled
    assert pod("p4", "n1", 2, "Succeeded") is IDLE_POD


def test_nad_record_is_its_resource_name() -> None:
    assert nad("a", VF).resource_name == VF and nad("b").resource_name == ""


@settings(max_examples=MAX_EXAMPLES, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
        max_leaves=20,
    )
)
def test_parsers_raise_only_invalid_object(raw: Any) -> None:
    for parse in (parse_nad, parse_node, parse_pod):
        with contextlib.suppress(InvalidObject):
            parse(raw)


# ------------------------------------------------------------------------------------------- facts


def infra(
    nodes: list[Any], usage: dict[str, dict[str, int]] | None = None, nads: list[Any] | None = None
) -> Infrastructure:
    by_name = {n.name: n for n in nodes}
    return Infrastructure(
        nads={n.key: n for n in nads} if nads is not None else None,
        nodes=by_name,
        targets={n.name for n in nodes if n.target},
        usage=usage or {},
    )


def test_nad_reference_is_resolved_as_multus_does() -> None:
    assert nad_key("ns2/net", "ns1") == ("ns2", "net") and nad_key("net", "ns1") == ("ns1", "net")


def test_missing_nad_is_named_and_unknown_is_never_a_block() -> None:
    the_vmi = vmi([BR])
    assert facts(the_vmi, infra([], nads=[])).missing_networks == (f"{NS}/nad-br1",)
    assert facts(the_vmi, infra([], nads=[nad("nad-br1")])).missing_networks == ()
    assert facts(the_vmi, infra([], nads=None)).missing_networks == ()  # no NAD API: not checked
    unwatched = Infrastructure(nads={}, nad_namespaces=frozenset({"other"}))
    assert facts(the_vmi, unwatched).missing_networks == ()  # a namespace the agent does not watch


def test_capacity_needs_a_node_other_than_the_source_with_free_vfs() -> None:
    the_vmi = vmi([SR], node="node-a")
    nads = [nad("nad-sr1", VF)]
    full = infra([node("node-a", vfs=8), node("node-b", vfs=1)], {"node-b": {VF: 1}}, nads)
    f = facts(the_vmi, full)
    assert f.needs == ((VF, 1),) and f.short == (VF,) and not f.no_target_node
    freed = infra([node("node-a", vfs=8), node("node-b", vfs=1)], {}, nads)
    assert facts(the_vmi, freed).short == ()
    cordoned = infra([node("node-a", vfs=8), node("node-b", vfs=8, cordoned=True)], {}, nads)
    assert facts(the_vmi, cordoned).no_target_node


@pytest.mark.parametrize("nads", [None, [], [nad("nad-sr1", VF)], [nad("nad-sr1", VF), nad("nad-sr2", VF)]])
@pytest.mark.parametrize("ifaces", [[BR], [SR], [SR, (iface("sr2", "sriov"), net("sr2")), BR]])
def test_vf_needs_is_the_preflights_needs(nads: Any, ifaces: Any) -> None:
    """The dispatcher's VF budget reads ``vf_needs`` (no scan of the nodes) for every unfinished
    migration: the same answer as the whole preflight's."""
    the_vmi = vmi(ifaces, node="node-a")
    for nodes in ([], [node("node-a", vfs=8), node("node-b", vfs=1)]):
        cached = infra(nodes, {"node-b": {VF: 1}}, nads)
        assert vf_needs(the_vmi, cached) == facts(the_vmi, cached).needs


def test_evacuating_from_the_drain_taint_or_the_vmi_status() -> None:
    the_vmi = vmi([BR], node="node-a")
    assert facts(the_vmi, infra([node("node-a", drain=True), node("node-b")])).evacuating == "node-a"
    assert facts(the_vmi, infra([node("node-a"), node("node-b")])).evacuating == ""


# ------------------------------------------------------------------------------------- the mirror


def test_a_new_nad_releases_exactly_the_vmis_waiting_for_it() -> None:
    m = Mirror()
    a, b = (NS, "vm-a"), (NS, "vm-b")
    m.set_awaits(a, frozenset({Trigger(TriggerKind.NAD, f"{NS}/x")}))
    m.set_awaits(b, frozenset({Trigger(TriggerKind.NAD, f"{NS}/y")}))
    assert m.nad_changed("ADDED", None, nad("x")) == {a}
    assert m.nad_changed("MODIFIED", nad("x"), nad("x", VF)) == set()  # not an arrival
    m.set_awaits(b, frozenset())
    assert m.nad_changed("ADDED", None, nad("y")) == set()
    assert Trigger(TriggerKind.NAD, f"{NS}/y") not in m.waiters  # a wait that ended deregisters


def test_freed_vfs_and_node_changes_release_capacity_waiters() -> None:
    m = Mirror()
    k = (NS, "vm-a")
    m.set_awaits(k, frozenset({Trigger(TriggerKind.RESOURCE, VF), Trigger(TriggerKind.NODES)}))
    assert m.pod_changed("ADDED", None, pod("p1", "n1", 2)) == set()  # taking VFs frees none
    assert m.usage["n1"][VF] == 2
    assert m.pod_changed("MODIFIED", pod("p1", "n1", 2), IDLE_POD) == {k}  # it ended
    assert m.usage["n1"][VF] == 0
    assert m.node_changed("ADDED", None, node("n2", vfs=2)) == {k}
    assert "n2" in m.targets
    assert m.node_changed("MODIFIED", node("n2", vfs=2), node("n2", vfs=2)) == set()  # a heartbeat
    m.node_changed("MODIFIED", node("n2", vfs=2), node("n2", vfs=2, cordoned=True))
    assert "n2" not in m.targets


@pytest.mark.parametrize("synced", [False, True])
def test_the_preflight_reads_caches_only_once_synced(synced: bool) -> None:
    m = Mirror()
    m.nad_changed("ADDED", None, nad("other"))
    m.nads_synced = m.nodes_synced = synced
    f = facts(vmi([BR]), m.infrastructure())
    assert f.missing_networks == ((f"{NS}/nad-br1",) if synced else ())


def test_the_vf_budget_follows_the_migrating_vmis_and_the_nads() -> None:
    """The budget remembers each unfinished migration's needs between dispatches; a changed VMI record,
    NAD cache scope (sync, watched namespaces) or NAD its SR-IOV interfaces name is read again."""
    m = Mirror()
    m.node_changed("ADDED", None, node("node-a", vfs=4))
    m.node_changed("ADDED", None, node("node-b", vfs=4))
    m.nodes_synced = True
    key = (NS, "vm1")
    plugged = vmi([SR], {"sr1": "domain, guest-agent, multus-status"})
    m.vmi_changed("ADDED", None, plugged)
    active = m.active_migrations({key: "node-a"})
    assert m.vf_budget({VF}, active) == {VF: 8}  # the NAD cache is not synced: needs not known
    m.nads_synced = True
    assert m.vf_budget({VF}, active) == {VF: 8}  # no NAD: nothing needed
    m.nad_changed("ADDED", None, nad("nad-sr1", VF))
    assert m.vf_budget({VF}, active) == {VF: 7}
    assert m.vf_budget({VF}, active) == {VF: 7}  # remembered
    unplugged = vmi([(iface("sr1", "sriov", "absent"), net("sr1"))], name="vm1")
    m.vmi_changed("MODIFIED", plugged, unplugged)
    assert m.vf_budget({VF}, active) == {VF: 8}
    m.vmi_changed("MODIFIED", unplugged, plugged)
    assert m.vf_budget({VF}, active) == {VF: 7}
    m.nad_changed("MODIFIED", nad("nad-sr1", VF), nad("nad-sr1"))  # no resource name any more
    assert m.vf_budget({VF}, active) == {VF: 8}
    m.nad_namespaces = frozenset({"elsewhere"})
    m.nad_changed("MODIFIED", nad("nad-sr1"), nad("nad-sr1", VF))
    assert m.vf_budget({VF}, active) == {VF: 8}  # a namespace whose NADs are not watched
    m.nad_namespaces = None
    assert m.vf_budget({VF}, active) == {VF: 7}
    m.nad_changed("ADDED", None, nad("unrelated", VF))  # a NAD no SR-IOV interface of the VMI names
    assert m.vf_budget({VF}, active) == {VF: 7}
    m.nad_changed("DELETED", nad("nad-sr1", VF), None)
    assert m.vf_budget({VF}, active) == {VF: 8}
    m.nad_changed("ADDED", None, nad("nad-sr1", VF))
    assert m.vf_budget({VF}, active) == {VF: 7}
    m.vmi_changed("DELETED", plugged, None)
    assert m.vf_budget({VF}, active) == {VF: 8}


def test_the_vf_budget_reads_an_unchanged_migration_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes a dispatch cheap with hundreds of SR-IOV migrations in flight: their needs are read
    once, not at every dispatch, and a NAD they do not name changes nothing."""
    import agent.mirror

    reads: list[object] = []
    monkeypatch.setattr(agent.mirror, "vf_needs", lambda v, i: reads.append(v) or vf_needs(v, i))
    m = Mirror(nads_synced=True, nodes_synced=True)
    m.node_changed("ADDED", None, node("node-b", vfs=4))
    m.nad_changed("ADDED", None, nad("nad-sr1", VF))
    keys = [(NS, f"vm{i}") for i in range(3)]
    for key in keys:
        m.vmi_changed("ADDED", None, vmi([SR], name=key[1]))
    active = m.active_migrations(dict.fromkeys(keys, "node-a"))
    for _ in range(3):
        assert m.vf_budget({VF}, active) == {VF: 1}
        m.nad_changed("ADDED", None, nad(f"other-{len(reads)}", VF))
    assert len(reads) == 3
