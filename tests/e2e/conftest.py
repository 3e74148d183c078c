"""e2e tier: the real agent (``agent.app.run``) in-process against the simulated cluster over HTTP."""

from __future__ import annotations

import os

import pytest

from simulator.testing import quiet_logs


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: the real agent in-process against the simulated cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()
