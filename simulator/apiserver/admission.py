"""In-process admission hooks: how the KubeVirt simulation plays KubeVirt's webhooks.

A hook sees the object that is about to be stored (after name defaulting, before storage) and may
mutate it (a mutating webhook) or raise `AdmissionDenied` (a validating webhook).
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.apiserver.errors import ApiError


class StoreReader(Protocol):
    """What a hook may read of the store (the ``Store``; a protocol, so this module needs no import of
    the store that calls the hooks). Resources by plural, as everywhere in the store's API."""

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]: ...

    def try_get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...

    def list(
        self, resource: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], int]: ...


@dataclass
class AdmissionRequest:
    operation: str  # "CREATE" | "UPDATE" | "DELETE"
    resource: str  # plural
    group: str
    namespace: str
    name: str
    subresource: str  # "" or "status"
    #: The dict that will be stored; hooks may mutate it. For DELETE: the object being deleted.
    object: dict[str, Any]
    #: The stored object before the change (do not mutate); None on CREATE.
    old_object: dict[str, Any] | None
    #: Read access to the store (`server.get`, `server.try_get`, `server.list`).
    server: StoreReader
    dry_run: bool = False


class AdmissionDenied(Exception):  # noqa: N818 - the name mirrors the webhook vocabulary
    """Raised by a hook to reject a request; rendered like a denying webhook's Status."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str = "",
        webhook_name: str = "simulator.kubevirt.io",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.webhook_name = webhook_name

    def to_api_error(self) -> ApiError:
        from simulator.apiserver.errors import REASONS

        return ApiError(
            self.code,
            f'admission webhook "{self.webhook_name}" denied the request: {self.message}',
            self.reason or REASONS.get(self.code, "BadRequest"),
        )


AdmissionHook = Callable[[AdmissionRequest], Awaitable[None]]
