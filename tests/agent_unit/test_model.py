"""Parsers: example objects, edge cases, and 'only InvalidObject' on arbitrary JSON."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import kubevirt, model, names
from agent.kubevirt import parse_quantity, parse_timestamp, parse_version
from agent.model import InvalidObject, parse_kubevirt, parse_vm, parse_vmi, parse_vmim
from tests.agent_unit.builders import MAX_EXAMPLES


def vmi_obj() -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": "vm1",
            "namespace": "ns1",
            "uid": "u-1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "annotations": {kubevirt.ANNOTATION_PLACE_ON_ROOT_COMPLEX: "true"},
        },
        "spec": {
            "domain": {
                "memory": {"guest": "2Gi"},
                "devices": {
                    "disks": [{"name": "d1"}, {"name": "d2"}],
                    "interfaces": [
                        {"name": "default", "masquerade": {}},
                        {"name": "br1", "bridge": {}},
                        {"name": "sr1", "sriov": {}},
                        {"name": "gone", "bridge": {}, "state": "absent"},
                    ],
                },
            },
            "networks": [
                {"name": "default", "pod": {}},
                {"name": "br1", "multus": {"networkName": "ns1/nad-br"}},
                {"name": "sr1", "multus": {"networkName": "sriov/sriov-network"}},
                {"name": "gone", "multus": {"networkName": "nad-old"}},
            ],
        },
        "status": {
            "phase": "Running",
            "nodeName": "node-a",
            "interfaces": [
                {"name": "default", "infoSource": "domain, guest-agent", "podInterfaceName": "eth0"},
                {"name": "gone", "infoSource": "multus-status", "podInterfaceName": "pod123"},
                {"infoSource": "guest-agent", "interfaceName": "lo"},
            ],
            "conditions": [
                {"type": "LiveMigratable", "status": "True"},
                {
                    "type": "Synchronized",
                    "status": "False",
                    "reason": "Synchronizing with the Domain failed.",
                    "message": "virError(Code=1, Domain=20, "
                    "Message='internal error: No more available PCI slots')",
                },
                {
                    "type": "MigrationRequired",
                    "status": "False",
                    "reason": "AutoMigrationPending",
                    "lastTransitionTime": "2026-01-02T03:04:06.5Z",
                },
            ],
            "migrationState": {"sourceNode": "node-a", "completed": False},
            "volumeStatus": [{"name": "d1"}, {"name": "hp", "hotplugVolume": {}}],
        },
    }


def test_parse_vmi_example() -> None:
    rec = parse_vmi(vmi_obj())
    assert rec.key == ("ns1", "vm1")
    assert rec.node == "node-a" and rec.phase == "Running"
    assert [i.binding for i in rec.interfaces] == ["masquerade", "bridge", "sriov", "bridge"]
    assert rec.interfaces[0].network.kind == "pod"
    assert rec.interfaces[1].network.is_secondary_multus
    assert rec.interfaces[3].absent
    assert rec.status_for("gone") is not None
    st_gone = rec.status_for("gone")
    assert st_gone is not None and st_gone.in_pod and not st_gone.in_domain
    assert rec.status_for("br1") is None
    assert len(rec.statuses) == 2  # nameless guest-agent entry skipped
    assert rec.live_migratable is True
    assert rec.sync_failed_pci
    assert rec.migration_required == model.MigrationRequired(False, "AutoMigrationPending", 1767323046.5)
    assert rec.memory_bytes == 2 * 1024**3
    assert rec.hotplugged_volume_count == 1
    assert rec.place_on_root_complex
    assert rec.migrating
    assert rec.creation_ts == 1767323045.0


def test_vmi_strings_are_interned() -> None:
    a = parse_vmi(vmi_obj())
    b = parse_vmi(copy.deepcopy(vmi_obj()))
    assert a.node is b.node
    assert a.interfaces[1].network is b.interfaces[1].network
    assert a.statuses[0].info_source is b.statuses[0].info_source


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda o: o.pop("metadata"), "missing metadata"),
        (lambda o: o["metadata"].pop("namespace"), "namespace"),
        (lambda o: o["spec"]["domain"]["devices"]["interfaces"].append("x"), "not an object"),
        (lambda o: o["spec"]["networks"].pop(), "no matching network"),
        (
            lambda o: o["spec"]["domain"]["devices"]["interfaces"].append({"name": "br1", "bridge": {}}),
            "duplicate",
        ),
        (lambda o: o["spec"]["networks"].append({"name": "br1", "pod": {}}), "duplicate network"),
        (lambda o: o["spec"]["networks"].append({"name": "x"}), "neither pod nor multus"),
        (
            lambda o: o["spec"]["domain"]["devices"]["interfaces"][1].update(state="sideways"),
            "unsupported state",
        ),
        (lambda o: o["metadata"].update(creationTimestamp="yesterday"), "RFC 3339"),
        (lambda o: o["spec"]["domain"]["memory"].update(guest="lots"), "quantity"),
        (lambda o: o["status"].update(conditions={}), "not a list"),
        (lambda o: o["status"]["conditions"][0].update(status=True), "not a string"),
    ],
)
def test_parse_vmi_invalid(mutate: Any, why: str) -> None:
    obj = vmi_obj()
    mutate(obj)
    with pytest.raises(InvalidObject) as err:
        parse_vmi(obj)
    assert why in err.value.why
    assert err.value.resource == "VirtualMachineInstance"


def vm_obj() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "vm1",
            "namespace": "ns1",
            "uid": "vm-u",
            "generation": 3,
            "resourceVersion": "7",
            "labels": {names.LABEL_AUTO_MIGRATE: "false"},
        },
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"annotations": {kubevirt.ANNOTATION_PCI_SLOT_COUNT: "8"}},
                "spec": {
                    "domain": {"devices": {"interfaces": [{"name": "br1", "bridge": {}}]}},
                    "networks": [{"name": "br1", "multus": {"networkName": "nad"}}],
                },
            },
        },
        "status": {"conditions": [{"type": "RestartRequired", "status": "True"}]},
    }


def test_parse_vm() -> None:
    rec = parse_vm(vm_obj())
    assert rec.opted_out and rec.restart_required and rec.running is True
    assert rec.generation == 3 and rec.pci_slot_count == 8
    assert rec.template_interface("br1") is not None
    obj = vm_obj()
    obj["metadata"]["labels"] = {names.LABEL_AUTO_MIGRATE: "true"}
    obj["spec"] = {"running": False}
    rec = parse_vm(obj)
    assert not rec.opted_out and rec.running is False and rec.template_interfaces == ()


def test_the_opt_out_is_a_label_or_an_annotation() -> None:
    obj = vm_obj()
    obj["metadata"]["labels"] = {}
    assert not parse_vm(obj).opted_out
    obj["metadata"]["annotations"] = {model.LABEL_AUTO_MIGRATE: "False"}
    assert parse_vm(obj).opted_out
    obj["metadata"]["annotations"] = {model.LABEL_AUTO_MIGRATE: "yes"}
    assert not parse_vm(obj).opted_out


def vmim_obj(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "hotplug-vm1-abcde",
            "namespace": "ns1",
            "uid": "m-1",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            **meta,
        },
        "spec": {"vmiName": "vm1"},
        "status": {
            "phase": "Running",
            "phaseTransitionTimestamps": [
                {"phase": "Pending", "phaseTransitionTimestamp": "2026-01-02T03:04:05Z"},
                {"phase": "Running", "phaseTransitionTimestamp": "2026-01-02T03:04:15.250Z"},
            ],
            "migrationState": {"sourceNode": "node-a", "targetNode": "node-b"},
        },
    }


def test_parse_vmim_initiators() -> None:
    rec = parse_vmim(vmim_obj(labels={names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}))
    assert rec.initiator == "agent"
    assert rec.vmi_key == ("ns1", "vm1")
    assert rec.source_node == "node-a" and rec.target_node == "node-b"
    assert rec.phase_ts("Running") == pytest.approx(1767323055.25)
    assert not rec.final
    assert parse_vmim(vmim_obj(annotations={kubevirt.ANNOTATION_WORKLOAD_UPDATE: ""})).initiator == "kubevirt"
    assert parse_vmim(vmim_obj(generateName="kubevirt-evacuation-")).initiator == "kubevirt"
    assert parse_vmim(vmim_obj(generateName="kubevirt-migrate-vm-")).initiator == "other"
    obj = vmim_obj()
    obj["spec"] = {}
    with pytest.raises(InvalidObject):
        parse_vmim(obj)


def test_parse_kubevirt() -> None:
    obj = {
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {
            "configuration": {"migrations": {"parallelMigrationsPerCluster": 7}},
            "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate", "Evict"]},
        },
        "status": {"observedKubeVirtVersion": "v1.6.0-rc.1", "phase": "Deployed"},
    }
    rec = parse_kubevirt(obj)
    assert rec.version == (1, 6, 0)
    assert rec.parallel_per_cluster == 7 and rec.parallel_per_node == 2
    assert rec.workload_update_methods == frozenset({"LiveMigrate", "Evict"})
    assert rec.phase == "Deployed"
    assert parse_kubevirt({"metadata": {"name": "kv"}}).version is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", 1767323045.0),
        ("2026-01-02T03:04:05.5Z", 1767323045.5),
        ("2026-01-02T03:04:05.123456789Z", 1767323045.123456789),
        ("2026-01-02T05:04:05+02:00", 1767323045.0),
    ],
)
def test_parse_timestamp(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "2026-01-02"]
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2Gi", 2 * 1024**3),
        ("1024M", 1024 * 10**6),
        ("1.5Gi", 3 * 1024**3 // 2),
        ("1e3", 1000),
        (5, 5),
        ("100m", 1),
    ],
)
def test_parse_quantity(text: str | int, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "-1Gi", "1e999", "1Zi", "1.2.3"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.5.2", (1, 5, 2)),
        ("v1.6.0-rc.1", (1, 6, 0)),
        ("1.9.0-beta.0-1264-gd923fdb", (1, 9, 0)),
        ("v1.7", (1, 7, 0)),
        ("x", None),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


def test_is_running_matches_kubevirt() -> None:
    phases = {getattr(kubevirt, n) for n in dir(kubevirt) if n.startswith("PHASE_")}
    running = {p for p in phases if kubevirt.is_running(p)}
    assert running == {"Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running"}


# ---------------------------------------------------------------------------------------- properties

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
KEYS = [
    "metadata",
    "spec",
    "status",
    "name",
    "namespace",
    "template",
    "domain",
    "devices",
    "interfaces",
    "networks",
    "multus",
    "pod",
    "bridge",
    "sriov",
    "state",
    "conditions",
    "type",
    "message",
    "infoSource",
    "migrationState",
    "memory",
    "guest",
    "vmiName",
    "phaseTransitionTimestamps",
    "labels",
    "annotations",
    "creationTimestamp",
    "configuration",
    "migrations",
    "workloadUpdateStrategy",
    "phase",
    "completed",
]
structured = st.recursive(
    json_leaf
    | st.sampled_from(["absent", "True", "False", "2Gi", "2026-01-02T03:04:05Z", "v1.6.0", "ns", "x"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=60,
)
PARSERS = [parse_vm, parse_vmi, parse_vmim, parse_kubevirt]


@settings(max_examples=MAX_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(json_value | structured)
def test_parsers_only_raise_invalid_object(obj: Any) -> None:
    for parse in PARSERS:
        with contextlib.suppress(InvalidObject):
            parse(obj)


@settings(max_examples=MAX_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_objects_only_raise_invalid_object(data: st.DataObject) -> None:
    """Replace one random node of a valid object by arbitrary JSON: still only InvalidObject."""
    for base, parse in ((vmi_obj(), parse_vmi), (vm_obj(), parse_vm), (vmim_obj(), parse_vmim)):
        obj: Any = copy.deepcopy(base)
        node = obj
        for _ in range(data.draw(st.integers(0, 6))):
            if isinstance(node, dict) and node:
                k = data.draw(st.sampled_from(sorted(node)))
                if data.draw(st.booleans()) or not isinstance(node[k], dict | list):
                    node[k] = data.draw(json_value)
                    break
                node = node[k]
            elif isinstance(node, list) and node:
                node = node[data.draw(st.integers(0, len(node) - 1))]
            else:
                break
        with contextlib.suppress(InvalidObject):
            parse(obj)


def test_migration_start_is_read_and_a_malformed_one_is_unknown() -> None:
    from tests.agent_unit.builders import vmi as build_vmi

    started = build_vmi(migrating=True, migration_start="2026-01-01T00:00:10Z")
    assert started.migrating and started.migration_started == parse_timestamp("2026-01-01T00:00:10Z")
    assert started.migration_source == "node-a"  # the node it leaves, from migrationState
    garbage = build_vmi(migrating=True, migration_start="yesterday-ish")
    assert garbage.migrating and garbage.migration_started is None  # still a readable VMI
    assert build_vmi(migrating=False).migration_started is None
