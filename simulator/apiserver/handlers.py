"""HTTP request handling: auth, faults, discovery, CRUD and lists (watches: `streaming.py`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
import yaml
from aiohttp import web

from simulator.apiserver import discovery
from simulator.apiserver.aggregation import AggregatedApi, group_entry, resource_list
from simulator.apiserver.errors import ApiError
from simulator.apiserver.faults import Faults
from simulator.apiserver.httputil import (
    JSON,
    RequestObserver,
    RequestRecord,
    dry_run_of,
    error_response,
    field_allowed,
    field_manager_of,
    json_response,
    query_bool,
    require_json,
)
from simulator.apiserver.listing import Page, decode_continue, encode_continue, list_body
from simulator.apiserver.meta import as_version
from simulator.apiserver.protobuf import PROTOBUF, UnreadableProtobuf, decode_object
from simulator.apiserver.routing import Target, parse_resource_path, verb_for
from simulator.apiserver.selectors import parse_field_selector, parse_label_selector
from simulator.apiserver.store import APPLY_PATCH, Store
from simulator.apiserver.streaming import WatchSettings, WatchStreamer
from simulator.apiserver.table import to_table, wants_table

log = structlog.get_logger(__name__)


class Handlers:
    """The aiohttp entry point: one catch-all route, parsed the way kube-apiserver reads its URLs."""

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
        self.streamer = WatchStreamer(store, faults, watch)
        self.token = token
        self.admin = admin
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self.request_observers: list[RequestObserver] = []
        self.server_address = ""
        #: extension API servers by group (see aggregation.py)
        self.aggregated: dict[str, AggregatedApi] = {}

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
            aggregated = await self._aggregated(request, path)
            if aggregated is not None:
                return aggregated
            doc = discovery.document_for(self.store.registry, path, self.server_address)
            if doc is not None:
                if path.rstrip("/") == "/apis":
                    doc["groups"].extend(group_entry(api) for api in self.aggregated.values())
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
                started_target = target

                def started() -> None:
                    self._observe(request, started_target, "watch", 200, t0)

                return await self.streamer.serve(request, target, started)
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

    async def _aggregated(self, request: web.Request, path: str) -> web.StreamResponse | None:
        """A request for an extension API server's group (None: not one)."""
        segs = [s for s in path.split("/") if s]
        if len(segs) < 2 or segs[0] != "apis" or segs[1] not in self.aggregated:
            return None
        api = self.aggregated[segs[1]]
        if len(segs) == 2:
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **group_entry(api)})
        if segs[2] not in api.versions:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if len(segs) == 3:
            return json_response(resource_list(api, segs[2]))
        return await api.handle(request, segs[2], segs[3:])

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

    # ------------------------------------------------------------------ CRUD

    async def _body(self, request: web.Request) -> Any:
        if request.content_type == PROTOBUF:
            try:
                return decode_object(await request.read())
            except UnreadableProtobuf as exc:
                raise ApiError(
                    415,
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json, application/yaml, {PROTOBUF} ({exc})",
                    "UnsupportedMediaType",
                ) from exc
        require_json(request)
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
        rt = target.rtype
        dry_run = dry_run_of(request, verb)
        if target.subresource and target.subresource != "status":
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if target.subresource == "status" and not rt.status_subresource:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if verb == "get":
            return self._get(request, target)
        if verb == "list":
            return self._list(request, target)
        if verb == "create":
            return await self._create(request, target, dry_run)
        if verb == "deletecollection":
            return await self._delete_collection(request, target, dry_run)
        if verb == "update":
            return await self._update(request, target, dry_run)
        if verb == "patch" and request.content_type == APPLY_PATCH:
            return await self._apply(request, target, dry_run)
        if verb == "patch":
            return await self._patch(request, target, dry_run)
        if verb == "delete":
            return await self._delete(request, target, dry_run)
        raise ApiError(405, "method not allowed", "MethodNotAllowed")

    async def _object_body(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        return body

    def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        obj = self.store.get(target.rtype, target.namespace, target.name)
        if wants_table(request):
            return json_response(to_table(target.rtype, [obj], self.store.resource_version))
        return json_response(as_version(target.rtype, obj))

    async def _create(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        obj = await self.store.create(
            target.rtype,
            await self._object_body(request),
            target.namespace,
            dry_run=dry_run,
            take_ownership=True,
            field_manager=field_manager_of(request),
        )
        return json_response(as_version(target.rtype, obj), 201)

    async def _update(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        assert target.name is not None
        obj = await self.store.update(
            target.rtype,
            await self._object_body(request),
            target.namespace,
            target.name,
            subresource=target.subresource,
            dry_run=dry_run,
            field_manager=field_manager_of(request),
            take_ownership=True,
        )
        return json_response(as_version(target.rtype, obj))

    async def _apply(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        assert target.name is not None
        raw_apply = await request.read()
        try:
            applied = yaml.safe_load(raw_apply) if raw_apply else None
        except yaml.YAMLError as exc:
            raise ApiError(400, f"error decoding YAML: {exc}") from exc
        obj, created = await self.store.apply(
            target.rtype,
            target.namespace,
            target.name,
            applied,
            request.query.get("fieldManager"),
            subresource=target.subresource,
            dry_run=dry_run,
        )
        return json_response(as_version(target.rtype, obj), 201 if created else 200)

    async def _patch(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        assert target.name is not None
        self.store.check_patch_type(target.rtype, request.content_type)
        raw = await request.read()
        try:
            patch_body: Any = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ApiError(400, f"the body of the request was in an unknown format: {exc}") from exc
        obj = await self.store.patch(
            target.rtype,
            target.namespace,
            target.name,
            patch_body,
            request.content_type,
            subresource=target.subresource,
            dry_run=dry_run,
            field_manager=field_manager_of(request),
        )
        return json_response(as_version(target.rtype, obj))

    async def _delete(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        assert target.name is not None
        rt = target.rtype
        if target.subresource:
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        opts = await self._body(request)
        pre = opts.get("preconditions") if isinstance(opts, dict) else None
        if isinstance(opts, dict) and opts.get("dryRun"):
            dry_run = dry_run or "All" in opts["dryRun"]
        obj = await self.store.delete(
            rt, target.namespace, target.name, preconditions=pre or None, dry_run=dry_run
        )
        if obj["metadata"].get("finalizers") or (rt.plural == "namespaces" and not rt.group):
            return json_response(as_version(rt, obj))  # still there (finalizers), or a namespace: the object
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

    def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        rt = target.rtype
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), field_allowed(target))
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
        fields = parse_field_selector(q.get("fieldSelector"), field_allowed(target))
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

    def watch_close_all(self) -> None:
        self.streamer.close_all()
