"""Watch requests over HTTP: parameters, the initial events, then a chunked stream of JSON lines.

The store feeds each watcher's queue synchronously at commit time; this module only drains queues to
the socket, adds BOOKMARKs, enforces `timeoutSeconds`, and notices clients that went away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from simulator.apiserver.errors import ApiError, expired
from simulator.apiserver.faults import Faults
from simulator.apiserver.httputil import JSON, field_allowed, query_bool
from simulator.apiserver.routing import Target
from simulator.apiserver.selectors import parse_field_selector, parse_label_selector
from simulator.apiserver.store import Store
from simulator.apiserver.table import wants_table
from simulator.apiserver.watch import Close, Watcher, WatchFilter, encode

log = structlog.get_logger(__name__)

#: Wake at least this often to notice clients that went away while nothing was sent.
_LIVENESS_CHECK = 1.0


@dataclass
class WatchSettings:
    bookmark_interval: float = 1.0
    #: Upper bound when the client gives no timeoutSeconds (the real server picks 30-60 min).
    default_timeout: float = 1800.0
    write_batch: int = 1000


class WatchStreamer:
    """Serves `?watch=true` requests from a store, with the fault hooks that concern watches."""

    def __init__(self, store: Store, faults: Faults, settings: WatchSettings) -> None:
        self.store = store
        self.faults = faults
        self.watch_settings = settings

    async def serve(
        self, request: web.Request, target: Target, on_started: Callable[[], None]
    ) -> web.StreamResponse:
        """Answer a watch; `on_started` is called when the 200 is committed (for request observers)."""
        q = request.query
        rt = target.rtype
        labels = parse_label_selector(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector"), field_allowed(target))
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
                raise expired(since, self.store.resource_version)
            initial = self.store.open_watch(watcher, since)
        except ApiError as err:
            if err.code != 410:
                raise
            # The real server answers 200 and sends the error as a watch event.
            error_line = b'{"type":"ERROR","object":' + encode(err.status()) + b"}\n"
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        on_started()
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

    def close_all(self) -> None:
        for w in self.store.watchers():
            w.close(Close.EOF)
