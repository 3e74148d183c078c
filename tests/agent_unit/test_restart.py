"""agent.restart: what a fixed KubeVirt says about RestartRequired, from the start revision, VM and VMI.

The objects are shaped as KubeVirt v1.5.1 writes them (the start ControllerRevision holds
``{"spec": <VM spec>}``); tests/kubevirt/test_releases.py runs the same question on real virt-controller.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.restart import check_restart, flags_every_network_edit, network_edit_needs_restart


def template(*secondary: str, cores: int = 1) -> dict[str, Any]:
    ifaces: list[dict[str, Any]] = [{"name": "default", "masquerade": {}}]
    nets: list[dict[str, Any]] = [{"name": "default", "pod": {}}]
    for name in secondary:
        ifaces.append({"name": name, "bridge": {}})
        nets.append({"name": name, "multus": {"networkName": f"{name}-nad"}})
    return {
        "domain": {
            "cpu": {"cores": cores, "sockets": 1},
            "memory": {"guest": "1Gi"},
            "devices": {"interfaces": ifaces, "disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
        },
        "networks": nets,
        "volumes": [{"name": "root", "containerDisk": {"image": "fedora"}}],
    }


def vm_with(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "vm"}, "spec": {"runStrategy": "Always", "template": {"spec": spec}}}


START = {"runStrategy": "Always", "template": {"spec": template("net-a")}}
VMI = {"spec": template("net-a")}


@pytest.mark.parametrize(
    ("version", "flags"),
    [
        ((1, 1, 0), False),
        ((1, 2, 0), True),
        ((1, 4, 0), True),
        ((1, 4, 1), False),
        ((1, 5, 0), True),
        ((1, 5, 1), True),
        ((1, 5, 2), False),
        ((1, 6, 0), False),
        (None, False),
    ],
)
def test_the_releases_that_flag_every_network_edit(version: tuple[int, int, int] | None, flags: bool) -> None:
    assert flags_every_network_edit(version) is flags


def test_a_hot_plug_alone_needs_no_restart() -> None:
    check = check_restart(START, vm_with(template("net-a", "hp1")), VMI, live_update=True)
    assert not check.needed and "only from the network edit" in check.reason


def test_an_unplug_alone_needs_no_restart() -> None:
    spec = template("net-a")
    spec["domain"]["devices"]["interfaces"][1]["state"] = "absent"
    assert not check_restart(START, vm_with(spec), VMI, live_update=True).needed


def test_a_cpu_cores_change_needs_a_restart_and_is_named() -> None:
    check = check_restart(START, vm_with(template("net-a", "hp1", cores=2)), VMI, live_update=True)
    assert check.needed and check.reason == "spec.template.spec.domain.cpu.cores changed since the VM started"


def test_live_updatable_fields_need_a_restart_only_without_live_update() -> None:
    spec = template("net-a", "hp1")
    spec["domain"]["cpu"]["sockets"] = 2
    spec["domain"]["memory"]["guest"] = "2Gi"
    spec["nodeSelector"] = {"zone": "a"}
    assert not check_restart(START, vm_with(spec), VMI, live_update=True).needed
    check = check_restart(START, vm_with(spec), VMI, live_update=False)
    assert check.needed and "domain.cpu.sockets" in check.reason and "nodeSelector" in check.reason


def test_a_volume_hot_plug_needs_no_restart_even_without_live_update() -> None:
    spec = template("net-a", "hp1")
    spec["volumes"].append(
        {"name": "hp-disk", "persistentVolumeClaim": {"claimName": "c", "hotpluggable": True}}
    )
    spec["domain"]["devices"]["disks"].append({"name": "hp-disk", "disk": {"bus": "scsi"}})
    vmi = copy.deepcopy(VMI)
    vmi["spec"]["volumes"] = spec["volumes"]
    vmi["spec"]["domain"]["devices"]["disks"] = spec["domain"]["devices"]["disks"]
    assert not check_restart(START, vm_with(spec), vmi, live_update=False).needed


def test_network_edits_that_need_a_restart() -> None:
    removed = template()
    assert "net-a was removed" in network_edit_needs_restart(removed, VMI["spec"])
    mac = template("net-a")
    mac["domain"]["devices"]["interfaces"][1]["macAddress"] = "02:00:00:00:00:01"
    assert "net-a was changed" in network_edit_needs_restart(mac, VMI["spec"])
    nad = template("net-a")
    nad["networks"][1]["multus"]["networkName"] = "other"
    assert "network net-a was changed" in network_edit_needs_restart(nad, VMI["spec"])
    assert check_restart(START, vm_with(nad), VMI, live_update=True).needed


def test_empty_and_absent_fields_are_equal() -> None:
    spec = template("net-a", "hp1")
    spec["tolerations"] = []
    spec["domain"]["features"] = {}
    assert not check_restart(START, vm_with(spec), VMI, live_update=False).needed
