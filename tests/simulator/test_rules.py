"""Pure rules: PCI topology, VM → VMI propagation, admission, RestartRequired, LiveMigratable, status."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.kubevirt import parse_timestamp
from simulator.kubevirt import pci, rules, status
from simulator.kubevirt.node import NO_PCI_SLOTS_ERROR, handler_sync
from simulator.kubevirt.vmi_controller import desired_status


def spec(
    *secondary: tuple[str, str], disks: int = 1, memory: str = "1Gi", pod: str = "masquerade"
) -> dict[str, Any]:
    ifaces: list[dict[str, Any]] = [{"name": "default", pod: {}}]
    nets: list[dict[str, Any]] = [{"name": "default", "pod": {}}]
    for name, binding in secondary:
        ifaces.append({"name": name, binding: {}})
        nets.append({"name": name, "multus": {"networkName": name}})
    return {
        "domain": {
            "devices": {"interfaces": ifaces, "disks": [{"name": f"d{i}"} for i in range(disks)]},
            "memory": {"guest": memory},
        },
        "networks": nets,
    }


# -- PCI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_secondary", "free"), [(0, 3), (1, 2), (2, 1), (3, 0), (5, 0)])
def test_v1_placeholders(n_secondary: int, free: int) -> None:
    s = spec(*[(f"n{i}", "bridge") for i in range(n_secondary)])
    assert pci.free_ports_for_new_domain(s, {}, "v1.5.2")[0] == free


def test_v1_no_interfaces_or_root_complex() -> None:
    s = {"domain": {"devices": {"interfaces": []}}, "networks": []}
    assert pci.free_ports_for_new_domain(s, {}, "v1.4.0")[0] == 0
    annotated = {"kubevirt.io/placePCIDevicesOnRootComplex": "true"}
    assert pci.free_ports_for_new_domain(spec(), annotated, "v1.4.0")[0] == 0


@pytest.mark.parametrize(
    ("memory", "disks", "free"),
    [("1Gi", 1, 6), ("1Gi", 6, 3), ("2Gi", 1, 6), ("2.1Gi", 1, 14), ("2.1Gi", 12, 6)],
)
def test_v2_formula(memory: str, disks: int, free: int) -> None:
    # ports in use = interfaces (1) + disks at definition
    assert pci.free_ports_for_new_domain(spec(disks=disks, memory=memory), {}, "v1.6.0")[0] == free


def test_slot_count_annotation_only_from_19() -> None:
    ann = {"kubevirt.io/pci-interface-slot-count": "6"}
    s = spec(("a", "bridge"))
    assert pci.free_ports_for_new_domain(s, ann, "v1.9.0")[0] == 4
    assert pci.free_ports_for_new_domain(s, ann, "v1.8.0")[0] == 5  # v2: max(8 - 3, 3)


def test_hotplugged_disks_take_ports() -> None:
    s = spec(("a", "bridge"))
    s["volumes"] = [{"name": "hp", "persistentVolumeClaim": {"claimName": "x", "hotpluggable": True}}]
    s["domain"]["devices"]["disks"].append({"name": "hp"})
    assert pci.free_ports_for_new_domain(s, {}, "v1.5.0")[0] == 1


def test_domain_attach_detach() -> None:
    dom = pci.Domain(uid="u", free_ports=1, attached={"default"}, pod_networks=set())
    assert dom.attach("a") and not dom.attach("b")
    dom.detach("a")
    assert dom.attach("b") and dom.free_ports == 0


# -- propagation --------------------------------------------------------------------------------------


def test_propagate_appends_bridge_and_sriov_only() -> None:
    vm = spec(("a", "bridge"), ("b", "sriov"))
    vm["domain"]["devices"]["interfaces"].append({"name": "c", "passt": {}})
    vm["networks"].append({"name": "c", "multus": {"networkName": "c"}})
    vmi = spec()
    out = rules.propagate(vm, vmi)
    assert out is not None
    assert [i["name"] for i in out[0]] == ["default", "a", "b"]
    assert [n["name"] for n in out[1]] == ["default", "a", "b"]


def test_propagate_state_and_absent_not_added() -> None:
    vm = spec(("a", "bridge"), ("new", "bridge"))
    vm["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    vm["domain"]["devices"]["interfaces"][2]["state"] = "absent"
    out = rules.propagate(vm, spec(("a", "bridge")))
    assert out is not None
    assert out[0][1] == {"name": "a", "bridge": {}, "state": "absent"}
    assert [i["name"] for i in out[0]] == ["default", "a"]
    assert rules.propagate(spec(("a", "bridge")), spec(("a", "bridge"))) is None


def test_json_patch_has_tests() -> None:
    old = spec()
    ops = rules.spec_json_patch(old, [], [])
    assert [o["op"] for o in ops] == ["test", "replace", "test", "replace"]
    assert ops[0]["value"] == old["networks"]


def test_cleanup_vmi_then_vm() -> None:
    vmi = spec(("a", "bridge"))
    vmi["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    still = {"interfaces": [{"name": "a", "infoSource": "multus-status"}]}
    assert rules.cleanup_vmi(vmi, still) is None
    out = rules.cleanup_vmi(vmi, {"interfaces": []})
    assert out is not None and [i["name"] for i in out[0]] == ["default"]
    vm = spec(("a", "bridge"))
    vm["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    assert rules.cleanup_vm(vm, vmi, {}) is None  # still in VMI spec
    out2 = rules.cleanup_vm(vm, spec(), {})
    assert out2 is not None and [n["name"] for n in out2[1]] == ["default"]


# -- admission ---------------------------------------------------------------------------------------


def test_interface_state_admission_texts() -> None:
    s = spec(("sr", "sriov"), ("br", "bridge"))
    s["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    assert rules.validate_interface_states(s) == [
        '"sr" interface\'s state "absent" is supported only for bridge binding'
    ]
    s["domain"]["devices"]["interfaces"][1]["state"] = "down"
    assert rules.validate_interface_states(s) == [
        '"sr" interface\'s state "down" is not supported for SR-IOV NICs'
    ]
    p = spec(pod="bridge")
    p["domain"]["devices"]["interfaces"][0]["state"] = "absent"
    assert rules.validate_interface_states(p) == [
        '"default" interface\'s state "absent" is not supported on default networks'
    ]
    s["domain"]["devices"]["interfaces"][1]["state"] = "sideways"
    assert rules.validate_interface_states(s) == ["logical sr interface state value is unsupported: sideways"]


# -- RestartRequired -----------------------------------------------------------------------------------


V151, V152, V18, V19 = (1, 5, 1), (1, 5, 2), (1, 8, 0), (1, 9, 0)


def test_network_edits_that_need_a_restart_per_release() -> None:
    vmi = spec(("a", "bridge"))

    def needs(version: tuple[int, int, int], template: dict[str, Any], migratable: bool = True) -> bool:
        return rules.network_restart_required(version, template, vmi, migratable)

    assert not needs(V152, spec(("a", "bridge"), ("b", "bridge")))  # plug
    assert needs(V152, spec())  # removed instead of absent
    absent = spec(("a", "bridge"))
    absent["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    assert not needs(V152, absent)
    changed = spec(("a", "bridge"))
    changed["domain"]["devices"]["interfaces"][1]["macAddress"] = "02:00:00:00:00:01"
    assert needs(V152, changed)
    nad = spec(("a", "bridge"))
    nad["networks"][1]["multus"]["networkName"] = "other"
    assert needs(V152, nad) and needs(V18, nad)  # any network change before v1.9
    assert not needs(V19, nad) and needs(V19, nad, migratable=False)


def test_restart_required_compares_with_the_start_revision() -> None:
    start = spec(("a", "bridge"))
    vmi = spec(("a", "bridge"))
    plugged = spec(("a", "bridge"), ("b", "bridge"))

    def required(version: tuple[int, int, int], template: dict[str, Any], *, live: bool = True) -> bool:
        return rules.restart_required(version, start, template, vmi, vmi_migratable=True, live_update=live)

    # v1.5.1 has no network exemption: the hot plug itself asks for a restart; v1.5.2 fixed it.
    assert required(V151, plugged) and not required(V152, plugged)
    assert not required(V151, spec(("a", "bridge")))  # nothing changed
    cores = spec(("a", "bridge"), ("b", "bridge"))
    cores["domain"]["cpu"] = {"cores": 2}
    assert required(V152, cores)  # not live-updatable
    sockets = copy.deepcopy(start)
    sockets["domain"]["cpu"] = {"sockets": 2}
    start_with_cpu = copy.deepcopy(start)
    start_with_cpu["domain"]["cpu"] = {"sockets": 1}
    assert not rules.restart_required(
        V152, start_with_cpu, sockets, vmi, vmi_migratable=True, live_update=True
    )  # CPU sockets are live-updatable with LiveUpdate …
    assert rules.restart_required(V152, start_with_cpu, sockets, vmi, vmi_migratable=True, live_update=False)
    assert not rules.restart_required(V151, None, plugged, vmi, vmi_migratable=True, live_update=True)
    assert not required((1, 1, 0), cores)  # no RestartRequired before v1.2


# -- LiveMigratable ---------------------------------------------------------------------------------


def test_live_migratable_reasons() -> None:
    assert rules.live_migratable({"spec": spec(("a", "sriov"))}) == (True, "", "")
    ok, reason, msg = rules.live_migratable({"spec": spec(pod="bridge")})
    assert (ok, reason) == (False, "InterfaceNotLiveMigratable")
    assert (
        msg
        == "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod "
        "network"
    )
    annotated = {
        "spec": spec(pod="bridge"),
        "metadata": {"annotations": {rules.ALLOW_POD_BRIDGE_ANNOTATION: ""}},
    }
    assert rules.live_migratable(annotated)[0]
    s = spec()
    s["domain"]["devices"]["gpus"] = [{"name": "g", "deviceName": "x"}]
    assert rules.live_migratable({"spec": s})[1] == "HostDeviceNotLiveMigratable"
    d = spec()
    d["volumes"] = [{"name": "v", "persistentVolumeClaim": {"claimName": "data-rwo"}}]
    ok, reason, msg = rules.live_migratable({"spec": d})
    assert reason == "DisksNotLiveMigratable"
    assert msg == (
        "cannot migrate VMI: PVC data-rwo is not shared, live migration requires that all PVCs must be "
        "shared (using ReadWriteMany access mode)"
    )


# -- evaluator / status ------------------------------------------------------------------------------


def test_migration_urgency() -> None:
    s = spec(("a", "bridge"), ("s", "sriov"))
    both = {"interfaces": [{"name": "a", "infoSource": "domain, guest-agent, multus-status"}]}
    assert rules.migration_urgency(s, both) == "immediate"
    # KubeVirt's first match: a bridge plug before the SR-IOV plug → pending, after it → immediate
    bridge_first = spec(("a", "bridge"), ("b", "bridge"), ("s", "sriov"))
    assert rules.migration_urgency(bridge_first, both) == "pending"
    sriov_first = spec(("a", "bridge"), ("s", "sriov"), ("b", "bridge"))
    assert rules.migration_urgency(sriov_first, both) == "immediate"
    s2 = spec(("a", "bridge"))
    assert rules.migration_urgency(s2, {"interfaces": []}) == "pending"
    s2["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    assert (
        rules.migration_urgency(s2, {"interfaces": [{"name": "a", "infoSource": "multus-status"}]})
        == "pending"
    )
    assert rules.migration_urgency(s2, {"interfaces": []}) is None


def test_interface_statuses_infosource_and_names() -> None:
    s = spec(("iface1", "bridge"), ("b", "bridge"), ("c", "bridge"))
    out = status.interface_statuses("ns", "vm", s, {"default", "iface1"}, {"iface1", "b"})
    by = {e["name"]: e for e in out}
    assert by["default"]["infoSource"] == "domain, guest-agent"
    assert by["iface1"]["infoSource"] == "domain, guest-agent, multus-status"
    assert by["iface1"]["podInterfaceName"] == "pod7e0055a6880"
    assert by["iface1"]["interfaceName"] == "eth1"
    assert by["b"] == {
        "infoSource": "multus-status",
        "name": "b",
        "podInterfaceName": status.pod_interface_name("b"),
    }
    assert "c" not in by


def test_rfc3339_microseconds_roundtrip() -> None:
    text = status.rfc3339(1_700_000_000.25)
    assert text == "2023-11-14T22:13:20.250000Z"
    assert parse_timestamp(text) == pytest.approx(1_700_000_000.25)
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000


def test_handler_sync_no_slots_and_migration_required_16() -> None:
    s = spec(("a", "bridge"), ("b", "bridge"))
    dom = pci.Domain(uid="u", free_ports=0, attached={"default", "a"}, pod_networks={"a", "b"})
    assert handler_sync(s, dom) == NO_PCI_SLOTS_ERROR
    vmi = {"metadata": {"namespace": "n", "name": "v"}, "spec": s, "status": {}}
    st, requeue = desired_status(
        vmi, dom, version="v1.6.0", now=100.0, grace=15.0, sync_error=NO_PCI_SLOTS_ERROR
    )
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Synchronized"]["status"] == "False"
    assert conds["Synchronized"]["reason"] == "Synchronizing with the Domain failed."
    assert "internal error: No more available PCI slots" in conds["Synchronized"]["message"]
    assert "MigrationRequired" not in conds and requeue is None
    # bridge plug not in the pod: pending, then True after the grace period
    dom2 = pci.Domain(uid="u", free_ports=3, attached={"default", "a"}, pod_networks={"a"})
    s3 = spec(("a", "bridge"), ("c", "bridge"))
    vmi2 = {"metadata": {"namespace": "n", "name": "v"}, "spec": s3, "status": {}}
    st2, requeue2 = desired_status(vmi2, dom2, version="v1.6.0", now=100.0, grace=15.0, sync_error="")
    mr = next(c for c in st2["conditions"] if c["type"] == "MigrationRequired")
    assert (mr["status"], mr["reason"]) == ("False", "AutoMigrationPending") and requeue2 == pytest.approx(
        15.001
    )
    vmi2["status"] = st2
    st3, _ = desired_status(vmi2, dom2, version="v1.6.0", now=116.0, grace=15.0, sync_error="")
    mr3 = next(c for c in st3["conditions"] if c["type"] == "MigrationRequired")
    assert (mr3["status"], mr3["reason"]) == ("True", "AutoMigrationDueToLiveUpdate")
    vmi2["status"] = {}
    st4, _ = desired_status(vmi2, dom2, version="v1.5.2", now=116.0, grace=15.0, sync_error="")
    assert all(c["type"] != "MigrationRequired" for c in st4["conditions"])
