"""A client-go style informer over raw JSON: LIST, then WATCH from the list's resourceVersion.

Why our own: kubernetes-asyncio's ``Watch`` tracks object (not list) resourceVersions, retries a 410
once with the same stale version, has no inactivity timeout by default and deserialises every event
twice. Here each scope (the whole cluster, or one namespace) runs one loop:

1. LIST (paged) → diff against the cache: new/changed keys emit ADDED/MODIFIED, vanished keys emit a
   synthetic DELETED (a delete missed while disconnected is never lost);
2. WATCH from the list RV with bookmarks, a randomised server ``timeoutSeconds`` (client-go: 5-10 min,
   so watchers never hang and never reconnect in lockstep) and a client read-inactivity timeout
   (aiohttp ``sock_read``) that catches half-open connections;
3. every watch ends in a :class:`WatchEnd` value that says why (``gone``, ``error``, ``timeout``,
   ``closed``: each restart is counted by it), whether to relist and whether to back off: on 410 Gone
   (HTTP answer or ERROR event) → relist; on a clean close → re-watch at once from the last RV
   (bookmarks keep it fresh); on errors/timeouts → re-watch after jittered exponential backoff.

Every raw object is parsed once by ``parse``; only the typed record is kept (plus its resourceVersion,
so a relist skips unchanged objects without parsing them again). Malformed objects are logged,
counted and dropped from the cache; they never crash the loop. Handlers run inline and must be cheap.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import aiohttp
import structlog

from agent.kube import ApiError, KubeClient, Resource, no_gc
from agent.startup import forbidden_hint

log = structlog.get_logger(__name__)

T = TypeVar("T")
Key = tuple[str, str]
#: ``(event_type, old, new)``: ADDED (old None), MODIFIED, DELETED (new None).
EventHandler = Callable[[str, T | None, T | None], None]
RestartCallback = Callable[[str, str], None]  # (resource, reason)
InvalidCallback = Callable[[str], None]  # (resource)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
_ALL = ""  # scope name of a cluster-wide watch


def _key(raw: dict[str, Any]) -> Key | None:
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = meta.get("namespace")
    return (ns if isinstance(ns, str) else "", name)


def _rv(raw: dict[str, Any]) -> str:
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        rv = meta.get("resourceVersion")
        if isinstance(rv, str):
            return rv
    return ""


@dataclass(frozen=True, slots=True)
class WatchEnd:
    """How one watch ended: why, whether the cache must be relisted first, whether to back off."""

    reason: Literal["closed", "gone", "error", "timeout"]
    relist: bool = False
    backoff: bool = True
    #: the server's ``Retry-After``: the backoff is at least this long.
    retry_after: float | None = None
    #: what went wrong, as the operator needs it (a 403 names the missing permission); "" when routine
    error: str = ""


_CLOSED = WatchEnd("closed", backoff=False)
_GONE = WatchEnd("gone", relist=True, backoff=False)


def _ended_by(exc: ApiError, error: str) -> WatchEnd:
    """A watch request the API server answered with an error (or that got no answer in time)."""
    if exc.status == 410:
        return WatchEnd("gone", relist=True, backoff=False, retry_after=exc.retry_after)
    if exc.status == 0 and exc.reason == "Timeout":
        return WatchEnd("timeout", retry_after=exc.retry_after, error=error)
    return WatchEnd("error", retry_after=exc.retry_after, error=error)


class _Backoff:
    """Jittered exponential backoff (client-go's wait.Jitter over a doubling delay)."""

    __slots__ = ("delay", "initial", "maximum")

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.delay = initial

    def jittered(self) -> float:
        """The next wait: the delay plus up to the same again of random jitter."""
        return self.delay * random.uniform(1.0, 2.0)

    def grow(self) -> None:
        self.delay = min(self.maximum, self.delay * 2)

    def reset(self) -> None:
        self.delay = self.initial


class Informer(Generic[T]):
    """Cache of parsed records of one resource, kept current by list+watch; see the module docstring.

    ``namespaces=None`` (or empty) watches cluster-wide; otherwise one watch per namespace.
    """

    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        parse: Callable[[dict[str, Any]], T],
        *,
        namespaces: Sequence[str] | None = None,
        handlers: Sequence[EventHandler[T]] = (),
        watch_timeout: tuple[int, int] = (300, 600),
        inactivity_timeout: float = 90.0,
        backoff_initial: float = 0.8,
        backoff_max: float = 30.0,
        backoff_reset_after: float = 5.0,
        page_size: int = 1000,  # see docs/configuration.md: memory high-water vs LIST round trips
        on_restart: RestartCallback | None = None,
        on_invalid: InvalidCallback | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.parse = parse
        self.scopes: tuple[str, ...] = tuple(sorted(set(namespaces))) if namespaces else (_ALL,)
        self._handlers: list[EventHandler[T]] = list(handlers)
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_reset_after = backoff_reset_after
        self.page_size = page_size
        self.on_restart = on_restart
        self.on_invalid = on_invalid
        self.cache: dict[Key, T] = {}
        self._rvs: dict[Key, str] = {}
        #: last resourceVersion seen per scope (list, event or bookmark); "" before the first list.
        self.resource_versions: dict[str, str] = {}
        self._synced_scopes: set[str] = set()
        self._synced = asyncio.Event()
        self.restarts: dict[str, int] = {}
        self.invalid = 0
        self.lists = 0

    # ------------------------------------------------------------------ reading

    def add_handler(self, handler: EventHandler[T]) -> None:
        self._handlers.append(handler)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def get(self, namespace: str, name: str) -> T | None:
        return self.cache.get((namespace, name))

    def __len__(self) -> int:
        return len(self.cache)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self.cache.values()))

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled; unexpected exceptions (e.g. from a handler) propagate."""
        if len(self.scopes) == 1:
            await self._run_scope(self.scopes[0])
            return
        async with asyncio.TaskGroup() as tg:
            for scope in self.scopes:
                tg.create_task(self._run_scope(scope), name=f"informer-{self.resource.plural}-{scope}")

    async def _run_scope(self, scope: str) -> None:
        """LIST when there is no resourceVersion to watch from, else WATCH; forever.

        Two states, told apart by ``rv``: empty means the cache must be (re)listed first. Each watch
        ends in a :class:`WatchEnd` that decides the next state and whether to wait before it.
        """
        namespace = scope or None
        backoff = _Backoff(self.backoff_initial, self.backoff_max)
        rv = ""
        while True:
            if not rv:
                rv = await self._list_or_wait(scope, namespace, backoff)
                continue
            started = time.monotonic()
            end = await self._watch_once(scope, namespace, rv)
            rv_before = rv
            rv = "" if end.relist else self.resource_versions.get(scope, rv)
            self._count_restart(end.reason)
            if end.retry_after:
                backoff.delay = max(backoff.delay, end.retry_after)
            lived = time.monotonic() - started
            # A watch that lived a while or moved the resourceVersion (events or bookmarks arrived) was
            # healthy: start the backoff over, so repeated cuts of working watches never escalate it.
            if lived >= self.backoff_reset_after or (not end.relist and rv != rv_before):
                backoff.reset()
            if end.backoff or (lived < 1.0 and end.reason == "closed"):
                # Never above backoff_max: a watch that keeps being cut (a flaky proxy, an API server
                # shedding load) must not leave the cache blind for minutes.
                wait = min(self.backoff_max, backoff.jittered())
                # A failed watch is worth one warning per backoff step (not one per attempt: the steps
                # grow, so a long outage stays readable); a watch closed early is routine.
                (log.warning if end.error else log.info)(
                    "informer_rewatch",
                    resource=self.resource.plural,
                    scope=scope,
                    reason=end.reason,
                    error=end.error or None,
                    retry_in=round(wait, 2),
                    relist=end.relist,
                )
                await asyncio.sleep(wait)
                backoff.grow()
            else:
                log.debug(
                    "informer_rewatch",
                    resource=self.resource.plural,
                    scope=scope,
                    reason=end.reason,
                    relist=end.relist,
                )

    async def _list_or_wait(self, scope: str, namespace: str | None, backoff: _Backoff) -> str:
        """The LIST's resourceVersion, or "" after waiting out a failed LIST (the caller lists again)."""
        try:
            return await self._list(scope, namespace)
        except ApiError as exc:
            wait = max(exc.retry_after or 0.0, backoff.jittered())
            log.warning(
                "informer_list_failed",
                resource=self.resource.plural,
                scope=scope,
                error=self._explain(exc, namespace),
                retry_in=round(wait, 2),
            )
            await asyncio.sleep(wait)
            backoff.grow()
            return ""

    async def _watch_once(self, scope: str, namespace: str | None, rv: str) -> WatchEnd:
        """One WATCH from ``rv`` until it ends; the ways a request can fail become a :class:`WatchEnd`."""
        try:
            return await self._watch(scope, namespace, rv)
        except ApiError as exc:
            return _ended_by(exc, self._explain(exc, namespace))
        except TimeoutError:
            return WatchEnd("timeout", error=f"no event or bookmark for {self.inactivity_timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return WatchEnd("error", error=repr(exc))

    def _explain(self, exc: ApiError, namespace: str | None) -> str:
        """The error as the operator needs it: a 403 names the missing permission and the chart's RBAC."""
        return forbidden_hint(exc, self.resource, namespace) if exc.status == 403 else str(exc)

    def _count_restart(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1
        if self.on_restart is not None:
            self.on_restart(self.resource.plural, reason)

    async def _list(self, scope: str, namespace: str | None) -> str:
        seen: set[Key] = set()
        list_rv = ""
        async for page, page_rv in self.kube.list_pages(self.resource, namespace, page_size=self.page_size):
            list_rv = page_rv
            with no_gc():  # parsing a page creates no cycles; see agent.kube.no_gc
                self._apply_page(page, seen)
            del page
        self.lists += 1
        self._delete_unseen(scope, seen)
        self.resource_versions[scope] = list_rv
        if scope not in self._synced_scopes:
            self._synced_scopes.add(scope)
            if len(self._synced_scopes) == len(self.scopes):
                self._synced.set()
                log.info("informer_synced", resource=self.resource.plural, objects=len(self.cache))
        return list_rv

    async def _watch(self, scope: str, namespace: str | None, rv: str) -> WatchEnd:
        lo, hi = self.watch_timeout
        async with self.kube.watch(
            self.resource,
            namespace,
            rv,
            timeout_seconds=random.randint(lo, max(lo, hi)),
            inactivity_timeout=self.inactivity_timeout,
        ) as events:
            async for event in events:
                etype = event.get("type")
                obj = event.get("object")
                if not isinstance(obj, dict):
                    continue
                if etype == "BOOKMARK":
                    new_rv = _rv(obj)
                    if new_rv:
                        self.resource_versions[scope] = new_rv
                    continue
                if etype == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        return _GONE
                    log.warning(
                        "informer_watch_error_event",
                        resource=self.resource.plural,
                        scope=scope,
                        code=code,
                        message=obj.get("message"),
                    )
                    return WatchEnd("error", error=f"watch error event {code}: {obj.get('message')}")
                if etype not in (ADDED, MODIFIED, DELETED):
                    log.warning("informer_unknown_event", resource=self.resource.plural, type=etype)
                    continue
                self._apply(str(etype), obj)
                new_rv = _rv(obj)
                if new_rv:
                    self.resource_versions[scope] = new_rv
        return _CLOSED

    # ------------------------------------------------------------------ cache updates

    def _parse(self, raw: dict[str, Any]) -> T | None:
        try:
            return self.parse(raw)
        except Exception as exc:  # malformed input must never stop the informer
            self.invalid += 1
            if self.on_invalid is not None:
                self.on_invalid(self.resource.plural)
            meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
            log.warning(
                "invalid_object",
                resource=self.resource.plural,
                namespace=meta.get("namespace") if isinstance(meta, dict) else None,
                name=meta.get("name") if isinstance(meta, dict) else None,
                error=str(exc),
                error_type=type(exc).__name__,
            )
            return None

    def _emit(self, etype: str, old: T | None, new: T | None) -> None:
        for handler in self._handlers:
            handler(etype, old, new)

    def _apply(self, etype: str, raw: dict[str, Any]) -> None:
        key = _key(raw)
        if key is None:
            self._parse(raw)  # counts and logs it
            return
        old = self.cache.get(key)
        if etype == DELETED:
            if key in self.cache:
                del self.cache[key]
                self._rvs.pop(key, None)
                self._emit(DELETED, old, None)
            return
        record = self._parse(raw)
        if record is None:
            # A record we can no longer read is dropped: acting on a stale copy would be worse.
            if old is not None:
                del self.cache[key]
                self._rvs.pop(key, None)
                self._emit(DELETED, old, None)
            return
        if old is not None and record == old:
            # Nothing the record holds changed (a status heartbeat; records that leave the
            # resourceVersion out of their equality): keep the cached object, so the new one dies young
            # instead of joining the long-lived objects every cyclic GC pass walks.
            record = old
        self.cache[key] = record
        self._rvs[key] = _rv(raw)
        self._emit(MODIFIED if old is not None else ADDED, old, record)

    def _apply_page(self, items: list[dict[str, Any]], seen: set[Key]) -> None:
        """Apply one LIST page: new/changed objects are (re)parsed; unchanged ones are skipped."""
        for raw in items:
            key = _key(raw)
            if key is None:
                self._parse(raw)
                continue
            seen.add(key)
            rv = _rv(raw)
            if key in self.cache and rv and self._rvs.get(key) == rv:
                continue  # unchanged since we last saw it
            self._apply(MODIFIED if key in self.cache else ADDED, raw)

    def _delete_unseen(self, scope: str, seen: set[Key]) -> None:
        """After a full LIST: keys of this scope the LIST did not return get a synthetic DELETED."""
        gone = [k for k in self.cache if (scope == _ALL or k[0] == scope) and k not in seen]
        for key in gone:
            old = self.cache.pop(key)
            self._rvs.pop(key, None)
            self._emit(DELETED, old, None)
