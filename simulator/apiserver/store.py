"""The object store: objects, the cluster-wide resourceVersion, watch history and fan-out.

Every write path (HTTP handlers and in-process callers) goes through the async `create`,
`update`, `patch` and `delete` here, so RV bumps, generation, finalizers, admission and watch
events behave the same whichever door a write comes through.  Commits are synchronous (no await
between reading the current object and storing the new one); admission hooks may await, so after
them the store re-checks that the object did not change and retries unconditional writes the way
the real server's GuaranteedUpdate does.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog

from simulator.apiserver import errors
from simulator.apiserver.admission import AdmissionDenied, AdmissionHook, AdmissionRequest
from simulator.apiserver.errors import ApiError
from simulator.apiserver.managed import record as record_managed_fields
from simulator.apiserver.meta import (
    check_type_meta,
    clone,
    now_rfc3339,
    prepare_create,
    prepare_update,
    random_suffix,
    shallow_copy,
    validate_name,
)
from simulator.apiserver.patch import PatchError, json_patch, merge_patch
from simulator.apiserver.registry import Registry, ResourceType
from simulator.apiserver.selectors import (
    FieldRequirement,
    Requirement,
    exact_name,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from simulator.apiserver.validation import validate_object
from simulator.apiserver.watch import Watcher, WatchEvent

log = structlog.get_logger(__name__)

EventObserver = Callable[[str, str, dict[str, Any], float], None]
Resource = str | ResourceType
Key = tuple[str, str]  # (namespace or "", name)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_MAX_UPDATE_RETRIES = 16
#: Field manager of in-process writes that name none.
DEFAULT_MANAGER = "simulator"


@dataclass(frozen=True)
class ListPage:
    """A list result: `last` is the key to continue after when more items follow."""

    items: builtins.list[dict[str, Any]]
    rv: int
    last: Key | None = None
    remaining: int | None = None


class Store:
    """In-memory objects of every registered resource plus the watch machinery."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        history_size: int = 10_000,
        watch_queue_size: int = 16384,
        rng: random.Random | None = None,
        managed_fields: bool = True,
    ) -> None:
        self.registry = registry or Registry()
        self.rng = rng or random.Random(0)
        self.watch_queue_size = watch_queue_size
        #: Record metadata.managedFields on writes (off saves memory and time in large benchmarks).
        self.managed_fields = managed_fields
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {r.key: {} for r in self.registry.resources}
        self._rv = 0
        self._history: deque[WatchEvent] = deque(maxlen=history_size)
        #: Watches may resume from any RV >= this; older ones get 410 Expired.
        self._floor = 0
        self._watchers: dict[str, set[Watcher]] = {r.key: set() for r in self.registry.resources}
        self._hooks: list[AdmissionHook] = []
        self._event_observers: list[EventObserver] = []
        self._pressure = False
        #: Sorted keys per resource, dropped on create/delete (lists re-sort lazily).
        self._key_order: dict[str, builtins.list[Key] | None] = {}

    # ------------------------------------------------------------------ configuration

    def add_admission(self, hook: AdmissionHook) -> None:
        self._hooks.append(hook)

    def add_event_observer(self, cb: EventObserver) -> None:
        self._event_observers.append(cb)

    def rtype(self, resource: Resource) -> ResourceType:
        return resource if isinstance(resource, ResourceType) else self.registry.resolve(resource)

    @property
    def resource_version(self) -> int:
        return self._rv

    # ------------------------------------------------------------------ reads

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object (shared: callers must not mutate it), or 404 ApiError."""
        rt = self.rtype(resource)
        obj = self._objects[rt.key].get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return obj

    def try_get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = self.rtype(resource)
        return self._objects[rt.key].get(self._key(rt, namespace, name))

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | builtins.list[Requirement] | None = None,
        field_selector: str | builtins.list[FieldRequirement] | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Matching stored objects (shared references) sorted like etcd (namespace, name) and the list RV."""
        page = self.list_page(resource, namespace, label_selector, field_selector)
        return page.items, page.rv

    def list_page(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | builtins.list[Requirement] | None = None,
        field_selector: str | builtins.list[FieldRequirement] | None = None,
        *,
        at: int | None = None,
        after: Key | None = None,
        limit: int | None = None,
    ) -> ListPage:
        """One page of a list: objects after key `after`, at most `limit`, as of RV `at` (default: now).

        Keys are kept sorted (re-sorted only after creates/deletes), namespaces and continue points are
        found by bisection, and a past RV is rebuilt from the watch history.
        """
        rt = self.rtype(resource)
        labels = (
            parse_label_selector(label_selector) if isinstance(label_selector, str) else label_selector or []
        )
        fields = (
            parse_field_selector(field_selector) if isinstance(field_selector, str) else field_selector or []
        )
        if at is None or at >= self._rv:
            rv, table, keys = self._rv, self._objects[rt.key], self._sorted_keys(rt)
        else:
            rv = at
            table = self._state_at(rt, at)
            keys = sorted(table)
        name = exact_name(fields)
        if name is not None and (namespace is not None or not rt.namespaced) and after is None:
            key = self._key(rt, namespace, name)
            keys = [key] if key in table else []
        lo, hi = 0, len(keys)
        if namespace is not None and rt.namespaced:
            lo = bisect.bisect_left(keys, (namespace, ""))
            hi = bisect.bisect_left(keys, (namespace + "\x00", ""))
        if after is not None:
            lo = max(lo, bisect.bisect_right(keys, after))
        selective = bool(labels or fields)
        items: builtins.list[dict[str, Any]] = []
        i = lo
        while i < hi:
            obj = table[keys[i]]
            if not selective or (labels_match(labels, obj) and fields_match(fields, obj)):
                items.append(obj)
                if limit and len(items) >= limit:
                    break
            i += 1
        more = False
        if limit and len(items) >= limit:
            more = any(
                not selective or (labels_match(labels, table[k]) and fields_match(fields, table[k]))
                for k in keys[i + 1 : hi]
            )
        last = keys[i] if more else None
        remaining = hi - i - 1 if more and not selective else None
        return ListPage(items, rv, last, remaining)

    def _sorted_keys(self, rt: ResourceType) -> builtins.list[Key]:
        keys = self._key_order.get(rt.key)
        if keys is None:
            keys = self._key_order[rt.key] = sorted(self._objects[rt.key])
        return keys

    def _state_at(self, rt: ResourceType, rv: int) -> dict[Key, dict[str, Any]]:
        if rv < self._floor:
            raise ApiError(410, "The resourceVersion for the provided list is too old.", "Expired")
        state = dict(self._objects[rt.key])
        for ev in reversed(self._history):
            if ev.rv <= rv:
                break
            if ev.rtype.key != rt.key:
                continue
            meta = ev.obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if ev.type == "ADDED":
                state.pop(key, None)
            elif ev.old is not None:
                state[key] = ev.old
        return state

    def count(self, resource: Resource) -> int:
        return len(self._objects[self.rtype(resource).key])

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        resource: Resource,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        admission: bool = True,
        dry_run: bool = False,
        field_manager: str | None = None,
        managed_operation: str = "Update",
        take_ownership: bool = False,
    ) -> dict[str, Any]:
        """Create `obj`; 409 AlreadyExists, 404 when the namespace is missing.

        `obj` is copied unless `take_ownership` (the HTTP path hands over a freshly parsed body).
        The returned dict is the stored object: treat it as read-only.
        """
        await self._backpressure()
        rt = self.rtype(resource)
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        if not take_ownership:
            obj = clone(obj)
        check_type_meta(rt, obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        ns = self._create_namespace(rt, meta, namespace)
        table = self._objects[rt.key]
        name = self._create_name(rt, meta, ns)
        validate_name(rt, name)
        if (ns, name) in table:
            raise errors.already_exists(rt.group, rt.plural, name)
        prepare_create(rt, obj, ns, name)
        validate_object(rt, obj)
        if admission and self._hooks:
            await self._admit(
                operation="CREATE",
                rt=rt,
                ns=ns,
                name=name,
                subresource="",
                obj=obj,
                old=None,
                dry_run=dry_run,
            )
            if (ns, name) in table:
                raise errors.already_exists(rt.group, rt.plural, name)
        if dry_run:
            return obj
        if self.managed_fields:
            record_managed_fields(rt, obj, field_manager or DEFAULT_MANAGER, "", managed_operation)
        return self._commit(rt, "ADDED", (ns, name), obj, None)

    def _create_namespace(self, rt: ResourceType, meta: dict[str, Any], namespace: str | None) -> str:
        """The namespace a create goes to ("" for a cluster-scoped resource); 400 or 404 as the server."""
        if not rt.namespaced:
            return ""
        body_ns = meta.get("namespace")
        ns: str = namespace or body_ns or "default"
        if body_ns and body_ns != ns:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if self.try_get("namespaces", None, ns) is None:
            raise errors.not_found("", "namespaces", ns)
        return ns

    def _create_name(self, rt: ResourceType, meta: dict[str, Any], ns: str) -> str:
        """``metadata.name``, or ``generateName`` plus a random suffix not taken yet."""
        name = meta.get("name")
        if name:
            return cast(str, name)  # validate_name checks it next
        prefix = meta.get("generateName")
        if not prefix:
            raise errors.invalid(
                rt.group,
                rt.kind,
                "",
                "metadata.name",
                "name or generateName is required",
                cause="FieldValueRequired",
            )
        table = self._objects[rt.key]
        name = prefix + random_suffix(self.rng)
        while (ns, name) in table:
            name = prefix + random_suffix(self.rng)
        return cast(str, name)

    async def update(
        self,
        resource: Resource,
        obj: dict[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        *,
        subresource: str = "",
        admission: bool = True,
        dry_run: bool = False,
        field_manager: str | None = None,
        take_ownership: bool = False,
    ) -> dict[str, Any]:
        """PUT semantics: 409 Conflict on a stale `metadata.resourceVersion`; without one, built-ins
        update unconditionally and custom resources answer 422 (as kube-apiserver does).

        `obj` is copied unless `take_ownership`; the returned dict is the stored object (read-only).
        """
        await self._backpressure()
        rt = self.rtype(resource)
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        if not take_ownership:
            obj = clone(obj)
        check_type_meta(rt, obj)
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        name = name or meta.get("name")
        if not name:
            raise errors.invalid(
                rt.group, rt.kind, "", "metadata.name", "name is required", cause="FieldValueRequired"
            )
        if meta.get("name") and meta["name"] != name:
            raise ApiError(
                400, f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        ns = (namespace or meta.get("namespace") or "default") if rt.namespaced else ""
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise ApiError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        precondition = meta.get("resourceVersion") or None
        if precondition is None and not rt.builtin:
            # Custom resources refuse unconditional updates (AllowUnconditionalUpdate() == false).
            raise errors.invalid(
                rt.group, rt.kind, name, "metadata.resourceVersion", "0x0: must be specified for an update"
            )
        uid = meta.get("uid") or None

        def transform(old: dict[str, Any]) -> dict[str, Any]:
            if uid is not None and uid != old["metadata"].get("uid"):
                # The uid in the body acts as a precondition (rest.BeforeUpdate).
                raise errors.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {old['metadata'].get('uid')}",
                )
            # The body is only read (its subtrees may be shared with the stored object); hooks get a clone.
            return shallow_copy(obj)

        return await self._guaranteed_update(
            rt=rt,
            ns=ns,
            name=name,
            transform=transform,
            precondition=precondition,
            subresource=subresource,
            admission=admission,
            dry_run=dry_run,
            verb="update",
            field_manager=field_manager,
        )

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str = MERGE_PATCH,
        *,
        subresource: str = "",
        admission: bool = True,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """PATCH: merge patch, JSON patch, or (built-ins only, as a merge patch) strategic merge."""
        await self._backpressure()
        rt = self.rtype(resource)
        ns = (namespace or "default") if rt.namespaced else ""
        if content_type == APPLY_PATCH:
            applied, _created = await self.apply(
                rt,
                ns,
                name,
                body,
                field_manager,
                subresource=subresource,
                admission=admission,
                dry_run=dry_run,
            )
            return applied
        self.check_patch_type(rt, content_type)
        if content_type != JSON_PATCH and not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format")

        def transform(old: dict[str, Any]) -> dict[str, Any]:
            try:
                new: Any = json_patch(old, body) if content_type == JSON_PATCH else merge_patch(old, body)
            except PatchError as exc:
                # Like patch.go: an undecodable patch is 400, one that does not apply is 422.
                if exc.malformed:
                    raise ApiError(400, str(exc), "BadRequest") from exc
                raise ApiError(422, str(exc), "Invalid") from exc
            if not isinstance(new, dict):
                raise ApiError(422, "patched object is not an object", "Invalid")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            old_rv = old["metadata"].get("resourceVersion")
            # A patch that sets metadata.resourceVersion makes the write conditional on it.
            if rv and rv != old_rv:
                raise errors.conflict(rt.group, rt.plural, name)
            return new

        return await self._guaranteed_update(
            rt=rt,
            ns=ns,
            name=name,
            transform=transform,
            precondition=None,
            subresource=subresource,
            admission=admission,
            dry_run=dry_run,
            verb="patch",
            field_manager=field_manager,
        )

    async def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        field_manager: str | None,
        *,
        subresource: str = "",
        admission: bool = True,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply, approximated: create if missing, else merge the applied configuration.

        Returns (object, created). Approximation: fields the manager applied before and now omits are
        not removed, lists are replaced (no merge keys), and ownership conflicts are never reported.
        """
        await self._backpressure()
        rt = self.rtype(resource)
        if not field_manager:
            raise errors.invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                "fieldManager",
                "is required for apply patch",
                cause="FieldValueRequired",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        body = clone(body)
        ns = (namespace or "default") if rt.namespaced else ""
        if self.try_get(rt, ns, name) is None and not subresource:
            meta = body.setdefault("metadata", {})
            if not isinstance(meta, dict) or meta.get("name", name) != name:
                raise ApiError(400, f"the name of the object does not match the name on the URL ({name})")
            meta["name"] = name
            created = await self.create(
                rt,
                body,
                ns,
                admission=admission,
                dry_run=dry_run,
                take_ownership=True,
                field_manager=field_manager,
                managed_operation="Apply",
            )
            return created, True

        def transform(old: dict[str, Any]) -> dict[str, Any]:
            patched: dict[str, Any] = merge_patch(old, body)
            return patched

        updated = await self._guaranteed_update(
            rt=rt,
            ns=ns,
            name=name,
            transform=transform,
            precondition=None,
            subresource=subresource,
            admission=admission,
            dry_run=dry_run,
            verb="patch",
            field_manager=field_manager,
            managed_operation="Apply",
        )
        return updated, False

    @staticmethod
    def check_patch_type(rt: ResourceType, content_type: str) -> None:
        """415 for media types the resource does not take (strategic merge only for built-ins)."""
        if content_type in (MERGE_PATCH, JSON_PATCH, APPLY_PATCH) or (
            content_type == STRATEGIC_MERGE_PATCH and rt.builtin
        ):
            return
        accepted = [JSON_PATCH, MERGE_PATCH] + ([STRATEGIC_MERGE_PATCH] if rt.builtin else []) + [APPLY_PATCH]
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
            "UnsupportedMediaType",
        )

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        preconditions: dict[str, Any] | None = None,
        admission: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete now, or — with finalizers — set deletionTimestamp and wait for them to be removed."""
        await self._backpressure()
        rt = self.rtype(resource)
        ns = (namespace or "default") if rt.namespaced else ""
        for _attempt in range(_MAX_UPDATE_RETRIES):
            old = self.get(rt, ns, name)
            meta = old["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            if admission and self._hooks:
                await self._admit(
                    operation="DELETE",
                    rt=rt,
                    ns=ns,
                    name=name,
                    subresource="",
                    obj=clone(old),
                    old=old,
                    dry_run=dry_run,
                )
                if self.try_get(rt, ns, name) is not old:
                    continue
            if dry_run:
                return old
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return old
                new = shallow_copy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if isinstance(meta.get("generation"), int):
                    # The registry bumps generation when it starts a graceful/finalizer deletion.
                    new["metadata"]["generation"] = meta["generation"] + 1
                return self._commit(rt, "MODIFIED", (ns, name), new, old)
            if rt.plural == "namespaces" and not rt.group:
                self._delete_namespace_contents(name)
            return self._commit(rt, "DELETED", (ns, name), shallow_copy(old), old)
        raise errors.conflict(rt.group, rt.plural, name)

    def compact(self) -> int:
        """Forget all watch history: any watch from an RV before now gets 410 Expired."""
        self._history.clear()
        self._floor = self._rv
        return self._rv

    # ------------------------------------------------------------------ watch

    def open_watch(self, watcher: Watcher, since: int | None) -> builtins.list[bytes]:
        """Register `watcher` and return the lines it must send first (synchronously, so none is lost).

        `since=None` → synthetic ADDED for current matching objects; otherwise the history after `since`
        (raises 410 Expired when it has been compacted away).
        """
        rt = watcher.rtype
        initial: builtins.list[bytes] = []
        if since is None:
            for obj in self._objects[rt.key].values():
                if watcher.filter.matches(obj):
                    rv = int(obj["metadata"]["resourceVersion"])
                    initial.append(WatchEvent("ADDED", rt, rv, obj).line(table=watcher.table))
        else:
            if since < self._floor:
                raise errors.expired(since, self._floor)
            newest_first: builtins.list[WatchEvent] = []
            for ev in reversed(self._history):
                if ev.rv <= since:
                    break
                if ev.rtype.key == rt.key:
                    newest_first.append(ev)
            for ev in reversed(newest_first):
                line = watcher.select(ev)
                if line is not None:
                    initial.append(line)
        self._watchers[rt.key].add(watcher)
        return initial

    def close_watch(self, watcher: Watcher) -> None:
        self._watchers[watcher.rtype.key].discard(watcher)

    def watchers(self, resource: Resource | None = None) -> builtins.list[Watcher]:
        if resource is None:
            return [w for ws in self._watchers.values() for w in ws]
        return list(self._watchers[self.rtype(resource).key])

    # ------------------------------------------------------------------ internals

    async def _backpressure(self) -> None:
        """Yield to the event loop when a watcher's queue is half full.

        In-process writers (seeding thousands of objects in a loop) may never await otherwise, so watch
        handlers could not drain and every watcher would overflow; one yield lets them write out.
        """
        if self._pressure:
            self._pressure = False
            await asyncio.sleep(0)

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "default") if rt.namespaced else "", name)

    async def _admit(
        self,
        *,
        operation: str,
        rt: ResourceType,
        ns: str,
        name: str,
        subresource: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        dry_run: bool,
    ) -> None:
        req = AdmissionRequest(operation, rt.plural, rt.group, ns, name, subresource, obj, old, self, dry_run)
        for hook in list(self._hooks):
            try:
                await hook(req)
            except AdmissionDenied as denied:
                raise denied.to_api_error() from denied
            except ApiError:
                raise
            except Exception as exc:
                # A crashing webhook fails the request (failurePolicy: Fail), it does not crash the server.
                log.exception("admission hook failed", hook=getattr(hook, "__qualname__", repr(hook)))
                raise ApiError(
                    500,
                    f"Internal error occurred: admission hook {getattr(hook, '__qualname__', hook)!s} "
                    f"failed: {exc}",
                    "InternalError",
                ) from exc

    async def _guaranteed_update(
        self,
        *,
        rt: ResourceType,
        ns: str,
        name: str,
        transform: Callable[[dict[str, Any]], dict[str, Any]],
        precondition: str | None,
        subresource: str,
        admission: bool,
        dry_run: bool,
        verb: str,
        field_manager: str | None,
        managed_operation: str = "Update",
    ) -> dict[str, Any]:
        if subresource and not (subresource == "status" and rt.status_subresource):
            raise errors.not_found(rt.group, f"{rt.plural}/{subresource}", name)
        for _attempt in range(_MAX_UPDATE_RETRIES):
            old = self.get(rt, ns, name)
            if precondition is not None and precondition != old["metadata"].get("resourceVersion"):
                raise errors.conflict(rt.group, rt.plural, name)
            new = transform(old)
            check_type_meta(rt, new)
            validate_object(rt, new)
            new = prepare_update(rt, old, new, subresource)
            if admission and self._hooks:
                new = clone(new)  # hooks may mutate deeply: detach from subtrees shared with `old`
                await self._admit(
                    operation="UPDATE",
                    rt=rt,
                    ns=ns,
                    name=name,
                    subresource=subresource,
                    obj=new,
                    old=old,
                    dry_run=dry_run,
                )
                if self.try_get(rt, ns, name) is not old:
                    if precondition is not None:
                        raise errors.conflict(rt.group, rt.plural, name)
                    continue
            new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
            if new == old or dry_run:
                return new if dry_run else old  # no-op writes do not bump the RV nor emit events
            meta = new["metadata"]
            if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                return self._commit(rt, "DELETED", (ns, name), new, old)
            if self.managed_fields:
                record_managed_fields(
                    rt, new, field_manager or DEFAULT_MANAGER, subresource, managed_operation
                )
            return self._commit(rt, "MODIFIED", (ns, name), new, old)
        log.warning("update retries exhausted", resource=rt.key, name=name, verb=verb)
        raise errors.conflict(rt.group, rt.plural, name)

    def _commit(
        self, rt: ResourceType, type_: str, key: Key, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Store (or remove) `obj` under a fresh RV and fan the event out. Synchronous by design."""
        rt = self.registry.by_key(rt.key) or rt  # events carry the storage version's type
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        table = self._objects[rt.key]
        if type_ == "DELETED":
            table.pop(key, None)
            self._key_order[rt.key] = None
        else:
            if key not in table:
                self._key_order[rt.key] = None
            table[key] = obj
        ev = WatchEvent(type_, rt, self._rv, obj, old)
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._floor = self._history[0].rv
        self._history.append(ev)
        for w in self._watchers[rt.key]:
            w.offer(ev)
            if w.pending * 2 > w.max_queue:
                self._pressure = True
        ev.forget_lines()  # history keeps objects, not bytes: a resuming watch re-encodes what it replays
        if self._event_observers:
            t = time.perf_counter()
            for cb in self._event_observers:
                try:
                    cb(type_, rt.plural, obj, t)
                except Exception:
                    log.exception("event observer failed")
        return obj

    def _delete_namespace_contents(self, namespace: str) -> None:
        """Namespace deletion removes what it contains (the namespace controller's job, done at once)."""
        for rt in self.registry.storage_types:
            if not rt.namespaced:
                continue
            for key in [k for k in self._objects[rt.key] if k[0] == namespace]:
                old = self._objects[rt.key][key]
                self._commit(rt, "DELETED", key, shallow_copy(old), old)
