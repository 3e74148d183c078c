"""`metadata.managedFields`: which manager last wrote which fields (approximation of server-side apply's
field tracking, for clients and tests that look for the entries).

Approximation: one entry per (manager, operation, subresource) holding the field set of the object
that manager last wrote (lists are atomic; no `k:`/`v:` keys), and fields are never taken away from
other managers.
"""

from __future__ import annotations

from typing import Any

from simulator.apiserver.meta import now_rfc3339
from simulator.apiserver.registry import ResourceType

#: Metadata fields a manager can own (the server-set ones are never tracked).
_OWNABLE_METADATA = ("labels", "annotations", "finalizers", "ownerReferences", "generateName")


def manager_from_user_agent(user_agent: str) -> str:
    """apiserver's default manager: the user agent up to the first '/', at most 128 characters."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {f"f:{k}": _fields(v) for k, v in value.items()}
    return {}


def field_set(obj: dict[str, Any], subresource: str) -> dict[str, Any]:
    if subresource == "status":
        return {"f:status": _fields(obj.get("status"))} if "status" in obj else {}
    out: dict[str, Any] = {}
    meta = obj.get("metadata") or {}
    owned_meta = {f"f:{k}": _fields(meta[k]) for k in _OWNABLE_METADATA if k in meta}
    if owned_meta:
        out["f:metadata"] = owned_meta
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            out[f"f:{key}"] = _fields(value)
    return out


def record(
    rt: ResourceType, obj: dict[str, Any], manager: str, subresource: str, operation: str = "Update"
) -> None:
    """Set (in place) `manager`'s entry (`Update` or `Apply`) in `obj.metadata.managedFields`."""
    meta = obj["metadata"]
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": rt.api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": field_set(obj, subresource),
    }
    if subresource:
        entry["subresource"] = subresource
    others = [
        e
        for e in meta.get("managedFields") or []
        if not (
            e.get("manager") == manager
            and e.get("operation") == operation
            and e.get("subresource", "") == subresource
        )
    ]
    meta["managedFields"] = [*others, entry]
