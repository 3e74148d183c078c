"""The two API servers the conformance suite runs on, and a thin raw-HTTP client for them.

* ``real``: kube-apiserver + etcd from ``tests/controlplane/cluster.py`` (HTTPS, client certificates).
* ``embedded``: ``simulator.apiserver.ApiServer`` (HTTP, optional bearer token), started per test in the
  test's own event loop.

The suite talks raw HTTP (aiohttp) rather than through kubernetes-asyncio so that status codes,
``Status`` bodies, content types and the watch stream are observed exactly as sent.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


@dataclass
class Backend:
    """One API server under test. ``compact`` makes the server forget history up to now, the way
    etcd compaction does on a real cluster, and returns the compacted resourceVersion."""

    name: str
    kubeconfig: Path
    compact: Callable[[], Awaitable[int]]


@dataclass
class Response:
    status: int
    body: Any
    content_type: str

    @property
    def reason(self) -> str | None:
        """``reason`` of a ``Status`` body (Conflict, NotFound, ...)."""
        if isinstance(self.body, dict) and self.body.get("kind") == "Status":
            reason = self.body.get("reason")
            return str(reason) if reason is not None else None
        return None

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message", ""))
        return str(self.body)

    def ok(self) -> dict[str, Any]:
        assert 200 <= self.status < 300, f"HTTP {self.status}: {self.body}"
        assert isinstance(self.body, dict)
        return self.body


class KubeHttp:
    """Minimal Kubernetes REST client from a kubeconfig (server, CA, client cert or token)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server: str = cluster["server"].rstrip("/")
        self.headers: dict[str, str] = {"Accept": JSON}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.ssl: ssl.SSLContext | None = None
        if self.server.startswith("https://"):
            self._tmp = tempfile.TemporaryDirectory(prefix="kubehttp-")
            tmp = Path(self._tmp.name)
            ca = cluster.get("certificate-authority-data")
            self.ssl = ssl.create_default_context(cadata=base64.b64decode(ca).decode() if ca else None)
            if user.get("client-certificate-data"):
                (tmp / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
                (tmp / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
                self.ssl.load_cert_chain(str(tmp / "c.crt"), str(tmp / "c.key"))
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.session.close()

    async def reconnect(self) -> None:
        """Drop pooled connections (after the server restarted)."""
        await self.session.close()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
    ) -> Response:
        headers = dict(self.headers)
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        async with self.session.request(
            method, f"{self.server}{path}", data=data, headers=headers, params=params, ssl=self.ssl or True
        ) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            parsed: Any = raw.decode(errors="replace")
            if raw and "json" in ctype:
                parsed = json.loads(raw)
            return Response(resp.status, parsed, ctype)

    async def get(self, path: str, **params: str) -> Response:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any) -> Response:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Any) -> Response:
        return await self.request("PUT", path, body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Response:
        return await self.request("PATCH", path, body, content_type)

    async def delete(self, path: str, body: Any = None) -> Response:
        return await self.request("DELETE", path, body)

    async def watch(
        self, path: str, seconds: float = 10.0, **params: str
    ) -> tuple[int, AsyncIterator[dict[str, Any]], Callable[[], Awaitable[None]]]:
        """Open ``?watch=true``; returns (HTTP status, events, close). A non-200 answer yields one
        pseudo-event ``{"type": "HTTP", "object": <body>}``."""
        query = {"watch": "true", "timeoutSeconds": str(int(seconds)), **params}
        resp = await self.session.get(
            f"{self.server}{path}",
            params=query,
            headers=self.headers,
            ssl=self.ssl or True,
            timeout=aiohttp.ClientTimeout(total=seconds + 5, sock_read=seconds + 5),
        )

        async def events() -> AsyncIterator[dict[str, Any]]:
            if resp.status != 200:
                raw = await resp.read()
                yield {"type": "HTTP", "object": json.loads(raw) if raw else None}
                return
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)

        async def close() -> None:
            resp.close()

        return resp.status, events(), close
