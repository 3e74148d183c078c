"""Fixtures: the embedded API server, a ``KubeClient`` on it, and tiny object/record helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.kube import VMS, KubeClient
from agent.model import InvalidObject
from simulator.manifests import vm_manifest
from tests.apiserver_fixtures import kubeconfig, server  # noqa: F401 - fixtures


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    errors: list[tuple[str, int]] = []
    client = await KubeClient.from_config(
        str(kubeconfig),
        request_timeout=5.0,
        retry_initial=0.01,
        retry_max=0.05,
        on_api_error=lambda verb, status: errors.append((verb, status)),
    )
    client.errors = errors  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.close()


@dataclass(frozen=True)
class Rec:
    """A stand-in record: what the informer keeps instead of the raw object."""

    namespace: str
    name: str
    rv: str
    color: str


def parse_rec(raw: dict[str, Any]) -> Rec:
    meta = raw.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get("bad") == "true":
        raise InvalidObject("virtualmachines", meta.get("namespace", ""), meta.get("name", ""), "bad label")
    return Rec(
        meta.get("namespace", ""), meta["name"], meta.get("resourceVersion", ""), labels.get("color", "")
    )


async def create_vm(kube: KubeClient, name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return await kube.create(VMS, namespace, vm_manifest(namespace, name, labels=labels))


async def eventually(
    check: Callable[[], bool],
    timeout: float = 5.0,  # noqa: ASYNC109
    what: str = "condition",
) -> None:
    """Poll ``check`` until true (tests never sleep a fixed time for an outcome)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
