"""KubeVirt's own facts: the strings, defaults and formats of its API, in one place.

Why one module: the agent reads these strings and the simulator writes them. When both took them from
the agent's parsers, a misreading of KubeVirt by the agent was repeated by its judge. Here they stand
apart from the agent's *own* names (its labels, Event reasons: :mod:`agent.names`), and
``tests/kubevirt/test_vocabulary.py`` checks every string below against KubeVirt's Go source (or its
generated CRDs) at the pinned release, so a typo or a rename in KubeVirt shows as a failed test.

The simulator imports from the agent only this module, :mod:`agent.names` and :mod:`agent.aio` (an
``import-linter`` contract in ``pyproject.toml``).

Where a value comes from is named by its Go identifier (``staging/src/kubevirt.io/api/core/v1`` is
``kubevirt.io/api``); a reader can find it with ``grep`` in the module cache after
``hack/kubevirt/build.sh`` ran. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Final

# --------------------------------------------------------------------------------------------------
# API group and resources
# --------------------------------------------------------------------------------------------------

GROUP: Final = "kubevirt.io"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
VMS: Final = "virtualmachines"
VMIS: Final = "virtualmachineinstances"
VMIMS: Final = "virtualmachineinstancemigrations"
KUBEVIRTS: Final = "kubevirts"
KIND_VM: Final = "VirtualMachine"
KIND_VMIM: Final = "VirtualMachineInstanceMigration"

# --------------------------------------------------------------------------------------------------
# Labels, annotations, names
# --------------------------------------------------------------------------------------------------

#: ``MigrationSelectorLabel``: the VMIM's VMI; virt-api's mutating webhook adds it when missing.
LABEL_VMI_NAME: Final = "kubevirt.io/vmi-name"
#: ``NodeNameLabel`` on a VMI and its virt-launcher pod.
LABEL_NODE_NAME: Final = "kubevirt.io/nodeName"
#: ``CreatedByLabel`` on a virt-launcher pod: the VMI's uid.
LABEL_CREATED_BY: Final = "kubevirt.io/created-by"
#: ``AppLabel`` (``kubevirt.io``) with the value ``virt-launcher`` selects the launcher pods.
LABEL_APP: Final = "kubevirt.io"
LAUNCHER_APP: Final = "virt-launcher"

#: ``WorkloadUpdateMigrationAnnotation``: set on the VMIMs of KubeVirt's workload updater.
ANNOTATION_WORKLOAD_UPDATE: Final = "kubevirt.io/workloadUpdateMigration"
#: ``EvacuationMigrationAnnotation``: set on the VMIMs of a node drain (evacuation).
ANNOTATION_EVACUATION: Final = "kubevirt.io/evacuationMigration"
#: ``PlacePCIDevicesOnRootComplex``: no PCIe root ports, so no hot-plug ports at all.
ANNOTATION_PLACE_ON_ROOT_COMPLEX: Final = "kubevirt.io/placePCIDevicesOnRootComplex"
#: ``PciInterfaceSlotCountAnnotation`` (KubeVirt ≥ 1.9): interface slots reserved for hot plug.
ANNOTATION_PCI_SLOT_COUNT: Final = "kubevirt.io/pci-interface-slot-count"
#: ``PciTopologyVersionAnnotation``: which port formula defined the running domain.
ANNOTATION_PCI_TOPOLOGY_VERSION: Final = "kubevirt.io/pci-topology-version"

#: ``generateName`` prefixes of the VMIMs KubeVirt itself creates: the workload updater, evacuation
#: (a node drain) and ``virtctl migrate`` (a user's action).
KUBEVIRT_WORKLOAD_UPDATE_PREFIX: Final = "kubevirt-workload-update-"
KUBEVIRT_EVACUATION_PREFIX: Final = "kubevirt-evacuation-"
VIRTCTL_MIGRATE_PREFIX: Final = "kubevirt-migrate-vm-"

# --------------------------------------------------------------------------------------------------
# Conditions and reasons
# --------------------------------------------------------------------------------------------------

COND_LIVE_MIGRATABLE: Final = "LiveMigratable"
COND_SYNCHRONIZED: Final = "Synchronized"
#: VMI condition of KubeVirt ≥ 1.6 (``VirtualMachineInstanceMigrationRequired``).
COND_MIGRATION_REQUIRED: Final = "MigrationRequired"
COND_RESTART_REQUIRED: Final = "RestartRequired"
REASON_AUTO_MIGRATION_PENDING: Final = "AutoMigrationPending"
REASON_AUTO_MIGRATION_DUE_TO_LIVE_UPDATE: Final = "AutoMigrationDueToLiveUpdate"

# --------------------------------------------------------------------------------------------------
# Message texts matched on (text, not codes: webhook answer codes are not part of the API)
# --------------------------------------------------------------------------------------------------

#: libvirt's attach error as KubeVirt relays it in ``Synchronized=False``.
MSG_NO_PCI_SLOTS: Final = "No more available PCI slots"
#: virt-api's migration-create admitter: the VMI already has an unfinished migration.
MSG_IN_FLIGHT: Final = "in-flight migration detected"
#: virt-api's migration-create admitter: the VMI cannot be migrated (not migratable, not running …).
MSG_CANNOT_MIGRATE: Final = "Cannot migrate VMI"

# --------------------------------------------------------------------------------------------------
# Interfaces
# --------------------------------------------------------------------------------------------------

#: ``status.interfaces[].infoSource`` values, joined by KubeVirt with ``", "`` in this order.
INFO_SOURCE_DOMAIN: Final = "domain"
INFO_SOURCE_GUEST_AGENT: Final = "guest-agent"
INFO_SOURCE_MULTUS_STATUS: Final = "multus-status"
INFO_SOURCE_ORDER: Final = (INFO_SOURCE_DOMAIN, INFO_SOURCE_GUEST_AGENT, INFO_SOURCE_MULTUS_STATUS)

#: ``InterfaceStateAbsent``: ``spec.domain.devices.interfaces[].state`` of an interface to unplug.
STATE_ABSENT: Final = "absent"

#: The bindings KubeVirt can hot plug (``bridge`` and ``sriov``); every other binding is boot-only.
HOTPLUG_BINDINGS: Final = frozenset({"bridge", "sriov"})

# --------------------------------------------------------------------------------------------------
# The KubeVirt CR
# --------------------------------------------------------------------------------------------------

#: ``workloadUpdateStrategy.workloadUpdateMethods`` values.
WORKLOAD_UPDATE_LIVE_MIGRATE: Final = "LiveMigrate"
#: Multus's NetworkAttachmentDefinition API (the networks a secondary interface names).
NAD_GROUP: Final = "k8s.cni.cncf.io"
NAD_VERSION: Final = "v1"
NADS: Final = "network-attachment-definitions"
#: The NAD annotation naming the device-plugin resource a network's VFs come from (SR-IOV; Multus,
#: the SR-IOV network device plugin).
NAD_RESOURCE_ANNOTATION: Final = "k8s.v1.cni.cncf.io/resourceName"
#: KubeVirt's default node drain taint (``nodeDrainTaintKey``): its evacuation controller migrates
#: every VMI off a node carrying it.
DRAIN_TAINT_KEY: Final = "kubevirt.io/drain"

#: ``ParallelMigrationsPerClusterDefault`` and ``ParallelOutboundMigrationsPerNodeDefault``.
DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER: Final = 5
DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE: Final = 2

# --------------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------------

# VirtualMachineInstanceMigrationPhase (``MigrationPending`` …); the empty phase is ``MigrationPhaseUnset``.
PHASE_UNSET: Final = ""
PHASE_PENDING: Final = "Pending"
PHASE_SCHEDULING: Final = "Scheduling"
PHASE_SCHEDULED: Final = "Scheduled"
PHASE_PREPARING_TARGET: Final = "PreparingTarget"
PHASE_TARGET_READY: Final = "TargetReady"
PHASE_RUNNING: Final = "Running"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
PHASE_WAITING_FOR_SYNC: Final = "WaitingForSync"
PHASE_SYNCHRONIZING: Final = "Synchronizing"

#: ``IsFinal()``: a VMIM in one of these phases will not change any more.
FINAL_PHASES: Final = frozenset({PHASE_SUCCEEDED, PHASE_FAILED})
_NOT_RUNNING_PHASES: Final = frozenset(
    {PHASE_UNSET, PHASE_PENDING, PHASE_WAITING_FOR_SYNC, PHASE_SYNCHRONIZING, PHASE_SUCCEEDED, PHASE_FAILED}
)

#: VirtualMachineInstancePhase ``Running`` (the only VMI phase a hot plug can reach the guest in).
VMI_PHASE_RUNNING: Final = "Running"


def is_running(phase: str) -> bool:
    """KubeVirt's ``VirtualMachineInstanceMigration.IsRunning()``: past Pending and not final.

    This is what KubeVirt counts against ``parallelMigrationsPerCluster`` (together with VMIMs that
    already have a target pod).
    """
    return phase not in _NOT_RUNNING_PHASES


def is_final(phase: str) -> bool:
    """KubeVirt's ``IsFinal()``."""
    return phase in FINAL_PHASES


# --------------------------------------------------------------------------------------------------
# PCI hot-plug ports (the running domain's topology; see agent/slots.py and simulator/kubevirt/pci.py)
# --------------------------------------------------------------------------------------------------

#: KubeVirt ≤ 1.5 ``ReservedInterfaces``: placeholder ports for ``4 - interfaces at boot`` NICs.
V1_RESERVED_INTERFACES: Final = 4
#: KubeVirt ≥ 1.6 ``hotplugDefaultTotalPorts`` / ``hotplugMinRequiredFreePorts``, and the values above
#: ``hotplugLargeMemoryThreshold`` (strictly more than 2 GiB of guest memory).
V2_TOTAL_PORTS: Final = 8
V2_MIN_FREE_PORTS: Final = 3
V2_LARGE_TOTAL_PORTS: Final = 16
V2_LARGE_MIN_FREE_PORTS: Final = 6
V2_LARGE_MEMORY_THRESHOLD: Final = 2 * 1024**3

# --------------------------------------------------------------------------------------------------
# Formats of the values KubeVirt objects carry: timestamps, quantities, versions
# --------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_VERSION = re.compile(r"v?(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?", re.ASCII)
_QUANTITY = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d{1,3})|(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE])?)", re.ASCII
)
_SUFFIX = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_MAX_QUANTITY = Decimal(2) ** 63


@functools.lru_cache(maxsize=8192)
def parse_timestamp(value: str) -> float:
    """RFC 3339 (with or without fractional seconds, ``Z`` or offset) → epoch seconds.

    The one timestamp parser of the project: the agent's records, the simulator's controllers and the
    tests read ``metav1.Time`` (whole seconds) and ``metav1.MicroTime`` values with it.

    Cached: objects created or updated in the same second share timestamps, and at 10,000 VMs this
    parse was ~14 % of the agent's sync CPU (bench/scale profile, docs/performance.md).

    Raises ``ValueError`` on anything else; the record parsers turn that into ``InvalidObject``.
    """
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"bad date in {value!r}")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"bad time in {value!r}")
    frac = float(m.group(7)) if m.group(7) else 0.0
    offset = 0
    tz = m.group(8)
    if tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"bad offset in {value!r}")
        offset = sign * (oh * 3600 + om * 60)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset + frac


def parse_quantity(value: str | int | float) -> int:
    """A Kubernetes resource quantity (``2Gi``, ``1024M``, ``1.5Gi``, ``1e9``, ``2147483648``) → int.

    Fractions are rounded up, as Kubernetes does for byte quantities. Raises ``ValueError``.
    """
    if isinstance(value, bool):
        raise ValueError("boolean is not a quantity")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        number = Decimal(repr(value))
    else:
        m = _QUANTITY.fullmatch(value.strip())
        if m is None:
            raise ValueError(f"not a quantity: {value!r}")
        try:
            number = Decimal(m.group(1))
            exponent, suffix = m.group(2), m.group(3)
            number = number.scaleb(int(exponent[1:])) if exponent else number * _SUFFIX[suffix]
        except (InvalidOperation, KeyError) as exc:  # pragma: no cover - regex guards it
            raise ValueError(f"not a quantity: {value!r}") from exc
    if number < 0 or number > _MAX_QUANTITY:
        raise ValueError(f"quantity out of range: {value!r}")
    integral = number.to_integral_value(rounding=ROUND_CEILING)
    return int(integral)


def parse_version(value: str) -> tuple[int, int, int] | None:
    """``v1.5.2`` / ``v1.6.0-rc.1`` / ``v1.9.0-beta.0-1264-gd923fdb`` → ``(major, minor, patch)``."""
    m = _VERSION.match(value.strip())
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
