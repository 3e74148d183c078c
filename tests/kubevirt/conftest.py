"""Fixtures of the ``kubevirt`` tier (``pytest -m kubevirt``): see cluster.py.

* ``kubevirt_pool`` (session): tiers by KubeVirt release, started on first use;
* ``kubevirt_tier`` (session): the default release's tier;
* ``env`` (per test): that tier with its node side (running in the test's event loop), a fresh
  namespace whose VMs are deleted at the end (no namespace controller runs, so namespaces stay);
* ``kv_env`` (per test, twice): the same on the simulated cluster and on the real tier, for the
  conformance suite.

Tests of another release say so with ``@pytest.mark.kubevirt(version="v1.5.1")`` and use
``kubevirt_pool.get(version)``; the marker also makes the build happen before the first test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.kubevirt.cluster import DEFAULT_VERSION, Tier, TierPool, build_before_tests
from tests.kubevirt.helpers import Env, real_backend, simulated_backend


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
async def env(kubevirt_tier: Tier) -> AsyncIterator[Env]:
    """The default tier with its node side, a fresh namespace, admin clients; VMs deleted at the end."""
    async with real_backend(kubevirt_tier) as backend, Env.open(backend) as e:
        yield e


BACKENDS = [
    pytest.param("simulated", id="simulated"),
    pytest.param("real", marks=pytest.mark.kubevirt, id="real"),
]


#: What the conformance suite shows the simulated KubeVirt does differently, test → reason (docs/simulator.md
#: lists the same). Strict xfail on ``[simulated]`` only: a simulator that is fixed turns it into XPASS,
#: a failure, until the entry goes.
SIMULATOR_DIFFERENCES: dict[str, str] = {
    "test_the_vmi_reads_migrating_from_the_hand_off_before_the_migration_starts": (
        "the simulated migration controller writes the VMI's migrationState when the migration starts "
        "(Running), KubeVirt at the hand-off (Scheduled), before virt-handler's startTimestamp"
    ),
    "test_deleting_the_vm_during_a_migration_leaves_no_unfinished_vmim": (
        "the simulated migration controller is not woken by the VMI's deletion: a migration that would "
        "run on (stuck) stays Running; KubeVirt fails it once the VMI shuts down"
    ),
    "test_the_vmim_gets_the_vmis_migration_state_only_once_final": (
        "the simulated migration controller writes source/target node and pods into the VMIM's "
        "migrationState from Scheduling on; KubeVirt copies the VMI's migrationState only once final"
    ),
}


@pytest.fixture(params=BACKENDS)
async def kv_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """The same world on the simulated KubeVirt and on the real one (the default release)."""
    reason = SIMULATOR_DIFFERENCES.get(request.node.originalname)
    if request.param == "simulated" and reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    if request.param == "real":
        tier: Tier = request.getfixturevalue("kubevirt_tier")
        async with real_backend(tier) as backend, Env.open(backend) as e:
            yield e
        return
    async with simulated_backend(DEFAULT_VERSION, tmp_path) as backend, Env.open(backend) as e:
        yield e
