"""Server-side printing (`meta.k8s.io/v1` Table) for kubectl, which asks for it on get and get -w.

Columns: Name, then the registry's printer columns, then Age (like CRD additionalPrinterColumns).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.apiserver.registry import ResourceType


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


def _lookup(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for key in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def columns(rt: ResourceType) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name of the object",
            "priority": 0,
        }
    ]
    for name, _path, typ in rt.columns:
        cols.append({"name": name, "type": typ, "format": "", "description": name, "priority": 0})
    cols.append({"name": "Age", "type": "date", "format": "", "description": "Creation time", "priority": 0})
    return cols


def row(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    cells: list[Any] = [meta.get("name", "")]
    cells.extend(_lookup(obj, path) for _n, path, _t in rt.columns)
    cells.append(meta.get("creationTimestamp"))
    return {
        "cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    }


def to_table(rt: ResourceType, items: list[dict[str, Any]], rv: int) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": columns(rt),
        "rows": [row(rt, o) for o in items],
    }
