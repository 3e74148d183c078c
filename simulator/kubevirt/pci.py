"""PCI(e) hot-plug topology of a simulated domain, per KubeVirt version.

Why: a hot-plugged NIC (or disk) needs a free hot-pluggable ``pcie-root-port`` in the *running*
domain. The number of free ports is fixed when the domain is defined (VMI start) and travels with the
guest on live migration, so a migration never adds ports. Exhaustion shows
only at attach time: libvirt ``internal error: No more available PCI slots``.

Formulas (the KubeVirt source of each is named):

``v1`` (KubeVirt ≤ 1.5, ``v1.5.0:pkg/virt-launcher/virtwrap/nichotplug.go`` ``ReservedInterfaces = 4``)
    ``free = max(0, 4 - interfaces at definition)``; none when the VMI has no interfaces or carries
    ``kubevirt.io/placePCIDevicesOnRootComplex: "true"``.
``v2`` (KubeVirt ≥ 1.6, ``HEAD:pkg/virt-launcher/virtwrap/manager.go`` ``calculateHotplugPortCountV2``)
    ``free = max(8 - used, 3)``, or ``max(16 - used, 6)`` when guest memory > 2 GiB, where the
    simulator counts ``used`` = interfaces + disks at definition (the real count also includes
    controllers and other devices; we keep the two device kinds the scenario varies).
``kubevirt.io/pci-interface-slot-count: S`` (KubeVirt ≥ 1.9)
    overrides the interface slot total: ``free = max(0, S - interfaces at definition)`` (the real v3
    scheme adds v2's extra empty root ports on top; the simulator does not, documented in
    docs/simulator.md).

Devices hot-plugged after definition consume the same pool: hot-plugged NICs *and* hot-plugged disks
(volumes with ``hotpluggable: true``, issue kubevirt/kubevirt#14180). An unplugged NIC frees its port.
Pure module: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.kubevirt import (
    ANNOTATION_PCI_SLOT_COUNT,
    ANNOTATION_PLACE_ON_ROOT_COMPLEX,
    STATE_ABSENT,
    V1_RESERVED_INTERFACES,
    V2_LARGE_MEMORY_THRESHOLD,
    V2_LARGE_MIN_FREE_PORTS,
    V2_LARGE_TOTAL_PORTS,
    V2_MIN_FREE_PORTS,
    V2_TOTAL_PORTS,
    parse_quantity,
    parse_version,
)

Topology = Literal["v1", "v2"]


def topology_for_version(version: str) -> Topology:
    """``v1.5.2`` → ``v1``; ``v1.6.0`` and later → ``v2`` (PCI port formula changed in v1.6.0, commit
    a3d972b9)."""
    parsed = parse_version(version)
    if parsed is None or parsed < (1, 6, 0):
        return "v1"
    return "v2"


def supports_slot_count_annotation(version: str) -> bool:
    """``kubevirt.io/pci-interface-slot-count`` exists from v1.9.0 (types.go:1260-1276)."""
    parsed = parse_version(version)
    return parsed is not None and parsed >= (1, 9, 0)


@dataclass(frozen=True, slots=True)
class DefinitionCounts:
    """What the domain holds when it is defined (VMI start)."""

    interfaces: int
    disks: int
    hotplugged_disks: int
    memory_bytes: int | None
    on_root_complex: bool
    slot_count: int | None


def _dict(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def memory_bytes(spec: Mapping[str, Any]) -> int | None:
    """Guest memory: ``domain.memory.guest``, else ``domain.resources.requests.memory``."""
    domain = _dict(spec, "domain")
    raw = _dict(domain, "memory").get("guest")
    if raw is None:
        raw = _dict(_dict(domain, "resources"), "requests").get("memory")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        return None
    try:
        return parse_quantity(raw)
    except ValueError:
        return None


def hotplugged_volume_names(spec: Mapping[str, Any]) -> set[str]:
    """Volumes KubeVirt hot plugged after start (``persistentVolumeClaim``/``dataVolume``
    ``hotpluggable: true``)."""
    out: set[str] = set()
    for vol in _list(spec, "volumes"):
        if not isinstance(vol, dict):
            continue
        for kind in ("persistentVolumeClaim", "dataVolume"):
            src = vol.get(kind)
            if isinstance(src, dict) and src.get("hotpluggable") is True:
                out.add(str(vol.get("name", "")))
    return out


def definition_counts(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> DefinitionCounts:
    """Counts of a VMI spec at domain definition. Absent interfaces are not in a new domain."""
    devices = _dict(_dict(spec, "domain"), "devices")
    ifaces = [
        i for i in _list(devices, "interfaces") if isinstance(i, dict) and i.get("state") != STATE_ABSENT
    ]
    hot = hotplugged_volume_names(spec)
    disks = [d for d in _list(devices, "disks") if isinstance(d, dict)]
    boot_disks = [d for d in disks if d.get("name") not in hot]
    slot_raw = annotations.get(ANNOTATION_PCI_SLOT_COUNT)
    slot_count: int | None = None
    if isinstance(slot_raw, str) and slot_raw.isdigit():
        slot_count = int(slot_raw)
    return DefinitionCounts(
        interfaces=len(ifaces),
        disks=len(boot_disks),
        hotplugged_disks=len(hot),
        memory_bytes=memory_bytes(spec),
        on_root_complex=annotations.get(ANNOTATION_PLACE_ON_ROOT_COMPLEX) == "true",
        slot_count=slot_count,
    )


def free_ports_at_definition(counts: DefinitionCounts, topology: Topology, *, slot_annotation: bool) -> int:
    """Free hot-pluggable root ports right after the domain is defined (before hot-plugged disks)."""
    if slot_annotation and counts.slot_count is not None:
        return max(0, counts.slot_count - counts.interfaces)
    if topology == "v1":
        if counts.interfaces == 0 or counts.on_root_complex:
            return 0
        return max(0, V1_RESERVED_INTERFACES - counts.interfaces)
    used = counts.interfaces + counts.disks
    if counts.memory_bytes is not None and counts.memory_bytes > V2_LARGE_MEMORY_THRESHOLD:
        return max(V2_LARGE_TOTAL_PORTS - used, V2_LARGE_MIN_FREE_PORTS)
    return max(V2_TOTAL_PORTS - used, V2_MIN_FREE_PORTS)


def free_ports_for_new_domain(
    spec: Mapping[str, Any], annotations: Mapping[str, Any], version: str
) -> tuple[int, frozenset[str]]:
    """Free ports of a freshly defined domain after its hot-plugged disks took theirs, and the attached NICs.

    Hot-plugged disks are modelled as attached right after start, so they consume free ports first:
    this is how a VM shows *observed* exhaustion that an interface-only prediction misses.
    """
    counts = definition_counts(spec, annotations)
    free = free_ports_at_definition(
        counts, topology_for_version(version), slot_annotation=supports_slot_count_annotation(version)
    )
    devices = _dict(_dict(spec, "domain"), "devices")
    attached = frozenset(
        str(i.get("name"))
        for i in _list(devices, "interfaces")
        if isinstance(i, dict) and i.get("state") != STATE_ABSENT
    )
    return max(0, free - counts.hotplugged_disks), attached


@dataclass(slots=True)
class Domain:
    """The running guest's device state as virt-handler/libvirt know it (not an API object).

    ``pod_networks``: secondary networks the current virt-launcher pod has (Multus ``network-status``);
    ``attached``: interfaces in the domain; ``free_ports``: free hot-pluggable root ports.
    """

    uid: str
    free_ports: int
    attached: set[str]
    pod_networks: set[str]

    def attach(self, iface: str) -> bool:
        """Hot attach a NIC; False when no port is free (``No more available PCI slots``)."""
        if iface in self.attached:
            return True
        if self.free_ports <= 0:
            return False
        self.free_ports -= 1
        self.attached.add(iface)
        return True

    def detach(self, iface: str) -> None:
        """Hot detach a NIC: its root port becomes free again."""
        if iface in self.attached:
            self.attached.remove(iface)
            self.free_ports += 1
