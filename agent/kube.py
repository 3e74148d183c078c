"""The agent's only door to the Kubernetes API.

Why one module: every call needs the same four things that kubernetes-asyncio does not give by
default — a client-side timeout (its default is *no timeout at all*, so a half-open connection hangs
a call forever), the right ``Content-Type`` for merge patches (it sends a dict body as JSON-Patch),
one error type with the server's ``Retry-After``, and retries that are safe for the verb. Keeping them
here means the rest of the agent sees plain ``dict`` objects and :class:`ApiError`, nothing else.

Requests go through ``ApiClient.call_api`` with ``_preload_content=False`` and one ``json.loads``: the
generated API classes would deserialise into model classes (or, for custom objects, decode twice),
which costs seconds at 10,000 objects. Authentication (bearer token refresh, client certificates)
still comes from the ``ApiClient`` configuration.

Retry policy (:meth:`KubeClient.request`):

- idempotent verbs (get, list, update with a resourceVersion, patch, delete) are retried on 429, 5xx
  and connection errors/timeouts, with exponential backoff and full jitter, never less than the
  server's ``Retry-After``;
- **creates are retried only on 429 and 503**, the two answers where the API server guarantees it did
  nothing (rate limited / not served). A 500 or a timeout on a create may have created the object
  (``generateName`` gives a new name each time), so the caller decides: the controller finds its own
  migration again by label instead of creating a second one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog
import tenacity
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio.client.exceptions import ApiException

from agent import kubevirt as kv
from agent.names import COMPONENT, GENERATE_NAME_PREFIX, LABEL_MANAGED_BY, MANAGED_BY_VALUE
from agent.outcomes import Conflict, Forbidden, MigrationInFlight, MigrationRejected, Outcome, Transient

log = structlog.get_logger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
#: core/v1 Event messages are cut here (events.k8s.io validates ≤ 1 KiB notes; keep both happy).
EVENT_MESSAGE_MAX: Final = 1024

#: ``(verb, status)`` — ``status`` 0 means no HTTP answer (connection error or timeout).
ApiErrorCallback = Callable[[str, int], None]
#: ``(verb, resource plural, status, seconds)`` for every request sent; status 0: no HTTP answer.
RequestCallback = Callable[[str, str, int, float], None]


@dataclass(frozen=True, slots=True)
class Resource:
    """An API resource by group/version/plural (``group`` empty for the core group)."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


VMS: Final = Resource(kv.GROUP, kv.VERSION, kv.VMS)
VMIS: Final = Resource(kv.GROUP, kv.VERSION, kv.VMIS)
VMIMS: Final = Resource(kv.GROUP, kv.VERSION, kv.VMIMS)
KUBEVIRTS: Final = Resource(kv.GROUP, kv.VERSION, kv.KUBEVIRTS)
LEASES: Final = Resource("coordination.k8s.io", "v1", "leases")
CONTROLLER_REVISIONS: Final = Resource("apps", "v1", "controllerrevisions")
EVENTS: Final = Resource("", "v1", "events")
#: The preflight's infrastructure (agent/preflight.py): list and watch only.
NADS: Final = Resource(kv.NAD_GROUP, kv.NAD_VERSION, kv.NADS)
NODES: Final = Resource("", "v1", "nodes", namespaced=False)
PODS: Final = Resource("", "v1", "pods")


class ApiError(Exception):
    """A failed API call: HTTP ``status`` (0 = no answer), the Status ``reason`` and ``message``.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        verb: str = "",
        resource: str = "",
    ) -> None:
        super().__init__(f"{verb} {resource}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.verb = verb
        self.resource = resource

    @property
    def retryable(self) -> bool:
        """Worth another try for an idempotent request (rate limited, server error, no answer)."""
        return self.status in (0, 429) or self.status >= 500

    @property
    def nothing_done(self) -> bool:
        """The server guarantees the request had no effect (safe to retry even a create)."""
        return self.status in (429, 503)


def classify(exc: BaseException) -> Outcome:
    """What a failed call means (``agent.outcomes``), from the API's Status: KubeVirt's two admission
    answers (its webhook sets no machine-readable reason, so their texts are read — here, nowhere
    else), 403, a plain 409, or transient (anything else, no answer included)."""
    err = exc if isinstance(exc, ApiError) else error_from_exception(exc, "", "")
    if kv.MSG_IN_FLIGHT in err.message:
        return MigrationInFlight(err.message)
    if kv.MSG_CANNOT_MIGRATE in err.message:
        return MigrationRejected(err.message)
    if err.status == 403:
        return Forbidden(err.message, err.verb or "create", err.resource or VMIMS.plural)
    if err.status == 409:
        return Conflict(err.message)
    return Transient(err.message, err.status)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], verb: str, resource: str
) -> ApiError:
    """Build an :class:`ApiError` from a non-2xx answer with (usually) a ``Status`` body."""
    reason = ""
    message = body[:512].decode("utf-8", "replace")
    retry_after = _parse_retry_after(headers.get("Retry-After"))
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or message)
        details = doc.get("details")
        if retry_after is None and isinstance(details, dict):
            ras = details.get("retryAfterSeconds")
            if isinstance(ras, int | float):
                retry_after = float(ras)
    return ApiError(status, reason or _default_reason(status), message, retry_after, verb, resource)


def _default_reason(status: int) -> str:
    return {
        404: "NotFound",
        409: "Conflict",
        410: "Expired",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
    }.get(status, "Unknown")


def error_from_exception(exc: BaseException, verb: str, resource: str) -> ApiError:
    """Map kubernetes-asyncio / aiohttp / timeout failures to :class:`ApiError`."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        body = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
        headers = dict(exc.headers or {})
        if status == 0:
            return ApiError(0, "ClientError", str(exc.reason), None, verb, resource)
        return error_from_response(status, body, headers, verb, resource)
    if isinstance(exc, TimeoutError):
        return ApiError(0, "Timeout", "no answer within the client timeout", None, verb, resource)
    return ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}", None, verb, resource)


#: Bodies at least this large are decoded with the cyclic GC paused (see :func:`no_gc`).
_BIG_BODY = 256 * 1024


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a burst of allocations that creates no cycles.

    Why: decoding a 3 MB LIST page allocates ~10^5 containers, which triggers generation-2
    collections that walk every object already cached; with 10,000 VMs cached that doubled the
    decode time. JSON decoding and record parsing create no reference cycles, so nothing is leaked.
    Synchronous only (no ``await`` inside), so no other task runs while it is paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loads(data: bytes) -> Any:
    if len(data) >= _BIG_BODY:
        with no_gc():
            return json.loads(data)
    return json.loads(data)


def rfc3339_micro(ts: datetime | None = None) -> str:
    """``2026-11-28T14:00:00.123456Z`` — the MicroTime format Leases and Events use."""
    ts = ts or datetime.now(UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(ts: datetime | None = None) -> str:
    ts = ts or datetime.now(UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _RetryWait(tenacity.wait.wait_base):
    """Exponential backoff with full jitter, but never shorter than the server's ``Retry-After``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        base = float(self._jitter(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if isinstance(exc, ApiError) and exc.retry_after is not None:
                # Retry-After is a floor; cap it so a hostile value cannot park the agent for hours.
                return max(base, min(exc.retry_after, max(self._maximum, 60.0)))
        return base


class KubeClient:
    """One long-lived ``ApiClient`` plus the wrapper methods the agent uses.

    ``request_timeout`` bounds every non-watch call (total time). Watches use a read-inactivity
    timeout instead (see :meth:`watch`). ``on_api_error(verb, status)`` is called once per failed
    HTTP attempt (metrics ``api_errors_total{verb,code}``); ``on_request(verb, resource, status,
    seconds)`` once per request sent, watches included (``rest_client_requests_total`` and
    ``rest_client_request_duration_seconds``), measured in :meth:`_send`, which every request passes.
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        request_timeout: float = 30.0,
        on_api_error: ApiErrorCallback | None = None,
        on_request: RequestCallback | None = None,
        retry_attempts: int = 5,
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
        identity: str = COMPONENT,
    ) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.on_api_error = on_api_error
        self.on_request = on_request
        self.retry_attempts = retry_attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.identity = identity

    # ------------------------------------------------------------------ construction

    async def close(self) -> None:
        await self.api_client.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ raw requests

    def _count(self, verb: str, status: int) -> None:
        if self.on_api_error is not None:
            try:
                self.on_api_error(verb, status)
            except Exception:  # metrics must never break an API call
                log.exception("api_error_callback_failed")

    async def _send(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        started = time.monotonic()
        try:
            resp: Any = await self.api_client.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=client_timeout if client_timeout is not None else self.request_timeout,
            )
        except Exception as exc:
            status = exc.status if isinstance(exc, ApiException) and exc.status else 0
            self._observe(verb, resource, int(status), time.monotonic() - started)
            raise
        assert isinstance(resp, aiohttp.ClientResponse)
        self._observe(verb, resource, resp.status, time.monotonic() - started)
        return resp

    def _observe(self, verb: str, resource: str, status: int, seconds: float) -> None:
        if self.on_request is not None:
            try:
                self.on_request(verb, resource, status, seconds)
            except Exception:  # metrics must never break an API call
                log.exception("request_callback_failed")

    async def _once(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None,
        body: Any,
        content_type: str,
    ) -> Any:
        try:
            async with asyncio.timeout(self.request_timeout):
                resp = await self._send(
                    verb, resource, method, path, query=query, body=body, content_type=content_type
                )
                try:
                    data = await resp.read()
                finally:
                    resp.release()
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            err = error_from_exception(exc, verb, resource)
            self._count(verb, err.status)
            raise err from exc
        if not 200 <= resp.status <= 299:
            err = error_from_response(resp.status, data, resp.headers, verb, resource)
            self._count(verb, err.status)
            raise err
        return loads(data) if data else None

    async def request(
        self,
        verb: str,
        resource: Resource,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry: bool = True,
    ) -> Any:
        """One API call with the retry policy of the module docstring; returns the decoded JSON."""

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, ApiError) or not retry:
                return False
            return exc.nothing_done if verb == "create" else exc.retryable

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max(1, self.retry_attempts)),
            wait=_RetryWait(self.retry_initial, self.retry_max),
            retry=tenacity.retry_if_exception(should_retry),
            reraise=True,
            before_sleep=self._log_retry,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(verb, resource.plural, method, path, query, body, content_type)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.debug(
            "api_retry",
            attempt=state.attempt_number,
            sleep=round(state.upcoming_sleep, 3),
            error=str(exc),
        )

    # ------------------------------------------------------------------ generic verbs

    async def list_page(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        query: list[tuple[str, Any]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if limit:
            query.append(("limit", limit))
        if continue_token:
            query.append(("continue", continue_token))
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        doc = await self.request("list", resource, "GET", resource.path(namespace), query=query)
        if not isinstance(doc, dict):
            raise ApiError(0, "BadResponse", "list answer is not an object", None, "list", resource.plural)
        return doc

    async def list_pages(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Yield ``(items, list_rv)`` page by page (one page when ``page_size`` is 0).

        Why pages: holding every raw object of a 10,000-object LIST at once costs ~20 KB each and
        Python keeps that high-water mark as RSS; a consumer that parses and drops each page keeps
        only its records. ``list_rv`` is the first page's resourceVersion (the snapshot's).
        The next page is requested before this one is handed over (while the consumer parses a page,
        the API server serializes the next: at 100,000 objects the two take about as long).
        """

        def fetch(token: str | None) -> asyncio.Task[dict[str, Any]]:
            return asyncio.ensure_future(
                self.list_page(
                    resource,
                    namespace,
                    label_selector=label_selector,
                    limit=page_size or None,
                    continue_token=token,
                )
            )

        list_rv = ""
        pending = fetch(None)
        try:
            while True:
                doc = await pending
                meta = doc.get("metadata") or {}
                if not list_rv:
                    list_rv = str(meta.get("resourceVersion") or "")
                items = [i for i in doc.get("items") or () if isinstance(i, dict)]
                del doc
                token = meta.get("continue") or None
                if token:
                    pending = fetch(token)
                yield items, list_rv
                if not token:
                    return
        finally:
            if not pending.done():
                pending.cancel()

    async def list_objects(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        page_size: int = 0,
    ) -> tuple[list[dict[str, Any]], str]:
        """All objects (paged when ``page_size`` > 0) and the list's resourceVersion (watch from it)."""
        items: list[dict[str, Any]] = []
        list_rv = ""
        async for page, page_rv in self.list_pages(
            resource, namespace, label_selector=label_selector, page_size=page_size
        ):
            items.extend(page)
            list_rv = page_rv
        return items, list_rv

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist."""
        try:
            doc = await self.request("get", resource, "GET", resource.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return doc if isinstance(doc, dict) else None

    async def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        doc = await self.request("create", resource, "POST", resource.path(namespace), body=dict(body))
        return dict(doc)

    async def replace(
        self, resource: Resource, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT; with ``metadata.resourceVersion`` set this is optimistic (409 when stale)."""
        doc = await self.request("update", resource, "PUT", resource.path(namespace, name), body=dict(body))
        return dict(doc)

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str = "",
    ) -> dict[str, Any]:
        """Merge patch; the explicit content type avoids kubernetes-asyncio's JSON-Patch default."""
        doc = await self.request(
            "patch",
            resource,
            "PATCH",
            resource.path(namespace, name, subresource),
            body=dict(patch),
            content_type=MERGE_PATCH,
        )
        return dict(doc)

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete; ``False`` when it was already gone."""
        try:
            await self.request("delete", resource, "DELETE", resource.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # ------------------------------------------------------------------ watch

    @asynccontextmanager
    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        inactivity_timeout: float,
        connect_timeout: float = 10.0,
        bookmarks: bool = True,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a watch and yield an iterator of decoded events (``{"type", "object"}`` dicts).

        The stream is read as raw lines (one ``json.loads`` per event). ``inactivity_timeout`` is
        aiohttp's ``sock_read``: no bytes for that long (bookmarks arrive about once a minute on a real
        server) raises ``TimeoutError`` — the cure for half-open connections. Non-2xx answers raise
        :class:`ApiError` (410 included); an ``ERROR`` event is passed through for the caller to map.
        """
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("timeoutSeconds", int(timeout_seconds)),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=inactivity_timeout
        )
        try:
            async with asyncio.timeout(connect_timeout + inactivity_timeout):
                path = resource.path(namespace)
                resp = await self._send(
                    "watch", resource.plural, "GET", path, query=query, client_timeout=timeout
                )
        except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            err = error_from_exception(exc, "watch", resource.plural)
            self._count("watch", err.status)
            raise err from exc
        try:
            if not 200 <= resp.status <= 299:
                data = await resp.read()
                err = error_from_response(resp.status, data, resp.headers, "watch", resource.plural)
                self._count("watch", err.status)
                raise err
            yield _read_events(resp)
        finally:
            resp.close()

    # ------------------------------------------------------------------ agent operations

    async def restart_inputs(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        """``(start spec, VM, VMI)`` for :func:`agent.restart.check_restart`: the VM spec its VMI started
        from is in the ControllerRevision the VMI's ``status.virtualMachineRevisionName`` names (KubeVirt
        writes ``{"spec": <VM spec>}`` there at start). None when one of the three is missing."""
        vm = await self.get(VMS, namespace, name)
        vmi = await self.get(VMIS, namespace, name)
        revision_name = ((vmi or {}).get("status") or {}).get("virtualMachineRevisionName")
        if vm is None or vmi is None or not isinstance(revision_name, str) or not revision_name:
            return None
        revision = await self.get(CONTROLLER_REVISIONS, namespace, revision_name)
        spec = ((revision or {}).get("data") or {}).get("spec")
        return (spec, vm, vmi) if isinstance(spec, dict) else None

    async def create_vmim(self, namespace: str, vmi_name: str) -> dict[str, Any]:
        """Create a migration for ``vmi_name``; see the module docstring for when it is retried."""
        return await self.create(VMIMS, namespace, vmim_body(namespace, vmi_name))

    async def delete_vmim(self, namespace: str, name: str) -> None:
        await self.delete(VMIMS, namespace, name)

    async def create_event(
        self, involved: tuple[str, str, str, str], event_type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about ``involved`` = (kind, namespace, name, uid); no aggregation."""
        kind, namespace, name, uid = involved
        now = rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": kv.API_VERSION,
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "uid": uid,
            },
            "type": event_type,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_MAX],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.identity,
        }
        await self.create(EVENTS, namespace, body)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.get(LEASES, namespace, name)

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.create(LEASES, namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.replace(LEASES, namespace, name, body)


async def _read_events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Split the chunked body on newlines ourselves: no line-length limit, one decode per event."""
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield _decode_event(line)
    if buf.strip():
        yield _decode_event(buf)


def _decode_event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {
            "type": "ERROR",
            "object": {"code": 0, "reason": "BadEvent", "message": line[:200].decode("utf-8", "replace")},
        }
    if not isinstance(event, dict):
        return {
            "type": "ERROR",
            "object": {"code": 0, "reason": "BadEvent", "message": "event is not an object"},
        }
    if "type" not in event and "code" in event:  # a bare Status instead of an event
        return {"type": "ERROR", "object": event}
    return event


def vmim_body(namespace: str, vmi_name: str) -> dict[str, Any]:
    """The VirtualMachineInstanceMigration the agent creates for ``vmi_name``."""
    return {
        "apiVersion": kv.API_VERSION,
        "kind": kv.KIND_VMIM,
        "metadata": {
            "generateName": f"{GENERATE_NAME_PREFIX}{vmi_name}-",
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE, kv.LABEL_VMI_NAME: vmi_name},
        },
        "spec": {"vmiName": vmi_name},
    }
