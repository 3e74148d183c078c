"""The validation a real server applies before storing: what its decoder refuses (400) and the
ObjectMeta checks every kind gets (422).  Kind-specific schema validation is out of scope (the CRDs'
schemas are open), except the timestamp formats of the built-ins the simulation uses.
"""

from __future__ import annotations

import re
from typing import Any

from simulator.apiserver.errors import ApiError, invalid
from simulator.apiserver.registry import ResourceType

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
_MAX_ANNOTATIONS_BYTES = 256 * 1024

TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

#: Timestamp fields of built-ins: (group, kind) → {dotted path: layout}.
_TIME_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("coordination.k8s.io", "Lease"): {
        "spec.acquireTime": MICRO_TIME_LAYOUT,
        "spec.renewTime": MICRO_TIME_LAYOUT,
    },
    ("events.k8s.io", "Event"): {
        "eventTime": MICRO_TIME_LAYOUT,
        "deprecatedFirstTimestamp": TIME_LAYOUT,
        "deprecatedLastTimestamp": TIME_LAYOUT,
        "series.lastObservedTime": MICRO_TIME_LAYOUT,
    },
    ("", "Event"): {
        "eventTime": MICRO_TIME_LAYOUT,
        "firstTimestamp": TIME_LAYOUT,
        "lastTimestamp": TIME_LAYOUT,
        "series.lastObservedTime": MICRO_TIME_LAYOUT,
    },
}


def _decode_error(rt: ResourceType, detail: str) -> ApiError:
    return ApiError(400, f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {detail}')


def _qualified_name_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63 or not _NAME_PART.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return None


def _get(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _validate_string_map(rt: ResourceType, meta: dict[str, Any], field: str, name: str) -> None:
    """``metadata.labels`` or ``metadata.annotations``: a map of qualified names to strings (labels: valid
    label values)."""
    value = meta.get(field)
    if value is None:
        return
    if not isinstance(value, dict):
        raise _decode_error(rt, f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field}")
    for k, v in value.items():
        if not isinstance(v, str):
            raise _decode_error(
                rt,
                f"json: cannot unmarshal {type(v).__name__} into Go struct field "
                f"ObjectMeta.metadata.{field} of type string",
            )
        problem = _qualified_name_error(k)
        if problem:
            raise invalid(rt.group, rt.kind, name, f"metadata.{field}", f'"{k}": {problem}')
        if field == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
            raise invalid(
                rt.group,
                rt.kind,
                name,
                "metadata.labels",
                f'"{v}": a valid label must be an empty string or consist of alphanumeric characters, '
                "'-', '_' or '.', and must start and end with an alphanumeric character",
            )


def validate_object(rt: ResourceType, obj: dict[str, Any]) -> None:
    """400 for what the decoder refuses (wrong JSON types, timestamp formats), 422 for bad metadata."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    for field in ("labels", "annotations"):
        _validate_string_map(rt, meta, field, name)
    annotations = meta.get("annotations") or {}
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
        raise invalid(
            rt.group,
            rt.kind,
            name,
            "metadata.annotations",
            "must have at most 262144 bytes",
            cause="FieldValueTooLong",
        )
    if rt.kind == "Event":
        _validate_event(rt, obj, name)
    for path, layout in _TIME_FIELDS.get((rt.group, rt.kind), {}).items():
        value = _get(obj, path)
        if value is None:
            continue
        pattern = _MICRO_TIME if layout == MICRO_TIME_LAYOUT else _TIME
        if not isinstance(value, str) or not pattern.match(value):
            raise _decode_error(rt, f'parsing time "{value}" as "{layout}": cannot parse')


def _validate_event(rt: ResourceType, obj: dict[str, Any], name: str) -> None:
    """The Event rules clients trip over: namespace agreement (core) and required fields (events.k8s.io)."""
    namespace = (obj.get("metadata") or {}).get("namespace", "")
    if rt.group == "":
        involved = obj.get("involvedObject") or {}
        inv_ns = involved.get("namespace") if isinstance(involved, dict) else None
        if inv_ns and namespace and inv_ns != namespace:
            raise invalid(
                rt.group,
                rt.kind,
                name,
                "involvedObject.namespace",
                f'"{inv_ns}": does not match event.namespace',
            )
        return
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(field):
            raise invalid(rt.group, rt.kind, name, field, "", cause="FieldValueRequired")
    regarding = obj.get("regarding") or {}
    reg_ns = regarding.get("namespace") if isinstance(regarding, dict) else None
    if reg_ns and namespace and reg_ns != namespace:
        raise invalid(
            rt.group, rt.kind, name, "regarding.namespace", f'"{reg_ns}": does not match event.namespace'
        )
