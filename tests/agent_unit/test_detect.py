"""Detection per KubeVirt's evaluator rules (``pkg/network/migration/evaluator.go``)."""

from __future__ import annotations

from agent.detect import detect
from tests.agent_unit.builders import iface, net, vm, vmi, vmim

BR1 = (iface("br1", "bridge"), net("br1"))
BR1_ABSENT = (iface("br1", "bridge", "absent"), net("br1"))
SR1 = (iface("sr1", "sriov"), net("sr1"))
SR1_ABSENT = (iface("sr1", "sriov", "absent"), net("sr1"))


def test_not_running_is_not_evaluated() -> None:
    d = detect(vmi([BR1], phase="Scheduling"), None)
    assert d.status == "not-running" and not d.changes


def test_bridge_plug_pending_with_grace() -> None:
    d = detect(vmi([BR1]), vm([BR1]))
    assert d.status == "pending"
    assert [(c.iface, c.kind, c.binding) for c in d.changes] == [("br1", "plug", "bridge")]
    assert not d.changes[0].immediate
    assert d.plugs and not d.unplugs


def test_sriov_plug_is_immediate() -> None:
    d = detect(vmi([SR1]), vm([SR1]))
    assert d.plugs[0].immediate


def test_unplug_pending_when_in_pod_not_in_domain() -> None:
    d = detect(vmi([BR1_ABSENT], {"br1": "multus-status"}), vm([BR1_ABSENT]))
    assert d.status == "pending"
    assert [(c.iface, c.kind) for c in d.unplugs] == [("br1", "unplug")]


def test_unplug_done_or_in_place() -> None:
    # Still in the domain: virt-handler detaches in place; no status: done.
    assert detect(vmi([BR1_ABSENT], {"br1": "domain, multus-status"}), vm([BR1_ABSENT])).status == "done"
    assert detect(vmi([BR1_ABSENT]), vm([BR1_ABSENT])).status == "done"


def test_attaching_in_place_is_not_a_change() -> None:
    d = detect(vmi([BR1], {"br1": "multus-status"}), vm([BR1]))
    assert d.status == "done" and d.attaching == ("br1",)


def test_plugged_interface_is_done() -> None:
    d = detect(vmi([BR1], {"br1": "domain, guest-agent, multus-status"}), vm([BR1]))
    assert d.status == "done" and not d.attaching


def test_pod_and_default_multus_networks_are_ignored() -> None:
    default_multus = (iface("dm", "bridge"), net("dm", default=True))
    d = detect(vmi([default_multus]), None)
    assert d.status == "done"


def test_waiting_for_kubevirt_plug_and_unplug() -> None:
    d = detect(vmi([]), vm([BR1]))
    assert d.status == "waiting-for-kubevirt" and d.waiting_for_kubevirt == ("br1",)
    d = detect(vmi([BR1], {"br1": "domain, multus-status"}), vm([BR1_ABSENT]))
    assert d.waiting_for_kubevirt == ("br1",)


def test_template_absent_never_plugged_is_nothing() -> None:
    assert detect(vmi([]), vm([BR1_ABSENT])).status == "done"


def test_ordinal_names_cannot_unplug() -> None:
    d = detect(vmi([BR1], {"br1": "domain, multus-status"}, ordinal=True), vm([BR1_ABSENT]))
    assert d.status == "undeliverable" and d.undeliverable[0][0] == "br1"


def test_non_hotpluggable_template_additions() -> None:
    masq = (iface("m1", "masquerade"), net("m1"))
    pod2 = (iface("p2", "bridge"), net("p2", "pod"))
    d = detect(vmi([]), vm([masq, pod2]))
    assert d.status == "undeliverable"
    assert {n for n, _ in d.undeliverable} == {"m1", "p2"}


def test_removed_from_template() -> None:
    d = detect(vmi([BR1], {"br1": "domain, multus-status"}), vm([]))
    assert d.undeliverable and d.undeliverable[0][0] == "br1"
    d = detect(vmi([SR1], {"sr1": "domain, multus-status"}), vm([]))
    assert d.sriov_unplugs == ("sr1",)


def test_sriov_absent_in_vmi_spec() -> None:
    d = detect(vmi([SR1_ABSENT], {"sr1": "domain, multus-status"}), vm([SR1_ABSENT]))
    assert d.sriov_unplugs == ("sr1",) and not d.changes
    # Template asks for absent on an SR-IOV interface still in the VMI: also SR-IOV unplug.
    d = detect(vmi([SR1], {"sr1": "domain, multus-status"}), vm([SR1_ABSENT]))
    assert d.sriov_unplugs == ("sr1",)


def test_in_progress_by_vmim_or_migration_state() -> None:
    d = detect(vmi([BR1]), vm([BR1]), [vmim("Scheduling")])
    assert d.status == "in-progress" and d.active_migration is not None and d.changes
    assert detect(vmi([BR1]), vm([BR1]), [vmim("Succeeded"), vmim("Failed")]).status == "pending"
    assert detect(vmi([BR1]), vm([BR1]), [vmim("Running", vmi_name="other")]).status == "pending"
    assert detect(vmi([BR1], migrating=True), vm([BR1])).status == "in-progress"


def test_without_vm_only_vmi_rules() -> None:
    d = detect(vmi([BR1]), None)
    assert d.status == "pending" and not d.waiting_for_kubevirt and not d.undeliverable
