"""The only I/O layer of the simulated KubeVirt controllers: kubernetes-asyncio, informers, work queues.

Why a real client over HTTP: the controllers must behave like KubeVirt's (list + watch with
resourceVersion, conflicts on stale writes) so they can run against a real kube-apiserver too
(docs/architecture.md). Informers are shared between controllers (one list+watch per resource) and
keep a write-through cache so a controller sees its own writes before the watch echoes them (like
client-go's mutation cache); work queues dedupe keys and never process one key concurrently
(client-go workqueue semantics), and are bounded.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import structlog
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from agent.aio import wait_event
from agent.kubevirt import GROUP, VERSION

log = structlog.get_logger("simulator.kubevirt")

PODS: Final = "pods"
NODES: Final = "nodes"
#: Core resources an Informer can follow too, by their cluster-wide list call.
CORE_LISTS: Final = {PODS: "list_pod_for_all_namespaces", NODES: "list_node"}
MERGE: Final = "application/merge-patch+json"
MAX_TOMBSTONES: Final = 50_000
JSON_PATCH: Final = "application/json-patch+json"
#: kubernetes-asyncio picks the first listed content type unless told (typed as Any for mypy).
MERGE_KW: dict[str, Any] = {"_content_type": MERGE}
JSON_PATCH_KW: dict[str, Any] = {"_content_type": JSON_PATCH}

Key = tuple[str, str]
Obj = dict[str, Any]
Handler = Callable[[str, Obj, Obj | None], Awaitable[None]]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def rv_of(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


def status_code(exc: BaseException) -> int:
    return int(getattr(exc, "status", 0) or 0)


class Kube:
    """Thin typed wrapper over ``CustomObjectsApi``/``CoreV1Api`` for kubevirt.io/v1 resources."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    async def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        try:
            out: Obj = await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return out

    async def create(self, plural: str, namespace: str, body: Obj) -> Obj:
        out: Obj = await self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        return out

    async def replace(self, plural: str, obj: Obj) -> Obj:
        ns, name = key_of(obj)
        out: Obj = await self.custom.replace_namespaced_custom_object(GROUP, VERSION, ns, plural, name, obj)
        return out

    async def merge_patch(
        self, plural: str, namespace: str, name: str, body: Obj, *, status: bool = False
    ) -> Obj:
        fn = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        out: Obj = await fn(GROUP, VERSION, namespace, plural, name, body, **MERGE_KW)
        return out

    async def json_patch(self, plural: str, namespace: str, name: str, ops: list[Obj]) -> Obj:
        out: Obj = await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, ops, **JSON_PATCH_KW
        )
        return out

    async def create_revision(self, body: Obj) -> None:
        """Create an apps/v1 ControllerRevision; one that exists already (a retried sync) is fine."""
        ns = str((body.get("metadata") or {}).get("namespace", ""))
        untyped: Any = body  # the client serialises dicts as they are
        try:
            await self.apps.create_namespaced_controller_revision(ns, untyped)
        except ApiException as exc:
            if exc.status != 409:
                raise

    async def get_revision(self, namespace: str, name: str) -> Obj | None:
        """An apps/v1 ControllerRevision as a dict, None when missing."""
        try:
            resp: Any = await self.apps.read_namespaced_controller_revision(
                name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out: Obj = json.loads(await resp.read())
        return out

    async def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- pods (virt-launcher pods: placement and the SR-IOV VFs they hold) --------------------------

    async def create_pod(self, body: Obj) -> Obj:
        """Create a pod and write the phase its body carries (create resets a pod's status)."""
        ns = str((body.get("metadata") or {}).get("namespace", ""))
        untyped: Any = body
        created = await _raw(await self.core.create_namespaced_pod(ns, untyped, _preload_content=False))
        wanted = body.get("status") or {}
        if wanted and (created.get("status") or {}).get("phase") != wanted.get("phase"):
            created = await self.patch_pod(created, {"status": wanted}, status=True)
        return created

    async def patch_pod(self, pod: Obj, patch: Obj, *, status: bool = False) -> Obj:
        ns, name = key_of(pod)
        fn = self.core.patch_namespaced_pod_status if status else self.core.patch_namespaced_pod
        return await _raw(await fn(name, ns, patch, _preload_content=False, **MERGE_KW))

    async def delete_pod(self, namespace: str, name: str) -> None:
        try:
            await _raw(await self.core.delete_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def event(
        self,
        involved: Obj,
        kind: str,
        reason: str,
        message: str,
        event_type: str = "Normal",
        *,
        component: str = "virtualmachine-controller",
    ) -> None:
        """A core/v1 Event like KubeVirt's recorder writes (best effort: failures are logged only)."""
        ns, name = key_of(involved)
        now = time.time()
        from simulator.kubevirt.status import rfc3339

        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": "kubevirt.io/v1",
                "kind": kind,
                "name": name,
                "namespace": ns,
                "uid": (involved.get("metadata") or {}).get("uid", ""),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": component},
            "firstTimestamp": rfc3339(now).split(".")[0] + "Z",
            "lastTimestamp": rfc3339(now).split(".")[0] + "Z",
            "count": 1,
        }
        try:
            await self.core.create_namespaced_event(ns, body)
        except (ApiException, OSError) as exc:
            log.debug("event write failed", reason=reason, error=str(exc))


async def _raw(resp: Any) -> Obj:
    """A response read without kubernetes-asyncio's models: it checks no status then, so check it here."""
    data = await resp.read()
    if not 200 <= resp.status <= 299:
        exc = ApiException(status=resp.status, reason=resp.reason)
        exc.body = data
        raise exc
    out: Obj = json.loads(data)
    return out


class Informer:
    """List + watch of one kubevirt.io resource (another group's with ``group``/``version``, or
    Pods/Nodes, :data:`CORE_LISTS`), cluster-wide or in one namespace, optionally by label selector, into a
    cache; fans events out to handlers.

    Relists on 410 Gone, re-watches from the last resourceVersion on a clean end of stream, and retries
    with backoff on errors. ``synced`` is set after the first list has been delivered.
    """

    def __init__(
        self,
        kube: Kube,
        plural: str,
        *,
        namespace: str | None = None,
        watch_timeout: int = 240,
        label_selector: str = "",
        group: str = GROUP,
        version: str = VERSION,
    ) -> None:
        self.kube = kube
        self.plural = plural
        self.group = group
        self.version = version
        self.namespace = namespace
        self.label_selector = label_selector
        self.cache: dict[Key, Obj] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self._watch_timeout = watch_timeout
        self._rv = ""
        #: resourceVersion of recent deletions, so a late write-through cannot resurrect an object.
        self._tombstones: OrderedDict[Key, int] = OrderedDict()

    @property
    def _list_fn(self) -> Any:
        core = CORE_LISTS.get(self.plural)
        if core is not None:
            return getattr(self.kube.core, core)
        if self.namespace is None:
            return self.kube.custom.list_cluster_custom_object
        return self.kube.custom.list_namespaced_custom_object

    def _list_args(self) -> tuple[str, ...]:
        if self.plural in CORE_LISTS:
            return ()
        if self.namespace is None:
            return (self.group, self.version, self.plural)
        return (self.group, self.version, self.namespace, self.plural)

    def _list_kwargs(self) -> dict[str, Any]:
        return {"label_selector": self.label_selector} if self.label_selector else {}

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def get(self, key: Key) -> Obj | None:
        return self.cache.get(key)

    def write_through(self, obj: Obj) -> None:
        """Record an object a controller just wrote (newer than the cache) so the next sync sees it."""
        key = key_of(obj)
        gone = self._tombstones.get(key)
        if gone is not None and gone >= rv_of(obj):
            return
        old = self.cache.get(key)
        if old is None or rv_of(obj) > rv_of(old):
            self.cache[key] = obj

    async def _dispatch(self, type_: str, obj: Obj, old: Obj | None) -> None:
        for handler in self.handlers:
            await handler(type_, obj, old)

    async def _apply(self, type_: str, obj: Obj) -> None:
        key = key_of(obj)
        old = self.cache.get(key)
        if type_ == "DELETED":
            self.cache.pop(key, None)
            self._tombstones[key] = rv_of(obj)
            self._tombstones.move_to_end(key)
            if len(self._tombstones) > MAX_TOMBSTONES:
                self._tombstones.popitem(last=False)
        elif old is None or rv_of(obj) >= rv_of(old):
            self.cache[key] = obj
            self._tombstones.pop(key, None)
        await self._dispatch(type_, obj, old)

    async def _list(self) -> None:
        if self.plural in CORE_LISTS:
            # core resources come back as typed models unless read raw; the caches hold plain dicts
            raw = await self._list_fn(*self._list_args(), **self._list_kwargs(), _preload_content=False)
            resp = json.loads(await raw.read())
        else:
            resp = await self._list_fn(*self._list_args(), **self._list_kwargs())
        items: list[Obj] = resp.get("items") or []
        self._rv = str((resp.get("metadata") or {}).get("resourceVersion", ""))
        fresh = {key_of(o): o for o in items}
        for key in [k for k in self.cache if k not in fresh]:
            gone = self.cache.pop(key)
            await self._dispatch("DELETED", gone, gone)
        for obj in items:
            await self._apply("ADDED", obj)

    async def run(self) -> None:
        backoff = 0.05
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self.synced.set()
                w = watch.Watch()
                async with w.stream(
                    self._list_fn,
                    *self._list_args(),
                    **self._list_kwargs(),
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self._watch_timeout,
                ) as stream:
                    async for event in stream:
                        type_ = event["type"]
                        obj = event["raw_object"]
                        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                        if rv:
                            self._rv = rv
                        if type_ in ("ADDED", "MODIFIED", "DELETED"):
                            await self._apply(type_, obj)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    need_list = True
                    continue
                log.warning("watch failed", resource=self.plural, status=exc.status)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                need_list = need_list or exc.status != 410
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                # Connection resets, payload errors, read timeouts: re-watch from the last resourceVersion
                # (the server replays what we missed, or answers 410 and we relist). Anything else is a
                # bug in a handler and propagates: the controller's TaskGroup fails loudly.
                log.debug("watch interrupted", resource=self.plural, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


class WorkQueue:
    """Bounded, de-duplicating work queue with delayed adds (client-go workqueue semantics).

    A key queued twice is processed once; a key added while being processed is processed again after;
    ``add_after`` keeps the earliest due time per key.
    """

    def __init__(self, maxsize: int = 200_000) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue(maxsize)
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._delayed: list[tuple[float, Key]] = []
        self._due: dict[Key, float] = {}
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queued)

    async def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        await self._queue.put(key)

    def add_after(self, key: Key, delay: float) -> None:
        due = time.monotonic() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, key))
        self._wake.set()

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    async def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            await self.add(key)

    async def run_delayed(self) -> None:
        """Moves due keys into the queue; one task per queue."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                due, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:
                    del self._due[key]
                    await self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            self._wake.clear()
            await wait_event(self._wake, timeout)


class ConflictError(RuntimeError):
    """An optimistic-concurrency write kept conflicting; the key is retried later."""


class Controller:
    """A controller: a bounded work queue, N workers calling ``sync(key)``, retry with backoff on errors."""

    name = "controller"

    def __init__(self, workers: int = 4) -> None:
        self.queue = WorkQueue()
        self.workers = workers
        self._failures: dict[Key, int] = {}

    async def sync(self, key: Key) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def enqueue(self, key: Key) -> None:
        await self.queue.add(key)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.sync(key)
                self._failures.pop(key, None)
            except (ApiException, aiohttp.ClientError, TimeoutError, OSError, ConflictError) as exc:
                # API trouble is retried with backoff (like client-go's rate-limited requeue); anything
                # else is a bug and ends the controller's TaskGroup, so the cluster reports it.
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                level = log.warning if status_code(exc) not in (409, 422) else log.debug
                level(
                    "sync failed, requeued",
                    controller=self.name,
                    key="/".join(key),
                    error=repr(exc),
                    attempt=n,
                )
                self.queue.add_after(key, min(0.02 * 2**n, 2.0))
            finally:
                await self.queue.done(key)

    async def run(self) -> None:
        """Run the workers and the delay pump under one TaskGroup: a crash ends the controller loudly."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.queue.run_delayed(), name=f"{self.name}-delay")
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"{self.name}-worker-{i}")
