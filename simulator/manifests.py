"""The objects a user writes: one VirtualMachine builder and the hot-plug patch, for the scenario, the
test tiers and the benchmarks.

Why one: every tier (the embedded server, the real kube-apiserver, real KubeVirt) must see the same VM,
valid for KubeVirt's own admission webhooks, so a test that passes on one backend means the same thing
on the others. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.kubevirt import API_VERSION, KIND_VM

#: The VM's boot disk image (never pulled: no node runs it).
ROOT_DISK_IMAGE = "quay.io/containerdisks/fedora:40"
#: A PCI host device (a GPU): such a VM is not live-migratable.
HOST_DEVICE = "nvidia.com/GA100_A100_PCIE_40GB"


def nad_name(namespace: str | None, network: str) -> str:
    """The Multus network a secondary interface refers to: ``<namespace>/<network>``."""
    return f"{namespace}/{network}" if namespace else network


def vm_manifest(
    namespace: str | None,
    name: str | None,
    secondary: Iterable[tuple[str, str]] = (),
    *,
    labels: Mapping[str, str] | None = None,
    template_annotations: Mapping[str, str] | None = None,
    pod_binding: str = "masquerade",
    volumes: Sequence[Mapping[str, Any]] = (),
    host_devices: bool = False,
    memory: str = "1Gi",
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A running VirtualMachine as a user writes it.

    The pod network (``pod_binding``: masquerade is live-migratable, bridge is not), one container
    disk, and secondary Multus interfaces ``(network, binding)`` referring to NADs
    :func:`nad_name`. ``volumes`` are added with a SCSI disk each (:func:`hotplug_volumes` makes
    hot-pluggable ones). ``namespace`` None leaves it out of the metadata (the URL decides),
    ``name`` None too (give ``metadata={"generateName": …}``); ``metadata`` adds other fields
    (finalizers, annotations …).
    """
    ifaces: list[dict[str, Any]] = [{"name": "default", pod_binding: {}}]
    nets: list[dict[str, Any]] = [{"name": "default", "pod": {}}]
    for net, binding in secondary:
        ifaces.append({"name": net, binding: {}})
        nets.append({"name": net, "multus": {"networkName": nad_name(namespace, net)}})
    disks: list[dict[str, Any]] = [{"name": "rootdisk", "disk": {"bus": "virtio"}}]
    vols: list[dict[str, Any]] = [{"name": "rootdisk", "containerDisk": {"image": ROOT_DISK_IMAGE}}]
    for vol in volumes:
        disks.append({"name": vol["name"], "disk": {"bus": "scsi"}})
        vols.append(dict(vol))
    devices: dict[str, Any] = {"interfaces": ifaces, "disks": disks}
    if host_devices:
        devices["hostDevices"] = [{"name": "gpu0", "deviceName": HOST_DEVICE}]
    meta: dict[str, Any] = {"labels": dict(labels or {}), **(metadata or {})}
    if name is not None:
        meta["name"] = name
    if namespace is not None:
        meta["namespace"] = namespace
    tmeta: dict[str, Any] = {"labels": {"kubevirt.io/vm": name}} if name else {}
    if template_annotations:
        tmeta["annotations"] = dict(template_annotations)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_VM,
        "metadata": meta,
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": tmeta,
                "spec": {
                    "domain": {"devices": devices, "memory": {"guest": memory}, "resources": {}},
                    "networks": nets,
                    "volumes": vols,
                },
            },
        },
    }


def hotplug_volumes(vm_name: str, count: int) -> list[dict[str, Any]]:
    """``count`` hot-pluggable PVC volumes: each takes a free PCI root port right after the VM starts."""
    return [
        {
            "name": f"hp-disk-{k}",
            "persistentVolumeClaim": {"claimName": f"{vm_name}-hp-{k}", "hotpluggable": True},
        }
        for k in range(count)
    ]


def plug_patch(vm: Mapping[str, Any], iface: str, binding: str) -> dict[str, Any]:
    """The user's merge patch adding ``iface`` (``binding``) to the VM template: KubeVirt's hot-plug API."""
    ns = vm["metadata"].get("namespace")
    spec = vm["spec"]["template"]["spec"]
    ifaces = [*spec["domain"]["devices"]["interfaces"], {"name": iface, binding: {}}]
    nets = [*spec["networks"], {"name": iface, "multus": {"networkName": nad_name(ns, iface)}}]
    return {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}}
