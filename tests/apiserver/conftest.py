"""Fixtures: a running embedded API server and a kubernetes-asyncio client configured from its kubeconfig."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from tests.apiserver_fixtures import kubeconfig, server  # noqa: F401 - fixtures


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[ApiClient]:
    client = await new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        await client.close()


KV = ("kubevirt.io", "v1")


def status_of(exc: BaseException) -> dict[str, object]:
    """The Status object an ApiException carries."""
    import json

    body = getattr(exc, "body", None)
    assert isinstance(body, (str, bytes)), f"no body on {exc!r}"
    out = json.loads(body)
    assert isinstance(out, dict)
    return out
