"""HTTP request handling: auth, faults, discovery, CRUD, list and watch streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import yaml
from aiohttp import web

from simulator.apiserver import discovery, openapi
from simulator.apiserver.errors import ApiError, invalid
from simulator.apiserver.faults import Faults
from simulator.apiserver.listing import Page, decode_continue, encode_continue, list_body
from simulator.apiserver.managed import manager_from_user_agent
from simulator.apiserver.meta import as_version
from simulator.apiserver.routing import Target, parse_resource_path, verb_for
from simulator.apiserver.selectors import BASE_FIELDS, parse_field_selector, parse_label_selector
from simulator.apiserver.store import APPLY_PATCH, Store
from simulator.apiserver.table import to_table, wants_table
from simulator.apiserver.watch import Close, Watcher, WatchFilter, encode

log = structlog.get_logger(__name__)

JSON = "application/json"
_LIVENESS_CHECK = 1.0


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


@dataclass
class WatchSettings:
    bookmark_interval: float = 1.0
    #: Upper bound when the client gives no timeoutSeconds (the real server picks 30-60 min).
    default_timeout: float = 1800.0
    write_batch: int = 1000


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def query_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool truths: kubernetes-asyncio sends Python's `True`."""
    return value in _TRUE


_BINARY_TYPES = ("application/vnd.kubernetes.protobuf", "application/cbor")


def _require_json(request: web.Request) -> None:
    """415 for protobuf/CBOR bodies: client-go then retries the request as JSON."""
    if request.content_type in _BINARY_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"application/json, application/yaml (got {request.content_type})",
            "UnsupportedMediaType",
        )


_OPTIONS_KIND = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def _dry_run(request: web.Request, verb: str) -> bool:
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


def _manager(request: web.Request) -> str:
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


def _field_allowed(target: Target) -> Callable[[str], bool]:
    """Field selectors the real server supports: metadata.name/namespace, plus a few on events.

    Custom resources without `selectableFields` (KubeVirt's) allow only the metadata ones (400 otherwise).
    """
    if target.rtype.plural == "events":
        return lambda f: f in BASE_FIELDS or f in _EVENT_FIELDS
    return lambda f: f in BASE_FIELDS


class Handlers:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        watch: WatchSettings,
        token: str | None = None,
        admin: Callable[[web.Request], Any] | None = None,
    ) -> None:
        self.store = store
        self.faults = faults
        self.watch_settings = watch
        self.token = token
        self.admin = admin
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self.request_observers: list[RequestObserver] = []
        self.server_address = ""

    # ------------------------------------------------------------------ entry point

    async def handle(self, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        target: Target | None = None
        verb = ""
        try:
            self._authenticate(request)
            path = request.path
            if path.startswith("/sim/") and self.admin is not None:
                result: web.StreamResponse = await self.admin(request)
                return result
            doc = self._discovery(path)
            if doc is not None:
                return json_response(doc)
            target = parse_resource_path(self.store.registry, path)
            if target is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            verb = verb_for(request.method, target, query_bool(request.query.get("watch")))
            self.request_counts[(verb, target.rtype.plural)] += 1
            delay = self.faults.delay_for(verb, target.rtype.plural)
            if delay > 0:
                await asyncio.sleep(delay)
            injected = self.faults.error_for(verb, target.rtype.plural)
            if injected is not None:
                raise injected
            if verb == "watch":
                return await self._watch(request, target, t0)
            response = await self._dispatch(request, target, verb)
        except ApiError as err:
            response = error_response(err)
        except Exception:
            log.exception("request failed", path=request.path, method=request.method)
            response = error_response(
                ApiError(500, "Internal error occurred: simulator bug", "InternalError")
            )
        self._observe(request, target, verb, response.status, t0)
        return response

    def _observe(
        self, request: web.Request, target: Target | None, verb: str, status: int, t0: float
    ) -> None:
        if not self.request_observers:
            return
        rec = RequestRecord(
            request.method,
            verb,
            target.rtype.group if target else "",
            target.rtype.plural if target else "",
            target.namespace or "" if target else "",
            target.name or "" if target else "",
            target.subresource if target else "",
            status,
            t0,
        )
        for cb in self.request_observers:
            try:
                cb(rec)
            except Exception:
                log.exception("request observer failed")

    def _authenticate(self, request: web.Request) -> None:
        if self.token is None:
            return
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _discovery(self, path: str) -> dict[str, Any] | None:
        reg = self.store.registry
        p = path.rstrip("/") or "/"
        if p == "/version":
            return dict(discovery.VERSION_INFO)
        if p == "/api":
            return discovery.api_versions(self.server_address)
        if p == "/apis":
            return discovery.api_group_list(reg)
        if p == "/openapi/v3":
            return openapi.root_document(reg)
        if p.startswith("/openapi/v3/"):
            rest = [s for s in p[len("/openapi/v3/") :].split("/") if s]
            doc = None
            if len(rest) == 2 and rest[0] == "api":
                doc = openapi.gv_document(reg, "", rest[1])
            elif len(rest) == 3 and rest[0] == "apis":
                doc = openapi.gv_document(reg, rest[1], rest[2])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return doc
        segs = [s for s in p.split("/") if s]
        if len(segs) == 2 and segs[0] == "api":
            doc = discovery.api_resource_list(reg, "", segs[1])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return doc
        if len(segs) == 2 and segs[0] == "apis":
            doc = discovery.api_group(reg, segs[1])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return doc
        if len(segs) == 3 and segs[0] == "apis":
            doc = discovery.api_resource_list(reg, segs[1], segs[2])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource", "NotFound")
            return doc
        return None

    # ------------------------------------------------------------------ CRUD

    async def _body(self, request: web.Request) -> Any:
        _require_json(request)
        raw: bytes = await request.read()
        if not raw:
            return None
        try:
            if "yaml" in request.content_type and request.content_type != "application/apply-patch+yaml":
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"the body of the request was in an unknown format: {exc}") from exc

    async def _dispatch(self, request: web.Request, target: Target, verb: str) -> web.StreamResponse:
        store = self.store
        rt = target.rtype
        dry_run = _dry_run(request, verb)
        if target.subresource and target.subresource != "status":
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if target.subresource == "status" and not rt.status_subresource:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if verb == "get":
            assert target.name is not None
            obj = store.get(rt, target.namespace, target.name)
            if wants_table(request):
                return json_response(to_table(rt, [obj], store.resource_version))
            return json_response(as_version(rt, obj))
        if verb == "list":
            return self._list(request, target)
        if verb == "create":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "the body of the request was in an unknown format")
            obj = await store.create(
                rt,
                body,
                target.namespace,
                dry_run=dry_run,
                take_ownership=True,
                field_manager=_manager(request),
            )
            return json_response(as_version(rt, obj), 201)
        if verb == "deletecollection":
            return await self._delete_collection(request, target, dry_run)
        assert target.name is not None
        if verb == "update":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "the body of the request was in an unknown format")
            obj = await store.update(
                rt,
                body,
                target.namespace,
                target.name,
                subresource=target.subresource,
                dry_run=dry_run,
                field_manager=_manager(request),
                take_ownership=True,
            )
            return json_response(as_version(rt, obj))
        if verb == "patch" and request.content_type == APPLY_PATCH:
            raw_apply = await request.read()
            try:
                applied = yaml.safe_load(raw_apply) if raw_apply else None
            except yaml.YAMLError as exc:
                raise ApiError(400, f"error decoding YAML: {exc}") from exc
            obj, created = await store.apply(
                rt,
                target.namespace,
                target.name,
                applied,
                request.query.get("fieldManager"),
                subresource=target.subresource,
                dry_run=dry_run,
            )
            return json_response(as_version(rt, obj), 201 if created else 200)
        if verb == "patch":
            store.check_patch_type(rt, request.content_type)
            raw = await request.read()
            try:
                patch_body: Any = json.loads(raw) if raw else None
            except ValueError as exc:
                raise ApiError(400, f"the body of the request was in an unknown format: {exc}") from exc
            obj = await store.patch(
                rt,
                target.namespace,
                target.name,
                patch_body,
                request.content_type,
                subresource=target.subresource,
                dry_run=dry_run,
                field_manager=_manager(request),
            )
            return json_response(as_version(rt, obj))
        if verb == "delete":
            if target.subresource:
                raise ApiError(
                    405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
                )
            opts = await self._body(request)
            pre = opts.get("preconditions") if isinstance(opts, dict) else None
            if isinstance(opts, dict) and opts.get("dryRun"):
                dry_run = dry_run or "All" in opts["dryRun"]
            obj = await store.delete(
                rt, target.namespace, target.name, preconditions=pre or None, dry_run=dry_run
            )
            if obj["metadata"].get("finalizers") or (rt.plural == "namespaces" and not rt.group):
                return json_response(
                    as_version(rt, obj)
                )  # still there (finalizers), or a namespace: the object
            # Deleted at once: the registry answers a success Status, not the object.
            return json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": target.name,
                        **({"group": rt.group} if rt.group else {}),
                        "kind": rt.plural,
                        "uid": obj["metadata"].get("uid"),
                    },
                }
            )
        raise ApiError(405, "method not allowed", "MethodNotAllowed")

    def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        rt = target.rtype
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), _field_allowed(target))
        try:
            limit = int(q["limit"]) if q.get("limit") else None
        except ValueError as exc:
            raise ApiError(400, f"invalid limit: {q['limit']}") from exc
        rv_text = q.get("resourceVersion") or ""
        token = q.get("continue")
        at: int | None = None
        after = None
        if token:
            # Later pages are read at the first page's RV (etcd serves them from that revision).
            at, after = decode_continue(token)
        elif q.get("resourceVersionMatch") == "Exact" and rv_text not in ("", "0"):
            try:
                at = int(rv_text)
            except ValueError as exc:
                raise ApiError(400, f"invalid resource version: {rv_text}") from exc
        try:
            result = self.store.list_page(
                rt, target.namespace, labels, fields, at=at, after=after, limit=limit
            )
        except ApiError as err:
            if err.code == 410 and token:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter.",
                    "Expired",
                ) from err
            raise
        items = [as_version(rt, o) for o in result.items] if rt.converts else result.items
        cont = encode_continue(result.rv, result.last) if result.last is not None else ""
        page = Page(items, result.rv, cont, result.remaining)
        if wants_table(request):
            table = to_table(rt, items, result.rv)
            if cont:
                table["metadata"]["continue"] = cont
                if result.remaining is not None:
                    table["metadata"]["remainingItemCount"] = result.remaining
            return json_response(table)
        return web.Response(body=list_body(rt, page), content_type=JSON)

    async def _delete_collection(self, request: web.Request, target: Target, dry_run: bool) -> web.Response:
        q = request.query
        rt = target.rtype
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), _field_allowed(target))
        items, _ = self.store.list(rt, target.namespace, labels, fields)
        deleted: list[dict[str, Any]] = []
        for obj in items:
            meta = obj["metadata"]
            try:
                deleted.append(
                    await self.store.delete(rt, meta.get("namespace"), meta["name"], dry_run=dry_run)
                )
            except ApiError as err:
                if err.code != 404:  # deleted meanwhile: fine
                    raise
        page = Page([as_version(rt, o) for o in deleted], self.store.resource_version)
        return web.Response(body=list_body(rt, page), content_type=JSON)

    # ------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, target: Target, t0: float) -> web.StreamResponse:
        q = request.query
        rt = target.rtype
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), _field_allowed(target))
        rv_text = q.get("resourceVersion") or ""
        since: int | None = None
        if rv_text not in ("", "0"):
            try:
                since = int(rv_text)
            except ValueError as exc:
                raise ApiError(
                    400, f'resourceVersion: Invalid value: "{rv_text}": must be an integer'
                ) from exc
        timeout = self.watch_settings.default_timeout
        if q.get("timeoutSeconds"):
            try:
                asked = float(q["timeoutSeconds"])
            except ValueError as exc:
                raise ApiError(400, "timeoutSeconds must be a number") from exc
            if asked > 0:  # 0 means "server default", as in the real handler
                timeout = asked
        bookmarks = query_bool(q.get("allowWatchBookmarks"))
        watcher = Watcher(
            rt,
            WatchFilter(target.namespace, labels, fields),
            self.store.watch_queue_size,
            table=wants_table(request),
        )
        error_line: bytes | None = None
        initial: list[bytes] = []
        try:
            if since is not None and self.faults.take_expiry(rt.plural):
                from simulator.apiserver.errors import expired

                raise expired(since, self.store.resource_version)
            initial = self.store.open_watch(watcher, since)
        except ApiError as err:
            if err.code != 410:
                raise
            # The real server answers 200 and sends the error as a watch event.
            error_line = b'{"type":"ERROR","object":' + encode(err.status()) + b"}\n"
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        self._observe(request, target, "watch", 200, t0)
        try:
            await resp.prepare(request)
            transport = request.transport
            if transport is not None:
                watcher.abort_hook = transport.abort
            if error_line is not None:
                await resp.write(error_line)
                await resp.write_eof()
                return resp
            await self._stream(
                request=request,
                resp=resp,
                watcher=watcher,
                initial=initial,
                duration=timeout,
                bookmarks=bookmarks,
            )
        except ConnectionError:
            # The client went away (or a drop fault aborted the connection): normal for watches.
            log.debug("watch client disconnected", resource=rt.plural)
        finally:
            self.store.close_watch(watcher)
        return resp

    async def _stream(
        self,
        *,
        request: web.Request,
        resp: web.StreamResponse,
        watcher: Watcher,
        initial: list[bytes],
        duration: float,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        batch = self.watch_settings.write_batch
        for i in range(0, len(initial), batch):
            await resp.write(b"".join(initial[i : i + batch]))
        deadline = loop.time() + duration
        interval = self.watch_settings.bookmark_interval
        next_bookmark = loop.time() + interval
        while True:
            now = loop.time()
            if now >= deadline:
                break
            # Wake at least every second to notice clients that went away while nothing was sent.
            wake_at = min(deadline, now + _LIVENESS_CHECK, next_bookmark if bookmarks else deadline)
            await watcher.wait(wake_at - now)
            lines = watcher.drain()
            if lines:
                await resp.write(b"".join(lines))
            if watcher.closed is Close.ABORT:
                if request.transport is not None:
                    request.transport.abort()
                return
            if watcher.closed is Close.EOF:
                break
            if request.transport is None or request.transport.is_closing():
                return
            if bookmarks and loop.time() >= next_bookmark and not watcher.pending:
                # Computed with an empty queue and no await since: every event up to this RV was sent.
                await resp.write(self._bookmark(watcher))
                next_bookmark = loop.time() + interval
        await resp.write_eof()

    def _bookmark(self, watcher: Watcher) -> bytes:
        rt = watcher.rtype
        obj = {
            "kind": rt.kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
        }
        return b'{"type":"BOOKMARK","object":' + encode(obj) + b"}\n"

    def watch_close_all(self) -> None:
        for w in self.store.watchers():
            w.close(Close.EOF)
