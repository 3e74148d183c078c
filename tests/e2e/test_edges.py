"""Edges of the flow a user hits in practice: a second plug while our migration runs, edits coalesced by
the settle window, in-place unplug by the dynamic networks controller, an agent started after the edits,
a VM deleted while blocked, the KubeVirt CR switched to ``LiveMigrate`` at runtime, graceful shutdown."""

from __future__ import annotations

from agent.kubevirt import VMS
from agent.names import LABEL_AUTO_MIGRATE, OPT_OUT_VALUE
from simulator.manifests import vm_manifest
from tests.e2e.test_failover import LEASE
from tests.e2e.world import NET_A, NS, agent_vmims, cluster_config, reasons, world


async def test_plug_during_our_migration_gets_its_own_migration_without_a_verify_failure() -> None:
    """The second interface reaches the VMI after our migration captured its target networks: the
    first plug is verified, the second needs (and gets) one more migration — not a verify failure."""
    async with world(cluster_config(migration_mean_seconds=1.5)) as w:
        await w.seed(vm_manifest(NS, "vm-two", NET_A))
        agent = await w.start_agent(verify_timeout_seconds=10.0)
        await w.plug("vm-two", "hp-1")
        await w.wait(lambda: agent_vmims(w, "vm-two"), "our first migration")
        first = agent_vmims(w, "vm-two")[0]
        await w.wait(
            lambda: set(w.observer.phases[(first.namespace, first.name)]) & {"Scheduled", "PreparingTarget"},
            "first migration past Scheduling",
        )
        await w.plug("vm-two", "hp-2")
        await w.wait(lambda: w.recorder.completed_count == 2, "both interfaces attached", timeout=60)
        assert len(agent_vmims(w, "vm-two")) == 2
        assert w.observer.max_unfinished_per_vmi == 1
        assert agent.sample("hotplug_agent_migration_failures_total", reason="verify-failed") == 0
        assert not w.events("vm-two", reason="HotplugMigrationRetry"), w.describe()


async def test_settle_window_coalesces_two_edits_into_one_migration() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-coalesce", NET_A))
        await w.start_agent(settle_seconds=1.0)
        await w.plug("vm-coalesce", "hp-1")
        await w.plug("vm-coalesce", "hp-2")
        await w.wait(lambda: w.recorder.completed_count == 2, "both interfaces attached")
        assert len(w.observer.created) == 1
        done = await w.wait_event("vm-coalesce", "HotplugCompleted")
        assert len(w.events("vm-coalesce", reason="HotplugCompleted")) == 1
        assert "hp-1" in done["message"] and "hp-2" in done["message"]


async def test_unplug_in_place_by_the_dynamic_networks_controller() -> None:
    async with world(cluster_config(dnc_enabled=True, dnc_delay_seconds=0.2)) as w:
        await w.seed(vm_manifest(NS, "vm-dnc", [("net-a", "bridge"), ("net-b", "bridge")]))
        await w.start_agent(bridge_grace_seconds=3600.0)
        await w.unplug("vm-dnc", "net-b")
        await w.wait(lambda: w.recorder.completed_count == 1, "net-b gone from the VM template")
        assert w.observer.created == []


async def test_agent_started_after_the_edits_picks_them_up() -> None:
    async with world() as w:
        await w.seed(
            vm_manifest(NS, "vm-cold-1", NET_A),
            vm_manifest(NS, "vm-cold-2", [("net-a", "bridge"), ("net-b", "bridge")]),
        )
        await w.plug("vm-cold-1")
        await w.unplug("vm-cold-2", "net-b")
        await w.wait(
            lambda: any(
                i["name"] == "hp-bridge"
                for i in (w.vmi("vm-cold-1") or {})["spec"]["domain"]["devices"]["interfaces"]
            ),
            "KubeVirt copied the plug to the VMI",
        )
        await w.start_agent()
        await w.wait(lambda: w.recorder.completed_count == 2, "both changes complete")
        assert w.observer.by_creator() == {"agent": 2}


async def test_vm_deleted_while_blocked_is_forgotten() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-gone", NET_A, labels={LABEL_AUTO_MIGRATE: OPT_OUT_VALUE}))
        agent = await w.start_agent()
        await w.plug("vm-gone")
        await w.wait_event("vm-gone", "HotplugBlocked")
        await w.wait(lambda: agent.sample("hotplug_agent_blocked_vms", reason="opted-out") == 1, "blocked")
        await w.store.delete(VMS, "e2e", "vm-gone")
        await w.wait(lambda: w.vmi("vm-gone") is None, "VMI deleted with its VM")
        await w.wait(
            lambda: agent.sample("hotplug_agent_blocked_vms", reason="opted-out") == 0, "blocked gauge drops"
        )
        assert agent.parsed().sum("hotplug_agent_pending_hotplugs") == 0


async def test_live_migrate_enabled_at_runtime_switches_auto_to_observe() -> None:
    async with world(cluster_config(kubevirt_version="v1.6.0")) as w:
        await w.seed(vm_manifest(NS, "vm-switch", NET_A))
        agent = await w.start_agent(mode="auto")
        await w.wait(
            lambda: agent.sample("hotplug_agent_mode", mode="active") == 1, "active without LiveMigrate"
        )
        await w.store.patch(
            "kubevirts",
            "kubevirt",
            "kubevirt",
            {"spec": {"workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]}}},
        )
        await w.wait(
            lambda: agent.sample("hotplug_agent_mode", mode="observe") == 1, "observe with LiveMigrate"
        )
        await w.plug("vm-switch")
        await w.wait(lambda: w.recorder.completed_count == 1, "KubeVirt completed the plug")
        assert w.observer.by_creator()["agent"] == 0
        assert w.observer.by_creator()["kubevirt"] >= 1


async def test_graceful_shutdown_drains_and_releases_the_lease() -> None:
    """SIGTERM-like stop of the leader: it lets its migration finish, exits 0 and releases the Lease,
    so the standby leads without waiting the (long) lease duration out."""
    lease = {**LEASE, "lease_duration_seconds": 120.0, "renew_deadline_seconds": 60.0}
    async with world(cluster_config(migration_mean_seconds=1.5)) as w:
        await w.seed(vm_manifest(NS, "vm-drain", NET_A))
        a = await w.start_agent(identity="replica-a", shutdown_grace_seconds=30.0, **lease)
        await w.wait(lambda: a.leading, "replica-a leads")
        b = await w.start_agent(identity="replica-b", **lease)
        await w.plug("vm-drain")
        await w.wait(lambda: agent_vmims(w, "vm-drain"), "the leader's migration")
        code = await a.shutdown()
        assert code == 0
        (ours,) = agent_vmims(w, "vm-drain")
        assert w.observer.phases[(ours.namespace, ours.name)][-1] == "Succeeded", "drained before exiting"
        assert a.sample("hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 1
        await w.wait(lambda: b.leading, "replica-b leads after the release", timeout=30)
        await w.wait(lambda: w.recorder.completed_count == 1, "the plug completes")
        assert len(w.observer.created) == 1
        assert "HotplugMigrationStarted" in reasons(w.events("vm-drain"))


async def test_watch_namespaces_restricts_the_agent() -> None:
    """``--namespaces e2e``: per-namespace watches; a VM elsewhere is not the agent's business at all
    (no migration, no Event), while the watched namespace works end to end."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-in", NET_A), vm_manifest("elsewhere", "vm-out", NET_A))
        agent = await w.start_agent(namespaces=("e2e",))
        await w.plug("vm-out", ns="elsewhere")
        await w.plug("vm-in")
        await w.wait_event("vm-in", "HotplugCompleted")
        assert [c.vmi for c in w.observer.created] == ["vm-in"]
        assert w.events(ns="elsewhere") == []
        await w.wait(lambda: agent.parsed().sum("hotplug_agent_pending_hotplugs") == 0, "nothing pending")
