"""Discovery documents (`/version`, `/api`, `/apis`, group-version resource lists), built from the registry.

Only the legacy (unaggregated) discovery format is served; kubectl and client-go fall back to it when
the aggregated `apik8s.io/v2` form is not offered.
"""

from __future__ import annotations

from typing import Any

from simulator.apiserver import openapi
from simulator.apiserver.errors import ApiError
from simulator.apiserver.registry import Registry, ResourceType

VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0-hotplug-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = []
    for name, versions in registry.groups().items():
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.groups().get(group)
    if not versions:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


def _resource_entry(r: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": sorted(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    return entry


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for r in types:
        resources.append(_resource_entry(r))
        if r.status_subresource:
            resources.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def document_for(registry: Registry, path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery or OpenAPI document at `path`; None when `path` is not a discovery path.

    A discovery path for a group or version that is not served is a 404, as on kube-apiserver.
    """
    p = path.rstrip("/") or "/"
    if p == "/version":
        return dict(VERSION_INFO)
    if p == "/api":
        return api_versions(server_address)
    if p == "/apis":
        return api_group_list(registry)
    if p == "/openapi/v3":
        return openapi.root_document(registry)
    if p.startswith("/openapi/v3/"):
        return _found(_openapi_document(registry, [s for s in p[len("/openapi/v3/") :].split("/") if s]))
    segs = [s for s in p.split("/") if s]
    match segs:
        case ["api", version]:
            return _found(api_resource_list(registry, "", version))
        case ["apis", group]:
            return _found(api_group(registry, group))
        case ["apis", group, version]:
            return _found(api_resource_list(registry, group, version))
    return None


def _openapi_document(registry: Registry, rest: list[str]) -> dict[str, Any] | None:
    match rest:
        case ["api", version]:
            return openapi.gv_document(registry, "", version)
        case ["apis", group, version]:
            return openapi.gv_document(registry, group, version)
    return None


def _found(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        raise ApiError(404, "the server could not find the requested resource", "NotFound")
    return doc
