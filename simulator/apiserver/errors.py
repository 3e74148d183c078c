"""Status-shaped API errors, as the real kube-apiserver renders them (`metav1.Status`)."""

from __future__ import annotations

from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the server answers as a `Status` object; raised anywhere inside request handling."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        return status_dict(self.code, self.message, self.reason, self.details)


def status_dict(
    code: int, message: str, reason: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details:
        out["details"] = details
    out["code"] = code
    return out


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        d["group"] = group
    return d


def not_found(group: str, plural: str, name: str) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(404, f'{qualified} "{name}" not found', "NotFound", _details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        409, f'{qualified} "{name}" already exists', "AlreadyExists", _details(name, group, plural)
    )


def conflict(group: str, plural: str, name: str, why: str | None = None) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        "Conflict",
        _details(name, group, plural),
    )


_CAUSE_PREFIX = {
    "FieldValueInvalid": "Invalid value: ",
    "FieldValueRequired": "Required value: ",
    "FieldValueForbidden": "Forbidden: ",
    "FieldValueTooLong": "Too long: ",
    "FieldValueNotSupported": "Unsupported value: ",
}


def invalid(
    group: str, kind: str, name: str, field: str, detail: str, cause: str = "FieldValueInvalid"
) -> ApiError:
    """422 Invalid shaped like apimachinery's `NewInvalid` (qualified kind, one field cause)."""
    prefix = _CAUSE_PREFIX.get(cause, "")
    text = prefix + detail if detail else prefix.rstrip(": ")
    qualified = f"{kind}.{group}" if group else kind
    causes = [{"reason": cause, "message": text, "field": field}]
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {field}: {text}',
        "Invalid",
        {**_details(name, group, kind), "causes": causes},
    )


def expired(requested: int, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", "Expired")
