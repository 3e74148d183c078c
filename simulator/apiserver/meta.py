"""Per-object rules the real registry strategies apply: defaulting, system metadata, generation.

Kept apart from the store so the rules read like the Kubernetes strategies they imitate.
"""

from __future__ import annotations

import pickle
import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from simulator.apiserver.errors import ApiError, invalid
from simulator.apiserver.registry import GenerationPolicy, ResourceType

#: Same alphabet as apimachinery's `utilrand.String` (no vowels, no confusable characters).
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

#: Metadata fields owned by the server: clients cannot change them through update or patch.
SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
)


def clone(value: Any) -> Any:
    """Deep copy of a JSON value.

    A pickle round trip of plain dicts/lists/strings is ~4x faster than `copy.deepcopy` or a recursive
    copy; the data never leaves the process (no untrusted input is unpickled).
    """
    return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def shallow_copy(obj: dict[str, Any]) -> dict[str, Any]:
    """A new top level and a new `metadata`; everything else shared with `obj`.

    Stored objects are never mutated, so new versions can share unchanged subtrees with old ones;
    only the top level and metadata are written when an object is prepared for storage.
    """
    return {**obj, "metadata": dict(obj.get("metadata") or {})}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(_ALPHANUMS) for _ in range(n))


def validate_name(rtype: ResourceType, name: str) -> None:
    pattern = _DNS1123_LABEL if rtype.plural == "namespaces" else _DNS1123_SUBDOMAIN
    if len(name) > 253 or not pattern.match(name):
        raise invalid(
            rtype.group,
            rtype.kind,
            name,
            "metadata.name",
            f'"{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        )


def check_type_meta(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """Reject a body of another kind and fill in missing kind/apiVersion.

    Built-ins fail in the decoder (400); custom resources fail validation (422), as on a real server.
    """
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    # The storage version is accepted too: patches and retries work on stored (storage-version) objects.
    if api_version and api_version not in (rtype.api_version, rtype.storage_api_version):
        if not rtype.builtin:
            name = str((obj.get("metadata") or {}).get("name", ""))
            raise invalid(
                rtype.group, rtype.kind, name, "apiVersion", f'"{api_version}": must be {rtype.api_version}'
            )
        raise ApiError(
            400,
            f"the API version in the data ({api_version}) does not match the expected API version "
            f"({rtype.api_version})",
        )
    if kind and kind != rtype.kind:
        if not rtype.builtin:
            name = str((obj.get("metadata") or {}).get("name", ""))
            raise invalid(rtype.group, rtype.kind, name, "kind", f'"{kind}": must be {rtype.kind}')
        raise ApiError(400, f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")
    obj["kind"] = rtype.kind
    obj["apiVersion"] = rtype.storage_api_version


def as_version(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object as served at `rtype`'s version (KubeVirt's versions convert with `None`
    strategy: only apiVersion changes). Returns `obj` itself when no conversion is needed."""
    if not rtype.converts or obj.get("apiVersion") == rtype.api_version:
        return obj
    return {**obj, "apiVersion": rtype.api_version}


def _without(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def next_generation(rtype: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> int | None:
    """The generation `new` gets when replacing `old`, per the resource's policy."""
    current = old.get("metadata", {}).get("generation")
    if rtype.generation is GenerationPolicy.NONE:
        return current if isinstance(current, int) else None
    ignored = ("metadata", "status") if rtype.generation is GenerationPolicy.SPEC else ("metadata",)
    base = current if isinstance(current, int) else 1
    return base + 1 if _without(old, ignored) != _without(new, ignored) else base


def drop_empty_maps(meta: dict[str, Any]) -> None:
    """Empty or null ``labels`` and ``annotations`` are not stored: ``ObjectMeta`` marshals them
    ``omitempty``, so kube-apiserver answers without them (tests/conformance shows it)."""
    for field in ("labels", "annotations"):
        if field in meta and (meta[field] is None or meta[field] == {}):
            del meta[field]


def prepare_create(rtype: ResourceType, obj: dict[str, Any], namespace: str, name: str) -> None:
    """Fill the system metadata of a new object (in place)."""
    meta = obj["metadata"]
    drop_empty_maps(meta)
    meta["name"] = name
    if rtype.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    for f in (*SYSTEM_FIELDS, "resourceVersion"):
        meta.pop(f, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    if rtype.generation is not GenerationPolicy.NONE:
        meta["generation"] = 1
    if rtype.status_subresource and not rtype.builtin:
        # CRDs with a status subresource drop status on create (customresource strategy).
        obj.pop("status", None)
    if rtype.plural == "namespaces" and not rtype.group:
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        _label_namespace(meta)


#: The label kube-apiserver keeps on every Namespace (its name), so selectors can pick namespaces.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _label_namespace(meta: dict[str, Any]) -> None:
    meta["labels"] = {**(meta.get("labels") or {}), NAMESPACE_NAME_LABEL: meta["name"]}


def _keep_status(old: dict[str, Any], new: dict[str, Any]) -> None:
    """A main-resource write of a kind with a status subresource keeps the stored status."""
    if "status" in old:
        new["status"] = old["status"]
    else:
        new.pop("status", None)


def prepare_update(
    rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str
) -> dict[str, Any]:
    """Return the object to store when `new` replaces `old` (main resource or `/status`)."""
    if subresource == "status":
        # Status strategy: copy the old object and take only the new status.
        out = shallow_copy(old)
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        return out
    raw_meta = new.get("metadata") or {}
    if not isinstance(raw_meta, dict):
        raise invalid(rtype.group, rtype.kind, old["metadata"]["name"], "metadata", "must be an object")
    new_meta = dict(raw_meta)
    old_meta = old["metadata"]
    for f in (*SYSTEM_FIELDS, "name", "namespace"):
        if f in old_meta:
            new_meta[f] = old_meta[f]
        else:
            new_meta.pop(f, None)
    drop_empty_maps(new_meta)
    new["metadata"] = new_meta
    if rtype.plural == "namespaces" and not rtype.group:
        _label_namespace(new_meta)
    if rtype.status_subresource:
        _keep_status(old, new)
    old_finalizers = set(old_meta.get("finalizers") or [])
    added = [f for f in new_meta.get("finalizers") or [] if f not in old_finalizers]
    if old_meta.get("deletionTimestamp") and added:
        raise invalid(
            rtype.group,
            rtype.kind,
            old_meta["name"],
            "metadata.finalizers",
            "no new finalizers can be added if the object is being deleted, found new finalizers "
            + "[]string{"
            + ", ".join(f'"{f}"' for f in added)
            + "}",
            cause="FieldValueForbidden",
        )
    generation = next_generation(rtype, old, new)
    if generation is not None:
        new_meta["generation"] = generation
    return new
