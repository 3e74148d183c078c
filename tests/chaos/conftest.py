"""Chaos tier: the agent as subprocesses against a simulated cluster that injects faults.

Judged from the cluster's own state (``simulator.report``), never from timings: waits have deadlines
only as safety nets. Short variants run in ``make test``; long ones need ``HOTPLUG_CHAOS_LONG=1``
(docs/testing.md).
"""

from __future__ import annotations

import os

import pytest

from simulator.testing import quiet_logs

LONG = os.environ.get("HOTPLUG_CHAOS_LONG") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    skip_long = pytest.mark.skip(reason="long chaos variant: set HOTPLUG_CHAOS_LONG=1")
    for item in items:
        if not str(item.fspath).startswith(here):
            continue
        item.add_marker(pytest.mark.chaos)
        if item.get_closest_marker("slow") is not None and not LONG:
            item.add_marker(skip_long)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()
