"""``/metrics``, ``/livez`` and ``/readyz`` on one port (followers serve them too).

Why a heartbeat for liveness: the failure that matters is a blocked or wedged event loop (a sync call,
a CPU-bound loop). A task that stamps a monotonic timestamp every ``heartbeat_interval`` stops stamping
then, and ``/livez`` turns 503 once the stamp is older than ``liveness_timeout``. (The probe itself is
answered by the same loop, so a fully blocked loop times the kubelet's probe out — same verdict.)

Readiness is "caches synced": a follower with warm caches is ready (it can take over at once); a
process still listing, or still waiting for KubeVirt's API to be served, is not. A 503 says why
(``not_ready_reason``), so ``kubectl describe pod`` shows the cause of an unready agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from metrics.exposition import render

log = structlog.get_logger(__name__)


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        not_ready_reason: Callable[[], str] = lambda: "caches not synced",
        liveness_timeout: float = 30.0,
        heartbeat_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.ready = ready
        self.not_ready_reason = not_ready_reason
        self.liveness_timeout = liveness_timeout
        self.heartbeat_interval = heartbeat_interval
        self.clock = clock
        self.last_heartbeat = clock()
        self._runner: web.AppRunner | None = None
        self.bound_port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host or None, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self.port
        log.info("http_server_started", host=self.host, port=self.bound_port)
        return self.bound_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        """Serve and beat the heartbeat until cancelled, then stop serving."""
        await self.start()
        try:
            while True:
                self.last_heartbeat = self.clock()
                await asyncio.sleep(self.heartbeat_interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.stop())

    # ------------------------------------------------------------------ handlers

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = render(self.registry, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _livez(self, _request: web.Request) -> web.Response:
        age = self.clock() - self.last_heartbeat
        if age > self.liveness_timeout:
            return web.Response(status=503, text=f"event loop heartbeat is {age:.1f}s old\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"{self.not_ready_reason()}\n")
