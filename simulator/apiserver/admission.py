"""In-process admission hooks: how the KubeVirt simulation plays KubeVirt's webhooks.

A hook sees the object that is about to be stored (after name defaulting, before storage) and may
mutate it (a mutating webhook) or raise `AdmissionDenied` (a validating webhook).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.apiserver.errors import ApiError

if TYPE_CHECKING:
    from simulator.apiserver.store import Store


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
    #: Read access to the store (`server.get`, `server.list`).
    server: Store
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
