"""Observe mode against KubeVirt's real workload updater.

With ``workloadUpdateStrategy.workloadUpdateMethods: [LiveMigrate]`` on the KubeVirt CR, KubeVirt ≥ 1.6
migrates a VMI by itself once its ``MigrationRequired`` condition turns True
(``pkg/virt-controller/watch/workload-updater/workload-updater.go``: ``isHotplugInProgress``). The agent in
``auto`` mode must stand down — no VMIM of its own — and still measure KubeVirt's migrations.

The tier's CR is patched for this test and restored in a ``finally``: virt-controller's workload updater
reads ``kv.Spec.WorkloadUpdateStrategy`` from its KubeVirt informer on every pass (``getUpdateData``) and
is re-queued by every CR update (``updateKubeVirt``), so no restart is needed. The migrations of
KubeVirt's own ``kubevirt-workload-update-*`` VMIMs below are the proof that the patch was read.
"""

from __future__ import annotations

from typing import Any

import pytest

from simulator.real.kubevirt import KubeVirtSettings
from tests.kubevirt.helpers import VMIMS, VMIS, Env, condition, info_sources, sample, wait_for

pytestmark = pytest.mark.kubevirt

#: KubeVirt's ``WorkloadUpdateMigrationAnnotation`` and its VMIMs' ``generateName``.
WORKLOAD_UPDATE_ANNOTATION = "kubevirt.io/workloadUpdateMigration"
WORKLOAD_UPDATE_PREFIX = "kubevirt-workload-update-"
MANAGED_BY = "app.kubernetes.io/managed-by"
#: bridge plugs wait out KubeVirt's 15 s grace (re-evaluated every 10 s), SR-IOV plugs do not.
PLUGS = {"wu-bridge-1": "bridge", "wu-bridge-2": "bridge", "wu-sriov": "sriov"}


async def test_auto_mode_stands_down_while_kubevirts_workload_updater_migrates(env: Env) -> None:
    await env.configure_kubevirt(KubeVirtSettings(workload_update_methods=("LiveMigrate",)))
    try:
        for name in PLUGS:
            await env.create_vm(name, [("net-a", "bridge")])
        await env.create_vm("wu-idle", [("net-a", "bridge")])
        async with env.agent(mode="auto") as metrics:

            async def observing() -> bool:
                return sample(metrics, "hotplug_agent_mode", mode="observe") == 1

            await wait_for(observing, "the agent in observe mode", 30)
            for name, binding in PLUGS.items():
                await env.plug(name, "hp1", binding)

            async def required() -> dict[str, Any] | None:
                return condition(await env.get(VMIS, "wu-sriov"), "MigrationRequired")

            cond = await wait_for(required, "MigrationRequired on the SR-IOV VMI", 30)
            assert (cond["status"], cond["reason"]) == ("True", "AutoMigrationDueToLiveUpdate")

            async def attached() -> bool:
                vmis = [await env.get(VMIS, name) for name in PLUGS]
                return all("domain" in info_sources(vmi, "hp1") for vmi in vmis)

            await wait_for(attached, "every plug attached by KubeVirt's migrations", 120)

            async def measured() -> bool:
                done = sample(metrics, "hotplug_agent_hotplugs_completed_total", operation="plug")
                kubevirt = sample(
                    metrics, "hotplug_agent_migrations_total", result="succeeded", initiator="kubevirt"
                )
                return done == len(PLUGS) and kubevirt == len(PLUGS)

            await wait_for(measured, "the agent counting KubeVirt's migrations and the completed plugs", 30)
            ours = sample(metrics, "hotplug_agent_migrations_total", result="succeeded", initiator="agent")
            assert sample(metrics, "hotplug_agent_migration_creates_total") == 0 and ours == 0
            durations = "hotplug_agent_migration_duration_seconds_count"
            assert sample(metrics, durations, result="succeeded", initiator="kubevirt") == len(PLUGS)
    finally:
        await env.configure_kubevirt(KubeVirtSettings())
    vmims = await env.list(VMIMS)
    assert [m for m in vmims if (m["metadata"].get("labels") or {}).get(MANAGED_BY)] == []
    by_vmi: dict[str, list[dict[str, Any]]] = {}
    for m in vmims:
        by_vmi.setdefault(m["spec"]["vmiName"], []).append(m)
    assert sorted(by_vmi) == sorted(PLUGS), sorted(by_vmi)  # none for the idle VM
    for name, ms in by_vmi.items():
        assert len(ms) == 1, (name, [m["metadata"]["name"] for m in ms])
        vmim = ms[0]
        assert vmim["metadata"]["name"].startswith(WORKLOAD_UPDATE_PREFIX)
        assert WORKLOAD_UPDATE_ANNOTATION in (vmim["metadata"].get("annotations") or {})
        assert vmim["status"]["phase"] == "Succeeded"
        assert condition(await env.get(VMIS, name), "MigrationRequired") is None
    events = await env.client_core().list_namespaced_event(env.ns)
    assert not [e for e in events.items if e.reason == "HotplugMigrationStarted"]


async def test_with_evict_kubevirt_restarts_a_non_migratable_vm_for_its_hot_plug(env: Env) -> None:
    """``workloadUpdateMethods: [LiveMigrate, Evict]``: a VMI that needs a migration for its hot plug but
    cannot live-migrate is evicted by KubeVirt's workload updater — the VM restarts with the interface.
    The agent reports such a VM blocked (``not-live-migratable``) in observe mode; KubeVirt restarts it.
    (The simulated workload updater has no ``Evict``: docs/simulator.md.)"""
    first = await env.create_vm("wu-evict", [("net-a", "bridge")], pod_binding="bridge")
    live = condition(first, "LiveMigratable")
    assert live is not None and live["status"] == "False"
    await env.configure_kubevirt(KubeVirtSettings(workload_update_methods=("LiveMigrate", "Evict")))
    try:
        async with env.agent(mode="auto") as metrics:
            await env.plug("wu-evict", "hp1", "sriov")

            async def restarted() -> dict[str, Any] | None:
                vmi = await env.get(VMIS, "wu-evict")
                fresh = vmi is not None and vmi["metadata"]["uid"] != first["metadata"]["uid"]
                return vmi if fresh and "domain" in info_sources(vmi, "hp1") else None

            vmi = await wait_for(restarted, "a new VMI with hp1 attached from boot", 150)

            async def nothing_left() -> bool:
                return sample(metrics, "hotplug_agent_blocked_vms", reason="not-live-migratable") == 0

            await wait_for(nothing_left, "the agent's block cleared by the restart", 30)
            assert sample(metrics, "hotplug_agent_mode", mode="observe") == 1
            assert sample(metrics, "hotplug_agent_migration_creates_total") == 0
    finally:
        await env.configure_kubevirt(KubeVirtSettings())
    assert condition(vmi, "MigrationRequired") is None
    assert await env.list(VMIMS) == []
    # before KubeVirt's next pass (it waits 5 s after an event) the agent had said why it cannot migrate
    events = await env.client_core().list_namespaced_event(env.ns)
    blocked = [e.message for e in events.items
               if e.reason == "HotplugBlocked" and e.involved_object.name == "wu-evict"]  # fmt: skip
    assert any("not-live-migratable" in m for m in blocked), blocked
