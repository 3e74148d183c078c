"""The resource table: one data-driven registry of every resource the embedded server serves.

Everything else (URL routing, discovery documents, generation and status-subresource rules,
strategic-merge acceptance) is derived from these rows, so adding a resource is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class GenerationPolicy(Enum):
    """How `metadata.generation` evolves, mirroring the real registry strategies."""

    #: Built-ins that never set generation (Namespace, Event, Lease, Node).
    NONE = "none"
    #: Bumped when anything but `metadata` and `status` changes (kinds with a status subresource).
    SPEC = "spec"
    #: Bumped when anything but `metadata` changes (CRDs without a status subresource, e.g. VMI).
    ALL_BUT_METADATA = "all-but-metadata"


ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True)
class ResourceType:
    """One served resource (group/version/plural) and the semantics the server applies to it."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    #: Built-in (non-CRD) types accept strategic merge patch; custom resources answer 415.
    builtin: bool = True
    generation: GenerationPolicy = GenerationPolicy.NONE
    verbs: tuple[str, ...] = ALL_VERBS
    #: Extra printer columns for `kubectl get` (name, JSON path as dotted keys, type).
    columns: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Unique key, `plural.group` like kubectl prints it (core resources: just the plural)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


KUBEVIRT_GROUP = "kubevirt.io"

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",), status_subresource=True),
    ResourceType("", "v1", "nodes", "node", "Node", False, ("no",), status_subresource=True),
    ResourceType("", "v1", "events", "event", "Event", True, ("ev",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",)),
    ResourceType(
        KUBEVIRT_GROUP,
        "v1",
        "virtualmachines",
        "virtualmachine",
        "VirtualMachine",
        True,
        ("vm", "vms"),
        ("all",),
        status_subresource=True,
        builtin=False,
        generation=GenerationPolicy.SPEC,
        columns=(
            ("Status", "status.printableStatus", "string"),
            ("Ready", "status.ready", "boolean"),
        ),
    ),
    ResourceType(
        KUBEVIRT_GROUP,
        "v1",
        "virtualmachineinstances",
        "virtualmachineinstance",
        "VirtualMachineInstance",
        True,
        ("vmi", "vmis"),
        ("all",),
        status_subresource=False,
        builtin=False,
        generation=GenerationPolicy.ALL_BUT_METADATA,
        columns=(
            ("Phase", "status.phase", "string"),
            ("NodeName", "status.nodeName", "string"),
        ),
    ),
    ResourceType(
        KUBEVIRT_GROUP,
        "v1",
        "virtualmachineinstancemigrations",
        "virtualmachineinstancemigration",
        "VirtualMachineInstanceMigration",
        True,
        ("vmim", "vmims"),
        ("all",),
        status_subresource=True,
        builtin=False,
        generation=GenerationPolicy.SPEC,
        columns=(
            ("Phase", "status.phase", "string"),
            ("VMI", "spec.vmiName", "string"),
        ),
    ),
    ResourceType(
        KUBEVIRT_GROUP,
        "v1",
        "kubevirts",
        "kubevirt",
        "KubeVirt",
        True,
        ("kv", "kvs"),
        status_subresource=True,
        builtin=False,
        generation=GenerationPolicy.SPEC,
        columns=(("Phase", "status.phase", "string"),),
    ),
)


class Registry:
    """Lookup tables over a resource list (group/version/plural → type, plural → types)."""

    def __init__(self, resources: tuple[ResourceType, ...] = RESOURCES) -> None:
        self.resources = resources
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {
            (r.group, r.version, r.plural): r for r in resources
        }
        self._by_key: dict[str, ResourceType] = {r.key: r for r in resources}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_key(self, key: str) -> ResourceType | None:
        return self._by_key.get(key)

    def resolve(self, name: str) -> ResourceType:
        """Resolve a plural, `plural.group` key, short name or kind (for the in-process store API)."""
        if name in self._by_key:
            return self._by_key[name]
        matches = [
            r for r in self.resources if name in (r.plural, r.singular, r.kind) or name in r.short_names
        ]
        # Prefer core over events.k8s.io for "events", like kubectl's preferred-version order.
        if not matches:
            raise KeyError(f"unknown resource {name!r}")
        return matches[0]

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions, excluding the core group."""
        out: dict[str, list[str]] = {}
        for r in self.resources:
            if r.group and r.version not in out.setdefault(r.group, []):
                out[r.group].append(r.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self.resources if r.group == group and r.version == version]
