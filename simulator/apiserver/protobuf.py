"""Read the protobuf bodies kubectl sends for built-in kinds (``kubectl create namespace X``).

Why: kubectl's typed clients (the ``kubectl create <kind>`` generators) encode built-in kinds as
``application/vnd.kubernetes.protobuf`` and do not fall back to JSON on a 415 (measured with kubectl
1.32: ``Error from server (UnsupportedMediaType)``). A real API server reads them, so the sandbox must
too. JSON bodies (``kubectl create -f``, ``apply``, ``patch``, every custom resource) are untouched.

The body is Kubernetes' envelope (``k8s\\x00`` + ``runtime.Unknown{typeMeta, raw}``) around the object's
protobuf encoding, whose field numbers are those of ``k8s.io/api``'s ``generated.proto``. Only the kinds
listed in :data:`KINDS` are read, with the fields those messages have; a populated field this module
does not know is a 415 naming it, never silently dropped. Output is the object as JSON would carry it
(empty values left out, as ``omitempty`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

PROTOBUF: Final = "application/vnd.kubernetes.protobuf"
MAGIC: Final = b"k8s\x00"


class UnreadableProtobuf(ValueError):  # noqa: N818 - names what the client sent
    """The body is not a protobuf encoding this server can read; the message says what."""


# A message schema: field number → (JSON name, type); a type is "string", "int", "bool", "time",
# "map" (map<string,string>), a nested schema (dict), or ("repeated", type).
Schema = dict[int, tuple[str, Any]]

TIME: Final[Schema] = {1: ("seconds", "int"), 2: ("nanos", "int")}
OBJECT_META: Final[Schema] = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    4: ("selfLink", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    14: ("finalizers", ("repeated", "string")),
}
NAMESPACE: Final[Schema] = {
    1: ("metadata", OBJECT_META),
    2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
    3: ("status", {1: ("phase", "string")}),
}
#: (apiVersion, kind) → schema of the kinds whose protobuf bodies are read.
KINDS: Final[dict[tuple[str, str], Schema]] = {("v1", "Namespace"): NAMESPACE}
_UNKNOWN: Final[Schema] = {
    1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
    2: ("raw", "bytes"),
    3: ("contentEncoding", "string"),
    4: ("contentType", "string"),
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise UnreadableProtobuf("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise UnreadableProtobuf("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a message: varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise UnreadableProtobuf("truncated field")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, wire, buf[pos : pos + width]
            pos += width
        else:
            raise UnreadableProtobuf(f"unsupported wire type {wire}")


def _scalar(kind: str, wire: int, value: int | bytes, where: str) -> Any:
    if kind in ("string", "bytes"):
        if not isinstance(value, bytes):
            raise UnreadableProtobuf(f"{where}: expected a length-delimited field")
        return value.decode("utf-8") if kind == "string" else value
    if kind in ("int", "bool"):
        if not isinstance(value, int):
            raise UnreadableProtobuf(f"{where}: expected a varint")
        if kind == "bool":
            return bool(value)
        return value - (1 << 64) if value >= 1 << 63 else value
    raise AssertionError(kind)


def _time(buf: bytes, where: str) -> str | None:
    parts = decode_message(buf, TIME, where)
    if not parts:
        return None
    return datetime.fromtimestamp(int(parts.get("seconds", 0)), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(kind: Any, wire: int, value: int | bytes, where: str) -> Any:
    if isinstance(kind, dict):
        if not isinstance(value, bytes):
            raise UnreadableProtobuf(f"{where}: expected a message")
        return decode_message(value, kind, where)
    if kind == "time":
        if not isinstance(value, bytes):
            raise UnreadableProtobuf(f"{where}: expected a message")
        return _time(value, where)
    return _scalar(kind, wire, value, where)


def decode_message(buf: bytes, schema: Schema, where: str = "") -> dict[str, Any]:
    """The message as a JSON-shaped dict, empty values omitted; unknown non-empty fields refused."""
    out: dict[str, Any] = {}
    for number, wire, value in _fields(buf):
        if number not in schema:
            if value in (0, b""):
                continue  # an empty field of a newer schema says nothing
            raise UnreadableProtobuf(f"{where or 'object'}: field {number} is not read by this server")
        name, kind = schema[number]
        here = f"{where}.{name}" if where else name
        if kind == "map":
            if not isinstance(value, bytes):
                raise UnreadableProtobuf(f"{here}: expected a map entry")
            entry = decode_message(value, {1: ("key", "string"), 2: ("value", "string")}, here)
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        elif isinstance(kind, tuple):
            item = _value(kind[1], wire, value, here)
            out.setdefault(name, []).append(item)
        else:
            decoded = _value(kind, wire, value, here)
            if decoded in (None, "", 0, False, {}, b""):
                out.pop(name, None)
            else:
                out[name] = decoded
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded built-in object (``k8s\\x00`` envelope) as its JSON dict, with apiVersion/kind."""
    if not body.startswith(MAGIC):
        raise UnreadableProtobuf("the body does not start with the k8s protobuf envelope")
    unknown = decode_message(body[len(MAGIC) :], _UNKNOWN, "Unknown")
    type_meta = unknown.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if unknown.get("contentEncoding"):
        raise UnreadableProtobuf(f"content encoding {unknown['contentEncoding']!r} is not supported")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        readable = ", ".join(f"{v}/{k}" for v, k in KINDS)
        raise UnreadableProtobuf(
            f"{api_version}/{kind} in protobuf is not read by this server (only {readable})"
        )
    obj = decode_message(unknown.get("raw", b""), schema, kind)
    return {"apiVersion": api_version, "kind": kind, **obj}
