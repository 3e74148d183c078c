"""URL → (resource, namespace, name, subresource, verb), the way the real server's path router reads them."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.apiserver.errors import ApiError
from simulator.apiserver.registry import Registry, ResourceType

_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str | None  # None: all namespaces (list/watch) or a cluster-scoped resource
    name: str | None
    subresource: str


def parse_resource_path(registry: Registry, path: str) -> Target | None:
    """Parse `/api/v1/...` or `/apis/<g>/<v>/...`; None when the path names no resource."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 3 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    namespace: str | None = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES)
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise ApiError(404, "the server could not find the requested resource", "NotFound")
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    rtype = registry.lookup(group, version, plural)
    if rtype is None or (namespace is not None and not rtype.namespaced):
        raise ApiError(404, "the server could not find the requested resource", "NotFound")
    if rtype.namespaced and namespace is None and name is not None:
        raise ApiError(404, "the server could not find the requested resource", "NotFound")
    return Target(rtype, namespace, name, sub)


def verb_for(method: str, target: Target, watch: bool) -> str:
    if method == "GET":
        if target.name is not None:
            return "get"
        return "watch" if watch else "list"
    if method == "POST" and target.name is None:
        return "create"
    if method == "PUT" and target.name is not None:
        return "update"
    if method == "PATCH" and target.name is not None:
        return "patch"
    if method == "DELETE":
        return "delete" if target.name is not None else "deletecollection"
    raise ApiError(
        405, f"the server does not allow this method on the requested resource ({method})", "MethodNotAllowed"
    )
