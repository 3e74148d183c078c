"""Typed records for the KubeVirt objects the agent watches, parsed once from raw API dicts.

Why records and not dicts: the agent keeps every VM, VMI and VMIM of the cluster in memory (10,000 VMs
with a budget of ~8 KB of agent memory per VM), and the domain logic (``detect``, ``decide``, ``slots``,
``scheduler``) must be pure and total. So each raw object is validated and reduced *once*, at the
informer boundary, to a frozen, slotted record holding only the fields the agent needs, with repeated
strings interned (namespaces, node names, network names, phases repeat across thousands of objects) and
tuples instead of lists. Anything malformed raises :class:`InvalidObject` and nothing else, so an informer
can count and skip a bad object without a broad ``except``.

KubeVirt's strings and value formats come from :mod:`agent.kubevirt`, the agent's own label names from
:mod:`agent.names`; this module only reads objects with them.

No asyncio, aiohttp or kubernetes_asyncio here (docs/architecture.md, layering rules).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.kubevirt import (
    ANNOTATION_EVACUATION,
    ANNOTATION_PCI_SLOT_COUNT,
    ANNOTATION_PCI_TOPOLOGY_VERSION,
    ANNOTATION_PLACE_ON_ROOT_COMPLEX,
    ANNOTATION_WORKLOAD_UPDATE,
    COND_LIVE_MIGRATABLE,
    COND_MIGRATION_REQUIRED,
    COND_RESTART_REQUIRED,
    COND_SYNCHRONIZED,
    DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER,
    DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
    FINAL_PHASES,
    INFO_SOURCE_DOMAIN,
    INFO_SOURCE_MULTUS_STATUS,
    KUBEVIRT_EVACUATION_PREFIX,
    KUBEVIRT_WORKLOAD_UPDATE_PREFIX,
    MSG_NO_PCI_SLOTS,
    STATE_ABSENT,
    parse_quantity,
    parse_timestamp,
    parse_version,
)
from agent.names import (
    ANNOTATION_PRIORITY,
    LABEL_AUTO_MIGRATE,
    LABEL_MANAGED_BY,
    MANAGED_BY_VALUE,
    OPT_OUT_VALUE,
    PRIORITY_RANGE,
)

Binding = Literal["bridge", "sriov", "masquerade", "passt", "binding-plugin", "other"]
IfaceState = Literal["", "absent", "up", "down"]
NetworkKind = Literal["pod", "multus"]
Initiator = Literal["agent", "kubevirt", "other"]
Resource = Literal["VirtualMachine", "VirtualMachineInstance", "VirtualMachineInstanceMigration", "KubeVirt"]
Key = tuple[str, str]


class InvalidObject(Exception):  # noqa: N818 - name fixed by the design brief
    """A raw object that cannot be turned into a record. The only exception the parsers raise."""

    def __init__(self, resource: str, namespace: str, name: str, why: str) -> None:
        super().__init__(f"invalid {resource} {namespace}/{name}: {why}")
        self.resource = resource
        self.namespace = namespace
        self.name = name
        self.why = why


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkRef:
    """The ``spec.networks[]`` entry an interface is connected to.

    ``multus_name`` is the NAD reference (``[ns/]name``; empty for the pod network), which the network
    preflight resolves (``agent.preflight``). ``is_default`` marks a Multus network that replaces the
    pod network (never hot-plugged). Records are shared per distinct (name, default): a cluster has few.
    """

    kind: NetworkKind
    multus_name: str = ""
    is_default: bool = False

    @property
    def is_secondary_multus(self) -> bool:
        """The only networks KubeVirt hot plugs (evaluator.go iterates non-default multus networks)."""
        return self.kind == "multus" and not self.is_default


@dataclass(frozen=True, slots=True)
class Interface:
    """One ``spec.domain.devices.interfaces[]`` entry joined with its network."""

    name: str
    binding: Binding
    state: IfaceState
    network: NetworkRef

    @property
    def absent(self) -> bool:
        return self.state == STATE_ABSENT


@dataclass(frozen=True, slots=True)
class IfaceStatus:
    """One ``status.interfaces[]`` entry: which layers (pod, domain, guest) know the interface."""

    name: str
    info_source: frozenset[str]
    pod_interface_name: str = ""

    @property
    def in_domain(self) -> bool:
        return INFO_SOURCE_DOMAIN in self.info_source

    @property
    def in_pod(self) -> bool:
        return INFO_SOURCE_MULTUS_STATUS in self.info_source


@dataclass(frozen=True, slots=True)
class MigrationRequired:
    """The VMI ``MigrationRequired`` condition (KubeVirt ≥ 1.6)."""

    status: bool
    reason: str
    since: float | None


@dataclass(frozen=True, slots=True)
class VMRecord:
    """What the agent needs from a VirtualMachine."""

    key: Key
    uid: str
    resource_version: str
    generation: int
    opted_out: bool
    template_interfaces: tuple[Interface, ...]
    restart_required: bool
    #: ``spec.running`` when set; else derived from ``spec.runStrategy`` (None when neither says).
    running: bool | None
    #: ``kubevirt.io/pci-interface-slot-count`` from the VM or its template (KubeVirt 1.9).
    pci_slot_count: int | None = None
    #: ``hotplug-agent.io/priority`` (higher migrates first); 0 when absent or not an integer.
    priority: int = 0

    @property
    def namespace(self) -> str:
        return self.key[0]

    @property
    def name(self) -> str:
        return self.key[1]

    def template_interface(self, name: str) -> Interface | None:
        for iface in self.template_interfaces:
            if iface.name == name:
                return iface
        return None


@dataclass(frozen=True, slots=True)
class VMIRecord:
    """What the agent needs from a VirtualMachineInstance.

    Two records are equal when they hold the same facts, whatever their ``resource_version``: a VMI
    update that changes nothing held here (virt-handler's status heartbeats: guest OS info, IP
    addresses, timestamps) leaves the mirror's view as it was (``Mirror.vmi_changed``)."""

    key: Key
    uid: str
    resource_version: str = field(compare=False)
    node: str
    phase: str
    interfaces: tuple[Interface, ...]
    statuses: tuple[IfaceStatus, ...]
    live_migratable: bool | None = None
    live_migratable_reason: str = ""
    live_migratable_message: str = ""
    #: ``Synchronized=False`` whose message contains ``No more available PCI slots`` (observed exhaustion).
    sync_failed_pci: bool = False
    migration_required: MigrationRequired | None = None
    #: Guest memory (``spec.domain.memory.guest``, else ``resources.requests.memory``), bytes.
    memory_bytes: int | None = None
    hotplugged_volume_count: int = 0
    place_on_root_complex: bool = False
    pci_slot_count: int | None = None
    pci_topology_version: str = ""
    #: ``status.migrationState`` present and neither completed nor failed.
    migrating: bool = False
    #: ``status.migrationState.startTimestamp`` of that migration, when it has one.
    migration_started: float | None = None
    #: ``status.migrationState.sourceNode`` of that migration ("" when none): the node it leaves, which
    #: the VMI's own node stops being once it moved while the VMIM is not final yet.
    migration_source: str = ""
    creation_ts: float | None = None
    deletion_requested: bool = False
    #: ``status.evacuationNodeName``: KubeVirt is evacuating the VMI from that node ("" not).
    evacuation_node: str = ""

    @property
    def namespace(self) -> str:
        return self.key[0]

    @property
    def name(self) -> str:
        return self.key[1]

    def status_for(self, name: str) -> IfaceStatus | None:
        """The status entry of interface ``name`` (a linear scan: a VMI has a handful)."""
        for st in self.statuses:
            if st.name == name:
                return st
        return None

    def interface(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None


@dataclass(frozen=True, slots=True)
class VMIMRecord:
    """What the agent needs from a VirtualMachineInstanceMigration."""

    key: Key
    uid: str
    resource_version: str
    vmi_name: str
    phase: str
    phase_transitions: tuple[tuple[str, float], ...]
    creation_ts: float | None
    source_node: str | None
    initiator: Initiator
    deletion_requested: bool = False
    failure_reason: str = ""
    target_node: str | None = None

    @property
    def namespace(self) -> str:
        return self.key[0]

    @property
    def name(self) -> str:
        return self.key[1]

    @property
    def vmi_key(self) -> Key:
        return (self.key[0], self.vmi_name)

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    def phase_ts(self, phase: str) -> float | None:
        for ph, ts in self.phase_transitions:
            if ph == phase:
                return ts
        return None


@dataclass(frozen=True, slots=True)
class KubeVirtRecord:
    """What the agent needs from the KubeVirt CR: version, migration limits, workload updates."""

    key: Key
    version: tuple[int, int, int] | None
    parallel_per_cluster: int = DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER
    parallel_per_node: int = DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE
    workload_update_methods: frozenset[str] = frozenset()
    phase: str = ""
    vm_rollout_strategy: str = ""


# --------------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------------

_intern = sys.intern
_EMPTY: frozenset[str] = frozenset()
#: infoSource strings repeat ("domain, guest-agent, multus-status"): share one frozenset per distinct
#: string. Bounded so adversarial input cannot grow it.
_INFO_SOURCE_CACHE: dict[str, frozenset[str]] = {}
_INFO_SOURCE_CACHE_MAX = 256
_POD_NETWORK = NetworkRef(kind="pod")
#: One NetworkRef per distinct (NAD reference, default): shared by every interface that names it.
#: Bounded so adversarial input cannot grow it.
_NETREF_CACHE: dict[tuple[str, bool], NetworkRef] = {}
_NETREF_CACHE_MAX = 4096


class _Ctx:
    """Error context: which object we are parsing, so every InvalidObject names it."""

    __slots__ = ("name", "namespace", "resource")

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.namespace = ""
        self.name = ""

    def fail(self, why: str) -> InvalidObject:
        return InvalidObject(self.resource, self.namespace, self.name, why)


def _dict(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``parent[key]`` as a dict; absent or null → empty (Kubernetes omits empty structs)."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(f"{where}.{key} is not an object")
    return value


def _list(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(f"{where}.{key} is not a list")
    return value


def _str(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ctx.fail(f"{where}.{key} is not a string")
    return value


def _int(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = parent.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.fail(f"{where}.{key} is not an integer")
    return value


def _bool(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ctx.fail(f"{where}.{key} is not a boolean")
    return value


def _items(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """A list whose entries must all be objects."""
    out: list[Mapping[str, Any]] = []
    for i, item in enumerate(_list(ctx, parent, key, where)):
        if not isinstance(item, dict):
            raise ctx.fail(f"{where}.{key}[{i}] is not an object")
        out.append(item)
    return out


def _string_map(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """labels/annotations: a dict; only the values the agent reads are type-checked (cheaper)."""
    return _dict(ctx, parent, key, where)


def _map_value(ctx: _Ctx, mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ctx.fail(f"{where}[{key!r}] is not a string")
    return value


def _ts(ctx: _Ctx, parent: Mapping[str, Any], key: str, where: str) -> float | None:
    raw = _str(ctx, parent, key, where)
    if not raw:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise ctx.fail(f"{where}.{key}: {exc}") from None


def _metadata(ctx: _Ctx, obj: object, namespaced: bool = True) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Check the object and its metadata; returns ``(obj, metadata)`` and fills the error context."""
    if not isinstance(obj, dict):
        raise ctx.fail("object is not a JSON object")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ctx.fail("missing metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ctx.fail("missing metadata.name")
    ctx.name = name
    ns = meta.get("namespace")
    if ns is None and not namespaced:
        ns = ""
    if not isinstance(ns, str) or (namespaced and not ns):
        raise ctx.fail("missing metadata.namespace")
    ctx.namespace = ns
    return obj, meta


def _key(ctx: _Ctx) -> Key:
    return (_intern(ctx.namespace), _intern(ctx.name))


def _conditions(ctx: _Ctx, status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``status.conditions`` by type (the last entry of a type wins, like a map update)."""
    out: dict[str, Mapping[str, Any]] = {}
    for cond in _items(ctx, status, "conditions", "status"):
        ctype = _str(ctx, cond, "type", "status.conditions[]")
        _str(ctx, cond, "status", "status.conditions[]")
        _str(ctx, cond, "reason", "status.conditions[]")
        _str(ctx, cond, "message", "status.conditions[]")
        if ctype:
            out[ctype] = cond
    return out


def _cond_status(cond: Mapping[str, Any] | None) -> bool | None:
    """Condition status "True"/"False" → bool; "Unknown"/missing → None."""
    if cond is None:
        return None
    raw = cond.get("status")
    if raw == "True":
        return True
    if raw == "False":
        return False
    return None


def _binding(iface: Mapping[str, Any]) -> Binding:
    if "bridge" in iface:
        return "bridge"
    if "sriov" in iface:
        return "sriov"
    if "masquerade" in iface:
        return "masquerade"
    if "passt" in iface:
        return "passt"
    if "binding" in iface:
        return "binding-plugin"
    return "other"


def _network_ref(ctx: _Ctx, net: Mapping[str, Any], where: str) -> NetworkRef:
    if net.get("multus") is not None:
        multus = _dict(ctx, net, "multus", where)
        nad = _str(ctx, multus, "networkName", f"{where}.multus")
        default = _bool(ctx, multus, "default", f"{where}.multus")
        cached = _NETREF_CACHE.get((nad, default))
        if cached is not None:
            return cached
        ref = NetworkRef(kind="multus", multus_name=_intern(nad), is_default=default)
        if len(_NETREF_CACHE) < _NETREF_CACHE_MAX:
            _NETREF_CACHE[(nad, default)] = ref
        return ref
    if net.get("pod") is not None:
        _dict(ctx, net, "pod", where)
        return _POD_NETWORK
    raise ctx.fail(f"{where} has neither pod nor multus source")


_STATES: dict[str, IfaceState] = {"": "", "absent": "absent", "up": "up", "down": "down"}


def _interfaces(ctx: _Ctx, spec: Mapping[str, Any], where: str) -> tuple[Interface, ...]:
    """Join ``domain.devices.interfaces`` with ``networks`` by name."""
    networks: dict[str, NetworkRef] = {}
    for i, raw_net in enumerate(_items(ctx, spec, "networks", where)):
        nwhere = f"{where}.networks[{i}]"
        name = _str(ctx, raw_net, "name", nwhere)
        if not name:
            raise ctx.fail(f"{nwhere} has no name")
        if name in networks:
            raise ctx.fail(f"duplicate network {name!r}")
        networks[name] = _network_ref(ctx, raw_net, nwhere)
    devices = _dict(ctx, _dict(ctx, spec, "domain", where), "devices", f"{where}.domain")
    out: list[Interface] = []
    seen: set[str] = set()
    for i, raw in enumerate(_items(ctx, devices, "interfaces", f"{where}.domain.devices")):
        iwhere = f"{where}.domain.devices.interfaces[{i}]"
        name = _str(ctx, raw, "name", iwhere)
        if not name:
            raise ctx.fail(f"{iwhere} has no name")
        if name in seen:
            raise ctx.fail(f"duplicate interface {name!r}")
        seen.add(name)
        net = networks.get(name)
        if net is None:
            raise ctx.fail(f"interface {name!r} has no matching network")
        state_raw = _str(ctx, raw, "state", iwhere)
        state = _STATES.get(state_raw)
        if state is None:
            raise ctx.fail(f"interface {name!r} has unsupported state {state_raw!r}")
        out.append(Interface(name=_intern(name), binding=_binding(raw), state=state, network=net))
    return tuple(out)


def _info_source(raw: str) -> frozenset[str]:
    cached = _INFO_SOURCE_CACHE.get(raw)
    if cached is not None:
        return cached
    parts = frozenset(_intern(p.strip()) for p in raw.split(",") if p.strip()) if raw else _EMPTY
    if len(_INFO_SOURCE_CACHE) < _INFO_SOURCE_CACHE_MAX:
        _INFO_SOURCE_CACHE[raw] = parts
    return parts


def _optional_int_annotation(ctx: _Ctx, annotations: Mapping[str, Any], key: str) -> int | None:
    raw = _map_value(ctx, annotations, key, "metadata.annotations")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise ctx.fail(f"annotation {key} is not a small non-negative integer: {raw!r}")
    return int(raw)


# --------------------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------------------


def parse_vm(obj: object) -> VMRecord:
    """VirtualMachine → :class:`VMRecord`. Raises :class:`InvalidObject` only."""
    ctx = _Ctx("VirtualMachine")
    obj, meta = _metadata(ctx, obj)
    labels = _string_map(ctx, meta, "labels", "metadata")
    annotations = _string_map(ctx, meta, "annotations", "metadata")
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    template = _dict(ctx, spec, "template", "spec")
    tmeta = _dict(ctx, template, "metadata", "spec.template")
    tannotations = _string_map(ctx, tmeta, "annotations", "spec.template.metadata")
    tspec = _dict(ctx, template, "spec", "spec.template")

    # The opt-out is a label (selectable) or, the way users also write it, an annotation: both count.
    opt = _map_value(ctx, labels, LABEL_AUTO_MIGRATE, "metadata.labels")
    opt_annotation = _map_value(ctx, annotations, LABEL_AUTO_MIGRATE, "metadata.annotations")
    running_raw = spec.get("running")
    running: bool | None
    if running_raw is not None:
        if not isinstance(running_raw, bool):
            raise ctx.fail("spec.running is not a boolean")
        running = running_raw
    else:
        strategy = _str(ctx, spec, "runStrategy", "spec")
        running = {"Always": True, "RerunOnFailure": True, "Halted": False, "Once": True}.get(strategy)
    conds = _conditions(ctx, status)
    slot_count = _optional_int_annotation(ctx, annotations, ANNOTATION_PCI_SLOT_COUNT)
    if slot_count is None:
        slot_count = _optional_int_annotation(ctx, tannotations, ANNOTATION_PCI_SLOT_COUNT)
    return VMRecord(
        key=_key(ctx),
        uid=_str(ctx, meta, "uid", "metadata"),
        resource_version=_str(ctx, meta, "resourceVersion", "metadata"),
        generation=_int(ctx, meta, "generation", "metadata", 0),
        opted_out=any(v is not None and v.strip().lower() == OPT_OUT_VALUE for v in (opt, opt_annotation)),
        template_interfaces=_interfaces(ctx, tspec, "spec.template.spec"),
        restart_required=_cond_status(conds.get(COND_RESTART_REQUIRED)) is True,
        running=running,
        pci_slot_count=slot_count,
        priority=_priority(_map_value(ctx, annotations, ANNOTATION_PRIORITY, "metadata.annotations")),
    )


def _priority(raw: str | None) -> int:
    """A user's annotation: lenient (a typo must not hide the VM from the agent), clamped."""
    try:
        value = int((raw or "0").strip())
    except ValueError:
        return 0
    low, high = PRIORITY_RANGE
    return max(low, min(high, value))


def _memory_bytes(ctx: _Ctx, domain: Mapping[str, Any]) -> int | None:
    memory = _dict(ctx, domain, "memory", "spec.domain")
    raw = memory.get("guest")
    if raw is None:
        requests = _dict(ctx, _dict(ctx, domain, "resources", "spec.domain"), "requests", "resources")
        raw = requests.get("memory")
    if raw is None:
        return None
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise ctx.fail("guest memory is not a quantity")
    try:
        return parse_quantity(raw)
    except ValueError as exc:
        raise ctx.fail(f"guest memory: {exc}") from None


def parse_vmi(obj: object) -> VMIRecord:
    """VirtualMachineInstance → :class:`VMIRecord`. Raises :class:`InvalidObject` only.

    Status entries without a name (guest-agent-only interfaces) are skipped; a duplicate status
    name keeps the first entry (status is written by controllers, not users; dropping the whole VMI
    for it would hide it from the agent).
    """
    ctx = _Ctx("VirtualMachineInstance")
    obj, meta = _metadata(ctx, obj)
    annotations = _string_map(ctx, meta, "annotations", "metadata")
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    domain = _dict(ctx, spec, "domain", "spec")
    interfaces = _interfaces(ctx, spec, "spec")

    statuses: list[IfaceStatus] = []
    seen: set[str] = set()
    for raw in _items(ctx, status, "interfaces", "status"):
        name = _str(ctx, raw, "name", "status.interfaces[]")
        info = _str(ctx, raw, "infoSource", "status.interfaces[]")
        pod_iface = _str(ctx, raw, "podInterfaceName", "status.interfaces[]")
        if not name or name in seen:
            continue
        seen.add(name)
        statuses.append(
            IfaceStatus(name=_intern(name), info_source=_info_source(info), pod_interface_name=pod_iface)
        )

    conds = _conditions(ctx, status)
    lm = conds.get(COND_LIVE_MIGRATABLE)
    sync = conds.get(COND_SYNCHRONIZED)
    sync_failed_pci = (
        sync is not None
        and _cond_status(sync) is False
        and MSG_NO_PCI_SLOTS in _str(ctx, sync, "message", "status.conditions[]")
    )
    mr_cond = conds.get(COND_MIGRATION_REQUIRED)
    migration_required: MigrationRequired | None = None
    if mr_cond is not None:
        mr_status = _cond_status(mr_cond)
        if mr_status is not None:
            migration_required = MigrationRequired(
                status=mr_status,
                reason=_intern(_str(ctx, mr_cond, "reason", "status.conditions[]")),
                since=_ts(ctx, mr_cond, "lastTransitionTime", "status.conditions[]"),
            )

    mstate_raw = status.get("migrationState")
    migrating = False
    migration_started: float | None = None
    migration_source = ""
    if mstate_raw is not None:
        mstate = _dict(ctx, status, "migrationState", "status")
        completed = _bool(ctx, mstate, "completed", "status.migrationState")
        failed = _bool(ctx, mstate, "failed", "status.migrationState")
        migrating = bool(mstate) and not completed and not failed
        if migrating:
            migration_source = _intern(_str(ctx, mstate, "sourceNode", "status.migrationState"))
        raw_start = mstate.get("startTimestamp") if migrating else None
        if isinstance(raw_start, str) and raw_start:
            # Only bounds a wait: a malformed value means "unknown", not an unreadable VMI.
            with contextlib.suppress(ValueError):
                migration_started = parse_timestamp(raw_start)

    hotplugged = 0
    for vs in _items(ctx, status, "volumeStatus", "status"):
        if vs.get("hotplugVolume") is not None:
            hotplugged += 1

    root_complex = _map_value(ctx, annotations, ANNOTATION_PLACE_ON_ROOT_COMPLEX, "metadata.annotations")
    topo = _map_value(ctx, annotations, ANNOTATION_PCI_TOPOLOGY_VERSION, "metadata.annotations") or ""
    return VMIRecord(
        key=_key(ctx),
        uid=_str(ctx, meta, "uid", "metadata"),
        resource_version=_str(ctx, meta, "resourceVersion", "metadata"),
        node=_intern(_str(ctx, status, "nodeName", "status")),
        phase=_intern(_str(ctx, status, "phase", "status")),
        interfaces=interfaces,
        statuses=tuple(statuses),
        live_migratable=_cond_status(lm),
        live_migratable_reason=_intern(_str(ctx, lm, "reason", "status.conditions[]")) if lm else "",
        live_migratable_message=_str(ctx, lm, "message", "status.conditions[]") if lm else "",
        sync_failed_pci=sync_failed_pci,
        migration_required=migration_required,
        memory_bytes=_memory_bytes(ctx, domain),
        hotplugged_volume_count=hotplugged,
        place_on_root_complex=root_complex is not None and root_complex.strip().lower() == "true",
        pci_slot_count=_optional_int_annotation(ctx, annotations, ANNOTATION_PCI_SLOT_COUNT),
        pci_topology_version=_intern(topo),
        migrating=migrating,
        migration_started=migration_started,
        migration_source=migration_source,
        creation_ts=_ts(ctx, meta, "creationTimestamp", "metadata"),
        deletion_requested=meta.get("deletionTimestamp") is not None,
        evacuation_node=_intern(_str(ctx, status, "evacuationNodeName", "status")),
    )


def _initiator(labels: Mapping[str, Any], annotations: Mapping[str, Any], generate_name: str) -> Initiator:
    """Who created a VMIM: the agent (our label), KubeVirt (workload updater / evacuation) or other.

    ``kubevirt-migrate-vm-`` (virtctl migrate) is a user action, hence ``other``.
    """
    if labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE:
        return "agent"
    if ANNOTATION_WORKLOAD_UPDATE in annotations or ANNOTATION_EVACUATION in annotations:
        return "kubevirt"
    if generate_name.startswith((KUBEVIRT_WORKLOAD_UPDATE_PREFIX, KUBEVIRT_EVACUATION_PREFIX)):
        return "kubevirt"
    return "other"


def parse_vmim(obj: object) -> VMIMRecord:
    """VirtualMachineInstanceMigration → :class:`VMIMRecord`. Raises :class:`InvalidObject` only."""
    ctx = _Ctx("VirtualMachineInstanceMigration")
    obj, meta = _metadata(ctx, obj)
    labels = _string_map(ctx, meta, "labels", "metadata")
    annotations = _string_map(ctx, meta, "annotations", "metadata")
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    vmi_name = _str(ctx, spec, "vmiName", "spec")
    if not vmi_name:
        raise ctx.fail("missing spec.vmiName")
    transitions: list[tuple[str, float]] = []
    for tr in _items(ctx, status, "phaseTransitionTimestamps", "status"):
        ph = _str(ctx, tr, "phase", "status.phaseTransitionTimestamps[]")
        ts = _ts(ctx, tr, "phaseTransitionTimestamp", "status.phaseTransitionTimestamps[]")
        if ts is not None:
            transitions.append((_intern(ph), ts))
    mstate = _dict(ctx, status, "migrationState", "status")
    source = _str(ctx, mstate, "sourceNode", "status.migrationState")
    target = _str(ctx, mstate, "targetNode", "status.migrationState")
    failure = _str(ctx, mstate, "failureReason", "status.migrationState")
    generate_name = _str(ctx, meta, "generateName", "metadata")
    return VMIMRecord(
        key=_key(ctx),
        uid=_str(ctx, meta, "uid", "metadata"),
        resource_version=_str(ctx, meta, "resourceVersion", "metadata"),
        vmi_name=_intern(vmi_name),
        phase=_intern(_str(ctx, status, "phase", "status")),
        phase_transitions=tuple(transitions),
        creation_ts=_ts(ctx, meta, "creationTimestamp", "metadata"),
        source_node=_intern(source) if source else None,
        initiator=_initiator(labels, annotations, generate_name),
        deletion_requested=meta.get("deletionTimestamp") is not None,
        failure_reason=failure,
        target_node=_intern(target) if target else None,
    )


def parse_kubevirt(obj: object) -> KubeVirtRecord:
    """KubeVirt CR → :class:`KubeVirtRecord`. Raises :class:`InvalidObject` only.

    The version comes from ``status.observedKubeVirtVersion`` (what is deployed), falling back to
    ``status.targetKubeVirtVersion``; unparsable → ``None`` (the agent then assumes the oldest model).
    """
    ctx = _Ctx("KubeVirt")
    obj, _meta = _metadata(ctx, obj, namespaced=False)
    spec = _dict(ctx, obj, "spec", "")
    status = _dict(ctx, obj, "status", "")
    config = _dict(ctx, spec, "configuration", "spec")
    migrations = _dict(ctx, config, "migrations", "spec.configuration")
    per_cluster = _int(
        ctx, migrations, "parallelMigrationsPerCluster", "migrations", DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER
    )
    per_node = _int(
        ctx,
        migrations,
        "parallelOutboundMigrationsPerNode",
        "migrations",
        DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
    )
    if per_cluster < 0 or per_node < 0:
        raise ctx.fail("negative migration limit")
    strategy = _dict(ctx, spec, "workloadUpdateStrategy", "spec")
    methods: list[str] = []
    for i, method in enumerate(_list(ctx, strategy, "workloadUpdateMethods", "spec.workloadUpdateStrategy")):
        if not isinstance(method, str):
            raise ctx.fail(f"spec.workloadUpdateStrategy.workloadUpdateMethods[{i}] is not a string")
        methods.append(_intern(method))
    raw_version = _str(ctx, status, "observedKubeVirtVersion", "status") or _str(
        ctx, status, "targetKubeVirtVersion", "status"
    )
    return KubeVirtRecord(
        key=_key(ctx),
        version=parse_version(raw_version) if raw_version else None,
        parallel_per_cluster=per_cluster,
        parallel_per_node=per_node,
        workload_update_methods=frozenset(methods),
        phase=_intern(_str(ctx, status, "phase", "status")),
        vm_rollout_strategy=_intern(_str(ctx, config, "vmRolloutStrategy", "spec.configuration")),
    )
