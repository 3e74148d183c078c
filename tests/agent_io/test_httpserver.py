"""The HTTP server: /metrics (Prometheus text and OpenMetrics), /livez heartbeat, /readyz."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from agent.httpserver import HttpServer
from metrics.definitions import HotplugMetrics
from tests.agent_io.conftest import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_endpoints() -> None:
    metrics = HotplugMetrics()
    metrics.set_leader(True)
    ready = {"value": False}
    clock = Clock()
    server = HttpServer(
        "127.0.0.1",
        0,
        registry=metrics.registry,
        ready=lambda: ready["value"],
        liveness_timeout=10,
        heartbeat_interval=0.05,
        clock=clock,
    )
    task = asyncio.create_task(server.run())
    try:
        await eventually(lambda: server.bound_port != 0, what="bound")
        base = f"http://127.0.0.1:{server.bound_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                assert "hotplug_agent_leader 1.0" in text
            headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
            async with http.get(f"{base}/metrics", headers=headers) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await resp.text()).rstrip().endswith("# EOF")
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
            ready["value"] = True
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/livez") as resp:
                assert resp.status == 200
            # Simulate a loop that stopped beating: the heartbeat task is stopped, time moves on.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.start()
            clock.now += 11
            async with http.get(f"http://127.0.0.1:{server.bound_port}/livez") as resp:
                assert resp.status == 503
                assert "heartbeat" in await resp.text()
            async with http.get(f"http://127.0.0.1:{server.bound_port}/nope") as resp:
                assert resp.status == 404
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()
