"""Server-side printing (`meta.k8s.io/v1` Table) for kubectl, which asks for it on get and get -w.

Columns: Name, then the registry's printer columns, then Age (like CRD additionalPrinterColumns).
Events (core/v1 and events.k8s.io/v1) have kube-apiserver's own printer instead, so ``kubectl get
events`` shows LAST SEEN, TYPE, REASON, OBJECT, MESSAGE as against a real cluster.
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
    """apimachinery's ``translateTimestampSince`` for Time (seconds) and MicroTime (microseconds)."""
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - when).total_seconds())


# kube-apiserver's Event printer (pkg/printers/internalversion, printEvent): the server sends every
# column, kubectl shows those of priority 0 unless -o wide.
_EVENT_COLUMNS: list[tuple[str, int, str, str]] = [
    ("Last Seen", 0, "", "The time at which the most recent occurrence of this event was recorded."),
    ("Type", 0, "", "Type of this event (Normal, Warning), new types could be added in the future"),
    (
        "Reason",
        0,
        "",
        "This should be a short, machine understandable string that gives the reason for the transition "
        "into the object's current status.",
    ),
    ("Object", 0, "", "The object that this event is about."),
    (
        "Subobject",
        1,
        "",
        "If referring to a piece of an object instead of an entire object, this string should contain a "
        "valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    ("Source", 1, "", "The component reporting this event. Should be a short machine understandable string."),
    ("Message", 0, "", "A human-readable description of the status of this operation."),
    (
        "First Seen",
        1,
        "",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    ("Count", 1, "", "The number of times this event has occurred."),
    ("Name", 1, "name", NAME_COLUMN_DESCRIPTION),
]


def _core_event(obj: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 field names (the real server prints both with one printer)."""
    if obj.get("apiVersion") != "events.k8s.io/v1":
        return obj
    return {
        "metadata": obj.get("metadata") or {},
        "involvedObject": obj.get("regarding") or {},
        "message": obj.get("note", ""),
        "reason": obj.get("reason", ""),
        "type": obj.get("type", ""),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "source": obj.get("deprecatedSource") or {},
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _event_cells(raw: dict[str, Any]) -> list[Any]:
    e = _core_event(raw)
    first = _age(e.get("firstTimestamp")) if e.get("firstTimestamp") else _age(e.get("eventTime"))
    last = _age(e.get("lastTimestamp")) if e.get("lastTimestamp") else first
    count = e.get("count") or 0
    series = e.get("series")
    if isinstance(series, dict):
        last = _age(series.get("lastObservedTime"))
        count = series.get("count") or 0
    elif not count:
        count = 1  # singleton events of the new API have no count
    involved = e.get("involvedObject") or {}
    kind, name = str(involved.get("kind", "")).lower(), involved.get("name", "")
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent") or ""
    instance = source.get("host") or e.get("reportingInstance") or ""
    shown_source = "<unknown>" if not component else f"{component}, {instance}" if instance else component
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        f"{kind}/{name}" if name else kind,
        involved.get("fieldPath", ""),
        shown_source,
        str(e.get("message", "")).strip(),
        first,
        int(count),
        (e.get("metadata") or {}).get("name", ""),
    ]


def columns(rt: ResourceType) -> list[dict[str, Any]]:
    if rt.kind == "Event":
        return [
            {"name": n, "type": "string", "format": f, "description": d, "priority": p}
            for n, p, f, d in _EVENT_COLUMNS
        ]
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
    if rt.kind == "Event":
        cells = _event_cells(obj)
    else:
        cells = [meta.get("name", "")]
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
