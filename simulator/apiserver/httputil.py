"""Small HTTP helpers shared by the handlers: query parsing, option validation, JSON responses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.apiserver.errors import ApiError, invalid
from simulator.apiserver.managed import manager_from_user_agent
from simulator.apiserver.routing import Target
from simulator.apiserver.selectors import BASE_FIELDS
from simulator.apiserver.watch import encode

JSON = "application/json"


@dataclass(frozen=True)
class RequestRecord:
    """What a request observer sees, once per request (for watches: when the stream starts)."""

    method: str
    verb: str
    group: str
    resource: str
    namespace: str
    name: str
    subresource: str
    status: int
    t_received: float


RequestObserver = Callable[[RequestRecord], None]


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def query_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool truths: kubernetes-asyncio sends Python's `True`."""
    return value in _TRUE


_BINARY_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")


def require_json(request: web.Request) -> None:
    """415 for binary bodies this server does not read (CBOR; protobuf beyond `protobuf.KINDS`)."""
    if request.content_type in _BINARY_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml (got {request.content_type})",
            "UnsupportedMediaType",
        )


_OPTIONS_KIND = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def dry_run_of(request: web.Request, verb: str) -> bool:
    """`dryRun=All` or nothing: any other value is 422, as options validation answers."""
    values = request.query.getall("dryRun", [])
    bad = [v for v in values if v != "All"]
    if bad:
        quoted = ", ".join(f'"{v}"' for v in bad)
        raise invalid(
            "meta.k8s.io",
            _OPTIONS_KIND.get(verb, "DeleteOptions"),
            "",
            "dryRun",
            "[]string{" + quoted + '}: supported values: "All"',
            cause="FieldValueNotSupported",
        )
    return bool(values)


def field_manager_of(request: web.Request) -> str:
    return request.query.get("fieldManager") or manager_from_user_agent(request.headers.get("User-Agent", ""))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode(body), status=status, content_type=JSON, headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), err.code, err.headers)


_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
    }
)


def field_allowed(target: Target) -> Callable[[str], bool]:
    """Field selectors the real server supports: metadata.name/namespace, plus a few on events.

    Custom resources without `selectableFields` (KubeVirt's) allow only the metadata ones (400 otherwise).
    """
    if target.rtype.plural == "events":
        return lambda f: f in BASE_FIELDS or f in _EVENT_FIELDS
    return lambda f: f in BASE_FIELDS
