"""Server-side printing (`meta.k8s.io/v1` Table) for kubectl, which asks for it on get and get -w.

Columns: Name, then the registry's printer columns, then Age (like CRD additionalPrinterColumns).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulator.apiserver.registry import NAME_COLUMN_DESCRIPTION, Column, ResourceType


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept


_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*'([^']*)'\)\]|\[\*\]")


def json_path(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath subset CRD printer columns use (`.a.b`, `[0]`, `[*]`, `[?(@.k=='v')]`).

    Returns the first match or None, as the CRD table convertor prints the first result.
    """
    current: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return None
        pos = m.end()
        field, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for value in current:
            if field is not None and isinstance(value, dict) and field in value:
                nxt.append(value[field])
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                nxt.append(value[int(index)])
            elif fkey is not None and isinstance(value, list):
                nxt.extend(
                    item
                    for item in value
                    if isinstance(item, dict) and str(json_path(item, "." + fkey)) == fval
                )
            elif field is None and index is None and fkey is None and isinstance(value, list):
                nxt.extend(value)
        current = nxt
    return current[0] if current else None


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`, which the real server uses for CRD `date` columns."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any) -> str:
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - created).total_seconds())


def columns(rt: ResourceType) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_COLUMN_DESCRIPTION,
            "priority": 0,
        }
    ]
    for c in rt.columns:
        cols.append(
            {
                "name": c.name,
                "type": c.type,
                "format": "",
                "description": c.description,
                "priority": c.priority,
            }
        )
    return cols


def _cell(column: Column, obj: dict[str, Any]) -> Any:
    value = json_path(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        return _age(value)
    if column.type == "string" and not isinstance(value, str):
        return (
            json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
    return value


def row(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    cells: list[Any] = [meta.get("name", "")]
    cells.extend(_cell(c, obj) for c in rt.columns)
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
