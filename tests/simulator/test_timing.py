"""KubeVirt's own timing in the simulator: the 5 s re-check of a Pending migration over a limit (and the
MigrationPriorityQueue gate of v1.7+), the workload updater's budget of running migrations only, and
the backoff of a workload-update migration after a failed one. Margins are wide on purpose: these check
what wakes a migration, not how fast the machine is."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from agent.kubevirt import ANNOTATION_WORKLOAD_UPDATE
from simulator.cluster import KUBEVIRT_NAMESPACE, SimulatedCluster
from simulator.kubevirt import status
from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.migration import MigrationController
from simulator.kubevirt.workload_updater import WorkloadUpdater
from simulator.manifests import vm_manifest
from tests.simulator.conftest import MERGE_KW, G, V, fast_config, get, migrate, wait_for
from tests.simulator.test_integration import wait_vmim


async def _two_migrations_one_slot(tmp_path: Path, version: str, gates: list[str]) -> float:
    """Cluster limit 1, KubeVirt's real 5 s re-check (time scale 1), 0.3 s migrations: the seconds the
    second VMIM stays Pending after the first one succeeded."""
    cfg = fast_config(
        kubevirt_version=version,
        parallel_migrations_per_cluster=1,
        time_scale=1.0,
        migration_mean_seconds=0.3,
    )
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            if gates:
                patch = {"spec": {"configuration": {"developerConfiguration": {"featureGates": gates}}}}
                await api.patch_namespaced_custom_object(
                    G, V, KUBEVIRT_NAMESPACE, "kubevirts", "kubevirt", patch, **MERGE_KW
                )
                await asyncio.sleep(0.2)  # the controllers see the CR through their informer
            await cluster.seed([vm_manifest("default", "first"), vm_manifest("default", "second")])
            m1 = await migrate(api, "first")
            await wait_vmim(api, m1["metadata"]["name"], "Scheduling")
            m2 = await migrate(api, "second")
            await wait_vmim(api, m2["metadata"]["name"], "Pending")
            await wait_vmim(api, m1["metadata"]["name"], "Succeeded")
            freed = time.monotonic()

            async def admitted() -> bool:
                m = await get(api, "virtualmachineinstancemigrations", m2["metadata"]["name"])
                return m.get("status", {}).get("phase") not in ("", "Pending")

            await wait_for(admitted, timeout=15, what="second migration admitted")
            return time.monotonic() - freed
        finally:
            await client.close()


async def test_pending_over_the_limit_waits_for_its_recheck(tmp_path: Path) -> None:
    # v1.7 without the gate: nothing wakes the Pending VMIM when the slot frees; its 5 s re-check,
    # due about 5 s after its creation, admits it (the first migration took 0.3 s of those).
    waited = await _two_migrations_one_slot(tmp_path, "v1.7.0", [])
    assert waited > 2.0


async def test_priority_queue_gate_rechecks_pending_when_a_slot_frees(tmp_path: Path) -> None:
    waited = await _two_migrations_one_slot(tmp_path, "v1.7.0", ["MigrationPriorityQueue"])
    assert waited < 2.0


async def test_gate_has_no_effect_before_v17(tmp_path: Path) -> None:
    waited = await _two_migrations_one_slot(tmp_path, "v1.6.0", ["MigrationPriorityQueue"])
    assert waited > 2.0


# ------------------------------------------------------------------------------- pure bookkeeping


class _World:
    """What the workload updater and the backoff check read of the world, without I/O."""

    def __init__(self, config: KubeVirtSimConfig) -> None:
        from simulator.kubevirt.kube import Informer

        self.config = config
        self.vmis = Informer.__new__(Informer)
        self.vmims = Informer.__new__(Informer)
        self.kubevirts = Informer.__new__(Informer)
        for inf in (self.vmis, self.vmims, self.kubevirts):
            inf.handlers = []
            inf.cache = {}


def _vmim(name: str, vmi: str, phase: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", **meta},
        "spec": {"vmiName": vmi},
        "status": {"phase": phase} if phase else {},
    }


async def test_updater_budget_counts_running_migrations_only() -> None:
    world: Any = _World(KubeVirtSimConfig())
    updater = WorkloadUpdater(world)
    for name, phase in (
        ("p1", "Pending"),
        ("p2", "Pending"),
        ("u", ""),
        ("r", "Scheduling"),
        ("t", "Running"),
    ):
        await updater._on_vmim("ADDED", _vmim(name, f"vmi-{name}", phase), None)
    assert len(updater.unfinished) == 5
    assert updater.running == {("ns", "r"), ("ns", "t")}  # Pending and unset do not take the budget
    await updater._on_vmim("MODIFIED", _vmim("t", "vmi-t", "Succeeded"), None)
    assert updater.running == {("ns", "r")} and ("ns", "t") not in updater.unfinished


async def test_updater_expectations_observed_by_added_events() -> None:
    world: Any = _World(KubeVirtSimConfig())
    updater = WorkloadUpdater(world)
    updater.expected = 2
    await updater._on_vmim("ADDED", _vmim("x", "a", ""), None)  # not ours: no annotation
    assert updater.expected == 2
    ours = {"annotations": {ANNOTATION_WORKLOAD_UPDATE: ""}}
    await updater._on_vmim("ADDED", _vmim("y", "b", "", **ours), None)
    await updater._on_vmim("ADDED", _vmim("z", "c", "", **ours), None)
    assert updater.expected == 0


def test_backoff_after_failed_workload_update_migrations() -> None:
    world: Any = _World(KubeVirtSimConfig(time_scale=0.5))
    ctrl = MigrationController.__new__(MigrationController)
    ctrl.world = world
    ctrl.finalized = {}
    ctrl.unfinished_by_vmi = {}
    ours = {"annotations": {ANNOTATION_WORKLOAD_UPDATE: ""}}
    failed_at = 1000.0

    def failed(name: str, created: str) -> dict[str, Any]:
        m = _vmim(name, "v", "Failed", creationTimestamp=created, **ours)
        m["status"]["phaseTransitionTimestamps"] = [
            {"phase": "Failed", "phaseTransitionTimestamp": status.rfc3339(failed_at)}
        ]
        return m

    old = failed("old", "2026-01-01T00:00:01Z")
    new = _vmim("new", "v", "Pending", creationTimestamp="2026-01-01T00:00:02Z", **ours)
    for m in (old, new):
        world.vmims.cache[("ns", m["metadata"]["name"])] = m
    ctrl.finalized[("ns", "v")] = OrderedDict({("ns", "old"): None})
    ctrl.unfinished_by_vmi[("ns", "v")] = {("ns", "new"): ""}
    # One failed before it: 20 s, scaled by 0.5 = 10 s after that failure.
    assert ctrl._backoff_left(("ns", "v"), new, failed_at + 4.0) == 6.0
    # Two failed before it: doubled.
    older = failed("older", "2026-01-01T00:00:00Z")
    world.vmims.cache[("ns", "older")] = older
    ctrl.finalized[("ns", "v")][("ns", "older")] = None
    assert ctrl._backoff_left(("ns", "v"), new, failed_at + 4.0) == 16.0
    # A user's migration (no annotation) has no backoff.
    plain = _vmim("plain", "v", "Pending", creationTimestamp="2026-01-01T00:00:03Z")
    assert ctrl._backoff_left(("ns", "v"), plain, failed_at) == 0.0
