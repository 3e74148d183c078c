"""Fixtures of the ``kubevirt`` tier (``pytest -m kubevirt``): see cluster.py.

* ``kubevirt_pool`` (session): tiers by KubeVirt release, started on first use;
* ``kubevirt_tier`` (session): the default release's tier;
* ``node_side`` (per test): the node-side stand-in for that tier, running in the test's event loop;
* ``ns`` (per test): a fresh namespace whose VMs are deleted at the end (there is no namespace controller
  on this control plane, so namespaces themselves stay).

Tests of another release say so with ``@pytest.mark.kubevirt(version="v1.5.1")`` and use
``kubevirt_pool.get(version)``; the marker also makes the build happen before the first test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from simulator.real.node import NodeSide
from tests.kubevirt.cluster import DEFAULT_VERSION, Tier, TierPool, build_before_tests
from tests.kubevirt.helpers import Env, start_node_side


def pytest_collection_finish(session: pytest.Session) -> None:
    build_before_tests(session)


@pytest.fixture(scope="session")
def kubevirt_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TierPool]:
    pool = TierPool(tmp_path_factory.mktemp("kubevirt"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def kubevirt_tier(kubevirt_pool: TierPool) -> Tier:
    return kubevirt_pool.get(DEFAULT_VERSION)


@pytest.fixture
async def node_side(kubevirt_tier: Tier) -> AsyncIterator[NodeSide]:
    side = await start_node_side(kubevirt_tier)
    try:
        yield side
    finally:
        await side.stop()


@pytest.fixture
async def env(kubevirt_tier: Tier, node_side: NodeSide) -> AsyncIterator[Env]:
    """The default tier with its node side, a fresh namespace, admin clients; VMs deleted at the end."""
    async with Env.open(kubevirt_tier, node_side) as e:
        yield e
