"""The embedded API server as pytest fixtures, shared by the tiers that test against it directly
(``tests/apiserver``, ``tests/agent_io``): import them into a conftest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator.apiserver import ApiServer


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    srv = ApiServer(bookmark_interval=0.2, history_size=1000)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def kubeconfig(server: ApiServer, tmp_path: Path) -> Path:
    return server.write_kubeconfig(tmp_path / "kubeconfig")


__all__ = ["kubeconfig", "server"]
