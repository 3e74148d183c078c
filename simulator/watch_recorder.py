"""The ground-truth :class:`~simulator.report.Recorder`, fed by watches over HTTP (any API server).

On the embedded server the Recorder is an in-process event observer reading the server's store. Against
a real kube-apiserver it cannot be: :class:`WatchRecorder` list+watches NetworkAttachmentDefinitions,
VMs, VMIs, VMIMs and core/v1 Events through a kubeconfig, keeps its own caches (the ``try_get`` read
view the Recorder needs) and turns every watch event into ``Recorder.observe(type, resource, object, t)``.

What differs from the in-process observer: each resource is its own stream, so the order between
resources is not the server's commit order (within one resource it is). The Recorder's checks are made
per resource (VMIM concurrency from the VMIM stream, completions re-checked on every VM/VMI event), so
this only moves completion times by the watch latency. On a relist (410 Gone, or a broken watch that
cannot resume) objects the caches already know are replayed as ``MODIFIED`` (never a second
``ADDED``: that would count a migration or an agent Event twice), new ones as ``ADDED``, vanished ones
as ``DELETED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from agent.kubevirt import GROUP, VERSION, VMIMS, VMIS, VMS
from simulator.kubevirt.pods import NAD_GROUP, NAD_VERSION, NADS
from simulator.report import Recorder

log = structlog.get_logger("simulator.watch_recorder")

EVENTS = "events"
#: Watched in this order; the Recorder reads VMs and VMIs when a VMIM appears, so those come first, and
#: NADs before them (a VMI whose NAD is missing is judged ``network-missing``).
RESOURCES = (NADS, VMS, VMIS, VMIMS, EVENTS)
#: The API group and version of each custom resource watched.
_GROUP_VERSION = {
    NADS: (NAD_GROUP, NAD_VERSION),
    VMS: (GROUP, VERSION),
    VMIS: (GROUP, VERSION),
    VMIMS: (GROUP, VERSION),
}

Obj = dict[str, Any]
Key = tuple[str, str]


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class WatchRecorder:
    """``await start()`` (lists and watches, returns once every cache is synced) … ``report()`` …
    ``await stop()``. ``namespaces``: watch these only (one watch per namespace and resource); None or
    empty: all namespaces."""

    def __init__(
        self,
        kubeconfig: Path | str,
        namespaces: Sequence[str] | None = None,
        *,
        watch_timeout_seconds: int = 240,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespaces: tuple[str | None, ...] = tuple(namespaces) if namespaces else (None,)
        self.recorder = Recorder(self)
        self._caches: dict[str, dict[Key, Obj]] = {r: {} for r in RESOURCES}
        self._timeout = watch_timeout_seconds
        self._client: ApiClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Number of watch events delivered to the Recorder, and of relists (410 or broken watches).
        self.events_seen = 0
        self.relists = 0

    # -- the Recorder's read view
    def try_get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._caches.get(resource, {}).get((namespace or "", name))

    def objects(self, resource: str) -> list[Obj]:
        return list(self._caches[resource].values())

    # -- lifecycle
    async def start(self, sync_timeout: float = 60.0) -> None:
        self._client = await new_client_from_config(config_file=self.kubeconfig)
        synced: list[asyncio.Event] = []
        for resource in RESOURCES:
            for ns in self.namespaces:
                ev = asyncio.Event()
                synced.append(ev)
                task = asyncio.create_task(self._run(resource, ns, ev), name=f"watch-{resource}-{ns}")
                self._tasks.append(task)
        deadline = time.monotonic() + sync_timeout
        while not all(e.is_set() for e in synced):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"watch caches not synced after {sync_timeout}s")
            await asyncio.sleep(0.05)

    def check(self) -> None:
        """Raise the error of a watch task that ended (a watch only ends on a bug or a 4xx other than 410)."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    raise exc

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> WatchRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- list + watch
    def _list_call(
        self, resource: str, ns: str | None
    ) -> tuple[Callable[..., Awaitable[Any]], tuple[str, ...]]:
        assert self._client is not None
        if resource == EVENTS:
            core = CoreV1Api(self._client)
            if ns is None:
                return core.list_event_for_all_namespaces, ()
            return core.list_namespaced_event, (ns,)
        custom = CustomObjectsApi(self._client)
        group, version = _GROUP_VERSION[resource]
        if ns is None:
            return custom.list_cluster_custom_object, (group, version, resource)
        return custom.list_namespaced_custom_object, (group, version, ns, resource)

    async def _list(self, resource: str, ns: str | None) -> str:
        fn, args = self._list_call(resource, ns)
        if resource == EVENTS:  # raw JSON: no model round trip
            resp = await fn(*args, _preload_content=False)
            async with resp:
                body: Obj = await resp.json()
        else:
            body = await fn(*args)
        cache = self._caches[resource]
        items: list[Obj] = sorted(body.get("items") or [], key=_rv)
        fresh = {_key(o) for o in items}
        for key in [k for k in cache if k not in fresh and (ns is None or k[0] == ns)]:
            self._deliver("DELETED", resource, cache[key])
        for obj in items:
            self._deliver("MODIFIED" if _key(obj) in cache else "ADDED", resource, obj)
        return str((body.get("metadata") or {}).get("resourceVersion", ""))

    def _deliver(self, event_type: str, resource: str, obj: Obj) -> None:
        cache = self._caches[resource]
        key = _key(obj)
        if event_type == "DELETED":
            cache.pop(key, None)
        else:
            old = cache.get(key)
            if old is not None and _rv(obj) < _rv(old):
                return  # an older copy (relist racing a watch): the cache already has newer
            cache[key] = obj
        self.events_seen += 1
        self.recorder.observe(event_type, resource, obj, time.time())

    async def _run(self, resource: str, ns: str | None, synced: asyncio.Event) -> None:
        backoff = 0.05
        rv = ""
        need_list = True
        while True:
            try:
                if need_list:
                    if synced.is_set():
                        self.relists += 1
                    rv = await self._list(resource, ns)
                    need_list = False
                    synced.set()
                fn, args = self._list_call(resource, ns)
                w = watch.Watch()
                async with w.stream(
                    fn,
                    *args,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self._timeout,
                ) as stream:
                    async for event in stream:
                        type_ = str(event["type"])
                        obj: Obj = event["raw_object"]
                        new_rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                        if new_rv:
                            rv = new_rv
                        if type_ in ("ADDED", "MODIFIED", "DELETED"):
                            self._deliver(type_, resource, obj)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    need_list = True
                    continue
                if exc.status in (401, 403, 404):
                    raise  # misconfigured: the judge must not silently see nothing
                log.warning("watch failed", resource=resource, namespace=ns, status=exc.status)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                log.debug("watch interrupted", resource=resource, namespace=ns, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
