"""The resource table: one data-driven registry of every resource the embedded server serves.

Built-in kinds are rows below; the KubeVirt kinds are read from the CRD manifests shipped in
`simulator/crds/` (the same files the real-control-plane tests install), so names, short names,
categories, versions, subresources and printer columns match the real server by construction.
URL routing, discovery, tables, generation and status rules are all derived from these rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum
from importlib import resources as importlib_resources
from typing import Any

import yaml


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
class Column:
    """A printer column (`kubectl get`): `json_path` is a CRD-style JSONPath, `type` an OpenAPI type."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


NAME_COLUMN_DESCRIPTION = "Name must be unique within a namespace."
AGE = Column("Age", ".metadata.creationTimestamp", "date", 0, "CreationTimestamp of the object.")


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
    #: Printer columns after Name, in order (Age included where it belongs).
    columns: tuple[Column, ...] = (AGE,)
    #: The version objects are stored in; other served versions convert on the way in and out.
    storage_version: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_api_version(self) -> str:
        v = self.storage_version or self.version
        return f"{self.group}/{v}" if self.group else v

    @property
    def converts(self) -> bool:
        """Objects served at this version differ from storage (only in apiVersion: no-op conversion)."""
        return bool(self.storage_version) and self.storage_version != self.version

    @property
    def key(self) -> str:
        """Storage key, `plural.group` like kubectl prints it (shared by all versions of a resource)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


BUILTINS: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("ns",),
        status_subresource=True,
        columns=(Column("Status", ".status.phase"), AGE),
    ),
    ResourceType("", "v1", "nodes", "node", "Node", False, ("no",), status_subresource=True),
    # virt-launcher pods: the SR-IOV VFs they hold on their nodes (the agent's capacity preflight).
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("po",),
        ("all",),
        status_subresource=True,
        columns=(Column("Status", ".status.phase"), Column("Node", ".spec.nodeName", priority=1), AGE),
    ),
    ResourceType("", "v1", "events", "event", "Event", True, ("ev",)),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        True,
        columns=(Column("Holder", ".spec.holderIdentity"), AGE),
    ),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",)),
    # KubeVirt keeps the VM spec a VMI started from in one (read by the RestartRequired rule).
    ResourceType(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        True,
        columns=(Column("Revision", ".revision", "integer"), AGE),
    ),
)


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kube-aware version order (v1 > v1beta2 > v1beta1 > v1alpha1 > other), as discovery sorts them."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (0, 0, 0)
    stage = {"alpha": 1, "beta": 2, None: 3}[m.group(2)]
    return (stage, int(m.group(1)), int(m.group(3) or 0))


def resources_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of an apiextensions.k8s.io/v1 CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    storage = next((v["name"] for v in spec["versions"] if v.get("storage")), versions[0]["name"])
    versions.sort(key=lambda v: _version_priority(v["name"]), reverse=True)
    out = []
    for v in versions:
        status = "status" in (v.get("subresources") or {})
        printer = v.get("additionalPrinterColumns")
        columns = (
            tuple(
                Column(
                    c["name"],
                    c["jsonPath"],
                    c.get("type", "string"),
                    int(c.get("priority", 0)),
                    c.get("description", ""),
                )
                for c in printer
            )
            if printer
            else (AGE,)
        )
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                singular=names.get("singular", names["kind"].lower()),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource=status,
                builtin=False,
                generation=GenerationPolicy.SPEC if status else GenerationPolicy.ALL_BUT_METADATA,
                columns=columns,
                storage_version=storage,
            )
        )
    return out


def load_crds(package: str = "simulator", folder: str = "crds") -> tuple[ResourceType, ...]:
    """Read every CRD manifest shipped as package data (`simulator/crds/*.yaml`)."""
    out: list[ResourceType] = []
    root = importlib_resources.files(package).joinpath(folder)
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(entry.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                out.extend(resources_from_crd(doc))
    return tuple(out)


RESOURCES: tuple[ResourceType, ...] = BUILTINS + load_crds()


class Registry:
    """Lookup tables over a resource list (group/version/plural → type, storage key → storage type)."""

    def __init__(self, resources: tuple[ResourceType, ...] = RESOURCES) -> None:
        self.resources = resources
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {
            (r.group, r.version, r.plural): r for r in resources
        }
        self._by_key: dict[str, ResourceType] = {}
        for r in resources:
            if not r.converts:
                self._by_key.setdefault(r.key, r)
        for r in resources:
            self._by_key.setdefault(r.key, replace(r, version=r.storage_version or r.version))

    @property
    def storage_types(self) -> list[ResourceType]:
        """One type per stored resource (its storage version)."""
        return list(self._by_key.values())

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_key(self, key: str) -> ResourceType | None:
        return self._by_key.get(key)

    def resolve(self, name: str) -> ResourceType:
        """Resolve a plural, `plural.group` key, short name or kind to the storage version's type.

        Ambiguous names (`events`) resolve to the core group, like kubectl's preference.
        """
        if name in self._by_key:
            return self._by_key[name]
        for r in self.storage_types:
            if name in (r.plural, r.singular, r.kind) or name in r.short_names:
                return r
        raise KeyError(f"unknown resource {name!r}")

    def groups(self) -> dict[str, list[str]]:
        """Group name → served versions (preferred first), excluding the core group."""
        out: dict[str, list[str]] = {}
        for r in self.resources:
            if r.group and r.version not in out.setdefault(r.group, []):
                out[r.group].append(r.version)
        for versions in out.values():
            versions.sort(key=_version_priority, reverse=True)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self.resources if r.group == group and r.version == version]
