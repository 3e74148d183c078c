"""`ApiServer`: the embedded Kubernetes API server (aiohttp on 127.0.0.1) and its in-process controls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
from collections import Counter
from pathlib import Path

import structlog
from aiohttp import web

from simulator.apiserver.admin import make_admin
from simulator.apiserver.admission import AdmissionHook
from simulator.apiserver.aggregation import AggregatedApi
from simulator.apiserver.faults import Faults
from simulator.apiserver.handlers import Handlers
from simulator.apiserver.httputil import RequestObserver
from simulator.apiserver.kubeconfig import write_kubeconfig
from simulator.apiserver.registry import Registry
from simulator.apiserver.store import EventObserver, Store
from simulator.apiserver.streaming import WatchSettings
from simulator.apiserver.tls import ServingCert, make_serving_cert

log = structlog.get_logger(__name__)

_FAULT_TICK = 0.1


class ApiServer:
    """A Kubernetes API server speaking the real wire protocol, backed by an in-memory store.

    `namespaces` are created at start (default, kube-system) because namespaced creates need them.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        seed: int = 0,
        history_size: int = 10_000,
        watch_queue_size: int = 16384,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
        registry: Registry | None = None,
        host: str = "127.0.0.1",
        namespaces: tuple[str, ...] = ("default", "kube-system"),
        managed_fields: bool = True,
        tls: bool = False,
    ) -> None:
        self.host = host
        self.token = token
        self.store = Store(
            registry,
            history_size=history_size,
            watch_queue_size=watch_queue_size,
            rng=random.Random(seed),
            managed_fields=managed_fields,
        )
        self.faults = Faults(rng=random.Random(seed + 1))
        self.faults._store = self.store
        self.handlers = Handlers(
            self.store,
            self.faults,
            WatchSettings(bookmark_interval=bookmark_interval, default_timeout=default_watch_timeout),
            token=token,
            admin=make_admin(self),
        )
        self._initial_namespaces = namespaces
        #: HTTPS with a throwaway self-signed certificate (needed for kubectl with a token).
        self.tls = tls
        self.serving_cert: ServingCert | None = None
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> str:
        """Start serving; returns the base URL (`http://127.0.0.1:<port>`)."""
        for ns in self._initial_namespaces:
            if self.store.try_get("namespaces", None, ns) is None:
                await self.store.create("namespaces", {"metadata": {"name": ns}}, admission=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handlers.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        ssl_context = None
        if self.tls:
            self._tls_dir = tempfile.TemporaryDirectory(prefix="hotplug-sim-tls-")
            self.serving_cert = await make_serving_cert(Path(self._tls_dir.name), self.host)
            ssl_context = self.serving_cert.server_context()
        site = web.TCPSite(self._runner, self.host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None and hasattr(server, "sockets")
        actual_port = server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{self.host}:{actual_port}"
        self.handlers.server_address = f"{self.host}:{actual_port}"
        self._ticker = asyncio.create_task(self._tick(), name="apiserver-fault-ticker")
        log.info("apiserver started", url=self.url)
        return self.url

    async def stop(self) -> None:
        """Close open watches (clean end of stream) and stop serving."""
        self.handlers.watch_close_all()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await asyncio.sleep(0)  # let watch handlers observe the close and end their streams
            await self._runner.cleanup()
            self._runner = None
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None
        log.info("apiserver stopped", url=self.url)

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(_FAULT_TICK)
            now = loop.time()
            self.faults.tick(now - last)
            last = now

    # ------------------------------------------------------------------ hooks and observers

    def add_admission(self, hook: AdmissionHook) -> None:
        self.store.add_admission(hook)

    def add_aggregated_api(self, api: AggregatedApi) -> None:
        """Serve an extension API server's group (as an APIService would make kube-apiserver do)."""
        self.handlers.aggregated[api.group] = api

    def add_request_observer(self, cb: RequestObserver) -> None:
        self.handlers.request_observers.append(cb)

    def add_event_observer(self, cb: EventObserver) -> None:
        self.store.add_event_observer(cb)

    @property
    def request_counts(self) -> Counter[tuple[str, str]]:
        return self.handlers.request_counts

    def compact(self) -> int:
        """Forget watch history now; returns the RV from which watches can still resume."""
        return self.store.compact()

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None) -> Path:
        """Write a kubeconfig for this server; `token` defaults to the server's own token."""
        if not self.url:
            raise RuntimeError("start() the server before writing a kubeconfig")
        ca = self.serving_cert.cert.read_bytes() if self.serving_cert is not None else None
        return write_kubeconfig(path, self.url, token if token is not None else self.token, ca_pem=ca)
