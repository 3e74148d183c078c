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
    """The discovery or OpenAPI document at `path`; None when `path` is not a discovery path."""
    reg = registry
    p = path.rstrip("/") or "/"
    if p == "/version":
        return dict(VERSION_INFO)
    if p == "/api":
        return api_versions(server_address)
    if p == "/apis":
        return api_group_list(reg)
    if p == "/openapi/v3":
        return openapi.root_document(reg)
    if p.startswith("/openapi/v3/"):
        rest = [s for s in p[len("/openapi/v3/") :].split("/") if s]
        doc = None
        if len(rest) == 2 and rest[0] == "api":
            doc = openapi.gv_document(reg, "", rest[1])
        elif len(rest) == 3 and rest[0] == "apis":
            doc = openapi.gv_document(reg, rest[1], rest[2])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return doc
    segs = [s for s in p.split("/") if s]
    if len(segs) == 2 and segs[0] == "api":
        doc = api_resource_list(reg, "", segs[1])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return doc
    if len(segs) == 2 and segs[0] == "apis":
        doc = api_group(reg, segs[1])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return doc
    if len(segs) == 3 and segs[0] == "apis":
        doc = api_resource_list(reg, segs[1], segs[2])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return doc
    return None
