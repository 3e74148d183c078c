"""KubeVirt's VM → VMI network rules, admission checks and live-migratability, as pure functions.

Why pure: the simulated controllers apply these to raw dicts from their caches; keeping them free of
I/O makes each rule unit-testable against the KubeVirt source it imitates (named in its docstring).
Every function takes and returns plain JSON-like data and never mutates its input.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final, Literal

from agent.kubevirt import HOTPLUG_BINDINGS, INFO_SOURCE_DOMAIN, INFO_SOURCE_MULTUS_STATUS, STATE_ABSENT

#: Bindings KubeVirt hot plugs (``applyDynamicIfaceRequestOnVMI``, HEAD:pkg/network/controllers/vm.go).
_BINDING_KEYS: Final = ("bridge", "sriov", "masquerade", "passt", "slirp", "macvtap", "binding")
ALLOW_POD_BRIDGE_ANNOTATION: Final = "kubevirt.io/allow-pod-bridge-network-live-migration"
#: Simulator convention: a PVC whose claim name ends with this suffix is ReadWriteOnce (not shared).
RWO_CLAIM_SUFFIX: Final = "-rwo"

REASON_INTERFACE_NOT_LIVE_MIGRATABLE: Final = "InterfaceNotLiveMigratable"
REASON_HOST_DEVICE_NOT_LIVE_MIGRATABLE: Final = "HostDeviceNotLiveMigratable"
REASON_DISKS_NOT_LIVE_MIGRATABLE: Final = "DisksNotLiveMigratable"
MSG_INTERFACE_NOT_LIVE_MIGRATABLE: Final = (
    "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network"
)
MSG_HOST_DEVICE_NOT_LIVE_MIGRATABLE: Final = "VMI uses a PCI host devices"
RESTART_REQUIRED_MESSAGE: Final = "a non-live-updatable field was changed in the template spec"

Urgency = Literal["immediate", "pending"]

Spec = Mapping[str, Any]


def _dict(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def binding(iface: Mapping[str, Any]) -> str:
    """The binding method key of an interface (``bridge``, ``sriov``, ``masquerade`` …; ``binding`` =
    plugin)."""
    for key in _BINDING_KEYS:
        if key in iface:
            return key
    return ""


def interfaces(spec: Spec) -> list[dict[str, Any]]:
    """``spec.domain.devices.interfaces`` (dict entries only)."""
    return [i for i in _list(_dict(_dict(spec, "domain"), "devices"), "interfaces") if isinstance(i, dict)]


def networks(spec: Spec) -> list[dict[str, Any]]:
    return [n for n in _list(spec, "networks") if isinstance(n, dict)]


def network_by_name(spec: Spec) -> dict[str, dict[str, Any]]:
    return {str(n.get("name")): n for n in networks(spec)}


def is_pod_network(net: Mapping[str, Any]) -> bool:
    """The primary network: ``pod: {}`` or a Multus network marked ``default: true``."""
    return "pod" in net or bool(_dict(net, "multus").get("default"))


def is_secondary_multus(net: Mapping[str, Any]) -> bool:
    """Networks KubeVirt hot plugs (the evaluator iterates non-default multus networks)."""
    return "multus" in net and not _dict(net, "multus").get("default")


def status_entries(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(e.get("name")): e for e in _list(status, "interfaces") if isinstance(e, dict) and e.get("name")
    }


def info_sources(entry: Mapping[str, Any]) -> set[str]:
    raw = entry.get("infoSource")
    if not isinstance(raw, str):
        return set()
    return {s.strip() for s in raw.split(",") if s.strip()}


# ------------------------------------------------------------------------------------------------
# Admission (HEAD:pkg/network/admitter/admit.go validateInterfaceStateValue)
# ------------------------------------------------------------------------------------------------


def validate_interface_states(spec: Spec) -> list[str]:
    """Denial messages for interface ``state`` values, KubeVirt's texts; empty when valid."""
    nets = network_by_name(spec)
    errors: list[str] = []
    for iface in interfaces(spec):
        name = str(iface.get("name", ""))
        state = iface.get("state", "")
        if state in ("", None):
            continue
        if state not in ("absent", "up", "down"):
            errors.append(f"logical {name} interface state value is unsupported: {state}")
            continue
        b = binding(iface)
        if state == STATE_ABSENT:
            if b != "bridge":
                errors.append(f'"{name}" interface\'s state "absent" is supported only for bridge binding')
            elif is_pod_network(nets.get(name, {})):
                errors.append(f'"{name}" interface\'s state "absent" is not supported on default networks')
        elif b == "sriov":
            errors.append(f'"{name}" interface\'s state "{state}" is not supported for SR-IOV NICs')
    return errors


# ------------------------------------------------------------------------------------------------
# VM → VMI propagation (HEAD:pkg/network/controllers/vm.go)
# ------------------------------------------------------------------------------------------------


def propagate(
    vm_template_spec: Spec, vmi_spec: Spec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """New VMI ``(interfaces, networks)`` after applying the VM's dynamic interface requests, or None.

    ``applyDynamicIfaceRequestOnVMI``: a template interface missing from the VMI, not ``absent``, with
    binding bridge or sriov, is appended with its network (hot-plug request). An interface present in
    both with a different ``state`` gets the VM's state unless the VMI already says ``absent``.
    """
    vm_ifaces = interfaces(vm_template_spec)
    vm_nets = network_by_name(vm_template_spec)
    new_ifaces = [copy.deepcopy(i) for i in interfaces(vmi_spec)]
    new_nets = [copy.deepcopy(n) for n in networks(vmi_spec)]
    vmi_by_name = {str(i.get("name")): i for i in new_ifaces}
    vmi_net_names = {str(n.get("name")) for n in new_nets}
    changed = False
    for iface in vm_ifaces:
        name = str(iface.get("name", ""))
        state = iface.get("state", "") or ""
        current = vmi_by_name.get(name)
        if current is None:
            if state == STATE_ABSENT or binding(iface) not in HOTPLUG_BINDINGS:
                continue
            net = vm_nets.get(name)
            if net is None or not is_secondary_multus(net):
                continue
            new_ifaces.append(copy.deepcopy(iface))
            if name not in vmi_net_names:
                new_nets.append(copy.deepcopy(net))
            changed = True
            continue
        current_state = current.get("state", "") or ""
        if current_state not in (state, STATE_ABSENT):
            if state:
                current["state"] = state
            else:
                current.pop("state", None)
            changed = True
    if not changed:
        return None
    return new_ifaces, new_nets


def spec_json_patch(
    old_spec: Spec, new_ifaces: list[dict[str, Any]], new_nets: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The JSON patch KubeVirt sends: ``test`` the current lists, then ``replace`` (or ``add``) them."""
    ops: list[dict[str, Any]] = []
    old_nets = old_spec.get("networks")
    if old_nets is None:
        ops.append({"op": "add", "path": "/spec/networks", "value": new_nets})
    else:
        ops.append({"op": "test", "path": "/spec/networks", "value": old_nets})
        ops.append({"op": "replace", "path": "/spec/networks", "value": new_nets})
    devices = _dict(_dict(old_spec, "domain"), "devices")
    old_ifaces = devices.get("interfaces")
    if old_ifaces is None:
        ops.append({"op": "add", "path": "/spec/domain/devices/interfaces", "value": new_ifaces})
    else:
        ops.append({"op": "test", "path": "/spec/domain/devices/interfaces", "value": old_ifaces})
        ops.append({"op": "replace", "path": "/spec/domain/devices/interfaces", "value": new_ifaces})
    return ops


def cleanup_vmi(
    vmi_spec: Spec, vmi_status: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``clearDetachedIfacesFromVMI``: drop ``absent`` interfaces that no longer have a status entry."""
    entries = status_entries(vmi_status)
    gone = {
        str(i.get("name"))
        for i in interfaces(vmi_spec)
        if i.get("state") == STATE_ABSENT and str(i.get("name")) not in entries
    }
    if not gone:
        return None
    return (
        [copy.deepcopy(i) for i in interfaces(vmi_spec) if str(i.get("name")) not in gone],
        [copy.deepcopy(n) for n in networks(vmi_spec) if str(n.get("name")) not in gone],
    )


def cleanup_vm(
    vm_template_spec: Spec, vmi_spec: Spec, vmi_status: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``clearDetachedIfacesFromVM``: drop ``absent`` template interfaces gone from VMI spec and status.

    This is the moment a hot unplug is complete from the user's point of view.
    """
    in_vmi = {str(i.get("name")) for i in interfaces(vmi_spec)}
    entries = status_entries(vmi_status)
    gone = {
        str(i.get("name"))
        for i in interfaces(vm_template_spec)
        if i.get("state") == STATE_ABSENT
        and str(i.get("name")) not in in_vmi
        and str(i.get("name")) not in entries
    }
    if not gone:
        return None
    return (
        [copy.deepcopy(i) for i in interfaces(vm_template_spec) if str(i.get("name")) not in gone],
        [copy.deepcopy(n) for n in networks(vm_template_spec) if str(n.get("name")) not in gone],
    )


def _without_state(iface: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in iface.items() if k != "state"}


def restart_required(vm_template_spec: Spec, vmi_spec: Spec, vmi_migratable: bool) -> bool:
    """``IsRestartRequired`` (HEAD:pkg/network/vmliveupdate/restart.go), network part.

    True when an interface or network was removed from the VM instead of being set ``absent``, an
    existing interface changed other than ``state``, the pod network was added, or (VMI not
    migratable) an existing network changed.
    """
    vm_ifaces = {str(i.get("name")): i for i in interfaces(vm_template_spec)}
    vm_nets = network_by_name(vm_template_spec)
    vmi_nets = network_by_name(vmi_spec)
    for iface in interfaces(vmi_spec):
        name = str(iface.get("name"))
        other = vm_ifaces.get(name)
        if other is None:
            return True
        if _without_state(other) != _without_state(iface):
            return True
    for name in vmi_nets:
        if name not in vm_nets:
            return True
    if any(is_pod_network(n) for n in vm_nets.values()) and not any(
        is_pod_network(n) for n in vmi_nets.values()
    ):
        return True
    if not vmi_migratable:
        for name, net in vmi_nets.items():
            if name in vm_nets and vm_nets[name] != net:
                return True
    return False


# ------------------------------------------------------------------------------------------------
# LiveMigratable (HEAD:pkg/virt-handler/vm.go:1133-1180, HEAD:pkg/network/vmispec/interface.go:58-88)
# ------------------------------------------------------------------------------------------------


def live_migratable(vmi: Mapping[str, Any]) -> tuple[bool, str, str]:
    """``(migratable, reason, message)`` with KubeVirt's reasons and messages.

    Simulator convention for disks: a PVC volume whose claim name ends with ``-rwo`` is ReadWriteOnce,
    hence not shared (the simulator has no PVC objects to read the access mode from).
    """
    spec = _dict(vmi, "spec")
    annotations = _dict(_dict(vmi, "metadata"), "annotations")
    for vol in _list(spec, "volumes"):
        if not isinstance(vol, dict):
            continue
        claim = _dict(vol, "persistentVolumeClaim").get("claimName")
        if isinstance(claim, str) and claim.endswith(RWO_CLAIM_SUFFIX):
            return (
                False,
                REASON_DISKS_NOT_LIVE_MIGRATABLE,
                f"cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs "
                "must be shared (using ReadWriteMany access mode)",
            )
    devices = _dict(_dict(spec, "domain"), "devices")
    if _list(devices, "hostDevices") or _list(devices, "gpus"):
        return False, REASON_HOST_DEVICE_NOT_LIVE_MIGRATABLE, MSG_HOST_DEVICE_NOT_LIVE_MIGRATABLE
    nets = network_by_name(spec)
    for iface in interfaces(spec):
        net = nets.get(str(iface.get("name")), {})
        if not is_pod_network(net):
            continue
        b = binding(iface)
        if b == "bridge" and ALLOW_POD_BRIDGE_ANNOTATION not in annotations:
            return False, REASON_INTERFACE_NOT_LIVE_MIGRATABLE, MSG_INTERFACE_NOT_LIVE_MIGRATABLE
        if b in ("slirp", "macvtap"):
            return False, REASON_INTERFACE_NOT_LIVE_MIGRATABLE, MSG_INTERFACE_NOT_LIVE_MIGRATABLE
    return True, "", ""


# ------------------------------------------------------------------------------------------------
# Migration evaluator (HEAD:pkg/network/migration/evaluator.go)
# ------------------------------------------------------------------------------------------------


def migration_urgency(vmi_spec: Spec, vmi_status: Mapping[str, Any]) -> Urgency | None:
    """``shouldVMIBeMarkedForAutoMigration``: ``immediate`` (SR-IOV plug), ``pending`` (bridge plug,
    unplug)."""
    nets = network_by_name(vmi_spec)
    entries = status_entries(vmi_status)
    result: Urgency | None = None
    for iface in interfaces(vmi_spec):
        name = str(iface.get("name"))
        if not is_secondary_multus(nets.get(name, {})):
            continue
        entry = entries.get(name)
        if iface.get("state") != STATE_ABSENT:
            if entry is None:
                if binding(iface) == "sriov":
                    return "immediate"
                result = "pending"
        elif entry is not None:
            sources = info_sources(entry)
            if INFO_SOURCE_MULTUS_STATUS in sources and INFO_SOURCE_DOMAIN not in sources:
                result = "pending"
    return result
