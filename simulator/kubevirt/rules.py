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


# ------------------------------------------------------------------------------------------------
# RestartRequired (vX:pkg/virt-controller/watch/vm/vm.go addRestartRequiredIfNeeded,
# vX:pkg/network/vmliveupdate/restart.go IsRestartRequired)
# ------------------------------------------------------------------------------------------------


def flags_every_network_edit(version: tuple[int, int, int] | None) -> bool:
    """KubeVirt v1.2.0 to v1.4.0, v1.5.0 and v1.5.1 compare the whole template with the one the VMI started
    from, interfaces and networks included, so every hot plug or ``state: absent`` sets RestartRequired
    (fixed in v1.4.1, v1.5.2 and v1.6.0 by an ``IsRestartRequired`` network exemption)."""
    if version is None:
        return False
    return (1, 2, 0) <= version <= (1, 4, 0) or (1, 5, 0) <= version <= (1, 5, 1)


def network_restart_required(
    version: tuple[int, int, int] | None, template_spec: Spec, vmi_spec: Spec, vmi_migratable: bool
) -> bool:
    """``IsRestartRequired``: the network edits a restart is needed for, by release.

    v1.4.1 and v1.5.2 to v1.7: an interface or network removed from the VM instead of being set ``absent``, an
    existing interface changed other than ``state``, or any existing network changed. v1.8 adds "the pod
    network was added". v1.9 exempts a changed NAD reference when the VMI is migratable.
    """
    vm_ifaces = {str(i.get("name")): i for i in interfaces(template_spec)}
    vm_nets = network_by_name(template_spec)
    vmi_nets = network_by_name(vmi_spec)
    for iface in interfaces(vmi_spec):
        other = vm_ifaces.get(str(iface.get("name")))
        if other is None or _pruned(_without_state(other)) != _pruned(_without_state(iface)):
            return True
    if any(name not in vm_nets for name in vmi_nets):
        return True
    v = version or (0, 0, 0)
    if (
        v >= (1, 8, 0)
        and any(is_pod_network(n) for n in vm_nets.values())
        and not any(is_pod_network(n) for n in vmi_nets.values())
    ):
        return True
    if v >= (1, 9, 0) and vmi_migratable:
        return False  # a changed NAD reference is applied by a migration
    return any(_pruned(vm_nets[name]) != _pruned(net) for name, net in vmi_nets.items())


def _live_updatable_copied(start: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The start template spec with the fields KubeVirt live-updates (rollout strategy ``LiveUpdate``)
    taken from the current one: volumes, disks, CPU sockets, guest memory, node selector, affinity,
    tolerations."""
    out = copy.deepcopy(dict(start))
    for key in ("volumes", "nodeSelector", "affinity", "tolerations"):
        out.pop(key, None)
        if key in current:
            out[key] = copy.deepcopy(current[key])
    domain = out.setdefault("domain", {})
    cur_domain = _dict(current, "domain")
    devices = domain.setdefault("devices", {})
    devices.pop("disks", None)
    if "disks" in _dict(cur_domain, "devices"):
        devices["disks"] = copy.deepcopy(_dict(cur_domain, "devices")["disks"])
    if isinstance(domain.get("cpu"), dict) and "cpu" in cur_domain:
        domain["cpu"].pop("sockets", None)
        if "sockets" in _dict(cur_domain, "cpu"):
            domain["cpu"]["sockets"] = _dict(cur_domain, "cpu")["sockets"]
    guest = _dict(cur_domain, "memory").get("guest")
    if guest is not None:
        domain.setdefault("memory", {})["guest"] = guest
    return out


def restart_required(
    version: tuple[int, int, int] | None,
    start_spec: Spec | None,
    template_spec: Spec,
    vmi_spec: Spec,
    *,
    vmi_migratable: bool,
    live_update: bool,
) -> bool:
    """``addRestartRequiredIfNeeded``: the VM template differs from the one the VMI started from
    (``start_spec``, KubeVirt's start ControllerRevision) in a field that cannot be updated live.

    No start revision → False, as in KubeVirt. Without ``LiveUpdate`` volumes and disks are exempt only
    when the VMI already has them (volume hot plug). Before v1.2 there is no such condition.
    """
    if start_spec is None or (version is not None and version < (1, 2, 0)):
        return False
    if live_update:
        start: dict[str, Any] = _live_updatable_copied(start_spec, template_spec)
    else:
        start = copy.deepcopy(dict(start_spec))
        cur_devices = _dict(_dict(template_spec, "domain"), "devices")
        vmi_devices = _dict(_dict(vmi_spec, "domain"), "devices")
        if template_spec.get("volumes") == vmi_spec.get("volumes") and cur_devices.get(
            "disks"
        ) == vmi_devices.get("disks"):
            start.pop("volumes", None)
            start.setdefault("domain", {}).setdefault("devices", {}).pop("disks", None)
            if "volumes" in template_spec:
                start["volumes"] = copy.deepcopy(template_spec["volumes"])
            if "disks" in cur_devices:
                start["domain"]["devices"]["disks"] = copy.deepcopy(cur_devices["disks"])
    if not flags_every_network_edit(version) and not network_restart_required(
        version, template_spec, vmi_spec, vmi_migratable
    ):
        devices = start.setdefault("domain", {}).setdefault("devices", {})
        devices.pop("interfaces", None)
        start.pop("networks", None)
        if "interfaces" in _dict(_dict(template_spec, "domain"), "devices"):
            devices["interfaces"] = copy.deepcopy(template_spec["domain"]["devices"]["interfaces"])
        if "networks" in template_spec:
            start["networks"] = copy.deepcopy(template_spec["networks"])
    return bool(_pruned(start) != _pruned(template_spec))


def _pruned(value: Any) -> Any:
    """JSON with empty objects, lists and nulls dropped: Go's ``omitempty`` makes them equal to absent."""
    if isinstance(value, Mapping):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


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
    unplug). The first interface that needs a migration decides, in spec order, as in KubeVirt: a bridge
    plug listed before an SR-IOV plug makes the pair wait for the grace period."""
    nets = network_by_name(vmi_spec)
    entries = status_entries(vmi_status)
    for iface in interfaces(vmi_spec):
        name = str(iface.get("name"))
        if not is_secondary_multus(nets.get(name, {})):
            continue
        entry = entries.get(name)
        if iface.get("state") != STATE_ABSENT:
            if entry is None:
                return "immediate" if binding(iface) == "sriov" else "pending"
        elif entry is not None:
            sources = info_sources(entry)
            if INFO_SOURCE_MULTUS_STATUS in sources and INFO_SOURCE_DOMAIN not in sources:
                return "pending"
    return None
