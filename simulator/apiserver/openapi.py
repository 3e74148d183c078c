"""Minimal OpenAPI v3 documents: just enough for kubectl.

kubectl (1.27+) decides between server-side and client-side field validation by looking for the
`fieldValidation` query parameter on each kind's PATCH operation in `/openapi/v3/<group-version>`;
without it, it falls back to client-side validation, which needs a full `/openapi/v2` and fails.
The PATCH operation also lists its accepted content types: strategic merge is deliberately not
listed, so `kubectl apply` sends JSON merge patches for custom resources and uses its compiled-in
types for built-ins.  Schemas are open (`x-kubernetes-preserve-unknown-fields`), like hand-written CRDs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from simulator.apiserver.registry import Registry, ResourceType

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _gvk(r: ResourceType) -> list[dict[str, str]]:
    return [{"group": r.group, "version": r.version, "kind": r.kind}]


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def gv_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for r in types:
        ref = f"#/components/schemas/{r.group or 'core'}.{r.version}.{r.kind}"
        item = (
            f"{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}"
            if r.namespaced
            else f"{prefix}/{r.plural}/{{name}}"
        )
        body = {"content": {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES}, "required": True}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
        paths[item] = {
            "get": {
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": _gvk(r)[0],
                "responses": ok,
            },
            "patch": {
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": _gvk(r)[0],
                "parameters": [
                    _query("dryRun"),
                    _query("fieldManager"),
                    _query("fieldValidation"),
                    _query("force"),
                ],
                "requestBody": body,
                "responses": ok,
            },
        }
        schemas[ref.rsplit("/", 1)[1]] = {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": _gvk(r),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (hotplug-agent simulator)", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root_document(registry: Registry) -> dict[str, Any]:
    gvs = sorted({(r.group, r.version) for r in registry.resources})
    paths: dict[str, Any] = {}
    for group, version in gvs:
        doc = gv_document(registry, group, version)
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
